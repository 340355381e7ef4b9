//! Failover: what an MCP client sees when a gateway or a worker dies or is
//! drained in the middle of a request, and what must still hold
//! (DESIGN.md, "Failure semantics"; README, "Delivery semantics").
//!
//! Everything is real: a nats-server, gateway and worker processes that are
//! SIGKILLed (a crash) or SIGTERMed (a drain) while `analyze_data` runs.
//! `analyze_data {"num_items": N}` takes about 0.8 + 0.3·N seconds and sends,
//! in order, the info log `Starting analysis of N items on <worker>`,
//! progress 0..=N, the info logs `Aggregating results` and
//! `Analysis complete: …`, then its result.
//!
//! The tests print what they measure (resume latency, kill-to-result, drain
//! time); run with `--nocapture` to see it.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use jetway_tests::{
    Gateway, McpClient, NatsServer, ResponseStream, SseEvent, SseStream, Worker, eventually_msg,
};
use reqwest::StatusCode;
use rustix::process::Signal;
use serde_json::{Value, json};
use tokio::time::Instant;

/// Response header naming the gateway that served a request.
const INSTANCE_HEADER: &str = "jetway-instance";

/// Bound on waiting for one event of an SSE stream.
const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

/// Bound on reading an SSE stream to its end.
const STREAM_TIMEOUT: Duration = Duration::from_secs(45);

/// JSON-RPC error of a request that made workers fail `max_deliver` times.
const REQUEST_FAILED: i64 = -32003;

#[tokio::test]
async fn gateway_killed_mid_stream_client_resumes_on_other_gateway() -> Result<()> {
    let mut c = Cluster::start(
        &[("gw-a", &[]), ("gw-b", &[])],
        &[("wk-1", &[]), ("wk-2", &[])],
    )
    .await?;
    let client = McpClient::initialize(&c.url(0)).await?;

    let mut call = start_analyze(&client, &c.url(0), 8, "tok-gw").await?;
    assert_eq!(call.header(INSTANCE_HEADER), Some(c.gateway_id(0)));
    call.read_until(EVENT_TIMEOUT, "progress 2", |ev| ev.progress() == Some(2.0))
        .await?;
    let resume_id = call
        .last_event_id()
        .context("no event id before the kill")?
        .to_owned();
    let before = call.events().to_vec();
    // What was in flight when the gateway died never reached the client:
    // read on to progress 4 and drop it, so the resume has stored events to
    // replay at once (and the latency below measures replay, not the tool).
    call.read_until(EVENT_TIMEOUT, "progress 4", |ev| ev.progress() == Some(4.0))
        .await?;
    let lost = call.events()[before.len()..].to_vec();

    c.gateways[0].kill().await?;
    drop(call);

    let started = Instant::now();
    let mut resumed = client.get_stream(&c.url(1), Some(&resume_id)).await?;
    assert_eq!(resumed.status, StatusCode::OK, "resume GET on gw-b");
    assert!(resumed.is_sse(), "resume GET is not SSE");
    assert_eq!(resumed.header(INSTANCE_HEADER), Some(c.gateway_id(1)));
    resumed
        .read_until(EVENT_TIMEOUT, "the first replayed event", |ev| {
            ev.json.is_some()
        })
        .await?;
    let first_replayed = started.elapsed();
    resumed.read_to_end(STREAM_TIMEOUT).await?;
    let after = resumed.events().to_vec();
    println!(
        "resume latency (GET issued on gw-b to first replayed event): {:.1} ms",
        first_replayed.as_secs_f64() * 1000.0
    );

    // Only what follows the resume id, in order, and nothing seen before.
    let (resume_stream, resume_seq) = parse_event_id(&resume_id)?;
    let mut previous = resume_seq;
    for ev in &after {
        let id = ev
            .id
            .as_deref()
            .with_context(|| format!("resumed event without id: {ev:?}"))?;
        let (stream, seq) = parse_event_id(id)?;
        assert_eq!(stream, resume_stream, "resumed event of another stream");
        assert!(
            seq > previous,
            "event {id} after sequence {previous} (resumed from {resume_id})"
        );
        previous = seq;
    }
    let before_ids: HashSet<&str> = before.iter().filter_map(|e| e.id.as_deref()).collect();
    for id in after.iter().filter_map(|e| e.id.as_deref()) {
        assert!(
            !before_ids.contains(id),
            "event {id} delivered on both connections"
        );
    }
    // The lost events come first, exactly as they were sent.
    assert_eq!(
        &after[..lost.len().min(after.len())],
        lost.as_slice(),
        "the replay does not start with the events lost in the crash"
    );

    // Before the kill and after the resume, together: the whole stream, once.
    let all: Vec<SseEvent> = before.iter().chain(&after).cloned().collect();
    assert_eq!(
        progress_values(&all),
        (0..=8).map(f64::from).collect::<Vec<_>>()
    );
    let info = log_messages(&all, "info");
    for msg in [
        "Aggregating results",
        "Analysis complete: processed 8 items, total score=54.0",
    ] {
        assert_eq!(
            info.iter().filter(|m| *m == msg).count(),
            1,
            "{msg:?} in {info:?}"
        );
    }
    let finals = final_responses(&all);
    assert_eq!(finals.len(), 1, "final responses: {finals:?}");
    assert_eq!(
        all.last().and_then(|e| e.json.as_ref()),
        Some(finals[0]),
        "the final response is not last"
    );
    let result = structured(finals[0])?;
    assert_eq!(result["items_processed"], 8, "{result}");
    assert_eq!(result["total_score"], 54.0, "{result}");
    c.assert_worker(&result["instance"]);
    Ok(())
}

