//! Traces: one trace per request across the bus, exported over OTLP to a
//! real receiver in this process (`jetway_tests::otlp`: OTLP/HTTP with
//! protobuf bodies, and OTLP/gRPC).
//!
//! Real nats-server, gateway and worker processes, configured with
//! `JETWAY_OTEL_ENDPOINT` (and `OTEL_BSP_SCHEDULE_DELAY` short, so spans
//! arrive soon after they end). The client sends its own `traceparent`, as
//! an HTTP header or in `params._meta`; what is checked is what a user of a
//! tracing backend relies on: every span in the client's trace, the
//! gateway's span a child of the client's, the worker's a child of the
//! gateway's, a redelivery a second worker span of the same trace, and a
//! resumed stream's span in the same trace too.
//!
//! `a_resumed_call_is_one_trace` prints the trace as a tree (names,
//! services, start offsets and durations); run with `--nocapture`.

use anyhow::{Context, Result, ensure};
use jetway_tests::{
    Gateway, McpClient, NatsServer, ResponseStream, Worker,
    cli::jetway,
    otlp::{OtlpReceiver, ReceivedSpan, tree},
};
use serde_json::{Value, json};
use std::time::Duration;

/// Bound on spans arriving at the receiver.
const SPANS_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on waiting for one SSE event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on reading an SSE stream to its end.
const STREAM_TIMEOUT: Duration = Duration::from_secs(45);

const GATEWAY: &str = "jetway-gateway";
const WORKER: &str = "jetway-worker";

/// A fresh client span: `(traceparent, trace id, span id)`.
fn client_span() -> (String, String, String) {
    let trace: String = (0..16)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let span: String = (0..8)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    (format!("00-{trace}-{span}-01"), trace, span)
}

/// nats-server, gateways and workers exporting to `receiver` over `protocol`.
struct Traced {
    nats: NatsServer,
    gateways: Vec<Gateway>,
    workers: Vec<Worker>,
}

impl Traced {
    async fn start(
        receiver: &OtlpReceiver,
        protocol: &str,
        gateways: &[&str],
        workers: &[&str],
        worker_args: &[&str],
    ) -> Result<Self> {
        let nats = NatsServer::start().await?;
        let url = nats.url();
        let env = [
            ("JETWAY_OTEL_ENDPOINT", receiver.endpoint()),
            ("JETWAY_OTEL_PROTOCOL", protocol.to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ];
        let gateways = futures::future::try_join_all(gateways.iter().map(|id| {
            let mut b = Gateway::builder(&url).instance_id(*id);
            for (k, v) in &env {
                b = b.env(k, v);
            }
            b.start()
        }))
        .await?;
        let workers = futures::future::try_join_all(workers.iter().map(|id| {
            let mut b = Worker::builder(&url)
                .instance_id(*id)
                .args(worker_args.iter().copied());
            for (k, v) in &env {
                b = b.env(k, v);
            }
            b.start()
        }))
        .await?;
        Ok(Self {
            nats,
            gateways,
            workers,
        })
    }

    fn url(&self, i: usize) -> String {
        self.gateways[i].mcp_url()
    }
}

fn of<'a>(spans: &'a [ReceivedSpan], service: &str, name: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.service == service && s.name == name)
        .collect()
}

fn by_id<'a>(spans: &'a [ReceivedSpan], id: &str) -> Option<&'a ReceivedSpan> {
    spans.iter().find(|s| s.span_id == id)
}

