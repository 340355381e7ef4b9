//! `worker::Config`: the worker's settings (see `jetway_shared::config` for
//! the loading rules and the bus settings shared with gateways).
//!
//! Their keys, defaults and meanings are defined in
//! [`jetway_shared::config::settings::WORKER`]; the tests below check the
//! flags' `[default: …]` and the loader's defaults against it.

use jetway_shared::{
    config::{Bus, CommonArgs, ConfigError, Fields, figment, settings::JETWAY_WORKER},
    service::Service,
};
use serde::Serialize;
use std::{net::SocketAddr, time::Duration};

/// Flags of `jetway-worker`.
#[derive(Debug, Clone, Default, clap::Parser, Serialize)]
#[command(
    name = "jetway-worker",
    version,
    about = "Jetway worker: runs MCP tools for requests taken from NATS JetStream"
)]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
    /// The service whose requests this worker runs: it names the streams,
    /// buckets and consumer on NATS, so many servers share one cluster. [default: default]
    #[arg(long, value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Requests executed at once by this worker. [default: 64]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
    /// Slots one session's requests may hold at once; its further requests
    /// wait in the worker until one of its own ends. [default: half of max_concurrency, at least 1]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_slots_per_session: Option<usize>,
    /// Distinct tool names the worker's metrics label by; further tools
    /// count as `other`. [default: 50]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_max_tool_labels: Option<usize>,
    /// Address of the worker's HTTP port (`/healthz`, `/readyz`, `/metrics`). [default: 127.0.0.1:9090]
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Seconds a request may go without an in-progress ack before it is
    /// redelivered to another worker (the lease); in-progress acks renew it
    /// every third of it. [default: 2]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_wait_secs: Option<u64>,
    /// Seconds a request may take from the moment it is stored, queueing and
    /// re-runs included; past it the handler is stopped and the client gets
    /// a JSON-RPC error (-32004). [default: 600]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_secs: Option<u64>,
    /// Executions of one request before it fails with a JSON-RPC error. [default: 5]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_deliver: Option<i64>,
    /// Bridge mode: the Streamable HTTP URL of an upstream MCP server to
    /// forward every request to, instead of the built-in tools. [default: none]
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_url: Option<String>,
    /// Headers sent with every upstream request, `Name: value`, repeatable
    /// (an API key, say). [default: none]
    #[arg(long = "upstream-header", value_name = "HEADER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_headers: Option<Vec<String>>,
    /// Bridge mode: the command line of a stdio upstream MCP server, run as
    /// a pool of processes (e.g. `npx @modelcontextprotocol/server-everything`). [default: none]
    #[arg(long, value_name = "COMMAND")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_cmd: Option<String>,
    /// stdio upstream processes per bridge worker, each running one request
    /// at a time (with `--upstream-stdio session`: the most it runs). [default: 4]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_processes: Option<usize>,
    /// stdio upstream processes: `shared` (a pool serving every session) or
    /// `session` (one process per session, on one worker). [default: shared]
    #[arg(long, value_name = "MODE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_stdio: Option<String>,
    /// Seconds without a request after which a session's own stdio process
    /// ends (`upstream_stdio = "session"`). [default: 300]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_idle_secs: Option<u64>,
    /// Seconds an upstream may take to start answering a request. [default: 30]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_timeout_secs: Option<u64>,
    /// Seconds an unreachable upstream is retried before the client gets a
    /// -32001 error. [default: 5]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_unreachable_secs: Option<u64>,
    /// Seconds to finish in-flight requests on SIGTERM before handing them back. [default: 20]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_period_secs: Option<u64>,
}

/// Name of the durable consumer all workers share.
pub const CONSUMER: &str = "jetway-workers";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub bus: Bus,
    pub service: Service,
    pub listen: SocketAddr,
    pub max_concurrency: usize,
    /// A session's share of the slots ([`crate::fair`]).
    pub max_slots_per_session: usize,
    /// Distinct tool names metrics label by (the rest are `other`).
    pub metrics_max_tool_labels: usize,
    pub ack_wait: Duration,
    pub deadline: Duration,
    pub max_deliver: i64,
    pub grace_period: Duration,
    /// Set in bridge mode.
    pub upstream: Option<UpstreamConfig>,
}

/// Where a bridge worker forwards requests.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamConfig {
    /// A Streamable HTTP server.
    Http(HttpUpstream),
    /// A stdio server: its command line (program and arguments), and how
    /// many processes of it each worker runs; with `per_session` (the idle
    /// timeout), one process per session instead of a shared pool.
    Stdio {
        command: Vec<String>,
        processes: usize,
        per_session: Option<Duration>,
    },
}

/// A Streamable HTTP upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpUpstream {
    pub url: reqwest::Url,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub unreachable_for: Duration,
}

