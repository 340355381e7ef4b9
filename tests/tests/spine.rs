//! The spine of Jetway: what an MCP client relies on when one session is
//! served by several gateway replicas and several workers at once.
//!
//! Every test starts its own nats-server, two gateways (`gw-a`, `gw-b`) and
//! two or three workers (`wk-1`, …), and sends the requests of one session
//! alternately to the two gateways: nothing may depend on which replica
//! served the previous request.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use jetway_tests::{Exchange, Gateway, McpClient, NatsServer, Worker};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Response header naming the gateway that served a request.
const INSTANCE_HEADER: &str = "jetway-instance";

/// Bound on waiting for one event of an SSE stream.
const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

/// The tools of the demo tool set.
const DEMO_TOOLS: [&str; 9] = [
    "increment_counter",
    "get_counter",
    "add_note",
    "list_notes",
    "get_server_info",
    "get_status",
    "analyze_data",
    "watch_counter",
    "resume_session",
];

#[tokio::test]
async fn sequential_increments_count_up_in_order_across_gateways() -> Result<()> {
    let c = Cluster::start(2).await?;
    let client = McpClient::initialize(&c.url(0)).await?;

    let mut counters = Vec::new();
    let mut served_by = Vec::new();
    for i in 0..10 {
        let ex = client
            .call_tool(&c.url(i), "increment_counter", json!({}))
            .await?;
        assert_eq!(ex.status, StatusCode::OK, "call {i}");
        let out = ex.structured_content()?;
        c.assert_worker(&out["instance"]);
        counters.push(out["counter"].as_i64().context("counter is an integer")?);
        served_by.push(ex.header(INSTANCE_HEADER).unwrap_or_default().to_owned());
    }

    assert_eq!(counters, (1..=10).collect::<Vec<i64>>());
    let expected_gateways: Vec<String> = (0..10).map(|i| c.gateway_id(i).to_owned()).collect();
    assert_eq!(served_by, expected_gateways);
    Ok(())
}

#[tokio::test]
async fn concurrent_increments_each_return_a_distinct_count() -> Result<()> {
    const CALLS: usize = 50;
    let c = Cluster::start(2).await?;
    let client = McpClient::initialize(&c.url(0)).await?;

    let calls = (0..CALLS).map(|i| {
        let client = client.clone();
        let url = c.url(i);
        async move {
            client
                .call_tool_structured(&url, "increment_counter", json!({}))
                .await
                .with_context(|| format!("call {i}"))
        }
    });
    let results = futures::future::try_join_all(calls).await?;

    let mut counters = results
        .iter()
        .map(|r| r["counter"].as_i64().context("counter is an integer"))
        .collect::<Result<Vec<i64>>>()?;
    counters.sort_unstable();
    assert_eq!(counters, (1..=CALLS as i64).collect::<Vec<i64>>());

    let out = client
        .call_tool_structured(&c.url(1), "get_counter", json!({}))
        .await?;
    assert_eq!(out["counter"], json!(CALLS));
    Ok(())
}

