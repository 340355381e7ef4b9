//! The worker's metrics, served as `/metrics` next to `/healthz` and
//! `/readyz` on its HTTP port.
//!
//! - Executions by method, tool (capped by `metrics_max_tool_labels`) and
//!   outcome, with their duration ([`Execution`], from claim to settled).
//! - Deliveries, redeliveries, re-runs (a claim taken over from an earlier
//!   holder), claims that waited on another holder, requests abandoned after
//!   `max_deliver`, deadline expiries before a run.
//! - Slots busy and free ([`Slot`]).
//! - The shared consumer's pending, ack-pending and redelivered counts, read
//!   from consumer info every [`CONSUMER_POLL`] ([`watch_consumer`]).
//! - Storage: bytes held and the `max_bytes` bound of the session stream and
//!   each KV bucket, read every [`CONSUMER_POLL`] ([`watch_storage`]), and
//!   sessions expired (their record aged out; [`crate::expiry`]).
//! - Bridge mode: upstream calls, errors and latency ([`upstream_call`]),
//!   and requests to stdio processes ([`stdio_call`]).
//! - NATS connection and publishes (`jetway_shared::metrics::BUS`).
//!
//! Process-wide atomics and bounded label families, like the gateway's.

use crate::bridge::upstream::{Reply, UpstreamError};
use jetway_shared::metrics::{self as m, Histograms, MethodLabels, ToolLabels, method_label};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};
use std::{
    sync::{LazyLock, OnceLock},
    time::{Duration, Instant},
};
use tokio_util::sync::CancellationToken;

/// How often the worker reads its consumer's info.
pub const CONSUMER_POLL: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExecutionLabels {
    pub mcp_method_name: &'static str,
    /// The tool of a `tools/call`, `""` otherwise, `other` beyond the cap.
    pub gen_ai_tool_name: &'static str,
    /// `answered`, `cancelled`, `unanswered` (handed back), `stopped`,
    /// `running` (left running when the worker stopped).
    pub outcome: &'static str,
}

/// Which store a storage gauge describes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// `stream` (the session stream), `sessions`, `state`, `claims` (buckets).
    pub store: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// `ok`, `unreachable`, `session_not_found`, `status`, `body`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StdioLabels {
    /// `pool` (`upstream_stdio = "pool"`) or `session` (one process per session).
    pub mode: &'static str,
    /// `ok` (the process answered), `failed` (it ended or could not be used).
    pub outcome: &'static str,
}

/// `kind`: `notification` (progress, a log, a server→client request) or
/// `answer`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DroppedLabels {
    pub kind: &'static str,
}

/// Every metric of a worker process.
pub struct Metrics {
    pub executions: Histograms<ExecutionLabels>,
    pub deliveries: Family<MethodLabels, Counter>,
    pub redeliveries: Counter,
    pub reruns: Counter,
    pub claims_waited: Counter,
    pub abandoned: Counter,
    pub deadline_expired: Counter,
    pub messages_dropped: Family<DroppedLabels, Counter>,
    pub slots_busy: Gauge,
    pub slots_free: Gauge,
    pub consumer_pending: Gauge,
    pub consumer_ack_pending: Gauge,
    pub consumer_redelivered: Gauge,
    pub storage_bytes: Family<StoreLabels, Gauge>,
    pub storage_max_bytes: Family<StoreLabels, Gauge>,
    pub sessions_expired: Counter,
    pub upstream: Histograms<UpstreamLabels>,
    pub stdio: Histograms<StdioLabels>,
}

/// This process's worker metrics.
pub static WORKER: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    executions: Family::new_with_constructor(m::latency_histogram),
    deliveries: Family::default(),
    redeliveries: Counter::default(),
    reruns: Counter::default(),
    claims_waited: Counter::default(),
    abandoned: Counter::default(),
    deadline_expired: Counter::default(),
    messages_dropped: Family::default(),
    slots_busy: Gauge::default(),
    slots_free: Gauge::default(),
    consumer_pending: Gauge::default(),
    consumer_ack_pending: Gauge::default(),
    consumer_redelivered: Gauge::default(),
    storage_bytes: Family::default(),
    storage_max_bytes: Family::default(),
    sessions_expired: Counter::default(),
    upstream: Family::new_with_constructor(m::latency_histogram),
    stdio: Family::new_with_constructor(m::latency_histogram),
});

