//! Scenario 8: what lease renewals cost while many requests run.
//!
//! A worker renews the lease of every request it holds with an in-progress
//! ack every third of the lease (`--ack-wait-secs`, default 2 s: every
//! ~667 ms), so N requests in flight cost N × 1.5 renewals per second,
//! whatever the requests do. One gateway, one worker with
//! `--max-concurrency N`, and N concurrent `sleep_ms` calls (default
//! 1,000 calls of 8 s: 50 sessions × 20), which wait and publish nothing
//! while they run.
//!
//! CPU time (the threads' run time, `/proc/<pid>/task/*/schedstat`) of
//! nats-server, the gateway, the worker and the load generator (this
//! process) is measured over two windows of
//! the same planned length: an idle one with the sessions open and nothing
//! pending or unacknowledged on the workers' consumer, before the load; and a loaded one, from a settling time after
//! JetStream reports every call delivered and unacknowledged (consumer
//! `num_ack_pending` = N, nothing pending: the claims are written, only
//! renewals and the calls' own timers remain) to a margin before the first
//! call can finish. NATS's inbound message count (`/varz`) over each window
//! shows the renewals it received. Checked: every call answered with its
//! result, and the consumer redelivered nothing while the calls ran (no
//! lease ran out).

use super::Ctx;
use crate::client::{McpSession, read_response};
use crate::load;
use crate::report::{Section, Target, table};
use crate::stack::{Spec, Stack, workers_consumer};
use crate::usage::ThreadTimes;
use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// POSTs being sent at once while the calls start.
const START_CONCURRENCY: usize = 64;
/// How often JetStream is asked whether every call was delivered.
const POLL: Duration = Duration::from_millis(50);
/// Bound on the wait for an idle consumer before the idle window.
const QUIET_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one call beyond its sleep.
const CALL_SLACK: Duration = Duration::from_secs(60);

/// CPU of one process over one window.
#[derive(Debug, Clone, Serialize)]
struct Cpu {
    process: &'static str,
    idle_pct: f64,
    loaded_pct: f64,
    /// (loaded − idle) CPU time per renewal, µs (at the implied rate).
    extra_us_per_renewal: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Measured {
    calls: usize,
    sessions: usize,
    per_session: usize,
    sleep_ms: u64,
    lease_secs: f64,
    renewal_every_ms: f64,
    /// Calls × renewals per second per call.
    implied_renewals_per_sec: f64,
    idle_secs: f64,
    loaded_secs: f64,
    /// First POST sent → every call delivered and unacknowledged.
    start_secs: f64,
    /// Messages NATS received per second over each window (`/varz` `in_msgs`).
    nats_in_msgs_per_sec_idle: f64,
    nats_in_msgs_per_sec_loaded: f64,
    cpu: Vec<Cpu>,
    succeeded: usize,
    failed: usize,
    first_error: Option<String>,
    /// Requests JetStream redelivered between the calls' start and the end
    /// of the loaded window (before any call could finish): leases that ran out.
    redelivered: usize,
    /// First POST sent → last result read.
    total_secs: f64,
}

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let (sessions, per) = ctx.params.renewals_sessions;
    let concurrency = (sessions * per).to_string();
    let worker_args = ["--max-concurrency", concurrency.as_str()];
    let stack = Stack::start(
        &ctx.env,
        "renewals",
        Spec {
            gateways: 1,
            workers: 1,
            worker_args: &worker_args,
        },
    )
    .await?;
    let result = measure(ctx, &stack).await;
    stack.stop().await;
    let m = result?;

