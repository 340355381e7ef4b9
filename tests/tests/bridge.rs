//! The bridge: Jetway in front of real upstream MCP servers that know
//! nothing about it, over Streamable HTTP. Two gateways and two bridge
//! workers; requests alternate between the gateways.

use anyhow::{Context, Result};
use jetway_tests::{Gateway, McpClient, NatsServer, Upstream, Worker};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const EVENT_TIMEOUT: Duration = Duration::from_secs(30);
/// JSON-RPC error of an upstream that cannot be reached.
const SERVICE_UNAVAILABLE: i64 = -32001;

struct Bridged {
    nats: NatsServer,
    gateways: Vec<Gateway>,
    workers: Vec<Worker>,
}

impl Bridged {
    async fn start(upstream_url: &str, workers: usize, extra: &[&str]) -> Result<Self> {
        let nats = NatsServer::start().await?;
        let mut ws = Vec::new();
        for i in 0..workers {
            ws.push(
                Worker::builder(&nats.url())
                    .instance_id(format!("bridge-{}", i + 1))
                    .args(["--upstream-url", upstream_url])
                    .args(extra.iter().copied())
                    .start()
                    .await?,
            );
        }
        let mut gs = Vec::new();
        for i in 0..2 {
            gs.push(
                Gateway::builder(&nats.url())
                    .instance_id(format!("gw-{}", i + 1))
                    .start()
                    .await?,
            );
        }
        Ok(Self {
            nats,
            gateways: gs,
            workers: ws,
        })
    }

    fn url(&self, i: usize) -> String {
        self.gateways[i % 2].mcp_url()
    }
}

/// The progress values of the `notifications/progress` an exchange carried, in order.
fn progress_values(ex: &jetway_tests::Exchange) -> Vec<f64> {
    ex.notifications()
        .iter()
        .filter(|n| n["method"] == "notifications/progress")
        .filter_map(|n| n.pointer("/params/progress").and_then(Value::as_f64))
        .collect()
}

/// Two gateways on `nats`, for tests that alternate between them.
async fn two_gateways(nats: &NatsServer) -> Result<[Gateway; 2]> {
    Ok([
        Gateway::start(&nats.url()).await?,
        Gateway::start(&nats.url()).await?,
    ])
}

/// The tool names of a `tools/list` result.
fn tool_names(list: &Value) -> Result<Vec<&str>> {
    Ok(list["tools"]
        .as_array()
        .context("tools")?
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect())
}

/// `structuredContent.result` of a stateful-server tool call.
async fn tool(client: &McpClient, url: &str, name: &str, args: Value) -> Result<Value> {
    let out = client
        .call_tool_structured(url, name, args)
        .await
        .with_context(|| format!("{name} at {url}"))?;
    Ok(out.get("result").cloned().unwrap_or(out))
}

#[tokio::test]
async fn an_upstreams_session_state_holds_across_gateways() -> Result<()> {
    let upstream = Upstream::stateful(&[]).await?;
    let jw = Bridged::start(&upstream.url(), 2, &[]).await?;
    let client = McpClient::initialize(&jw.url(0)).await?;
    let info = client.initialize_result().context("initialize result")?;
    assert!(
        info.pointer("/capabilities/tools").is_some(),
        "the upstream's capabilities reach the client: {info}"
    );

    tool(
        &client,
        &jw.url(0),
        "remember",
        json!({"key": "k", "value": "v1"}),
    )
    .await?;
    assert_eq!(
        tool(&client, &jw.url(1), "recall", json!({"key": "k"})).await?,
        "v1"
    );
    for n in 1..=6 {
        assert_eq!(
            tool(&client, &jw.url(n), "count", json!({})).await?,
            n as i64
        );
    }
    // One upstream session served every call, whichever gateway and worker.
    let first = client
        .call_tool_structured(&jw.url(0), "whoami", json!({}))
        .await?;
    let again = client
        .call_tool_structured(&jw.url(1), "whoami", json!({}))
        .await?;
    assert!(first["session_id"].is_string(), "{first}");
    assert_eq!(first["session_id"], again["session_id"]);

    // Another Jetway session is another upstream session.
    let other = McpClient::initialize(&jw.url(1)).await?;
    assert_eq!(tool(&other, &jw.url(0), "count", json!({})).await?, 1);
    assert_eq!(
        tool(&other, &jw.url(1), "recall", json!({"key": "k"})).await?,
        Value::Null
    );
    Ok(())
}

#[tokio::test]
async fn a_restarted_upstream_is_reinitialized_and_the_client_never_sees_404() -> Result<()> {
    let mut upstream = Upstream::stateful(&[]).await?;
    let jw = Bridged::start(&upstream.url(), 2, &[]).await?;
    let client = McpClient::initialize(&jw.url(0)).await?;
    assert_eq!(tool(&client, &jw.url(0), "count", json!({})).await?, 1);
    let before = client
        .call_tool_structured(&jw.url(1), "whoami", json!({}))
        .await?;
    // A call as usual, for comparison (printed, not asserted).
    let started = Instant::now();
    tool(&client, &jw.url(1), "recall", json!({"key": "k"})).await?;
    let usual = started.elapsed();

    upstream.restart().await?;
    // The upstream lost its session (and what it kept in it); the Jetway
    // session goes on with a new upstream session.
    let started = Instant::now();
    let ex = client.call_tool(&jw.url(1), "count", json!({})).await?;
    eprintln!(
        "bridge timing: first call after the upstream restart (404, re-initialize, retry): {:?}; \
         a call before it: {usual:?}",
        started.elapsed()
    );
    assert_eq!(ex.status, reqwest::StatusCode::OK);
    assert_eq!(ex.error_code(), None, "{:?}", ex.response());
    assert_eq!(ex.structured_content()?["result"], 1);
    let after = client
        .call_tool_structured(&jw.url(0), "whoami", json!({}))
        .await?;
    assert_ne!(before["session_id"], after["session_id"]);
    assert_ne!(before["pid"], after["pid"]);
    assert_eq!(tool(&client, &jw.url(1), "count", json!({})).await?, 2);
    Ok(())
}

#[tokio::test]
async fn a_stateless_upstream_works_without_upstream_sessions() -> Result<()> {
    let upstream = Upstream::stateful(&["--stateless"]).await?;
    let jw = Bridged::start(&upstream.url(), 1, &[]).await?;
    let client = McpClient::initialize(&jw.url(0)).await?;
    let who = client
        .call_tool_structured(&jw.url(1), "whoami", json!({}))
        .await?;
    assert_eq!(who["stateless"], true, "{who}");
    assert_eq!(tool(&client, &jw.url(0), "count", json!({})).await?, 1);
    Ok(())
}

