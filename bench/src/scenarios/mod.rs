//! The scenarios of the benchmark, one module each. Every scenario starts
//! the processes it needs (its own nats-server, so scenarios do not see each
//! other's data), measures, stops them, and returns a report [`Section`].
//!
//! - [`tools_call`] — `tools/call` latency and throughput: rmcp baseline,
//!   Jetway 1 + 1 and 2 + 2, side by side.
//! - [`idle_streams`] — many idle standalone GET streams on one gateway.
//! - [`resume`] — `Last-Event-ID` on another gateway to the first replayed event.
//! - [`crash`] — SIGKILL of the worker running a request to its result.
//! - [`replay`] — reading a 100,000-message session back.
//! - [`scaling`] — throughput with 1, 2 and 4 workers behind one gateway.
//! - [`claims`] — what a request's claim (a KV compare-and-set create with a
//!   TTL) costs, against a plain publish of the same size.
//! - [`renewals`] — what lease renewals cost with 1,000 requests in flight.
//! - [`bridge`] — `echo` through a bridge worker (1 + 1) against its
//!   upstream (`jetway-baseline`) called directly.

pub mod bridge;
pub mod claims;
pub mod crash;
pub mod idle_streams;
pub mod renewals;
pub mod replay;
pub mod resume;
pub mod scaling;
pub mod tools_call;

use crate::report::Section;
use crate::stack::Env;
use anyhow::Result;
use std::time::Duration;

/// Scenario names, in the order `all` runs them.
pub const ALL: [&str; 9] = [
    "tools_call",
    "idle_streams",
    "resume",
    "crash",
    "replay",
    "scaling",
    "claims",
    "renewals",
    "bridge",
];

/// Sizes and durations of one run.
#[derive(Debug, Clone)]
pub struct Params {
    pub smoke: bool,
    /// Concurrency levels of `tools_call`: (sessions, requests per session).
    pub concurrency: Vec<(usize, usize)>,
    pub warmup: Duration,
    pub duration: Duration,
    pub idle_streams: usize,
    /// How long the idle streams are held while CPU is measured.
    pub idle_hold: Duration,
    pub resume_samples: usize,
    pub crash_samples: usize,
    /// Workers' `--ack-wait-secs` in `crash` (`None`: the worker's default).
    pub crash_ack_wait: Option<u64>,
    pub replay_messages: usize,
    pub scaling_workers: Vec<usize>,
    /// Scaling: each worker's `--max-concurrency`, and the client's concurrency.
    pub scaling_worker_concurrency: usize,
    pub scaling_sessions: (usize, usize),
    /// Claims: sequential writes of each kind.
    pub claims_writes: usize,
    /// Renewals: (sessions, concurrent calls per session); the worker's
    /// `--max-concurrency` is their product.
    pub renewals_sessions: (usize, usize),
    /// Renewals: each call's `sleep_ms`.
    pub renewals_sleep_ms: u64,
    /// Renewals: the planned length of the idle and the loaded window.
    pub renewals_window: Duration,
    /// Renewals: from every call delivered to the loaded window.
    pub renewals_settle: Duration,
    /// Renewals: from the loaded window's end to the first call's earliest finish.
    pub renewals_tail: Duration,
    /// Bridge: concurrency levels, (sessions, requests per session).
    pub bridge_concurrency: Vec<(usize, usize)>,
    /// Bridge: rounds of direct and bridged, back to back, per level.
    pub bridge_rounds: usize,
    pub bridge_warmup: Duration,
    pub bridge_duration: Duration,
}

impl Params {
    /// The full run.
    pub fn full() -> Self {
        Self {
            smoke: false,
            concurrency: vec![(1, 1), (4, 4), (64, 4)],
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(5),
            idle_streams: 10_000,
            idle_hold: Duration::from_secs(20),
            resume_samples: 200,
            crash_samples: 5,
            crash_ack_wait: None,
            replay_messages: 100_000,
            scaling_workers: vec![1, 2, 4],
            scaling_worker_concurrency: 4,
            scaling_sessions: (16, 4),
            claims_writes: 2_000,
            renewals_sessions: (50, 20),
            renewals_sleep_ms: 8_000,
            renewals_window: Duration::from_secs(4),
            renewals_settle: Duration::from_secs(2),
            renewals_tail: Duration::from_secs(1),
            bridge_concurrency: vec![(1, 1), (4, 4)],
            bridge_rounds: 3,
            bridge_warmup: Duration::from_secs(1),
            bridge_duration: Duration::from_secs(4),
        }
    }

    /// Smoke mode: every scenario, tiny counts; proves the benchmark works.
    pub fn smoke() -> Self {
        Self {
            smoke: true,
            concurrency: vec![(1, 1), (2, 2)],
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(300),
            idle_streams: 20,
            idle_hold: Duration::from_secs(1),
            resume_samples: 5,
            crash_samples: 1,
            crash_ack_wait: None,
            replay_messages: 2_000,
            scaling_workers: vec![1, 2],
            scaling_worker_concurrency: 2,
            scaling_sessions: (2, 2),
            claims_writes: 50,
            renewals_sessions: (4, 5),
            renewals_sleep_ms: 2_000,
            renewals_window: Duration::from_secs(1),
            renewals_settle: Duration::from_millis(200),
            renewals_tail: Duration::from_millis(200),
            bridge_concurrency: vec![(1, 1), (4, 4)],
            bridge_rounds: 1,
            bridge_warmup: Duration::from_millis(100),
            bridge_duration: Duration::from_millis(300),
        }
    }
}

/// What every scenario gets.
pub struct Ctx {
    pub env: Env,
    pub http: reqwest::Client,
    pub params: Params,
}

/// Runs the scenario called `name`.
pub async fn run(ctx: &Ctx, name: &str) -> Result<Section> {
    match name {
        "tools_call" => tools_call::run(ctx).await,
        "idle_streams" => idle_streams::run(ctx).await,
        "resume" => resume::run(ctx).await,
        "crash" => crash::run(ctx).await,
        "replay" => replay::run(ctx).await,
        "scaling" => scaling::run(ctx).await,
        "claims" => claims::run(ctx).await,
        "renewals" => renewals::run(ctx).await,
        "bridge" => bridge::run(ctx).await,
        other => anyhow::bail!("unknown scenario {other}; known: {}", ALL.join(", ")),
    }
}
