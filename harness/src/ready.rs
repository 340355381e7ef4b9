//! Readiness, asked of an endpoint: a process is ready when an HTTP request
//! to it gets the answer [`Ready`] expects — a gateway's or worker's
//! `/readyz`, nats-server's `/healthz?js-enabled-only=true`, or any answer at
//! all from a server without a readiness endpoint. Log lines never decide it.
//!
//! Waiting polls with a back-off (10 ms doubling to 200 ms; an HTTP endpoint
//! cannot be subscribed to), stops early when the process closes its output
//! (it exited), and fails at the deadline with the last answer and the
//! process's last output lines.

use std::time::Duration;

use crate::error::{HarnessError, Result};
use crate::process::ProcessGuard;
use jetway_shared::backoff::Backoff;

/// Bound on one readiness request (a server that accepted the connection
/// but does not answer is not ready).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// What answer means "ready".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// `200 OK` (readiness and health endpoints).
    Ok,
    /// Any HTTP response: the server is accepting and serving requests
    /// (for servers without a readiness endpoint, such as an MCP endpoint
    /// that answers a bare `GET` with 4xx).
    Answers,
}

impl Ready {
    fn accepts(self, status: reqwest::StatusCode) -> bool {
        match self {
            Self::Ok => status == reqwest::StatusCode::OK,
            Self::Answers => true,
        }
    }
}

/// An HTTP client for loopback servers: no proxy from the environment.
pub(crate) fn http_client() -> Result<reqwest::Client> {
    // As jetway_shared::tls does (the harness does not depend on shared).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(ATTEMPT_TIMEOUT)
        .build()
        .map_err(HarnessError::Http)
}

/// Waits until `GET url` gets an answer `ready` accepts, or `process`
/// exits, or `timeout` passes.
pub async fn wait_ready(
    process: &ProcessGuard,
    url: &str,
    ready: Ready,
    timeout: Duration,
) -> Result<()> {
    let client = http_client()?;
    let mut backoff =
        Backoff::unbounded(Duration::from_millis(10), Duration::from_millis(200)).within(timeout);
    loop {
        let last = match client.get(url).timeout(ATTEMPT_TIMEOUT).send().await {
            Ok(resp) if ready.accepts(resp.status()) => return Ok(()),
            Ok(resp) => format!("status {}", resp.status()),
            Err(e) => format!("error {e}"),
        };
        let log = process.log();
        let expected = match ready {
            Ready::Ok => "answered 200",
            Ready::Answers => "answered",
        };
        if log.is_closed() {
            return Err(HarnessError::Exited {
                name: log.prefix(),
                what: format!("exited before GET {url} {expected} (last: {last})"),
                tail: log.tail_text(),
            });
        }
        if !backoff.wait().await {
            return Err(HarnessError::Timeout {
                name: log.prefix(),
                what: format!("GET {url} not {expected} (last: {last})"),
                timeout,
                tail: log.tail_text(),
            });
        }
    }
}
