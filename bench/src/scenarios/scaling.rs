//! Scenario 6: workers scale independently of gateways.
//!
//! One gateway; 1, then 2, then 4 workers on the same consumer, each running
//! at most K requests at once (`--max-concurrency K`), under a client that
//! keeps more requests in flight than all of them together can run. The tool
//! is `sleep_ms(50)`: it waits rather than computes, so a worker's capacity
//! is K / 50 ms and the gateway's work per request stays the same. If workers
//! scale independently, throughput follows the number of workers while the
//! gateway count stays one. The rmcp baseline at the same client concurrency
//! (no per-worker limit) is the ceiling for reference.

use super::Ctx;
use crate::load::{self, Load, LoadResult};
use crate::report::{Section, table};
use crate::stack::{Baseline, Spec, Stack};
use crate::stats::fmt_ms;
use anyhow::Result;
use serde::Serialize;
use serde_json::json;

/// The tool's sleep.
const SLEEP_MS: u64 = 50;

#[derive(Debug, Clone, Serialize)]
struct Row {
    config: String,
    workers: Option<usize>,
    /// Requests per second the workers could run at most.
    ideal_rps: f64,
    #[serde(flatten)]
    result: LoadResult,
}

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let k = ctx.params.scaling_worker_concurrency;
    let k_arg = k.to_string();
    let worker_args = ["--max-concurrency", k_arg.as_str()];
    let mut stack = Stack::start(
        &ctx.env,
        "scaling",
        Spec {
            gateways: 1,
            ..Spec::default()
        },
    )
    .await?;
    let jetway = measure(ctx, &mut stack, &worker_args).await;
    stack.stop().await;
    let baseline = Baseline::start(&ctx.env, "scaling-rmcp").await?;
    let base = measure_baseline(ctx, &baseline).await;
    baseline.stop().await;
    let mut rows = jetway?;
    rows.push(base?);

    let one = rows.first().map_or(0.0, |r| r.result.throughput_rps);
    let (sessions, per) = ctx.params.scaling_sessions;
    let table_rows = rows
        .iter()
        .map(|r| {
            let l = &r.result.latency;
            vec![
                r.config.clone(),
                r.workers.map_or("–".into(), |w| w.to_string()),
                format!("{:.0}", r.result.throughput_rps),
                format!("{:.0}", r.ideal_rps),
                format!("{:.0}%", r.result.throughput_rps / r.ideal_rps * 100.0),
                match r.workers {
                    Some(_) if one > 0.0 => format!("{:.2}×", r.result.throughput_rps / one),
                    _ => "".into(),
                },
                fmt_ms(l.p50_ms),
                fmt_ms(l.p99_ms),
                r.result.errors.to_string(),
            ]
        })
        .collect();
    let mut markdown = format!(
        "`sleep_ms({SLEEP_MS})`, one gateway, workers with `--max-concurrency {k}` (capacity \
         {k} / {SLEEP_MS} ms = {:.0} req/s each); the client keeps {} requests in flight \
         ({sessions} sessions × {per}). Ideal = workers × {k} / {SLEEP_MS} ms (baseline: \
         client concurrency / {SLEEP_MS} ms).\n\n",
        k as f64 * 1000.0 / SLEEP_MS as f64,
        sessions * per
    );
    markdown.push_str(&table(
        &[
            "config",
            "workers",
            "req/s",
            "ideal req/s",
            "of ideal",
            "vs 1 worker",
            "p50 (ms)",
            "p99 (ms)",
            "errors",
        ],
        table_rows,
    ));
    Ok(Section {
        key: "scaling",
        title: "6. Scaling workers behind one gateway".into(),
        markdown,
        json: json!({ "worker_max_concurrency": k, "runs": rows }),
        targets: Vec::new(),
    })
}

async fn measure(ctx: &Ctx, stack: &mut Stack, worker_args: &[&str]) -> Result<Vec<Row>> {
    let p = &ctx.params;
    let urls = stack.urls();
    let sessions = p.scaling_sessions.0;
    // `initialize` runs on a worker too.
    stack.add_worker(worker_args).await?;
    let opened = load::open_sessions(&ctx.http, &urls, sessions).await?;
    let mut rows = Vec::new();
    for &workers in &p.scaling_workers {
        while stack.workers.len() < workers {
            stack.add_worker(worker_args).await?;
        }
        let result = sleep_load(ctx, &urls, &opened).await;
        tracing::info!(workers, rps = result.throughput_rps, "scaling measured");
        if result.latency.samples == 0 {
            anyhow::bail!(
                "no request completed with {workers} workers: {:?}",
                result.first_error
            );
        }
        rows.push(Row {
            config: "Jetway, 1 gateway".into(),
            workers: Some(workers),
            ideal_rps: (workers * p.scaling_worker_concurrency) as f64 * 1000.0 / SLEEP_MS as f64,
            result,
        });
    }
    Ok(rows)
}

async fn measure_baseline(ctx: &Ctx, baseline: &Baseline) -> Result<Row> {
    let p = &ctx.params;
    let urls = [baseline.url.clone()];
    let (sessions, per_session) = p.scaling_sessions;
    let opened = load::open_sessions(&ctx.http, &urls, sessions).await?;
    let result = sleep_load(ctx, &urls, &opened).await;
    Ok(Row {
        config: "rmcp baseline".into(),
        workers: None,
        ideal_rps: (sessions * per_session) as f64 * 1000.0 / SLEEP_MS as f64,
        result,
    })
}

/// One closed-loop run of `sleep_ms(SLEEP_MS)` over `sessions`.
async fn sleep_load(
    ctx: &Ctx,
    urls: &[String],
    sessions: &[std::sync::Arc<crate::client::McpSession>],
) -> LoadResult {
    let p = &ctx.params;
    load::run(Load {
        urls,
        sessions,
        per_session: p.scaling_sessions.1,
        tool: "sleep_ms",
        arguments: json!({"ms": SLEEP_MS}),
        warmup: p.warmup,
        duration: p.duration,
    })
    .await
}
