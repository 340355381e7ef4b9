//! Clients that misbehave on purpose, with real processes: a session that
//! floods a worker with long calls, one that reuses a request id while the
//! first request with it still runs, one that never answers the server's
//! question (elicitation), and ones that stop reading a large stream (cut
//! off, or back later: on both transports, every event once and in order,
//! the gateway holding no more than the stream's buffer meanwhile). Each
//! must leave other sessions (and the session's other requests) served.

use anyhow::Result;
use jetway_tests::{Gateway, McpClient, NatsServer, Worker, gate::GatedProxy};
use reqwest::StatusCode;
use serde_json::json;
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_second_request_with_an_id_in_flight_is_refused_and_a_cancel_stops_only_the_first()
-> Result<()> {
    let nats = NatsServer::start().await?;
    let _worker = Worker::start(&nats.url()).await?;
    let gw = Gateway::start(&nats.url()).await?;
    let url = gw.mcp_url();
    let client = McpClient::initialize(&url).await?;
    let call = |id: i64, name: &str, arguments: serde_json::Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": name, "arguments": arguments}})
    };

    let mut first = client
        .send_message(
            &url,
            &call(7, "sleep_ms", json!({"ms": 8000})),
            Some(json!(7)),
        )
        .await?;
    assert_eq!(first.status, StatusCode::OK);
    first.next_event(EVENT_TIMEOUT).await?; // priming: it is on the stream

    // The same id again while the first runs: 400 -32600 naming the id,
    // and it never runs.
    let dup = client
        .send_message(
            &url,
            &call(7, "increment_counter", json!({})),
            Some(json!(7)),
        )
        .await?
        .finish()
        .await?;
    assert_eq!(dup.status, StatusCode::BAD_REQUEST);
    assert_eq!(dup.error_code(), Some(-32600));
    let body = dup.json_body().unwrap_or_default();
    assert_eq!(body["id"], 7, "{body}");
    // Another request of the session runs meanwhile.
    let other = client
        .send_message(
            &url,
            &call(8, "sleep_ms", json!({"ms": 300})),
            Some(json!(8)),
        )
        .await?;

    // Cancelling 7 stops the running first request (no answer, per the
    // spec) and nothing else.
    let cancel = client
        .notify(
            &url,
            "notifications/cancelled",
            json!({"requestId": 7, "reason": "enough"}),
        )
        .await?;
    assert_eq!(cancel.status, StatusCode::ACCEPTED);
    while let Some(ev) = first.next_event(EVENT_TIMEOUT).await? {
        assert!(
            ev.json.as_ref().is_none_or(|j| j.get("result").is_none()),
            "the cancelled request was answered: {ev:?}"
        );
    }
    assert!(first.final_response().is_none());
    let other = other.finish().await?;
    assert_eq!(other.structured_content()?["slept_ms"], 300);
    let counter = client
        .call_tool_structured(&url, "get_counter", json!({}))
        .await?;
    assert_eq!(counter["counter"], 0, "the refused duplicate ran");

    // Once its request ended, the id may name a new request (the gateway
    // refuses only ids in flight).
    let again = client
        .send_message(
            &url,
            &call(7, "echo", json!({"text": "again"})),
            Some(json!(7)),
        )
        .await?
        .finish()
        .await?;
    assert_eq!(again.structured_content()?["text"], "again");
    Ok(())
}

