//! Test harness for Jetway's integration tests (`tests/tests/*.rs`).
//!
//! Everything runs for real: a `nats-server` with JetStream, the
//! `jetway-gateway` and `jetway-worker` binaries as child processes, and MCP
//! over HTTP. Each piece is a guard that cleans up on `Drop`, and every wait
//! is for a condition with a deadline, never a fixed sleep.
//!
//! Starting and stopping the processes is [`jetway_harness`]'s job (shared
//! with the benchmark); this crate re-exports it under the paths tests use
//! and adds what only tests need.
//!
//! Layout:
//! - [`cli`]: running `jetway`, the operator CLI, as a process ([`cli::jetway`]).
//! - [`mcp`]: [`McpClient`], a Streamable HTTP MCP client (2025-11-25).
//! - [`http_sse`]: [`http_sse::SseSession`], a raw HTTP+SSE (2024-11-05) client.
//! - [`exchange`]: [`Exchange`] and [`ResponseStream`], what a call returns.
//! - [`gate`]: [`gate::GatedProxy`], a proxy that stops passing on what a
//!   gateway sends, for a client that stops reading.
//! - [`scrape`]: one sample of a process's `/metrics`.
//! - [`sse`]: SSE reading ([`SseStream`], [`SseParser`]) on the `sse-stream` crate.
//! - [`eventually`]: poll a condition until it holds or a deadline passes.
//! - [`issuer`]: [`issuer::TestIssuer`], an OAuth issuer with keys made in the test.
//! - From [`jetway_harness`]: [`NatsServer`], [`NatsCluster`], [`Gateway`],
//!   [`Worker`], [`Upstream`], [`ProcessGuard`], [`ProcessLog`], and the
//!   modules [`jetway`], [`nats`], [`process`], [`log`], [`upstream`] at
//!   their old paths. `JETWAY_TEST_LOG=1` forwards process output to the
//!   test's stderr; guards dropped during a panic print their last lines.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use jetway_tests::{Gateway, McpClient, NatsServer, Worker};
//! use serde_json::json;
//!
//! let nats = NatsServer::start().await?;
//! let _worker = Worker::start(&nats.url()).await?;
//! let gw = Gateway::start(&nats.url()).await?;
//! let client = McpClient::initialize(&gw.mcp_url()).await?;
//! let out = client.call_tool(&gw.mcp_url(), "echo", json!({"text": "hi"})).await?;
//! assert_eq!(out.structured_content()?["text"], "hi");
//! # Ok(()) }
//! ```

// Test-support code: a panic is a test failure, which is what we want.
#![allow(clippy::unwrap_used)]

pub mod cli;
pub mod exchange;
pub mod gate;
pub mod http_sse;
pub mod issuer;
pub mod mcp;
pub mod otlp;
pub mod scrape;
pub mod sse;

/// The gateway and worker starters (`jetway_harness::{gateway, worker}`).
pub mod jetway {
    pub use jetway_harness::gateway::{Gateway, GatewayBuilder};
    pub use jetway_harness::worker::{Worker, WorkerBuilder};
    pub use jetway_harness::{START_TIMEOUT, parse_listening_line};
}

/// The nats-server starter (`jetway_harness::nats`), with [`free_port`]
/// and [`nats_server_bin`](jetway_harness::nats_server_bin).
pub mod nats {
    pub use jetway_harness::nats::{NatsServer, NatsServerBuilder};
    pub use jetway_harness::{NatsCluster, free_port, nats_server_bin};
}

/// Child processes, and where binaries come from (`jetway_harness::{process, bins}`).
pub mod process {
    pub use jetway_harness::bins::{
        jetway_bin, jetway_bin_dir, nats_server_bin, target_dir, workspace_root,
    };
    pub use jetway_harness::process::ProcessGuard;
}

pub use jetway_harness::{log, upstream};

use std::future::Future;
use std::time::Duration;

use anyhow::{Result, bail};
use jetway_shared::backoff::Backoff;

pub use exchange::{Exchange, ResponseStream};
pub use jetway_harness::{
    Gateway, GatewayBuilder, HarnessError, LoadBalancer, NatsCluster, NatsServer,
    NatsServerBuilder, ProcessGuard, ProcessLog, Upstream, Worker, WorkerBuilder, free_port,
    jetway_bin, workspace_root,
};
pub use mcp::{McpClient, PROTOCOL_VERSION};
pub use sse::{SseEvent, SseParser, SseStream};

/// What an [`eventually`] condition may return: a `bool`, or a
/// `Result<bool>` whose error is kept for the timeout message.
pub trait Condition {
    /// `Ok(true)`: done; `Ok(false)`: not yet; `Err`: not yet, with a reason.
    fn check(self) -> Result<bool>;
}

impl Condition for bool {
    fn check(self) -> Result<bool> {
        Ok(self)
    }
}

impl Condition for Result<bool> {
    fn check(self) -> Result<bool> {
        self
    }
}

impl Condition for Result<()> {
    fn check(self) -> Result<bool> {
        self.map(|()| true)
    }
}

/// Poll `condition` until it holds, or fail after `timeout`. The poll
/// interval starts at 10 ms and backs off to 200 ms. The error names the
/// number of attempts and the last error the condition returned.
///
/// ```no_run
/// # async fn demo(gw: &jetway_tests::Gateway) -> anyhow::Result<()> {
/// use std::time::Duration;
/// jetway_tests::eventually(Duration::from_secs(5), || async {
///     gw.log().contains("session created")
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn eventually<F, Fut, C>(timeout: Duration, mut condition: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
    C: Condition,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut backoff = Backoff::unbounded(Duration::from_millis(10), Duration::from_millis(200));
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let last_error = match tokio::time::timeout_at(deadline, condition()).await {
            Ok(c) => match c.check() {
                Ok(true) => return Ok(()),
                Ok(false) => None,
                Err(e) => Some(e),
            },
            Err(_) => Some(anyhow::anyhow!("the last check itself did not finish")),
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            match last_error {
                Some(e) => bail!(
                    "condition not met within {timeout:?} after {attempts} attempts; last error: {e:#}"
                ),
                None => bail!("condition not met within {timeout:?} after {attempts} attempts"),
            }
        }
        tokio::time::sleep(backoff.next().min(deadline - now)).await;
    }
}

/// [`eventually`] with a description of what was awaited in the error.
pub async fn eventually_msg<F, Fut, C>(what: &str, timeout: Duration, condition: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
    C: Condition,
{
    eventually(timeout, condition)
        .await
        .map_err(|e| e.context(format!("waiting for: {what}")))
}

#[cfg(test)]
mod unit;
#[cfg(test)]
mod unit_mcp;
