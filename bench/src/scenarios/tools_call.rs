//! Scenario 1: `tools/call` latency and throughput, Jetway against the rmcp
//! baseline in the same run.
//!
//! Three configurations run at once, idle but for the one under load: the
//! rmcp baseline; Jetway with 1 gateway + 1 worker; Jetway with 2 gateways +
//! 2 workers, the client alternating between the gateways per request
//! (round robin, no stickiness). Each has its own nats-server, so the 1 + 1
//! worker is alone on its consumer. For each concurrency level and tool
//! (`increment_counter`, `echo`) the three run back to back, so a noisy
//! moment on a shared machine hits all three alike. The CPU each process
//! spent per request shows where the time goes.

use super::Ctx;
use crate::client::McpSession;
use crate::load::{self, Load, LoadResult};
use crate::report::{Section, Target, table};
use crate::stack::{Baseline, Spec, Stack};
use crate::stats::{fmt_ms, fmt_ratio, ratio};
use crate::usage::Usage;
use anyhow::Result;
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The echo tool's argument: a short sentence, like a small tool result.
pub const ECHO_TEXT: &str = "The quick brown fox jumps over the lazy dog.";

/// Target: p50 at most this much above the baseline's.
const P50_SLACK_MS: f64 = 1.0;
/// Target: throughput at least this fraction of the baseline's.
const THROUGHPUT_FLOOR: f64 = 0.5;

/// Label of the configuration every ratio is taken against.
const BASELINE: &str = "rmcp (baseline)";

struct Config {
    name: &'static str,
    urls: Vec<String>,
    /// Process ids by kind.
    procs: Vec<(&'static str, u32)>,
    /// Judged against the targets (Jetway as shipped).
    judged: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Row {
    tool: &'static str,
    concurrency: usize,
    config: &'static str,
    #[serde(flatten)]
    result: LoadResult,
    /// CPU time per request, µs, by process kind.
    cpu_us_per_request: Vec<(String, f64)>,
}

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let base = Baseline::start(&ctx.env, "tools-rmcp").await?;
    let spec = |gateways, workers| Spec {
        gateways,
        workers,
        worker_args: &[],
    };
    let one = Stack::start(&ctx.env, "tools-1x1", spec(1, 1)).await?;
    let two = Stack::start(&ctx.env, "tools-2x2", spec(2, 2)).await?;
    let configs = [
        rmcp(BASELINE, &base),
        jetway("Jetway 1+1", &one, true),
        jetway("Jetway 2+2", &two, true),
    ];
    let rows = measure(ctx, &configs).await;
    let judged: Vec<&str> = configs
        .iter()
        .filter(|c| c.judged)
        .map(|c| c.name)
        .collect();
    drop(configs);
    base.stop().await;
    one.stop().await;
    two.stop().await;
    Ok(section(rows?, &judged))
}

async fn measure(ctx: &Ctx, configs: &[Config]) -> Result<Vec<Row>> {
    let tools: [(&'static str, Value); 2] = [
        ("increment_counter", json!({})),
        ("echo", json!({"text": ECHO_TEXT})),
    ];
    let p = &ctx.params;
    let mut rows = Vec::new();
    for &(sessions, per_session) in &p.concurrency {
        let mut opened: Vec<Vec<Arc<McpSession>>> = Vec::new();
        for c in configs {
            opened.push(load::open_sessions(&ctx.http, &c.urls, sessions).await?);
        }
        for (tool, arguments) in &tools {
            for (c, sessions) in configs.iter().zip(&opened) {
                let (result, cpu) = measured_run(MeasuredRun {
                    label: c.name,
                    urls: &c.urls,
                    procs: &c.procs,
                    sessions,
                    per_session,
                    tool,
                    arguments: arguments.clone(),
                    warmup: p.warmup,
                    duration: p.duration,
                })
                .await?;
                rows.push(Row {
                    tool,
                    concurrency: sessions.len() * per_session,
                    config: c.name,
                    result,
                    cpu_us_per_request: cpu,
                });
            }
        }
    }
    Ok(rows)
}

/// One closed-loop run, with the processes whose CPU it is charged to.
pub(super) struct MeasuredRun<'a> {
    /// The configuration's name, for logs and errors.
    pub label: &'a str,
    pub urls: &'a [String],
    /// Process ids by kind (`"gateway"`, `"worker"`, `"nats"`, ...).
    pub procs: &'a [(&'static str, u32)],
    pub sessions: &'a [Arc<McpSession>],
    pub per_session: usize,
    pub tool: &'a str,
    pub arguments: Value,
    pub warmup: Duration,
    pub duration: Duration,
}

