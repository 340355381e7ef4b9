//! The worker's span of one delivery (while traces are exported): named
//! `{mcp.method.name} {target}` as the OpenTelemetry MCP conventions name
//! server spans, a consumer of the bus, continuing the trace the gateway's
//! publish wrote into the request's NATS headers. A redelivery is another
//! such span in the same trace, with `messaging.message.delivery_count` 2.
//! Its children: `claim`, `kv read`/`kv write` of the session record and
//! state, `inbound read`, `handler`, each `publish` and the `ack`.

use crate::{delivery::Delivery, incoming::Request};
use jetway_shared::telemetry::propagation::{self, NatsExtractor};
use tracing::{Span, field::display};

/// Fills in the OpenTelemetry fields of a delivery's `request` span and
/// parents it; before the span is first entered.
pub fn delivery(span: &Span, delivery: &Delivery, request: &Request, tool: Option<&str>) {
    let name = match tool {
        Some(t) => format!("{} {t}", request.method),
        None => request.method.clone(),
    };
    span.record("otel.name", name.as_str());
    span.record("otel.kind", "consumer");
    span.record("mcp.method.name", request.method.as_str());
    span.record("mcp.session.id", request.session.as_str());
    span.record("jsonrpc.request.id", display(&request.id));
    if let Some(t) = tool {
        span.record("gen_ai.tool.name", t);
    }
    span.record("messaging.system", "nats");
    span.record("messaging.operation.type", "process");
    span.record("messaging.message.delivery_count", delivery.delivered);
    let headers = delivery.message().headers.as_ref().map(NatsExtractor);
    propagation::continue_trace(span, headers.as_ref().map(|h| h as _));
}
