//! `cli::Config`: what `jetway` needs to reach the bus, loaded by the same
//! rules as the gateway and the worker (defaults < `--config` file <
//! `JETWAY_*` environment < flags; see `jetway_shared::config`).
//!
//! The file may be the one a gateway or worker runs with: their own keys
//! are accepted and ignored, so an operator can point `jetway` at the same
//! TOML file.

use crate::args::Cli;
use jetway_shared::{
    config::{Bus, ConfigError, Fields, figment},
    service::Service,
};
use std::time::Duration;

/// Keys `jetway` reads besides the bus settings.
const KEYS: &[&str] = &["service"];

/// Keys the gateway and worker read that `jetway` does not need.
const OTHER_BINARIES_KEYS: &[&str] = &[
    "services",
    "listen",
    "allowed_origins",
    "max_body_bytes",
    "json_response",
    "request_timeout_secs",
    "keep_alive_secs",
    "sse_poll_secs",
    "grace_period_secs",
    "max_concurrency",
    "ack_wait_secs",
    "max_deliver",
];

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
        let mut f = Fields::new(
            figment(file, cli),
            file,
            &[Bus::KEYS, KEYS, OTHER_BINARIES_KEYS],
        );
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
