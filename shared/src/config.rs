//! Configuration shared by every binary, and the loading rules.
//!
//! Every setting's key, default and meaning are defined once, in
//! [`settings`]; the loaders read exactly those keys.
//!
//! Precedence: built-in defaults < TOML file (`--config`) < `JETWAY_*`
//! environment variables < command-line flags. Every key has the same name
//! in all four places (`nats_url` in TOML, `JETWAY_NATS_URL`, `--nats-url`).
//! Loading checks every field and reports every problem at once, including
//! keys that no setting has (a typo in a file should not pass silently).

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
    value::{Dict, Value},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::{collections::BTreeSet, fmt, path::PathBuf, time::Duration};

pub mod settings;

use settings::Binary;

/// Environment variable prefix of every setting.
pub const ENV_PREFIX: &str = "JETWAY_";

/// Flags both binaries take.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct CommonArgs {
    /// TOML file with settings (same keys as the flags, with underscores).
    #[arg(long, value_name = "PATH", env = "JETWAY_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// NATS server URL(s), comma-separated. [default: nats://127.0.0.1:4222]
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_url: Option<String>,
    /// Name of this instance in headers, logs and results. [default: the hostname]
    #[arg(long, value_name = "ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Log format: `text` or `json`. [default: text]
    #[arg(long, value_name = "FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
}

/// Settings of the NATS connection and the JetStream resources (their keys,
/// defaults and meanings: [`settings::BUS`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bus {
    pub nats_url: String,
    pub instance_id: String,
    pub log_format: LogFormat,
    /// How long streams keep messages and KV buckets keep sessions (seconds).
    pub retention_secs: u64,
    /// Stream and KV replicas (3 in production clusters).
    pub replicas: usize,
    /// Publish deduplication window (seconds); must exceed the redelivery horizon.
    pub duplicate_window_secs: u64,
    /// Timeout of every JetStream API call and publish acknowledgement (ms).
    pub nats_timeout_ms: u64,
    /// Most bytes each session stream holds (0: no limit).
    pub stream_max_bytes: u64,
    /// What a full stream does: refuse new messages, or drop the oldest.
    pub stream_discard: Discard,
    /// Most messages on each subject of a session (0: no cap).
    pub session_max_messages: u64,
    /// Most bytes each KV bucket holds (0: no limit).
    pub kv_max_bytes: u64,
    /// How to authenticate to NATS and whether to use TLS (besides the URL).
    #[serde(skip)]
    pub nats_auth: NatsAuth,
    /// Trace export ([`crate::telemetry::otlp`]).
    #[serde(skip)]
    pub otel: Otel,
}

/// The `otel_*` settings; each unset one leaves its part to the standard
/// `OTEL_*` variables ([`crate::telemetry::otlp`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Otel {
    /// OTLP endpoint (base URL); none: off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    pub endpoint: Option<String>,
    pub protocol: Option<crate::telemetry::otlp::Protocol>,
    /// Ratio of new traces sampled (parent-based: a sampled parent is followed).
    pub sampling: Option<f64>,
}

/// NATS credentials and TLS files, from config rather than the URL.
#[derive(Clone, Default, PartialEq)]
pub struct NatsAuth {
    pub creds_file: Option<PathBuf>,
    pub nkey_seed_file: Option<PathBuf>,
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for NatsAuth {
    /// Names what is set, never a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |o: bool| if o { "set" } else { "unset" };
        f.debug_struct("NatsAuth")
            .field("creds_file", &self.creds_file)
            .field("nkey_seed_file", &self.nkey_seed_file)
            .field("token", &set(self.token.is_some()))
            .field("user", &self.user)
            .field("password", &set(self.password.is_some()))
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .finish()
    }
}

impl Default for Bus {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".into(),
            instance_id: default_instance_id(),
            log_format: LogFormat::Text,
            retention_secs: 24 * 3600,
            replicas: 1,
            duplicate_window_secs: 600,
            nats_timeout_ms: 5000,
            stream_max_bytes: 2 << 30,
            stream_discard: Discard::New,
            session_max_messages: 10_000,
            kv_max_bytes: 256 << 20,
            nats_auth: NatsAuth::default(),
            otel: Otel::default(),
        }
    }
}