static TOOLS: OnceLock<ToolLabels> = OnceLock::new();

/// Sets the tool-label cap (`metrics_max_tool_labels`); the first call wins.
pub fn init(max_tool_labels: usize) {
    let _ = TOOLS.set(ToolLabels::new(max_tool_labels));
}

fn tools() -> &'static ToolLabels {
    TOOLS.get_or_init(|| ToolLabels::new(50))
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let w = &*WORKER;
    let mut r = Registry::default();
    r.register_with_unit(
        "jetway_worker_execution_duration",
        "Time from a request's claim to its outcome, by MCP method, tool and outcome",
        Unit::Seconds,
        w.executions.clone(),
    );
    r.register(
        "jetway_worker_deliveries",
        "Requests delivered to this worker by the consumer, by MCP method",
        w.deliveries.clone(),
    );
    r.register(
        "jetway_worker_redeliveries",
        "Deliveries of a request that had been delivered before",
        w.redeliveries.clone(),
    );
    r.register(
        "jetway_worker_reruns",
        "Runs that took a request's claim over from an earlier holder",
        w.reruns.clone(),
    );
    r.register(
        "jetway_worker_claims_waited",
        "Deliveries that waited for another holder of the request's claim",
        w.claims_waited.clone(),
    );
    r.register(
        "jetway_worker_abandoned",
        "Requests answered with an error after max_deliver failed runs",
        w.abandoned.clone(),
    );
    for kind in ["notification", "answer"] {
        let _ = w.messages_dropped.get_or_create(&DroppedLabels { kind });
    }
    r.register(
        "jetway_worker_messages_dropped",
        "Messages not stored because their request's subject held session_max_messages (its last place is kept for the answer), by kind",
        w.messages_dropped.clone(),
    );
    r.register(
        "jetway_worker_deadline_expired",
        "Requests that reached their deadline before they could run",
        w.deadline_expired.clone(),
    );
    r.register(
        "jetway_worker_slots_busy",
        "Slots (max_concurrency) running a request",
        w.slots_busy.clone(),
    );
    r.register(
        "jetway_worker_slots_free",
        "Slots (max_concurrency) free",
        w.slots_free.clone(),
    );
    r.register(
        "jetway_worker_consumer_pending",
        "Requests stored and not yet delivered (the shared consumer's num_pending)",
        w.consumer_pending.clone(),
    );
    r.register(
        "jetway_worker_consumer_ack_pending",
        "Requests delivered and not yet acknowledged (the consumer's num_ack_pending)",
        w.consumer_ack_pending.clone(),
    );
    r.register(
        "jetway_worker_consumer_redelivered",
        "Messages the consumer is redelivering (its num_redelivered)",
        w.consumer_redelivered.clone(),
    );
    r.register_with_unit(
        "jetway_storage",
        "Bytes stored in the session stream and each KV bucket, read every 5 s",
        Unit::Bytes,
        w.storage_bytes.clone(),
    );
    r.register_with_unit(
        "jetway_storage_max",
        "The max_bytes bound of the session stream and each KV bucket (0: none)",
        Unit::Bytes,
        w.storage_max_bytes.clone(),
    );
    r.register(
        "jetway_sessions_expired",
        "Sessions whose record aged out (retention_secs without use); their state was removed",
        w.sessions_expired.clone(),
    );
    r.register_with_unit(
        "jetway_bridge_upstream_request_duration",
        "Bridge mode: HTTP requests to the upstream MCP server, by outcome",
        Unit::Seconds,
        w.upstream.clone(),
    );
    r.register_with_unit(
        "jetway_bridge_stdio_request_duration",
        "Bridge mode: requests to a stdio upstream process, from writing the request to its answer, by mode and outcome",
        Unit::Seconds,
        w.stdio.clone(),
    );
    m::register_bus(&mut r);
    r
});