#[tokio::test]
async fn worker_killed_mid_request_another_worker_finishes() -> Result<()> {
    let lease: &[&str] = &["--ack-wait-secs", "2"];
    let mut c = Cluster::start(&[("gw-a", &[])], &[("wk-1", lease), ("wk-2", lease)]).await?;
    let client = McpClient::initialize(&c.url(0)).await?;
    let session = client.session_id().context("no session id")?.to_owned();

    let mut call = start_analyze(&client, &c.url(0), 8, "tok-wk").await?;
    let running_on = first_worker(&mut call, 8).await?;
    let victim = c.worker_index(&running_on)?;
    let survivor = c.workers[1 - victim].instance_id().to_owned();

    let killed = Instant::now();
    c.workers[victim].kill().await?;
    call.read_to_end(STREAM_TIMEOUT).await?;
    let kill_to_result = killed.elapsed();
    println!(
        "kill-to-result (worker {running_on} SIGKILLed, {survivor} re-ran it): {:.2} s",
        kill_to_result.as_secs_f64()
    );
    assert!(
        kill_to_result < Duration::from_secs(15),
        "the result came {kill_to_result:?} after the kill"
    );

    let events = call.events();
    assert_event_ids_increase(events)?;
    let finals = final_responses(events);
    assert_eq!(finals.len(), 1, "final responses: {finals:?}");
    assert_eq!(
        events.last().and_then(|e| e.json.as_ref()),
        Some(finals[0]),
        "the final response is not last"
    );
    let result = structured(finals[0])?;
    assert_eq!(
        result,
        &json!({"items_processed": 8, "total_score": 54.0, "instance": survivor})
    );
    // The survivor ran it from the start; the victim's progress may repeat.
    let starts = log_messages(events, "info")
        .into_iter()
        .filter(|m| m.starts_with("Starting analysis"))
        .collect::<Vec<_>>();
    assert_eq!(
        starts,
        [
            format!("Starting analysis of 8 items on {running_on}"),
            format!("Starting analysis of 8 items on {survivor}"),
        ]
    );
    let progress = progress_values(events);
    assert!(
        progress.ends_with(&(0..=8).map(f64::from).collect::<Vec<_>>()),
        "progress: {progress:?}"
    );

    let uri = format!("resource://session/{session}/summary");
    let read = client
        .request(&c.url(0), "resources/read", json!({"uri": uri}))
        .await?;
    let text = read.result()?["contents"][0]["text"]
        .as_str()
        .context("summary has text contents")?;
    let summary: Value = serde_json::from_str(text).context("summary is JSON")?;
    assert_eq!(
        summary["analysis_result"],
        json!({"items_processed": 8, "total_score": 54.0}),
        "summary: {summary}"
    );

    let out = client
        .call_tool_structured(&c.url(0), "increment_counter", json!({}))
        .await?;
    assert_eq!(out, json!({"counter": 1, "instance": survivor}));
    Ok(())
}