#[tokio::test]
async fn analyze_data_streams_progress_and_logs_before_its_result() -> Result<()> {
    let c = Cluster::start(2).await?;
    let client = McpClient::initialize(&c.url(0)).await?;

    let ex = analyze(&client, &c.url(1), 3, "tok-1").await?;
    assert_eq!(ex.status, StatusCode::OK);
    assert!(ex.is_sse(), "content-type {:?}", ex.content_type());

    // Priming event first: an id and no data.
    let first = ex.events.first().context("no events")?;
    assert!(first.id.is_some(), "priming event has no id: {first:?}");
    assert_eq!(first.data, "", "priming event carries data: {first:?}");
    assert_event_ids_distinct_and_increasing(&ex)?;

    // The final response comes last.
    let last = ex.events.last().context("no events")?;
    assert_eq!(
        last.json.as_ref(),
        Some(ex.response()?),
        "final response is not last"
    );
    let result = ex.structured_content()?;
    let worker = result["instance"]
        .as_str()
        .context("instance is a string")?;
    c.assert_worker(&result["instance"]);
    assert_eq!(
        result,
        &json!({"items_processed": 3, "total_score": 9.0, "instance": worker}),
        "items 1..=3 score 1.5·i: 1.5 + 3 + 4.5"
    );

    // Progress and info logs, in the order the tool sent them.
    assert_eq!(
        timeline(&ex),
        [
            format!("info: Starting analysis of 3 items on {worker}"),
            "progress 0/3 tok-1".into(),
            "progress 1/3 tok-1".into(),
            "progress 2/3 tok-1".into(),
            "progress 3/3 tok-1".into(),
            "info: Aggregating results".into(),
            "info: Analysis complete: processed 3 items, total score=9.0".into(),
            "response".into(),
        ]
    );
    let debug = log_messages(&ex, "debug");
    for expected in [
        "Processed item 1: score=1.5",
        "Processed item 2: score=3.0",
        "Processed item 3: score=4.5",
    ] {
        assert!(
            debug.contains(&expected.to_owned()),
            "{expected:?} in debug logs: {debug:?}"
        );
    }
    assert!(
        !debug.iter().any(|m| m.starts_with("Processed item 0")),
        "items are numbered from 1: {debug:?}"
    );
    // The result is also the session's `analysis_result`, read through the
    // other gateway.
    assert_eq!(
        summary_of(&client, &c.url(0)).await?["analysis_result"],
        json!({"items_processed": 3, "total_score": 9.0})
    );

    // Raising the level on the other gateway silences debug logs.
    let set = client
        .request(&c.url(0), "logging/setLevel", json!({"level": "info"}))
        .await?;
    assert_eq!(set.result()?, &json!({}));

    let ex = analyze(&client, &c.url(1), 1, "tok-2").await?;
    let worker = ex.structured_content()?["instance"]
        .as_str()
        .context("instance is a string")?
        .to_owned();
    assert_eq!(log_messages(&ex, "debug"), Vec::<String>::new());
    assert_eq!(
        timeline(&ex),
        [
            format!("info: Starting analysis of 1 items on {worker}"),
            "progress 0/1 tok-2".into(),
            "progress 1/1 tok-2".into(),
            "info: Aggregating results".into(),
            "info: Analysis complete: processed 1 items, total score=1.5".into(),
            "response".into(),
        ]
    );
    assert_eq!(
        summary_of(&client, &c.url(0)).await?["analysis_result"],
        json!({"items_processed": 1, "total_score": 1.5})
    );
    Ok(())
}

#[tokio::test]
async fn sessions_keep_separate_counters_and_notes() -> Result<()> {
    let c = Cluster::start(2).await?;
    let a = McpClient::initialize(&c.url(0)).await?;
    let b = McpClient::initialize(&c.url(1)).await?;
    assert_ne!(a.session_id(), b.session_id());

    for i in 0..3 {
        let out = a
            .call_tool_structured(&c.url(i), "increment_counter", json!({}))
            .await?;
        assert_eq!(out["counter"], i + 1, "A's increment {i}");
    }
    let out = b
        .call_tool_structured(&c.url(0), "increment_counter", json!({}))
        .await?;
    assert_eq!(out["counter"], 1);
    assert_eq!(counter(&a, &c.url(1)).await?, 3);
    assert_eq!(counter(&b, &c.url(0)).await?, 1);

    for (i, note) in ["first", "second", "third"].into_iter().enumerate() {
        let out = a
            .call_tool_structured(&c.url(i), "add_note", json!({"note": note}))
            .await?;
        assert_eq!(out["notes_count"], i + 1, "after adding {note:?} to A");
    }
    let out = b
        .call_tool_structured(&c.url(1), "add_note", json!({"note": "only-b"}))
        .await?;
    assert_eq!(out["notes_count"], 1);

    assert_eq!(notes(&a, &c.url(0)).await?, ["first", "second", "third"]);
    assert_eq!(notes(&b, &c.url(1)).await?, ["only-b"]);
    Ok(())
}