/// Checks one tool call's trace: a gateway span named for it, child of the
/// client's span; a worker span named for it, child of a gateway span; the
/// worker's final publish under the worker's span. Returns the trace.
/// `answered_here`: the client read the final event from this POST (not
/// from a resumed stream).
fn check_call_trace(
    spans: &[ReceivedSpan],
    name: &str,
    client_span: &str,
    answered_here: bool,
) -> Result<Vec<ReceivedSpan>> {
    let shown = || tree(spans);
    let gw = of(spans, GATEWAY, name);
    ensure!(gw.len() == 1, "one gateway span {name:?}:\n{}", shown());
    let gw = gw[0];
    ensure!(
        gw.parent_span_id == client_span,
        "the gateway span's parent is the client's span:\n{}",
        shown()
    );
    ensure!(gw.attr("mcp.method.name") == Some("tools/call"));
    ensure!(gw.attr("mcp.session.id").is_some_and(|s| !s.is_empty()));
    ensure!(gw.attr("jsonrpc.request.id").is_some());
    ensure!(gw.attr("network.transport") == Some("tcp"));
    let names: Vec<&str> = gw.events.iter().map(|(e, _)| e.as_str()).collect();
    ensure!(
        names.contains(&"first event") && names.contains(&"final event") == answered_here,
        "gateway span events: {names:?}"
    );
    let wk = of(spans, WORKER, name);
    ensure!(!wk.is_empty(), "a worker span {name:?}:\n{}", shown());
    for w in &wk {
        let parent = by_id(spans, &w.parent_span_id)
            .with_context(|| format!("the worker span's parent was not received:\n{}", shown()))?;
        ensure!(
            parent.service == GATEWAY && parent.name == "publish request",
            "the worker span's parent is the gateway's publish: {parent:?}"
        );
        ensure!(
            by_id(spans, &parent.parent_span_id).is_some_and(|p| p.span_id == gw.span_id),
            "the publish is under the gateway's request span"
        );
    }
    let finals = of(spans, WORKER, "publish final");
    ensure!(
        finals
            .iter()
            .any(|f| wk.iter().any(|w| is_under(spans, f, &w.span_id))),
        "the final publish is under a worker span:\n{}",
        shown()
    );
    Ok(spans.to_vec())
}

/// True if `s` is `ancestor` or below it.
fn is_under(spans: &[ReceivedSpan], s: &ReceivedSpan, ancestor: &str) -> bool {
    let mut at = Some(s);
    while let Some(cur) = at {
        if cur.span_id == ancestor {
            return true;
        }
        at = by_id(spans, &cur.parent_span_id);
    }
    false
}

/// The trace is complete: the gateway span ended (it ends with the
/// response) and the worker published the final answer.
fn call_done(spans: &[ReceivedSpan], name: &str) -> bool {
    !of(spans, GATEWAY, name).is_empty()
        && !of(spans, WORKER, name).is_empty()
        && !of(spans, WORKER, "publish final").is_empty()
}