/// Runs the load and returns its result with the CPU time each kind of
/// process spent per measured request (µs, from `/proc`). Fails if no
/// request completed.
pub(super) async fn measured_run(run: MeasuredRun<'_>) -> Result<(LoadResult, Vec<(String, f64)>)> {
    let before = usage(run.procs);
    let result = load::run(Load {
        urls: run.urls,
        sessions: run.sessions,
        per_session: run.per_session,
        tool: run.tool,
        arguments: run.arguments,
        warmup: run.warmup,
        duration: run.duration,
    })
    .await;
    let after = usage(run.procs);
    if result.latency.samples == 0 {
        anyhow::bail!(
            "{} on {}: no request completed: {:?}",
            run.tool,
            run.label,
            result.first_error
        );
    }
    let requests = result.latency.samples as f64;
    // The CPU samples span the warm-up too: count the measured share.
    let share = run.duration.as_secs_f64() / (run.duration + run.warmup).as_secs_f64();
    let cpu = cpu_by_kind(&before, &after)
        .into_iter()
        .map(|(k, secs)| (k, secs * share * 1e6 / requests))
        .collect();
    tracing::info!(
        tool = run.tool,
        config = run.label,
        sessions = run.sessions.len(),
        per_session = run.per_session,
        p50_ms = result.latency.p50_ms,
        rps = result.throughput_rps,
        errors = result.errors,
        "tools/call measured"
    );
    Ok((result, cpu))
}

fn rmcp(name: &'static str, server: &Baseline) -> Config {
    Config {
        name,
        urls: vec![server.url.clone()],
        procs: vec![("server", server.pid())],
        judged: false,
    }
}

fn jetway(name: &'static str, stack: &Stack, judged: bool) -> Config {
    Config {
        name,
        urls: stack.urls(),
        procs: stack.pids(),
        judged,
    }
}

