//! Scenario 5: the replay rate of a 100,000-message session.
//!
//! The session is written straight to the stream, shaped like real traffic:
//! per request, the request on `jetway.0.<sid>.in.rpc` (its own POST stream
//! key in a header), eight progress notifications and the final response on
//! `jetway.0.<sid>.out.<key>` — so 10,000 requests, 10,000 stream subjects.
//! No worker runs, so nothing executes the requests. Then, if the `jetway`
//! CLI was built beside the benchmark, `jetway replay <sid> --json` is timed
//! with its output to `/dev/null` (process start and connect included; median
//! of 3, after one untimed run that checks every message comes out). The raw
//! read rate of a plain ordered consumer on the session's subjects is
//! measured in-process too, for reference.

use super::Ctx;
use crate::report::{Section, Target, table};
use crate::stack::{Spec, Stack};
use anyhow::{Context, Result, bail};
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, OrderedPullConsumer, pull};
use futures::StreamExt;
use jetway_shared::{
    config::Bus,
    headers,
    session::{SessionRecord, State},
    setup,
    subjects::{SessionId, StreamKey},
};
use serde::Serialize;
use serde_json::json;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Target: messages per second.
const TARGET_RATE: f64 = 50_000.0;
/// Messages per request: the request, 8 progress notifications, the response.
const PER_REQUEST: usize = 10;
/// Publish acknowledgements awaited at once.
const PUBLISH_WINDOW: usize = 2048;
const RUNS: usize = 3;

#[derive(Debug, Clone, Serialize)]
struct Rates {
    messages: usize,
    publish_rate: f64,
    /// `jetway replay --json` (median of runs), if the CLI was built.
    cli_secs: Option<f64>,
    cli_rate: Option<f64>,
    /// An ordered consumer filtered on `jetway.0.<sid>.>` (median of runs).
    consumer_secs: f64,
    consumer_rate: f64,
}

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let stack = Stack::start(&ctx.env, "replay", Spec::default()).await?;
    let result = measure(ctx, &stack.nats.url).await;
    stack.stop().await;
    let r = result?;

    let rate = |v: Option<f64>| v.map_or("– (CLI not built)".to_owned(), |v| format!("{v:.0}"));
    let rows = vec![
        vec![
            "`jetway replay <sid> --json > /dev/null`".into(),
            r.cli_secs.map_or("–".into(), |s| format!("{s:.2}")),
            rate(r.cli_rate),
        ],
        vec![
            "ordered consumer on `jetway.0.<sid>.>`, in-process (reference)".into(),
            format!("{:.2}", r.consumer_secs),
            format!("{:.0}", r.consumer_rate),
        ],
    ];
    let mut markdown = format!(
        "One session of {} messages ({} requests × {PER_REQUEST}: request, 8 progress \
         notifications, response), published at {:.0} msg/s. Median of {RUNS} runs; the CLI's \
         time includes process start and connecting.\n\n",
        r.messages,
        r.messages / PER_REQUEST,
        r.publish_rate
    );
    markdown.push_str(&table(&["reader", "seconds", "messages/s"], rows));
    let (judged, what) = match r.cli_rate {
        Some(v) => (v, "`jetway replay --json`"),
        None => (
            r.consumer_rate,
            "raw ordered consumer (the CLI was not built)",
        ),
    };
    let targets = vec![Target {
        scenario: "5 replay".into(),
        what: format!("replay rate of a {}-message session, {what}", r.messages),
        target: format!("≥ {TARGET_RATE:.0} msg/s"),
        measured: format!("{judged:.0} msg/s"),
        met: judged >= TARGET_RATE,
        margin: if judged >= TARGET_RATE {
            format!("{:.1}× the target", judged / TARGET_RATE)
        } else {
            format!("missed by {:.0}%", (1.0 - judged / TARGET_RATE) * 100.0)
        },
    }];
    Ok(Section {
        key: "replay",
        title: "5. Replay rate".into(),
        markdown,
        json: json!(r),
        targets,
    })
}

async fn measure(ctx: &Ctx, nats_url: &str) -> Result<Rates> {
    let messages = ctx.params.replay_messages;
    let bus = Bus {
        nats_url: nats_url.to_owned(),
        instance_id: "jetway-bench".into(),
        ..Bus::default()
    };
    let client = setup::connect(&bus, "jetway-bench").await?;
    let js = setup::context(client, &bus);
    let resources = setup::ensure(&js, &bus, &Default::default()).await?;
    let session = SessionId::generate(&Default::default(), 0);
    let record = SessionRecord::new(
        State::Active,
        jetway_shared::protocol::ProtocolVersion::LATEST,
        json!({"clientInfo": {"name": "jetway-bench", "version": "0"}}),
        "jetway-bench",
    );
    resources
        .sessions
        .put(session.as_str(), record.to_bytes())
        .await?;
    let t = Instant::now();
    publish(&js, &session, messages).await?;
    let publish_rate = messages as f64 / t.elapsed().as_secs_f64();
    tracing::info!(messages, rate = publish_rate, "session published");

    let (cli_secs, cli_rate) = match ctx.env.bins.optional("jetway") {
        Some(cli) => {
            let secs = time_cli(&cli, nats_url, &session, messages).await?;
            (Some(secs), Some(messages as f64 / secs))
        }
        None => (None, None),
    };
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        runs.push(read_ordered(&resources.stream, &session, messages).await?);
    }
    let consumer_secs = median(runs);
    Ok(Rates {
        messages,
        publish_rate,
        cli_secs,
        cli_rate,
        consumer_secs,
        consumer_rate: messages as f64 / consumer_secs,
    })
}

