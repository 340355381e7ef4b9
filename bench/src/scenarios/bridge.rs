//! Scenario 9: the bridge. `echo` through Jetway in bridge mode (1 gateway +
//! 1 worker started with `--upstream-url`) against the same upstream called
//! directly, in the same run.
//!
//! The upstream is one `jetway-baseline` (rmcp), started by the scenario:
//! the direct configuration calls it, the bridge worker forwards every
//! request to it (`initialize` included, one upstream session per Jetway
//! session). For each concurrency level the two configurations run back to
//! back, alternating which goes first, for a few rounds; the figures are the
//! medians over the rounds. The CPU every process spent per request —
//! gateway, worker, nats-server and the upstream — is measured in both
//! configurations (in the direct one the Jetway processes idle).

use super::Ctx;
use super::tools_call::{ECHO_TEXT, MeasuredRun, measured_run};
use crate::client::McpSession;
use crate::load::{self, LoadResult};
use crate::report::{Section, table};
use crate::stack::{Baseline, Spec, Stack};
use crate::stats::{fmt_ms, fmt_ratio, median, ratio};
use anyhow::Result;
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

const DIRECT: &str = "direct";
const BRIDGED: &str = "bridged";
/// Process kinds, in the order of the tables.
const KINDS: [&str; 4] = ["gateway", "worker", "nats", "baseline"];

/// One measured run of one configuration.
#[derive(Debug, Clone, Serialize)]
struct Run {
    round: usize,
    concurrency: usize,
    config: &'static str,
    #[serde(flatten)]
    result: LoadResult,
    /// CPU time per request, µs, by process kind.
    cpu_us_per_request: Vec<(String, f64)>,
}

/// One configuration at one concurrency level: medians over the rounds.
#[derive(Debug, Clone, Serialize)]
struct Side {
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    throughput_rps: f64,
    /// Requests measured, over all rounds.
    samples: usize,
    /// Failed requests, over all rounds.
    errors: u64,
    cpu_us_per_request: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Serialize)]
struct Level {
    concurrency: usize,
    sessions: usize,
    per_session: usize,
    rounds: usize,
    direct: Side,
    bridged: Side,
    /// Bridged p50 − direct p50 (medians over the rounds).
    p50_overhead_ms: f64,
    /// Bridged throughput ÷ direct throughput (medians over the rounds).
    throughput_ratio: Option<f64>,
}

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let upstream = Baseline::start(&ctx.env, "bridge-upstream").await?;
    let worker_args = ["--upstream-url", upstream.url.as_str()];
    let stack = Stack::start(
        &ctx.env,
        "bridge-1x1",
        Spec {
            gateways: 1,
            workers: 1,
            worker_args: &worker_args,
        },
    )
    .await;
    let stack = match stack {
        Ok(s) => s,
        Err(e) => {
            upstream.stop().await;
            return Err(e);
        }
    };
    let runs = measure(ctx, &upstream, &stack).await;
    stack.stop().await;
    upstream.stop().await;
    let runs = runs?;
    Ok(section(ctx, runs))
}

async fn measure(ctx: &Ctx, upstream: &Baseline, stack: &Stack) -> Result<Vec<Run>> {
    let mut procs = stack.pids();
    procs.push(("baseline", upstream.pid()));
    let direct_urls = vec![upstream.url.clone()];
    let bridged_urls = stack.urls();
    let configs = [(DIRECT, &direct_urls), (BRIDGED, &bridged_urls)];
    let p = &ctx.params;
    let arguments = json!({ "text": ECHO_TEXT });
    let mut runs = Vec::new();
    for &(sessions, per_session) in &p.bridge_concurrency {
        let mut opened: Vec<Vec<Arc<McpSession>>> = Vec::new();
        for (_, urls) in &configs {
            opened.push(load::open_sessions(&ctx.http, urls, sessions).await?);
        }
        for round in 0..p.bridge_rounds {
            // Alternate which goes first, so a trend on a shared machine
            // does not always favour the same one.
            let mut order = [0, 1];
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let (config, urls) = configs[i];
                let (result, cpu) = measured_run(MeasuredRun {
                    label: config,
                    urls,
                    procs: &procs,
                    sessions: &opened[i],
                    per_session,
                    tool: "echo",
                    arguments: arguments.clone(),
                    warmup: p.bridge_warmup,
                    duration: p.bridge_duration,
                })
                .await?;
                runs.push(Run {
                    round: round + 1,
                    concurrency: sessions * per_session,
                    config,
                    result,
                    cpu_us_per_request: cpu,
                });
            }
        }
    }
    Ok(runs)
}

