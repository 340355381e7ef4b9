//! Scenario 3: resume latency — from a `GET` with `Last-Event-ID` on a
//! different gateway to the first replayed event.
//!
//! Each sample: an `analyze_data(num_items = 1)` call (≈1.1 s, logs at
//! `debug` level and progress) starts on gateway A; the client reads the
//! first event of its stream (the "Starting analysis" log), keeps its id and
//! drops the connection, as when its gateway dies mid-request. At once it
//! resumes on gateway B: the timer runs from sending the GET to reading the
//! first replayed event after that id (the "Phase 1" log, already stored).
//! The rest of the stream is read in the background to check the response
//! arrives. Samples run one at a time.
//!
//! The rmcp baseline does the same on its single server (its best case:
//! the events are in that process's memory). rmcp replays from its request's
//! cache only while the request runs, which is why the resume follows the cut
//! at once rather than after the call finished.

use super::Ctx;
use crate::client::{McpSession, read_response};
use crate::load;
use crate::report::{Section, Target, table};
use crate::stack::{Baseline, Spec, Stack};
use crate::stats::{Latency, fmt_ms, fmt_ratio, ratio};
use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Target: p99 from the GET to the first replayed event.
const P99_TARGET_MS: f64 = 10.0;
/// Calls per session.
const CALLS_PER_SESSION: usize = 10;
/// Resumed streams read to their end at once, in the background.
const TAILS: usize = 128;
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize)]
struct Measured {
    server: &'static str,
    latency: Latency,
    samples: usize,
    /// Resumed streams that went on to deliver the final response.
    complete: usize,
    /// Resumes whose first event was the `Last-Event-ID` event itself again.
    repeated_last_event: usize,
}

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let spec = Spec {
        gateways: 2,
        workers: 2,
        ..Spec::default()
    };
    let stack = Stack::start(&ctx.env, "resume", spec).await?;
    let urls = stack.urls();
    let jetway = measure(ctx, "Jetway, gateway A → B", &urls[0], &urls[1]).await;
    stack.stop().await;
    let jetway = jetway?;
    let baseline = Baseline::start(&ctx.env, "resume-rmcp").await?;
    let base = measure(
        ctx,
        "rmcp (baseline, same server)",
        &baseline.url,
        &baseline.url,
    )
    .await;
    baseline.stop().await;
    let base = base?;

    let rows = vec![row(&jetway, Some(&base)), row(&base, None)];
    let mut markdown = format!(
        "{} samples, one at a time, each resumed right after its stream was cut. Latency in ms \
         from sending `GET` + `Last-Event-ID` to reading the first replayed event after that \
         id. \"Complete\": resumed streams that went on to deliver the response.\n\n",
        base.samples
    );
    markdown.push_str(&table(
        &[
            "server",
            "p50",
            "p90",
            "p99",
            "max",
            "p99 ÷ baseline",
            "complete",
            "re-sent the Last-Event-ID event",
        ],
        rows,
    ));
    let p99 = jetway.latency.p99_ms;
    let targets = vec![Target {
        scenario: "3 resume".into(),
        what: "p99, GET with Last-Event-ID on another gateway → first replayed event".into(),
        target: format!("≤ {P99_TARGET_MS} ms"),
        measured: format!(
            "p99 {} ms, p50 {} ms (baseline p99 {} ms)",
            fmt_ms(p99),
            fmt_ms(jetway.latency.p50_ms),
            fmt_ms(base.latency.p99_ms),
        ),
        met: p99 <= P99_TARGET_MS && jetway.complete == jetway.samples,
        margin: if p99 <= P99_TARGET_MS {
            format!("{:.1} ms to spare", P99_TARGET_MS - p99)
        } else {
            format!("missed by {:.1} ms", p99 - P99_TARGET_MS)
        },
    }];
    Ok(Section {
        key: "resume",
        title: "3. Resume latency".into(),
        markdown,
        json: json!({ "jetway": jetway, "baseline": base }),
        targets,
    })
}