#[tokio::test]
async fn a_session_queueing_many_long_calls_does_not_hold_up_another_session() -> Result<()> {
    const CALLS: usize = 6;
    let nats = NatsServer::start().await?;
    // Two slots; a session's share is one (half), so the busy session's
    // queued calls are parked and the other session's call gets a slot.
    let _worker = Worker::builder(&nats.url())
        .args(["--max-concurrency", "2"])
        .start()
        .await?;
    let gw = Gateway::start(&nats.url()).await?;
    let url = gw.mcp_url();
    let busy = McpClient::initialize(&url).await?;
    let other = McpClient::initialize(&url).await?;

    let answered = Arc::new(AtomicUsize::new(0));
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..CALLS {
        // `send` returns once the request is on the stream, in this order.
        let stream = busy
            .send(
                &url,
                "tools/call",
                json!({"name": "sleep_ms", "arguments": {"ms": 1500}}),
            )
            .await?;
        let answered = answered.clone();
        calls.spawn(async move {
            let ex = stream.finish().await?;
            answered.fetch_add(1, Ordering::SeqCst);
            anyhow::Ok(ex)
        });
    }
    // Queued behind all of them in the consumer.
    let echo = other
        .call_tool(&url, "echo", json!({"text": "not last"}))
        .await?;
    let busy_answered_before = answered.load(Ordering::SeqCst);
    assert_eq!(echo.structured_content()?["text"], "not last");
    // Without fairness the echo waits behind every call (measured: 6 of 6
    // answered first). With it, it runs once a slot frees: after the first
    // two, which started together in the two slots.
    assert!(
        busy_answered_before <= 2,
        "the other session waited behind {busy_answered_before} of {CALLS} calls"
    );
    // Every call of the busy session is answered, once.
    let mut done = 0;
    while let Some(ex) = calls.join_next().await {
        let ex = ex??;
        assert_eq!(ex.structured_content()?["slept_ms"], 1500);
        done += 1;
    }
    assert_eq!(done, CALLS);
    println!(
        "fairness: the other session was answered after {busy_answered_before} of {CALLS} long calls"
    );
    Ok(())
}

#[tokio::test]
async fn an_unanswered_elicitation_frees_its_slot_at_the_deadline_and_another_session_is_served()
-> Result<()> {
    const DEADLINE_EXCEEDED: i64 = -32004;
    let nats = NatsServer::start().await?;
    // One slot, so the other session's call can only run once the stuck
    // one has let it go.
    let _worker = Worker::builder(&nats.url())
        .args(["--max-concurrency", "1", "--deadline-secs", "3"])
        .start()
        .await?;
    let gw = Gateway::start(&nats.url()).await?;
    let url = gw.mcp_url();
    let stuck = McpClient::initialize(&url).await?;
    let other = McpClient::initialize(&url).await?;

    let mut asking = stuck
        .send(
            &url,
            "tools/call",
            json!({"name": "test_elicitation", "arguments": {"message": "who are you?"}}),
        )
        .await?;
    let request = asking.next_request(EVENT_TIMEOUT).await?;
    assert_eq!(request["method"], "elicitation/create");
    let ex = asking.finish().await?;
    assert_eq!(
        ex.error_code(),
        Some(DEADLINE_EXCEEDED),
        "{:?}",
        ex.response()
    );
    // Right after, the one slot serves another session. (A call sent while
    // the question was pending would share its deadline, give or take the
    // milliseconds between them, and expire before it could run.)
    let served = other
        .call_tool(&url, "echo", json!({"text": "me too"}))
        .await?;
    assert_eq!(served.structured_content()?["text"], "me too");
    // The stuck session goes on too.
    let echo = stuck
        .call_tool(&url, "echo", json!({"text": "back"}))
        .await?;
    assert_eq!(echo.structured_content()?["text"], "back");
    Ok(())
}

/// `name{labels} value` of a gateway's `/metrics`, 0 if absent.
async fn metric(gw: &Gateway, series: &str) -> Result<f64> {
    Ok(jetway_tests::scrape::metric(gw.base_url(), series)
        .await?
        .unwrap_or(0.0))
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    anyhow::Context::context(
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok()),
        "VmRSS",
    )
}

