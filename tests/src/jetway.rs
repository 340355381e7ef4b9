//! Jetway gateway and worker processes, owned by a test.
//!
//! [`Gateway`] runs `jetway-gateway --nats-url URL --instance-id ID
//! --listen 127.0.0.1:0 [args]`, learns its address from the log line
//! `listening on ADDR`, then polls `GET /readyz` until it answers 200.
//! [`Worker`] runs `jetway-worker --nats-url URL --instance-id ID --listen
//! 127.0.0.1:0 [args]` and waits the same way on its health port. Both are SIGKILLed on drop
//! and print their last output lines when dropped during a panic.
//!
//! Binaries come from [`crate::process::jetway_bin`].

use std::ffi::OsString;
use std::net::SocketAddr;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::log::ProcessLog;
use crate::process::{ProcessGuard, jetway_bin};

/// How long a gateway or worker may take to become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

const LISTENING_MARKER: &str = "listening on ";

/// A unique-enough instance id: `<kind>-<pid>-<n>`.
fn next_instance_id(kind: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{kind}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Parse the socket address following `listening on ` in a log line
/// (tolerates an `http://` prefix and trailing punctuation).
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(LISTENING_MARKER)? + LISTENING_MARKER.len()..];
    let token = rest.split_whitespace().next()?;
    // `addr=127.0.0.1:1` (a tracing field) or `http://127.0.0.1:1/`.
    let token = token.rsplit_once('=').map_or(token, |(_, v)| v);
    let token = token.trim_matches('"');
    let token = token.strip_prefix("http://").unwrap_or(token);
    let token = token.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != ']');
    let addr: SocketAddr = token.parse().ok()?;
    (addr.port() != 0).then_some(addr)
}

/// Options shared by [`GatewayBuilder`] and [`WorkerBuilder`].
#[derive(Debug, Clone)]
struct Spec {
    nats_url: String,
    instance_id: Option<String>,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    start_timeout: Duration,
}

impl Spec {
    fn new(nats_url: &str) -> Self {
        Self {
            nats_url: nats_url.to_owned(),
            instance_id: None,
            args: Vec::new(),
            envs: Vec::new(),
            start_timeout: START_TIMEOUT,
        }
    }
}

macro_rules! builder_methods {
    () => {
        /// Use this instance id (default: generated, unique per test process).
        pub fn instance_id(mut self, id: impl Into<String>) -> Self {
            self.spec.instance_id = Some(id.into());
            self
        }

        /// Append an extra command-line argument.
        pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
            self.spec.args.push(arg.into());
            self
        }

        /// Append extra command-line arguments.
        pub fn args<I, S>(mut self, args: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: Into<OsString>,
        {
            self.spec.args.extend(args.into_iter().map(Into::into));
            self
        }

        /// Set an environment variable for the process.
        pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
            self.spec.envs.push((key.into(), value.into()));
            self
        }

        /// How long to wait for readiness (default [`START_TIMEOUT`]).
        pub fn start_timeout(mut self, timeout: Duration) -> Self {
            self.spec.start_timeout = timeout;
            self
        }
    };
}

/// Options for starting a [`Gateway`].
#[derive(Debug, Clone)]
pub struct GatewayBuilder {
    spec: Spec,
}

impl GatewayBuilder {
    builder_methods!();