fn row(m: &Measured, base: Option<&Measured>) -> Vec<String> {
    let l = &m.latency;
    vec![
        m.server.to_owned(),
        fmt_ms(l.p50_ms),
        fmt_ms(l.p90_ms),
        fmt_ms(l.p99_ms),
        fmt_ms(l.max_ms),
        base.map_or(String::new(), |b| {
            fmt_ratio(ratio(l.p99_ms, b.latency.p99_ms))
        }),
        format!("{} / {}", m.complete, m.samples),
        m.repeated_last_event.to_string(),
    ]
}

async fn measure(ctx: &Ctx, server: &'static str, a: &str, b: &str) -> Result<Measured> {
    let samples = ctx.params.resume_samples;
    let n_sessions = samples.div_ceil(CALLS_PER_SESSION);
    let sessions = load::open_sessions(&ctx.http, &[a.to_owned()], n_sessions).await?;
    for s in &sessions {
        // Debug logs make the events the stream is cut between.
        s.request(a, "logging/setLevel", json!({"level": "debug"}))
            .await?;
    }
    let tails = Arc::new(Semaphore::new(TAILS));
    let mut tail_tasks = tokio::task::JoinSet::new();
    let mut latencies = Vec::with_capacity(samples);
    let mut repeated = 0;
    for i in 0..samples {
        let session = sessions[i % n_sessions].clone();
        let (request, last) = cut_after_first_event(&session, a, i).await?;
        let permit = tails.clone().acquire_owned().await?;
        let resume = async {
            let t = Instant::now();
            let mut events = session.get_stream(b, Some(&last)).await?;
            let mut again = false;
            loop {
                let event = events
                    .next()
                    .await?
                    .ok_or_else(|| anyhow!("resumed stream ended without an event"))?;
                if event.data.is_empty() {
                    continue;
                }
                if event.id.as_deref() == Some(last.as_str()) {
                    again = true;
                    continue;
                }
                return Ok::<_, anyhow::Error>((t.elapsed(), again, events));
            }
        };
        let (first, again, mut events) = tokio::time::timeout(SAMPLE_TIMEOUT, resume)
            .await
            .map_err(|_| anyhow!("resume took over {SAMPLE_TIMEOUT:?}"))??;
        latencies.push(first);
        repeated += usize::from(again);
        tail_tasks.spawn(async move {
            let done = tokio::time::timeout(SAMPLE_TIMEOUT, read_response(&mut events, request));
            let complete = matches!(done.await, Ok(Ok(_)));
            drop(permit);
            complete
        });
    }
    let mut complete = 0;
    while let Some(done) = tail_tasks.join_next().await {
        complete += usize::from(done.unwrap_or(false));
    }
    Ok(Measured {
        server,
        latency: Latency::from_durations(&latencies),
        samples,
        complete,
        repeated_last_event: repeated,
    })
}

/// Starts `analyze_data(1)`, reads its first event with data, drops the
/// connection; returns the request id and that event's id.
async fn cut_after_first_event(session: &McpSession, url: &str, i: usize) -> Result<(i64, String)> {
    let token = format!("resume-{i}");
    let (request, mut events) = session
        .start_call(url, "analyze_data", &json!({"num_items": 1}), Some(&token))
        .await?;
    let first = tokio::time::timeout(SAMPLE_TIMEOUT, async {
        loop {
            match events.next().await? {
                Some(e) if !e.data.is_empty() => return Ok(e),
                Some(_) => continue,
                None => bail!("stream ended before its first event"),
            }
        }
    })
    .await
    .map_err(|_| anyhow!("no first event within {SAMPLE_TIMEOUT:?}"))??;
    let id = first
        .id
        .filter(|id| !id.is_empty())
        .context("the first event has no id to resume from")?;
    Ok((request, id))
}