/// Publishes `n` messages of `session`, pipelined.
async fn publish(js: &async_nats::jetstream::Context, session: &SessionId, n: usize) -> Result<()> {
    let mut acks = Vec::with_capacity(PUBLISH_WINDOW);
    let mut key = StreamKey::new_request();
    for i in 0..n {
        let (step, request) = (i % PER_REQUEST, (i / PER_REQUEST) as i64);
        let mut h = HeaderMap::new();
        h.insert(headers::TIME_MS, headers::now_ms().to_string().as_str());
        let (subject, body) = if step == 0 {
            key = StreamKey::new_request();
            h.insert(headers::GATEWAY, "jetway-bench");
            h.insert(headers::KIND, headers::kind::REQUEST);
            h.insert(headers::STREAM, key.as_str());
            let body = json!({"jsonrpc": "2.0", "id": request, "method": "tools/call",
                "params": {"name": "analyze_data", "arguments": {"num_items": 8},
                           "_meta": {"progressToken": format!("p{request}")}}});
            (session.in_rpc(), body)
        } else if step == PER_REQUEST - 1 {
            h.insert(headers::WORKER, "jetway-bench");
            h.insert(headers::STREAM, key.as_str());
            h.insert(headers::FINAL, "1");
            let body = json!({"jsonrpc": "2.0", "id": request, "result": {
                "content": [{"type": "text", "text": "{\"items_processed\":8}"}],
                "structuredContent": {"items_processed": 8, "instance": "jetway-bench"}}});
            (session.out(&key), body)
        } else {
            h.insert(headers::WORKER, "jetway-bench");
            h.insert(headers::STREAM, key.as_str());
            let body = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                "params": {"progressToken": format!("p{request}"), "progress": step - 1,
                           "total": PER_REQUEST - 2}});
            (session.out(&key), body)
        };
        acks.push(
            js.publish_with_headers(subject, h, serde_json::to_vec(&body)?.into())
                .await?,
        );
        if acks.len() == PUBLISH_WINDOW {
            for a in acks.drain(..) {
                a.await?;
            }
        }
    }
    for a in acks {
        a.await?;
    }
    Ok(())
}

/// Median seconds of `jetway replay <sid> --json > /dev/null`, after one
/// untimed run that checks the output has one line per message.
async fn time_cli(
    cli: &std::path::Path,
    nats_url: &str,
    session: &SessionId,
    messages: usize,
) -> Result<f64> {
    let args = ["replay", session.as_str(), "--json", "--nats-url", nats_url];
    let out = tokio::process::Command::new(cli)
        .args(args)
        .output()
        .await
        .context("running jetway replay")?;
    let lines = out.stdout.iter().filter(|&&b| b == b'\n').count();
    if !out.status.success() || lines != messages {
        bail!(
            "jetway replay printed {lines} lines for {messages} messages ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let status = tokio::process::Command::new(cli)
            .args(args)
            .stdout(Stdio::null())
            .status()
            .await?;
        runs.push(t.elapsed());
        if !status.success() {
            bail!("jetway replay failed: {status}");
        }
    }
    Ok(median(runs))
}

/// Seconds to read the session's messages with a plain ordered consumer.
async fn read_ordered(
    stream: &async_nats::jetstream::stream::Stream,
    session: &SessionId,
    messages: usize,
) -> Result<Duration> {
    let t = Instant::now();
    let consumer: OrderedPullConsumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: session.all(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut msgs = consumer.messages().await?;
    let mut seen = 0;
    while seen < messages {
        match tokio::time::timeout(Duration::from_secs(30), msgs.next()).await {
            Ok(Some(m)) => {
                m?;
                seen += 1;
            }
            Ok(None) => bail!("the consumer ended after {seen} of {messages} messages"),
            Err(_) => bail!("no message for 30 s after {seen} of {messages}"),
        }
    }
    Ok(t.elapsed())
}

fn median(mut runs: Vec<Duration>) -> f64 {
    runs.sort();
    runs.get(runs.len() / 2).map_or(0.0, Duration::as_secs_f64)
}
