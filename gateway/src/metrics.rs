//! The gateway's metrics and `/metrics` (Prometheus text format).
//!
//! What is measured, and where:
//! - [`layer`] (axum middleware on the MCP routes): every HTTP request by
//!   method, status class and JSON-RPC error code
//!   (`jetway_gateway_http_requests_total`).
//! - [`Exchange`] (one per POST that opened request streams): the JSON-RPC
//!   requests by method (`jetway_gateway_requests_total`), the time to the
//!   first event and to the final response by method and JSON-RPC error code
//!   (`mcp_server_operation_duration_seconds`).
//! - [`StreamGuard`]: open SSE streams by kind.
//! - every limit's refusals by limit (`jetway_limit_rejections_total`):
//!   [`crate::error::GatewayError`]'s conversion counts the request
//!   limits, the server loop the connection limits.
//! - sessions created/closed, resumes (and the time from a resuming GET to
//!   its first event), events replayed and live-delivery gaps filled from
//!   the stream, counted where they happen.
//!
//! The metrics are process-wide ([`GATEWAY`]): atomics, and label families
//! with a bounded vocabulary (see `jetway_shared::metrics`).

use axum::{extract::Request, middleware::Next, response::Response};
use jetway_shared::metrics::{self as m, Histograms, MethodLabels, method_label, rpc_code_label};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};
use std::{sync::LazyLock, time::Instant};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub http_request_method: &'static str,
    pub http_status_class: &'static str,
    pub rpc_error_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub mcp_method_name: &'static str,
    /// A JSON-RPC error code, `timeout`, `incomplete` (the client left or the
    /// stream ended before the final response), or `""` for a result.
    pub rpc_error_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadLabels {
    /// `replay` (a resume or GET reading what it missed) or `gap` (live
    /// delivery missed a message and read it from the stream).
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: &'static str,
}

/// Every limit whose refusals are counted: the label vocabulary of
/// `jetway_limit_rejections_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Inflight,
    Rate,
    Sessions,
    BodySize,
    BodyTimeout,
    Batch,
    InitializeSize,
    Host,
    Origin,
    Connections,
    HeaderTimeout,
    IdleTimeout,
    WriteTimeout,
}

impl Limit {
    pub const ALL: [Limit; 13] = [
        Limit::Inflight,
        Limit::Rate,
        Limit::Sessions,
        Limit::BodySize,
        Limit::BodyTimeout,
        Limit::Batch,
        Limit::InitializeSize,
        Limit::Host,
        Limit::Origin,
        Limit::Connections,
        Limit::HeaderTimeout,
        Limit::IdleTimeout,
        Limit::WriteTimeout,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Limit::Inflight => "inflight",
            Limit::Rate => "rate",
            Limit::Sessions => "sessions",
            Limit::BodySize => "body_size",
            Limit::BodyTimeout => "body_timeout",
            Limit::Batch => "batch",
            Limit::InitializeSize => "initialize_size",
            Limit::Host => "host",
            Limit::Origin => "origin",
            Limit::Connections => "connections",
            Limit::HeaderTimeout => "header_timeout",
            Limit::IdleTimeout => "idle_timeout",
            Limit::WriteTimeout => "write_timeout",
        }
    }
}

/// Counts one refusal by `limit`.
pub fn limit_rejected(limit: Limit) {
    GATEWAY
        .limit_rejections
        .get_or_create(&LimitLabels {
            limit: limit.label(),
        })
        .inc();
}

/// Every metric of a gateway process.
pub struct Metrics {
    pub http_requests: Family<HttpLabels, Counter>,
    pub requests: Family<MethodLabels, Counter>,
    pub first_event: Histograms<MethodLabels>,
    pub operation: Histograms<OutcomeLabels>,
    pub sessions_created: Counter,
    pub sessions_closed: Counter,
    pub streams_open: Family<StreamLabels, Gauge>,
    pub resumes: Counter,
    pub resume_first_event: Histogram,
    pub stream_reads: Family<ReadLabels, Counter>,
    pub gaps_filled: Counter,
    pub reader_pauses: Counter,
    pub limit_rejections: Family<LimitLabels, Counter>,
}

