//! A real `nats-server` with JetStream.
//!
//! [`NatsServer::start`] runs `nats-server -js -a 127.0.0.1 -p P -m M -sd
//! <tmp>/store`, the client and monitoring ports picked by
//! [`crate::free_port`] below the OS's ephemeral range (so that no outgoing
//! connection takes one before a restart binds it again); the bound
//! addresses are read from the server's lines `Listening for client
//! connections on ADDR` and `Starting http monitor on ADDR`.
//! The server is ready when `GET /healthz?js-enabled-only=true` on the
//! monitoring port answers 200: it accepts connections and JetStream is
//! enabled (for a clustered node, before the cluster has a meta leader; see
//! [`crate::NatsCluster`] for the cluster's own health).
//!
//! [`NatsServer::restart`] brings it back on the same ports with the same
//! store directory (so JetStream state survives, as after a crash).
//! Dropping the guard kills the server and deletes the directory.
//!
//! [`NatsServerBuilder`] takes a config file text, fixed ports, extra flags,
//! another binary and a log directory. The monitoring endpoint always runs:
//! `-m` comes from [`NatsServerBuilder::monitor_port`] or is picked, and
//! it overrides a config file's `http` (command-line flags win in
//! nats-server).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use rustix::process::Signal;

use crate::bins::nats_server_bin;
use crate::error::{HarnessError, Result};
use crate::launch::Launch;
use crate::listen::{free_port, wait_address};
use crate::log::ProcessLog;
use crate::nats_users;
use crate::process::ProcessGuard;
use crate::ready::{Ready, wait_ready};

const CLIENT_MARKER: &str = "Listening for client connections on ";
const MONITOR_MARKER: &str = "Starting http monitor on ";

/// Options for a [`NatsServer`] beyond the defaults.
#[derive(Debug, Default, Clone)]
pub struct NatsServerBuilder {
    config: Option<String>,
    port: Option<u16>,
    monitor_port: Option<u16>,
    args: Vec<OsString>,
    name: Option<String>,
    bin: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    start_timeout: Option<Duration>,
    jetway_users: Option<bool>,
}

impl NatsServerBuilder {
    /// Use this config file text (written to `<tmp>/nats.conf`, passed with
    /// `-c`). Command-line flags (`-js -a -p -m -sd`) still apply and win.
    pub fn config(mut self, text: impl Into<String>) -> Self {
        self.config = Some(text.into());
        self
    }

    /// Listen on this client port instead of a picked one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Serve monitoring (`/healthz`, `/jsz`, …) on this port instead of a
    /// picked one.
    pub fn monitor_port(mut self, port: u16) -> Self {
        self.monitor_port = Some(port);
        self
    }

    /// An extra command-line argument (e.g. `--cluster_name`, `-n`).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Label for log output and the log file (default `nats`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Run this binary (default: [`nats_server_bin`]).
    pub fn bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.bin = Some(path.into());
        self
    }

    /// Also write the output to `<dir>/<name>.log`.
    pub fn log_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.log_dir = Some(dir.into());
        self
    }

    /// How long to wait for readiness (default [`crate::START_TIMEOUT`]).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = Some(timeout);
        self
    }

    /// Require the shipped least-privilege users
    /// ([`crate::nats_users`]): gateways, workers and operators then need
    /// their role's user, and the server's log is checked for permission
    /// violations when it is dropped. By default only when
    /// `JETWAY_TEST_NATS_USERS=1` and neither a config nor flags are given.
    pub fn jetway_users(mut self) -> Self {
        self.jetway_users = Some(true);
        self
    }

    /// Start the server and wait until it is ready.
    pub async fn start(mut self) -> Result<NatsServer> {
        let jetway_users = self.jetway_users.unwrap_or_else(|| {
            nats_users::enabled() && self.config.is_none() && self.args.is_empty()
        });
        if jetway_users {
            self.config = Some(nats_users::server_config()?);
        }
        let bin = match self.bin {
            Some(bin) => bin,
            None => nats_server_bin()?,
        };
        let dir = tempfile::Builder::new()
            .prefix("jetway-nats-")
            .tempdir()
            .map_err(HarnessError::io("creating the nats-server temp dir"))?;
        let store = dir.path().join("store");
        std::fs::create_dir_all(&store)
            .map_err(HarnessError::io(format!("creating {}", store.display())))?;
        let config = match &self.config {
            Some(text) => {
                let path = dir.path().join("nats.conf");
                std::fs::write(&path, text)
                    .map_err(HarnessError::io(format!("writing {}", path.display())))?;
                Some(path)
            }
            None => None,
        };
        let name = self.name.unwrap_or_else(|| "nats".to_owned());
        let envs = if jetway_users {
            nats_users::server_env()
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect()
        } else {
            Vec::new()
        };
        let launch = Launch {
            log_dir: self.log_dir,
            start_timeout: self.start_timeout.unwrap_or(crate::START_TIMEOUT),
            envs,
            ..Launch::default()
        };
        let log = launch.log(&name)?;
        let mut server = NatsServer {
            process: None,
            log,
            bin,
            dir,
            store,
            config,
            extra_args: self.args,
            name,
            launch,
            jetway_users,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            monitor: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        // Ports picked up front (not nats-server's `-1`), below the OS's
        // ephemeral range: a restart must find them still free.
        let port = self.port.map_or_else(free_port, Ok)?;
        let monitor_port = self.monitor_port.map_or_else(free_port, Ok)?;
        server.spawn(port, monitor_port).await?;
        Ok(server)
    }
}