impl Bus {
    /// Reads the bus settings from a loaded figment.
    pub fn from_fields(f: &mut Fields) -> Self {
        let d = Bus::default();
        let bus = Self {
            nats_url: f.get("nats_url", d.nats_url),
            instance_id: f.get("instance_id", d.instance_id),
            log_format: f.get("log_format", d.log_format),
            retention_secs: f.get("retention_secs", d.retention_secs),
            replicas: f.get("replicas", d.replicas),
            duplicate_window_secs: f.get("duplicate_window_secs", d.duplicate_window_secs),
            nats_timeout_ms: f.get("nats_timeout_ms", d.nats_timeout_ms),
            stream_max_bytes: f.get("stream_max_bytes", d.stream_max_bytes),
            stream_discard: f.get("stream_discard", d.stream_discard),
            session_max_messages: f.get("session_max_messages", d.session_max_messages),
            kv_max_bytes: f.get("kv_max_bytes", d.kv_max_bytes),
            nats_auth: NatsAuth {
                creds_file: f.get("nats_creds_file", None),
                nkey_seed_file: f.get("nats_nkey_seed_file", None),
                token: f.get("nats_token", None),
                user: f.get("nats_user", None),
                password: f.get("nats_password", None),
                tls_ca_file: f.get("nats_tls_ca_file", None),
                tls_cert_file: f.get("nats_tls_cert_file", None),
                tls_key_file: f.get("nats_tls_key_file", None),
            },
            otel: Otel {
                endpoint: f.get("otel_endpoint", None),
                protocol: f.get("otel_protocol", None),
                sampling: f.get("otel_sampling", None),
            },
        };
        if bus.otel.sampling.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
            f.problem("otel_sampling: must be between 0.0 and 1.0");
        }
        let a = &bus.nats_auth;
        let methods = [
            a.creds_file.is_some(),
            a.nkey_seed_file.is_some(),
            a.token.is_some(),
            a.user.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            f.problem(
                "nats_creds_file, nats_nkey_seed_file, nats_token, nats_user: set at most one",
            );
        }
        if a.user.is_some() != a.password.is_some() {
            f.problem("nats_user and nats_password: set both or neither");
        }
        if a.tls_cert_file.is_some() != a.tls_key_file.is_some() {
            f.problem("nats_tls_cert_file and nats_tls_key_file: set both or neither");
        }
        if bus.instance_id.is_empty()
            || !bus
                .instance_id
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b".*>".contains(&b))
        {
            f.problem("instance_id: must be non-empty visible ASCII without '.', '*' or '>'");
        }
        if bus.nats_url.trim().is_empty() {
            f.problem("nats_url: must not be empty");
        }
        if !(1..=5).contains(&bus.replicas) {
            f.problem("replicas: must be between 1 and 5");
        }
        if bus.retention_secs == 0 {
            f.problem("retention_secs: must be greater than 0");
        }
        if bus.nats_timeout_ms == 0 {
            f.problem("nats_timeout_ms: must be greater than 0");
        }
        for (key, value) in [
            ("stream_max_bytes", bus.stream_max_bytes),
            ("kv_max_bytes", bus.kv_max_bytes),
            ("session_max_messages", bus.session_max_messages),
        ] {
            if value > i64::MAX as u64 {
                f.problem(format!("{key}: must be at most {}", i64::MAX));
            }
        }
        bus
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_secs)
    }

    pub fn duplicate_window(&self) -> Duration {
        Duration::from_secs(self.duplicate_window_secs)
    }

    pub fn nats_timeout(&self) -> Duration {
        Duration::from_millis(self.nats_timeout_ms)
    }
}

/// What a full session stream does with one more message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Discard {
    /// Refuse it: the client gets 507 and nothing stored is lost.
    New,
    /// Store it and drop the oldest messages (breaks resume and replay of
    /// what was dropped, silently).
    Old,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The hostname, or `jetway` if it cannot be read.
pub fn default_instance_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let clean: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "jetway".into()
    } else {
        clean
    }
}

/// Builds the layered figment: file < environment < flags.
pub fn figment(file: Option<&PathBuf>, flags: &impl Serialize) -> Figment {
    let mut fig = Figment::new();
    if let Some(path) = file {
        fig = fig.merge(Toml::file_exact(path));
    }
    fig.merge(Env::prefixed(ENV_PREFIX).ignore(&["CONFIG"]))
        .merge(Serialized::globals(flags))
}

/// Collects a binary's settings field by field so every problem is
/// reported at once.
///
/// The binary's settings table is the list of keys: a key the loader reads
/// that the table lacks, or one the table lists that the loader never
/// reads, is reported too (a bug, which any loading of the defaults shows).
pub struct Fields {
    figment: Figment,
    binary: Binary,
    read: BTreeSet<&'static str>,
    problems: Vec<String>,
}

