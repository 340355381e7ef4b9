//! Resuming SSE streams with `Last-Event-ID` on any gateway, the one-GET-
//! stream-per-session rule, and polling (the server ending streams on
//! purpose so clients come back with `Last-Event-ID`).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use jetway_tests::{Gateway, McpClient, NatsServer, ResponseStream, SseEvent, Worker};
use reqwest::StatusCode;
use serde_json::{Value, json};

const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

struct Stack {
    _nats: NatsServer,
    a: Gateway,
    b: Gateway,
    _worker: Worker,
}

impl Stack {
    async fn start(gateway_b_args: &[&str]) -> Result<Self> {
        let nats = NatsServer::start().await?;
        let a = Gateway::builder(&nats.url())
            .instance_id("gw-a")
            .start()
            .await?;
        let mut b = Gateway::builder(&nats.url()).instance_id("gw-b");
        for arg in gateway_b_args {
            b = b.arg(*arg);
        }
        let b = b.start().await?;
        let worker = Worker::builder(&nats.url())
            .instance_id("wk-1")
            .start()
            .await?;
        Ok(Self {
            _nats: nats,
            a,
            b,
            _worker: worker,
        })
    }
}

/// Reads every event until the stream ends.
async fn drain(stream: &mut ResponseStream) -> Result<Vec<SseEvent>> {
    let mut events = Vec::new();
    while let Some(ev) = stream.next_event(EVENT_TIMEOUT).await? {
        events.push(ev);
    }
    Ok(events)
}

fn sequence(id: &str) -> u64 {
    id.rsplit_once('-')
        .and_then(|(_, s)| s.parse().ok())
        .unwrap_or(0)
}

fn progress_values(events: &[SseEvent]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| e.json.as_ref())
        .filter(|j| j["method"] == "notifications/progress")
        .filter_map(|j| j["params"]["progress"].as_f64())
        .collect()
}

fn responses(events: &[SseEvent]) -> Vec<&Value> {
    events
        .iter()
        .filter_map(|e| e.json.as_ref())
        .filter(|j| j.get("result").is_some() || j.get("error").is_some())
        .collect()
}

#[tokio::test]
async fn a_finished_request_stream_replays_its_tail_and_closes() -> Result<()> {
    let s = Stack::start(&[]).await?;
    let client = McpClient::initialize(&s.a.mcp_url()).await?;
    let mut post = client
        .send(
            &s.a.mcp_url(),
            "tools/call",
            json!({"name": "increment_counter", "arguments": {}}),
        )
        .await?;
    let events = drain(&mut post).await?;
    let priming = events.first().context("a priming event")?;
    ensure!(
        priming.data.is_empty(),
        "first event is the priming event: {priming:?}"
    );
    let priming_id = priming.id.clone().context("priming event has an id")?;

    // From the priming event: the response again, on the other gateway, then the end.
    let mut resumed = client.get_stream(&s.b.mcp_url(), Some(&priming_id)).await?;
    ensure!(
        resumed.status == StatusCode::OK,
        "resume status {}",
        resumed.status
    );
    let replay = drain(&mut resumed).await?;
    let replayed_responses = responses(&replay);
    ensure!(
        replayed_responses.len() == 1,
        "one response replayed: {replay:?}"
    );
    ensure!(replayed_responses[0]["result"]["structuredContent"]["counter"] == 1);
    ensure!(
        replay
            .iter()
            .all(|e| e.id.as_deref().map(sequence) > Some(sequence(&priming_id)))
    );

    // From the response's own id: nothing left, the stream just ends.
    let last = events
        .last()
        .and_then(|e| e.id.clone())
        .context("response id")?;
    let mut tail = client.get_stream(&s.b.mcp_url(), Some(&last)).await?;
    ensure!(
        drain(&mut tail).await?.iter().all(|e| e.json.is_none()),
        "nothing after the response"
    );
    Ok(())
}

#[tokio::test]
async fn event_ids_of_other_sessions_or_unknown_positions_are_refused() -> Result<()> {
    let s = Stack::start(&[]).await?;
    let alice = McpClient::initialize(&s.a.mcp_url()).await?;
    let bob = McpClient::initialize(&s.a.mcp_url()).await?;
    let mut post = alice
        .send(
            &s.a.mcp_url(),
            "tools/call",
            json!({"name": "add_note", "arguments": {"note": "secret"}}),
        )
        .await?;
    let alice_ids: Vec<String> = drain(&mut post)
        .await?
        .into_iter()
        .filter_map(|e| e.id)
        .collect();
    ensure!(alice_ids.len() == 2, "priming + response: {alice_ids:?}");

    // Bob presenting Alice's event ids gets 400 and none of her messages.
    for id in &alice_ids {
        for gw in [&s.a, &s.b] {
            let stream = bob.get_stream(&gw.mcp_url(), Some(id)).await?;
            ensure!(
                stream.status == StatusCode::BAD_REQUEST,
                "{id}: {}",
                stream.status
            );
            let body = stream
                .finish()
                .await?
                .json_body()
                .context("JSON error body")?;
            ensure!(body["error"]["code"] == -32600, "{body}");
            ensure!(!body.to_string().contains("secret"));
        }
    }
    // A well-formed id naming no stored event: 400 as well.
    let stream = alice
        .get_stream(&s.b.mcp_url(), Some("r0123456789abcdef-999999"))
        .await?;
    ensure!(
        stream.status == StatusCode::BAD_REQUEST,
        "unknown position: {}",
        stream.status
    );

    // Both sessions still work.
    for c in [&alice, &bob] {
        let n = c
            .call_tool_structured(&s.b.mcp_url(), "increment_counter", json!({}))
            .await?;
        ensure!(n["counter"] == 1, "{n}");
    }
    Ok(())
}