/// A running nats-server with JetStream on a temporary store directory.
#[derive(Debug)]
pub struct NatsServer {
    // Declared first so it is dropped (killed) before `dir` is removed.
    process: Option<ProcessGuard>,
    log: ProcessLog,
    bin: PathBuf,
    dir: tempfile::TempDir,
    store: PathBuf,
    config: Option<PathBuf>,
    extra_args: Vec<OsString>,
    name: String,
    launch: Launch,
    /// Runs the shipped least-privilege users: violations fail the test.
    jetway_users: bool,
    addr: SocketAddr,
    monitor: SocketAddr,
}

impl NatsServer {
    /// Start a single JetStream server on picked ports.
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    /// Options: config file, fixed ports, extra flags.
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    async fn spawn(&mut self, port: u16, monitor_port: u16) -> Result<()> {
        let port_arg = port.to_string();
        let monitor_arg = monitor_port.to_string();
        let mut args: Vec<OsString> = Vec::new();
        if let Some(conf) = &self.config {
            args.push("-c".into());
            args.push(conf.into());
        }
        for a in [
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &port_arg,
            "-m",
            &monitor_arg,
            "-sd",
        ] {
            args.push(a.into());
        }
        args.push(self.store.clone().into());
        args.extend(self.extra_args.iter().cloned());

        let from = self.log.position();
        let timeout = self.launch.start_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let cmd = self.launch.command(&self.bin, &args);
        let process = self
            .process
            .insert(ProcessGuard::spawn(cmd, self.log.clone())?);
        // The bound addresses, as the server reports them.
        let monitor = wait_address(&self.log, from, MONITOR_MARKER, timeout).await?;
        let addr = wait_address(&self.log, from, CLIENT_MARKER, timeout).await?;
        let healthz = format!("http://{monitor}/healthz?js-enabled-only=true");
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        wait_ready(process, &healthz, Ready::Ok, left).await?;
        self.addr = addr;
        self.monitor = monitor;
        self.log
            .set_prefix(format!("{}:{}", self.name, addr.port()));
        Ok(())
    }

    /// The permission violations the server logged (clients that tried a
    /// subject their user may not use).
    pub fn permission_violations(&self) -> Vec<String> {
        self.log
            .lines()
            .into_iter()
            .filter(|l| l.contains(nats_users::VIOLATION_MARKER))
            .collect()
    }

    /// The violations logged so far, for a test that provokes them on
    /// purpose: they no longer fail the test when the server is dropped.
    pub fn expect_violations(&mut self) -> Vec<String> {
        self.jetway_users = false;
        self.permission_violations()
    }

    /// Client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The client address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The monitoring port (`/healthz`, `/varz`, `/jsz`, …).
    pub fn monitor_port(&self) -> u16 {
        self.monitor.port()
    }

    /// `http://127.0.0.1:PORT` of the monitoring endpoint.
    pub fn monitor_url(&self) -> String {
        format!("http://{}", self.monitor)
    }

    /// The JetStream store directory (`-sd`), kept across restarts.
    pub fn store_dir(&self) -> &Path {
        &self.store
    }

    /// The temporary directory holding the store and `nats.conf` (removed
    /// on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's captured output.
    pub fn log(&self) -> &ProcessLog {
        &self.log
    }

    /// The OS process id of the server started last.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ProcessGuard::spawned_pid)
    }

    /// The guard of the server started last.
    pub(crate) fn process(&self) -> Option<&ProcessGuard> {
        self.process.as_ref()
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(ProcessGuard::is_running)
    }

    /// SIGKILL the server (a crash: no clean JetStream shutdown) and wait
    /// until it is gone. The store directory is kept.
    pub async fn kill(&mut self) -> Result<()> {
        if let Some(p) = self.process.as_mut() {
            p.kill().await?;
        }
        Ok(())
    }

    /// Sends `signal` to the server (e.g. SIGSTOP/SIGCONT to freeze it with
    /// its connections open).
    pub fn signal(&mut self, signal: Signal) -> Result<()> {
        match self.process.as_mut() {
            Some(p) => p.signal(signal),
            None => Err(HarnessError::Exited {
                name: self.log.prefix(),
                what: format!("is not running: cannot send {signal:?}"),
                tail: self.log.tail_text(),
            }),
        }
    }

    /// SIGTERM the server (clean shutdown) and wait for it to exit.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<()> {
        if let Some(p) = self.process.as_mut() {
            p.terminate(timeout).await?;
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) -> Result<Option<ExitStatus>> {
        match self.process.as_mut() {
            Some(p) => p.stop(grace).await.map(Some),
            None => Ok(None),
        }
    }

    /// Start the server again on the same ports and store directory, killing
    /// it first if it still runs. Fails if another process took a port.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill().await?;
        self.process = None;
        self.spawn(self.addr.port(), self.monitor.port()).await
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if !self.jetway_users || std::thread::panicking() {
            return;
        }
        let violations = self.permission_violations();
        assert!(
            violations.is_empty(),
            "{} logged permission violations of {}:\n{}",
            self.name,
            nats_users::PERMISSIONS_FILE,
            violations.join("\n")
        );
    }
}