impl Config {
    /// Loads defaults < file < env < flags, reporting every problem at once.
    pub fn load(args: &Args) -> Result<Self, ConfigError> {
        let file = args.common.config.as_ref();
        let mut f = Fields::new(figment(file, args), file, &JETWAY_WORKER);
        let bus = Bus::from_fields(&mut f);
        let listen: String = f.get("listen", DEFAULT_LISTEN.to_owned());
        let parsed_listen = listen.parse::<SocketAddr>();
        if parsed_listen.is_err() {
            f.problem(format!(
                "listen: {listen:?} is not an address like {DEFAULT_LISTEN}"
            ));
        }
        let share: Option<usize> = f.get("max_slots_per_session", None);
        let cfg = Self {
            bus,
            service: f.get("service", Service::default()),
            listen: parsed_listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9090))),
            max_concurrency: f.get("max_concurrency", 64),
            max_slots_per_session: 0,
            metrics_max_tool_labels: f.get("metrics_max_tool_labels", 50),
            ack_wait: Duration::from_secs(f.get("ack_wait_secs", 2)),
            deadline: Duration::from_secs(f.get("deadline_secs", 600)),
            max_deliver: f.get("max_deliver", 5),
            grace_period: Duration::from_secs(f.get("grace_period_secs", 20)),
            upstream: None,
        };
        let url: Option<String> = f.get("upstream_url", None);
        let headers: Vec<String> = f.get("upstream_headers", Vec::new());
        let timeout = Duration::from_secs(f.get("upstream_timeout_secs", 30));
        let unreachable_for = Duration::from_secs(f.get("upstream_unreachable_secs", 5));
        let cmd: Option<String> = f.get("upstream_cmd", None);
        let processes: usize = f.get("upstream_processes", 4);
        let stdio_mode: String = f.get("upstream_stdio", "shared".to_owned());
        let idle = Duration::from_secs(f.get("upstream_idle_secs", 300));
        let per_session = match stdio_mode.as_str() {
            "shared" => None,
            "session" => Some(idle),
            other => {
                f.problem(format!(
                    "upstream_stdio: {other:?} is neither \"shared\" nor \"session\""
                ));
                None
            }
        };
        let mut cfg = cfg;
        match (url, cmd) {
            (Some(_), Some(_)) => f.problem("upstream_url and upstream_cmd: set one of them"),
            (Some(url), None) => match upstream_config(&url, &headers, timeout, unreachable_for) {
                Ok(u) => cfg.upstream = Some(UpstreamConfig::Http(u)),
                Err(problem) => f.problem(problem),
            },
            (None, Some(cmd)) => match shell_words::split(&cmd) {
                Ok(words) if !words.is_empty() => {
                    cfg.upstream = Some(UpstreamConfig::Stdio {
                        command: words,
                        processes,
                        per_session,
                    });
                }
                _ => f.problem(format!("upstream_cmd: {cmd:?} is not a command line")),
            },
            (None, None) => {}
        }
        if processes == 0 {
            f.problem("upstream_processes: must be at least 1");
        }
        if !headers.is_empty() && !matches!(cfg.upstream, Some(UpstreamConfig::Http(_))) {
            f.problem("upstream_headers: set only with upstream_url");
        }
        if cfg.max_concurrency == 0 {
            f.problem("max_concurrency: must be at least 1");
        }
        cfg.max_slots_per_session =
            share.unwrap_or_else(|| crate::fair::default_share(cfg.max_concurrency));
        if cfg.max_slots_per_session == 0 {
            f.problem("max_slots_per_session: must be at least 1");
        }
        if cfg.ack_wait < Duration::from_secs(1) {
            f.problem("ack_wait_secs: must be at least 1");
        }
        if cfg.deadline < Duration::from_secs(1) {
            f.problem("deadline_secs: must be at least 1");
        }
        if cfg.max_deliver < 1 {
            f.problem("max_deliver: must be at least 1");
        }
        f.finish(cfg)
    }

    /// How often a held request's lease is renewed: three times per lease,
    /// so one late renewal does not lose it.
    pub fn lease_renewal(&self) -> Duration {
        self.ack_wait / 3
    }

    /// How long claims give their holders (see `claim`): a holder that has
    /// no responder gets a quarter of a lease to come back (on top of the
    /// lease that ran out before its request was redelivered: a reconnect
    /// is over by then), one that does not answer probes three leases.
    pub fn claim_timing(&self) -> crate::claim::Timing {
        crate::claim::Timing {
            ttl: self.deadline + Duration::from_secs(60),
            grace: self.ack_wait / 4,
            patience: self.ack_wait * 3,
        }
    }
}

const DEFAULT_LISTEN: &str = "127.0.0.1:9090";

fn upstream_config(
    url: &str,
    headers: &[String],
    timeout: Duration,
    unreachable_for: Duration,
) -> Result<HttpUpstream, String> {
    let parsed = reqwest::Url::parse(url)
        .ok()
        .filter(|u| u.scheme() == "http" || u.scheme() == "https")
        .ok_or_else(|| format!("upstream_url: {url:?} is not an http:// or https:// URL"))?;
    let mut pairs = Vec::new();
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .map(|(n, v)| (n.trim(), v.trim()))
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| format!("upstream_headers: {h:?} is not `Name: value`"))?;
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
            || reqwest::header::HeaderValue::from_str(value).is_err()
        {
            return Err(format!(
                "upstream_headers: {h:?} is not a valid HTTP header"
            ));
        }
        pairs.push((name.to_owned(), value.to_owned()));
    }
    Ok(HttpUpstream {
        url: parsed,
        headers: pairs,
        timeout,
        unreachable_for,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_loader_defaults_are_the_settings_table() {
        use clap::{CommandFactory, Parser};
        use jetway_shared::config::settings::check;
        let cmd = Args::command();
        let problems = check::help_defaults(&cmd, &JETWAY_WORKER, &[]);
        assert!(problems.is_empty(), "{problems:#?}");
        let problems = check::loader_defaults(&cmd, &JETWAY_WORKER, |flags| {
            let argv = std::iter::once("jetway-worker".to_owned()).chain(flags.iter().cloned());
            let args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
            Config::load(&args).map_err(|e| e.to_string())
        });
        assert!(problems.is_empty(), "{problems:#?}");
        // The settings without a value: no upstream (built-in tools).
        let cfg = Config::load(&Args::default()).expect("defaults are valid");
        assert_eq!(cfg.upstream, None);
    }
}
