//! The load generator: N sessions × C concurrent requests per session, each
//! request sent as soon as the previous one of its slot finished (a closed
//! loop), for a warm-up and then a measured window.
//!
//! Requests go to the URLs in turn, one request at a time, whichever session
//! sends it: with two gateway URLs that is round robin with no stickiness,
//! done by the client instead of a proxy in front (no extra hop to measure).

use crate::client::McpSession;
use crate::stats::Latency;
use anyhow::Result;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Sessions opened at once while setting up a run.
pub const OPEN_CONCURRENCY: usize = 32;

/// One measured run.
pub struct Load<'a> {
    /// Target URLs, used in turn per request.
    pub urls: &'a [String],
    pub sessions: &'a [Arc<McpSession>],
    /// Concurrent requests per session.
    pub per_session: usize,
    pub tool: &'a str,
    pub arguments: Value,
    pub warmup: Duration,
    pub duration: Duration,
}

/// What a run measured. Latency is from sending the POST to reading the
/// final response on its SSE stream; throughput counts requests sent in the
/// measured window, over the time until the last of them finished.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    pub sessions: usize,
    pub per_session: usize,
    pub latency: Latency,
    pub throughput_rps: f64,
    pub errors: u64,
    pub first_error: Option<String>,
}

/// Opens `n` sessions, `OPEN_CONCURRENCY` at a time, on the URLs in turn.
pub async fn open_sessions(
    http: &reqwest::Client,
    urls: &[String],
    n: usize,
) -> Result<Vec<Arc<McpSession>>> {
    futures::stream::iter(0..n)
        .map(|i| {
            let url = &urls[i % urls.len()];
            async move { McpSession::initialize(http, url).await.map(Arc::new) }
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .try_collect()
        .await
}

struct Slot {
    latencies_us: Vec<u64>,
    last_end: Option<Instant>,
    errors: u64,
    first_error: Option<String>,
}

/// Runs the load and summarizes it.
pub async fn run(load: Load<'_>) -> LoadResult {
    let next_url = Arc::new(AtomicUsize::new(0));
    let urls: Arc<[String]> = load.urls.into();
    let arguments = Arc::new(load.arguments);
    let tool: Arc<str> = load.tool.into();
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let stop_at = measure_from + load.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for session in load.sessions {
        for _ in 0..load.per_session {
            let (session, urls, next_url) = (session.clone(), urls.clone(), next_url.clone());
            let (arguments, tool) = (arguments.clone(), tool.clone());
            tasks.spawn(async move {
                let mut slot = Slot {
                    latencies_us: Vec::with_capacity(4096),
                    last_end: None,
                    errors: 0,
                    first_error: None,
                };
                loop {
                    let sent = Instant::now();
                    if sent >= stop_at {
                        break;
                    }
                    let url = &urls[next_url.fetch_add(1, Ordering::Relaxed) % urls.len()];
                    let result = session.call_tool(url, &tool, &arguments).await;
                    let end = Instant::now();
                    let measured = sent >= measure_from;
                    match result {
                        Ok(_) if measured => {
                            slot.latencies_us.push((end - sent).as_micros() as u64);
                            slot.last_end = Some(end);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            if measured {
                                slot.errors += 1;
                            }
                            slot.first_error.get_or_insert_with(|| format!("{e:#}"));
                            // Do not spin on a failing server.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                slot
            });
        }
    }
    let mut all = Vec::new();
    let (mut errors, mut first_error, mut last_end) = (0, None, measure_from);
    while let Some(done) = tasks.join_next().await {
        let Ok(slot) = done else {
            errors += 1;
            continue;
        };
        all.extend(slot.latencies_us);
        errors += slot.errors;
        first_error = first_error.or(slot.first_error);
        if let Some(end) = slot.last_end {
            last_end = last_end.max(end);
        }
    }
    let window = (last_end - measure_from).as_secs_f64();
    let throughput_rps = if window > 0.0 {
        all.len() as f64 / window
    } else {
        0.0
    };
    LoadResult {
        sessions: load.sessions.len(),
        per_session: load.per_session,
        latency: Latency::from_micros(all),
        throughput_rps,
        errors,
        first_error,
    }
}
