//! NATS header names carried beside each MCP message.
//!
//! The MCP payload is stored unchanged; routing, provenance and trace context
//! travel in these headers so replay can show who handled what.

/// Stream key of the SSE stream a message belongs to (on requests: where the
/// worker must publish what it sends).
pub const STREAM: &str = "Jetway-Stream";
/// Instance id of the gateway that accepted a client message.
pub const GATEWAY: &str = "Jetway-Gateway";
/// Instance id of the worker that produced a server message.
pub const WORKER: &str = "Jetway-Worker";
/// Present (value `1`) on the final JSON-RPC response or error of a request.
pub const FINAL: &str = "Jetway-Final";
/// Control marker (empty payload): on a GET stream `takeover` (a newer GET
/// connection of the session replaces older ones) or `closed` (the session
/// ended); on a request's POST stream `cancelled` (the final message of a
/// request the client cancelled: the stream ends without a response).
pub const CONTROL: &str = "Jetway-Control";
/// Kind of client message: `request`, `notification` or `response`.
pub const KIND: &str = "Jetway-Kind";
/// W3C trace context: the span that published the message (while traces
/// are exported), else the client's own `traceparent` forwarded unchanged
/// (from `params._meta` or the HTTP header).
pub const TRACEPARENT: &str = "traceparent";
/// W3C trace state, beside [`TRACEPARENT`] when the trace has one.
pub const TRACESTATE: &str = "tracestate";
/// Unix time in milliseconds when the message was published.
pub const TIME_MS: &str = "Jetway-Time-Ms";

/// A control marker: the value of the [`CONTROL`] header on a message
/// with an empty payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Control {
    /// On a GET stream: a newer GET connection of the session replaces older ones.
    Takeover,
    /// On a GET stream: the session ended (DELETE, or an operator ended it).
    Closed,
    /// On a request's POST stream: the final message of a request the
    /// client cancelled; the stream ends without a response.
    Cancelled,
}

impl Control {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Takeover => "takeover",
            Control::Closed => "closed",
            Control::Cancelled => "cancelled",
        }
    }

    /// Parses a header value; `None` for a value this build does not know.
    pub fn parse(value: &str) -> Option<Self> {
        [Control::Takeover, Control::Closed, Control::Cancelled]
            .into_iter()
            .find(|c| c.as_str() == value)
    }

    /// The marker a message carries, if any (an unknown value is `None`).
    pub fn of(h: Option<&async_nats::HeaderMap>) -> Option<Self> {
        Self::parse(h?.get(CONTROL)?.as_str())
    }

    /// Whether a message carries a [`CONTROL`] header at all, known or not.
    pub fn present(h: Option<&async_nats::HeaderMap>) -> bool {
        h.is_some_and(|h| h.get(CONTROL).is_some())
    }
}

impl std::fmt::Display for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Header values of [`KIND`].
pub mod kind {
    pub const REQUEST: &str = "request";
    pub const NOTIFICATION: &str = "notification";
    pub const RESPONSE: &str = "response";
}

/// `(Nats-Sequence, Nats-Last-Sequence)` of a message the stream republished:
/// its sequence, and the sequence of the previous message on the same
/// subject (0 if none), which tells a reader whether it missed one.
pub fn republished_positions(h: Option<&async_nats::HeaderMap>) -> Option<(u64, u64)> {
    let h = h?;
    let seq = h
        .get(async_nats::header::NATS_SEQUENCE)?
        .as_str()
        .parse()
        .ok()?;
    let prev = h
        .get(async_nats::header::NATS_LAST_SEQUENCE)
        .and_then(|v| v.as_str().parse().ok())
        .unwrap_or(0);
    Some((seq, prev))
}

/// Milliseconds since the Unix epoch, for [`TIME_MS`].
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