#[tokio::test]
async fn an_unreachable_upstream_gets_an_error_in_bounded_time() -> Result<()> {
    // Nothing listens on this port.
    let port = jetway_tests::free_port()?;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let jw = Bridged::start(&url, 1, &["--upstream-unreachable-secs", "2"]).await?;
    let started = Instant::now();
    let mut client = McpClient::new();
    let ex = client
        .request(
            &jw.url(0),
            "initialize",
            jetway_tests::mcp::default_initialize_params(),
        )
        .await?;
    assert_eq!(
        ex.error_code(),
        Some(SERVICE_UNAVAILABLE),
        "{:?}",
        ex.response()
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    client.set_session_id(None);
    Ok(())
}

/// `v` with the clock times the reference server puts into its dynamic
/// resources (`created at 3:29:24 AM`) blanked: the two calls differ there.
fn without_times(v: &Value) -> Value {
    match v {
        Value::String(s) => match s.find("created at ") {
            Some(at) => Value::from(format!("{}created at <time>", &s[..at])),
            None => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(without_times).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), without_times(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Calls `method` on a session of the reference server directly and through
/// Jetway, and returns both results (clock times blanked).
async fn both(
    direct: &McpClient,
    direct_url: &str,
    bridged: &McpClient,
    bridged_url: &str,
    method: &str,
    params: Value,
) -> Result<(Value, Value)> {
    let d = direct.request(direct_url, method, params.clone()).await?;
    let b = bridged.request(bridged_url, method, params).await?;
    Ok((without_times(d.result()?), without_times(b.result()?)))
}

#[tokio::test]
async fn the_reference_server_answers_the_same_through_jetway() -> Result<()> {
    let upstream = Upstream::everything().await?;
    let jw = Bridged::start(&upstream.url(), 2, &[]).await?;
    let direct = McpClient::initialize(&upstream.url()).await?;
    let bridged = McpClient::initialize(&jw.url(0)).await?;

    let (d, b) = both(
        &direct,
        &upstream.url(),
        &bridged,
        &jw.url(1),
        "tools/list",
        json!({}),
    )
    .await?;
    assert_eq!(d, b, "tools/list");
    let tools = tool_names(&d)?;
    assert!(
        tools.contains(&"echo") && tools.contains(&"get-sum"),
        "{tools:?}"
    );

    let calls = [
        ("echo", json!({"message": "hello"})),
        ("get-sum", json!({"a": 2, "b": 40})),
        ("get-tiny-image", json!({})),
        ("get-structured-content", json!({"location": "New York"})),
        (
            "get-annotated-message",
            json!({"messageType": "error", "includeImage": false}),
        ),
        (
            "get-resource-reference",
            json!({"resourceType": "Text", "resourceId": 1}),
        ),
        ("get-resource-links", json!({"count": 2})),
    ];
    for (i, (name, args)) in calls.iter().enumerate() {
        let params = json!({"name": name, "arguments": args});
        let (d, b) = both(
            &direct,
            &upstream.url(),
            &bridged,
            &jw.url(i),
            "tools/call",
            params,
        )
        .await?;
        assert_eq!(d, b, "tools/call {name}");
    }

    for (i, method) in ["resources/list", "resources/templates/list", "prompts/list"]
        .into_iter()
        .enumerate()
    {
        let (d, b) = both(
            &direct,
            &upstream.url(),
            &bridged,
            &jw.url(i),
            method,
            json!({}),
        )
        .await?;
        assert_eq!(d, b, "{method}");
    }
    let reads = [
        (
            "resources/read",
            json!({"uri": "demo://resource/static/document/architecture.md"}),
        ),
        (
            "resources/read",
            json!({"uri": "demo://resource/dynamic/text/1"}),
        ),
        ("prompts/get", json!({"name": "simple-prompt"})),
        (
            "prompts/get",
            json!({"name": "args-prompt", "arguments": {"city": "Paris", "state": "IDF"}}),
        ),
        (
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "completable-prompt"},
                   "argument": {"name": "department", "value": "E"}}),
        ),
        ("ping", json!({})),
    ];
    for (i, (method, params)) in reads.iter().enumerate() {
        let (d, b) = both(
            &direct,
            &upstream.url(),
            &bridged,
            &jw.url(i),
            method,
            params.clone(),
        )
        .await?;
        assert_eq!(d, b, "{method} {params}");
    }
    Ok(())
}

#[tokio::test]
async fn the_reference_servers_progress_and_sampling_pass_through() -> Result<()> {
    let upstream = Upstream::everything().await?;
    let jw = Bridged::start(&upstream.url(), 2, &[]).await?;
    let client = McpClient::initialize(&jw.url(0)).await?;

    // Progress, on the request's own stream, before its result.
    let ex = client
        .request(
            &jw.url(1),
            "tools/call",
            json!({"name": "trigger-long-running-operation",
                   "arguments": {"duration": 1, "steps": 3},
                   "_meta": {"progressToken": "p1"}}),
        )
        .await?;
    let progress = progress_values(&ex);
    assert_eq!(progress, vec![1.0, 2.0, 3.0], "{:?}", ex.notifications());
    assert!(ex.result().is_ok(), "{:?}", ex.response());

    // Sampling: the upstream asks the client; the answer goes back through
    // the other gateway.
    let mut call = client
        .send(
            &jw.url(0),
            "tools/call",
            json!({"name": "trigger-sampling-request", "arguments": {"prompt": "hi", "maxTokens": 10}}),
        )
        .await?;
    let request = call.next_request(EVENT_TIMEOUT).await?;
    assert_eq!(request["method"], "sampling/createMessage");
    let answer = json!({
        "role": "assistant",
        "content": {"type": "text", "text": "pong from the client"},
        "model": "m",
        "stopReason": "endTurn",
    });
    let ack = client.respond(&jw.url(1), &request["id"], answer).await?;
    assert_eq!(ack.status, reqwest::StatusCode::ACCEPTED);
    let ex = call.finish().await?;
    let text = ex.result()?.to_string();
    assert!(text.contains("pong from the client"), "{text}");
    Ok(())
}

/// A long call on the reference server (`steps` progress notifications
/// over `secs` seconds, then the result), returned once its first
/// progress arrived.
async fn long_call(
    client: &McpClient,
    url: &str,
    secs: u64,
    steps: u64,
) -> Result<jetway_tests::ResponseStream> {
    let mut call = client
        .send(
            url,
            "tools/call",
            json!({"name": "trigger-long-running-operation",
                   "arguments": {"duration": secs, "steps": steps},
                   "_meta": {"progressToken": "long"}}),
        )
        .await?;
    // Started: its first progress is on the stream.
    let first = call
        .next_message(EVENT_TIMEOUT)
        .await?
        .context("a first event")?;
    assert_eq!(first.progress(), Some(1.0), "{first:?}");
    Ok(call)
}

#[tokio::test]
async fn a_bridge_worker_killed_mid_call_is_replaced_and_the_call_answers_once() -> Result<()> {
    let upstream = Upstream::everything().await?;
    let mut jw = Bridged::start(&upstream.url(), 1, &[]).await?;
    let client = McpClient::initialize(&jw.url(0)).await?;

    let mut call = long_call(&client, &jw.url(0), 3, 3).await?;
    // A second bridge worker is ready; the one running the call dies.
    let second = Worker::builder(&jw.nats.url())
        .instance_id("bridge-2")
        .args(["--upstream-url", upstream.url().as_str()])
        .start()
        .await?;
    jw.workers[0].kill().await?;
    let killed = Instant::now();
    jw.workers.push(second);

    // The re-run's first progress comes 1 s into it.
    let rerun = loop {
        let ev = call
            .next_message(Duration::from_secs(60))
            .await?
            .context("the call's stream ended")?;
        if ev.progress() == Some(1.0) {
            break killed.elapsed();
        }
    };
    let ex = call.finish_within(Duration::from_secs(60)).await?;
    eprintln!(
        "bridge timing: bridge worker SIGKILL → the re-run's first progress (1 s into it): {rerun:?}; \
         → its result (a 3 s call): {:?}",
        killed.elapsed()
    );
    let finals: Vec<&Value> = ex
        .messages()
        .into_iter()
        .filter(|m| m.get("result").is_some() || m.get("error").is_some())
        .collect();
    assert_eq!(finals.len(), 1, "{finals:?}");
    assert!(ex.result().is_ok(), "{:?}", ex.response());
    // The re-run on the second worker reported its own progress, to the end.
    let progress: Vec<f64> = ex
        .events
        .iter()
        .filter_map(jetway_tests::SseEvent::progress)
        .collect();
    assert_eq!(progress.last(), Some(&3.0), "{progress:?}");
    Ok(())
}

#[tokio::test]
async fn an_upstream_killed_mid_call_ends_the_call_with_an_error_not_a_hang() -> Result<()> {
    let mut upstream = Upstream::everything().await?;
    let jw = Bridged::start(&upstream.url(), 1, &["--upstream-unreachable-secs", "2"]).await?;
    let client = McpClient::initialize(&jw.url(0)).await?;

    let call = long_call(&client, &jw.url(0), 3, 3).await?;
    upstream.kill().await?;
    let started = Instant::now();
    let ex = call.finish_within(Duration::from_secs(60)).await?;
    assert_eq!(
        ex.error_code(),
        Some(SERVICE_UNAVAILABLE),
        "{:?}",
        ex.response()
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn a_gateway_killed_mid_stream_resumes_on_the_other_with_every_event_once() -> Result<()> {
    let upstream = Upstream::everything().await?;
    let mut jw = Bridged::start(&upstream.url(), 1, &[]).await?;
    let client = McpClient::initialize(&jw.url(0)).await?;

    let call = long_call(&client, &jw.url(0), 2, 4).await?;
    let resume_from = call.last_event_id().context("an event id")?.to_owned();
    jw.gateways[0].kill().await?;

    let url = jw.url(1);
    let mut resumed = client.get_stream(&url, Some(&resume_from)).await?;
    assert_eq!(resumed.status, reqwest::StatusCode::OK);
    let mut progress = vec![1.0];
    let mut answer = None;
    while let Some(ev) = resumed.next_event(EVENT_TIMEOUT).await? {
        if let Some(p) = ev.progress() {
            progress.push(p);
        }
        if let Some(m) = ev.json.as_ref().filter(|m| m.get("result").is_some()) {
            answer = Some(m.clone());
        }
    }
    assert_eq!(progress, vec![1.0, 2.0, 3.0, 4.0]);
    let answer = answer.context("the result after the resume")?;
    assert!(
        answer
            .to_string()
            .contains("Long running operation completed"),
        "{answer}"
    );
    Ok(())
}

#[tokio::test]
async fn a_stdio_upstream_serves_every_session_through_its_process_pool() -> Result<()> {
    let command = jetway_tests::upstream::everything_stdio_command()?;
    let direct_server = Upstream::everything().await?;
    let nats = NatsServer::start().await?;
    let mut workers = Vec::new();
    for i in 0..2 {
        let id = format!("stdio-bridge-{}", i + 1);
        workers.push(stdio_worker(&nats, &id, &command, &["--upstream-processes", "2"]).await?);
    }
    let gateways = two_gateways(&nats).await?;
    let url = |i: usize| gateways[i % 2].mcp_url();

    let direct = McpClient::initialize(&direct_server.url()).await?;
    let a = McpClient::initialize(&url(0)).await?;
    let b = McpClient::initialize(&url(1)).await?;
    let info = a.initialize_result().context("initialize result")?;
    assert!(info.pointer("/capabilities/tools").is_some(), "{info}");

    let listed = a.request(&url(1), "tools/list", json!({})).await?;
    let names = tool_names(listed.result()?)?;
    assert!(
        names.contains(&"echo") && names.contains(&"get-sum"),
        "{names:?}"
    );

    // The same answers as the same server over HTTP, for both sessions, on
    // both gateways.
    let calls = [
        ("echo", json!({"message": "over stdio"})),
        ("get-sum", json!({"a": 1, "b": 2})),
        ("get-structured-content", json!({"location": "Chicago"})),
    ];
    for (i, (name, args)) in calls.iter().enumerate() {
        let params = json!({"name": name, "arguments": args});
        let d = direct
            .request(&direct_server.url(), "tools/call", params.clone())
            .await?;
        for (client, gw) in [(&a, i), (&b, i + 1)] {
            let got = client
                .request(&url(gw), "tools/call", params.clone())
                .await?;
            assert_eq!(
                without_times(d.result()?),
                without_times(got.result()?),
                "{name}"
            );
        }
    }

    // Progress and sampling pass through the process too.
    let ex = a
        .request(
            &url(0),
            "tools/call",
            json!({"name": "trigger-long-running-operation",
                   "arguments": {"duration": 1, "steps": 2},
                   "_meta": {"progressToken": 7}}),
        )
        .await?;
    let progress = progress_values(&ex);
    assert_eq!(progress, vec![1.0, 2.0]);
    let mut call = b
        .send(
            &url(1),
            "tools/call",
            json!({"name": "trigger-sampling-request", "arguments": {"prompt": "hi", "maxTokens": 5}}),
        )
        .await?;
    let request = call.next_request(EVENT_TIMEOUT).await?;
    assert_eq!(request["method"], "sampling/createMessage");
    let answer = json!({"role": "assistant", "content": {"type": "text", "text": "stdio pong"},
                        "model": "m", "stopReason": "endTurn"});
    b.respond(&url(0), &request["id"], answer).await?;
    let ex = call.finish().await?;
    assert!(
        ex.result()?.to_string().contains("stdio pong"),
        "{:?}",
        ex.response()
    );
    Ok(())
}

/// Process ids of `pid`'s children (whichever of its threads started them).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out.sort_unstable();
    out
}

/// A bridge worker `id` in front of the stdio server `command`, with
/// `extra` flags.
async fn stdio_worker(
    nats: &NatsServer,
    id: &str,
    command: &str,
    extra: &[&str],
) -> Result<Worker> {
    Worker::builder(&nats.url())
        .instance_id(id)
        // Tells when a request went to another worker's per-session process.
        .env("RUST_LOG", "info,jetway_worker::bridge::owned=debug")
        .args(["--upstream-cmd", command])
        .args(extra.iter().copied())
        .start()
        .await
        .with_context(|| format!("bridge worker {id}"))
}

/// The command line of `tests/upstream/stateful_server.py` over stdio.
fn stateful_stdio_command() -> String {
    let server = jetway_tests::workspace_root().join(".local/upstreams/bin/stateful-server");
    format!("{} --stdio", server.display())
}

#[tokio::test]
async fn a_stdio_process_that_dies_mid_call_is_restarted_and_the_call_runs_again() -> Result<()> {
    let command = jetway_tests::upstream::everything_stdio_command()?;
    let nats = NatsServer::start().await?;
    let mut worker = stdio_worker(
        &nats,
        "stdio-bridge",
        &command,
        &["--upstream-processes", "1"],
    )
    .await?;
    let gateway = Gateway::start(&nats.url()).await?;
    let client = McpClient::initialize(&gateway.mcp_url()).await?;

    let call = long_call(&client, &gateway.mcp_url(), 2, 2).await?;
    let pid = worker.process().pid().context("worker pid")?;
    let upstream = children(pid);
    assert_eq!(upstream.len(), 1, "one upstream process: {upstream:?}");
    let killed = std::process::Command::new("kill")
        .args(["-9", &upstream[0].to_string()])
        .status()?;
    assert!(killed.success());

    let ex = call.finish_within(Duration::from_secs(60)).await?;
    assert!(ex.result().is_ok(), "{:?}", ex.response());
    let finals = ex
        .messages()
        .into_iter()
        .filter(|m| m.get("result").is_some() || m.get("error").is_some())
        .count();
    assert_eq!(finals, 1);
    // A new process serves what comes next.
    let again = children(pid);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_ne!(again, upstream);
    let echo = client
        .call_tool(&gateway.mcp_url(), "echo", json!({"message": "after"}))
        .await?;
    assert!(echo.result()?.to_string().contains("after"));
    Ok(())
}

#[tokio::test]
async fn the_reference_servers_resource_updates_reach_the_get_stream() -> Result<()> {
    let upstream = Upstream::everything().await?;
    let jw = Bridged::start(&upstream.url(), 2, &[]).await?;
    let client = McpClient::initialize(&jw.url(0)).await?;
    let mut get = client.get_stream(&jw.url(1), None).await?;
    assert_eq!(get.status, reqwest::StatusCode::OK);

    let uri = "demo://resource/static/document/architecture.md";
    let sub = client
        .request(&jw.url(0), "resources/subscribe", json!({"uri": uri}))
        .await?;
    assert!(sub.result().is_ok(), "{:?}", sub.response());
    let toggled = client
        .call_tool(&jw.url(1), "toggle-subscriber-updates", json!({}))
        .await?;
    assert!(toggled.result().is_ok(), "{:?}", toggled.response());

    // The upstream sends updates every 5 s on its own session stream, long
    // after the call that turned them on ended; a bridge worker relays them
    // to the Jetway session's GET stream.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut updates = 0;
    while updates < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = get
            .next_message(left)
            .await?
            .context("the GET stream ended before the updates")?;
        let m = ev.json.as_ref().context("a JSON event")?;
        if m["method"] == "notifications/resources/updated" {
            assert_eq!(m.pointer("/params/uri"), Some(&json!(uri)), "{m}");
            updates += 1;
        }
    }
    Ok(())
}

#[tokio::test]
async fn ending_a_jetway_session_ends_its_upstream_session() -> Result<()> {
    let upstream = Upstream::stateful(&[]).await?;
    let jw = Bridged::start(&upstream.url(), 2, &[]).await?;
    let ending = McpClient::initialize(&jw.url(0)).await?;
    let staying = McpClient::initialize(&jw.url(1)).await?;
    let stored = |client: McpClient, url: String| async move {
        let who = client
            .call_tool_structured(&url, "whoami", json!({}))
            .await?;
        who["stored_sessions"].as_i64().context("stored_sessions")
    };
    // Each keeps something in the upstream's per-session store.
    assert_eq!(tool(&ending, &jw.url(0), "count", json!({})).await?, 1);
    assert_eq!(tool(&staying, &jw.url(1), "count", json!({})).await?, 1);
    assert_eq!(stored(staying.clone(), jw.url(0)).await?, 2);

    assert_eq!(ending.delete(&jw.url(1)).await?, reqwest::StatusCode::OK);
    // The bridge worker listening to that session's upstream stream sees it
    // end within a renewal and DELETEs the upstream session.
    jetway_tests::eventually(Duration::from_secs(20), || {
        let (client, url) = (staying.clone(), jw.url(0));
        async move { anyhow::Ok(stored(client, url).await? == 1) }
    })
    .await
    .context("the upstream still holds the ended session")?;
    Ok(())
}

/// `roots/list` results naming `names` under a directory of this session
/// (its id is random, so no result here is one the upstream could know).
fn roots(client: &McpClient, names: &[&str]) -> Result<Value> {
    let session = client.session_id().context("a session id")?;
    let roots: Vec<Value> = names
        .iter()
        .map(|n| json!({"uri": format!("file:///work/{session}/{n}"), "name": n}))
        .collect();
    Ok(json!({ "roots": roots }))
}

/// How server-everything's `get-roots-list` lists `roots` (a `roots/list` result).
fn listed_roots(roots: &Value) -> Result<String> {
    let roots = roots["roots"].as_array().context("roots")?;
    let lines: Vec<String> = roots
        .iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "{}. {}\n   URI: {}",
                i + 1,
                r["name"].as_str().unwrap_or_default(),
                r["uri"].as_str().unwrap_or_default()
            )
        })
        .collect();
    Ok(format!(
        "Current MCP Roots ({} total):\n\n{}\n\n",
        roots.len(),
        lines.join("\n\n")
    ))
}

