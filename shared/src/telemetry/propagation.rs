//! W3C trace context across HTTP, MCP `params._meta` and NATS headers.
//!
//! The gateway continues a client's trace from `params._meta.traceparent`
//! (SEP-414; the OpenTelemetry MCP conventions' carrier) or else the HTTP
//! `traceparent` header, and writes its publish span's context into the
//! NATS headers of the message ([`headers::TRACEPARENT`],
//! [`headers::TRACESTATE`]); the worker continues from those, and writes
//! its own into what it publishes. While traces are off
//! ([`super::enabled`]) nothing here runs but [`client_traceparent`]: the
//! client's `traceparent` is forwarded as it came, so `jetway replay` shows it.

use crate::headers;
use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TraceContextExt,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde_json::Value;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Longest `traceparent`/`tracestate` value taken from a client.
pub const MAX_VALUE_LEN: usize = 512;

/// Writes trace context into NATS headers.
pub struct NatsInjector<'a>(pub &'a mut async_nats::HeaderMap);

impl Injector for NatsInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value);
    }
}

/// Reads trace context from NATS headers.
pub struct NatsExtractor<'a>(pub &'a async_nats::HeaderMap);

impl Extractor for NatsExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// Reads trace context from HTTP request headers.
pub struct HttpExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HttpExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= MAX_VALUE_LEN)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Reads trace context from a JSON-RPC message's `params._meta`.
pub struct MetaExtractor<'a>(pub &'a serde_json::Map<String, Value>);

impl<'a> MetaExtractor<'a> {
    /// The `_meta` of `message`, if it has one with a `traceparent`.
    pub fn of(message: &'a Value) -> Option<Self> {
        let meta = message.get("params")?.get("_meta")?.as_object()?;
        meta.contains_key(headers::TRACEPARENT)
            .then_some(Self(meta))
    }
}

impl Extractor for MetaExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| v.len() <= MAX_VALUE_LEN)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Reads a lone `traceparent` value.
pub struct TraceparentExtractor<'a>(pub &'a str);

impl Extractor for TraceparentExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == headers::TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![headers::TRACEPARENT]
    }
}

/// The client's `traceparent` for one message: `params._meta` first, then
/// the HTTP header; forwarded unchanged while traces are off.
pub fn client_traceparent<'a>(message: &'a Value, header: Option<&'a str>) -> Option<&'a str> {
    MetaExtractor::of(message)
        .and_then(|m| m.0.get(headers::TRACEPARENT)?.as_str())
        .filter(|v| v.len() <= MAX_VALUE_LEN)
        .or(header)
}

/// Makes `span` continue the trace `carrier` holds (if it holds a valid
/// one), and records the trace id in the span's `trace_id` field so log
/// lines inside it carry it. Call before the span is first entered.
pub fn continue_trace(span: &Span, carrier: Option<&dyn Extractor>) {
    if span.is_none() {
        return;
    }
    if let Some(c) = carrier {
        let cx = TraceContextPropagator::new().extract(c);
        if cx.span().span_context().is_valid() {
            // Fails only for a span the OpenTelemetry layer does not see.
            let _ = span.set_parent(cx);
        }
    }
    record_trace_id(span);
}

/// Records `span`'s OpenTelemetry trace id in its `trace_id` field.
pub fn record_trace_id(span: &Span) {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        span.record("trace_id", tracing::field::display(sc.trace_id()));
    }
}

/// Writes `span`'s trace context (`traceparent`, `tracestate`) into `h`.
/// Returns false (and writes nothing) when `span` has none: traces are off
/// or the span is disabled.
pub fn inject(span: &Span, h: &mut async_nats::HeaderMap) -> bool {
    if span.is_none() {
        return false;
    }
    let cx: Context = span.context();
    if !cx.span().span_context().is_valid() {
        return false;
    }
    TraceContextPropagator::new().inject_context(&cx, &mut NatsInjector(h));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn meta_comes_before_the_header() {
        let m = json!({"params": {"_meta": {"traceparent": "00-a-b-01"}}});
        assert_eq!(client_traceparent(&m, Some("00-c-d-01")), Some("00-a-b-01"));
        let m = json!({"params": {"name": "echo"}});
        assert_eq!(client_traceparent(&m, Some("00-c-d-01")), Some("00-c-d-01"));
        assert_eq!(client_traceparent(&m, None), None);
    }

    #[test]
    fn extractors_read_their_carriers() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01";
        let m = json!({"params": {"_meta": {"traceparent": tp, "tracestate": "k=v"}}});
        let e = MetaExtractor::of(&m).expect("has one");
        let cx = TraceContextPropagator::new().extract(&e);
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        let mut h = async_nats::HeaderMap::new();
        h.insert(headers::TRACEPARENT, tp);
        let cx = TraceContextPropagator::new().extract(&NatsExtractor(&h));
        assert_eq!(
            cx.span().span_context().span_id().to_string(),
            "00f067aa0ba902b7"
        );
        let mut out = async_nats::HeaderMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut NatsInjector(&mut out));
        assert_eq!(out.get(headers::TRACEPARENT).map(|v| v.as_str()), Some(tp));
    }

    #[test]
    fn a_span_without_a_layer_injects_nothing() {
        let mut h = async_nats::HeaderMap::new();
        assert!(!inject(&Span::none(), &mut h));
        assert!(h.get(headers::TRACEPARENT).is_none());
    }
}
