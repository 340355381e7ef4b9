//! Scenario 2: many idle standalone GET streams on one gateway.
//!
//! Creates N sessions (bounded concurrency), opens each session's standalone
//! GET stream (bounded concurrency), and holds them all open — each read by
//! its own task — for a window that spans at least one keep-alive interval
//! (15 s). Reports the gateway's RSS and CPU, the NATS server's RSS, and how
//! many JetStream consumers and core subscriptions exist meanwhile. The rmcp
//! baseline holds the same number of streams for comparison.

use super::Ctx;
use crate::client::McpSession;
use crate::load;
use crate::report::{Section, Target, table};
use crate::stack::{Baseline, Nats, Spec, Stack};
use crate::stats::{fmt_ratio, ratio};
use crate::usage::Usage;
use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Target: the gateway's RSS with the streams open.
const RSS_TARGET_MIB: f64 = 256.0;
/// GET streams being opened at once.
const OPEN_CONCURRENCY: usize = 64;
/// File descriptors kept free for everything else.
const FD_RESERVE: u64 = 1000;

/// What one server did while holding the streams.
#[derive(Debug, Clone, Serialize)]
struct Held {
    server: &'static str,
    streams: usize,
    /// Streams still open at the end of the hold.
    open_after_hold: usize,
    sessions_secs: f64,
    open_secs: f64,
    rss_idle_mib: f64,
    rss_open_mib: f64,
    rss_per_stream_kib: f64,
    /// CPU seconds the server spent opening the streams.
    cpu_open_secs: f64,
    /// CPU use while the streams sat idle, % of one core.
    cpu_hold_pct: f64,
    hold_secs: f64,
    nats_rss_idle_mib: Option<f64>,
    nats_rss_open_mib: Option<f64>,
    nats_cpu_hold_pct: Option<f64>,
    jetstream_consumers: Option<u64>,
    nats_subscriptions: Option<u64>,
}

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let wanted = ctx.params.idle_streams;
    let n = wanted.min(nofile.saturating_sub(FD_RESERVE) as usize);
    if n == 0 {
        bail!("the open-files limit ({nofile}) leaves no room for streams");
    }
    let stack = Stack::start(
        &ctx.env,
        "idle",
        Spec {
            gateways: 1,
            workers: 1,
            ..Spec::default()
        },
    )
    .await?;
    let gw = &stack.gateways[0];
    let jetway = hold(
        ctx,
        "Jetway gateway",
        &gw.mcp_url(),
        gw.pid(),
        Some(&stack.nats),
        n,
    )
    .await;
    stack.stop().await;
    let baseline = Baseline::start(&ctx.env, "idle-rmcp").await?;
    let base = hold(ctx, "rmcp baseline", &baseline.url, baseline.pid(), None, n).await;
    baseline.stop().await;
    let (jetway, base) = (jetway?, base?);

    let mib = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.1}"));
    let rows = [&jetway, &base]
        .iter()
        .map(|h| {
            vec![
                h.server.to_owned(),
                format!("{} / {}", h.open_after_hold, h.streams),
                format!("{:.1}", h.rss_idle_mib),
                format!("{:.1}", h.rss_open_mib),
                format!("{:.1}", h.rss_per_stream_kib),
                format!("{:.1}", h.open_secs),
                format!("{:.2}", h.cpu_open_secs),
                format!("{:.1}", h.cpu_hold_pct),
                mib(h.nats_rss_idle_mib),
                mib(h.nats_rss_open_mib),
                h.nats_cpu_hold_pct
                    .map_or("–".into(), |v| format!("{v:.1}")),
                h.jetstream_consumers.map_or("–".into(), |v| v.to_string()),
                h.nats_subscriptions.map_or("–".into(), |v| v.to_string()),
            ]
        })
        .collect();
    let mut markdown = format!(
        "{n} sessions, each with its standalone GET stream open and idle, held for {:.0} s \
         (keep-alive comments every 15 s). RSS is `VmRSS` at the end of the hold; \
         \"idle\" is after the sessions were created, before any stream opened. \
         CPU is % of one core over the hold.{}\n\n",
        jetway.hold_secs,
        if n < wanted {
            format!(" (Limited from {wanted} by the open-files limit {nofile}.)")
        } else {
            String::new()
        }
    );
    markdown.push_str(&table(
        &[
            "server",
            "open / opened",
            "RSS idle (MiB)",
            "RSS open (MiB)",
            "KiB per stream",
            "open time (s)",
            "CPU to open (s)",
            "CPU held (%)",
            "NATS RSS idle (MiB)",
            "NATS RSS open (MiB)",
            "NATS CPU held (%)",
            "JetStream consumers",
            "NATS subscriptions",
        ],
        rows,
    ));
    markdown.push_str(&format!(
        "\nGateway RSS ÷ baseline RSS with the streams open: {}.\n",
        fmt_ratio(ratio(jetway.rss_open_mib, base.rss_open_mib))
    ));
    let met = jetway.rss_open_mib < RSS_TARGET_MIB && jetway.open_after_hold == n && n == wanted;
    let targets = vec![Target {
        scenario: "2 idle SSE streams".into(),
        what: format!("gateway RSS with {n} idle GET streams open"),
        target: format!("< {RSS_TARGET_MIB:.0} MiB (10,000 streams)"),
        measured: format!(
            "{:.1} MiB ({} of baseline's {:.1} MiB); {} still open",
            jetway.rss_open_mib,
            fmt_ratio(ratio(jetway.rss_open_mib, base.rss_open_mib)),
            base.rss_open_mib,
            jetway.open_after_hold
        ),
        met,
        margin: if jetway.rss_open_mib < RSS_TARGET_MIB {
            format!("{:.0} MiB to spare", RSS_TARGET_MIB - jetway.rss_open_mib)
        } else {
            format!("missed by {:.0} MiB", jetway.rss_open_mib - RSS_TARGET_MIB)
        },
    }];
    Ok(Section {
        key: "idle_streams",
        title: "2. Idle SSE streams".into(),
        markdown,
        json: json!({ "streams": n, "servers": [jetway, base] }),
        targets,
    })
}

