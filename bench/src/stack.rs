//! What a scenario runs against: a nats-server with JetStream on a temp store
//! and random ports, Jetway gateways and workers, and the rmcp baseline —
//! all real processes, started, awaited and stopped by `jetway-harness`
//! (readiness: `/readyz`, nats-server's `/healthz?js-enabled-only=true`,
//! the baseline answering on `/mcp`). Each process's output goes to
//! `<log dir>/<name>.log`.
//!
//! Binaries come from [`Bins`]: `jetway-gateway`, `jetway-worker`,
//! `jetway-baseline` (and the optional `jetway` CLI) beside the running
//! `jetway-bench` unless `--bin-dir` says otherwise; `nats-server` from
//! `--nats-server`, else as [`jetway_harness::nats_server_bin`] finds it
//! (`NATS_SERVER_BIN`, `<workspace>/.local/bin/nats-server`, `PATH`).

use anyhow::{Context, Result, anyhow};
use jetway_harness::{Gateway, NatsServer, Ready, Service, Worker, nats_server_bin};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use jetway_harness::workspace_root;

/// Environment variable naming a command to run gateways under (profiling).
pub const GATEWAY_WRAPPER: &str = "JETWAY_BENCH_GATEWAY_WRAPPER";

/// The workers' shared durable consumer (`jetway-worker`'s `CONSUMER`).
pub const WORKERS_CONSUMER: &str = "jetway-workers";

/// How long a process may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a process may take to stop on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Bins {
    pub dir: PathBuf,
    pub nats_server: PathBuf,
}

impl Bins {
    pub fn locate(dir: Option<PathBuf>, nats_server: Option<PathBuf>) -> Result<Self> {
        let dir = match dir {
            Some(d) => d,
            None => std::env::current_exe()
                .context("locating jetway-bench")?
                .parent()
                .map(Path::to_path_buf)
                .ok_or_else(|| anyhow!("jetway-bench has no parent directory"))?,
        };
        let nats_server = match nats_server {
            Some(n) => n,
            None => nats_server_bin()?,
        };
        let bins = Self { dir, nats_server };
        for name in ["jetway-gateway", "jetway-worker", "jetway-baseline"] {
            bins.require(name)?;
        }
        Ok(bins)
    }

    /// Path of a binary that must exist.
    pub fn require(&self, name: &str) -> Result<PathBuf> {
        self.optional(name).ok_or_else(|| {
            anyhow!(
                "{name} not found in {} (build the workspace: cargo build --release)",
                self.dir.display()
            )
        })
    }

    /// Path of a binary, if it was built.
    pub fn optional(&self, name: &str) -> Option<PathBuf> {
        Some(self.dir.join(name)).filter(|p| p.is_file())
    }
}

/// Where processes write their logs.
#[derive(Debug, Clone)]
pub struct Env {
    pub bins: Bins,
    pub log_dir: PathBuf,
    /// Variables set for every gateway and worker (`--traces`: the
    /// `JETWAY_OTEL_*` settings).
    pub vars: Vec<(String, String)>,
}

/// A nats-server with JetStream on a temp store, random client and monitoring ports.
pub struct Nats {
    server: NatsServer,
    pid: u32,
    pub url: String,
    /// `http://127.0.0.1:PORT` of the monitoring endpoint.
    pub monitor: String,
}