impl Fields {
    /// Starts reading `figment` for `binary`. Keys of the TOML `file` the
    /// binary does not accept are reported as problems (a typo there should
    /// not pass silently); unknown `JETWAY_*` environment variables are not,
    /// because platforms set their own (Kubernetes adds
    /// `JETWAY_SERVICE_HOST` for a Service named jetway).
    pub fn new(figment: Figment, file: Option<&PathBuf>, binary: &Binary) -> Self {
        let mut problems = Vec::new();
        if let Some(path) = file {
            match Figment::from(Toml::file_exact(path)).extract::<Dict>() {
                Ok(dict) => {
                    for key in dict.keys() {
                        if !binary.accepts_key(key) {
                            problems
                                .push(format!("{key}: unknown setting (in {})", path.display()));
                        }
                    }
                }
                Err(e) => problems.extend(e.into_iter().map(|e| e.to_string())),
            }
        }
        Self {
            figment,
            binary: *binary,
            read: BTreeSet::new(),
            problems,
        }
    }

    /// The value of `key`, or `default` if it is not set anywhere.
    pub fn get<T: DeserializeOwned>(&mut self, key: &str, default: T) -> T {
        match self.binary.setting(key) {
            Some(s) => {
                self.read.insert(s.key);
            }
            None => self.problems.push(format!(
                "{key}: read, but not in the {} settings table (a bug)",
                self.binary.name
            )),
        }
        match self.figment.find_value(key) {
            Err(_) => default,
            Ok(v) => match self.figment.extract_inner::<T>(key) {
                Ok(t) => t,
                Err(e) => {
                    let source = e
                        .metadata
                        .as_ref()
                        .map(|m| format!(" (from {})", m.name))
                        .unwrap_or_default();
                    self.problems
                        .push(format!("{key}: {}{source}; got {}", e.kind, show(&v)));
                    default
                }
            },
        }
    }

    /// A list setting: a TOML array, or a comma-separated string (as
    /// `JETWAY_*` variables and flags give it).
    pub fn get_list(&mut self, key: &str, default: Vec<String>) -> Vec<String> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            Many(Vec<String>),
            One(String),
        }
        match self.get(key, OneOrMany::Many(default)) {
            OneOrMany::Many(items) => items,
            OneOrMany::One(text) => text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    /// Records a problem found while validating values.
    pub fn problem(&mut self, p: impl Into<String>) {
        self.problems.push(p.into());
    }

    /// Ends reading: `Ok` if no problem was found.
    pub fn finish<T>(mut self, value: T) -> Result<T, ConfigError> {
        for s in self.binary.reads() {
            if !self.read.contains(s.key) {
                self.problems.push(format!(
                    "{}: in the {} settings table, but never read (a bug)",
                    s.key, self.binary.name
                ));
            }
        }
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError(self.problems))
        }
    }
}