/// The text of server-everything's `get-roots-list`.
async fn roots_list_text(client: &McpClient, url: &str) -> Result<String> {
    let ex = client.call_tool(url, "get-roots-list", json!({})).await?;
    ex.result()?
        .pointer("/content/0/text")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("get-roots-list text")
}

/// A message on the GET stream of [`answer_roots`]'s client.
struct Seen {
    message: Value,
    /// A `roots/list` the client answered.
    answered: bool,
}

/// A client that answers every `roots/list` its GET stream brings with the
/// roots `current` holds (none: it leaves it unanswered), posted through
/// `url`; every message of the GET stream comes out of the receiver,
/// requests once answered.
fn answer_roots(
    client: &McpClient,
    get: jetway_tests::ResponseStream,
    url: String,
    current: tokio::sync::watch::Receiver<Option<Value>>,
) -> tokio::sync::mpsc::Receiver<Seen> {
    let mut events = get.into_receiver(64);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let client = client.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            let Some(message) = ev.json else { continue };
            let roots = current.borrow().clone();
            let mut answered = false;
            if message["method"] == "roots/list"
                && let Some(roots) = roots
            {
                let acked = client.respond(&url, &message["id"], roots).await;
                if !acked.is_ok_and(|a| a.status == reqwest::StatusCode::ACCEPTED) {
                    break;
                }
                answered = true;
            }
            if tx.send(Seen { message, answered }).await.is_err() {
                break;
            }
        }
    });
    rx
}