#[tokio::test]
async fn a_client_that_stops_reading_a_large_stream_is_cut_off_and_resumes_the_rest() -> Result<()>
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const LOGS: u64 = 300;
    const BYTES: usize = 60_000; // 18 MB in all: more than any socket buffer
    let nats = NatsServer::start().await?;
    let _worker = Worker::start(&nats.url()).await?;
    let gw = Gateway::builder(&nats.url())
        .args(["--write-timeout-secs", "4"])
        .start()
        .await?;
    let url = gw.mcp_url();
    let client = McpClient::initialize(&url).await?;
    let before = rss_kib(gw.pid())?;

    // A raw HTTP/1 client with a tiny receive buffer that reads the
    // response head and the priming event, then nothing more.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let mut tcp = socket.connect(gw.addr()).await?;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "emit_logs", "arguments": {"count": LOGS, "bytes": BYTES}}})
    .to_string();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json, text/event-stream\r\n\
         Content-Type: application/json\r\nMcp-Session-Id: {}\r\nMCP-Protocol-Version: 2025-11-25\r\n\
         Content-Length: {}\r\n\r\n",
        client.session_id().unwrap_or_default(),
        body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(body.as_bytes()).await?;
    let mut got = Vec::new();
    let priming = loop {
        let mut buf = [0u8; 512];
        let n = tcp.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "closed before the priming event");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some(id) = text
            .lines()
            .find_map(|l| l.strip_prefix("id:"))
            .filter(|_| text.contains("\n\n"))
        {
            break id.trim().to_owned();
        }
    };
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );

    // The gateway's writes stall; after write_timeout it closes the
    // connection and its reader of the stream ends. Meanwhile the worker
    // publishes all of it, and the gateway's memory is sampled: a stalled
    // reader may hold its stream's buffer (1 MiB), not what the bus sends.
    let peak = std::cell::Cell::new(before);
    jetway_tests::eventually_msg(
        "the gateway closes the stalled connection",
        Duration::from_secs(60),
        || async {
            peak.set(peak.get().max(rss_kib(gw.pid())?));
            anyhow::Ok(
                metric(
                    &gw,
                    "jetway_limit_rejections_total{limit=\"write_timeout\"} ",
                )
                .await?
                    >= 1.0,
            )
        },
    )
    .await?;
    jetway_tests::eventually_msg(
        "no POST stream open on the gateway",
        Duration::from_secs(30),
        || async {
            anyhow::Ok(metric(&gw, "jetway_gateway_sse_streams_open{kind=\"post\"} ").await? == 0.0)
        },
    )
    .await?;
    let (peak, after) = (peak.get(), rss_kib(gw.pid())?);
    assert!(
        metric(&gw, "jetway_gateway_sse_reader_pauses_total ").await? >= 1.0,
        "the reader never left its live subscription"
    );
    // What the kernel still holds for us, then the end: the connection is closed.
    let mut rest = 0usize;
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = vec![0u8; 65536];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => rest += n,
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the connection stayed open");
    println!(
        "stalled reader: cut off after {} KiB of ~{} KiB; gateway RSS {before} KiB, \
         {peak} KiB at most while stalled, {after} KiB after",
        (got.len() + rest) / 1024,
        (LOGS as usize * BYTES) / 1024
    );
    assert!(
        ((got.len() + rest) as u64) < LOGS * BYTES as u64,
        "the whole stream was delivered; nothing stalled"
    );
    // The buffer, the frame being written and the allocator's slack; the
    // stream is 17.6 MiB.
    assert!(
        peak < before + 8 * 1024,
        "a stalled reader held more than its buffer: gateway RSS {before} -> {peak} KiB"
    );

    // It comes back with the priming event's id and gets all of it.
    let ex = client
        .get_stream(&url, Some(&priming))
        .await?
        .finish()
        .await?;
    let logs = ex
        .notifications()
        .into_iter()
        .filter(|n| n["method"] == "notifications/message")
        .count();
    assert_eq!(logs as u64, LOGS);
    let answer = ex
        .messages()
        .into_iter()
        .find(|m| m.get("id") == Some(&json!(1)))
        .cloned();
    assert_eq!(
        answer
            .as_ref()
            .map(|a| a["result"]["structuredContent"]["sent"].clone()),
        Some(json!(LOGS)),
        "{answer:?}"
    );
    Ok(())
}

