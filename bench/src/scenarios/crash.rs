//! Scenario 4: worker-crash recovery — from SIGKILL of the worker running a
//! request to the client reading the request's result.
//!
//! One gateway, two workers (default lease, `--ack-wait-secs` 6, unless the
//! run says otherwise). The client calls `analyze_data(num_items = 2)`
//! (≈1.4 s of work), learns which worker runs it from the first log
//! notification (`Starting analysis of 2 items on <instance>`), SIGKILLs that
//! worker at once and keeps reading the same SSE stream: the request is
//! redelivered to the other worker when the lease runs out, runs again from
//! the start, and its result arrives on the stream. A fresh worker replaces
//! the killed one before the next sample. The rmcp baseline has no
//! counterpart: a direct server's crash loses the session and the request.

use super::Ctx;
use crate::client::McpSession;
use crate::report::{Section, Target, table};
use crate::stack::{Spec, Stack};
use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Target: kill → result.
const TARGET_SECS: f64 = 10.0;
const ITEMS: u64 = 2;
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(90);
const STARTING: &str = "Starting analysis of ";

#[derive(Debug, Clone, Serialize)]
struct Sample {
    killed: String,
    finished_on: String,
    /// Kill → the re-run's first log on the client's stream.
    redelivered_secs: f64,
    /// Kill → the result on the client's stream.
    result_secs: f64,
}

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let ack_wait = ctx.params.crash_ack_wait.map(|s| s.to_string());
    let worker_args: Vec<&str> = match &ack_wait {
        Some(s) => vec!["--ack-wait-secs", s.as_str()],
        None => Vec::new(),
    };
    let mut stack = Stack::start(
        &ctx.env,
        "crash",
        Spec {
            gateways: 1,
            workers: 2,
            worker_args: &worker_args,
        },
    )
    .await?;
    let result = measure(ctx, &mut stack, &worker_args).await;
    stack.stop().await;
    let samples = result?;

    let rows = samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            vec![
                (i + 1).to_string(),
                s.killed.clone(),
                s.finished_on.clone(),
                format!("{:.2}", s.redelivered_secs),
                format!("{:.2}", s.result_secs),
            ]
        })
        .collect();
    let lease = ctx.params.crash_ack_wait.unwrap_or(6);
    let mut markdown = format!(
        "`analyze_data(num_items = {ITEMS})` (≈1.4 s of work) on one gateway with two workers \
         (`--ack-wait-secs {lease}`; leases renewed every {:.0} s while a request runs). \
         Seconds from SIGKILL of the worker running the request to the re-run's first log \
         on the client's stream, and to the result. The baseline has no counterpart (a direct \
         server's crash loses the session).\n\n",
        lease as f64 / 3.0
    );
    markdown.push_str(&table(
        &[
            "sample",
            "killed",
            "finished on",
            "kill → re-run starts (s)",
            "kill → result (s)",
        ],
        rows,
    ));
    let worst = samples.iter().map(|s| s.result_secs).fold(0.0, f64::max);
    let targets = vec![Target {
        scenario: "4 worker crash".into(),
        what: format!(
            "SIGKILL of the running worker → result at the client (worst of {})",
            samples.len()
        ),
        target: format!("≤ {TARGET_SECS:.0} s"),
        measured: format!("{worst:.2} s"),
        met: worst <= TARGET_SECS,
        margin: if worst <= TARGET_SECS {
            format!("{:.2} s to spare", TARGET_SECS - worst)
        } else {
            format!("missed by {:.2} s", worst - TARGET_SECS)
        },
    }];
    Ok(Section {
        key: "crash",
        title: "4. Worker-crash recovery".into(),
        markdown,
        json: json!({ "ack_wait_secs": lease, "samples": samples }),
        targets,
    })
}

async fn measure(ctx: &Ctx, stack: &mut Stack, worker_args: &[&str]) -> Result<Vec<Sample>> {
    let url = stack.urls()[0].clone();
    let session = McpSession::initialize(&ctx.http, &url).await?;
    let mut samples = Vec::new();
    for i in 0..ctx.params.crash_samples {
        let sample = tokio::time::timeout(SAMPLE_TIMEOUT, one(&session, &url, stack, i))
            .await
            .map_err(|_| anyhow!("sample {i}: no result within {SAMPLE_TIMEOUT:?}"))??;
        tracing::info!(?sample, "crash sample");
        samples.push(sample);
        stack.add_worker(worker_args).await?;
    }
    Ok(samples)
}

async fn one(session: &McpSession, url: &str, stack: &mut Stack, i: usize) -> Result<Sample> {
    let token = format!("crash-{i}");
    let (id, mut events) = session
        .start_call(
            url,
            "analyze_data",
            &json!({"num_items": ITEMS}),
            Some(&token),
        )
        .await?;
    let mut killed: Option<(String, Instant)> = None;
    let mut redelivered = None;
    while let Some(event) = events.next().await? {
        let Some(msg) = event.json() else { continue };
        if let Some(instance) = starting_on(&msg) {
            match &killed {
                None => {
                    let pos = stack
                        .workers
                        .iter()
                        .position(|w| w.instance == instance)
                        .with_context(|| format!("no worker named {instance}"))?;
                    let mut worker = stack.workers.remove(pos);
                    let at = Instant::now();
                    worker.proc.kill().await?;
                    killed = Some((instance, at));
                }
                Some((_, at)) if redelivered.is_none() => redelivered = Some(at.elapsed()),
                Some(_) => {}
            }
            continue;
        }
        if msg.get("id").and_then(Value::as_i64) != Some(id) || msg.get("method").is_some() {
            continue;
        }
        let (victim, at) = killed.ok_or_else(|| anyhow!("result before any worker was killed"))?;
        let result_secs = at.elapsed().as_secs_f64();
        let finished_on = msg
            .pointer("/result/structuredContent/instance")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("not a tool result: {msg}"))?
            .to_owned();
        if finished_on == victim {
            bail!("the killed worker {victim} answered");
        }
        return Ok(Sample {
            killed: victim,
            finished_on,
            redelivered_secs: redelivered.map_or(f64::NAN, |d| d.as_secs_f64()),
            result_secs,
        });
    }
    bail!("the stream ended without the result")
}

/// The instance named by a `Starting analysis of N items on <instance>` log.
fn starting_on(msg: &Value) -> Option<String> {
    if msg.get("method").and_then(Value::as_str) != Some("notifications/message") {
        return None;
    }
    let text = msg.pointer("/params/data/msg").and_then(Value::as_str)?;
    let rest = text.strip_prefix(STARTING)?;
    rest.rsplit_once(" on ").map(|(_, i)| i.to_owned())
}