/// The next `roots/list` on `seen` the client left unanswered.
async fn next_unanswered(seen: &mut tokio::sync::mpsc::Receiver<Seen>) -> Result<Value> {
    loop {
        let s = tokio::time::timeout(EVENT_TIMEOUT, seen.recv())
            .await
            .context("no unanswered roots/list on the GET stream")?
            .context("the GET stream ended")?;
        if s.message["method"] == "roots/list" && !s.answered {
            return Ok(s.message);
        }
    }
}

/// Reads `seen` up to the log message `text` the upstream sends; returns
/// the `roots/list` requests seen on the way.
async fn until_logged(
    seen: &mut tokio::sync::mpsc::Receiver<Seen>,
    text: &str,
) -> Result<Vec<Value>> {
    let mut asked = Vec::new();
    loop {
        let m = tokio::time::timeout(EVENT_TIMEOUT, seen.recv())
            .await
            .with_context(|| format!("no `{text}` log on the GET stream"))?
            .context("the GET stream ended")?
            .message;
        if m["method"] == "roots/list" {
            asked.push(m);
        } else if m["method"] == "notifications/message"
            && m.pointer("/params/data") == Some(&json!(text))
        {
            return Ok(asked);
        }
    }
}

#[tokio::test]
async fn the_reference_servers_roots_requests_cross_the_get_stream_both_ways() -> Result<()> {
    let upstream = Upstream::everything().await?;
    let jw = Bridged::start(&upstream.url(), 2, &[]).await?;
    // The client declares roots (with listChanged); the reference server
    // asks for them on its own session stream, outside any request: after
    // initialization, when a tool needs them, after list_changed.
    let client = McpClient::initialize(&jw.url(0)).await?;
    let get = client.get_stream(&jw.url(1), None).await?;
    assert_eq!(get.status, reqwest::StatusCode::OK);
    let first = roots(&client, &["alpha", "beta"])?;
    let (current, answers) = tokio::sync::watch::channel(Some(first.clone()));
    let mut seen = answer_roots(&client, get, jw.url(0), answers);

    // The upstream lists exactly the roots the client answered with.
    let text = roots_list_text(&client, &jw.url(1)).await?;
    assert!(text.starts_with(&listed_roots(&first)?), "{text}");

    // New roots: the client says so outside any request, the upstream asks
    // again on its stream, and the answer reaches it through the other
    // gateway.
    let second = roots(&client, &["gamma", "delta", "epsilon"])?;
    current.send_replace(Some(second.clone()));
    let told = client
        .notify(&jw.url(1), "notifications/roots/list_changed", Value::Null)
        .await?;
    assert_eq!(told.status, reqwest::StatusCode::ACCEPTED);
    let asked = until_logged(&mut seen, "Roots updated: 3 root(s) received from client").await?;
    assert!(!asked.is_empty(), "the upstream asked for the new roots");
    for request in &asked {
        let id = request["id"].as_str().unwrap_or_default();
        assert!(id.starts_with("get:"), "a session-stream id: {request}");
    }
    let text = roots_list_text(&client, &jw.url(0)).await?;
    assert!(text.starts_with(&listed_roots(&second)?), "{text}");
    Ok(())
}