    let rows = m
        .cpu
        .iter()
        .map(|c| {
            vec![
                c.process.to_owned(),
                format!("{:.1}", c.idle_pct),
                format!("{:.1}", c.loaded_pct),
                format!("{:+.1}", c.loaded_pct - c.idle_pct),
                format!("{:.1}", c.extra_us_per_renewal),
            ]
        })
        .collect();
    let mut markdown = format!(
        "{} concurrent `sleep_ms({})` calls ({} sessions × {}) on one gateway and one worker \
         (`--max-concurrency {}`, lease {:.0} s renewed every {:.0} ms: {:.0} renewals/s \
         implied). All calls delivered {:.2} s after the first POST. CPU in % of one core over \
         an idle window of {:.1} s (sessions open, no request) and a loaded window of {:.1} s \
         (every call running, claims written); \"per renewal\" divides the difference by the \
         implied rate. NATS received {:.0} messages/s idle and {:.0} messages/s loaded.\n\n",
        m.calls,
        m.sleep_ms,
        m.sessions,
        m.per_session,
        m.calls,
        m.lease_secs,
        m.renewal_every_ms,
        m.implied_renewals_per_sec,
        m.start_secs,
        m.idle_secs,
        m.loaded_secs,
        m.nats_in_msgs_per_sec_idle,
        m.nats_in_msgs_per_sec_loaded,
    );
    markdown.push_str(&table(
        &[
            "process",
            "CPU idle (%)",
            "CPU loaded (%)",
            "difference (points)",
            "per renewal (µs)",
        ],
        rows,
    ));
    markdown.push_str(&format!(
        "\nCalls answered: {} of {} ({} failed{}); redelivered by JetStream while the calls \
         ran (a lease that ran out): {}; first POST → last result {:.1} s.\n",
        m.succeeded,
        m.calls,
        m.failed,
        m.first_error
            .as_deref()
            .map_or(String::new(), |e| format!(", first error: `{e}`")),
        m.redelivered,
        m.total_secs,
    ));
    let met = m.succeeded == m.calls && m.redelivered == 0;
    let targets = vec![Target {
        scenario: "8 lease renewals".into(),
        what: format!(
            "{} concurrent `sleep_ms({})` calls on one worker, leases renewed: all answered, none \
             redelivered",
            m.calls, m.sleep_ms
        ),
        target: "all, none".into(),
        measured: format!(
            "{} answered, {} redelivered; NATS CPU {:.1} % loaded vs {:.1} % idle",
            m.succeeded,
            m.redelivered,
            m.cpu.first().map_or(0.0, |c| c.loaded_pct),
            m.cpu.first().map_or(0.0, |c| c.idle_pct),
        ),
        met,
        margin: if met {
            "–".into()
        } else {
            format!("{} failed, {} redelivered", m.failed, m.redelivered)
        },
    }];
    Ok(Section {
        key: "renewals",
        title: "8. Cost of lease renewals".into(),
        markdown,
        json: serde_json::to_value(&m)?,
        targets,
    })
}

/// One call's outcome.
struct Call {
    result: Result<()>,
    done: Instant,
}

