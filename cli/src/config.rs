//! `cli::Config`: what `jetway` needs to reach the bus, loaded by the same
//! rules as the gateway and the worker (defaults < `--config` file <
//! `JETWAY_*` environment < flags; see `jetway_shared::config`).
//!
//! The file may be the one a gateway or worker runs with: their own keys
//! are accepted and ignored, so an operator can point `jetway` at the same
//! TOML file. Both lists of keys, `jetway`'s and the ones it accepts, are
//! [`jetway_shared::config::settings::JETWAY_CLI`].

use crate::args::Cli;
use jetway_shared::{
    config::{Bus, ConfigError, Fields, figment, settings::JETWAY_CLI},
    service::Service,
};
use std::time::Duration;

/// How long to wait for the first connection to NATS: an operator command
/// fails fast instead of retrying forever.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Settings of one `jetway` run.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub bus: Bus,
    pub service: Service,
}

impl Config {
    /// Loads the settings, reporting every problem at once.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let file = cli.common.config.as_ref();
        let mut f = Fields::new(figment(file, cli), file, &JETWAY_CLI);
        let bus = Bus::from_fields(&mut f);
        let service = f.get("service", Service::default());
        f.finish(Self { bus, service })
    }

    /// Timeout of one connection attempt: the shorter of [`CONNECT_TIMEOUT`]
    /// and the configured NATS timeout.
    pub fn connect_timeout(&self) -> Duration {
        CONNECT_TIMEOUT.min(self.bus.nats_timeout())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};
    use jetway_shared::config::settings::{GATEWAY, WORKER, check};

    fn load(flags: &[String]) -> Result<Config, String> {
        let argv = std::iter::once("jetway".to_owned())
            .chain(flags.iter().cloned())
            .chain(["sessions".to_owned(), "list".to_owned()]);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        Config::load(&cli).map_err(|e| e.to_string())
    }

    #[test]
    fn flags_and_loader_defaults_are_the_settings_table() {
        let cmd = Cli::command();
        let problems = check::help_defaults(&cmd, &JETWAY_CLI, &["color"]);
        assert!(problems.is_empty(), "{problems:#?}");
        let problems = check::loader_defaults(&cmd, &JETWAY_CLI, load);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn a_gateway_or_worker_file_is_accepted() {
        let dir = std::env::temp_dir().join(format!("jetway-cli-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // Their keys `jetway` does not read itself, once each.
        let keys: std::collections::BTreeSet<&str> = GATEWAY
            .iter()
            .chain(WORKER)
            .filter(|s| JETWAY_CLI.setting(s.key).is_none())
            .map(|s| s.key)
            .collect();
        assert!(keys.contains("upstream_url") && keys.contains("deadline_secs"));
        let mut text: String = keys.iter().map(|k| format!("{k} = 1\n")).collect();
        let path = dir.join("other-binaries.toml");
        std::fs::write(&path, &text).expect("write");
        let path_flag = ["--config".to_owned(), path.display().to_string()];
        let loaded = load(&path_flag);
        text.push_str("not_a_setting = 1\n");
        std::fs::write(&path, &text).expect("write");
        let refused = load(&path_flag);
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert!(loaded.is_ok(), "{loaded:?}");
        let err = refused.expect_err("an unknown key");
        assert!(err.contains("not_a_setting: unknown setting"), "{err}");
    }
}