#[tokio::test]
async fn a_get_stream_request_outstanding_when_its_listener_dies_is_answered_through_the_next()
-> Result<()> {
    let upstream = Upstream::everything().await?;
    // One bridge worker: it holds the session's listener.
    let mut jw = Bridged::start(&upstream.url(), 1, &[]).await?;
    let client = McpClient::initialize(&jw.url(0)).await?;
    let get = client.get_stream(&jw.url(1), None).await?;
    let first = roots(&client, &["before"])?;
    let (current, answers) = tokio::sync::watch::channel(Some(first.clone()));
    let mut seen = answer_roots(&client, get, jw.url(1), answers);
    let text = roots_list_text(&client, &jw.url(0)).await?;
    assert!(text.starts_with(&listed_roots(&first)?), "{text}");

    // The upstream asks again (list_changed); the only listener relays
    // the request, and dies before the client answers.
    let second = Worker::builder(&jw.nats.url())
        .instance_id("bridge-2")
        .args(["--upstream-url", upstream.url().as_str()])
        .start()
        .await?;
    current.send_replace(None);
    client
        .notify(&jw.url(0), "notifications/roots/list_changed", Value::Null)
        .await?;
    let request = next_unanswered(&mut seen).await?;
    jw.workers[0].kill().await?;
    jw.workers.push(second);

    // The other worker takes the listener over (the lease runs out; a
    // request of the session makes it look), and routes the answer to the
    // request it never saw to the upstream.
    let worker = &jw.workers[1];
    jetway_tests::eventually(Duration::from_secs(60), || {
        let (client, url) = (client.clone(), jw.url(1));
        async move {
            client.request(&url, "ping", json!({})).await?.result()?;
            anyhow::Ok(
                worker
                    .log()
                    .contains("listening to the upstream session's stream"),
            )
        }
    })
    .await
    .context("the second worker did not take over the listener")?;
    let after = roots(&client, &["after", "takeover"])?;
    let ack = client
        .respond(&jw.url(0), &request["id"], after.clone())
        .await?;
    assert_eq!(ack.status, reqwest::StatusCode::ACCEPTED);
    let expected = listed_roots(&after)?;
    jetway_tests::eventually(Duration::from_secs(20), || {
        let (client, url, expected) = (client.clone(), jw.url(1), expected.clone());
        async move { anyhow::Ok(roots_list_text(&client, &url).await?.starts_with(&expected)) }
    })
    .await
    .context("the upstream never got the answer")?;
    Ok(())
}

/// What the stateful server's last `sample_later` got back, once it did.
async fn background_outcome(client: &McpClient, url: &str) -> Result<Value> {
    let outcome = |client: McpClient, url: String| async move {
        let got = client
            .call_tool_structured(&url, "background", json!({}))
            .await?;
        anyhow::Ok(got["outcome"].clone())
    };
    jetway_tests::eventually(EVENT_TIMEOUT, || {
        let got = outcome(client.clone(), url.to_owned());
        async move { anyhow::Ok(!got.await?.is_null()) }
    })
    .await
    .context("sample_later never got an answer")?;
    outcome(client.clone(), url.to_owned()).await
}

