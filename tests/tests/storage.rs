//! Storage bounds end to end, with real processes: a full stream answers
//! 507 with a JSON-RPC error and `Retry-After`, breaks nothing, and serves
//! again as soon as space frees, without a restart; one session at its
//! message cap is refused while others are served; session state lives as
//! long as its session is used and goes with it when it expires.

use anyhow::{Context, Result, ensure};
use async_nats::jetstream::{self, context::PublishErrorKind};
use futures::TryStreamExt;
use jetway_tests::{Gateway, McpClient, NatsServer, Worker, eventually_msg};
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

const STORAGE_FULL: i64 = -32010;
const SESSION_STORAGE_FULL: i64 = -32011;
const SESSION_NOT_FOUND: i64 = -32002;

/// Publishes messages onto subjects of the stream no session uses until
/// the stream refuses even a one-byte one for lack of room (4 KiB messages
/// first, then smaller ones into what is left); returns how many it took.
async fn fill(js: &jetstream::Context) -> Result<usize> {
    let mut stored = 0;
    for size in [4096, 256, 16, 1] {
        let filler = vec![b'x'; size];
        loop {
            anyhow::ensure!(stored < 10_000, "the stream never filled");
            let subject = format!("jetway.0.filler.{stored}");
            let ack = js.publish(subject, filler.clone().into()).await?.await;
            match ack {
                Ok(_) => stored += 1,
                Err(e) if e.kind() == PublishErrorKind::Other => {
                    ensure!(
                        format!("{e:?}").contains("maximum bytes exceeded"),
                        "refused for another reason: {e:?}"
                    );
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(stored)
}

#[tokio::test]
async fn a_full_stream_answers_507_and_serves_again_once_space_frees() -> Result<()> {
    let nats = NatsServer::start().await?;
    let max = "262144"; // 256 KiB
    let worker = Worker::builder(&nats.url())
        .env("JETWAY_STREAM_MAX_BYTES", max)
        .start()
        .await?;
    let gw = Gateway::builder(&nats.url())
        .env("JETWAY_STREAM_MAX_BYTES", max)
        .start()
        .await?;
    let url = gw.mcp_url();
    let session = McpClient::initialize(&url).await?;
    let first = session
        .call_tool_structured(&url, "increment_counter", json!({}))
        .await?;
    assert_eq!(first["counter"], 1);

    // A request in flight when the stream fills: its answer finds no room.
    let mut slow = session
        .send(
            &url,
            "tools/call",
            json!({"name": "sleep_ms", "arguments": {"ms": 2000}}),
        )
        .await?;
    assert_eq!(slow.status, StatusCode::OK);
    slow.next_event(Duration::from_secs(10)).await?;

    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let filled = fill(&js).await?;
    assert!(filled > 0, "the stream had room before");

    // Full: a call is refused at once with 507, -32010 and Retry-After.
    let refused = session
        .call_tool(&url, "echo", json!({"text": "hi"}))
        .await?;
    assert_eq!(refused.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(refused.error_code(), Some(STORAGE_FULL));
    assert_eq!(refused.header("retry-after"), Some("10"));
    // So is a new session.
    let newcomer = McpClient::new()
        .request(
            &url,
            "initialize",
            jetway_tests::mcp::default_initialize_params(),
        )
        .await?;
    assert_eq!(newcomer.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(newcomer.error_code(), Some(STORAGE_FULL));
    // Nobody crashed.
    let http = reqwest::Client::new();
    for base in [gw.base_url(), worker.base_url()] {
        let health = http.get(format!("{base}/healthz")).send().await?;
        assert_eq!(health.status(), StatusCode::OK, "{base}");
    }

    // The slow request's answer finds the stream full, and its worker
    // holds it, waiting for room.
    eventually_msg(
        "the worker waits for room for the answer",
        Duration::from_secs(10),
        || async { worker.log().contains("waiting for room for the answer") },
    )
    .await?;

    // Space frees (an operator purges what filled the stream): calls pass
    // again, no restart.
    let stream = js.get_stream("JETWAY_0").await?;
    stream.purge().filter("jetway.0.filler.>").await?;
    let freed = Instant::now();
    eventually_msg("a call passes again", Duration::from_secs(10), || async {
        let ex = session
            .call_tool(&url, "echo", json!({"text": "back"}))
            .await?;
        Ok::<_, anyhow::Error>(ex.status == StatusCode::OK)
    })
    .await?;
    eprintln!("recovered {:?} after the purge", freed.elapsed());

    // The answer that found no room landed once there was: not lost, not
    // run again.
    let slow = slow.finish_within(Duration::from_secs(20)).await?;
    assert_eq!(slow.structured_content()?["slept_ms"], 2000);
    assert!(
        !worker.log().contains("handing the request back"),
        "the request was not handed back to run again"
    );
    // The session and its state are intact.
    let next = session
        .call_tool_structured(&url, "increment_counter", json!({}))
        .await?;
    assert_eq!(next["counter"], 2);
    McpClient::initialize(&url).await?;
    Ok(())
}

#[tokio::test]
async fn a_session_at_its_message_cap_gets_507_and_others_are_served() -> Result<()> {
    let nats = NatsServer::start().await?;
    let cap = "5";
    let _worker = Worker::builder(&nats.url())
        .env("JETWAY_SESSION_MAX_MESSAGES", cap)
        .start()
        .await?;
    let gw = Gateway::builder(&nats.url())
        .env("JETWAY_SESSION_MAX_MESSAGES", cap)
        .start()
        .await?;
    let url = gw.mcp_url();
    let greedy = McpClient::initialize(&url).await?;
    // `initialize` is the first of its 5 requests.
    for n in 1..=4 {
        let ex = greedy
            .call_tool_structured(&url, "increment_counter", json!({}))
            .await?;
        assert_eq!(ex["counter"], n);
    }
    let refused = greedy
        .call_tool(&url, "increment_counter", json!({}))
        .await?;
    assert_eq!(refused.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(refused.error_code(), Some(SESSION_STORAGE_FULL));

    // Another session is served, and the refused request never ran.
    let other = McpClient::initialize(&url).await?;
    let echo = other.call_tool(&url, "echo", json!({"text": "hi"})).await?;
    assert_eq!(echo.structured_content()?["text"], "hi");
    // Notifications have their own subject, which has room.
    let note = greedy
        .notify(
            &url,
            "notifications/roots/list_changed",
            serde_json::Value::Null,
        )
        .await?;
    assert_eq!(note.status, StatusCode::ACCEPTED);
    let counter = other
        .call_tool_structured(&url, "get_counter", json!({}))
        .await?;
    assert_eq!(counter["counter"], 0);
    Ok(())
}

/// A request whose handler sends more notifications than its subject may
/// hold still gets its answer, run once: the last place is the answer's.
#[tokio::test]
async fn a_request_with_more_notifications_than_its_subject_holds_is_answered_once() -> Result<()> {
    let nats = NatsServer::start().await?;
    let cap = 5;
    let worker = Worker::builder(&nats.url())
        .env("JETWAY_SESSION_MAX_MESSAGES", cap.to_string())
        .start()
        .await?;
    let gw = Gateway::builder(&nats.url())
        .env("JETWAY_SESSION_MAX_MESSAGES", cap.to_string())
        .start()
        .await?;
    let url = gw.mcp_url();
    let client = McpClient::initialize(&url).await?;
    let ex = client
        .call_tool(&url, "emit_logs", json!({"count": 10, "bytes": 8}))
        .await?;
    assert_eq!(ex.structured_content()?["sent"], 10, "{:?}", ex.events);
    let logs: Vec<String> = ex
        .events
        .iter()
        .filter_map(|e| e.log())
        .map(|(_, msg)| msg.split(' ').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        logs,
        ["0", "1", "2", "3"],
        "cap - 1 notifications, then the answer"
    );
    let metrics = jetway_tests::scrape::scrape(worker.base_url()).await?;
    let value = |series: &str| jetway_tests::scrape::sample(&metrics, series);
    assert_eq!(
        value("jetway_worker_messages_dropped_total{kind=\"notification\"} "),
        Some(6.0)
    );
    assert_eq!(
        value("jetway_worker_reruns_total "),
        Some(0.0),
        "it ran once"
    );
    assert_eq!(value("jetway_worker_redeliveries_total "), Some(0.0));
    Ok(())
}

/// The number of state keys of `session` stored in the state bucket.
async fn state_keys(js: &jetstream::Context, session: &str) -> Result<usize> {
    let stream = js.get_stream("KV_jetway_state").await?;
    let subjects: Vec<(String, usize)> = stream
        .info_with_subjects(format!("$KV.jetway_state.{session}.>"))
        .await?
        .try_collect()
        .await?;
    Ok(subjects.len())
}

#[tokio::test]
async fn state_lives_while_its_session_is_used_and_goes_when_it_expires() -> Result<()> {
    let nats = NatsServer::start().await?;
    let retention = Duration::from_secs(3);
    let env = [
        ("JETWAY_RETENTION_SECS", "3"),
        // JetStream wants the duplicate window within the max age.
        ("JETWAY_DUPLICATE_WINDOW_SECS", "2"),
    ];
    let mut wb = Worker::builder(&nats.url());
    let mut gb = Gateway::builder(&nats.url());
    for (k, v) in env {
        wb = wb.env(k, v);
        gb = gb.env(k, v);
    }
    let worker = wb.start().await?;
    let gw = gb.start().await?;
    let url = gw.mcp_url();
    let js = jetstream::new(async_nats::connect(nats.url()).await?);

    let active = McpClient::initialize(&url).await?;
    let idle = McpClient::initialize(&url).await?;
    for s in [&active, &idle] {
        let c = s
            .call_tool_structured(&url, "increment_counter", json!({}))
            .await?;
        assert_eq!(c["counter"], 1);
    }
    let idle_id = idle.session_id().context("a session id")?.to_owned();
    assert_eq!(state_keys(&js, &idle_id).await?, 1);

    // The active session reads (never writes) its counter for four
    // retention periods; the written key must not age out under it. The
    // pause is the client's cadence, not a wait for a condition.
    let until = Instant::now() + retention * 4;
    while Instant::now() < until {
        let c = active
            .call_tool_structured(&url, "get_counter", json!({}))
            .await
            .context("the active session is served")?;
        assert_eq!(c["counter"], 1, "the state of an active session is kept");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let c = active
        .call_tool_structured(&url, "increment_counter", json!({}))
        .await?;
    assert_eq!(c["counter"], 2);

    // The idle session expired: 404, its state removed, counted.
    let gone = idle.call_tool(&url, "get_counter", json!({})).await?;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.error_code(), Some(SESSION_NOT_FOUND));
    eventually_msg(
        "the expired session's state keys are removed",
        Duration::from_secs(10),
        || async { Ok::<_, anyhow::Error>(state_keys(&js, &idle_id).await? == 0) },
    )
    .await?;
    eventually_msg("the expiry is counted", Duration::from_secs(10), || async {
        let expired =
            jetway_tests::scrape::metric(worker.base_url(), "jetway_sessions_expired_total")
                .await?
                .unwrap_or(0.0);
        Ok::<_, anyhow::Error>(expired >= 1.0)
    })
    .await?;
    // The active session's state is still there.
    assert_eq!(
        state_keys(&js, active.session_id().context("id")?).await?,
        1
    );
    Ok(())
}
