//! Replay benchmark: publishes one session of N messages (default 100,000)
//! shaped like real traffic — per request, the request, eight progress
//! notifications and the final response — then times
//! `jetway replay <id> --json > /dev/null` and the human-readable form.
//!
//! ```sh
//! nats-server -js -p 4222 &
//! cargo build --release -p jetway-cli --bin jetway --example replay_rate
//! target/release/examples/replay_rate --nats-url nats://127.0.0.1:4222 \
//!     --messages 100000 --jetway target/release/jetway
//! ```
//!
//! `--per-request N` sets messages per request (default 10), `--noise N`
//! interleaves N messages of another session after each of this one's.
//!
//! The ignored test `replay_rate` in `tests/tests/replay.rs` does the same
//! against a throwaway nats-server.

use async_nats::HeaderMap;
use jetway_shared::{
    config::Bus,
    headers,
    session::{SessionRecord, State},
    setup,
    subjects::{SessionId, StreamKey},
};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut nats_url = "nats://127.0.0.1:4222".to_owned();
    let mut messages = 100_000usize;
    let mut jetway = "target/release/jetway".to_owned();
    // Messages per request: the request, progress notifications, the response.
    let mut per_request = 10usize;
    // Messages of another session published between two of this one's.
    let mut noise = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--nats-url" => nats_url = value,
            "--messages" => messages = value.parse()?,
            "--jetway" => jetway = value,
            "--per-request" => per_request = value.parse::<usize>()?.max(2),
            "--noise" => noise = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }

    let bus = Bus {
        nats_url: nats_url.clone(),
        ..Bus::default()
    };
    let client = setup::connect(&bus, "replay-rate").await?;
    let js = setup::context(client, &bus);
    let resources = setup::ensure(&js, &bus, &Default::default()).await?;
    // Workers would execute the benchmark's requests and add their own messages.
    if resources
        .stream
        .consumer_info("jetway-workers")
        .await
        .is_ok()
    {
        return Err("this NATS server has Jetway workers; benchmark against one without".into());
    }
    let session = SessionId::generate(&Default::default(), 0);
    let record = SessionRecord::new(
        State::Active,
        jetway_shared::protocol::ProtocolVersion::LATEST,
        json!({"clientInfo": {"name": "replay-rate", "version": "1"}}),
        "replay-rate",
    );
    resources
        .sessions
        .put(session.as_str(), record.to_bytes())
        .await?;

    let started = Instant::now();
    publish(&js, &session, messages, per_request, noise).await?;
    let took = started.elapsed();
    println!(
        "published {messages} messages to session {session} in {took:.2?} ({:.0} msg/s)",
        messages as f64 / took.as_secs_f64()
    );

    // Completeness first (not timed): every message comes out, once.
    let out = Command::new(&jetway)
        .args([
            "--nats-url",
            &nats_url,
            "replay",
            session.as_str(),
            "--json",
        ])
        .output()?;
    let lines = out.stdout.iter().filter(|&&b| b == b'\n').count();
    if !out.status.success() || lines != messages {
        return Err(format!(
            "replay printed {lines} lines, expected {messages}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }

    for (label, extra) in [("--json", Some("--json")), ("text", None)] {
        let mut runs: Vec<Duration> = Vec::new();
        for _ in 0..3 {
            let mut cmd = Command::new(&jetway);
            cmd.args(["--nats-url", &nats_url, "replay", session.as_str()]);
            cmd.args(extra);
            cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
            let t = Instant::now();
            let status = cmd.status()?;
            runs.push(t.elapsed());
            if !status.success() {
                return Err(format!("jetway replay failed: {status}").into());
            }
        }
        runs.sort();
        let median = runs[runs.len() / 2];
        println!(
            "jetway replay {label} > /dev/null: {messages} messages, median {median:.2?} of 3 runs \
             = {:.0} msg/s (best {:.0} msg/s; includes process start and connect)",
            messages as f64 / median.as_secs_f64(),
            messages as f64 / runs[0].as_secs_f64()
        );
    }
    Ok(())
}

/// Publishes `n` messages to the session's subjects, pipelined.
async fn publish(
    js: &async_nats::jetstream::Context,
    session: &SessionId,
    n: usize,
    per_request: usize,
    noise: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let other = SessionId::generate(&Default::default(), 0);
    let mut acks = Vec::with_capacity(1024);
    let mut key = StreamKey::new_request();
    for i in 0..n {
        let step = i % per_request;
        let request = (i / per_request) as i64;
        let mut h = HeaderMap::new();
        h.insert(headers::TIME_MS, headers::now_ms().to_string().as_str());
        let (subject, payload) = match step {
            0 => {
                key = StreamKey::new_request();
                h.insert(headers::GATEWAY, "gw-bench");
                h.insert(headers::KIND, headers::kind::REQUEST);
                h.insert(headers::STREAM, key.as_str());
                let body = json!({"jsonrpc": "2.0", "id": request, "method": "tools/call",
                    "params": {"name": "analyze_data", "arguments": {"num_items": 8},
                               "_meta": {"progressToken": format!("p{request}")}}});
                (session.in_rpc(), body)
            }
            s if s == per_request - 1 => {
                h.insert(headers::WORKER, "wk-bench");
                h.insert(headers::STREAM, key.as_str());
                h.insert(headers::FINAL, "1");
                let body = json!({"jsonrpc": "2.0", "id": request, "result": {
                    "content": [{"type": "text", "text": "{\"items_processed\":8}"}],
                    "structuredContent": {"items_processed": 8, "instance": "wk-bench"}}});
                (session.out(&key), body)
            }
            s => {
                h.insert(headers::WORKER, "wk-bench");
                h.insert(headers::STREAM, key.as_str());
                let body = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": format!("p{request}"), "progress": s - 1,
                               "total": per_request - 2}});
                (session.out(&key), body)
            }
        };
        let ack = js
            .publish_with_headers(subject, h, serde_json::to_vec(&payload)?.into())
            .await?;
        acks.push(ack);
        for _ in 0..noise {
            let body = json!({"jsonrpc": "2.0", "method": "notifications/message",
                "params": {"level": "info", "data": "another session"}});
            let subject = other.out(&StreamKey::get());
            acks.push(
                js.publish(subject, serde_json::to_vec(&body)?.into())
                    .await?,
            );
        }
        if acks.len() >= 1024 {
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