fn usage(procs: &[(&'static str, u32)]) -> Vec<(&'static str, Usage)> {
    procs
        .iter()
        .map(|&(k, pid)| (k, Usage::of(pid).unwrap_or_default()))
        .collect()
}

/// CPU seconds spent between two samples, summed by process kind.
fn cpu_by_kind(
    before: &[(&'static str, Usage)],
    after: &[(&'static str, Usage)],
) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for ((kind, b), (_, a)) in before.iter().zip(after) {
        let spent = (a.cpu_secs - b.cpu_secs).max(0.0);
        match out.iter_mut().find(|(k, _)| k == kind) {
            Some((_, v)) => *v += spent,
            None => out.push((kind.to_string(), spent)),
        }
    }
    out
}

fn section(rows: Vec<Row>, judged: &[&str]) -> Section {
    let baseline_of = |r: &Row| {
        rows.iter()
            .find(|b| b.tool == r.tool && b.concurrency == r.concurrency && b.config == BASELINE)
            .map(|b| b.result.clone())
    };
    let mut table_rows = Vec::new();
    let mut cpu_rows = Vec::new();
    let mut targets = Vec::new();
    for r in &rows {
        let l = &r.result.latency;
        let base = baseline_of(r);
        let is_base = r.config == BASELINE;
        let (delta, tput) = match &base {
            Some(b) if !is_base => (
                format!("{:+.2}", l.p50_ms - b.latency.p50_ms),
                fmt_ratio(ratio(r.result.throughput_rps, b.throughput_rps)),
            ),
            _ => ("".into(), "".into()),
        };
        table_rows.push(vec![
            format!("`{}`", r.tool),
            format!(
                "{} ({}×{})",
                r.concurrency, r.result.sessions, r.result.per_session
            ),
            r.config.to_owned(),
            fmt_ms(l.p50_ms),
            fmt_ms(l.p90_ms),
            fmt_ms(l.p99_ms),
            fmt_ms(l.max_ms),
            format!("{:.0}", r.result.throughput_rps),
            delta,
            tput,
            r.result.errors.to_string(),
        ]);
        let total: f64 = r.cpu_us_per_request.iter().map(|(_, v)| v).sum();
        let kind = |k: &str| {
            r.cpu_us_per_request
                .iter()
                .find(|(n, _)| n == k)
                .map_or(String::new(), |(_, v)| format!("{v:.0}"))
        };
        cpu_rows.push(vec![
            format!("`{}`", r.tool),
            r.concurrency.to_string(),
            r.config.to_owned(),
            kind("server"),
            kind("gateway"),
            kind("worker"),
            kind("nats"),
            format!("{total:.0}"),
        ]);
        let Some(b) = base.filter(|_| judged.contains(&r.config)) else {
            continue;
        };
        let what = format!("`{}`, c={}, {}", r.tool, r.concurrency, r.config);
        let d = l.p50_ms - b.latency.p50_ms;
        targets.push(Target {
            scenario: "1 tools/call".into(),
            what: format!("p50 − baseline p50, {what}"),
            target: format!("≤ {P50_SLACK_MS} ms"),
            measured: format!(
                "{d:+.2} ms ({} vs {} ms)",
                fmt_ms(l.p50_ms),
                fmt_ms(b.latency.p50_ms)
            ),
            met: d <= P50_SLACK_MS,
            margin: if d <= P50_SLACK_MS {
                format!("{:.2} ms to spare", P50_SLACK_MS - d)
            } else {
                format!("missed by {:.2} ms", d - P50_SLACK_MS)
            },
        });
        let q = ratio(r.result.throughput_rps, b.throughput_rps).unwrap_or(0.0);
        targets.push(Target {
            scenario: "1 tools/call".into(),
            what: format!("throughput ÷ baseline, {what}"),
            target: format!("≥ {THROUGHPUT_FLOOR}×"),
            measured: format!(
                "{q:.2}× ({:.0} vs {:.0} req/s)",
                r.result.throughput_rps, b.throughput_rps
            ),
            met: q >= THROUGHPUT_FLOOR,
            margin: if q >= THROUGHPUT_FLOOR {
                format!(
                    "{:.0}% above the floor",
                    (q / THROUGHPUT_FLOOR - 1.0) * 100.0
                )
            } else {
                format!(
                    "{:.0}% below the floor",
                    (1.0 - q / THROUGHPUT_FLOOR) * 100.0
                )
            },
        });
    }
    let mut markdown = String::from(
        "Latency in ms from sending the POST to reading the final response on its SSE stream; \
         concurrency = sessions × concurrent requests per session; closed loop. \
         Jetway 2 + 2: the client alternates between the two gateways per request \
         (round robin, no stickiness).\n\n",
    );
    markdown.push_str(&table(
        &[
            "tool",
            "concurrency",
            "config",
            "p50",
            "p90",
            "p99",
            "max",
            "req/s",
            "p50 − baseline (ms)",
            "req/s ÷ baseline",
            "errors",
        ],
        table_rows,
    ));
    markdown.push_str(
        "\nCPU time per request (µs), by process: where the time goes. The load generator's \
         own CPU is not included (it is the same client for every configuration).\n\n",
    );
    markdown.push_str(&table(
        &[
            "tool",
            "c",
            "config",
            "rmcp server",
            "gateway(s)",
            "worker(s)",
            "nats",
            "total",
        ],
        cpu_rows,
    ));
    Section {
        key: "tools_call",
        title: "1. tools/call latency and throughput".into(),
        markdown,
        json: json!({ "runs": rows }),
        targets,
    }
}
