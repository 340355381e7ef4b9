//! `worker::Config`: the worker's settings (see `jetway_shared::config` for
//! the loading rules and the bus settings shared with gateways).

use jetway_shared::config::{Bus, CommonArgs, ConfigError, Fields, figment};
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
    /// Requests executed at once by this worker. [default: 64]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
    /// Address of the worker's HTTP port (`/healthz`, `/readyz`). [default: 127.0.0.1:9090]
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
    pub listen: SocketAddr,
    pub max_concurrency: usize,
    pub ack_wait: Duration,
    pub deadline: Duration,
    pub max_deliver: i64,
    pub grace_period: Duration,
}

const KEYS: &[&str] = &[
    "listen",
    "max_concurrency",
    "ack_wait_secs",
    "deadline_secs",
    "max_deliver",
    "grace_period_secs",
];

impl Config {
    /// Loads defaults < file < env < flags, reporting every problem at once.
    pub fn load(args: &Args) -> Result<Self, ConfigError> {
        let file = args.common.config.as_ref();
        let mut f = Fields::new(figment(file, args), file, &[Bus::KEYS, KEYS]);
        let bus = Bus::from_fields(&mut f);
        let listen: String = f.get("listen", DEFAULT_LISTEN.to_owned());
        let parsed_listen = listen.parse::<SocketAddr>();
        if parsed_listen.is_err() {
            f.problem(format!(
                "listen: {listen:?} is not an address like {DEFAULT_LISTEN}"
            ));
        }
        let cfg = Self {
            bus,
            listen: parsed_listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9090))),
            max_concurrency: f.get("max_concurrency", 64),
            ack_wait: Duration::from_secs(f.get("ack_wait_secs", 2)),
            deadline: Duration::from_secs(f.get("deadline_secs", 600)),
            max_deliver: f.get("max_deliver", 5),
            grace_period: Duration::from_secs(f.get("grace_period_secs", 20)),
        };
        if cfg.max_concurrency == 0 {
            f.problem("max_concurrency: must be at least 1");
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