#[tokio::test]
async fn deleted_session_is_gone_on_every_gateway() -> Result<()> {
    let c = Cluster::start(2).await?;
    let client = McpClient::initialize(&c.url(0)).await?;
    let other = McpClient::initialize(&c.url(1)).await?;
    for i in 0..2 {
        assert_eq!(ping_status(&client, &c.url(i)).await?, StatusCode::OK);
    }
    let mut get = client.get_stream(&c.url(1), None).await?;
    assert_eq!(get.status, StatusCode::OK);
    let priming = get
        .next_event(EVENT_TIMEOUT)
        .await?
        .context("GET stream ended before its priming event")?;
    assert_eq!(priming.data, "", "priming event: {priming:?}");

    assert_eq!(client.delete(&c.url(0)).await?, StatusCode::OK);

    for i in 0..2 {
        assert_eq!(
            ping_status(&client, &c.url(i)).await?,
            StatusCode::NOT_FOUND,
            "request to {} after DELETE",
            c.gateway_id(i)
        );
        let ex = client
            .call_tool(&c.url(i), "get_counter", json!({}))
            .await?;
        assert_eq!(
            ex.status,
            StatusCode::NOT_FOUND,
            "tools/call to {}",
            c.gateway_id(i)
        );
    }
    // The open GET stream on the other gateway ends.
    get.expect_end(EVENT_TIMEOUT).await?;
    for i in [1, 0] {
        assert_eq!(
            client.delete(&c.url(i)).await?,
            StatusCode::NOT_FOUND,
            "second DELETE at {}",
            c.gateway_id(i)
        );
    }
    // Other sessions are unaffected.
    for i in 0..2 {
        assert_eq!(ping_status(&other, &c.url(i)).await?, StatusCode::OK);
    }
    Ok(())
}

#[tokio::test]
async fn sampling_request_is_answered_through_the_other_gateway() -> Result<()> {
    let c = Cluster::start(2).await?;
    let client = McpClient::initialize(&c.url(0)).await?;

    let mut call = client
        .send(
            &c.url(0),
            "tools/call",
            json!({"name": "test_sampling", "arguments": {"prompt": "hi"}}),
        )
        .await?;
    assert_eq!(call.status, StatusCode::OK);
    assert_eq!(call.header(INSTANCE_HEADER), Some(c.gateway_id(0)));

    let request = call.next_request(EVENT_TIMEOUT).await?;
    assert_eq!(request["method"], "sampling/createMessage");
    assert!(
        request["id"].is_string(),
        "server request id: {}",
        request["id"]
    );
    assert_eq!(
        request.pointer("/params/messages/0/content/text"),
        Some(&json!("hi"))
    );

    let answer = json!({
        "role": "assistant",
        "content": {"type": "text", "text": "pong"},
        "model": "m",
        "stopReason": "endTurn",
    });
    let ack = client.respond(&c.url(1), &request["id"], answer).await?;
    assert_eq!(ack.status, StatusCode::ACCEPTED);
    assert_eq!(ack.header(INSTANCE_HEADER), Some(c.gateway_id(1)));

    let ex = call.finish().await?;
    let result = ex.result()?;
    assert_eq!(
        result.pointer("/content/0/text"),
        Some(&json!("LLM response: pong")),
        "result: {result}"
    );
    assert_ne!(
        result.get("isError"),
        Some(&json!(true)),
        "result: {result}"
    );
    Ok(())
}

#[tokio::test]
async fn resource_updates_reach_the_get_stream_on_another_gateway() -> Result<()> {
    let c = Cluster::start(2).await?;
    let client = McpClient::initialize(&c.url(0)).await?;
    let session = client.session_id().context("no session id")?.to_owned();
    let uri = format!("resource://session/{session}/summary");

    let mut get = client.get_stream(&c.url(1), None).await?;
    assert_eq!(get.status, StatusCode::OK);
    assert!(get.is_sse(), "GET stream is not SSE");
    assert_eq!(get.header(INSTANCE_HEADER), Some(c.gateway_id(1)));

    let sub = client
        .request(&c.url(0), "resources/subscribe", json!({"uri": uri}))
        .await?;
    assert_eq!(sub.result()?, &json!({}));

    for n in 1..=2 {
        let url = c.url(n - 1);
        let out = client
            .call_tool_structured(&url, "increment_counter", json!({}))
            .await?;
        assert_eq!(out["counter"], n);

        let ev = get
            .next_message(EVENT_TIMEOUT)
            .await?
            .context("GET stream ended")?;
        assert!(ev.id.is_some(), "GET event without id: {ev:?}");
        assert_eq!(
            ev.json,
            Some(json!({
                "jsonrpc": "2.0",
                "method": "notifications/resources/updated",
                "params": {"uri": uri},
            }))
        );

        let read = client
            .request(&url, "resources/read", json!({"uri": uri}))
            .await?;
        let contents = &read.result()?["contents"];
        assert_eq!(contents[0]["uri"], uri.as_str());
        assert_eq!(contents[0]["mimeType"], "application/json");
        let text = contents[0]["text"].as_str().context("text contents")?;
        let summary: Value = serde_json::from_str(text).context("summary is JSON")?;
        assert_eq!(summary["counter"], n, "summary: {summary}");
        assert_eq!(summary["session_id"], session.as_str());
    }
    Ok(())
}