/// This process's gateway metrics.
pub static GATEWAY: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    http_requests: Family::default(),
    requests: Family::default(),
    first_event: Family::new_with_constructor(m::latency_histogram),
    operation: Family::new_with_constructor(m::latency_histogram),
    sessions_created: Counter::default(),
    sessions_closed: Counter::default(),
    streams_open: Family::default(),
    resumes: Counter::default(),
    resume_first_event: m::latency_histogram(),
    stream_reads: Family::default(),
    gaps_filled: Counter::default(),
    reader_pauses: Counter::default(),
    limit_rejections: Family::default(),
});

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let g = &*GATEWAY;
    // The bounded label sets from the start, so dashboards see 0, not nothing.
    for kind in [StreamKind::Post, StreamKind::Get, StreamKind::HttpSse] {
        let _ = g
            .streams_open
            .get_or_create(&StreamLabels { kind: kind.label() });
    }
    for reason in ["replay", "gap"] {
        let _ = g.stream_reads.get_or_create(&ReadLabels { reason });
    }
    for limit in Limit::ALL {
        let _ = g.limit_rejections.get_or_create(&LimitLabels {
            limit: limit.label(),
        });
    }
    let mut r = Registry::default();
    r.register(
        "jetway_gateway_http_requests",
        "HTTP requests on the MCP endpoints by method, status class and JSON-RPC error code",
        g.http_requests.clone(),
    );
    r.register(
        "jetway_gateway_requests",
        "JSON-RPC requests published to the bus, by MCP method",
        g.requests.clone(),
    );
    r.register_with_unit(
        "jetway_gateway_first_event_duration",
        "Time from a POST's arrival to the first event of its request streams",
        Unit::Seconds,
        g.first_event.clone(),
    );
    r.register_with_unit(
        "mcp_server_operation_duration",
        "Time from a POST's arrival to its final response, by MCP method and outcome",
        Unit::Seconds,
        g.operation.clone(),
    );
    r.register(
        "jetway_gateway_sessions_created",
        "Sessions created (initialize)",
        g.sessions_created.clone(),
    );
    r.register(
        "jetway_gateway_sessions_closed",
        "Sessions closed (DELETE)",
        g.sessions_closed.clone(),
    );
    r.register(
        "jetway_gateway_sse_streams_open",
        "SSE streams open on this gateway, by kind (post, get, http_sse)",
        g.streams_open.clone(),
    );
    r.register(
        "jetway_gateway_resumes",
        "GET requests resuming a stream with Last-Event-ID",
        g.resumes.clone(),
    );
    r.register_with_unit(
        "jetway_gateway_resume_first_event_duration",
        "Time from a resuming GET's arrival (Last-Event-ID) to its first replayed or live event",
        Unit::Seconds,
        g.resume_first_event.clone(),
    );
    r.register(
        "jetway_gateway_stream_reads",
        "Events read from the stream rather than live, by reason (replay, gap)",
        g.stream_reads.clone(),
    );
    r.register(
        "jetway_gateway_gaps_filled",
        "Times live delivery missed messages and read them from the stream",
        g.gaps_filled.clone(),
    );
    r.register(
        "jetway_gateway_sse_reader_pauses",
        "Times a stream's reader left the live subscription because its client was behind by more than the stream's buffer",
        g.reader_pauses.clone(),
    );
    r.register(
        "jetway_limit_rejections",
        "Requests and connections refused or closed by a limit, by limit",
        g.limit_rejections.clone(),
    );
    m::register_bus(&mut r);
    r
});

/// `GET /metrics`.
pub async fn serve() -> axum::http::Response<String> {
    m::response(&REGISTRY)
}

/// The JSON-RPC error code a response stands for, set by
/// [`crate::error::GatewayError`]'s conversion for [`layer`] to count.
#[derive(Clone, Copy, Debug)]
pub struct RpcCode(pub i64);

/// Middleware: counts every request on the MCP routes by outcome.
pub async fn layer(req: Request, next: Next) -> Response {
    let method = match *req.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::DELETE => "DELETE",
        _ => m::OTHER,
    };
    let resp = next.run(req).await;
    let code = resp.extensions().get::<RpcCode>().map(|c| c.0);
    GATEWAY
        .http_requests
        .get_or_create(&HttpLabels {
            http_request_method: method,
            http_status_class: m::status_class(resp.status().as_u16()),
            rpc_error_code: rpc_code_label(code),
        })
        .inc();
    resp
}

/// Counts a session created.
pub fn session_created() {
    GATEWAY.sessions_created.inc();
}

/// Counts a session closed.
pub fn session_closed() {
    GATEWAY.sessions_closed.inc();
}

/// Counts a resume (`Last-Event-ID`).
pub fn resumed() {
    GATEWAY.resumes.inc();
}

/// A resumed stream's first event went out; the GET arrived at `start`.
pub fn resume_first_event(start: Instant) {
    GATEWAY
        .resume_first_event
        .observe(start.elapsed().as_secs_f64());
}

/// Counts `events` read from the stream, for `reason`.
pub fn read_from_stream(replay: bool, events: u64) {
    if events == 0 {
        return;
    }
    if !replay {
        GATEWAY.gaps_filled.inc();
    }
    let reason = if replay { "replay" } else { "gap" };
    GATEWAY
        .stream_reads
        .get_or_create(&ReadLabels { reason })
        .inc_by(events);
}

/// Counts a reader that left its live subscription for a client behind.
pub fn reader_paused() {
    GATEWAY.reader_pauses.inc();
}

/// Counts a JSON-RPC request published for `method`, and returns its
/// label for [`Exchange::new`].
pub fn request(method: &str) -> &'static str {
    let mcp_method_name = method_label(method);
    GATEWAY
        .requests
        .get_or_create(&MethodLabels { mcp_method_name })
        .inc();
    mcp_method_name
}