#[tokio::test]
async fn a_tool_call_continues_the_clients_trace_from_the_header_and_from_meta() -> Result<()> {
    let receiver = OtlpReceiver::http().await?;
    let c = Traced::start(&receiver, "http/protobuf", &["gw-a"], &["wk-1"], &[]).await?;
    let mut client = McpClient::initialize(&c.url(0)).await?;

    // The HTTP header.
    let (traceparent, trace, span) = client_span();
    client.set_traceparent(Some(traceparent));
    let echo = client
        .call_tool(&c.url(0), "echo", json!({"message": "traced"}))
        .await?;
    echo.result()?;
    let spans = receiver
        .wait_for_trace(&trace, "the echo call's spans", SPANS_TIMEOUT, |s| {
            call_done(s, "tools/call echo")
        })
        .await?;
    check_call_trace(&spans, "tools/call echo", &span, true)?;
    let wk = of(&spans, WORKER, "tools/call echo")[0];
    ensure!(wk.attr("gen_ai.tool.name") == Some("echo"));
    ensure!(wk.attr("messaging.message.delivery_count") == Some("1"));
    ensure!(
        spans
            .iter()
            .any(|s| s.service == WORKER && s.name.starts_with("kv read")),
        "the worker's session read is a span:\n{}",
        tree(&spans)
    );
    // `params._meta.traceparent` (SEP-414), without the header.
    client.set_traceparent(None);
    let (traceparent, trace, span) = client_span();
    let params = json!({
        "name": "echo",
        "arguments": {"message": "traced by _meta"},
        "_meta": {"traceparent": traceparent},
    });
    client
        .request(&c.url(0), "tools/call", params)
        .await?
        .result()?;
    let spans = receiver
        .wait_for_trace(&trace, "the _meta call's spans", SPANS_TIMEOUT, |s| {
            call_done(s, "tools/call echo")
        })
        .await?;
    check_call_trace(&spans, "tools/call echo", &span, true)?;

    // `jetway replay` shows the trace id on the request and on the answer.
    let sid = client.session_id().context("session id")?.to_owned();
    let lines = jetway(&c.nats.url(), &["replay", &sid, "--json"])
        .await?
        .json_lines()?;
    let traced: Vec<&Value> = lines
        .iter()
        .filter(|l| l["trace_id"].as_str() == Some(trace.as_str()))
        .collect();
    ensure!(
        traced.iter().any(|l| l["direction"] == "in")
            && traced.iter().any(|l| l["direction"] == "out"),
        "replay lines with trace {trace}: {traced:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_redelivered_call_is_a_second_worker_span_in_the_same_trace() -> Result<()> {
    let receiver = OtlpReceiver::http().await?;
    let lease = &["--ack-wait-secs", "2"];
    let mut c = Traced::start(
        &receiver,
        "http/protobuf",
        &["gw-a"],
        &["wk-1", "wk-2"],
        lease,
    )
    .await?;
    let mut client = McpClient::initialize(&c.url(0)).await?;
    let (traceparent, trace, span) = client_span();
    client.set_traceparent(Some(traceparent));

    let mut call = start_analyze(&client, &c.url(0), 4).await?;
    let victim = first_worker(&mut call, 4).await?;
    // Wait until the victim's first spans are exported: a worker killed
    // mid-call never ends (so never exports) its own delivery span.
    receiver
        .wait_for_trace(&trace, "the victim's first publish", SPANS_TIMEOUT, |s| {
            s.iter()
                .any(|s| s.instance == victim && s.name == "publish message")
        })
        .await?;
    let i = c
        .workers
        .iter()
        .position(|w| w.instance_id() == victim)
        .context("victim")?;
    c.workers[i].kill().await?;
    call.read_to_end(STREAM_TIMEOUT).await?;

    let name = "tools/call analyze_data";
    let spans = receiver
        .wait_for_trace(&trace, "the re-run's spans", SPANS_TIMEOUT, |s| {
            call_done(s, name)
        })
        .await?;
    check_call_trace(&spans, name, &span, true)?;
    let rerun = of(&spans, WORKER, name);
    ensure!(
        rerun.len() == 1,
        "one finished worker span:\n{}",
        tree(&spans)
    );
    let rerun = rerun[0];
    ensure!(
        rerun.instance != victim && rerun.attr("messaging.message.delivery_count") == Some("2"),
        "the re-run is the second delivery, on the other worker: {rerun:?}"
    );
    // The victim's spans hang under its own delivery span (never ended,
    // so never received), not under the re-run's: a second worker span of
    // the same request.
    let victims: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.instance == victim).collect();
    ensure!(
        victims.iter().any(|s| s.name == "claim")
            && victims.iter().all(|s| !is_under(&spans, s, &rerun.span_id)
                && by_id(&spans, &s.parent_span_id).is_none_or(|p| p.instance == victim)),
        "the victim's spans are under a delivery span of their own:\n{}",
        tree(&spans)
    );
    // Log lines inside the worker's span carry the trace id (the survivor
    // logged that the request was running elsewhere).
    let survivor = c
        .workers
        .iter()
        .find(|w| w.instance_id() == rerun.instance)
        .context("survivor")?;
    ensure!(
        survivor.log().contains(&format!("trace_id={trace}")),
        "no log line of {} with trace_id={trace}",
        rerun.instance
    );
    eprintln!(
        "trace of a call re-run after a worker SIGKILL:\n{}",
        tree(&spans)
    );
    Ok(())
}

#[tokio::test]
async fn a_resumed_call_is_one_trace() -> Result<()> {
    let receiver = OtlpReceiver::http().await?;
    let c = Traced::start(
        &receiver,
        "http/protobuf",
        &["gw-a", "gw-b"],
        &["wk-1"],
        &[],
    )
    .await?;
    let mut client = McpClient::initialize(&c.url(0)).await?;
    let (traceparent, trace, span) = client_span();
    client.set_traceparent(Some(traceparent));

    let mut call = start_analyze(&client, &c.url(0), 4).await?;
    call.read_until(EVENT_TIMEOUT, "progress 1", |ev| ev.progress() == Some(1.0))
        .await?;
    let resume_id = call.last_event_id().context("an event id")?.to_owned();
    // The client goes away; it comes back on the other gateway, this time
    // without a traceparent: the resume continues the stored message's trace.
    drop(call);
    client.set_traceparent(None);
    let mut resumed = client.get_stream(&c.url(1), Some(&resume_id)).await?;
    ensure!(resumed.is_sse(), "resume is SSE");
    resumed.read_to_end(STREAM_TIMEOUT).await?;
    ensure!(
        resumed
            .events()
            .iter()
            .any(|e| e.json.as_ref().is_some_and(|j| j.get("result").is_some())),
        "the resumed stream ends with the result"
    );

    let name = "tools/call analyze_data";
    let spans = receiver
        .wait_for_trace(&trace, "the resumed call's spans", SPANS_TIMEOUT, |s| {
            call_done(s, name)
                && s.iter()
                    .any(|s| s.instance == "gw-b" && s.name == "resume" && s.end_ns > 0)
        })
        .await?;
    check_call_trace(&spans, name, &span, false)?;
    let resume = spans
        .iter()
        .find(|s| s.name == "resume")
        .context("resume span")?;
    ensure!(
        resume.events.iter().any(|(e, _)| e == "final event"),
        "the final event went out on the resumed stream: {resume:?}"
    );
    let parent = by_id(&spans, &resume.parent_span_id).context("the resume's parent")?;
    ensure!(
        parent.service == WORKER && parent.name.starts_with("publish"),
        "the resume continues the trace of the message it resumed after: {parent:?}"
    );
    eprintln!("trace of a resumed tool call:\n{}", tree(&spans));
    Ok(())
}