/// A worker that dies after its state write landed but before it answered:
/// the re-run on another worker finds that write and does not apply the
/// increment again, so the answer and the counter are both 1, not 2.
///
/// The test watches the state bucket's subject on core NATS and SIGKILLs
/// the only worker the moment its write goes by; a second worker starts
/// after that and takes the request over. A round in which the first
/// worker still answered in time proves nothing, so rounds repeat until
/// one re-ran the request (the window is the worker's next NATS round
/// trip, which the kill usually beats).
#[tokio::test]
async fn increment_whose_worker_died_after_its_write_is_applied_once() -> Result<()> {
    const ROUNDS: usize = 5;
    let nats = NatsServer::start().await?;
    let gw = Gateway::start(&nats.url()).await?;
    let url = gw.mcp_url();
    let bus = async_nats::connect(nats.url()).await?;
    let mut reruns = 0;
    for round in 0..ROUNDS {
        let lease = ["--ack-wait-secs", "1"];
        let mut first = Worker::builder(&nats.url())
            .instance_id(format!("wk-first-{round}"))
            .args(lease)
            .start()
            .await?;
        let client = McpClient::initialize(&url).await?;
        let mut writes = bus.subscribe("$KV.jetway_state.>").await?;
        bus.flush().await?;
        let call = client
            .send(
                &url,
                "tools/call",
                json!({"name": "increment_counter", "arguments": {}}),
            )
            .await?;
        let write = tokio::time::timeout(EVENT_TIMEOUT, futures::StreamExt::next(&mut writes))
            .await
            .context("no state write within the event timeout")?
            .context("the state subscription ended")?;
        first.kill().await?;
        ensure!(
            write.subject.ends_with(".counter"),
            "unexpected write: {}",
            write.subject
        );
        let second = Worker::builder(&nats.url())
            .instance_id(format!("wk-second-{round}"))
            .args(lease)
            .start()
            .await?;
        let ex = call.finish_within(STREAM_TIMEOUT).await?;
        let out = ex.structured_content()?.clone();
        let counter = client
            .call_tool_structured(&url, "get_counter", json!({}))
            .await?;
        assert_eq!(counter["counter"], 1, "round {round}: counter after {out}");
        assert_eq!(out["counter"], 1, "round {round}: the answer {out}");
        if out["instance"] == second.instance_id() {
            reruns += 1;
        }
        println!("round {round}: answered by {}", out["instance"]);
    }
    ensure!(
        reruns > 0,
        "in none of {ROUNDS} rounds did the kill beat the first worker's answer"
    );
    Ok(())
}

#[tokio::test]
async fn request_that_keeps_killing_workers_ends_with_an_error() -> Result<()> {
    let flags: &[&str] = &["--ack-wait-secs", "1", "--max-deliver", "1"];
    let mut c = Cluster::start(&[("gw-a", &[])], &[("wk-1", flags)]).await?;
    let client = McpClient::initialize(&c.url(0)).await?;

    let mut call = start_analyze(&client, &c.url(0), 8, "tok-poison").await?;
    assert_eq!(first_worker(&mut call, 8).await?, "wk-1");
    c.workers[0].kill().await?;
    c.start_worker("wk-2", flags).await?;

    call.read_to_end(STREAM_TIMEOUT).await?;
    let events = call.events();
    let finals = final_responses(events);
    assert_eq!(finals.len(), 1, "final responses: {finals:?}");
    let error = finals[0]
        .get("error")
        .context("final response is no error")?;
    assert_eq!(error["code"], REQUEST_FAILED, "error: {error}");
    assert_eq!(
        events.last().and_then(|e| e.json.as_ref()),
        Some(finals[0]),
        "the error is not last"
    );
    // Answered, not run again.
    let starts = log_messages(events, "info")
        .into_iter()
        .filter(|m| m.starts_with("Starting analysis"))
        .collect::<Vec<_>>();
    assert_eq!(starts, ["Starting analysis of 8 items on wk-1"]);

    let out = client
        .call_tool_structured(&c.url(0), "increment_counter", json!({}))
        .await?;
    assert_eq!(out, json!({"counter": 1, "instance": "wk-2"}));
    let ex = client
        .call_tool(&c.url(0), "analyze_data", json!({"num_items": 1}))
        .await?;
    assert_eq!(ex.structured_content()?["items_processed"], 1);
    Ok(())
}

