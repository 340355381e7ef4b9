//! The shipped least-privilege NATS users (`deploy/nats/permissions.conf`):
//! gateways, workers (built-in and bridge) and the CLI log in as their
//! role, and everything a user relies on still works: sessions, state,
//! failover after a worker dies mid-call, resume on another gateway,
//! HTTP+SSE, the bridge's GET-stream listener, and every CLI command. The
//! server's log must show no permission violation (the harness fails the
//! test on one when the server is dropped). What the roles must not do,
//! they cannot: a gateway reads no tool state, no role deletes the stream.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use jetway_harness::nats_users::NatsRole;
use jetway_tests::http_sse::SseSession;
use jetway_tests::{Gateway, McpClient, NatsServer, Upstream, Worker, cli};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;

const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

async fn gateway(nats: &NatsServer) -> Result<Gateway> {
    let mut b = Gateway::builder(&nats.url());
    for (k, v) in NatsRole::Gateway.client_env() {
        b = b.env(k, v);
    }
    Ok(b.start().await?)
}

async fn worker(nats: &NatsServer, args: &[&str]) -> Result<Worker> {
    let mut b = Worker::builder(&nats.url()).args(args.iter().copied());
    for (k, v) in NatsRole::Worker.client_env() {
        b = b.env(k, v);
    }
    Ok(b.start().await?)
}

async fn operator(nats: &NatsServer, args: &[&str]) -> Result<String> {
    cli::jetway_with_env(&nats.url(), args, &NatsRole::Operator.client_env())
        .await?
        .ok()
}

#[tokio::test]
async fn every_role_works_on_its_own_least_privilege_user() -> Result<()> {
    let nats = NatsServer::builder().jetway_users().start().await?;
    let mut first = worker(&nats, &["--ack-wait-secs", "2"]).await?;
    let gw = [gateway(&nats).await?, gateway(&nats).await?];
    let url = |i: usize| gw[i].mcp_url();

    // Sessions and tool state, across gateways.
    let client = McpClient::initialize(&url(0)).await?;
    for (i, want) in [1, 2].into_iter().enumerate() {
        let out = client
            .call_tool_structured(&url(i), "increment_counter", json!({}))
            .await?;
        assert_eq!(out["counter"], want);
    }

    // A worker killed mid-call: the call is taken over (claims, fences,
    // the write history) and answered once.
    let mut call = client
        .send(
            &url(0),
            "tools/call",
            json!({"name": "analyze_data", "arguments": {"num_items": 4},
                   "_meta": {"progressToken": "p"}}),
        )
        .await?;
    ensure!(
        call.status == StatusCode::OK && call.is_sse(),
        "{}",
        call.status
    );
    call.read_until(EVENT_TIMEOUT, "progress 1", |ev| ev.progress() == Some(1.0))
        .await?;
    let resume_from = call.last_event_id().context("no event id")?.to_owned();
    first.kill().await?;
    let _second = worker(&nats, &["--ack-wait-secs", "2"]).await?;
    drop(call);

    // Resumed on the other gateway: the rest, and one answer.
    let mut resumed = client.get_stream(&url(1), Some(&resume_from)).await?;
    assert_eq!(resumed.status, StatusCode::OK);
    resumed
        .read_until(EVENT_TIMEOUT, "the answer", |ev| {
            ev.json.as_ref().is_some_and(|j| j.get("result").is_some())
        })
        .await?;
    let answers = resumed
        .events()
        .iter()
        .filter(|ev| ev.json.as_ref().is_some_and(|j| j.get("result").is_some()))
        .count();
    assert_eq!(answers, 1, "{:?}", resumed.events());
    drop(resumed);

    // HTTP+SSE.
    let mut legacy = SseSession::open(&format!("{}/sse", gw[1].base_url())).await?;
    legacy.initialize().await?;
    legacy
        .send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                     "params": {"name": "increment_counter", "arguments": {}}}))
        .await?;
    let events = legacy.until_response(2, EVENT_TIMEOUT).await?;
    let last = events
        .last()
        .and_then(|ev| ev.json.clone())
        .unwrap_or(Value::Null);
    assert_eq!(
        last.pointer("/result/structuredContent/counter"),
        Some(&json!(1)),
        "{last}"
    );

    // Every CLI command, as an operator.
    let session = client.session_id().context("no session id")?.to_owned();
    assert!(
        operator(&nats, &["sessions", "list"])
            .await?
            .contains(&session)
    );
    assert!(
        operator(&nats, &["sessions", "show", &session])
            .await?
            .contains(&session)
    );
    let transcript = operator(&nats, &["replay", &session]).await?;
    assert!(transcript.contains("increment_counter"), "{transcript}");
    operator(
        &nats,
        &[
            "replay",
            &session,
            "--redrive",
            "--gateway",
            &gw[0].mcp_url(),
        ],
    )
    .await?;
    operator(&nats, &["sessions", "delete", &session]).await?;
    assert_eq!(client.delete(&url(0)).await?, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn a_bridge_worker_and_its_get_stream_listener_work_on_the_worker_user() -> Result<()> {
    let upstream = Upstream::stateful(&["--resumable"]).await?;
    let nats = NatsServer::builder().jetway_users().start().await?;
    let _worker = worker(&nats, &["--upstream-url", &upstream.url()]).await?;
    let gw = gateway(&nats).await?;
    let client = McpClient::initialize(&gw.mcp_url()).await?;
    for want in [1, 2] {
        let out = client.call_tool(&gw.mcp_url(), "count", json!({})).await?;
        let text = out.result()?.to_string();
        assert!(text.contains(&want.to_string()), "{text}");
    }
    let mut get = client.get_stream(&gw.mcp_url(), None).await?;
    assert_eq!(get.status, StatusCode::OK);
    client
        .call_tool(
            &gw.mcp_url(),
            "tick_later",
            json!({"count": 3, "interval": 0.1, "label": "perm"}),
        )
        .await?
        .result()?;
    let mut ticks = 0;
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while ticks < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(ev) = get.next_event(left).await? else {
            bail!("the GET stream ended after {ticks} ticks");
        };
        if ev.method() == Some("notifications/message") {
            ticks += 1;
        }
    }
    Ok(())
}

