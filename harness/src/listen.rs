//! Ports: asking the OS for a free one, and learning the one a process bound.
//!
//! Gateways and workers the harness starts listen on port 0, so the OS
//! picks a port and parallel tests never collide; nats-server, which a test
//! may restart on the same ports, gets ports from [`free_port`], below the
//! range the OS hands out to outgoing connections. The
//! only way to learn that port is the line the process logs once it bound
//! it (`listening on ADDR`, nats-server's `Listening for client connections
//! on ADDR`): [`address_after`] reads it. That line says where to ask, never
//! whether the process is ready — readiness is always asked of an endpoint
//! (see [`crate::ready`]).

use std::net::{SocketAddr, TcpListener};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{HarnessError, Result};
use crate::log::ProcessLog;

/// What Jetway's binaries (and the benchmark's baseline) log once bound.
pub const LISTENING_MARKER: &str = "listening on ";

/// Where [`free_port`] looks: below Linux's default ephemeral range
/// (32768–60999, `net.ipv4.ip_local_port_range`), so that no outgoing
/// connection of any process is given the port between the moment it is
/// picked and the moment a (re)started server binds it.
const PICKED_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A loopback port that was free a moment ago, for configs and servers that
/// must be given a port up front (cluster routes, an upstream MCP server's
/// `--port`) or that restart on the same port. Picked from [`PICKED_PORTS`],
/// never the same one twice in a process, bound once to check it is free.
pub fn free_port() -> Result<u16> {
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let span = u32::from(PICKED_PORTS.end - PICKED_PORTS.start);
    let next = NEXT.get_or_init(|| {
        // Start somewhere else in each process, so that two test processes
        // on one machine rarely walk the same ports.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        AtomicU32::new(std::process::id().wrapping_mul(7919).wrapping_add(nanos) % span)
    });
    for _ in 0..span {
        let offset = next.fetch_add(1, Ordering::Relaxed) % span;
        let port = PICKED_PORTS.start + u16::try_from(offset).unwrap_or(0);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(HarnessError::io("finding a free port in 20000..32000")(
        std::io::Error::from(std::io::ErrorKind::AddrInUse),
    ))
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