async fn measure(ctx: &Ctx, stack: &Stack) -> Result<Measured> {
    let p = &ctx.params;
    let (n_sessions, per) = p.renewals_sessions;
    let n = n_sessions * per;
    let ms = p.renewals_sleep_ms;
    let url = stack.urls()[0].clone();
    let nats = &stack.nats;
    let procs: [(&'static str, u32); 3] = [
        ("nats-server", nats.pid()),
        ("gateway", stack.gateways[0].pid()),
        ("worker", stack.workers[0].pid()),
    ];
    let js = async_nats::jetstream::new(nats.connect().await?);
    let lease = workers_consumer(&js).await?.config.ack_wait;
    let renewal_every = lease / 3;
    let rate = n as f64 / renewal_every.as_secs_f64();

    let sessions = load::open_sessions(&ctx.http, std::slice::from_ref(&url), n_sessions).await?;
    // Idle: nothing pending or unacknowledged at JetStream (the sessions'
    // `initialize` requests ran on the worker and were acknowledged).
    let quiet_by = Instant::now() + QUIET_TIMEOUT;
    let before = loop {
        let c = workers_consumer(&js).await?;
        if c.num_ack_pending == 0 && c.num_pending == 0 {
            break c;
        }
        if Instant::now() + POLL >= quiet_by {
            bail!(
                "the workers' consumer did not go idle within {QUIET_TIMEOUT:?}: {} unacknowledged, \
                 {} pending",
                c.num_ack_pending,
                c.num_pending
            );
        }
        tokio::time::sleep(POLL).await;
    };

    // The idle window.
    let window = p.renewals_window;
    let idle_start = snapshot(ctx, stack, &procs).await?;
    tokio::time::sleep(window).await;
    let idle_end = snapshot(ctx, stack, &procs).await?;

    // Start every call; each reads its own stream to the result.
    let first_sent = Instant::now();
    let gate = Arc::new(Semaphore::new(START_CONCURRENCY));
    let (accepted_tx, mut accepted_rx) = tokio::sync::mpsc::channel::<Result<()>>(n);
    let mut calls = tokio::task::JoinSet::new();
    for session in &sessions {
        for _ in 0..per {
            let (session, url, gate) = (session.clone(), url.clone(), gate.clone());
            let accepted_tx = accepted_tx.clone();
            calls.spawn(async move {
                let result = tokio::time::timeout(
                    Duration::from_millis(ms) + CALL_SLACK,
                    one_call(&session, &url, ms, gate, accepted_tx),
                )
                .await
                .map_err(|_| anyhow!("no result within {ms} ms + {CALL_SLACK:?}"))
                .and_then(|r| r);
                Call {
                    result,
                    done: Instant::now(),
                }
            });
        }
    }
    drop(accepted_tx);
    let first_can_finish = first_sent + Duration::from_millis(ms);
    for _ in 0..n {
        match tokio::time::timeout_at(first_can_finish, accepted_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => return Err(e.context("starting a call")),
            Ok(None) => bail!("a call ended before it was accepted"),
            Err(_) => bail!(
                "the {n} POSTs were not all accepted within {ms} ms: too many calls for this \
                 machine"
            ),
        }
    }
    // Wait until JetStream has delivered every call and none is acknowledged.
    loop {
        let c = workers_consumer(&js).await?;
        if c.num_ack_pending >= n && c.num_pending == 0 {
            break;
        }
        if Instant::now() + POLL >= first_can_finish {
            bail!(
                "only {} of {n} calls were running before the first could finish ({} not yet \
                 delivered): too many calls for this machine",
                c.num_ack_pending,
                c.num_pending
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let all_running = Instant::now();
    let start_secs = (all_running - first_sent).as_secs_f64();
    let loaded_from = all_running + p.renewals_settle;
    let loaded_until = (loaded_from + window).min(first_can_finish - p.renewals_tail);
    if loaded_until <= loaded_from + window / 4 {
        bail!(
            "the calls took {start_secs:.2} s to start: no loaded window of at least {:?} \
             before the first can finish",
            window / 4
        );
    }
    tokio::time::sleep_until(loaded_from).await;
    let loaded_start = snapshot(ctx, stack, &procs).await?;
    tokio::time::sleep_until(loaded_until).await;
    let loaded_end = snapshot(ctx, stack, &procs).await?;
    // Every delivery, first or again, takes a consumer sequence; the calls
    // are the only new requests since `before`.
    let during = workers_consumer(&js).await?;
    let deliveries = during.delivered.consumer_sequence - before.delivered.consumer_sequence;
    let redelivered = (deliveries as usize).saturating_sub(n);

    let (mut succeeded, mut failed, mut first_error, mut last_done) = (0, 0, None, first_sent);
    while let Some(joined) = calls.join_next().await {
        match joined {
            Ok(Call {
                result: Ok(()),
                done,
            }) => {
                succeeded += 1;
                last_done = last_done.max(done);
            }
            Ok(Call {
                result: Err(e),
                done,
            }) => {
                failed += 1;
                last_done = last_done.max(done);
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("call task: {e}"));
            }
        }
    }

    let idle_secs = idle_end.at.duration_since(idle_start.at).as_secs_f64();
    let loaded_secs = loaded_end.at.duration_since(loaded_start.at).as_secs_f64();
    let mut cpu = Vec::new();
    let names = procs
        .iter()
        .map(|(name, _)| *name)
        .chain(["load generator"]);
    for (i, name) in names.enumerate() {
        let idle = idle_start.cpu[i].secs_until(&idle_end.cpu[i]) / idle_secs;
        let loaded = loaded_start.cpu[i].secs_until(&loaded_end.cpu[i]) / loaded_secs;
        cpu.push(Cpu {
            process: name,
            idle_pct: idle * 100.0,
            loaded_pct: loaded * 100.0,
            extra_us_per_renewal: (loaded - idle) * 1e6 / rate,
        });
    }
    let msgs_rate = |a: &Snapshot, b: &Snapshot, secs: f64| (b.in_msgs - a.in_msgs) as f64 / secs;
    Ok(Measured {
        calls: n,
        sessions: n_sessions,
        per_session: per,
        sleep_ms: ms,
        lease_secs: lease.as_secs_f64(),
        renewal_every_ms: renewal_every.as_secs_f64() * 1000.0,
        implied_renewals_per_sec: rate,
        idle_secs,
        loaded_secs,
        start_secs,
        nats_in_msgs_per_sec_idle: msgs_rate(&idle_start, &idle_end, idle_secs),
        nats_in_msgs_per_sec_loaded: msgs_rate(&loaded_start, &loaded_end, loaded_secs),
        cpu,
        succeeded,
        failed,
        first_error,
        redelivered,
        total_secs: (last_done - first_sent).as_secs_f64(),
    })
}

/// Sends one `sleep_ms(ms)` call (at most `START_CONCURRENCY` POSTs at
/// once), reports its acceptance, then reads its stream to the result.
async fn one_call(
    session: &McpSession,
    url: &str,
    ms: u64,
    gate: Arc<Semaphore>,
    accepted: tokio::sync::mpsc::Sender<Result<()>>,
) -> Result<()> {
    let permit = gate.acquire_owned().await?;
    let started = session
        .start_call(url, "sleep_ms", &json!({"ms": ms}), None)
        .await;
    drop(permit);
    let (id, mut events) = match started {
        Ok(s) => {
            let _ = accepted.send(Ok(())).await;
            s
        }
        Err(e) => {
            let msg = format!("{e:#}");
            let _ = accepted.send(Err(e)).await;
            bail!("{msg}");
        }
    };
    let result = read_response(&mut events, id).await?;
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        bail!("sleep_ms failed: {result}");
    }
    let slept = result.pointer("/structuredContent/slept_ms");
    if slept.and_then(Value::as_u64) != Some(ms) {
        bail!("not the sleep_ms result: {result}");
    }
    Ok(())
}

/// CPU seconds of the measured processes (and of this one, last) and NATS's
/// inbound message count, at one moment.
struct Snapshot {
    at: Instant,
    cpu: Vec<ThreadTimes>,
    in_msgs: u64,
}

async fn snapshot(ctx: &Ctx, stack: &Stack, procs: &[(&'static str, u32)]) -> Result<Snapshot> {
    let at = Instant::now();
    let mut cpu = procs
        .iter()
        .map(|&(_, pid)| ThreadTimes::of(pid))
        .collect::<Result<Vec<_>>>()?;
    cpu.push(ThreadTimes::of(std::process::id())?);
    let in_msgs = stack
        .nats
        .varz(&ctx.http)
        .await?
        .get("in_msgs")
        .and_then(Value::as_u64)
        .context("/varz without in_msgs")?;
    Ok(Snapshot { at, cpu, in_msgs })
}