impl Nats {
    pub async fn start(env: &Env, name: &str) -> Result<Self> {
        let server = NatsServer::builder()
            .name(name)
            .bin(&env.bins.nats_server)
            .log_dir(&env.log_dir)
            .start_timeout(START_TIMEOUT)
            .start()
            .await?;
        Ok(Self {
            pid: server
                .pid()
                .ok_or_else(|| anyhow!("{name} is not running"))?,
            url: server.url(),
            monitor: server.monitor_url(),
            server,
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Stops the server (its store goes with it).
    pub async fn stop(mut self) {
        if let Err(e) = self.server.stop(STOP_GRACE).await {
            tracing::warn!(error = %e, "stopping nats-server");
        }
    }

    /// A client connection of the benchmark's own (measurements, direct loads).
    pub async fn connect(&self) -> Result<async_nats::Client> {
        async_nats::connect(&self.url)
            .await
            .with_context(|| format!("connecting to {}", self.url))
    }

    /// The workers' consumer as JetStream reports it now: its configuration
    /// (the lease in force: `ack_wait`), requests delivered and not yet
    /// acknowledged, requests not yet delivered.
    pub async fn workers_consumer(&self) -> Result<async_nats::jetstream::consumer::Info> {
        let js = async_nats::jetstream::new(self.connect().await?);
        workers_consumer(&js).await
    }

    /// The server's general statistics now (`/varz`: `in_msgs`, `cpu`, ...).
    pub async fn varz(&self, http: &reqwest::Client) -> Result<serde_json::Value> {
        http.get(format!("{}/varz", self.monitor))
            .send()
            .await?
            .json()
            .await
            .context("reading /varz")
    }

    /// JetStream consumers that exist now (`/jsz`).
    pub async fn consumers(&self, http: &reqwest::Client) -> Result<u64> {
        let jsz: serde_json::Value = http
            .get(format!("{}/jsz?consumers=true", self.monitor))
            .send()
            .await?
            .json()
            .await
            .context("reading /jsz")?;
        jsz.get("consumers")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| anyhow!("/jsz without a consumer count"))
    }

    /// Core subscriptions the server holds now (`/subsz`).
    pub async fn subscriptions(&self, http: &reqwest::Client) -> Result<u64> {
        let subsz: serde_json::Value = http
            .get(format!("{}/subsz", self.monitor))
            .send()
            .await?
            .json()
            .await
            .context("reading /subsz")?;
        subsz
            .get("num_subscriptions")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| anyhow!("/subsz without a subscription count"))
    }
}

/// The workers' consumer on partition 0, read through `js`.
pub async fn workers_consumer(
    js: &async_nats::jetstream::Context,
) -> Result<async_nats::jetstream::consumer::Info> {
    let stream = jetway_shared::subjects::stream_name(&Default::default(), 0);
    js.get_stream_no_info(&stream)
        .await
        .with_context(|| format!("stream {stream}"))?
        .consumer_info(WORKERS_CONSUMER)
        .await
        .with_context(|| format!("consumer {WORKERS_CONSUMER} of {stream}"))
}

/// The rmcp baseline server process.
pub struct Baseline {
    service: Service,
    pub url: String,
}

impl Baseline {
    /// Starts `jetway-baseline` on a free port; ready once `/mcp` answers.
    pub async fn start(env: &Env, name: &str) -> Result<Self> {
        let service = Service::builder(name, env.bins.require("jetway-baseline")?)
            .args(["--listen", "127.0.0.1:0"])
            .ready_when("/mcp", Ready::Answers)
            .log_dir(&env.log_dir)
            .clean_env()
            .start_timeout(START_TIMEOUT)
            .start()
            .await?;
        Ok(Self {
            url: service.url("/mcp"),
            service,
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.service.pid()
    }

    pub async fn stop(mut self) {
        if let Err(e) = self.service.stop(STOP_GRACE).await {
            tracing::warn!(error = %e, "stopping the baseline");
        }
    }
}

/// What a [`Stack`] runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spec<'a> {
    pub gateways: usize,
    pub workers: usize,
    pub worker_args: &'a [&'a str],
}

/// One NATS server with the gateways and workers of one configuration.
pub struct Stack {
    pub name: String,
    pub nats: Nats,
    pub gateways: Vec<Gateway>,
    pub workers: Vec<Worker>,
    env: Env,
    started_workers: usize,
}

impl Stack {
    /// NATS, then the workers, then the gateways.
    pub async fn start(env: &Env, name: &str, spec: Spec<'_>) -> Result<Self> {
        let nats = Nats::start(env, &format!("{name}-nats")).await?;
        let mut stack = Self {
            name: name.to_owned(),
            nats,
            gateways: Vec::new(),
            workers: Vec::new(),
            env: env.clone(),
            started_workers: 0,
        };
        for _ in 0..spec.workers {
            stack.add_worker(spec.worker_args).await?;
        }
        for i in 0..spec.gateways {
            stack.add_gateway(i).await?;
        }
        Ok(stack)
    }

    async fn add_gateway(&mut self, i: usize) -> Result<()> {
        let mut gateway = Gateway::builder(&self.nats.url)
            .instance_id(format!("{}-gw{}", self.name, i + 1))
            .bin(self.env.bins.require("jetway-gateway")?)
            .args(["--grace-period-secs", "1"])
            // Every bench client is one address: the per-address quotas
            // would measure themselves, not the gateway.
            .args([
                "--rate-limit-per-sec",
                "0",
                "--max-sessions-per-principal",
                "0",
            ])
            .log_dir(&self.env.log_dir)
            .clean_env()
            .start_timeout(START_TIMEOUT);
        for (k, v) in &self.env.vars {
            gateway = gateway.env(k, v);
        }
        // Profiling: run the gateway under a tool, e.g.
        // JETWAY_BENCH_GATEWAY_WRAPPER="valgrind --tool=massif".
        if let Ok(wrapper) = std::env::var(GATEWAY_WRAPPER) {
            gateway = gateway.wrapper(wrapper.split_whitespace());
        }
        self.gateways.push(gateway.start().await?);
        Ok(())
    }

    /// Starts one more worker and waits until it pulls (its `/readyz`).
    pub async fn add_worker(&mut self, extra: &[&str]) -> Result<()> {
        self.started_workers += 1;
        let mut worker = Worker::builder(&self.nats.url)
            .instance_id(format!("{}-wk{}", self.name, self.started_workers))
            .bin(self.env.bins.require("jetway-worker")?)
            .args(["--grace-period-secs", "1"])
            .args(extra.iter().copied())
            .log_dir(&self.env.log_dir)
            .clean_env()
            .start_timeout(START_TIMEOUT);
        for (k, v) in &self.env.vars {
            worker = worker.env(k, v);
        }
        let worker = worker.start().await?;
        self.workers.push(worker);
        Ok(())
    }

    /// The process id of every gateway, worker and the nats-server, by kind
    /// (`"gateway"`, `"worker"`, `"nats"`).
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        let gateways = self.gateways.iter().map(|g| ("gateway", g.pid()));
        let workers = self.workers.iter().map(|w| ("worker", w.pid()));
        gateways
            .chain(workers)
            .chain([("nats", self.nats.pid())])
            .collect()
    }

    /// The gateways' `/mcp` URLs.
    pub fn urls(&self) -> Vec<String> {
        self.gateways.iter().map(Gateway::mcp_url).collect()
    }

    /// Stops every process (gateways first, NATS last).
    pub async fn stop(mut self) {
        // A profiler writes its data at exit: give it time.
        let grace = if std::env::var_os(GATEWAY_WRAPPER).is_some() {
            Duration::from_secs(60)
        } else {
            STOP_GRACE
        };
        for g in &mut self.gateways {
            if let Err(e) = g.stop(grace).await {
                tracing::warn!(gateway = g.instance_id(), error = %e, "stopping");
            }
        }
        for w in &mut self.workers {
            if let Err(e) = w.stop(STOP_GRACE).await {
                tracing::warn!(worker = w.instance_id(), error = %e, "stopping");
            }
        }
        self.nats.stop().await;
    }
}
