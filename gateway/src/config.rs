//! `gateway::Config`: the gateway's settings (see `jetway_shared::config`
//! for the loading rules and the bus settings shared with workers).
//!
//! Their keys, defaults and meanings are defined in
//! [`jetway_shared::config::settings::GATEWAY`]; the tests below check the
//! flags' `[default: …]` and the loader's defaults against it.

use jetway_shared::{
    config::{Bus, CommonArgs, ConfigError, Fields, figment, settings::JETWAY_GATEWAY},
    service::Service,
};
use serde::Serialize;
use std::{net::SocketAddr, time::Duration};

/// Flags of `jetway-gateway`.
#[derive(Debug, Clone, Default, clap::Parser, Serialize)]
#[command(
    name = "jetway-gateway",
    version,
    about = "Jetway gateway: a stateless MCP Streamable HTTP endpoint on NATS JetStream"
)]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
    /// Services this gateway serves, comma-separated: the first on `/mcp`,
    /// each on `/services/<name>/mcp`. [default: default]
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
    /// Address to listen on. [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Allowed `Origin` values, comma-separated (`*` allows any); one
    /// without a port allows every port of its host.
    /// [default: http://localhost, http://127.0.0.1, http://[::1] (any port)]
    #[arg(long, value_name = "ORIGINS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_origins: Option<Vec<String>>,
    /// Largest accepted request body in bytes (lowered to NATS's
    /// max_payload less 8 KiB if that is less). [default: 1048576]
    #[arg(long, value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    /// Allowed `Host` values, comma-separated (`*` allows any); one without
    /// a port allows every port of its host.
    /// [default: loopback names when `listen` is loopback, else any]
    #[arg(long, value_name = "HOSTS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_hosts: Option<Vec<String>>,
    /// Messages in one JSON-RPC batch (2025-03-26 sessions only). [default: 100]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_batch_messages: Option<usize>,
    /// Largest `initialize` params, in bytes (the session record keeps them). [default: 65536]
    #[arg(long, value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_initialize_bytes: Option<usize>,
    /// Open connections; one more is closed at once. [default: 10000]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Seconds a request's headers may take to arrive. [default: 10]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds a request's body may take to arrive; then 408. [default: 30]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_read_timeout_secs: Option<u64>,
    /// Seconds a connection may read and write nothing before it is closed. [default: 120]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u64>,
    /// Seconds a connection's writes may stay stuck (the client stopped reading). [default: 30]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_timeout_secs: Option<u64>,
    /// Requests of one session this gateway streams at once; more get 429. [default: 64]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_inflight_per_session: Option<usize>,
    /// Live sessions of one principal (client address when auth is off),
    /// across replicas; more `initialize`s get 429. 0 is no limit. [default: 100]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sessions_per_principal: Option<usize>,
    /// Requests per second of one principal (client address when auth is
    /// off) on this replica; more get 429. 0 is no limit. [default: 50]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_sec: Option<u32>,
    /// Requests a principal or address may send at once above the rate. [default: 200]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_burst: Option<u32>,
    /// CIDRs of load balancers whose `Forwarded`/`X-Forwarded-For` names
    /// the client address, comma-separated. [default: none]
    #[arg(long, value_name = "CIDRS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_proxies: Option<Vec<String>>,
    /// Answer requests with a single JSON response instead of an SSE stream. [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_response: Option<bool>,
    /// Seconds to wait for a request's response before ending its stream. [default: 600]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout_secs: Option<u64>,
    /// Seconds between SSE keep-alive comments on idle streams. [default: 15]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive_secs: Option<u64>,
    /// Polling: end SSE streams after this many seconds with a `retry` hint;
    /// clients come back with `Last-Event-ID` (2025-11-25). 0 is off. [default: 0 (off)]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sse_poll_secs: Option<u64>,
    /// The URL clients reach this gateway at (scheme, host, any path
    /// prefix), without `/mcp`; names the protected resource when auth is on. [default: none]
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// OAuth: the issuer whose bearer JWTs are accepted; unset, auth is off. [default: off]
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_issuer: Option<String>,
    /// OAuth: the issuer's JWKS URL. [default: from the issuer's metadata]
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_jwks_url: Option<String>,
    /// OAuth: the `aud` tokens must carry. [default: the resource URL]
    #[arg(long, value_name = "AUD")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_audience: Option<String>,
    /// OAuth: accepted signature algorithms, comma-separated (asymmetric only).
    /// [default: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA]
    #[arg(long, value_name = "ALGS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_algorithms: Option<Vec<String>>,
    /// OAuth: clock skew allowed on `exp` and `nbf`, in seconds. [default: 30]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_leeway_secs: Option<u64>,
    /// OAuth: scopes every request needs, comma-separated. [default: none]
    #[arg(long, value_name = "SCOPES", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_scopes: Option<Vec<String>>,
    /// OAuth: scopes by method, `method=scope`, comma-separated. [default: none]
    #[arg(long, value_name = "RULES", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_method_scopes: Option<Vec<String>>,
    /// OAuth: scopes by tool, `tool=scope`, comma-separated. [default: none]
    #[arg(long, value_name = "RULES", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_tool_scopes: Option<Vec<String>>,
    /// OAuth: refetch the issuer's keys when older than this. [default: 300]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_jwks_refresh_secs: Option<u64>,
    /// OAuth: timeout of a metadata or JWKS fetch, in milliseconds. [default: 5000]
    #[arg(long, value_name = "MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_fetch_timeout_ms: Option<u64>,
    /// OAuth: the issuer's RFC 7662 introspection endpoint; set, opaque (non-JWT) bearer tokens are checked there. [default: off]
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_introspection_url: Option<String>,
    /// OAuth: the gateway's client id at the introspection endpoint (HTTP Basic). [default: none]
    #[arg(long, value_name = "ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_introspection_client_id: Option<String>,
    /// OAuth: the gateway's client secret at the introspection endpoint. [default: none]
    #[arg(long, value_name = "SECRET")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_introspection_client_secret: Option<String>,
    /// OAuth: how long an active introspection answer is reused (never past the token's `exp`). [default: 60]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_introspection_cache_secs: Option<u64>,
    /// Seconds to drain connections on SIGTERM before exiting. [default: 20]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_period_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub bus: Bus,
    /// The first is the one `/mcp` serves.
    pub services: Vec<Service>,
    pub listen: SocketAddr,
    pub allowed_origins: Vec<String>,
    /// `None`: any host.
    pub allowed_hosts: Option<Vec<String>>,
    pub max_body_bytes: usize,
    pub max_batch_messages: usize,
    pub max_initialize_bytes: usize,
    pub max_inflight_per_session: usize,
    pub max_connections: usize,
    /// 0: no limit.
    pub max_sessions_per_principal: usize,
    /// 0: no limit.
    pub rate_limit_per_sec: u32,
    pub rate_limit_burst: u32,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub json_response: bool,
    pub request_timeout: Duration,
    pub keep_alive: Duration,
    pub sse_poll: Option<Duration>,
    pub grace_period: Duration,
    /// OAuth token checks; `None`: auth is off.
    pub auth: Option<crate::auth::settings::AuthConfig>,
}

