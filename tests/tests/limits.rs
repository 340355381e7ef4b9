//! Limits at the edge and on the bus, end to end: what one client may hold
//! or send, and what happens to an answer too large for NATS. Each limit
//! answers its status and JSON-RPC error, and nothing else happens: other
//! sessions are served, the refused request never runs.

use anyhow::{Context, Result};
use jetway_tests::{Gateway, McpClient, NatsServer, Worker};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const TOO_MANY_REQUESTS: i64 = -32007;

#[tokio::test]
async fn a_session_with_too_many_requests_in_flight_gets_429_and_others_are_served() -> Result<()> {
    let nats = NatsServer::start().await?;
    let _worker = Worker::start(&nats.url()).await?;
    let gw = Gateway::builder(&nats.url())
        .args(["--max-inflight-per-session", "2"])
        .start()
        .await?;
    let url = gw.mcp_url();
    let busy = McpClient::initialize(&url).await?;
    let mut long = Vec::new();
    for _ in 0..2 {
        let mut call = busy
            .send(
                &url,
                "tools/call",
                json!({"name": "sleep_ms", "arguments": {"ms": 3000}}),
            )
            .await?;
        assert_eq!(call.status, StatusCode::OK);
        // Its priming event: the request is on the stream and counted.
        call.next_event(Duration::from_secs(10)).await?;
        long.push(call);
    }
    let third = busy.call_tool(&url, "echo", json!({"text": "3rd"})).await?;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.error_code(), Some(TOO_MANY_REQUESTS));
    assert_eq!(third.header("retry-after"), Some("1"));

    // Another session is served meanwhile, and notifications of the busy
    // one still pass (they hold no stream).
    let other = McpClient::initialize(&url).await?;
    let echo = other.call_tool(&url, "echo", json!({"text": "hi"})).await?;
    assert_eq!(echo.structured_content()?["text"], "hi");
    let note = busy
        .notify(&url, "notifications/roots/list_changed", Value::Null)
        .await?;
    assert_eq!(note.status, StatusCode::ACCEPTED);

    // The refused request never ran; once a slot frees, calls pass again.
    for call in long {
        let ex = call.finish().await?;
        assert_eq!(ex.structured_content()?["slept_ms"], 3000);
    }
    let fourth = busy.call_tool(&url, "echo", json!({"text": "4th"})).await?;
    assert_eq!(fourth.structured_content()?["text"], "4th");
    Ok(())
}

#[tokio::test]
async fn batches_are_refused_for_sessions_that_did_not_negotiate_2025_03_26() -> Result<()> {
    let nats = NatsServer::start().await?;
    let _worker = Worker::start(&nats.url()).await?;
    let gw = Gateway::start(&nats.url()).await?;
    let url = gw.mcp_url();
    let batch = |a: i64, b: i64| {
        json!([
            {"jsonrpc": "2.0", "id": a, "method": "tools/call",
             "params": {"name": "increment_counter", "arguments": {}}},
            {"jsonrpc": "2.0", "id": b, "method": "tools/call",
             "params": {"name": "increment_counter", "arguments": {}}},
        ])
    };
    // A 2025-11-25 session that claims 2025-03-26 in the header (or sends
    // none, which means 2025-03-26): 400, and nothing ran.
    let mut modern = McpClient::initialize(&url).await?;
    assert_eq!(modern.protocol_version(), Some("2025-11-25"));
    for header in [Some("2025-03-26".to_owned()), None] {
        modern.set_protocol_version(header.clone());
        let ex = modern
            .send_message(&url, &batch(100, 101), None)
            .await?
            .finish()
            .await?;
        assert_eq!(ex.status, StatusCode::BAD_REQUEST, "header {header:?}");
        assert_eq!(ex.error_code(), Some(-32600));
    }
    modern.set_protocol_version(Some("2025-11-25".into()));
    let out = modern
        .call_tool_structured(&url, "get_counter", json!({}))
        .await?;
    assert_eq!(out["counter"], 0, "a refused batch ran");

    // A 2025-03-26 session may batch.
    let params = {
        let mut p = jetway_tests::mcp::default_initialize_params();
        p["protocolVersion"] = json!("2025-03-26");
        p
    };
    let old = McpClient::initialize_with(&url, params).await?;
    assert_eq!(old.protocol_version(), Some("2025-03-26"));
    let ex = old
        .send_message(&url, &batch(200, 201), None)
        .await?
        .finish()
        .await?;
    assert_eq!(ex.status, StatusCode::OK);
    let out = old
        .call_tool_structured(&url, "get_counter", json!({}))
        .await?;
    assert_eq!(out["counter"], 2);
    Ok(())
}