#[tokio::test]
async fn gateway_drain_under_load_moves_sessions_to_the_other_gateway() -> Result<()> {
    const SESSIONS: usize = 20;
    let grace = Duration::from_secs(5);
    let mut c = Cluster::start(
        &[("gw-a", &["--grace-period-secs", "5"]), ("gw-b", &[])],
        &[("wk-1", &[]), ("wk-2", &[])],
    )
    .await?;
    let (a, b) = (c.url(0), c.url(1));
    let clients =
        futures::future::try_join_all((0..SESSIONS).map(|_| McpClient::initialize(&a))).await?;
    let mut streams = start_analyses(&clients, &a, 4).await?;

    let term = Instant::now();
    c.gateways[0].process().signal(Signal::TERM)?;
    // Not ready any more: 503 while draining, or no answer once it closed
    // its listener.
    let readyz = format!("{}/readyz", c.gateways[0].base_url());
    let http = clients[0].http().clone();
    eventually_msg("gw-a to stop being ready", grace, || async {
        match http.get(&readyz).send().await {
            Ok(resp) => resp.status() == StatusCode::SERVICE_UNAVAILABLE,
            Err(_) => true,
        }
    })
    .await?;

    // Every stream ends: with a retry hint, or by the connection closing.
    futures::future::try_join_all(streams.iter_mut().map(RawStream::read_to_close)).await?;
    let exit = c.gateways[0].process().wait_exit(grace * 2).await?;
    let drain = term.elapsed();
    println!(
        "drain time (SIGTERM to exit of gw-a, {SESSIONS} open streams): {:.0} ms",
        drain.as_secs_f64() * 1000.0
    );
    assert!(exit.success(), "gw-a exited with {exit}");
    assert!(
        drain < grace * 2,
        "gw-a took {drain:?} to exit (grace {grace:?})"
    );
    let with_retry = streams.iter().filter(|s| s.retry.is_some()).count();
    println!("streams of gw-a that ended with a retry hint: {with_retry} of {SESSIONS}");
    for (i, s) in streams.iter().enumerate() {
        assert!(
            final_responses(&s.events).is_empty(),
            "request {i} finished before the drain; the test needs longer requests"
        );
    }

    // Each client waits as told (or not at all), then resumes on gw-b.
    let resumes = clients.iter().zip(&streams).map(|(client, s)| {
        let b = b.clone();
        async move {
            let resume_id = s
                .last_event_id
                .clone()
                .context("no event id before the drain")?;
            tokio::time::sleep(Duration::from_millis(s.retry.unwrap_or(0))).await;
            let mut resumed = client.get_stream(&b, Some(&resume_id)).await?;
            ensure!(
                resumed.status == StatusCode::OK,
                "resume GET: HTTP {}",
                resumed.status
            );
            resumed.read_to_end(STREAM_TIMEOUT).await?;
            anyhow::Ok((resume_id, resumed.events().to_vec()))
        }
    });
    let resumed = futures::future::try_join_all(resumes).await?;

    for (i, (s, (resume_id, after))) in streams.iter().zip(&resumed).enumerate() {
        let (_, resume_seq) = parse_event_id(resume_id)?;
        for ev in after {
            let id = ev.id.as_deref().context("resumed event without id")?;
            assert!(
                parse_event_id(id)?.1 > resume_seq,
                "session {i}: event {id} replayed after {resume_id}"
            );
        }
        let all: Vec<SseEvent> = s.events.iter().chain(after).cloned().collect();
        assert_event_ids_increase(&all).with_context(|| format!("session {i}"))?;
        let finals = final_responses(&all);
        assert_eq!(finals.len(), 1, "session {i}: final responses {finals:?}");
        let result = structured(finals[0])?;
        assert_eq!(result["items_processed"], 4, "session {i}: {result}");
        assert_eq!(
            progress_values(&all),
            (0..=4).map(f64::from).collect::<Vec<_>>(),
            "session {i}"
        );
    }

    let counters = futures::future::try_join_all(clients.iter().map(|client| {
        let b = b.clone();
        async move {
            client
                .call_tool_structured(&b, "increment_counter", json!({}))
                .await
        }
    }))
    .await?;
    for (i, out) in counters.iter().enumerate() {
        assert_eq!(out["counter"], 1, "session {i} on gw-b: {out}");
    }
    Ok(())
}