#[tokio::test]
async fn a_python_upstreams_background_sampling_reaches_the_client_on_its_get_stream() -> Result<()>
{
    let upstream = Upstream::stateful(&[]).await?;
    let jw = Bridged::start(&upstream.url(), 2, &[]).await?;
    let client = McpClient::initialize(&jw.url(0)).await?;
    let session = client.session_id().context("a session id")?.to_owned();
    let mut get = client.get_stream(&jw.url(1), None).await?;

    // Asked after the call that started it was answered: on the upstream
    // session's own stream, relayed to the Jetway session's GET stream.
    let asked = format!("a background job of {session}");
    let started = tool(
        &client,
        &jw.url(0),
        "sample_later",
        json!({"delay": 0.2, "text": asked}),
    )
    .await?;
    assert_eq!(started, "asking later");
    let request = get.next_request(EVENT_TIMEOUT).await?;
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    assert_eq!(
        request.pointer("/params/messages/0/content/text"),
        Some(&json!(asked)),
        "{request}"
    );
    let id = request["id"].as_str().unwrap_or_default();
    assert!(id.starts_with("get:"), "a session-stream id: {request}");

    let reply = format!("the client of {session} answers");
    let answer = json!({"role": "assistant", "content": {"type": "text", "text": reply},
                        "model": "m", "stopReason": "endTurn"});
    let ack = client.respond(&jw.url(1), &request["id"], answer).await?;
    assert_eq!(ack.status, reqwest::StatusCode::ACCEPTED);
    let outcome = background_outcome(&client, &jw.url(0)).await?;
    assert_eq!(
        outcome.pointer("/answer/content/text"),
        Some(&json!(reply)),
        "{outcome}"
    );
    Ok(())
}

#[tokio::test]
async fn a_stdio_process_asking_outside_any_request_gets_an_error_not_another_sessions_client()
-> Result<()> {
    let nats = NatsServer::start().await?;
    let command = stateful_stdio_command();
    let worker = stdio_worker(
        &nats,
        "stdio-bridge",
        &command,
        &["--upstream-processes", "1"],
    )
    .await?;
    let gateway = Gateway::start(&nats.url()).await?;
    let url = gateway.mcp_url();
    let a = McpClient::initialize(&url).await?;
    let b = McpClient::initialize(&url).await?;

    // Session a's call starts a background job on the one process; it asks
    // for a sampling once the call is over, while the process runs no
    // request (its stderr is the worker's).
    let from = worker.log().position();
    let started = tool(
        &a,
        &url,
        "sample_later",
        json!({"delay": 0.2, "text": "from nobody's request"}),
    )
    .await?;
    assert_eq!(started, "asking later");
    worker
        .log()
        .wait_for_text(from, EVENT_TIMEOUT, "sample_later: asking the client")
        .await?;
    // The process writes the question just after that line: the bridge
    // answers it as soon as it arrives, not when the next request comes.
    // (Waiting for the line alone left a race: under load the question
    // could reach the bridge after b's request was sent, and then b's
    // client got it, which is all a shared process can do with it.)
    worker
        .log()
        .wait_for_text(
            from,
            EVENT_TIMEOUT,
            "answering a request an idle upstream process sent with an error",
        )
        .await?;

    // Session b's request is the process's next: b's client does not get
    // the question, and the process got an error answer instead of none.
    let ex = b.call_tool(&url, "background", json!({})).await?;
    assert!(ex.result().is_ok(), "{:?}", ex.response());
    assert!(ex.requests().is_empty(), "{:?}", ex.requests());
    let outcome = background_outcome(&b, &url).await?;
    let error = outcome["error"].as_str().unwrap_or_default();
    assert!(error.contains("no client to ask"), "{outcome}");
    Ok(())
}

/// The `data` of the next `<label> <i>` log on `get`, as `i`.
async fn next_tick(get: &mut jetway_tests::ResponseStream, label: &str) -> Result<u64> {
    loop {
        let ev = get
            .next_message(EVENT_TIMEOUT)
            .await?
            .with_context(|| format!("the GET stream ended before a `{label}` tick"))?;
        let Some(m) = ev.json.as_ref() else { continue };
        if m["method"] != "notifications/message" {
            continue;
        }
        let data = m.pointer("/params/data").and_then(Value::as_str);
        if let Some(n) = data.and_then(|d| d.strip_prefix(&format!("{label} "))) {
            return n.parse().with_context(|| format!("tick {m}"));
        }
    }
}

#[tokio::test]
async fn what_the_upstream_and_the_client_send_while_nobody_listens_passes_once_after_a_takeover()
-> Result<()> {
    let upstream = Upstream::stateful(&["--resumable"]).await?;
    // One bridge worker: it holds the session's listener.
    let mut jw = Bridged::start(&upstream.url(), 1, &[]).await?;
    let client = McpClient::initialize(&jw.url(0)).await?;
    let mut get = client.get_stream(&jw.url(1), None).await?;
    assert_eq!(get.status, reqwest::StatusCode::OK);

    // Relayed by the first listener: a sampling (answered later) and the
    // first of six ticks the upstream sends outside any request.
    let text = format!("asked of {}", client.session_id().unwrap_or_default());
    let started = tool(
        &client,
        &jw.url(0),
        "sample_later",
        json!({"delay": 0.1, "text": text}),
    )
    .await?;
    assert_eq!(started, "asking later");
    let request = get.next_request(EVENT_TIMEOUT).await?;
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    let second = Worker::builder(&jw.nats.url())
        .instance_id("bridge-2")
        .args(["--upstream-url", upstream.url().as_str()])
        .start()
        .await?;
    let from = upstream.log().position();
    let args = json!({"count": 6, "interval": 0.5, "label": "gap"});
    assert_eq!(
        tool(&client, &jw.url(1), "tick_later", args).await?,
        "ticking later"
    );
    assert_eq!(next_tick(&mut get, "gap").await?, 1);

    // The listener's worker dies; ticks 2..6 are sent while nobody
    // listens, and the client answers the sampling then.
    jw.workers[0].kill().await?;
    let killed = Instant::now();
    jw.workers.push(second);
    let reply = "answered while nobody listened";
    let answer = json!({"role": "assistant", "content": {"type": "text", "text": reply},
                        "model": "m", "stopReason": "endTurn"});
    let ack = client.respond(&jw.url(0), &request["id"], answer).await?;
    assert_eq!(ack.status, reqwest::StatusCode::ACCEPTED);
    upstream
        .log()
        .wait_for_text(from, EVENT_TIMEOUT, "tick_later: gap 6")
        .await?;

    // The other worker takes the listener over as soon as the lease runs
    // out (no request of the session needed), resumes the upstream's stream
    // after tick 1 and reads the client's messages from where the first
    // listener got to.
    jw.workers[1]
        .log()
        .wait_for_text(0, Duration::from_secs(60), "resumed=true")
        .await
        .context("the second worker did not resume the listener")?;
    let mut ticks = Vec::new();
    for _ in 2..=6 {
        ticks.push(next_tick(&mut get, "gap").await?);
        if ticks.len() == 1 {
            eprintln!(
                "gap: kill to the first missed tick delivered: {:?}",
                killed.elapsed()
            );
        }
    }
    assert_eq!(ticks, vec![2, 3, 4, 5, 6]);
    // Nothing twice: the next message of the stream is what comes next.
    let args = json!({"count": 1, "interval": 0.0, "label": "after"});
    tool(&client, &jw.url(0), "tick_later", args).await?;
    let ev = get
        .next_message(EVENT_TIMEOUT)
        .await?
        .context("the GET stream ended")?;
    let data = ev.json.as_ref().and_then(|m| m.pointer("/params/data"));
    assert_eq!(data, Some(&json!("after 1")), "{:?}", ev.json);

    let outcome = background_outcome(&client, &jw.url(1)).await?;
    assert_eq!(
        outcome.pointer("/answer/content/text"),
        Some(&json!(reply)),
        "{outcome}"
    );
    Ok(())
}