#[tokio::test]
async fn a_newer_get_stream_takes_over_and_the_older_one_ends() -> Result<()> {
    let s = Stack::start(&[]).await?;
    let client = McpClient::initialize(&s.a.mcp_url()).await?;
    let sid = client.session_id().context("session id")?.to_owned();
    let uri = format!("resource://session/{sid}/summary");
    client
        .request(&s.a.mcp_url(), "resources/subscribe", json!({"uri": uri}))
        .await?;

    let mut first = client.get_stream(&s.a.mcp_url(), None).await?;
    ensure!(first.status == StatusCode::OK);
    let primed = first
        .next_event(EVENT_TIMEOUT)
        .await?
        .context("priming event")?;
    ensure!(primed.data.is_empty() && primed.id.is_some());

    let mut second = client.get_stream(&s.b.mcp_url(), None).await?;
    ensure!(second.status == StatusCode::OK);
    second
        .next_event(EVENT_TIMEOUT)
        .await?
        .context("priming event")?;
    // The first connection, on another gateway, is ended by the takeover.
    first.expect_end(EVENT_TIMEOUT).await?;

    client
        .call_tool(&s.a.mcp_url(), "increment_counter", json!({}))
        .await?;
    let update = second
        .next_message(EVENT_TIMEOUT)
        .await?
        .context("update")?;
    let update = update.json.context("JSON")?;
    ensure!(
        update["method"] == "notifications/resources/updated" && update["params"]["uri"] == uri
    );
    Ok(())
}

#[tokio::test]
async fn the_get_stream_resumes_after_the_last_event_seen() -> Result<()> {
    let s = Stack::start(&[]).await?;
    let client = McpClient::initialize(&s.a.mcp_url()).await?;
    let sid = client.session_id().context("session id")?.to_owned();
    let uri = format!("resource://session/{sid}/summary");
    client
        .request(&s.a.mcp_url(), "resources/subscribe", json!({"uri": uri}))
        .await?;

    let mut get = client.get_stream(&s.a.mcp_url(), None).await?;
    get.next_event(EVENT_TIMEOUT)
        .await?
        .context("priming event")?;
    client
        .call_tool(&s.a.mcp_url(), "increment_counter", json!({}))
        .await?;
    let first = get
        .next_message(EVENT_TIMEOUT)
        .await?
        .context("first update")?;
    let seen = first.id.context("update has an id")?;
    drop(get);

    // Two more updates while no GET stream is open.
    client
        .call_tool(&s.b.mcp_url(), "increment_counter", json!({}))
        .await?;
    client
        .call_tool(&s.b.mcp_url(), "add_note", json!({"note": "n"}))
        .await?;

    let mut resumed = client.get_stream(&s.b.mcp_url(), Some(&seen)).await?;
    ensure!(resumed.status == StatusCode::OK);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let ev = resumed
            .next_message(EVENT_TIMEOUT)
            .await?
            .context("missed update")?;
        ensure!(
            ev.json
                .as_ref()
                .is_some_and(|j| j["method"] == "notifications/resources/updated")
        );
        ids.push(ev.id.context("id")?);
    }
    ensure!(
        ids.iter().all(|id| sequence(id) > sequence(&seen)),
        "{ids:?} after {seen}"
    );
    ensure!(ids[0] != ids[1]);
    Ok(())
}

#[tokio::test]
async fn polling_ends_streams_with_retry_and_resume_completes_them() -> Result<()> {
    // gw-b closes every stream after a second; analyze_data(3) takes ~1.7 s.
    let s = Stack::start(&["--sse-poll-secs", "1"]).await?;
    let client = McpClient::initialize(&s.a.mcp_url()).await?;
    let params = json!({"name": "analyze_data", "arguments": {"num_items": 3},
                        "_meta": {"progressToken": "poll"}});
    let mut post = client.send(&s.b.mcp_url(), "tools/call", params).await?;
    let mut events = drain(&mut post).await?;
    ensure!(
        post.reconnection_time().is_some(),
        "the server sent a retry hint before closing"
    );
    ensure!(
        responses(&events).is_empty(),
        "the stream was closed before the result"
    );

    // Come back, each time with the last id, until the response arrives.
    for _ in 0..5 {
        if !responses(&events).is_empty() {
            break;
        }
        let last = events
            .iter()
            .rev()
            .find_map(|e| e.id.clone())
            .context("an event id")?;
        let mut again = client.get_stream(&s.b.mcp_url(), Some(&last)).await?;
        ensure!(again.status == StatusCode::OK);
        events.extend(drain(&mut again).await?);
    }
    let results = responses(&events);
    ensure!(results.len() == 1, "exactly one response: {results:?}");
    ensure!(results[0]["result"]["structuredContent"]["items_processed"] == 3);
    ensure!(
        progress_values(&events) == vec![0.0, 1.0, 2.0, 3.0],
        "{:?}",
        progress_values(&events)
    );
    let ids: Vec<&str> = events.iter().filter_map(|e| e.id.as_deref()).collect();
    let mut unique = ids.clone();
    unique.dedup();
    ensure!(unique.len() == ids.len(), "no event twice: {ids:?}");
    Ok(())
}
