//! [`Service`]: an HTTP server process that binds port 0 and logs
//! `listening on ADDR` — Jetway's gateway and worker, the benchmark's rmcp
//! baseline. [`ServiceBuilder::start`] learns the address from that line
//! (the only way to learn a port the OS picked), then waits until `GET` of
//! the readiness path gets the answer [`Ready`] expects.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crate::error::Result;
use crate::launch::{Launch, launch_methods};
use crate::listen::{LISTENING_MARKER, wait_address};
use crate::log::ProcessLog;
use crate::process::ProcessGuard;
use crate::ready::{Ready, wait_ready};

/// Options for starting a [`Service`].
#[derive(Debug, Clone)]
pub struct ServiceBuilder {
    name: String,
    program: PathBuf,
    ready_path: String,
    ready: Ready,
    launch: Launch,
}

impl ServiceBuilder {
    /// Run `program` as `name` (its log label and log file name); ready
    /// when `GET /readyz` answers 200 unless [`ServiceBuilder::ready_when`]
    /// says otherwise. The program must bind port 0 when told to by its
    /// arguments and log `listening on ADDR`.
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            program: program.into(),
            ready_path: "/readyz".into(),
            ready: Ready::Ok,
            launch: Launch::default(),
        }
    }

    /// Ready when `GET <path>` gets an answer `ready` accepts.
    pub fn ready_when(mut self, path: impl Into<String>, ready: Ready) -> Self {
        self.ready_path = path.into();
        self.ready = ready;
        self
    }

    launch_methods!();

    pub(crate) fn with_launch(mut self, launch: Launch) -> Self {
        self.launch = launch;
        self
    }

    /// Spawn the process, learn its address, wait until it is ready.
    pub async fn start(self) -> Result<Service> {
        let log = self.launch.log(&self.name)?;
        let cmd = self.launch.command(&self.program, &[]);
        let process = ProcessGuard::spawn(cmd, log)?;
        let timeout = self.launch.start_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        // The port was bound to :0: its log line is the only place to read it.
        let addr = wait_address(process.log(), 0, LISTENING_MARKER, timeout).await?;
        let url = format!("http://{addr}{}", self.ready_path);
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        wait_ready(&process, &url, self.ready, left).await?;
        Ok(Service {
            process,
            name: self.name,
            addr,
        })
    }
}

/// A running HTTP server process; SIGKILLed on drop.
#[derive(Debug)]
pub struct Service {
    process: ProcessGuard,
    name: String,
    addr: SocketAddr,
}

impl Service {
    /// Options: see [`ServiceBuilder::new`].
    pub fn builder(name: impl Into<String>, program: impl Into<PathBuf>) -> ServiceBuilder {
        ServiceBuilder::new(name, program)
    }

    /// The name it was started as.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADDR<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The captured output (stdout and stderr, ANSI stripped).
    pub fn log(&self) -> &ProcessLog {
        self.process.log()
    }

    /// The OS process id it was started with.
    pub fn pid(&self) -> u32 {
        self.process.spawned_pid()
    }

    /// The process guard, for signals and exit checks.
    pub fn process(&mut self) -> &mut ProcessGuard {
        &mut self.process
    }

    /// SIGKILL (a crash), and wait until it is gone.
    pub async fn kill(&mut self) -> Result<ExitStatus> {
        self.process.kill().await
    }

    /// SIGTERM, and wait up to `timeout` for it to exit.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.process.terminate(timeout).await
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) -> Result<ExitStatus> {
        self.process.stop(grace).await
    }
}
