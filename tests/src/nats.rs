//! A real `nats-server` with JetStream, owned by a test.
//!
//! [`NatsServer::start`] runs `nats-server -js -a 127.0.0.1 -p -1 -sd <tmp>`:
//! the OS picks the port, which is read from the server's log line
//! `Listening for client connections on 127.0.0.1:PORT`, and the guard waits
//! for `Server is ready`. [`NatsServer::restart`] brings it back on the same
//! port with the same store directory (so JetStream state survives, as after
//! a crash). Dropping the guard kills the server and deletes the directory.
//!
//! The binary is `NATS_SERVER_BIN` if set, else `<workspace>/.local/bin/nats-server`
//! (installed by `scripts/install-nats.sh`), else `nats-server` on `PATH`.
//!
//! For cluster tests, [`NatsServerBuilder`] takes a config file text, a fixed
//! port and extra flags; [`free_port`] asks the OS for an unused port.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::log::ProcessLog;
use crate::process::{ProcessGuard, workspace_root};

/// How long a nats-server may take to report ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

const LISTEN_MARKER: &str = "Listening for client connections on ";
const READY_MARKER: &str = "Server is ready";

/// Locate the nats-server binary (see the module docs for the order).
pub fn nats_server_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("NATS_SERVER_BIN={} does not exist", bin.display());
        }
        return Ok(bin);
    }
    let local = workspace_root().join(".local/bin/nats-server");
    if local.is_file() {
        return Ok(local);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "nats-server not found: run scripts/install-nats.sh (installs {}), \
         or set NATS_SERVER_BIN, or put nats-server on PATH",
        local.display()
    )
}

/// A port that was free a moment ago (bind to port 0, read it, release it).
/// Only for configs that must name ports up front, such as cluster routes.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Options for a [`NatsServer`] beyond the defaults.
#[derive(Debug, Default, Clone)]
pub struct NatsServerBuilder {
    config: Option<String>,
    port: Option<u16>,
    args: Vec<OsString>,
    name: Option<String>,
}

impl NatsServerBuilder {
    /// Use this config file text (written to `<tmp>/nats.conf`, passed with
    /// `-c`). Command-line flags (`-js -a -p -sd`) still apply and win.
    pub fn config(mut self, text: impl Into<String>) -> Self {
        self.config = Some(text.into());
        self
    }

    /// Listen on this client port instead of an OS-chosen one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// An extra command-line argument (e.g. `--cluster_name`, `-n`).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Label for log output (default `nats`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Start the server and wait until it is ready.
    pub async fn start(self) -> Result<NatsServer> {
        let bin = nats_server_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("jetway-nats-")
            .tempdir()
            .context("creating nats temp dir")?;
        let store = dir.path().join("store");
        std::fs::create_dir_all(&store).context("creating store dir")?;
        let config = match &self.config {
            Some(text) => {
                let path = dir.path().join("nats.conf");
                std::fs::write(&path, text).context("writing nats.conf")?;
                Some(path)
            }
            None => None,
        };
        let name = self.name.unwrap_or_else(|| "nats".to_owned());
        let log = ProcessLog::new(name.clone());
        let mut server = NatsServer {
            process: None,
            log,
            bin,
            dir,
            store,
            config,
            extra_args: self.args,
            name,
            addr: SocketAddr::from(([127, 0, 0, 1], self.port.unwrap_or(0))),
        };
        server.spawn(self.port).await?;
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
    addr: SocketAddr,
}

impl NatsServer {
    /// Start a single JetStream server on an OS-chosen port.
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    /// Options: config file, fixed port, extra flags.
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    async fn spawn(&mut self, port: Option<u16>) -> Result<()> {
        let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let mut args: Vec<OsString> = Vec::new();
        if let Some(conf) = &self.config {
            args.push("-c".into());
            args.push(conf.into());
        }
        for a in ["-js", "-a", "127.0.0.1", "-p", &port_arg, "-sd"] {
            args.push(a.into());
        }
        args.push(self.store.clone().into());
        args.extend(self.extra_args.iter().cloned());

        let from = self.log.position();
        let process = ProcessGuard::spawn(&self.bin, &args, &[], self.log.clone())?;
        self.process = Some(process);
        let addr: SocketAddr = self
            .log
            .wait_for(from, START_TIMEOUT, |line| {
                let rest = &line[line.find(LISTEN_MARKER)? + LISTEN_MARKER.len()..];
                rest.split_whitespace().next()?.parse().ok()
            })
            .await
            .context("nats-server did not report its client port")?;
        self.log
            .wait_for_text(from, START_TIMEOUT, READY_MARKER)
            .await
            .context("nats-server did not become ready")?;
        self.addr = SocketAddr::from(([127, 0, 0, 1], addr.port()));
        self.log
            .set_prefix(format!("{}:{}", self.name, addr.port()));
        Ok(())
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

    /// Sends `sig` to the server (e.g. SIGSTOP/SIGCONT to freeze it with
    /// its connections open).
    pub fn signal(&mut self, sig: rustix::process::Signal) -> Result<()> {
        match self.process.as_mut() {
            Some(p) => p.signal(sig),
            None => anyhow::bail!("nats-server is not running"),
        }
    }

    /// SIGTERM the server (clean shutdown) and wait for it to exit.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<()> {
        if let Some(p) = self.process.as_mut() {
            p.terminate(timeout).await?;
        }
        Ok(())
    }

    /// Start the server again on the same port and store directory, killing
    /// it first if it still runs. Fails if another process took the port.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill().await?;
        self.process = None;
        let port = self.addr.port();
        self.spawn(Some(port))
            .await
            .with_context(|| format!("restarting nats-server on port {port}"))
    }
}