#[tokio::test]
async fn an_answer_too_large_for_nats_is_one_clean_error_not_a_rerun() -> Result<()> {
    let nats = NatsServer::start().await?;
    let _worker = Worker::builder(&nats.url())
        .args(["--ack-wait-secs", "1", "--max-deliver", "3"])
        .start()
        .await?;
    let gw = Gateway::start(&nats.url()).await?;
    let url = gw.mcp_url();
    let client = McpClient::initialize(&url).await?;
    // The echo answer carries the text twice (text content and structured
    // content): 600 KB in, about 1.2 MB out, over the default 1 MiB.
    let text = "x".repeat(600 * 1024);
    let started = std::time::Instant::now();
    let ex = client
        .call_tool(&url, "echo", json!({"text": text}))
        .await?;
    let took = started.elapsed();
    assert_eq!(ex.status, StatusCode::OK);
    let response = ex.response()?;
    assert_eq!(response["error"]["code"], -32603, "{}", short(response));
    let message = response["error"]["message"]
        .as_str()
        .context("an error message")?;
    assert!(
        message.contains("exceeds the message bus's max_payload"),
        "{message}"
    );
    assert!(
        response["id"].is_number(),
        "the error keeps the request's id"
    );
    // One final message on the stream, and no re-run: a re-run would show
    // as `max_deliver` leases (3 s) before -32003.
    let finals = ex
        .messages()
        .into_iter()
        .filter(|m| m.get("id").is_some())
        .count();
    assert_eq!(finals, 1);
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await?);
    let stream = js.get_stream("JETWAY_0").await?;
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_consumer("jetway-workers")
        .await
        .map_err(|e| anyhow::anyhow!("consumer: {e}"))?;
    let info = consumer.cached_info();
    assert_eq!(info.num_redelivered, 0, "the request was delivered again");
    println!("too-large answer: error after {took:?}");

    // The session goes on.
    let echo = client
        .call_tool(&url, "echo", json!({"text": "small"}))
        .await?;
    assert_eq!(echo.structured_content()?["text"], "small");
    Ok(())
}

fn short(v: &Value) -> String {
    v.to_string().chars().take(300).collect()
}

// ---- Connections: slowloris, stalled bodies, idle keep-alives, the cap. ----

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (EOF or reset); the bytes
/// read, or an error if it stays open past `within`.
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> Result<Vec<u8>> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .context("the server kept the connection open")?;
    Ok(got)
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")
}

#[tokio::test]
async fn slowloris_clients_are_cut_off_and_the_gateway_serves_others() -> Result<()> {
    const CLIENTS: usize = 50;
    let nats = NatsServer::start().await?;
    let _worker = Worker::start(&nats.url()).await?;
    let gw = Gateway::builder(&nats.url())
        .args(["--header-read-timeout-secs", "2"])
        .start()
        .await?;
    let addr = gw.addr();
    let before = rss_kib(gw.pid())?;
    // Each sends its request line and headers a byte every 100 ms: never
    // done within the 2 s header timeout.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        tasks.spawn(async move {
            let mut tcp = TcpStream::connect(addr).await?;
            let started = std::time::Instant::now();
            let request = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
            for b in request {
                if tcp.write_all(&[*b]).await.is_err() {
                    return anyhow::Ok(started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            closed_within(&mut tcp, Duration::from_secs(10)).await?;
            anyhow::Ok(started.elapsed())
        });
    }
    // Meanwhile a normal client is served.
    let client = McpClient::initialize(&gw.mcp_url()).await?;
    let echo = client
        .call_tool(&gw.mcp_url(), "echo", json!({"text": "hi"}))
        .await?;
    assert_eq!(echo.structured_content()?["text"], "hi");
    let mut cut = Vec::new();
    while let Some(t) = tasks.join_next().await {
        cut.push(t??);
    }
    cut.sort();
    let after = rss_kib(gw.pid())?;
    println!(
        "slowloris: {CLIENTS} clients cut off after {:?} .. {:?}; gateway RSS {before} -> {after} KiB",
        cut[0],
        cut[CLIENTS - 1]
    );
    assert!(
        cut[CLIENTS - 1] < Duration::from_secs(8),
        "a slow client held on for {:?}",
        cut[CLIENTS - 1]
    );
    assert!(
        after < before + 20 * 1024,
        "gateway memory grew: {before} -> {after} KiB"
    );
    Ok(())
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_an_idle_connection_is_closed() -> Result<()> {
    let nats = NatsServer::start().await?;
    let gw = Gateway::builder(&nats.url())
        .args([
            "--body-read-timeout-secs",
            "1",
            "--idle-timeout-secs",
            "2",
            "--keep-alive-secs",
            "1",
        ])
        .start()
        .await?;
    let mut tcp = TcpStream::connect(gw.addr()).await?;
    let head = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json, text/event-stream\r\n\
                Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(&[b' '; 999]).await?;
    let answer = closed_within(&mut tcp, Duration::from_secs(10)).await?;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("-32600"), "{text}");

    // A connection that never sends a request is closed after the idle timeout.
    let mut idle = TcpStream::connect(gw.addr()).await?;
    let got = closed_within(&mut idle, Duration::from_secs(10)).await?;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    Ok(())
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() -> Result<()> {
    let nats = NatsServer::start().await?;
    let gw = Gateway::builder(&nats.url())
        .args(["--max-connections", "3"])
        .start()
        .await?;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut tcp = TcpStream::connect(gw.addr()).await?;
        // A request on each, so the server has surely accepted them.
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut buf = [0u8; 512];
        let n = tcp.read(&mut buf).await?;
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(tcp);
    }
    let mut fourth = TcpStream::connect(gw.addr()).await?;
    let _ = fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await;
    let got = closed_within(&mut fourth, Duration::from_secs(5)).await?;
    assert!(
        got.is_empty(),
        "over the cap, yet answered: {:?}",
        String::from_utf8_lossy(&got)
    );
    // One closes: there is room again.
    drop(held.pop());
    let http = jetway_tests::mcp::http_client();
    jetway_tests::eventually_msg("a connection fits again", Duration::from_secs(10), || {
        let url = format!("{}/healthz", gw.base_url());
        let http = http.clone();
        async move {
            anyhow::Ok(
                http.get(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::OK),
            )
        }
    })
    .await?;
    Ok(())
}
