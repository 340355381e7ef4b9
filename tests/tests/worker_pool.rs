//! The workers behave as one pool: work spreads over idle workers, a
//! saturated pool runs every request once, a cancellation reaches a request
//! that is still queued, every request has a deadline, and a worker says
//! on its HTTP port whether it is ready.

use anyhow::{Context, Result, bail};
use futures::future::join_all;
use jetway_tests::{Gateway, McpClient, NatsServer, Worker, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const EVENT_TIMEOUT: Duration = Duration::from_secs(30);
/// JSON-RPC error of a request stopped at its deadline.
const DEADLINE_EXCEEDED: i64 = -32004;
/// JSON-RPC error of a request abandoned after its deliveries.
const REQUEST_FAILED: i64 = -32003;

struct Pool {
    _nats: NatsServer,
    gateways: Vec<Gateway>,
    _workers: Vec<Worker>,
}

impl Pool {
    async fn start(gateways: usize, workers: &[&[&str]]) -> Result<Self> {
        let nats = NatsServer::start().await?;
        let mut ws = Vec::new();
        for (i, args) in workers.iter().enumerate() {
            ws.push(
                Worker::builder(&nats.url())
                    .instance_id(format!("wk-{}", i + 1))
                    .args(args.iter().copied())
                    .start()
                    .await?,
            );
        }
        let mut gs = Vec::new();
        for i in 0..gateways {
            gs.push(
                Gateway::builder(&nats.url())
                    .instance_id(format!("gw-{}", i + 1))
                    .start()
                    .await?,
            );
        }
        Ok(Self {
            _nats: nats,
            gateways: gs,
            _workers: ws,
        })
    }

    fn url(&self, i: usize) -> String {
        self.gateways[i % self.gateways.len()].mcp_url()
    }
}

/// Which worker ran one new session's single `echo` call.
async fn one_call_on_a_new_session(url: &str) -> Result<String> {
    let client = McpClient::initialize(url).await?;
    let out = client
        .call_tool_structured(url, "echo", json!({"text": "hi"}))
        .await?;
    Ok(out["instance"].as_str().context("instance")?.to_owned())
}

fn assert_fair_share(runs: &[String], what: &str) {
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for r in runs {
        *per.entry(r.as_str()).or_default() += 1;
    }
    for w in ["wk-1", "wk-2"] {
        let n = per.get(w).copied().unwrap_or(0);
        assert!(
            n * 4 >= runs.len(),
            "{what}: {w} served {n} of {} calls ({per:?})",
            runs.len()
        );
    }
}

#[tokio::test]
async fn new_sessions_spread_over_both_workers_sequentially_and_in_parallel() -> Result<()> {
    let pool = Pool::start(1, &[&[], &[]]).await?;
    let url = pool.url(0);

    let mut sequential = Vec::new();
    for _ in 0..20 {
        sequential.push(one_call_on_a_new_session(&url).await?);
    }
    assert_fair_share(&sequential, "sequential");

    let parallel: Vec<String> = join_all((0..20).map(|_| one_call_on_a_new_session(&url)))
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    assert_fair_share(&parallel, "parallel");
    Ok(())
}

#[tokio::test]
async fn a_saturated_pool_runs_every_queued_request_once() -> Result<()> {
    // Two slots per worker and a one-second lease: requests that waited in a
    // worker without renewals would be redelivered and run twice.
    let flags: &[&str] = &["--max-concurrency", "2", "--ack-wait-secs", "1"];
    let pool = Pool::start(2, &[flags, flags]).await?;

    let client = McpClient::initialize(&pool.url(1)).await?;
    // Fill every slot with a long call.
    let sleeper = McpClient::initialize(&pool.url(0)).await?;
    let mut sleeps = Vec::new();
    for i in 0..4 {
        let call = sleeper
            .send(
                &pool.url(i),
                "tools/call",
                json!({"name": "sleep_ms", "arguments": {"ms": 4000}}),
            )
            .await?;
        sleeps.push(call);
    }

    // Twenty increments of one session queue behind them, across both gateways.
    let calls = (0..20).map(|i| {
        let client = &client;
        let url = pool.url(i);
        async move { client.call_tool(&url, "increment_counter", json!({})).await }
    });
    let started = Instant::now();
    let results = join_all(calls).await;
    let mut seen = BTreeSet::new();
    for r in results {
        let ex = r?;
        if let Some(code) = ex.error_code() {
            bail!("increment failed with {code}: {:?}", ex.error());
        }
        let counter = ex.structured_content()?["counter"]
            .as_i64()
            .context("counter")?;
        assert!(seen.insert(counter), "counter value {counter} seen twice");
    }
    assert_eq!(seen, (1..=20).collect::<BTreeSet<i64>>());
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the increments should have queued behind the sleeps"
    );
    for call in sleeps {
        let ex = call.finish().await?;
        assert_eq!(ex.error_code(), None, "{:?}", ex.error());
        assert_ne!(ex.error_code(), Some(REQUEST_FAILED));
    }
    let total = client
        .call_tool_structured(&pool.url(0), "get_counter", json!({}))
        .await?;
    assert_eq!(total["counter"], 20);
    Ok(())
}