    /// Spawn the gateway and wait until `/readyz` answers 200.
    pub async fn start(self) -> Result<Gateway> {
        let bin = jetway_bin("jetway-gateway")?;
        let id = self
            .spec
            .instance_id
            .clone()
            .unwrap_or_else(|| next_instance_id("gw"));
        let mut args: Vec<OsString> = vec![
            "--nats-url".into(),
            self.spec.nats_url.clone().into(),
            "--instance-id".into(),
            id.clone().into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(self.spec.args.iter().cloned());
        let log = ProcessLog::new(id.clone());
        let process = ProcessGuard::spawn(&bin, &args, &self.spec.envs, log.clone())?;
        let host = wait_listening_and_ready(&process, &id, self.spec.start_timeout).await?;
        Ok(Gateway {
            process,
            id,
            base_url: format!("http://{host}"),
            addr: host,
        })
    }
}

/// Waits for a process's `listening on ADDR` line, then until `GET /readyz`
/// at that address answers 200; returns the address to reach it at.
async fn wait_listening_and_ready(
    process: &ProcessGuard,
    id: &str,
    timeout: Duration,
) -> Result<SocketAddr> {
    let deadline = tokio::time::Instant::now() + timeout;
    let addr = process
        .log()
        .wait_for(0, timeout, parse_listening_line)
        .await
        .with_context(|| format!("{id} did not log `listening on ADDR`"))?;
    let host = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let client = crate::mcp::http_client();
    let url = format!("http://{host}/readyz");
    let mut delay = Duration::from_millis(10);
    loop {
        let last = match client.get(&url).send().await {
            Ok(resp) if resp.status() == reqwest::StatusCode::OK => return Ok(host),
            Ok(resp) => format!("status {}", resp.status()),
            Err(e) => format!("error {e}"),
        };
        if process.log().is_closed() {
            bail!(
                "{id} exited before /readyz returned 200 (last: {last}); last lines:\n{}",
                process.log().tail(40).join("\n")
            );
        }
        if tokio::time::Instant::now() + delay > deadline {
            bail!(
                "{id}: GET {url} did not return 200 in time (last: {last}); last lines:\n{}",
                process.log().tail(40).join("\n")
            );
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

/// A running `jetway-gateway` process.
#[derive(Debug)]
pub struct Gateway {
    process: ProcessGuard,
    id: String,
    base_url: String,
    addr: SocketAddr,
}

impl Gateway {
    /// Start a gateway with default options.
    pub async fn start(nats_url: &str) -> Result<Self> {
        Self::builder(nats_url).start().await
    }

    /// Options: instance id, extra args, environment.
    pub fn builder(nats_url: &str) -> GatewayBuilder {
        GatewayBuilder {
            spec: Spec::new(nats_url),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `http://127.0.0.1:PORT/mcp`.
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base_url)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `--instance-id` it was started with.
    pub fn instance_id(&self) -> &str {
        &self.id
    }

    /// The captured output (stdout and stderr, ANSI stripped).
    pub fn log(&self) -> &ProcessLog {
        self.process.log()
    }

    /// The process guard, for signals and exit checks.
    pub fn process(&mut self) -> &mut ProcessGuard {
        &mut self.process
    }

    /// SIGKILL the gateway (a crash) and wait until it is gone.
    pub async fn kill(&mut self) -> Result<ExitStatus> {
        self.process.kill().await
    }

    /// SIGTERM the gateway and wait up to `timeout` for it to exit.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.process.terminate(timeout).await
    }
}

/// Options for starting a [`Worker`].
#[derive(Debug, Clone)]
pub struct WorkerBuilder {
    spec: Spec,
}

impl WorkerBuilder {
    builder_methods!();

    /// Spawn the worker and wait until its `/readyz` answers 200.
    pub async fn start(self) -> Result<Worker> {
        let bin = jetway_bin("jetway-worker")?;
        let id = self
            .spec
            .instance_id
            .clone()
            .unwrap_or_else(|| next_instance_id("wk"));
        let mut args: Vec<OsString> = vec![
            "--nats-url".into(),
            self.spec.nats_url.clone().into(),
            "--instance-id".into(),
            id.clone().into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(self.spec.args.iter().cloned());
        let log = ProcessLog::new(id.clone());
        let process = ProcessGuard::spawn(&bin, &args, &self.spec.envs, log.clone())?;
        let addr = wait_listening_and_ready(&process, &id, self.spec.start_timeout).await?;
        Ok(Worker { process, id, addr })
    }
}

/// A running `jetway-worker` process.
#[derive(Debug)]
pub struct Worker {
    process: ProcessGuard,
    id: String,
    addr: SocketAddr,
}

impl Worker {
    /// Start a worker with default options.
    pub async fn start(nats_url: &str) -> Result<Self> {
        Self::builder(nats_url).start().await
    }

    /// `http://127.0.0.1:PORT` of the worker's health port.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Options: instance id, extra args, environment.
    pub fn builder(nats_url: &str) -> WorkerBuilder {
        WorkerBuilder {
            spec: Spec::new(nats_url),
        }
    }

    /// The `--instance-id` it was started with.
    pub fn instance_id(&self) -> &str {
        &self.id
    }

    /// The captured output (stdout and stderr, ANSI stripped).
    pub fn log(&self) -> &ProcessLog {
        self.process.log()
    }

    /// The process guard, for signals and exit checks.
    pub fn process(&mut self) -> &mut ProcessGuard {
        &mut self.process
    }

    /// SIGKILL the worker (a crash) and wait until it is gone.
    pub async fn kill(&mut self) -> Result<ExitStatus> {
        self.process.kill().await
    }

    /// SIGTERM the worker and wait up to `timeout` for it to exit.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.process.terminate(timeout).await
    }
}
