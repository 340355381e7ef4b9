//! What a scenario runs against: a nats-server with JetStream on a temp store
//! and random ports, Jetway gateways and workers, and the rmcp baseline —
//! all real processes, started and stopped by the benchmark itself.
//!
//! Binaries come from [`Bins`]: `jetway-gateway`, `jetway-worker`,
//! `jetway-baseline` (and the optional `jetway` CLI) beside the running
//! `jetway-bench` unless `--bin-dir` says otherwise; `nats-server` from
//! `--nats-server`, `NATS_SERVER_BIN`, `<workspace>/.local/bin/nats-server`
//! (installed by `scripts/install-nats.sh`) or `PATH`.

use crate::procs::Proc;
use anyhow::{Context, Result, anyhow, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
            None => find_nats_server()?,
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

/// The workspace this binary was built from.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn find_nats_server() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN").filter(|b| !b.is_empty()) {
        return Ok(PathBuf::from(bin));
    }
    let local = workspace_root().join(".local/bin/nats-server");
    if local.is_file() {
        return Ok(local);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("nats-server not found: run scripts/install-nats.sh"))
}

/// Where processes write their logs.
#[derive(Debug, Clone)]
pub struct Env {
    pub bins: Bins,
    pub log_dir: PathBuf,
}

/// A nats-server with JetStream on a temp store, random client and monitoring ports.
pub struct Nats {
    pub proc: Proc,
    pub url: String,
    pub monitor: String,
    _store: tempfile::TempDir,
}

impl Nats {
    pub async fn start(env: &Env, name: &str) -> Result<Self> {
        let store = tempfile::Builder::new()
            .prefix("jetway-bench-nats-")
            .tempdir()
            .context("creating the NATS store directory")?;
        let args = [
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            "-m",
            "-1",
            "-sd",
            &store.path().to_string_lossy(),
        ]
        .map(String::from);
        let proc = Proc::spawn(name, &env.bins.nats_server, &args, &[], &env.log_dir)?;
        let client = proc
            .wait_for_line("Listening for client connections on ", START_TIMEOUT)
            .await?;
        let monitor = proc
            .wait_for_line("Starting http monitor on ", START_TIMEOUT)
            .await?;
        proc.wait_for_line("Server is ready", START_TIMEOUT).await?;
        Ok(Self {
            url: format!("nats://{}", addr_after(&client, "connections on ")?),
            monitor: format!("http://{}", addr_after(&monitor, "monitor on ")?),
            proc,
            _store: store,
        })
    }

    /// Stops the server (its store goes with it).
    pub async fn stop(mut self) {
        self.proc.stop(STOP_GRACE).await;
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

/// A `jetway-gateway` process.
pub struct Gateway {
    pub proc: Proc,
    pub url: String,
}

/// A `jetway-worker` process.
pub struct Worker {
    pub proc: Proc,
    pub instance: String,
}

/// The rmcp baseline server process.
pub struct Baseline {
    pub proc: Proc,
    pub url: String,
}

impl Baseline {
    pub async fn start(env: &Env, name: &str) -> Result<Self> {
        let bin = env.bins.require("jetway-baseline")?;
        let args = ["--listen", "127.0.0.1:0"].map(String::from);
        let proc = Proc::spawn(name, &bin, &args, &[], &env.log_dir)?;
        let line = proc.wait_for_line("listening on ", START_TIMEOUT).await?;
        let url = format!("http://{}/mcp", addr_after(&line, "listening on ")?);
        Ok(Self { proc, url })
    }

    pub async fn stop(mut self) {
        self.proc.stop(STOP_GRACE).await;
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
        let id = format!("{}-gw{}", self.name, i + 1);
        let mut args: Vec<String> = [
            "--nats-url",
            &self.nats.url,
            "--instance-id",
            &id,
            "--listen",
            "127.0.0.1:0",
            "--grace-period-secs",
            "1",
        ]
        .map(String::from)
        .to_vec();
        let mut bin = self.env.bins.require("jetway-gateway")?;
        // Profiling: run the gateway under a tool, e.g.
        // JETWAY_BENCH_GATEWAY_WRAPPER="valgrind --tool=massif".
        if let Ok(wrapper) = std::env::var(GATEWAY_WRAPPER) {
            let mut words = wrapper.split_whitespace().map(str::to_owned);
            if let Some(tool) = words.next() {
                let rest: Vec<String> = words.chain([bin.to_string_lossy().into_owned()]).collect();
                args.splice(0..0, rest);
                bin = PathBuf::from(tool);
            }
        }
        let proc = Proc::spawn(&id, &bin, &args, &[], &self.env.log_dir)?;
        let line = proc.wait_for_line("listening on ", START_TIMEOUT).await?;
        let addr = addr_after(&line, "listening on ")?;
        wait_ready(&format!("http://{addr}/readyz")).await?;
        self.gateways.push(Gateway {
            proc,
            url: format!("http://{addr}/mcp"),
        });
        Ok(())
    }

    /// Starts one more worker and waits until it pulls.
    pub async fn add_worker(&mut self, extra: &[&str]) -> Result<()> {
        self.started_workers += 1;
        let id = format!("{}-wk{}", self.name, self.started_workers);
        let bin = self.env.bins.require("jetway-worker")?;
        let mut args: Vec<String> = [
            "--nats-url",
            &self.nats.url,
            "--instance-id",
            &id,
            "--grace-period-secs",
            "1",
            "--listen",
            "127.0.0.1:0",
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        let proc = Proc::spawn(&id, &bin, &args, &[], &self.env.log_dir)?;
        let line = proc.wait_for_line("listening on ", START_TIMEOUT).await?;
        let addr = addr_after(&line, "listening on ")?;
        wait_ready(&format!("http://{addr}/readyz")).await?;
        self.workers.push(Worker { proc, instance: id });
        Ok(())
    }

    /// The gateways' `/mcp` URLs.
    pub fn urls(&self) -> Vec<String> {
        self.gateways.iter().map(|g| g.url.clone()).collect()
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
            g.proc.stop(grace).await;
        }
        for w in &mut self.workers {
            w.proc.stop(STOP_GRACE).await;
        }
        self.nats.proc.stop(STOP_GRACE).await;
    }
}

/// The socket address following `marker` in a log line (tolerates quotes,
/// `key=value` and trailing punctuation).
fn addr_after(line: &str, marker: &str) -> Result<SocketAddr> {
    let rest = line
        .split_once(marker)
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("no {marker:?} in {line:?}"))?;
    let token = rest.split_whitespace().next().unwrap_or_default();
    let token = token.rsplit_once('=').map_or(token, |(_, v)| v);
    let token = token.trim_matches('"').trim_start_matches("http://");
    let token = token.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != ']');
    token
        .parse()
        .with_context(|| format!("no address in {line:?}"))
}

async fn wait_ready(url: &str) -> Result<()> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{url} not ready within {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::addr_after;

    #[test]
    fn addresses_from_log_lines() {
        let nats = "[1] 2026/01/01 [INF] Listening for client connections on 127.0.0.1:4222";
        assert_eq!(
            addr_after(nats, "connections on ").map(|a| a.port()).ok(),
            Some(4222)
        );
        let gw = "2026-01-01T00:00:00Z  INFO jetway_gateway: listening on 127.0.0.1:39999";
        assert_eq!(
            addr_after(gw, "listening on ").map(|a| a.port()).ok(),
            Some(39999)
        );
    }
}