#[tokio::test]
async fn what_a_role_may_not_do_it_cannot() -> Result<()> {
    let mut nats = NatsServer::builder().jetway_users().start().await?;
    let _worker = worker(&nats, &[]).await?;
    let gw = gateway(&nats).await?;
    let client = McpClient::initialize(&gw.mcp_url()).await?;
    client
        .call_tool_structured(&gw.mcp_url(), "increment_counter", json!({}))
        .await?;
    let session = client.session_id().context("no session id")?.to_owned();

    let as_role = |role: NatsRole| {
        async_nats::ConnectOptions::with_user_and_password(
            role.user().into(),
            role.password().into(),
        )
        .request_timeout(Some(Duration::from_secs(2)))
        .connect(nats.url())
    };
    let gateway_nats = as_role(NatsRole::Gateway).await?;
    let js = async_nats::jetstream::new(gateway_nats);
    // A gateway reads no tool state, and deletes no stream.
    let state_read = match js.get_key_value("jetway_state").await {
        Ok(kv) => kv.get(format!("{session}.counter")).await.is_ok(),
        Err(_) => false,
    };
    assert!(!state_read, "a gateway read tool state");
    assert!(js.delete_stream("JETWAY_0").await.is_err());

    let worker_nats = as_role(NatsRole::Worker).await?;
    let js = async_nats::jetstream::new(worker_nats);
    assert!(js.delete_stream("JETWAY_0").await.is_err());
    assert!(js.delete_key_value("jetway_sessions").await.is_err());

    // Nothing was deleted: the session goes on.
    let out = client
        .call_tool_structured(&gw.mcp_url(), "increment_counter", json!({}))
        .await?;
    assert_eq!(out["counter"], 2);
    let refused = nats.expect_violations();
    for subject in [
        "$JS.API.STREAM.DELETE.JETWAY_0",
        "$JS.API.STREAM.DELETE.KV_jetway_sessions",
    ] {
        assert!(
            refused.iter().any(|l| l.contains(subject)),
            "{subject} not refused: {refused:#?}"
        );
    }
    assert!(
        refused
            .iter()
            .all(|l| l.contains("$JS.API.STREAM.DELETE.") || l.contains("jetway_state")),
        "unexpected violations: {refused:#?}"
    );
    Ok(())
}