#[tokio::test]
async fn traces_export_over_grpc_too() -> Result<()> {
    let receiver = OtlpReceiver::grpc().await?;
    let c = Traced::start(&receiver, "grpc", &["gw-a"], &["wk-1"], &[]).await?;
    let mut client = McpClient::initialize(&c.url(0)).await?;
    let (traceparent, trace, span) = client_span();
    client.set_traceparent(Some(traceparent));
    client
        .call_tool(&c.url(0), "echo", json!({"message": "over gRPC"}))
        .await?
        .result()?;
    let spans = receiver
        .wait_for_trace(&trace, "the call's spans over gRPC", SPANS_TIMEOUT, |s| {
            call_done(s, "tools/call echo")
        })
        .await?;
    check_call_trace(&spans, "tools/call echo", &span, true)?;
    Ok(())
}

async fn start_analyze(client: &McpClient, url: &str, items: u64) -> Result<ResponseStream> {
    let params = json!({
        "name": "analyze_data",
        "arguments": {"num_items": items},
        "_meta": {"progressToken": "tok"},
    });
    let call = client.send(url, "tools/call", params).await?;
    ensure!(call.is_sse(), "tools/call was not answered with SSE");
    Ok(call)
}

/// Reads until the tool's first log, which names the worker running it.
async fn first_worker(call: &mut ResponseStream, items: u64) -> Result<String> {
    let prefix = format!("Starting analysis of {items} items on ");
    let ev = call
        .read_until(EVENT_TIMEOUT, "the first log", |ev| {
            ev.log().is_some_and(|(_, m)| m.starts_with(&prefix))
        })
        .await?;
    Ok(ev.log().context("a log")?.1[prefix.len()..].to_owned())
}

/// A tool name with a newline: the span names built from it are escaped
/// in the text logs of both processes, so the client cannot forge a line.
#[tokio::test]
async fn client_text_in_span_names_cannot_forge_a_log_line() -> Result<()> {
    let receiver = OtlpReceiver::http().await?;
    let nats = NatsServer::start().await?;
    let env = [
        ("JETWAY_OTEL_ENDPOINT", receiver.endpoint()),
        (
            "RUST_LOG",
            "debug,async_nats=info,h2=info,hyper=info,tonic=info".to_owned(),
        ),
    ];
    let mut w = Worker::builder(&nats.url());
    let mut g = Gateway::builder(&nats.url());
    for (k, v) in &env {
        w = w.env(k, v);
        g = g.env(k, v);
    }
    let (worker, gw) = (w.start().await?, g.start().await?);
    let client = McpClient::initialize(&gw.mcp_url()).await?;
    let forged = "echo\nFORGED level=INFO an operator would believe this";
    let out = client
        .call_tool(&gw.mcp_url(), forged, json!({"text": "x"}))
        .await?;
    out.response()?;
    jetway_tests::eventually_msg(
        "the gateway logs inside the request's span",
        EVENT_TIMEOUT,
        || async { gw.log().contains("echo\\u{a}FORGED") },
    )
    .await?;
    for (name, log) in [("gateway", gw.log()), ("worker", worker.log())] {
        let lines = log.lines();
        let bad: Vec<&String> = lines
            .iter()
            .filter(|l| l.trim_start().starts_with("FORGED"))
            .collect();
        assert!(bad.is_empty(), "the {name} logged a forged line: {bad:?}");
    }
    Ok(())
}
