//! The gateway's spans (while traces are exported; else `Span::none()`):
//! one per POST named after its first message, `{mcp.method.name}
//! {target}` as the OpenTelemetry MCP conventions name server spans, from
//! the HTTP request until the response's final event; one per GET stream
//! (`resume` with `Last-Event-ID`, else `listen`). The POST span continues
//! the client's trace (`params._meta` first, then the `traceparent` header);
//! a resumed stream continues the client's, or else the trace of the
//! stored message it resumes after.

use super::checks::Inbound;
use axum::http::HeaderMap;
use jetway_shared::text::printable;
use jetway_shared::{
    headers,
    jsonrpc::Kind,
    otel_span,
    protocol::ProtocolVersion,
    telemetry::propagation::{self, HttpExtractor, MetaExtractor},
};
use tracing::{Span, field::Empty};

/// The span of a POST whose first message is `first`.
pub fn post(first: Option<&Inbound>, version: ProtocolVersion, h: &HeaderMap) -> Span {
    let Some(first) = first else {
        return Span::none();
    };
    let (method, id) = match &first.kind {
        Kind::Request { id, method } => (method.as_str(), Some(id)),
        Kind::Notification { method } => (method.as_str(), None),
        Kind::Response { .. } => ("response", None),
    };
    let tool = first
        .value
        .pointer("/params/name")
        .and_then(|v| v.as_str())
        .filter(|_| method == "tools/call" || method == "prompts/get");
    let span = otel_span!(
        "mcp request",
        // Display-formatted, so escaped here: a method or tool name is the
        // client's text, and a newline in it would forge a log line.
        otel.name = %printable(&match tool {
            Some(t) => format!("{method} {t}"),
            None => method.to_owned(),
        }),
        otel.kind = "server",
        mcp.method.name = method,
        mcp.session.id = Empty,
        mcp.protocol.version = version.as_str(),
        jsonrpc.request.id = Empty,
        gen_ai.tool.name = Empty,
        network.transport = "tcp",
        network.protocol.name = "http",
        trace_id = Empty,
    );
    if span.is_none() {
        return span;
    }
    if let Some(id) = id {
        span.record("jsonrpc.request.id", tracing::field::display(id));
    }
    if let Some(t) = tool.filter(|_| method == "tools/call") {
        span.record("gen_ai.tool.name", t);
    }
    match MetaExtractor::of(&first.value) {
        Some(meta) => propagation::continue_trace(&span, Some(&meta)),
        None => propagation::continue_trace(&span, carrier(h).as_ref().map(|c| c as _)),
    }
    span
}

/// The span of a GET stream of `session` (not yet parented: see [`parent`]).
pub fn stream(session: &str, resume: bool, version: ProtocolVersion) -> Span {
    otel_span!(
        "mcp stream",
        otel.name = if resume { "resume" } else { "listen" },
        otel.kind = "server",
        mcp.session.id = session,
        mcp.protocol.version = version.as_str(),
        network.transport = "tcp",
        network.protocol.name = "http",
        trace_id = Empty,
    )
}

/// Parents a stream span: the client's `traceparent`, else `stored` (the
/// headers of the stored message a resume continues after).
pub fn parent(span: &Span, h: &HeaderMap, stored: Option<&async_nats::HeaderMap>) {
    if span.is_none() {
        return;
    }
    match carrier(h) {
        Some(c) => propagation::continue_trace(span, Some(&c)),
        None => {
            let stored = stored
                .filter(|s| s.get(headers::TRACEPARENT).is_some())
                .map(propagation::NatsExtractor);
            propagation::continue_trace(span, stored.as_ref().map(|c| c as _));
        }
    }
}

fn carrier(h: &HeaderMap) -> Option<HttpExtractor<'_>> {
    h.contains_key(headers::TRACEPARENT)
        .then_some(HttpExtractor(h))
}
