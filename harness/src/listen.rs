//! Ports: asking the OS for a free one, and learning the one a process bound.
//!
//! Processes the harness starts listen on port 0 (or `-1`, nats-server's
//! spelling), so the OS picks a port and parallel tests never collide. The
//! only way to learn that port is the line the process logs once it bound
//! it (`listening on ADDR`, nats-server's `Listening for client connections
//! on ADDR`): [`address_after`] reads it. That line says where to ask, never
//! whether the process is ready — readiness is always asked of an endpoint
//! (see [`crate::ready`]).

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use crate::error::{HarnessError, Result};
use crate::log::ProcessLog;

/// What Jetway's binaries (and the benchmark's baseline) log once bound.
pub const LISTENING_MARKER: &str = "listening on ";

/// A port that was free a moment ago (bind to port 0, read it, release it).
/// Only for configs and servers that must be given a port up front, such as
/// cluster routes or an upstream MCP server's `--port`.
pub fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(HarnessError::io("binding 127.0.0.1:0"))?;
    let addr = listener
        .local_addr()
        .map_err(HarnessError::io("reading the address of 127.0.0.1:0"))?;
    Ok(addr.port())
}

/// The socket address following `marker` in a log line. Tolerates a
/// `key=value` tracing field, quotes, an `http://` prefix and trailing
/// punctuation; `None` without one, or for port 0.
pub fn address_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let token = rest.split_whitespace().next()?;
    // `addr=127.0.0.1:1` (a tracing field) or `http://127.0.0.1:1/`.
    let token = token.rsplit_once('=').map_or(token, |(_, v)| v);
    let token = token.trim_matches('"');
    let token = token.strip_prefix("http://").unwrap_or(token);
    let token = token.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != ']');
    let addr: SocketAddr = token.parse().ok()?;
    (addr.port() != 0).then_some(addr)
}

/// The address in a `listening on ADDR` line.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    address_after(line, LISTENING_MARKER)
}

/// Waits (from log position `from`) for the line announcing the address
/// after `marker`, and returns it as an address to connect to: an
/// unspecified IP (`0.0.0.0`) becomes loopback.
pub(crate) async fn wait_address(
    log: &ProcessLog,
    from: u64,
    marker: &str,
    timeout: Duration,
) -> Result<SocketAddr> {
    let addr = log
        .wait_for(from, timeout, |line| address_after(line, marker))
        .await
        .map_err(|e| e.expecting(&format!("a `{marker}ADDR` line")))?;
    Ok(if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    })
}
