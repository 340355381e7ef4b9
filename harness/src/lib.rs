//! Starting, waiting for and stopping the processes Jetway's integration
//! tests (`jetway-tests`) and benchmark (`jetway-bench`) run.
//!
//! Everything is a real process: a `nats-server` with JetStream (alone or
//! clustered), the `jetway-gateway` and `jetway-worker` binaries, upstream
//! MCP servers, any HTTP server binary. Each is a guard that kills its
//! process on `Drop`. Gateways and workers listen on OS-chosen ports (port
//! 0), nats-server and upstreams on ports picked by [`free_port`] (they may
//! restart on them); each is learned from the process's own `listening on
//! ADDR` line; readiness is always asked of an
//! endpoint (`/readyz`, nats-server's `/healthz?js-enabled-only=true`), and
//! every wait has a deadline.
//!
//! Layout:
//! - [`nats`]: [`NatsServer`] and [`NatsServerBuilder`] — temp store, free
//!   ports, `kill`, `restart` (same ports, same store).
//! - [`nats_users`]: the shipped least-privilege NATS users
//!   (`deploy/nats/permissions.conf`), [`NatsRole`](nats_users::NatsRole).
//! - [`cluster`]: [`NatsCluster`] — nodes from config files, or
//!   [`NatsCluster::local`]; healthy when every node's `/healthz` is.
//! - [`jetway`]: [`Jetway`](jetway::Jetway), a gateway or worker process, generic over its role;
//!   [`gateway`], [`worker`]: the roles, [`Gateway`] / [`GatewayBuilder`] and
//!   [`Worker`] / [`WorkerBuilder`].
//! - [`service`]: [`Service`] / [`ServiceBuilder`], any HTTP server binary
//!   that logs `listening on ADDR` (the gateway and worker are built on it).
//! - [`upstream`]: [`Upstream`], real upstream MCP servers for the bridge.
//! - [`lb`]: [`LoadBalancer`], a real HAProxy in front of gateways: round
//!   robin, no stickiness, optionally under a path prefix.
//! - [`process`]: [`ProcessGuard`], a child process with captured output.
//! - [`log`]: [`ProcessLog`], that output (`JETWAY_TEST_LOG=1` forwards it
//!   to stderr; an optional file copy).
//! - [`ready`]: waiting for an endpoint's answer ([`Ready`]).
//! - [`listen`]: [`free_port`], and reading a bound address from a log line.
//! - [`bins`]: where binaries come from ([`jetway_bin`], [`nats_server_bin`]).
//! - [`error`]: [`HarnessError`], what every call can fail with.
//! - `launch`, `instance`: the options builders share; Jetway's common flags.
//!
//! ```no_run
//! # async fn demo() -> jetway_harness::Result<()> {
//! use jetway_harness::{Gateway, NatsServer, Worker};
//!
//! let nats = NatsServer::start().await?;
//! let _worker = Worker::start(&nats.url()).await?;
//! let gw = Gateway::builder(&nats.url()).instance_id("gw-1").start().await?;
//! println!("MCP endpoint: {}", gw.mcp_url());
//! # Ok(()) }
//! ```

pub mod bins;
pub mod cluster;
pub mod error;
pub mod gateway;
mod instance;
pub mod jetway;
mod launch;
pub mod lb;
pub mod listen;
pub mod log;
pub mod nats;
pub mod nats_users;
pub mod process;
pub mod ready;
pub mod service;
pub mod upstream;
pub mod worker;

pub use bins::{jetway_bin, jetway_bin_dir, nats_server_bin, target_dir, workspace_root};
pub use cluster::NatsCluster;
pub use error::{HarnessError, Result};
pub use gateway::{Gateway, GatewayBuilder};
pub use launch::START_TIMEOUT;
pub use lb::{LoadBalancer, LoadBalancerBuilder};
pub use listen::{free_port, parse_listening_line};
pub use log::ProcessLog;
pub use nats::{NatsServer, NatsServerBuilder};
pub use process::ProcessGuard;
pub use ready::Ready;
pub use service::{Service, ServiceBuilder};
pub use upstream::Upstream;
pub use worker::{Worker, WorkerBuilder};

#[cfg(test)]
mod unit;
