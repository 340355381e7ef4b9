//! Prometheus metrics both binaries share: label vocabularies that keep
//! every label bounded, the NATS-side metrics ([`BUS`]: connection state,
//! reconnects, publish retries and failures), and the text exposition.
//!
//! Names follow the OpenTelemetry MCP semantic conventions where they exist
//! (`mcp.server.operation.duration` → `mcp_server_operation_duration_seconds`,
//! attribute `mcp.method.name` → label `mcp_method_name`, `gen_ai.tool.name`
//! → `gen_ai_tool_name`) and Prometheus naming rules otherwise; what is
//! Jetway's own starts with `jetway_`.
//!
//! Every metric is an atomic; a labelled one is looked up in its family (a
//! shared read lock, a write lock only the first time a label set appears).
//! No label ever holds a session id, request id or argument: methods come
//! from a fixed list ([`method_label`]), tool names are capped
//! ([`ToolLabels`]), JSON-RPC codes are the spec's ([`rpc_code_label`]).

use prometheus_client::{
    encoding::text,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use std::{
    collections::HashMap,
    sync::{LazyLock, RwLock},
};

/// The content type of [`encode`]'s output (OpenMetrics text, which
/// Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label value of anything outside a bounded vocabulary.
pub const OTHER: &str = "other";

/// Latency buckets in seconds: 1 ms … ~65 s, doubling.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 17)
}

/// A family of latency histograms ([`latency_histogram`] for each label set).
pub type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// A histogram over [`latency_buckets`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// The `mcp_method_name` label alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct MethodLabels {
    pub mcp_method_name: &'static str,
}

/// The MCP methods a `mcp_method_name` label may name; anything else is [`OTHER`].
const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
];

/// `method` as a bounded label value.
pub fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or(OTHER)
}

/// The JSON-RPC error codes a `rpc_error_code` label may name (the spec's,
/// MCP's and Jetway's, see [`crate::jsonrpc`]); anything else is [`OTHER`],
/// no error is `""`.
pub fn rpc_code_label(code: Option<i64>) -> &'static str {
    const CODES: &[(i64, &str)] = &[
        (-32700, "-32700"),
        (-32600, "-32600"),
        (-32601, "-32601"),
        (-32602, "-32602"),
        (-32603, "-32603"),
        (-32000, "-32000"),
        (-32001, "-32001"),
        (-32002, "-32002"),
        (-32003, "-32003"),
        (-32004, "-32004"),
        (-32005, "-32005"),
        (-32006, "-32006"),
        (-32010, "-32010"),
        (-32011, "-32011"),
        (-32042, "-32042"),
    ];
    match code {
        None => "",
        Some(c) => CODES
            .iter()
            .find(|(n, _)| *n == c)
            .map(|(_, l)| *l)
            .unwrap_or(OTHER),
    }
}

/// An HTTP status as its class label: `2xx`, `4xx`, …
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// Tool names as label values, at most `max` distinct ones per process; the
/// rest are [`OTHER`]. A name is copied once, when first seen.
pub struct ToolLabels {
    max: usize,
    seen: RwLock<HashMap<Box<str>, &'static str>>,
}

impl ToolLabels {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            seen: RwLock::new(HashMap::new()),
        }
    }

    /// The label value for `tool`.
    pub fn label(&self, tool: &str) -> &'static str {
        if let Ok(seen) = self.seen.read() {
            if let Some(l) = seen.get(tool) {
                return l;
            }
            if seen.len() >= self.max {
                return OTHER;
            }
        }
        let Ok(mut seen) = self.seen.write() else {
            return OTHER;
        };
        if seen.len() >= self.max {
            return seen.get(tool).copied().unwrap_or(OTHER);
        }
        // Leaked on purpose: at most `max` names per process, for its life.
        let label: &'static str = Box::leak(tool.into());
        seen.insert(tool.into(), label);
        label
    }
}

/// Why a publish gave up, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct FailureLabels {
    pub reason: &'static str,
}

/// The NATS side of a process: connection and publishes.
pub struct Bus {
    /// 1 while the NATS connection is up.
    pub connected: Gauge,
    /// Connections made after the first.
    pub reconnects: Counter,
    /// Disconnections seen.
    pub disconnects: Counter,
    /// Publishes retried after an unacknowledged attempt.
    pub publish_retries: Counter,
    /// Publishes that gave up, by reason.
    pub publish_failures: Family<FailureLabels, Counter>,
}

/// This process's [`Bus`] metrics.
pub static BUS: LazyLock<Bus> = LazyLock::new(|| Bus {
    connected: Gauge::default(),
    reconnects: Counter::default(),
    disconnects: Counter::default(),
    publish_retries: Counter::default(),
    publish_failures: Family::default(),
});

/// Registers [`BUS`] in `registry`.
pub fn register_bus(registry: &mut Registry) {
    let b = &*BUS;
    // Every reason from the start, so dashboards see 0 rather than nothing.
    for reason in ["unavailable", "too_large", "refused"] {
        let _ = b.publish_failures.get_or_create(&FailureLabels { reason });
    }
    registry.register(
        "jetway_nats_connected",
        "1 while this process's NATS connection is up, 0 otherwise",
        b.connected.clone(),
    );
    registry.register(
        "jetway_nats_reconnects",
        "NATS connections made after the first",
        b.reconnects.clone(),
    );
    registry.register(
        "jetway_nats_disconnects",
        "NATS disconnections",
        b.disconnects.clone(),
    );
    registry.register(
        "jetway_publish_retries",
        "JetStream publishes retried after an unacknowledged attempt",
        b.publish_retries.clone(),
    );
    registry.register(
        "jetway_publish_failures",
        "JetStream publishes that gave up, by reason",
        b.publish_failures.clone(),
    );
}

/// `registry` in the text exposition format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail.
    let _ = text::encode(&mut out, registry);
    out
}

/// `registry` as the answer to `GET /metrics`.
pub fn response(registry: &Registry) -> http::Response<String> {
    let mut resp = http::Response::new(encode(registry));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(CONTENT_TYPE),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_codes_are_bounded() {
        assert_eq!(method_label("tools/call"), "tools/call");
        assert_eq!(method_label("tools/call/../x"), OTHER);
        assert_eq!(rpc_code_label(None), "");
        assert_eq!(rpc_code_label(Some(-32602)), "-32602");
        assert_eq!(rpc_code_label(Some(12345)), OTHER);
        assert_eq!(status_class(404), "4xx");
    }

    #[test]
    fn tool_labels_are_capped() {
        let tools = ToolLabels::new(3);
        for i in 0..100 {
            let name = format!("tool-{}", i % 10);
            let l = tools.label(&name);
            assert!(l == name || (l == OTHER && i % 10 >= 3), "{name} → {l}");
        }
        assert_eq!(tools.label("tool-0"), "tool-0");
        assert_eq!(tools.label("fresh"), OTHER);
    }
}
