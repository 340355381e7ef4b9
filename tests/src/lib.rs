//! Test harness for Jetway's integration tests (`tests/tests/*.rs`).
//!
//! Everything runs for real: a `nats-server` with JetStream, the
//! `jetway-gateway` and `jetway-worker` binaries as child processes, and MCP
//! over HTTP. Each piece is a guard that cleans up on `Drop`, and every wait
//! is for a condition with a deadline, never a fixed sleep.
//!
//! Layout:
//! - [`nats`]: [`NatsServer`], a nats-server on an OS-chosen port and a temp
//!   store directory; `kill`, `restart` (same port, same store).
//! - [`jetway`]: [`Gateway`] and [`Worker`] process guards (ready when the
//!   `/readyz` of each answers 200).
//! - [`process`]: the shared [`ProcessGuard`], and where binaries come from
//!   (`JETWAY_BIN_DIR`, else `cargo build --bins` once per test process).
//! - [`log`]: captured process output ([`ProcessLog`]); `JETWAY_TEST_LOG=1`
//!   forwards it to the test's stderr, and guards dropped during a panic
//!   print their last lines.
//! - [`mcp`]: [`McpClient`], a Streamable HTTP MCP client (2025-11-25).
//! - [`exchange`]: [`Exchange`] and [`ResponseStream`], what a call returns.
//! - [`sse`]: the incremental SSE parser and reader.
//! - [`upstream`]: [`Upstream`], real upstream MCP servers for the bridge
//!   (server-everything, and a FastMCP server of ours).
//! - [`eventually`]: poll a condition until it holds or a deadline passes.
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

pub mod exchange;
pub mod jetway;
pub mod log;
pub mod mcp;
pub mod nats;
pub mod process;
pub mod sse;
pub mod upstream;

use std::future::Future;
use std::time::Duration;

use anyhow::{Result, bail};

pub use exchange::{Exchange, ResponseStream};
pub use jetway::{Gateway, GatewayBuilder, Worker, WorkerBuilder};
pub use log::ProcessLog;
pub use mcp::{McpClient, PROTOCOL_VERSION};
pub use nats::{NatsServer, NatsServerBuilder, free_port};
pub use process::{ProcessGuard, jetway_bin, workspace_root};
pub use sse::{SseEvent, SseParser, SseStream};
pub use upstream::Upstream;

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
    let mut delay = Duration::from_millis(10);
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
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = (delay * 2).min(Duration::from_millis(200));
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
