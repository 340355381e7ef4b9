//! [`Jetway`]: a `jetway-gateway` or `jetway-worker` process, one generic
//! type over the [`Role`] that names the binary.
//!
//! It runs `<binary> --nats-url URL --instance-id ID --listen 127.0.0.1:0
//! [args]`, learns its address from its `listening on ADDR` line, and is
//! ready when `GET /readyz` there answers 200. SIGKILLed on drop.

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crate::bins::jetway_bin;
use crate::error::Result;
use crate::instance::{jetway_args, next_instance_id};
use crate::launch::{Launch, launch_methods};
use crate::log::ProcessLog;
use crate::nats_users::{self, NatsRole};
use crate::process::ProcessGuard;
use crate::service::{Service, ServiceBuilder};

/// Which Jetway binary a [`Jetway`] runs.
pub trait Role: std::fmt::Debug + Clone + Send + Sync + 'static {
    /// The binary's name in the target directory.
    const BIN: &'static str;
    /// The prefix of generated instance ids (`gw-1`, `wk-1`).
    const ID_PREFIX: &'static str;
    /// The NATS user of this role in the shipped permissions.
    const NATS_ROLE: NatsRole;
}

/// Options for starting a [`Jetway`] process.
#[derive(Debug, Clone)]
pub struct JetwayBuilder<R: Role> {
    nats_url: String,
    instance_id: Option<String>,
    bin: Option<PathBuf>,
    launch: Launch,
    role: PhantomData<R>,
}

impl<R: Role> JetwayBuilder<R> {
    /// Use this instance id (default: generated, unique per process).
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// Run this binary (default: [`jetway_bin`]`(R::BIN)`).
    pub fn bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.bin = Some(path.into());
        self
    }

    launch_methods!();

    /// Spawn the process and wait until `/readyz` answers 200.
    pub async fn start(self) -> Result<Jetway<R>> {
        let bin = match self.bin {
            Some(bin) => bin,
            None => jetway_bin(R::BIN)?,
        };
        let id = self
            .instance_id
            .unwrap_or_else(|| next_instance_id(R::ID_PREFIX));
        let mut launch = self.launch;
        launch.args.splice(0..0, jetway_args(&self.nats_url, &id));
        if nats_users::enabled() && !nats_users::has_credentials(launch.envs.iter().map(|(k, _)| k))
        {
            for (k, v) in R::NATS_ROLE.client_env() {
                launch.envs.push((k.into(), v.into()));
            }
        }
        let service = ServiceBuilder::new(id.clone(), bin)
            .with_launch(launch)
            .start()
            .await?;
        Ok(Jetway {
            base_url: service.base_url(),
            service,
            id,
            role: PhantomData,
        })
    }
}

/// A running Jetway process.
#[derive(Debug)]
pub struct Jetway<R: Role> {
    service: Service,
    id: String,
    base_url: String,
    role: PhantomData<R>,
}

impl<R: Role> Jetway<R> {
    /// Start one with default options.
    pub async fn start(nats_url: &str) -> Result<Self> {
        Self::builder(nats_url).start().await
    }

    /// Options: instance id, extra args, environment, binary, log file.
    pub fn builder(nats_url: &str) -> JetwayBuilder<R> {
        JetwayBuilder {
            nats_url: nats_url.to_owned(),
            instance_id: None,
            bin: None,
            launch: Launch::default(),
            role: PhantomData,
        }
    }

    /// `http://127.0.0.1:PORT` (a worker's is its health port).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.service.addr()
    }

    /// The `--instance-id` it was started with.
    pub fn instance_id(&self) -> &str {
        &self.id
    }

    /// The captured output (stdout and stderr, ANSI stripped).
    pub fn log(&self) -> &ProcessLog {
        self.service.log()
    }

    /// The OS process id it was started with.
    pub fn pid(&self) -> u32 {
        self.service.pid()
    }

    /// The process guard, for signals and exit checks.
    pub fn process(&mut self) -> &mut ProcessGuard {
        self.service.process()
    }

    /// SIGKILL it (a crash) and wait until it is gone.
    pub async fn kill(&mut self) -> Result<ExitStatus> {
        self.service.kill().await
    }

    /// SIGTERM it and wait up to `timeout` for it to exit.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.service.terminate(timeout).await
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) -> Result<ExitStatus> {
        self.service.stop(grace).await
    }
}