/// Bridge workers in front of `stateful_server.py --stdio`, one process
/// per session (`--upstream-stdio session`), with `extra` flags.
async fn per_session_workers(nats: &NatsServer, n: usize, extra: &[&str]) -> Result<Vec<Worker>> {
    let command = stateful_stdio_command();
    let flags: Vec<&str> = ["--upstream-stdio", "session"]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    let mut workers = Vec::new();
    for i in 0..n {
        let id = format!("stdio-session-{}", i + 1);
        workers.push(stdio_worker(nats, &id, &command, &flags).await?);
    }
    Ok(workers)
}

/// True while process `pid` runs (not gone, not a zombie).
fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(") ")
            .next()
            .is_some_and(|s| !s.starts_with('Z'))
    })
}

/// The pid of the upstream process serving `client`'s session.
async fn upstream_pid(client: &McpClient, url: &str) -> Result<i64> {
    let who = client
        .call_tool_structured(url, "whoami", json!({}))
        .await?;
    assert_eq!(who["transport"], "stdio", "{who}");
    who["pid"].as_i64().context("pid")
}

#[tokio::test]
async fn a_stdio_process_per_session_keeps_each_sessions_state_across_gateways_and_workers()
-> Result<()> {
    let nats = NatsServer::start().await?;
    let workers = per_session_workers(&nats, 2, &[]).await?;
    let gateways = two_gateways(&nats).await?;
    let url = |i: usize| gateways[i % 2].mcp_url();

    // The client's own initialize params reach the process.
    let mut params = jetway_tests::mcp::default_initialize_params();
    params["clientInfo"]["name"] = json!("per-session-client");
    let mut first = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        clients.push(McpClient::initialize_with(&url(0), params.clone()).await?);
        first.push(started.elapsed());
    }
    let (a, b) = (&clients[0], &clients[1]);

    // State holds across calls alternating gateways (and so workers: the
    // one that does not own the process forwards to the one that does).
    let pid = upstream_pid(a, &url(0)).await?;
    // Until the worker that does not own the process has forwarded a call
    // to the one that does (which of the two gets a call is the consumer's
    // choice).
    let forwarded = || {
        workers
            .iter()
            .any(|w| w.log().contains("forwarding the request to the owner"))
    };
    let mut later = Vec::new();
    let mut calls = 0;
    while calls < 8 || (!forwarded() && calls < 40) {
        calls += 1;
        let started = Instant::now();
        assert_eq!(tool(a, &url(calls), "count", json!({})).await?, calls);
        later.push(started.elapsed());
    }
    assert!(forwarded(), "no call went through the other worker");
    assert_eq!(upstream_pid(a, &url(1)).await?, pid);
    first.sort();
    later.sort();
    eprintln!(
        "per-session stdio: initialize (spawn + initialize) median {:?}; later call median {:?}",
        first[1],
        later[later.len() / 2]
    );

    // Another session: another process, its own state.
    let other = upstream_pid(b, &url(1)).await?;
    assert_ne!(other, pid);
    assert_eq!(tool(b, &url(0), "count", json!({})).await?, 1);
    assert_eq!(tool(a, &url(1), "count", json!({})).await?, calls + 1);
    assert!(alive(pid) && alive(other));

    // Ending the session ends its process, and only its.
    assert_eq!(a.delete(&url(1)).await?, reqwest::StatusCode::OK);
    jetway_tests::eventually(Duration::from_secs(20), || async {
        anyhow::Ok(!alive(pid))
    })
    .await
    .context("the ended session's process still runs")?;
    assert!(alive(other));
    assert_eq!(tool(b, &url(1), "count", json!({})).await?, 2);
    Ok(())
}

#[tokio::test]
async fn a_per_session_stdio_process_ends_when_idle_and_a_full_worker_says_so() -> Result<()> {
    let nats = NatsServer::start().await?;
    let flags = ["--upstream-idle-secs", "1", "--upstream-processes", "1"];
    let _workers = per_session_workers(&nats, 1, &flags).await?;
    let gateway = Gateway::start(&nats.url()).await?;
    let url = gateway.mcp_url();
    let a = McpClient::initialize(&url).await?;
    assert_eq!(tool(&a, &url, "count", json!({})).await?, 1);
    let pid = upstream_pid(&a, &url).await?;

    // The worker runs one process at most: a second session is refused.
    let refused = McpClient::initialize(&url).await;
    let why = format!(
        "{:#}",
        refused.err().context("a second session got a process")?
    );
    assert!(why.contains("maximum of 1"), "{why}");

    // Idle: the process ends; the session's next call gets a fresh one,
    // initialized again (its state is gone).
    jetway_tests::eventually(Duration::from_secs(20), || async {
        anyhow::Ok(!alive(pid))
    })
    .await
    .context("the idle process still runs")?;
    assert_eq!(tool(&a, &url, "count", json!({})).await?, 1);
    assert_ne!(upstream_pid(&a, &url).await?, pid);
    Ok(())
}