#[tokio::test]
async fn a_request_cancelled_while_queued_never_runs() -> Result<()> {
    let pool = Pool::start(1, &[&["--max-concurrency", "1"]]).await?;
    let url = pool.url(0);
    let client = McpClient::initialize(&url).await?;

    let busy = client
        .send(
            &url,
            "tools/call",
            json!({"name": "sleep_ms", "arguments": {"ms": 1500}}),
        )
        .await?;
    // Queued behind the sleep: the only slot is taken.
    let id = json!(client.next_request_id());
    let msg = json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "increment_counter", "arguments": {}},
    });
    let mut queued = client.send_message(&url, &msg, Some(id.clone())).await?;
    let cancel = client
        .notify(
            &url,
            "notifications/cancelled",
            json!({"requestId": id, "reason": "changed my mind"}),
        )
        .await?;
    assert_eq!(cancel.status, StatusCode::ACCEPTED);

    let ex = busy.finish().await?;
    assert_eq!(ex.error_code(), None, "{:?}", ex.error());
    // The cancelled request's stream ends without a response.
    while let Some(ev) = queued.next_event(EVENT_TIMEOUT).await? {
        assert!(
            ev.json.as_ref().is_none_or(|j| j.get("result").is_none()),
            "cancelled request answered: {ev:?}"
        );
    }
    assert!(queued.final_response().is_none());
    let counter = client
        .call_tool_structured(&url, "get_counter", json!({}))
        .await?;
    assert_eq!(counter["counter"], 0, "the cancelled increment ran");
    Ok(())
}

#[tokio::test]
async fn a_request_past_its_deadline_is_stopped_and_frees_its_slot() -> Result<()> {
    let pool = Pool::start(1, &[&["--max-concurrency", "1", "--deadline-secs", "2"]]).await?;
    let url = pool.url(0);
    let client = McpClient::initialize(&url).await?;

    let started = Instant::now();
    let ex = client
        .call_tool(&url, "sleep_ms", json!({"ms": 8000}))
        .await?;
    assert_eq!(
        ex.error_code(),
        Some(DEADLINE_EXCEEDED),
        "{:?}",
        ex.response()
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(7), "stopped after {took:?}");

    // The one slot is free again.
    let echo = client
        .call_tool_structured(&url, "echo", json!({"text": "after"}))
        .await?;
    assert_eq!(echo["text"], "after");

    // A server→client request the client never answers ends the same way.
    let mut call = client
        .send(
            &url,
            "tools/call",
            json!({"name": "test_sampling", "arguments": {"prompt": "hi"}}),
        )
        .await?;
    let request = call.next_request(EVENT_TIMEOUT).await?;
    assert_eq!(request["method"], "sampling/createMessage");
    let ex = call.finish().await?;
    assert_eq!(
        ex.error_code(),
        Some(DEADLINE_EXCEEDED),
        "{:?}",
        ex.response()
    );
    Ok(())
}

#[tokio::test]
async fn a_workers_readiness_follows_nats_and_drain() -> Result<()> {
    let mut nats = NatsServer::start().await?;
    let mut worker = Worker::builder(&nats.url())
        .instance_id("wk-1")
        .start()
        .await?;
    let http = jetway_tests::mcp::http_client();
    let ready = format!("{}/readyz", worker.base_url());
    let status = |url: String| {
        let http = http.clone();
        async move { Ok::<_, anyhow::Error>(http.get(url).send().await?.status()) }
    };
    assert_eq!(status(ready.clone()).await?, StatusCode::OK);
    let health = http
        .get(format!("{}/healthz", worker.base_url()))
        .send()
        .await?;
    assert_eq!(health.status(), StatusCode::OK);
    let body: Value = health.json().await?;
    assert_eq!(body["instance"], "wk-1");

    nats.kill().await?;
    eventually(Duration::from_secs(20), || async {
        Ok::<bool, anyhow::Error>(status(ready.clone()).await? == StatusCode::SERVICE_UNAVAILABLE)
    })
    .await
    .context("readiness did not turn 503 with NATS down")?;
    nats.restart().await?;
    eventually(Duration::from_secs(30), || async {
        Ok::<bool, anyhow::Error>(status(ready.clone()).await? == StatusCode::OK)
    })
    .await
    .context("readiness did not come back with NATS")?;

    worker
        .process()
        .signal(rustix::process::Signal::TERM)
        .context("SIGTERM")?;
    eventually(Duration::from_secs(10), || async {
        // Draining answers 503, then the port closes as the worker exits.
        Ok::<bool, anyhow::Error>(
            status(ready.clone())
                .await
                .map_or(true, |s| s == StatusCode::SERVICE_UNAVAILABLE),
        )
    })
    .await?;
    Ok(())
}