fn side(runs: &[&Run]) -> Side {
    let med = |f: &dyn Fn(&Run) -> f64| median(&runs.iter().map(|r| f(r)).collect::<Vec<_>>());
    let cpu = KINDS
        .iter()
        .map(|k| {
            let v = med(&|r: &Run| {
                r.cpu_us_per_request
                    .iter()
                    .find(|(n, _)| n == k)
                    .map_or(0.0, |(_, v)| *v)
            });
            (k.to_string(), v)
        })
        .collect();
    Side {
        p50_ms: med(&|r| r.result.latency.p50_ms),
        p90_ms: med(&|r| r.result.latency.p90_ms),
        p99_ms: med(&|r| r.result.latency.p99_ms),
        throughput_rps: med(&|r| r.result.throughput_rps),
        samples: runs.iter().map(|r| r.result.latency.samples).sum(),
        errors: runs.iter().map(|r| r.result.errors).sum(),
        cpu_us_per_request: cpu,
    }
}

fn levels(ctx: &Ctx, runs: &[Run]) -> Vec<Level> {
    let p = &ctx.params;
    p.bridge_concurrency
        .iter()
        .map(|&(sessions, per_session)| {
            let c = sessions * per_session;
            let of = |config: &str| -> Vec<&Run> {
                runs.iter()
                    .filter(|r| r.concurrency == c && r.config == config)
                    .collect()
            };
            let (direct, bridged) = (side(&of(DIRECT)), side(&of(BRIDGED)));
            Level {
                concurrency: c,
                sessions,
                per_session,
                rounds: p.bridge_rounds,
                p50_overhead_ms: bridged.p50_ms - direct.p50_ms,
                throughput_ratio: ratio(bridged.throughput_rps, direct.throughput_rps),
                direct,
                bridged,
            }
        })
        .collect()
}

fn section(ctx: &Ctx, runs: Vec<Run>) -> Section {
    let p = &ctx.params;
    let levels = levels(ctx, &runs);
    let mut rows = Vec::new();
    let mut cpu_rows = Vec::new();
    for l in &levels {
        for (config, s) in [(DIRECT, &l.direct), (BRIDGED, &l.bridged)] {
            let bridged = config == BRIDGED;
            rows.push(vec![
                format!("{} ({}×{})", l.concurrency, l.sessions, l.per_session),
                config.to_owned(),
                fmt_ms(s.p50_ms),
                fmt_ms(s.p90_ms),
                fmt_ms(s.p99_ms),
                format!("{:.0}", s.throughput_rps),
                if bridged {
                    format!("{:+.2}", l.p50_overhead_ms)
                } else {
                    String::new()
                },
                if bridged {
                    fmt_ratio(l.throughput_ratio)
                } else {
                    String::new()
                },
                s.samples.to_string(),
                s.errors.to_string(),
            ]);
            let mut cpu_row = vec![l.concurrency.to_string(), config.to_owned()];
            cpu_row.extend(s.cpu_us_per_request.iter().map(|(_, v)| format!("{v:.0}")));
            let total: f64 = s.cpu_us_per_request.iter().map(|(_, v)| v).sum();
            cpu_row.push(format!("{total:.0}"));
            cpu_rows.push(cpu_row);
        }
    }
    let mut markdown = format!(
        "`echo` through Jetway in bridge mode (1 gateway + 1 worker with `--upstream-url` \
         pointing at a `jetway-baseline`) against that same `jetway-baseline` called directly. \
         Latency in ms from sending the POST to reading the final response on its SSE stream; \
         concurrency = sessions × concurrent requests per session; closed loop; \
         {rounds} round(s) of {warmup:.1} s warm-up + {duration:.1} s measured per \
         configuration and level, the two alternating; medians over the rounds.\n\n",
        rounds = p.bridge_rounds,
        warmup = p.bridge_warmup.as_secs_f64(),
        duration = p.bridge_duration.as_secs_f64(),
    );
    markdown.push_str(&table(
        &[
            "concurrency",
            "config",
            "p50",
            "p90",
            "p99",
            "req/s",
            "p50 − direct (ms)",
            "req/s ÷ direct",
            "requests",
            "errors",
        ],
        rows,
    ));
    markdown.push_str(
        "\nCPU time per request (µs), by process (medians over the rounds). In the direct \
         configuration the Jetway processes idle; the load generator's own CPU is not \
         included.\n\n",
    );
    markdown.push_str(&table(
        &[
            "c",
            "config",
            "gateway",
            "worker",
            "nats",
            "baseline (upstream)",
            "total",
        ],
        cpu_rows,
    ));
    Section {
        key: "bridge",
        title: "9. Bridge: tools/call through Jetway to an upstream vs the upstream direct".into(),
        markdown,
        json: json!({ "levels": levels, "runs": runs }),
        targets: Vec::new(),
    }
}