fn show(v: &Value) -> String {
    v.deserialize::<serde_json::Value>()
        .map(|j| j.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Every problem found in the configuration.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({} problem", self.0.len())?;
        if self.0.len() != 1 {
            f.write_str("s")?;
        }
        f.write_str("):")?;
        for p in &self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's own error type
mod tests {
    use super::*;
    use settings::BUS;

    /// A binary that reads the bus settings and nothing else.
    const BUS_ONLY: Binary = Binary {
        name: "bus-only",
        own: &[],
        accepts: &[],
    };

    fn load(
        file: Option<&str>,
        env: &[(&str, &str)],
        flags: CommonArgs,
    ) -> Result<Bus, ConfigError> {
        let mut result = None;
        figment::Jail::expect_with(|jail| {
            let path = file.map(|text| {
                jail.create_file("jetway.toml", text).expect("write file");
                PathBuf::from("jetway.toml")
            });
            for (k, v) in env {
                jail.set_env(k, v);
            }
            let mut f = Fields::new(figment(path.as_ref(), &flags), path.as_ref(), &BUS_ONLY);
            let bus = Bus::from_fields(&mut f);
            result = Some(f.finish(bus));
            Ok(())
        });
        result.expect("jail ran")
    }

    #[test]
    fn later_layers_win() {
        let file = "nats_url = 'nats://file:1'\ninstance_id = 'from-file'\nreplicas = 3\n";
        let bus = load(
            Some(file),
            &[("JETWAY_INSTANCE_ID", "from-env")],
            CommonArgs::default(),
        )
        .expect("valid");
        assert_eq!(bus.nats_url, "nats://file:1");
        assert_eq!(bus.instance_id, "from-env");
        assert_eq!(bus.replicas, 3);

        let flags = CommonArgs {
            instance_id: Some("from-flag".into()),
            ..Default::default()
        };
        let bus = load(Some(file), &[("JETWAY_INSTANCE_ID", "from-env")], flags).expect("valid");
        assert_eq!(bus.instance_id, "from-flag");
    }

    #[test]
    fn every_problem_is_reported() {
        let err = load(
            Some("replicas = 'three'\nbogus = 1\n"),
            &[
                ("JETWAY_NATS_TIMEOUT_MS", "soon"),
                ("JETWAY_INSTANCE_ID", "a.b"),
            ],
            CommonArgs::default(),
        )
        .expect_err("invalid");
        let text = err.to_string();
        for needle in [
            "replicas",
            "bogus: unknown setting",
            "nats_timeout_ms",
            "instance_id",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        assert_eq!(err.0.len(), 4, "{text}");
    }

    #[test]
    fn otel_settings_are_read_and_checked() {
        let bus = load(
            None,
            &[
                ("JETWAY_OTEL_ENDPOINT", "http://127.0.0.1:4317"),
                ("JETWAY_OTEL_PROTOCOL", "grpc"),
                ("JETWAY_OTEL_SAMPLING", "0.5"),
            ],
            CommonArgs::default(),
        )
        .expect("valid");
        assert_eq!(
            bus.otel,
            Otel {
                endpoint: Some("http://127.0.0.1:4317".into()),
                protocol: Some(crate::telemetry::otlp::Protocol::Grpc),
                sampling: Some(0.5),
            }
        );
        let err = load(
            None,
            &[
                ("JETWAY_OTEL_PROTOCOL", "http/json"),
                ("JETWAY_OTEL_SAMPLING", "1.5"),
            ],
            CommonArgs::default(),
        )
        .expect_err("invalid");
        let text = err.to_string();
        assert!(
            text.contains("otel_protocol") && text.contains("otel_sampling"),
            "{text}"
        );
    }

    #[test]
    fn bus_defaults_are_the_settings_table_defaults() {
        let base = load(None, &[], CommonArgs::default()).expect("defaults are valid");
        assert_eq!(base, Bus::default());
        assert_eq!(base.instance_id, default_instance_id(), "the hostname");
        let mut checked = 0;
        for s in BUS {
            let Some(value) = s.default_value() else {
                continue;
            };
            let var = format!("{ENV_PREFIX}{}", s.key.to_ascii_uppercase());
            let bus = load(None, &[(&var, &value)], CommonArgs::default())
                .unwrap_or_else(|e| panic!("{var}={value} (the table's default): {e}"));
            assert_eq!(bus, base, "{}: the table says {value:?}", s.key);
            checked += 1;
        }
        let without_default = BUS.iter().filter(|s| s.default_value().is_none()).count();
        assert_eq!(
            without_default, 12,
            "instance_id, the eight NATS credential and TLS settings, the three otel_* settings"
        );
        assert_eq!(
            checked,
            BUS.len() - without_default,
            "every bus setting with a default"
        );
    }

    #[test]
    fn common_flags_show_the_table_defaults() {
        use clap::Args as _;
        let cmd = CommonArgs::augment_args(clap::Command::new("bus-only"));
        let problems = settings::check::help_defaults(&cmd, &BUS_ONLY, &[]);
        assert!(problems.is_empty(), "{problems:#?}");
        assert_eq!(cmd.get_arguments().count(), 4, "config and three bus flags");
    }

    #[test]
    fn a_key_outside_the_table_or_never_read_is_a_bug_reported() {
        let mut f = Fields::new(Figment::new(), None, &BUS_ONLY);
        let _: u64 = f.get("retention_secs", 1);
        let _: u64 = f.get("not_in_the_table", 1);
        let err = f.finish(()).expect_err("two bugs");
        let text = err.to_string();
        assert!(
            text.contains("not_in_the_table: read, but not in the bus-only settings table"),
            "{text}"
        );
        assert!(
            text.contains("replicas: in the bus-only settings table, but never read"),
            "{text}"
        );
        assert!(!text.contains("retention_secs"), "{text}");
        assert_eq!(err.0.len(), 1 + BUS.len() - 1, "{text}");
    }
}