/// `GET /metrics`.
pub async fn serve() -> axum::http::Response<String> {
    m::response(&REGISTRY)
}

/// The metrics of one delivery, from its arrival to its outcome.
pub struct Execution {
    method: &'static str,
    tool: &'static str,
    start: Instant,
}

impl Execution {
    /// Counts a delivery of `method` (`tool` for a `tools/call`), the
    /// `delivered`-th of its request.
    pub fn delivered(method: &str, tool: Option<&str>, delivered: u64) -> Self {
        let method = method_label(method);
        WORKER
            .deliveries
            .get_or_create(&MethodLabels {
                mcp_method_name: method,
            })
            .inc();
        if delivered > 1 {
            WORKER.redeliveries.inc();
        }
        Self {
            method,
            tool: tool.map(|t| tools().label(t)).unwrap_or(""),
            start: Instant::now(),
        }
    }

    /// The run is under way (claimed): time from here.
    pub fn claimed(&mut self, rerun: bool) {
        if rerun {
            WORKER.reruns.inc();
        }
        self.start = Instant::now();
    }

    /// The run ended with `outcome`.
    pub fn ended(self, outcome: &crate::transport::Outcome) {
        use crate::transport::Outcome as O;
        let outcome = match outcome {
            O::Answered => "answered",
            O::Cancelled => "cancelled",
            O::Unanswered => "unanswered",
            O::Stopped => "stopped",
            O::Running => "running",
        };
        WORKER
            .executions
            .get_or_create(&ExecutionLabels {
                mcp_method_name: self.method,
                gen_ai_tool_name: self.tool,
                outcome,
            })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

/// Counts a delivery that waited for another holder of its claim.
pub fn claim_waited() {
    WORKER.claims_waited.inc();
}

/// Counts a request abandoned after `max_deliver` runs.
pub fn abandoned() {
    WORKER.abandoned.inc();
}

/// Counts a message dropped for lack of room on its subject.
pub fn message_dropped(answer: bool) {
    let kind = if answer { "answer" } else { "notification" };
    WORKER
        .messages_dropped
        .get_or_create(&DroppedLabels { kind })
        .inc();
}

/// Counts a request that reached its deadline before it ran.
pub fn deadline_expired() {
    WORKER.deadline_expired.inc();
}

/// Sets the slot gauges for a worker of `slots` slots, all free.
pub fn slots(slots: usize) {
    WORKER.slots_busy.set(0);
    WORKER.slots_free.set(slots as i64);
}

/// A busy slot, counted while it lives.
pub struct Slot(());

impl Slot {
    pub fn busy() -> Self {
        WORKER.slots_busy.inc();
        WORKER.slots_free.dec();
        Self(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        WORKER.slots_busy.dec();
        WORKER.slots_free.inc();
    }
}

/// Runs `poll` every [`CONSUMER_POLL`] until `stop`.
async fn every_poll<F: Future<Output = ()>>(stop: CancellationToken, mut poll: impl FnMut() -> F) {
    let mut tick = tokio::time::interval(CONSUMER_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        poll().await;
    }
}

/// Reads `consumer`'s info every [`CONSUMER_POLL`] into the consumer
/// gauges, until `stop`.
pub async fn watch_consumer(
    consumer: async_nats::jetstream::consumer::PullConsumer,
    stop: CancellationToken,
) {
    every_poll(stop, || async {
        match consumer.get_info().await {
            Ok(info) => {
                let w = &*WORKER;
                w.consumer_pending.set(info.num_pending as i64);
                w.consumer_ack_pending.set(info.num_ack_pending as i64);
                w.consumer_redelivered.set(info.num_redelivered as i64);
            }
            Err(e) => tracing::debug!(error = %e, "could not read the consumer's info"),
        }
    })
    .await;
}

/// Counts a session whose record aged out.
pub fn session_expired() {
    WORKER.sessions_expired.inc();
}

/// Reads the stored bytes and `max_bytes` of each of `stores` every
/// [`CONSUMER_POLL`] into the storage gauges, until `stop`.
pub async fn watch_storage(
    stores: Vec<(&'static str, async_nats::jetstream::stream::Stream)>,
    stop: CancellationToken,
) {
    every_poll(stop, || async {
        for (store, stream) in &stores {
            match stream.get_info().await {
                Ok(info) => {
                    let labels = StoreLabels { store };
                    let w = &*WORKER;
                    w.storage_bytes
                        .get_or_create(&labels)
                        .set(i64::try_from(info.state.bytes).unwrap_or(i64::MAX));
                    w.storage_max_bytes
                        .get_or_create(&labels)
                        .set(info.config.max_bytes.max(0));
                }
                Err(e) => tracing::debug!(error = %e, store, "could not read the store's info"),
            }
        }
    })
    .await;
}

/// Bridge mode: records one upstream request that started at `start`.
pub fn upstream_call(start: Instant, result: &Result<Reply, UpstreamError>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(UpstreamError::Unreachable(_)) => "unreachable",
        Err(UpstreamError::SessionNotFound) => "session_not_found",
        Err(UpstreamError::Status { .. }) => "status",
        Err(UpstreamError::Body(_)) => "body",
    };
    WORKER
        .upstream
        .get_or_create(&UpstreamLabels { outcome })
        .observe(start.elapsed().as_secs_f64());
}

/// Bridge mode: records one request to a stdio process (`mode`: `pool` or
/// `session`) that started at `start`.
pub fn stdio_call(mode: &'static str, start: Instant, ok: bool) {
    let outcome = if ok { "ok" } else { "failed" };
    WORKER
        .stdio
        .get_or_create(&StdioLabels { mode, outcome })
        .observe(start.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the metrics of one delivery cost the worker: the delivery
    /// counter, a busy slot, the tool label and the execution histogram.
    #[test]
    fn hot_path_cost_per_request() {
        const N: u32 = 20_000;
        // A cap of its own: the global one belongs to the test below.
        let tools = ToolLabels::new(50);
        let start = Instant::now();
        for _ in 0..N {
            let _slot = Slot::busy();
            std::hint::black_box(tools.label("echo"));
            let mut e = Execution::delivered("tools/call", None, 1);
            e.claimed(false);
            e.ended(&crate::transport::Outcome::Answered);
        }
        let per = start.elapsed() / N;
        println!("worker metrics per request: {per:?} (this build's profile)");
        assert!(per < Duration::from_micros(200), "{per:?}");
    }

    /// However many tools are called, the exposition names at most
    /// `metrics_max_tool_labels` of them, and never an argument.
    #[test]
    fn exposition_has_bounded_labels() {
        init(5);
        for i in 0..200 {
            let tool = format!("tool-{i}");
            let e = Execution::delivered("tools/call", Some(&tool), 1);
            e.ended(&crate::transport::Outcome::Answered);
        }
        let e = Execution::delivered("vendor/secret-method-42", None, 2);
        e.ended(&crate::transport::Outcome::Answered);
        let text = m::encode(&REGISTRY);
        let tools: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| l.starts_with("jetway_worker_execution_duration_seconds_count"))
            .filter_map(|l| l.split("gen_ai_tool_name=\"").nth(1))
            .filter_map(|l| l.split('"').next())
            .collect();
        assert_eq!(
            tools,
            [
                "", "other", "tool-0", "tool-1", "tool-2", "tool-3", "tool-4"
            ]
            .into_iter()
            .collect(),
            "{text}"
        );
        assert!(!text.contains("secret-method"));
        assert!(
            text.contains("jetway_worker_redeliveries_total 1"),
            "{text}"
        );
    }
}
