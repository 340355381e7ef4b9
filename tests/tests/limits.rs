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