/// README: on SIGTERM "open SSE streams get a `retry:` field and are closed"
/// (the spec's SHOULD for a server closing a connection before the stream
/// is complete) — every one of them, even when a stream's bus reader stops
/// on the same shutdown before its HTTP side does.
#[tokio::test]
async fn gateway_drain_ends_every_open_stream_with_a_retry_hint() -> Result<()> {
    const SESSIONS: usize = 20;
    let mut c =
        Cluster::start(&[("gw-a", &["--grace-period-secs", "5"])], &[("wk-1", &[])]).await?;
    let a = c.url(0);
    let clients =
        futures::future::try_join_all((0..SESSIONS).map(|_| McpClient::initialize(&a))).await?;
    let mut streams = start_analyses(&clients, &a, 4).await?;

    c.gateways[0].process().signal(Signal::TERM)?;
    futures::future::try_join_all(streams.iter_mut().map(RawStream::read_to_close)).await?;
    let without: Vec<usize> = (0..SESSIONS)
        .filter(|&i| streams[i].retry.is_none())
        .collect();
    assert!(
        without.is_empty(),
        "{} of {SESSIONS} streams closed without a retry field: {without:?}",
        without.len()
    );
    c.gateways[0]
        .process()
        .wait_exit(Duration::from_secs(10))
        .await?;
    Ok(())
}