/// Hosts allowed when none are configured and the gateway listens on a
/// loopback address: the loopback names, any port.
pub const LOCAL_HOSTS: &[&str] = &["localhost", "127.0.0.1", "[::1]"];

/// Origins allowed when none are configured: the loopback host names, any port.
pub const LOCAL_ORIGINS: &[&str] = &["http://localhost", "http://127.0.0.1", "http://[::1]"];

impl Config {
    /// Loads defaults < file < env < flags, reporting every problem at once.
    pub fn load(args: &Args) -> Result<Self, ConfigError> {
        let file = args.common.config.as_ref();
        let mut f = Fields::new(figment(file, args), file, &JETWAY_GATEWAY);
        let bus = Bus::from_fields(&mut f);
        let listen: String = f.get("listen", "127.0.0.1:8080".to_owned());
        let parsed_listen = listen.parse::<SocketAddr>();
        if parsed_listen.is_err() {
            f.problem(format!(
                "listen: {listen:?} is not an address like 127.0.0.1:8080"
            ));
        }
        let origins: Vec<String> = f.get_list(
            "allowed_origins",
            LOCAL_ORIGINS.iter().map(|s| s.to_string()).collect(),
        );
        let loopback = parsed_listen.as_ref().is_ok_and(|a| a.ip().is_loopback());
        let hosts: Vec<String> = f.get_list(
            "allowed_hosts",
            if loopback {
                LOCAL_HOSTS.iter().map(|s| s.to_string()).collect()
            } else {
                vec!["*".to_owned()]
            },
        );
        let hosts = (!hosts.iter().any(|h| h == "*")).then_some(hosts);
        let mut services = Vec::new();
        for name in f.get_list("services", vec![jetway_shared::service::DEFAULT.to_owned()]) {
            match Service::parse(&name) {
                Ok(s) => services.push(s),
                Err(e) => f.problem(format!("services: {e}")),
            }
        }
        let mut trusted_proxies = Vec::new();
        for cidr in f.get_list("trusted_proxies", Vec::new()) {
            match crate::quota::client_addr::parse_cidr(&cidr) {
                Some(net) => trusted_proxies.push(net),
                None => f.problem(format!(
                    "trusted_proxies: {cidr:?} is not an address or CIDR like 10.0.0.0/8"
                )),
            }
        }
        let mut cfg = Self {
            bus,
            services,
            listen: parsed_listen.unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080))),
            allowed_origins: origins,
            allowed_hosts: hosts,
            max_body_bytes: f.get("max_body_bytes", 1024 * 1024),
            max_batch_messages: f.get("max_batch_messages", 100),
            max_initialize_bytes: f.get("max_initialize_bytes", 64 * 1024),
            max_inflight_per_session: f.get("max_inflight_per_session", 64),
            max_connections: f.get("max_connections", 10_000),
            max_sessions_per_principal: f.get("max_sessions_per_principal", 100),
            rate_limit_per_sec: f.get("rate_limit_per_sec", 50),
            rate_limit_burst: f.get("rate_limit_burst", 200),
            trusted_proxies: Vec::new(),
            header_read_timeout: Duration::from_secs(f.get("header_read_timeout_secs", 10)),
            body_read_timeout: Duration::from_secs(f.get("body_read_timeout_secs", 30)),
            idle_timeout: Duration::from_secs(f.get("idle_timeout_secs", 120)),
            write_timeout: Duration::from_secs(f.get("write_timeout_secs", 30)),
            json_response: f.get("json_response", false),
            request_timeout: Duration::from_secs(f.get("request_timeout_secs", 600)),
            keep_alive: Duration::from_secs(f.get("keep_alive_secs", 15)),
            sse_poll: Some(Duration::from_secs(f.get("sse_poll_secs", 0))).filter(|d| !d.is_zero()),
            grace_period: Duration::from_secs(f.get("grace_period_secs", 20)),
            auth: crate::auth::settings::load(&mut f),
        };
        cfg.trusted_proxies = trusted_proxies;
        if cfg.rate_limit_per_sec > 0 && cfg.rate_limit_burst == 0 {
            f.problem("rate_limit_burst: must be at least 1");
        }
        if cfg.services.is_empty() {
            f.problem("services: name at least one service");
        }
        for (i, s) in cfg.services.iter().enumerate() {
            if cfg.services[..i].contains(s) {
                f.problem(format!("services: {s} is listed twice"));
            }
        }
        for (key, value) in [
            ("max_batch_messages", cfg.max_batch_messages),
            ("max_initialize_bytes", cfg.max_initialize_bytes),
            ("max_inflight_per_session", cfg.max_inflight_per_session),
            ("max_connections", cfg.max_connections),
        ] {
            if value == 0 {
                f.problem(format!("{key}: must be at least 1"));
            }
        }
        if cfg.max_body_bytes == 0 {
            f.problem("max_body_bytes: must be greater than 0");
        }
        for (key, value) in [
            ("header_read_timeout_secs", cfg.header_read_timeout),
            ("body_read_timeout_secs", cfg.body_read_timeout),
            ("idle_timeout_secs", cfg.idle_timeout),
            ("write_timeout_secs", cfg.write_timeout),
        ] {
            if value.is_zero() {
                f.problem(format!("{key}: must be at least 1"));
            }
        }
        if cfg.idle_timeout <= cfg.keep_alive {
            f.problem(
                "idle_timeout_secs: must exceed keep_alive_secs, or idle SSE streams are cut",
            );
        }
        if cfg.keep_alive.is_zero() {
            f.problem("keep_alive_secs: must be at least 1");
        }
        if cfg.request_timeout.is_zero() {
            f.problem("request_timeout_secs: must be at least 1");
        }
        f.finish(cfg)
    }

    /// True if a request with this `Host` header may be served.
    pub fn host_allowed(&self, host: &str) -> bool {
        let Some(allowed) = &self.allowed_hosts else {
            return true;
        };
        allowed.iter().any(|a| {
            a.eq_ignore_ascii_case(host)
                || host
                    .get(..a.len())
                    .is_some_and(|h| h.eq_ignore_ascii_case(a))
                    && host[a.len()..].strip_prefix(':').is_some_and(|port| {
                        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
                    })
        })
    }

    /// True if a request with this `Origin` header may be served.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|allowed| {
            if allowed == "*" || allowed == origin {
                return true;
            }
            // A configured origin without a port allows every port of that host.
            origin.strip_prefix(allowed.as_str()).is_some_and(|rest| {
                rest.starts_with(':') && rest[1..].bytes().all(|b| b.is_ascii_digit())
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_or_by_host_with_any_port() {
        let cfg = Config::load(&Args::default()).expect("defaults are valid");
        assert!(cfg.origin_allowed("http://localhost"));
        assert!(cfg.origin_allowed("http://127.0.0.1:8080"));
        assert!(cfg.origin_allowed("http://[::1]:3000"));
        assert!(!cfg.origin_allowed("http://evil.example.com"));
        assert!(!cfg.origin_allowed("http://localhost.evil.example.com"));
        assert!(!cfg.origin_allowed("http://localhost:80@evil"));
        assert!(!cfg.origin_allowed("https://localhost"));
    }

    #[test]
    fn hosts_default_to_loopback_names_on_loopback_and_any_elsewhere() {
        let cfg = Config::load(&Args::default()).expect("defaults are valid");
        for ok in ["localhost", "127.0.0.1:8080", "[::1]:3000", "LOCALHOST:1"] {
            assert!(cfg.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1:",
            "127.0.0.1:80x",
            "",
        ] {
            assert!(!cfg.host_allowed(bad), "{bad}");
        }
        let public = Config::load(&Args {
            listen: Some("0.0.0.0:8080".into()),
            ..Args::default()
        })
        .expect("valid");
        assert!(public.host_allowed("mcp.example.com"));
        let listed = Config::load(&Args {
            listen: Some("0.0.0.0:8080".into()),
            allowed_hosts: Some(vec!["mcp.example.com".into()]),
            ..Args::default()
        })
        .expect("valid");
        assert!(listed.host_allowed("mcp.example.com:443"));
        assert!(!listed.host_allowed("127.0.0.1:8080"));
    }

    #[test]
    fn services_default_to_the_default_service_and_are_checked() {
        let cfg = Config::load(&Args::default()).expect("defaults are valid");
        assert_eq!(cfg.services, vec![Service::default()]);
        let named = |names: &[&str]| Args {
            services: Some(names.iter().map(|n| n.to_string()).collect()),
            ..Args::default()
        };
        let cfg = Config::load(&named(&["billing", "default"])).expect("valid");
        assert_eq!(cfg.services[0].name(), "billing");
        for bad in [&["Billing"][..], &["a", "a"], &[]] {
            assert!(Config::load(&named(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags_and_loader_defaults_are_the_settings_table() {
        use clap::{CommandFactory, Parser};
        use jetway_shared::config::settings::check;
        let cmd = Args::command();
        let problems = check::help_defaults(&cmd, &JETWAY_GATEWAY, &[]);
        assert!(problems.is_empty(), "{problems:#?}");
        let problems = check::loader_defaults(&cmd, &JETWAY_GATEWAY, |flags| {
            let argv = std::iter::once("jetway-gateway".to_owned()).chain(flags.iter().cloned());
            let args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
            Config::load(&args).map_err(|e| e.to_string())
        });
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