#[tokio::test]
async fn a_per_session_stdio_process_asks_on_the_get_stream_and_starts_afresh_when_its_owner_dies()
-> Result<()> {
    let nats = NatsServer::start().await?;
    let mut workers = per_session_workers(&nats, 2, &[]).await?;
    let gateways = two_gateways(&nats).await?;
    let url = |i: usize| gateways[i % 2].mcp_url();
    let client = McpClient::initialize(&url(0)).await?;
    let mut get = client.get_stream(&url(1), None).await?;
    assert_eq!(tool(&client, &url(0), "count", json!({})).await?, 1);
    assert_eq!(tool(&client, &url(1), "count", json!({})).await?, 2);
    let pid = upstream_pid(&client, &url(0)).await?;

    // Asked outside any request: the process is the session's own, so the
    // question reaches its client, on the GET stream, and the answer the
    // process.
    let asked = "a background job of this session";
    let started = tool(
        &client,
        &url(1),
        "sample_later",
        json!({"delay": 0.2, "text": asked}),
    )
    .await?;
    assert_eq!(started, "asking later");
    let request = get.next_request(EVENT_TIMEOUT).await?;
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    assert_eq!(
        request.pointer("/params/messages/0/content/text"),
        Some(&json!(asked))
    );
    assert!(
        request["id"]
            .as_str()
            .unwrap_or_default()
            .starts_with("get:")
    );
    let answer = json!({"role": "assistant", "content": {"type": "text", "text": "from its client"},
                        "model": "m", "stopReason": "endTurn"});
    let ack = client.respond(&url(0), &request["id"], answer).await?;
    assert_eq!(ack.status, reqwest::StatusCode::ACCEPTED);
    let outcome = background_outcome(&client, &url(1)).await?;
    assert_eq!(
        outcome.pointer("/answer/content/text"),
        Some(&json!("from its client")),
        "{outcome}"
    );

    // The owner dies: the session goes on with a fresh process, initialized
    // again, whose state starts over.
    let owner = workers
        .iter()
        .position(|w| w.log().contains("started the session's upstream process"))
        .context("no worker started the process")?;
    workers[owner].kill().await?;
    let killed = Instant::now();
    assert_eq!(tool(&client, &url(0), "count", json!({})).await?, 1);
    eprintln!(
        "per-session stdio: owner killed to the next call answered by a fresh process: {:?}",
        killed.elapsed()
    );
    let fresh = upstream_pid(&client, &url(1)).await?;
    assert_ne!(fresh, pid);
    jetway_tests::eventually(Duration::from_secs(20), || async {
        anyhow::Ok(!alive(pid))
    })
    .await
    .context("the dead owner's process still runs")?;
    Ok(())
}

#[tokio::test]
async fn a_per_session_stdio_owner_killed_mid_call_has_the_call_run_once_on_a_fresh_process()
-> Result<()> {
    let nats = NatsServer::start().await?;
    let mut workers = per_session_workers(&nats, 2, &[]).await?;
    let gateway = Gateway::start(&nats.url()).await?;
    let url = gateway.mcp_url();
    let client = McpClient::initialize(&url).await?;
    assert_eq!(tool(&client, &url, "count", json!({})).await?, 1);
    let pid = upstream_pid(&client, &url).await?;
    let owner = workers
        .iter()
        .position(|w| w.log().contains("started the session's upstream process"))
        .context("no worker started the process")?;

    // The call runs on the owner's process (delivered there, or forwarded
    // to it); the owner dies before it answers.
    let from = workers[owner].log().position();
    let call = client
        .send(
            &url,
            "tools/call",
            json!({"name": "slow", "arguments": {"seconds": 3}}),
        )
        .await?;
    workers[owner]
        .log()
        .wait_for_text(from, EVENT_TIMEOUT, "slow: waiting")
        .await?;
    workers[owner].kill().await?;
    let killed = Instant::now();

    // It runs again, once, on a fresh process of the other worker, whose
    // state starts over.
    let ex = call.finish_within(Duration::from_secs(60)).await?;
    eprintln!(
        "per-session stdio: owner killed mid-call to the answer: {:?}",
        killed.elapsed()
    );
    let finals = ex
        .messages()
        .into_iter()
        .filter(|m| m.get("result").is_some() || m.get("error").is_some())
        .count();
    assert_eq!(finals, 1);
    let got = ex.result()?["structuredContent"].clone();
    assert_eq!(got["count"], 1, "{got}");
    assert_ne!(got["pid"], json!(pid), "{got}");
    Ok(())
}

#[tokio::test]
async fn the_reference_servers_progress_and_sampling_pass_through_its_own_per_session_process()
-> Result<()> {
    let command = jetway_tests::upstream::everything_stdio_command()?;
    let nats = NatsServer::start().await?;
    let mut workers = Vec::new();
    for i in 0..2 {
        let id = format!("stdio-session-everything-{}", i + 1);
        workers.push(stdio_worker(&nats, &id, &command, &["--upstream-stdio", "session"]).await?);
    }
    let gateways = two_gateways(&nats).await?;
    let url = |i: usize| gateways[i % 2].mcp_url();
    let client = McpClient::initialize(&url(0)).await?;

    // Through whichever worker gets them: progress on the POST stream, a
    // sampling asked inside the call and answered through the other
    // gateway.
    for i in 0..2 {
        let ex = client
            .request(
                &url(i),
                "tools/call",
                json!({"name": "trigger-long-running-operation",
                       "arguments": {"duration": 1, "steps": 2},
                       "_meta": {"progressToken": i}}),
            )
            .await?;
        let progress = progress_values(&ex);
        assert_eq!(progress, vec![1.0, 2.0]);

        let mut call = client
            .send(
                &url(i + 1),
                "tools/call",
                json!({"name": "trigger-sampling-request", "arguments": {"prompt": "hi", "maxTokens": 5}}),
            )
            .await?;
        let request = call.next_request(EVENT_TIMEOUT).await?;
        assert_eq!(request["method"], "sampling/createMessage");
        let text = format!("pong {i}");
        let answer = json!({"role": "assistant", "content": {"type": "text", "text": text},
                            "model": "m", "stopReason": "endTurn"});
        client.respond(&url(i), &request["id"], answer).await?;
        let ex = call.finish().await?;
        assert!(
            ex.result()?.to_string().contains(&text),
            "{:?}",
            ex.response()
        );
    }
    let started = workers
        .iter()
        .filter(|w| w.log().contains("started the session's upstream process"))
        .count();
    assert_eq!(started, 1, "one process for the session");
    Ok(())
}

#[tokio::test]
async fn a_cancelled_call_on_a_per_session_stdio_process_is_cancelled_upstream_and_frees_it()
-> Result<()> {
    let nats = NatsServer::start().await?;
    let workers = per_session_workers(&nats, 2, &[]).await?;
    let gateways = two_gateways(&nats).await?;
    let client = McpClient::initialize(&gateways[0].mcp_url()).await?;
    let id = json!("slow-to-cancel");
    let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                      "params": {"name": "slow", "arguments": {"seconds": 30}}});
    let _stream = client
        .send_message(&gateways[0].mcp_url(), &call, Some(id.clone()))
        .await?;
    jetway_tests::eventually(EVENT_TIMEOUT, || async {
        anyhow::Ok(workers.iter().any(|w| w.log().contains("slow: waiting")))
    })
    .await
    .context("the call never reached the process")?;

    // Cancelled through the other gateway: the process stops the call (it
    // never counts) and takes the next one at once, not after 30 s.
    let told = client
        .notify(
            &gateways[1].mcp_url(),
            "notifications/cancelled",
            json!({"requestId": id, "reason": "test"}),
        )
        .await?;
    assert_eq!(told.status, reqwest::StatusCode::ACCEPTED);
    let started = Instant::now();
    assert_eq!(
        tool(&client, &gateways[1].mcp_url(), "count", json!({})).await?,
        1
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}
