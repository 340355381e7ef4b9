//! `jetway`, the operator CLI, against a real stack: a session that spans two
//! gateways and two workers, with a gateway SIGKILLed mid-`analyze_data` and
//! the stream resumed on the other gateway, is replayed from the stream and
//! compared with what the client actually sent and received; then listed,
//! shown, filtered, redriven through a gateway, and deleted. Error cases
//! (malformed id, unknown session, NATS down) exit non-zero with one line.
//!
//! The replay rate is measured by an ignored test (`replay_rate`), never
//! asserted: `cargo test -p jetway-tests --test replay -- --ignored --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use jetway_tests::cli::{RUN_TIMEOUT, jetway};
use jetway_tests::mcp::default_initialize_params;
use jetway_tests::{
    Exchange, Gateway, McpClient, NatsServer, ResponseStream, SseEvent, Worker, jetway_bin,
    workspace_root,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Bound on waiting for one SSE event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

/// A client that keeps, in order, every message it sent and every SSE event
/// it received: the ground truth a replay is compared with.
struct Recorder {
    client: McpClient,
    sent: Vec<Value>,
    received: Vec<SseEvent>,
}

impl Recorder {
    async fn initialize(url: &str) -> Result<Self> {
        let mut rec = Self {
            client: McpClient::new(),
            sent: Vec::new(),
            received: Vec::new(),
        };
        let init = request(0, "initialize", default_initialize_params());
        let ex = rec.exchange(url, init).await?;
        let session = ex
            .header("mcp-session-id")
            .context("session id")?
            .to_owned();
        let version = ex.result()?["protocolVersion"]
            .as_str()
            .context("protocolVersion")?
            .to_owned();
        rec.client.set_session_id(Some(session));
        rec.client.set_protocol_version(Some(version));
        rec.notify(
            url,
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await?;
        Ok(rec)
    }

    fn session(&self) -> String {
        self.client.session_id().unwrap_or_default().to_owned()
    }

    /// Sends a request and reads to its final response.
    async fn exchange(&mut self, url: &str, message: Value) -> Result<Exchange> {
        let stream = self.start(url, message).await?;
        let ex = stream.finish().await?;
        self.received.extend(ex.events.iter().cloned());
        Ok(ex)
    }

    /// Sends a request; the caller reads the stream and hands back its events.
    async fn start(&mut self, url: &str, message: Value) -> Result<ResponseStream> {
        let id = message.get("id").cloned();
        self.sent.push(message.clone());
        self.client.send_message(url, &message, id).await
    }

    /// Sends a notification or a response: 202 expected.
    async fn notify(&mut self, url: &str, message: Value) -> Result<()> {
        self.sent.push(message.clone());
        let ex = self
            .client
            .send_message(url, &message, None)
            .await?
            .finish()
            .await?;
        ensure!(ex.status == StatusCode::ACCEPTED, "status {}", ex.status);
        Ok(())
    }
}

fn request(id: i64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn tool(id: i64, name: &str, arguments: Value) -> Value {
    request(
        id,
        "tools/call",
        json!({"name": name, "arguments": arguments}),
    )
}

fn analyze(id: i64, items: u64) -> Value {
    request(
        id,
        "tools/call",
        json!({"name": "analyze_data", "arguments": {"num_items": items},
               "_meta": {"progressToken": format!("p{id}")}}),
    )
}

/// The stream key of an event id `<key>-<seq>`.
fn key_of(event_id: &str) -> &str {
    event_id.rsplit_once('-').map_or(event_id, |(k, _)| k)
}

/// A recorded session: two gateways, two workers, a gateway killed while
/// `analyze_data` streams, sampling, a failed and a cancelled request.
async fn record_session(nats: &NatsServer) -> Result<(Recorder, Gateway)> {
    let mut a = Gateway::builder(&nats.url())
        .instance_id("gw-a")
        .start()
        .await?;
    let b = Gateway::builder(&nats.url())
        .instance_id("gw-b")
        .start()
        .await?;
    let mut wk1 = Worker::builder(&nats.url())
        .instance_id("wk-1")
        .start()
        .await?;
    let (ua, ub) = (a.mcp_url(), b.mcp_url());

    let mut rec = Recorder::initialize(&ua).await?;
    rec.exchange(&ua, tool(1, "increment_counter", json!({})))
        .await?;
    rec.exchange(&ub, tool(2, "add_note", json!({"note": "from b"})))
        .await?;
    let failed = rec
        .exchange(&ub, tool(3, "no_such_tool", json!({})))
        .await?;
    ensure!(failed.error_code().is_some(), "an unknown tool is an error");

    // Hand over to the second worker: everything from here runs on wk-2.
    let wk2 = Worker::builder(&nats.url())
        .instance_id("wk-2")
        .start()
        .await?;
    wk1.terminate(Duration::from_secs(30)).await?;

    // analyze_data on gw-a; gw-a dies after progress 2; resume on gw-b.
    let mut call = rec.start(&ua, analyze(4, 6)).await?;
    call.read_until(EVENT_TIMEOUT, "the event", |ev| ev.progress() == Some(2.0))
        .await?;
    let resume_id = call.last_event_id().context("an event id")?.to_owned();
    rec.received.extend(call.events().iter().cloned());
    drop(call);
    a.kill().await?;
    let resumed = rec.client.get_stream(&ub, Some(&resume_id)).await?;
    ensure!(
        resumed.status == StatusCode::OK,
        "resume: {}",
        resumed.status
    );
    let rest = resumed.finish().await?;
    let result_resumed = rest.events.iter().any(|e| {
        e.json
            .as_ref()
            .is_some_and(|j| j["id"] == 4 && j.get("result").is_some())
    });
    ensure!(result_resumed, "the result arrives after the resume");
    rec.received.extend(rest.events.iter().cloned());

    // Sampling: the server asks the client, which answers on gw-b.
    let mut sampling = rec
        .start(
            &ub,
            tool(5, "test_sampling", json!({"prompt": "the answer?"})),
        )
        .await?;
    let ask = sampling.next_request(EVENT_TIMEOUT).await?;
    let answer = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {
        "role": "assistant", "content": {"type": "text", "text": "forty-two"},
        "model": "test-model", "stopReason": "endTurn"}});
    rec.notify(&ub, answer).await?;
    let ex = sampling.finish().await?;
    ensure!(
        ex.result()?.to_string().contains("forty-two"),
        "{:?}",
        ex.response
    );
    rec.received.extend(ex.events.iter().cloned());

    // A cancelled request: its stream ends without a response.
    let mut long = rec.start(&ub, analyze(6, 20)).await?;
    long.read_until(EVENT_TIMEOUT, "the event", |ev| ev.progress() == Some(1.0))
        .await?;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": 6, "reason": "test"}});
    rec.notify(&ub, cancel).await?;
    while long.next_event(EVENT_TIMEOUT).await?.is_some() {}
    ensure!(
        long.final_response().is_none(),
        "a cancelled request has no response"
    );
    rec.received.extend(long.events().iter().cloned());

    rec.exchange(&ub, tool(7, "get_counter", json!({}))).await?;
    drop(wk2);
    Ok((rec, b))
}

#[tokio::test]
async fn replay_is_what_the_client_sent_and_received_across_a_gateway_kill() -> Result<()> {
    let nats = NatsServer::start().await?;
    let url = nats.url();
    let (rec, b) = record_session(&nats).await?;
    let sid = rec.session();
    let _worker = Worker::builder(&url).instance_id("wk-3").start().await?;

    let lines = jetway(&url, &["replay", &sid, "--json"])
        .await?
        .json_lines()?;
    let seqs: Vec<u64> = lines.iter().filter_map(|l| l["seq"].as_u64()).collect();
    ensure!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "stream order: {seqs:?}"
    );

    // Client → server: exactly what was sent, in order.
    let ins: Vec<&Value> = lines
        .iter()
        .filter(|l| l["direction"] == "in")
        .map(|l| &l["message"])
        .collect();
    let sent: Vec<&Value> = rec.sent.iter().collect();
    ensure!(ins == sent, "in:\n{ins:#?}\nsent:\n{sent:#?}");

    // Server → client: per stream, exactly what the client received, with
    // the same event ids; every event id the client saw (priming included)
    // names a replayed message.
    let by_id: BTreeMap<&str, &Value> = lines
        .iter()
        .filter_map(|l| Some((l["event_id"].as_str()?, l)))
        .collect();
    let mut received: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for ev in &rec.received {
        let id = ev.id.as_deref().context("every event has an id")?;
        let line = by_id
            .get(id)
            .with_context(|| format!("event {id} not replayed"))?;
        if let Some(json) = &ev.json {
            ensure!(&line["message"] == json, "event {id}: {line} vs {json}");
            received
                .entry(key_of(id).to_owned())
                .or_default()
                .push((id.to_owned(), json.clone()));
        }
    }
    let mut replayed: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for l in lines
        .iter()
        .filter(|l| l["direction"] == "out" && l["kind"] != "control")
    {
        let id = l["event_id"]
            .as_str()
            .context("out messages have event ids")?;
        replayed
            .entry(key_of(id).to_owned())
            .or_default()
            .push((id.to_owned(), l["message"].clone()));
    }
    ensure!(
        received == replayed,
        "received {received:#?}\nreplayed {replayed:#?}"
    );

    // Provenance: both gateways and both workers appear.
    let instances = |dir: &str| -> BTreeSet<String> {
        lines
            .iter()
            .filter(|l| l["direction"] == dir)
            .filter_map(|l| l["instance"].as_str().map(str::to_owned))
            .collect()
    };
    ensure!(instances("in") == BTreeSet::from(["gw-a".into(), "gw-b".into()]));
    ensure!(instances("out").is_superset(&BTreeSet::from(["wk-1".into(), "wk-2".into()])));
    let cancelled: Vec<&Value> = lines
        .iter()
        .filter(|l| l["control"] == "cancelled")
        .collect();
    ensure!(cancelled.len() == 1, "one cancellation marker");

    // The human transcript: one aligned line per message.
    let human = jetway(&url, &["replay", &sid]).await?.ok()?;
    println!("{human}");
    ensure!(human.lines().count() == lines.len());
    ensure!(human.contains("[cancelled]") && human.contains("→") && human.contains("←"));
    ensure!(
        !human.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );

    // sessions list: the counts.
    let list: Value =
        serde_json::from_str(&jetway(&url, &["sessions", "list", "--json"]).await?.ok()?)?;
    let row = list
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == sid.as_str()))
        .context("the session is listed")?;
    let outs = lines.iter().filter(|l| l["direction"] == "out").count();
    ensure!(row["messages_in"] == json!(rec.sent.len()), "{row}");
    ensure!(row["messages_out"] == json!(outs), "{row}");
    ensure!(
        row["state"] == "active" && row["client_name"] == "jetway-tests",
        "{row}"
    );
    let text = jetway(&url, &["sessions", "list", "--state", "closed"])
        .await?
        .ok()?;
    ensure!(!text.contains(&sid), "a state filter excludes it");

    // sessions show: one stream per request with its status.
    let show: Value = serde_json::from_str(
        &jetway(&url, &["sessions", "show", &sid, "--json"])
            .await?
            .ok()?,
    )?;
    let status: BTreeMap<i64, String> = show["requests"]
        .as_array()
        .context("requests")?
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap_or(-1),
                r["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let want: BTreeMap<i64, String> = [
        (0, "finished"),
        (1, "finished"),
        (2, "finished"),
        (3, "failed"),
        (4, "finished"),
        (5, "finished"),
        (6, "cancelled"),
        (7, "finished"),
    ]
    .into_iter()
    .map(|(i, s)| (i, s.to_owned()))
    .collect();
    ensure!(status == want, "statuses {status:?}");
    let analyze_key = show["requests"][4]["stream"]
        .as_str()
        .context("stream key")?
        .to_owned();
    ensure!(show["requests"][4]["events"] == json!(received[&analyze_key].len()));

    // --request: the sampling exchange, both directions.
    let exchange = jetway(&url, &["replay", &sid, "--json", "--request", "5"])
        .await?
        .json_lines()?;
    let shape: Vec<(String, String)> = exchange
        .iter()
        .map(|l| {
            (
                l["direction"].as_str().unwrap_or("").into(),
                l["kind"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("in", "request"),
        ("out", "request"),
        ("in", "response"),
        ("out", "response"),
    ]
    .iter()
    .map(|(d, k)| ((*d).into(), (*k).into()))
    .collect();
    ensure!(shape == expected, "{shape:?}");
    let cancelled = jetway(&url, &["replay", &sid, "--json", "--request", "6"])
        .await?
        .json_lines()?;
    ensure!(
        cancelled
            .iter()
            .any(|l| l["message"]["method"] == "notifications/cancelled")
    );
    ensure!(
        cancelled
            .last()
            .is_some_and(|l| l["control"] == "cancelled")
    );

    // --stream: the killed-and-resumed analyze_data, complete.
    let stream = jetway(&url, &["replay", &sid, "--json", "--stream", &analyze_key])
        .await?
        .json_lines()?;
    ensure!(
        stream.len() == 1 + received[&analyze_key].len(),
        "{}",
        stream.len()
    );
    ensure!(stream[0]["message"]["id"] == 4);
    ensure!(
        stream[1..]
            .iter()
            .all(|l| l["stream"] == analyze_key.as_str())
    );
    jetway(&url, &["replay", &sid, "--request", "99"])
        .await?
        .fails_with("request 99 not found")?;

    // Redrive through a gateway: the same results, up to volatile fields.
    let redrive = jetway(
        &url,
        &[
            "replay",
            &sid,
            "--redrive",
            "--gateway",
            &b.mcp_url(),
            "--json",
        ],
    )
    .await?;
    let report = redrive.json_lines()?;
    let summary = &report.last().context("a summary")?["summary"];
    ensure!(
        summary["requests"] == 8 && summary["differs"] == 0,
        "{summary}"
    );
    for c in &report[..report.len() - 1] {
        ensure!(
            matches!(c["verdict"].as_str(), Some("same" | "volatile_only")),
            "{c}"
        );
    }

    // Delete: closed everywhere, purged, and replay says so.
    let deleted = jetway(&url, &["sessions", "delete", &sid]).await?.ok()?;
    ensure!(deleted.contains("deleted"), "{deleted}");
    jetway(&url, &["replay", &sid])
        .await?
        .fails_with("not found")?;
    let after = rec
        .client
        .request(&b.mcp_url(), "tools/list", json!({}))
        .await?;
    ensure!(
        after.status == StatusCode::NOT_FOUND,
        "gateway: {}",
        after.status
    );
    Ok(())
}

#[tokio::test]
async fn errors_are_one_line_and_non_zero() -> Result<()> {
    let mut nats = NatsServer::start().await?;
    let url = nats.url();
    let _gw = Gateway::start(&url).await?; // creates the stream and buckets

    jetway(&url, &["replay", "0-xyz"])
        .await?
        .fails_with("malformed session id")?;
    jetway(&url, &["sessions", "show", "not-an-id"])
        .await?
        .fails_with("malformed session id")?;
    let unknown = "0-00000000000000000000000000000000";
    jetway(&url, &["replay", unknown])
        .await?
        .fails_with("not found or expired (retention is 1day)")?;
    jetway(&url, &["sessions", "delete", unknown])
        .await?
        .fails_with("not found")?;
    jetway(&url, &["replay", unknown, "--since", "soon"])
        .await?
        .fails_with("--since")?;
    let empty = jetway(&url, &["sessions", "list"]).await?.ok()?;
    ensure!(empty.trim() == "no sessions", "{empty}");

    nats.kill().await?;
    jetway(&url, &["replay", unknown])
        .await?
        .fails_with("cannot reach NATS")?;
    jetway(&url, &["sessions", "list"])
        .await?
        .fails_with("cannot reach NATS")?;
    Ok(())
}

#[tokio::test]
async fn follow_tails_live_messages_until_the_session_closes() -> Result<()> {
    let nats = NatsServer::start().await?;
    let url = nats.url();
    let gw = Gateway::start(&url).await?;
    let _worker = Worker::start(&url).await?;
    let mut rec = Recorder::initialize(&gw.mcp_url()).await?;
    let sid = rec.session();

    let follower = tokio::process::Command::new(jetway_bin("jetway")?)
        .args(["--nats-url", &url, "replay", &sid, "--follow", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    rec.exchange(&gw.mcp_url(), tool(1, "increment_counter", json!({})))
        .await?;
    ensure!(rec.client.delete(&gw.mcp_url()).await? == StatusCode::OK);
    let out = tokio::time::timeout(RUN_TIMEOUT, follower.wait_with_output())
        .await
        .context("--follow ends after the session-closed marker")??;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let methods: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["message"]["method"].as_str())
        .collect();
    ensure!(
        methods == ["initialize", "notifications/initialized", "tools/call"],
        "{methods:?}"
    );
    ensure!(
        lines.last().is_some_and(|l| l["control"] == "closed"),
        "{lines:#?}"
    );
    Ok(())
}

/// Measures `jetway replay --json` on a session of 100,000 messages with
/// the release build. Prints the rate; asserts nothing about time.
#[tokio::test]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn replay_rate() -> Result<()> {
    let nats = NatsServer::start().await?;
    let root = workspace_root();
    let status = tokio::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "jetway-cli",
            "--bin",
            "jetway",
            "--example",
            "replay_rate",
        ])
        .current_dir(&root)
        .status()
        .await?;
    ensure!(status.success(), "release build failed");
    let release = jetway_tests::process::target_dir().join("release");
    let out = tokio::process::Command::new(release.join("examples/replay_rate"))
        .args([
            "--nats-url",
            &nats.url(),
            "--messages",
            "100000",
            "--jetway",
        ])
        .arg(release.join("jetway"))
        .output()
        .await?;
    println!("{}", String::from_utf8_lossy(&out.stdout));
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