#[tokio::test]
async fn ping_and_tools_list_answer_on_both_gateways() -> Result<()> {
    let c = Cluster::start(2).await?;
    let client = McpClient::initialize(&c.url(0)).await?;

    for i in 0..2 {
        let ex = client.request(&c.url(i), "ping", Value::Null).await?;
        assert_eq!(ex.status, StatusCode::OK);
        assert_eq!(ex.result()?, &json!({}), "ping at {}", c.gateway_id(i));

        let ex = client.request(&c.url(i), "tools/list", json!({})).await?;
        let tools = ex.result()?["tools"]
            .as_array()
            .context("tools is an array")?;
        for name in DEMO_TOOLS {
            let tool = tools
                .iter()
                .find(|t| t["name"] == name)
                .with_context(|| format!("tool {name} missing from tools/list"))?;
            let description = tool["description"].as_str().unwrap_or_default();
            assert!(!description.is_empty(), "tool {name} has no description");
            assert!(
                tool["inputSchema"].is_object(),
                "tool {name} has no input schema"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn resume_session_copies_state_from_an_earlier_session() -> Result<()> {
    let c = Cluster::start(3).await?;
    let a = McpClient::initialize(&c.url(0)).await?;
    for i in 0..2 {
        let out = a
            .call_tool_structured(&c.url(i), "increment_counter", json!({}))
            .await?;
        assert_eq!(out["counter"], i + 1, "A's increment {i}");
    }
    a.call_tool_structured(&c.url(0), "add_note", json!({"note": "from A"}))
        .await?;
    let a_id = a.session_id().context("no session id")?.to_owned();

    let b = McpClient::initialize(&c.url(1)).await?;
    let out = b
        .call_tool_structured(&c.url(1), "resume_session", json!({"old_session_id": a_id}))
        .await?;
    assert_eq!(out["status"], "resumed", "{out}");
    let keys = out["keys_copied"].as_u64().context("keys_copied")?;
    assert!(keys >= 2, "keys_copied = {keys}");

    assert_eq!(counter(&b, &c.url(0)).await?, 2);
    assert_eq!(notes(&b, &c.url(1)).await?, ["from A"]);

    // A copy, not a link: B's changes stay in B.
    let out = b
        .call_tool_structured(&c.url(0), "increment_counter", json!({}))
        .await?;
    assert_eq!(out["counter"], 3);
    assert_eq!(counter(&a, &c.url(1)).await?, 2);

    let b_id = b.session_id().context("no session id")?.to_owned();
    let out = b
        .call_tool_structured(&c.url(1), "resume_session", json!({"old_session_id": b_id}))
        .await?;
    assert_eq!(out, json!({"status": "same_session"}));
    Ok(())
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A nats-server, two gateways and some workers, torn down in reverse order.
struct Cluster {
    gateways: [Gateway; 2],
    workers: Vec<Worker>,
    _nats: NatsServer,
}

impl Cluster {
    /// Starts nats-server, gateways `gw-a` and `gw-b`, and workers
    /// `wk-1` … `wk-<workers>`.
    async fn start(workers: usize) -> Result<Self> {
        let nats = NatsServer::start().await?;
        let url = nats.url();
        let (a, b) = tokio::try_join!(
            Gateway::builder(&url).instance_id("gw-a").start(),
            Gateway::builder(&url).instance_id("gw-b").start(),
        )?;
        let workers = futures::future::try_join_all(
            (1..=workers).map(|n| Worker::builder(&url).instance_id(format!("wk-{n}")).start()),
        )
        .await?;
        Ok(Self {
            gateways: [a, b],
            workers,
            _nats: nats,
        })
    }

    /// The MCP endpoint for request `i`: gw-a, gw-b, gw-a, …
    fn url(&self, i: usize) -> String {
        self.gateways[i % 2].mcp_url()
    }

    /// The instance id of the gateway behind [`Cluster::url`]`(i)`.
    fn gateway_id(&self, i: usize) -> &str {
        self.gateways[i % 2].instance_id()
    }

    /// Asserts that `instance` names one of this cluster's workers.
    #[track_caller]
    fn assert_worker(&self, instance: &Value) {
        assert!(
            self.workers
                .iter()
                .any(|w| instance.as_str() == Some(w.instance_id())),
            "instance {instance} is not one of the workers"
        );
    }
}

/// `tools/call analyze_data` with a progress token.
async fn analyze(client: &McpClient, url: &str, items: u64, token: &str) -> Result<Exchange> {
    client
        .request(
            url,
            "tools/call",
            json!({
                "name": "analyze_data",
                "arguments": {"num_items": items},
                "_meta": {"progressToken": token},
            }),
        )
        .await
}

/// The session's counter, via `get_counter`.
async fn counter(client: &McpClient, url: &str) -> Result<i64> {
    let out = client
        .call_tool_structured(url, "get_counter", json!({}))
        .await?;
    out["counter"].as_i64().context("counter is an integer")
}

/// The session's notes, via `list_notes`.
async fn notes(client: &McpClient, url: &str) -> Result<Vec<String>> {
    let out = client
        .call_tool_structured(url, "list_notes", json!({}))
        .await?;
    serde_json::from_value(out["notes"].clone()).context("notes is a list of strings")
}

/// The session's summary resource (its state, as JSON), via `resources/read`.
async fn summary_of(client: &McpClient, url: &str) -> Result<Value> {
    let session = client.session_id().context("no session id")?;
    let uri = format!("resource://session/{session}/summary");
    let read = client
        .request(url, "resources/read", json!({"uri": uri}))
        .await?;
    let text = read.result()?["contents"][0]["text"]
        .as_str()
        .context("summary has text contents")?;
    serde_json::from_str(text).context("summary is JSON")
}

/// HTTP status of a `ping` in the client's session.
async fn ping_status(client: &McpClient, url: &str) -> Result<StatusCode> {
    Ok(client.request(url, "ping", Value::Null).await?.status)
}

/// The JSON messages of an exchange, one line each: `progress P/T TOKEN`,
/// `LEVEL: MSG` for logs, `response` for the final response, the method
/// for anything else. Debug logs are left out.
fn timeline(ex: &Exchange) -> Vec<String> {
    ex.messages()
        .into_iter()
        .filter(|m| m.pointer("/params/level") != Some(&json!("debug")))
        .map(|m| {
            let p = &m["params"];
            match m.get("method").and_then(Value::as_str) {
                Some("notifications/progress") => format!(
                    "progress {}/{} {}",
                    p["progress"].as_f64().unwrap_or(f64::NAN),
                    p["total"].as_f64().unwrap_or(f64::NAN),
                    p["progressToken"].as_str().unwrap_or("<no token>"),
                ),
                Some("notifications/message") => format!(
                    "{}: {}",
                    p["level"].as_str().unwrap_or("<no level>"),
                    p["data"]["msg"].as_str().unwrap_or("<no msg>"),
                ),
                Some(method) => method.to_owned(),
                None => "response".to_owned(),
            }
        })
        .collect()
}

/// The `data.msg` of the log notifications at `level`, in order.
fn log_messages(ex: &Exchange, level: &str) -> Vec<String> {
    ex.notifications()
        .into_iter()
        .filter(|m| m["method"] == "notifications/message" && m["params"]["level"] == level)
        .map(|m| m["params"]["data"]["msg"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// Every event has an id `<stream>-<sequence>`; all name the same stream and
/// the sequences strictly increase (so they are distinct and resumable).
fn assert_event_ids_distinct_and_increasing(ex: &Exchange) -> Result<()> {
    let ids = ex
        .events
        .iter()
        .map(|e| {
            e.id.clone()
                .with_context(|| format!("event without id: {e:?}"))
        })
        .collect::<Result<Vec<String>>>()?;
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "duplicate event ids: {ids:?}");
    let mut previous: Option<(&str, u64)> = None;
    for id in &ids {
        let (stream, seq) = id
            .rsplit_once('-')
            .with_context(|| format!("event id {id:?} is not <stream>-<sequence>"))?;
        let seq: u64 = seq
            .parse()
            .with_context(|| format!("event id {id:?} has no sequence"))?;
        if let Some((prev_stream, prev_seq)) = previous
            && (stream != prev_stream || seq <= prev_seq)
        {
            bail!("event ids out of order: {ids:?}");
        }
        previous = Some((stream, seq));
    }
    Ok(())
}