#[tokio::test]
async fn worker_drain_finishes_in_flight_work() -> Result<()> {
    let grace = Duration::from_secs(10);
    // The lease of a request stranded on the draining worker, if any.
    let lease = Duration::from_secs(6);
    let mut c = Cluster::start(
        &[("gw-a", &[])],
        &[(
            "wk-1",
            &["--grace-period-secs", "10", "--ack-wait-secs", "6"],
        )],
    )
    .await?;
    let client = McpClient::initialize(&c.url(0)).await?;

    let mut call = start_analyze(&client, &c.url(0), 3, "tok-drain").await?;
    assert_eq!(first_worker(&mut call, 3).await?, "wk-1");
    let log_from = c.workers[0].log().position();
    let term = Instant::now();
    c.workers[0].process().signal(Signal::TERM)?;

    // A request sent while wk-1 drains is not taken by it.
    c.workers[0]
        .log()
        .wait_for_text(log_from, EVENT_TIMEOUT, "draining")
        .await?;
    let later = client
        .send(
            &c.url(0),
            "tools/call",
            json!({"name": "increment_counter", "arguments": {}}),
        )
        .await?;

    call.read_to_end(STREAM_TIMEOUT).await?;
    let finals = final_responses(call.events());
    assert_eq!(finals.len(), 1, "final responses: {finals:?}");
    assert_eq!(
        structured(finals[0])?,
        &json!({"items_processed": 3, "total_score": 9.0, "instance": "wk-1"})
    );
    let exit = c.workers[0].process().wait_exit(grace + lease).await?;
    let drain = term.elapsed();
    println!(
        "worker drain (SIGTERM to exit, one request in flight): {:.0} ms",
        drain.as_secs_f64() * 1000.0
    );
    assert!(exit.success(), "wk-1 exited with {exit}");
    assert!(
        drain < grace,
        "wk-1 took {drain:?} to exit (grace {grace:?})"
    );

    c.start_worker("wk-2", &["--ack-wait-secs", "6"]).await?;
    let ready = Instant::now();
    let ex = later.finish_within(STREAM_TIMEOUT).await?;
    let waited = ready.elapsed();
    println!(
        "request sent during the drain answered {:.0} ms after wk-2 was ready",
        waited.as_secs_f64() * 1000.0
    );
    assert_eq!(
        ex.structured_content()?,
        &json!({"counter": 1, "instance": "wk-2"})
    );
    assert!(
        waited < lease,
        "the request sent during the drain waited {waited:?} for wk-2: stranded on wk-1 until its lease ran out?"
    );
    let ex = client
        .call_tool(&c.url(0), "analyze_data", json!({"num_items": 1}))
        .await?;
    assert_eq!(ex.structured_content()?["instance"], "wk-2");
    Ok(())
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A nats-server, gateways and workers, torn down gateways first.
struct Cluster {
    gateways: Vec<Gateway>,
    workers: Vec<Worker>,
    nats: NatsServer,
}

impl Cluster {
    /// Starts nats-server, then the named gateways and workers with their
    /// extra flags.
    async fn start(gateways: &[(&str, &[&str])], workers: &[(&str, &[&str])]) -> Result<Self> {
        let nats = NatsServer::start().await?;
        let url = nats.url();
        let gateways = futures::future::try_join_all(gateways.iter().map(|(id, args)| {
            Gateway::builder(&url)
                .instance_id(*id)
                .args(args.iter().copied())
                .start()
        }))
        .await?;
        let workers = futures::future::try_join_all(workers.iter().map(|(id, args)| {
            Worker::builder(&url)
                .instance_id(*id)
                .args(args.iter().copied())
                .start()
        }))
        .await?;
        Ok(Self {
            gateways,
            workers,
            nats,
        })
    }

    /// Starts one more worker.
    async fn start_worker(&mut self, id: &str, args: &[&str]) -> Result<()> {
        let worker = Worker::builder(&self.nats.url())
            .instance_id(id)
            .args(args.iter().copied())
            .start()
            .await?;
        self.workers.push(worker);
        Ok(())
    }

    /// The MCP endpoint of gateway `i`.
    fn url(&self, i: usize) -> String {
        self.gateways[i].mcp_url()
    }

    /// The instance id of gateway `i`.
    fn gateway_id(&self, i: usize) -> &str {
        self.gateways[i].instance_id()
    }

    /// The index of the worker with this instance id.
    fn worker_index(&self, instance: &str) -> Result<usize> {
        self.workers
            .iter()
            .position(|w| w.instance_id() == instance)
            .with_context(|| format!("{instance} is not one of the workers"))
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

/// `tools/call analyze_data` params with a progress token.
fn analyze_params(items: u64, token: &str) -> Value {
    json!({
        "name": "analyze_data",
        "arguments": {"num_items": items},
        "_meta": {"progressToken": token},
    })
}

/// Starts `analyze_data` and returns its SSE stream, unread.
async fn start_analyze(
    client: &McpClient,
    url: &str,
    items: u64,
    token: &str,
) -> Result<ResponseStream> {
    let call = client
        .send(url, "tools/call", analyze_params(items, token))
        .await?;
    ensure!(
        call.status == StatusCode::OK,
        "tools/call: HTTP {}",
        call.status
    );
    ensure!(call.is_sse(), "tools/call was not answered with SSE");
    Ok(call)
}

/// In each session, starts `analyze_data` on `url` and reads until it
/// runs (its first log arrived).
async fn start_analyses(clients: &[McpClient], url: &str, items: u64) -> Result<Vec<RawStream>> {
    futures::future::try_join_all(clients.iter().enumerate().map(|(i, client)| async move {
        let params = analyze_params(items, &format!("tok-{i}"));
        let mut s = RawStream::post(client, url, "tools/call", params).await?;
        s.read_until_message()
            .await
            .with_context(|| format!("session {i}"))?;
        anyhow::Ok(s)
    }))
    .await
}

/// Reads until `analyze_data`'s first log, which names the worker running it.
async fn first_worker(call: &mut ResponseStream, items: u64) -> Result<String> {
    let prefix = format!("Starting analysis of {items} items on ");
    let ev = call
        .read_until(EVENT_TIMEOUT, "the first log", |ev| {
            ev.log().is_some_and(|(_, msg)| msg.starts_with(&prefix))
        })
        .await?;
    let (_, msg) = ev.log().context("a log")?;
    Ok(msg[prefix.len()..].to_owned())
}

/// A POST SSE stream read with the bare parser, so that a `retry` field
/// (which comes in a block without data, never dispatched as an event) is
/// seen.
struct RawStream {
    sse: SseStream,
    events: Vec<SseEvent>,
    last_event_id: Option<String>,
    retry: Option<u64>,
    /// How the connection ended: `None` when cleanly, else the read error.
    closed_by: Option<String>,
}

impl RawStream {
    async fn post(client: &McpClient, url: &str, method: &str, params: Value) -> Result<Self> {
        let id = client.next_request_id();
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp = client
            .http()
            .post(url)
            .headers(client.session_headers())
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body)?)
            .send()
            .await
            .with_context(|| format!("POST {method} to {url}"))?;
        ensure!(
            resp.status() == StatusCode::OK,
            "{method}: HTTP {}",
            resp.status()
        );
        Ok(Self {
            sse: SseStream::new(resp),
            events: Vec::new(),
            last_event_id: None,
            retry: None,
            closed_by: None,
        })
    }

    fn record(&mut self, ev: SseEvent) {
        self.events.push(ev);
        self.last_event_id = self.sse.last_event_id().map(str::to_owned);
        self.retry = self.sse.reconnection_time();
    }

    /// Reads up to and including the first event with a message.
    async fn read_until_message(&mut self) -> Result<()> {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.sse.next_event(left).await? {
                Some(ev) => {
                    let done = ev.json.is_some();
                    self.record(ev);
                    if done {
                        return Ok(());
                    }
                }
                None => bail!("stream ended before a message: {:?}", self.events),
            }
        }
    }

    /// Reads until the connection closes, cleanly or not.
    async fn read_to_close(&mut self) -> Result<()> {
        let deadline = Instant::now() + STREAM_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("the stream stayed open; events: {:?}", self.events);
            }
            match self.sse.next_event(left).await {
                Ok(Some(ev)) => self.record(ev),
                Ok(None) => break,
                Err(e) if self.sse.is_ended() => {
                    self.closed_by = Some(format!("{e:#}"));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        self.last_event_id = self.sse.last_event_id().map(str::to_owned);
        self.retry = self.sse.reconnection_time();
        Ok(())
    }
}

/// `(stream key, sequence)` of an event id `<stream key>-<sequence>`.
fn parse_event_id(id: &str) -> Result<(&str, u64)> {
    let (stream, seq) = id
        .rsplit_once('-')
        .with_context(|| format!("event id {id:?} is not <stream>-<sequence>"))?;
    let seq = seq
        .parse()
        .with_context(|| format!("event id {id:?} has no sequence"))?;
    Ok((stream, seq))
}

/// Every event has an id of the same stream, with increasing sequences.
fn assert_event_ids_increase(events: &[SseEvent]) -> Result<()> {
    let mut previous: Option<(&str, u64)> = None;
    for ev in events {
        let id = ev
            .id
            .as_deref()
            .with_context(|| format!("event without id: {ev:?}"))?;
        let (stream, seq) = parse_event_id(id)?;
        if let Some((prev_stream, prev_seq)) = previous
            && (stream != prev_stream || seq <= prev_seq)
        {
            let ids: Vec<_> = events.iter().map(|e| e.id.as_deref()).collect();
            bail!("event ids out of order: {ids:?}");
        }
        previous = Some((stream, seq));
    }
    Ok(())
}

/// The progress values of these events, in order.
fn progress_values(events: &[SseEvent]) -> Vec<f64> {
    events.iter().filter_map(SseEvent::progress).collect()
}

/// The messages of the log notifications at `level`, in order.
fn log_messages(events: &[SseEvent], level: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(SseEvent::log)
        .filter(|(l, _)| *l == level)
        .map(|(_, msg)| msg.to_owned())
        .collect()
}

/// The JSON-RPC responses among these events (messages with an `id`, a
/// `result` or `error`, and no `method`).
fn final_responses(events: &[SseEvent]) -> Vec<&Value> {
    events
        .iter()
        .filter_map(|e| e.json.as_ref())
        .filter(|m| {
            m.get("method").is_none()
                && m.get("id").is_some()
                && (m.get("result").is_some() || m.get("error").is_some())
        })
        .collect()
}

/// `result.structuredContent` of a successful `tools/call` response.
fn structured(response: &Value) -> Result<&Value> {
    let result = response
        .get("result")
        .with_context(|| format!("not a result: {response}"))?;
    ensure!(
        result.get("isError") != Some(&Value::Bool(true)),
        "tool error: {result}"
    );
    result
        .get("structuredContent")
        .with_context(|| format!("no structuredContent: {result}"))
}