/// The kinds of SSE stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// The response to a POST.
    Post,
    /// A GET: the standalone stream, or a resumed one.
    Get,
    /// The HTTP+SSE transport's long-lived stream.
    HttpSse,
}

impl StreamKind {
    fn label(self) -> &'static str {
        match self {
            StreamKind::Post => "post",
            StreamKind::Get => "get",
            StreamKind::HttpSse => "http_sse",
        }
    }
}

/// Counts an open SSE stream while it lives.
pub struct StreamGuard(Gauge);

impl StreamGuard {
    pub fn open(kind: StreamKind) -> Self {
        let g = GATEWAY
            .streams_open
            .get_or_create_owned(&StreamLabels { kind: kind.label() });
        g.inc();
        Self(g)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The timing of one POST's requests: first event, final response, outcome.
/// Dropped before the final response, it counts as `incomplete`.
pub struct Exchange {
    method: &'static str,
    start: Instant,
    first_seen: bool,
    done: bool,
}

impl Exchange {
    /// Starts timing at `start` (the POST's arrival) for a request of
    /// `method` (a label from [`request`]).
    pub fn new(method: &'static str, start: Instant) -> Self {
        Self {
            method,
            start,
            first_seen: false,
            done: false,
        }
    }

    /// An event of the request's stream went out.
    pub fn event(&mut self) {
        if !self.first_seen {
            self.first_seen = true;
            GATEWAY
                .first_event
                .get_or_create(&MethodLabels {
                    mcp_method_name: self.method,
                })
                .observe(self.start.elapsed().as_secs_f64());
        }
    }

    /// The final response went out; `payload` is its JSON-RPC message.
    pub fn finished(&mut self, payload: &[u8]) {
        self.event();
        self.record(rpc_code_label(error_code(payload)));
    }

    /// JSON response mode: the final response (`None`: none came in time).
    pub fn finished_json(&mut self, last: Option<&serde_json::Value>) {
        match last {
            Some(v) => {
                self.event();
                let code = v.pointer("/error/code").and_then(serde_json::Value::as_i64);
                self.record(rpc_code_label(code));
            }
            None => self.timed_out(),
        }
    }

    /// The request ended at its timeout, without a final response.
    pub fn timed_out(&mut self) {
        self.record("timeout");
    }

    fn record(&mut self, code: &'static str) {
        if self.done {
            return;
        }
        self.done = true;
        GATEWAY
            .operation
            .get_or_create(&OutcomeLabels {
                mcp_method_name: self.method,
                rpc_error_code: code,
            })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.record("incomplete");
    }
}

/// The `error.code` of a JSON-RPC response, without allocating.
fn error_code(payload: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Probe {
        error: Option<ErrorProbe>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorProbe {
        code: i64,
    }
    // Cheap pre-check: a result has no `"error"` key to look for.
    if !payload.windows(7).any(|w| w == b"\"error\"") {
        return None;
    }
    serde_json::from_slice::<Probe>(payload)
        .ok()?
        .error
        .map(|e| e.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_of_finals() {
        assert_eq!(
            error_code(br#"{"jsonrpc":"2.0","id":1,"result":{"error":1}}"#),
            None
        );
        assert_eq!(
            error_code(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}}"#),
            Some(-32602)
        );
    }

    /// What the metrics of one `tools/call` cost the gateway: the HTTP
    /// counter, the request counter, an open stream, first event and final
    /// response timings and the error-code probe. Printed (`--nocapture`);
    /// the bound only catches a lock or allocation gone wild.
    #[test]
    fn hot_path_cost_per_request() {
        const N: u32 = 20_000;
        let final_payload =
            br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"hello"}]}}"#;
        let start = Instant::now();
        for _ in 0..N {
            let method = request("tools/call");
            let _open = StreamGuard::open(StreamKind::Post);
            let mut x = Exchange::new(method, Instant::now());
            x.event();
            x.finished(final_payload);
            GATEWAY
                .http_requests
                .get_or_create(&HttpLabels {
                    http_request_method: "POST",
                    http_status_class: m::status_class(200),
                    rpc_error_code: rpc_code_label(None),
                })
                .inc();
        }
        let per = start.elapsed() / N;
        println!("gateway metrics per request: {per:?} (this build's profile)");
        assert!(per < std::time::Duration::from_micros(200), "{per:?}");
    }

    #[test]
    fn exposition_names_every_metric() {
        let method = request("tools/call");
        let _s = StreamGuard::open(StreamKind::Get);
        Exchange::new(method, Instant::now()).finished(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        let text = m::encode(&REGISTRY);
        // Names and labels only: the registry is the process's, and other
        // tests running at the same time add to its values.
        for name in [
            "jetway_gateway_requests_total{mcp_method_name=\"tools/call\"}",
            "jetway_gateway_sse_streams_open{kind=\"get\"} ",
            "jetway_nats_connected",
            "# TYPE mcp_server_operation_duration_seconds histogram",
            "mcp_server_operation_duration_seconds_count{mcp_method_name=\"tools/call\",rpc_error_code=\"\"} ",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