async fn hold(
    ctx: &Ctx,
    server: &'static str,
    url: &str,
    pid: u32,
    nats: Option<&Nats>,
    n: usize,
) -> Result<Held> {
    let t = Instant::now();
    let sessions = load::open_sessions(&ctx.http, &[url.to_owned()], n).await?;
    let sessions_secs = t.elapsed().as_secs_f64();
    tracing::info!(server, n, secs = sessions_secs, "sessions created");
    let nats_pid = nats.map(Nats::pid);
    let idle = Usage::of(pid)?;
    let nats_idle = nats_pid.map(Usage::of).transpose()?;

    let open = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let mut readers = tokio::task::JoinSet::new();
    let t = Instant::now();
    let mut opening = futures::stream::iter(sessions.iter().cloned())
        .map(|s: Arc<McpSession>| async move { s.get_stream(url, None).await })
        .buffer_unordered(OPEN_CONCURRENCY);
    while let Some(stream) = opening.next().await {
        let mut stream = stream.context("opening a GET stream")?;
        let (open, stop) = (open.clone(), stop.clone());
        open.fetch_add(1, Ordering::Relaxed);
        readers.spawn(async move {
            loop {
                tokio::select! {
                    e = stream.next() => if !matches!(e, Ok(Some(_))) { break },
                    _ = stop.cancelled() => break,
                }
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(opening);
    let open_secs = t.elapsed().as_secs_f64();
    let opened = Usage::of(pid)?;
    tracing::info!(server, n, secs = open_secs, "streams open");

    // Let allocations settle, then measure an idle window.
    tokio::time::sleep(Duration::from_secs(if ctx.params.smoke { 0 } else { 2 })).await;
    let hold_start = Usage::of(pid)?;
    let nats_start = nats_pid.map(Usage::of).transpose()?;
    let consumers = match nats {
        Some(n) => Some(n.consumers(&ctx.http).await?),
        None => None,
    };
    let subscriptions = match nats {
        Some(n) => Some(n.subscriptions(&ctx.http).await?),
        None => None,
    };
    let t = Instant::now();
    tokio::time::sleep(ctx.params.idle_hold).await;
    let hold_secs = t.elapsed().as_secs_f64();
    let hold_end = Usage::of(pid)?;
    let nats_end = nats_pid.map(Usage::of).transpose()?;
    let open_after_hold = open.load(Ordering::Relaxed);
    stop.cancel();
    while readers.join_next().await.is_some() {}

    let pct = |a: &Usage, b: &Usage| (b.cpu_secs - a.cpu_secs) / hold_secs * 100.0;
    Ok(Held {
        server,
        streams: n,
        open_after_hold,
        sessions_secs,
        open_secs,
        rss_idle_mib: idle.rss_mib(),
        rss_open_mib: hold_end.rss_mib(),
        rss_per_stream_kib: (hold_end.rss_mib() - idle.rss_mib()) * 1024.0 / n as f64,
        cpu_open_secs: opened.cpu_secs - idle.cpu_secs,
        cpu_hold_pct: pct(&hold_start, &hold_end),
        hold_secs,
        nats_rss_idle_mib: nats_idle.map(|u| u.rss_mib()),
        nats_rss_open_mib: nats_end.map(|u| u.rss_mib()),
        nats_cpu_hold_pct: nats_start.zip(nats_end).map(|(a, b)| pct(&a, &b)),
        jetstream_consumers: consumers,
        nats_subscriptions: subscriptions,
    })
}