/// Stops passing on what the gateway sends until the gateway's reader has
/// left its live subscription (its client is behind by more than its
/// buffer), then passes it all on.
async fn stall_until_a_reader_pauses(proxy: &GatedProxy, gw: &Gateway) -> Result<()> {
    proxy.close();
    jetway_tests::eventually_msg(
        "a reader leaves its live subscription",
        Duration::from_secs(60),
        || async {
            anyhow::Ok(metric(gw, "jetway_gateway_sse_reader_pauses_total ").await? >= 1.0)
        },
    )
    .await?;
    proxy.open();
    Ok(())
}

/// What a stalled client gets once it reads again: every log once and in
/// order, then the answer.
fn every_log_then_the_answer(seen: &[u64], answer: &serde_json::Value) {
    assert_eq!(
        seen,
        (0..SLOW_LOGS).collect::<Vec<_>>(),
        "every log once, in order"
    );
    assert_eq!(
        answer["result"]["structuredContent"]["sent"],
        json!(SLOW_LOGS)
    );
}

/// The index each `emit_logs` log notification carries (`"{i} xxx…"`).
fn log_index(msg: &serde_json::Value) -> Option<u64> {
    (msg["method"] == "notifications/message")
        .then(|| msg["params"]["data"]["msg"].as_str())
        .flatten()
        .and_then(|t| t.split(' ').next())
        .and_then(|i| i.parse().ok())
}

const SLOW_LOGS: u64 = 300;
/// 18 MB in all: more than the gateway's socket buffer and its stream's.
const SLOW_BYTES: usize = 60_000;

#[tokio::test]
async fn a_client_that_stops_reading_then_reads_gets_every_event_once_and_in_order() -> Result<()> {
    let nats = NatsServer::start().await?;
    let _worker = Worker::start(&nats.url()).await?;
    let gw = Gateway::start(&nats.url()).await?;
    let proxy = GatedProxy::start(gw.addr()).await?;
    let url = format!("{}/mcp", proxy.base_url());
    let client = McpClient::initialize(&url).await?;
    let mut stream = client
        .send(
            &url,
            "tools/call",
            json!({"name": "emit_logs", "arguments": {"count": SLOW_LOGS, "bytes": SLOW_BYTES}}),
        )
        .await?;
    stall_until_a_reader_pauses(&proxy, &gw).await?;
    let mut seen = Vec::new();
    let answer = loop {
        let ev = stream
            .next_message(EVENT_TIMEOUT)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the stream ended before the answer"))?;
        let msg = ev.json.unwrap_or_default();
        if msg.get("id").is_some() && msg.get("result").is_some() {
            break msg;
        }
        seen.extend(log_index(&msg));
    };
    every_log_then_the_answer(&seen, &answer);
    Ok(())
}

#[tokio::test]
async fn an_http_sse_client_that_stops_reading_then_reads_gets_every_event_once_and_in_order()
-> Result<()> {
    use jetway_tests::http_sse::SseSession;
    let nats = NatsServer::start().await?;
    let _worker = Worker::start(&nats.url()).await?;
    let gw = Gateway::start(&nats.url()).await?;
    let proxy = GatedProxy::start(gw.addr()).await?;
    let mut s = SseSession::open(&format!("{}/sse", proxy.base_url())).await?;
    s.initialize().await?;
    s.send(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "emit_logs", "arguments": {"count": SLOW_LOGS, "bytes": SLOW_BYTES}}}))
        .await?;
    stall_until_a_reader_pauses(&proxy, &gw).await?;
    let mut seen = Vec::new();
    let answer = loop {
        let msg = s.next(EVENT_TIMEOUT).await?.json.unwrap_or_default();
        if msg.get("id") == Some(&json!(7)) {
            break msg;
        }
        seen.extend(log_index(&msg));
    };
    every_log_then_the_answer(&seen, &answer);
    Ok(())
}
