//! Bad input at the HTTP edge: every malformed or unacceptable request gets
//! the status and JSON-RPC error the MCP Streamable HTTP transport
//! (2025-11-25, batches from 2025-03-26) names, and none of it harms the
//! session it was aimed at or any other session.
//!
//! Each test runs a real nats-server, one worker and two gateways (plus a
//! third, specially configured gateway where a test needs one). Bad requests
//! go to either gateway; each test then checks that the session still works
//! through both gateways, with its counter continuing where it was, that
//! `ping` answers, and that a second session is unaffected.
//!
//! What rmcp (the worker's MCP server) answers, checked here precisely: an
//! unknown tool is a JSON-RPC error -32602 "tool not found"; an unknown
//! method is -32601; arguments of the wrong type are an `isError` result.

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use jetway_tests::{Gateway, McpClient, NatsServer, SseParser, Worker};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const SESSION_NOT_FOUND: i64 = -32002;

/// Error codes a modern-era (2026-07-28) server uses for header and version
/// problems; a legacy server must not answer a modern probe with one of
/// them, or a dual-era client would not fall back to `initialize`.
const MODERN_ERROR_CODES: [i64; 3] = [-32020, -32021, -32022];

const ACCEPT: (&str, &str) = ("accept", "application/json, text/event-stream");
const JSON: (&str, &str) = ("content-type", "application/json");

/// What `raw_post` / `raw_request` return.
type Raw = (StatusCode, HeaderMap, Bytes);

/// Request headers for `raw_post` / `raw_request`.
type Headers<'a> = Vec<(&'static str, &'a str)>;

/// nats-server, one worker, gateways A and B.
struct Stack {
    nats: NatsServer,
    _worker: Worker,
    a: Gateway,
    b: Gateway,
}

impl Stack {
    async fn start() -> Result<Self> {
        let nats = NatsServer::start().await?;
        let url = nats.url();
        let (worker, a, b) = tokio::try_join!(
            Worker::start(&url),
            Gateway::start(&url),
            Gateway::start(&url)
        )?;
        Ok(Self {
            nats,
            _worker: worker,
            a,
            b,
        })
    }

    /// A third gateway on the same bus with extra flags.
    async fn gateway_with(&self, args: &[&str]) -> Result<Gateway> {
        Ok(Gateway::builder(&self.nats.url())
            .args(args.iter().copied())
            .start()
            .await?)
    }

    fn a(&self) -> String {
        self.a.mcp_url()
    }

    fn b(&self) -> String {
        self.b.mcp_url()
    }

    /// Two sessions (the first created on A, the second on B), each with
    /// its counter at 1.
    async fn two_sessions(&self) -> Result<(McpClient, McpClient)> {
        self.two_sessions_first_at(None).await
    }

    /// [`Stack::two_sessions`], the first negotiating `version` (batches
    /// need a 2025-03-26 session).
    async fn two_sessions_first_at(&self, version: Option<&str>) -> Result<(McpClient, McpClient)> {
        let mut params = jetway_tests::mcp::default_initialize_params();
        if let Some(v) = version {
            params["protocolVersion"] = json!(v);
        }
        let first = McpClient::initialize_with(&self.a(), params).await?;
        let second = McpClient::initialize(&self.b()).await?;
        assert_eq!(increment(&first, &self.a()).await?, 1);
        assert_eq!(increment(&second, &self.b()).await?, 1);
        Ok((first, second))
    }

    /// After bad input: `client`'s counter continues from `before` through
    /// both gateways, `ping` works, and `other`'s counter continues from
    /// `other_before`.
    async fn assert_unharmed(
        &self,
        client: &McpClient,
        before: i64,
        other: &McpClient,
        other_before: i64,
    ) -> Result<()> {
        assert_eq!(
            increment(client, &self.a()).await?,
            before + 1,
            "the session's counter continues on gateway A"
        );
        assert_eq!(
            increment(client, &self.b()).await?,
            before + 2,
            "the session's counter continues on gateway B"
        );
        let ping = client.request(&self.a(), "ping", Value::Null).await?;
        assert_eq!(ping.status, StatusCode::OK);
        assert_eq!(ping.result()?, &json!({}), "ping answers an empty result");
        assert_eq!(
            increment(other, &self.a()).await?,
            other_before + 1,
            "another session is unaffected"
        );
        Ok(())
    }
}

/// `tools/call increment_counter`; returns the new counter value.
async fn increment(client: &McpClient, url: &str) -> Result<i64> {
    let sc = client
        .call_tool_structured(url, "increment_counter", json!({}))
        .await?;
    sc["counter"]
        .as_i64()
        .with_context(|| format!("no integer counter in {sc}"))
}

/// The headers of a good POST on `client`'s session.
fn session_headers(client: &McpClient) -> Headers<'_> {
    let mut h = vec![ACCEPT, JSON];
    if let Some(sid) = client.session_id() {
        h.push(("mcp-session-id", sid));
    }
    if let Some(v) = client.protocol_version() {
        h.push(("mcp-protocol-version", v));
    }
    h
}

/// `headers` with `name` replaced by `value` (or removed for `None`).
fn with<'a>(
    headers: &[(&'static str, &'a str)],
    name: &'static str,
    value: Option<&'a str>,
) -> Headers<'a> {
    let mut h: Headers<'a> = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(name))
        .copied()
        .collect();
    if let Some(v) = value {
        h.push((name, v));
    }
    h
}

/// A `tools/call increment_counter` request body.
fn increment_request(id: i64) -> Value {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": { "name": "increment_counter", "arguments": {} }
    })
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Checks that `got` is HTTP `status` with a JSON body that is a JSON-RPC
/// error object with `code` and `id`; returns the body.
fn expect_error(what: &str, got: &Raw, status: u16, code: i64, id: &Value) -> Value {
    let (st, headers, body) = got;
    assert_eq!(
        st.as_u16(),
        status,
        "{what}: status (body {:?})",
        lossy(body)
    );
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "{what}: content-type {ct:?} (body {:?})",
        lossy(body)
    );
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {:?}", lossy(body)));
    assert_eq!(v["jsonrpc"], "2.0", "{what}: {v}");
    assert!(v.get("result").is_none(), "{what}: error has a result: {v}");
    assert_eq!(v.get("id"), Some(id), "{what}: id: {v}");
    assert_eq!(v["error"]["code"], code, "{what}: error code: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: error message: {v}"
    );
    v
}

/// POST (through gateway A), GET (through B) and DELETE (through A) with
/// `h` each get 404 with the session-not-found error.
async fn expect_no_such_session(
    s: &Stack,
    client: &McpClient,
    h: &[(&'static str, &str)],
    body: &str,
    what: &str,
) -> Result<()> {
    let got = client.raw_post(&s.a(), h, body.to_owned()).await?;
    expect_error(
        &format!("POST {what}"),
        &got,
        404,
        SESSION_NOT_FOUND,
        &Value::Null,
    );
    let get_h = with(h, "accept", Some("text/event-stream"));
    let got = client
        .raw_request(Method::GET, &s.b(), &get_h, Bytes::new())
        .await?;
    expect_error(
        &format!("GET {what}"),
        &got,
        404,
        SESSION_NOT_FOUND,
        &Value::Null,
    );
    let got = client
        .raw_request(Method::DELETE, &s.a(), h, Bytes::new())
        .await?;
    expect_error(
        &format!("DELETE {what}"),
        &got,
        404,
        SESSION_NOT_FOUND,
        &Value::Null,
    );
    Ok(())
}

/// Checks that `got` is a 202 with an empty body.
fn expect_accepted(what: &str, got: &Raw) {
    let (st, _, body) = got;
    assert_eq!(*st, StatusCode::ACCEPTED, "{what}: body {:?}", lossy(body));
    assert!(body.is_empty(), "{what}: body {:?}", lossy(body));
}

/// The JSON-RPC messages of a finished SSE body.
fn sse_messages(what: &str, got: &Raw) -> Vec<Value> {
    let (st, headers, body) = got;
    assert_eq!(*st, StatusCode::OK, "{what}: body {:?}", lossy(body));
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(ct.starts_with("text/event-stream"), "{what}: {ct:?}");
    let mut parser = SseParser::new();
    let events = parser
        .feed(body)
        .unwrap_or_else(|e| panic!("{what}: {e:#}"));
    parser.finish();
    events.into_iter().filter_map(|e| e.json).collect()
}

/// 32 lowercase hex digits that no session has: real session ids are 128
/// random bits, these are the test process id and a counter (with a marker
/// in between), so they are well-formed and unique but never issued.
fn unknown_hex32() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{:016x}{:016x}",
        u64::from(std::process::id()),
        u64::from(N.fetch_add(1, Ordering::Relaxed)) | 0xdead_0000_0000
    )
}

#[tokio::test]
async fn missing_unknown_and_malformed_session_ids() -> Result<()> {
    let s = Stack::start().await?;
    let (client, other) = s.two_sessions().await?;
    let good = session_headers(&client);
    let body = increment_request(7).to_string();

    // No Mcp-Session-Id on a non-initialize request: 400.
    let got = client
        .raw_post(&s.a(), &with(&good, "mcp-session-id", None), body.clone())
        .await?;
    expect_error("no session id", &got, 400, INVALID_REQUEST, &Value::Null);

    // Well-formed but unknown: 404 with the session-not-found code, on
    // POST, GET and DELETE alike, for partition 0 and for a partition that
    // has never existed.
    for unknown in [
        format!("0-{}", unknown_hex32()),
        format!("7-{}", unknown_hex32()),
    ] {
        let h = with(&good, "mcp-session-id", Some(&unknown));
        expect_no_such_session(&s, &client, &h, &body, &format!("unknown {unknown}")).await?;
    }

    // Any other shape names no session either: 404 with the session-not-found
    // code on POST, GET and DELETE, exactly like an unknown well-formed id,
    // so a client starts a new session. Such an id is never looked up or
    // turned into a subject: ids that would be NATS wildcards or extra
    // subject tokens next to the live session's id leave it untouched.
    let sid = client.session_id().context("session id")?;
    let long = format!("0-{}", "a".repeat(4096));
    let malformed = [
        "abc".to_owned(),
        "not-a-jetway-id".to_owned(),
        "123e4567-e89b-12d3-a456-426614174000".to_owned(),
        "".to_owned(),
        long,
        "0-ééééééééééééééééééééééééééééééé".to_owned(),
        "セッション-🙂".to_owned(),
        format!("{sid}.x"),
        format!("{sid}.>"),
        format!("0-{}.", &sid[2..33]),
        format!("0-{}*", &sid[2..33]),
        format!("0-{}>", &sid[2..33]),
        format!("{}*", &sid[..sid.len() - 1]),
        "0-*".to_owned(),
        "0-abc.*".to_owned(),
        "*".to_owned(),
        ">".to_owned(),
        sid.to_ascii_uppercase(),
        format!("00-{}", &sid[2..]),
        format!("0-{}", &sid[2..33]),
        format!("{sid}0"),
        format!("-{}", &sid[2..]),
    ];
    for bad in &malformed {
        let shown: String = bad.chars().take(80).collect();
        let h = with(&good, "mcp-session-id", Some(bad));
        expect_no_such_session(&s, &client, &h, &body, &format!("malformed {shown:?}")).await?;
    }

    // A Last-Event-ID that is not one of the gateway's event ids: 400.
    for bad in ["garbage", "0", "r.*>-1", ""] {
        let h = with(
            &with(&good, "accept", Some("text/event-stream")),
            "last-event-id",
            Some(bad),
        );
        let got = client
            .raw_request(Method::GET, &s.b(), &h, Bytes::new())
            .await?;
        expect_error(
            &format!("GET Last-Event-ID {bad:?}"),
            &got,
            400,
            INVALID_REQUEST,
            &Value::Null,
        );
    }

    s.assert_unharmed(&client, 1, &other, 1).await
}

#[tokio::test]
async fn protocol_version_header_is_checked_and_defaults_when_absent() -> Result<()> {
    let s = Stack::start().await?;
    let (client, other) = s.two_sessions().await?;
    let good = session_headers(&client);
    // Which versions are refused is `checks`' table (gateway unit tests);
    // here: a refused DELETE leaves the session alive, and the default
    // version reaches the worker.
    // DELETE with an unsupported version is refused, and does not end the
    // session.
    let got = client
        .raw_request(
            Method::DELETE,
            &s.a(),
            &with(&good, "mcp-protocol-version", Some("1999-01-01")),
            Bytes::new(),
        )
        .await?;
    expect_error(
        "DELETE version 1999",
        &got,
        400,
        INVALID_REQUEST,
        &Value::Null,
    );

    // No header means 2025-03-26, which this gateway serves: the request
    // goes through on the live session.
    let mut legacy = client.clone();
    legacy.set_protocol_version(None);
    assert_eq!(increment(&legacy, &s.a()).await?, 2);
    let got = client
        .raw_post(
            &s.b(),
            &with(&good, "mcp-protocol-version", None),
            increment_request(12).to_string(),
        )
        .await?;
    let msgs = sse_messages("no version header", &got);
    let resp = msgs
        .iter()
        .find(|m| m["id"] == 12)
        .with_context(|| format!("no response to id 12 in {msgs:?}"))?;
    assert_eq!(resp["result"]["structuredContent"]["counter"], 3);

    s.assert_unharmed(&client, 3, &other, 1).await
}

#[tokio::test]
async fn modern_era_probe_gets_a_legacy_400_and_the_client_falls_back() -> Result<()> {
    let s = Stack::start().await?;
    let client = McpClient::new();
    // What a dual-era client (e.g. the Python MCP SDK 2.x) sends first: a
    // 2026-07-28 request with per-request metadata and no session.
    let probe = json!({
        "jsonrpc": "2.0", "id": 1, "method": "server/discover",
        "params": { "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28" } }
    });
    let headers = [
        ACCEPT,
        JSON,
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "server/discover"),
    ];
    for url in [s.a(), s.b()] {
        let got = client.raw_post(&url, &headers, probe.to_string()).await?;
        let v = expect_error("modern probe", &got, 400, INVALID_REQUEST, &Value::Null);
        let code = v["error"]["code"].as_i64().context("code")?;
        assert!(
            !MODERN_ERROR_CODES.contains(&code),
            "a legacy server must not answer with a modern error code: {v}"
        );
        assert_eq!(
            got.1.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        assert!(
            got.1.get("mcp-session-id").is_none(),
            "no session is minted for a probe"
        );
    }

    // The fallback: initialize and carry on in the legacy era.
    let (client, other) = s.two_sessions().await?;
    assert_eq!(client.protocol_version(), Some("2025-11-25"));
    s.assert_unharmed(&client, 1, &other, 1).await
}

#[tokio::test]
async fn accept_and_content_type_are_checked() -> Result<()> {
    let s = Stack::start().await?;
    let (client, other) = s.two_sessions().await?;
    let good = session_headers(&client);
    let body = increment_request(21).to_string();
    // The 406 and 415 cases are `checks`' table (gateway unit tests); here:
    // what the router refuses, and that parameters pass through to the
    // worker.
    // Methods other than POST, GET and DELETE: 405 with the allowed ones.
    for method in [Method::PUT, Method::PATCH] {
        let got = client
            .raw_request(method.clone(), &s.a(), &good, body.clone())
            .await?;
        assert_eq!(got.0, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        let allow = got.1.get("allow").and_then(|v| v.to_str().ok());
        assert!(
            allow.is_some_and(|a| a.contains("POST") && a.contains("GET") && a.contains("DELETE")),
            "{method}: Allow {allow:?}"
        );
    }

    // Media-type parameters and case are fine.
    let got = client
        .raw_post(
            &s.a(),
            &with(
                &with(
                    &good,
                    "content-type",
                    Some("Application/JSON; charset=utf-8"),
                ),
                "accept",
                Some("text/event-stream;q=0.9, application/json"),
            ),
            increment_request(22).to_string(),
        )
        .await?;
    let msgs = sse_messages("content-type with charset", &got);
    let resp = msgs
        .iter()
        .find(|m| m["id"] == 22)
        .with_context(|| format!("no response to id 22 in {msgs:?}"))?;
    assert_eq!(resp["result"]["structuredContent"]["counter"], 2);

    s.assert_unharmed(&client, 2, &other, 1).await
}

#[tokio::test]
async fn origins_are_checked() -> Result<()> {
    let s = Stack::start().await?;
    let (client, other) = s.two_sessions().await?;
    let good = session_headers(&client);

    // A foreign origin: 403 on POST, GET and DELETE; the DELETE does not end
    // the session.
    let evil = with(&good, "origin", Some("http://evil.example.com"));
    // Which origins get 403 is `checks`' table (gateway unit tests); here:
    // a refused DELETE does not end the session, a refused initialize
    // creates none, and allowed origins reach the worker.
    let got = client
        .raw_request(Method::DELETE, &s.a(), &evil, Bytes::new())
        .await?;
    expect_error(
        "DELETE evil origin",
        &got,
        403,
        INVALID_REQUEST,
        &Value::Null,
    );
    // Nor may a foreign origin start a session.
    let init = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": jetway_tests::mcp::default_initialize_params()
    });
    let got = client
        .raw_post(
            &s.a(),
            &[ACCEPT, JSON, ("origin", "http://evil.example.com")],
            init.to_string(),
        )
        .await?;
    expect_error(
        "initialize evil origin",
        &got,
        403,
        INVALID_REQUEST,
        &Value::Null,
    );
    assert!(got.1.get("mcp-session-id").is_none());

    // Loopback origins (any port) are allowed by default.
    for ok in [
        "http://localhost:1234",
        "http://127.0.0.1:8080",
        "http://localhost",
    ] {
        let got = client
            .raw_post(
                &s.a(),
                &with(&good, "origin", Some(ok)),
                json!({"jsonrpc": "2.0", "id": "p", "method": "ping"}).to_string(),
            )
            .await?;
        let msgs = sse_messages(&format!("Origin {ok}"), &got);
        assert!(
            msgs.iter()
                .any(|m| m["id"] == "p" && m["result"] == json!({})),
            "Origin {ok}: {msgs:?}"
        );
    }

    // A configured origin replaces the loopback defaults.
    let c = s
        .gateway_with(&["--allowed-origins", "https://app.example.com"])
        .await?;
    let c_url = c.mcp_url();
    let got = client
        .raw_post(
            &c_url,
            &with(&good, "origin", Some("https://app.example.com")),
            increment_request(32).to_string(),
        )
        .await?;
    let msgs = sse_messages("configured origin", &got);
    let resp = msgs
        .iter()
        .find(|m| m["id"] == 32)
        .with_context(|| format!("no response to id 32 in {msgs:?}"))?;
    assert_eq!(resp["result"]["structuredContent"]["counter"], 2);
    // A request without Origin (not from a browser) is served there too.
    assert_eq!(increment(&client, &c_url).await?, 3);

    s.assert_unharmed(&client, 3, &other, 1).await
}

#[tokio::test]
async fn oversized_body_is_413() -> Result<()> {
    let s = Stack::start().await?;
    let small = s.gateway_with(&["--max-body-bytes", "1024"]).await?;
    let url = small.mcp_url();
    let (client, other) = s.two_sessions().await?;
    let good = session_headers(&client);

    // A valid request of 4 KiB.
    let mut big = increment_request(41);
    big["params"]["_meta"] = json!({ "padding": "x".repeat(4096) });
    let body = big.to_string();
    assert!(body.len() >= 4096);
    let got = client.raw_post(&url, &good, body.clone()).await?;
    expect_error("4 KiB body", &got, 413, INVALID_REQUEST, &Value::Null);

    // The same request is fine on a gateway with the default limit, and a
    // small one is fine on the limited gateway.
    let got = client.raw_post(&s.a(), &good, body).await?;
    let msgs = sse_messages("4 KiB body, default limit", &got);
    let resp = msgs
        .iter()
        .find(|m| m["id"] == 41)
        .with_context(|| format!("no response to id 41 in {msgs:?}"))?;
    assert_eq!(resp["result"]["structuredContent"]["counter"], 2);
    assert_eq!(increment(&client, &url).await?, 3);

    s.assert_unharmed(&client, 3, &other, 1).await
}

#[tokio::test]
async fn batches_only_in_2025_03_26() -> Result<()> {
    let s = Stack::start().await?;
    let (client, other) = s.two_sessions_first_at(Some("2025-03-26")).await?;
    let good = session_headers(&client);
    let v2025_03 = with(&good, "mcp-protocol-version", Some("2025-03-26"));
    let batch = json!([
        increment_request(61),
        { "jsonrpc": "2.0", "method": "notifications/roots/list_changed" },
        increment_request(62),
    ]);

    // 2025-03-26: one SSE stream with both responses.
    let got = client
        .raw_post(&s.a(), &v2025_03, batch.to_string())
        .await?;
    let msgs = sse_messages("batch in 2025-03-26", &got);
    let mut counters = Vec::new();
    for id in [61, 62] {
        let resp = msgs
            .iter()
            .find(|m| m["id"] == id && (m.get("result").is_some() || m.get("error").is_some()))
            .with_context(|| format!("no response to id {id} in {msgs:?}"))?;
        counters.push(
            resp["result"]["structuredContent"]["counter"]
                .as_i64()
                .with_context(|| format!("no counter in {resp}"))?,
        );
    }
    counters.sort_unstable();
    assert_eq!(counters, [2, 3], "both requests of the batch ran once");

    // Batches refused by version, empty or holding `initialize` on a
    // session are `checks`' table (gateway unit tests).
    // Without the header the version is 2025-03-26, so a batch is fine.
    let got = client
        .raw_post(
            &s.b(),
            &with(&good, "mcp-protocol-version", None),
            json!([increment_request(63)]).to_string(),
        )
        .await?;
    let msgs = sse_messages("batch without version header", &got);
    let resp = msgs
        .iter()
        .find(|m| m["id"] == 63)
        .with_context(|| format!("no response to id 63 in {msgs:?}"))?;
    assert_eq!(resp["result"]["structuredContent"]["counter"], 4);

    // A batch with one invalid member is refused whole: the valid request
    // in it does not run (the counter below proves it).
    let got = client
        .raw_post(
            &s.a(),
            &v2025_03,
            json!([increment_request(64), {"jsonrpc": "2.0", "id": 65, "method": 5}]).to_string(),
        )
        .await?;
    expect_error(
        "batch with an invalid member",
        &got,
        400,
        INVALID_REQUEST,
        &json!(65),
    );

    let init = json!({
        "jsonrpc": "2.0", "id": 66, "method": "initialize",
        "params": jetway_tests::mcp::default_initialize_params()
    });
    // initialize must not be batched: no session is created.
    let no_session = [ACCEPT, JSON, ("mcp-protocol-version", "2025-03-26")];
    for body in [
        json!([init, {"jsonrpc": "2.0", "method": "notifications/initialized"}]),
        json!([init, {"jsonrpc": "2.0", "id": 68, "method": "ping"}]),
    ] {
        let got = client
            .raw_post(&s.b(), &no_session, body.to_string())
            .await?;
        expect_error(
            &format!("sessionless batch {body}"),
            &got,
            400,
            INVALID_REQUEST,
            &Value::Null,
        );
        assert!(got.1.get("mcp-session-id").is_none());
    }

    // Only notifications and responses: 202, nothing to stream.
    let got = client
        .raw_post(
            &s.a(),
            &v2025_03,
            json!([
                { "jsonrpc": "2.0", "method": "notifications/roots/list_changed" },
                { "jsonrpc": "2.0", "method": "notifications/roots/list_changed" },
            ])
            .to_string(),
        )
        .await?;
    expect_accepted("batch of notifications", &got);
    let got = client
        .raw_post(
            &s.a(),
            &v2025_03,
            json!([
                { "jsonrpc": "2.0", "method": "notifications/roots/list_changed" },
                { "jsonrpc": "2.0", "id": "no-such-request", "result": {} },
            ])
            .to_string(),
        )
        .await?;
    expect_accepted("batch of a notification and a response", &got);

    s.assert_unharmed(&client, 4, &other, 1).await
}

#[tokio::test]
async fn notifications_and_client_responses_get_202() -> Result<()> {
    let s = Stack::start().await?;
    let (client, other) = s.two_sessions().await?;
    let good = session_headers(&client);

    let cases = [
        (
            "notification",
            json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}),
        ),
        (
            "unknown notification",
            json!({"jsonrpc": "2.0", "method": "notifications/no_such_thing", "params": {}}),
        ),
        (
            "cancellation of an unknown request",
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                   "params": {"requestId": 999_999, "reason": "test"}}),
        ),
        (
            "response to an unknown server request",
            json!({"jsonrpc": "2.0", "id": "srv-unknown", "result": {}}),
        ),
        (
            "error response to an unknown server request",
            json!({"jsonrpc": "2.0", "id": 12_345, "error": {"code": -1, "message": "no"}}),
        ),
    ];
    for (what, msg) in &cases {
        for url in [s.a(), s.b()] {
            let got = client.raw_post(&url, &good, msg.to_string()).await?;
            expect_accepted(what, &got);
        }
    }
    // The harness's helpers agree.
    let ex = client
        .notify(&s.a(), "notifications/roots/list_changed", Value::Null)
        .await?;
    assert_eq!(ex.status, StatusCode::ACCEPTED);
    assert!(ex.body.is_empty());
    let ex = client
        .respond(&s.b(), &json!("srv-unknown-2"), json!({}))
        .await?;
    assert_eq!(ex.status, StatusCode::ACCEPTED);
    assert!(ex.body.is_empty());

    // A notification still needs a live session.
    let got = client
        .raw_post(
            &s.a(),
            &with(&good, "mcp-session-id", None),
            cases[0].1.to_string(),
        )
        .await?;
    expect_error(
        "notification without session",
        &got,
        400,
        INVALID_REQUEST,
        &Value::Null,
    );
    let unknown = format!("0-{}", unknown_hex32());
    let got = client
        .raw_post(
            &s.a(),
            &with(&good, "mcp-session-id", Some(&unknown)),
            cases[0].1.to_string(),
        )
        .await?;
    expect_error(
        "notification, unknown session",
        &got,
        404,
        SESSION_NOT_FOUND,
        &Value::Null,
    );
    let got = client
        .raw_post(
            &s.b(),
            &with(&good, "mcp-session-id", Some("not-a-jetway-id")),
            cases[0].1.to_string(),
        )
        .await?;
    expect_error(
        "notification, malformed session",
        &got,
        404,
        SESSION_NOT_FOUND,
        &Value::Null,
    );

    s.assert_unharmed(&client, 1, &other, 1).await
}

#[tokio::test]
async fn json_response_mode_answers_with_a_json_object() -> Result<()> {
    let s = Stack::start().await?;
    let json_gw = s.gateway_with(&["--json-response"]).await?;
    let url = json_gw.mcp_url();
    let (client, other) = s.two_sessions_first_at(Some("2025-03-26")).await?;
    let good = session_headers(&client);

    let got = client
        .raw_post(&url, &good, increment_request(71).to_string())
        .await?;
    let (status, headers, body) = &got;
    assert_eq!(*status, StatusCode::OK, "body {:?}", lossy(body));
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let v: Value = serde_json::from_slice(body).context("JSON body")?;
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], 71);
    assert!(v.get("error").is_none(), "{v}");
    assert_eq!(v["result"]["structuredContent"]["counter"], 2);
    assert_eq!(v["result"]["isError"], json!(false), "{v}");

    // The harness reads it too.
    let ex = client
        .call_tool(&url, "increment_counter", json!({}))
        .await?;
    assert!(!ex.is_sse());
    assert_eq!(ex.structured_content()?["counter"], 3);

    // Errors the worker returns come back as JSON as well.
    let ex = client.request(&url, "foo/bar", json!({})).await?;
    assert_eq!(ex.status, StatusCode::OK);
    assert!(!ex.is_sse());
    assert_eq!(ex.error_code(), Some(METHOD_NOT_FOUND), "{:?}", ex.response);

    // A 2025-03-26 batch: an array of both responses.
    let got = client
        .raw_post(
            &url,
            &with(&good, "mcp-protocol-version", Some("2025-03-26")),
            json!([increment_request(72), increment_request(73)]).to_string(),
        )
        .await?;
    let (status, headers, body) = &got;
    assert_eq!(*status, StatusCode::OK, "body {:?}", lossy(body));
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let v: Value = serde_json::from_slice(body).context("JSON body")?;
    let items = v.as_array().with_context(|| format!("not an array: {v}"))?;
    assert_eq!(items.len(), 2, "{v}");
    let mut counters: Vec<(i64, i64)> = items
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap_or(-1),
                r["result"]["structuredContent"]["counter"]
                    .as_i64()
                    .unwrap_or(-1),
            )
        })
        .collect();
    counters.sort_unstable();
    assert_eq!(counters.iter().map(|c| c.0).collect::<Vec<_>>(), [72, 73]);
    let mut values: Vec<i64> = counters.iter().map(|c| c.1).collect();
    values.sort_unstable();
    assert_eq!(values, [4, 5]);

    // Edge errors are the same in JSON mode.
    let got = client.raw_post(&url, &good, r#"{"jsonrpc":"#).await?;
    expect_error("malformed JSON", &got, 400, PARSE_ERROR, &Value::Null);

    s.assert_unharmed(&client, 5, &other, 1).await
}

#[tokio::test]
async fn unknown_tool_and_unknown_method_are_json_rpc_errors() -> Result<()> {
    let s = Stack::start().await?;
    let (client, other) = s.two_sessions().await?;

    // rmcp's tool router answers an unknown tool with a JSON-RPC error
    // (invalid params, "tool not found"), not an isError result.
    let ex = client.call_tool(&s.a(), "no_such_tool", json!({})).await?;
    assert_eq!(ex.status, StatusCode::OK);
    assert!(ex.is_sse(), "answered on the request's SSE stream");
    let err = ex
        .error()
        .with_context(|| format!("expected a JSON-RPC error, got {:?}", ex.response))?;
    assert_eq!(err["code"], INVALID_PARAMS, "{err}");
    assert_eq!(err["message"], "tool not found", "{err}");
    assert!(!ex.is_tool_error());

    // An unknown method: method not found, on the SSE stream.
    let ex = client.request(&s.b(), "foo/bar", json!({})).await?;
    assert_eq!(ex.status, StatusCode::OK);
    assert!(ex.is_sse());
    assert_eq!(ex.error_code(), Some(METHOD_NOT_FOUND), "{:?}", ex.response);
    let ex = client.request(&s.a(), "foo/bar", Value::Null).await?;
    assert_eq!(ex.error_code(), Some(METHOD_NOT_FOUND), "{:?}", ex.response);

    // A known tool with arguments of the wrong shape: rmcp reports failed
    // argument deserialization as a tool execution error (isError), which
    // the model can see and correct.
    let ex = client
        .call_tool(&s.a(), "add_note", json!({"note": 5}))
        .await?;
    assert_eq!(ex.status, StatusCode::OK);
    assert!(ex.is_tool_error(), "{:?}", ex.response);
    let text = ex.result()?["content"][0]["text"].as_str().unwrap_or("");
    assert!(
        text.starts_with("failed to deserialize parameters"),
        "{text:?}"
    );

    s.assert_unharmed(&client, 1, &other, 1).await
}

/// One bad POST and what it must get back.
struct BadPost<'a> {
    what: &'static str,
    headers: Headers<'a>,
    body: String,
    status: u16,
    code: i64,
    id: Value,
}

/// Every kind of bad input in a row on one session, twice (through each
/// gateway), then the session and another one still work and the counter
/// continues.
#[tokio::test]
async fn a_session_survives_a_barrage_of_bad_input() -> Result<()> {
    let s = Stack::start().await?;
    let (client, other) = s.two_sessions().await?;
    let mut counter = 1;
    let good = session_headers(&client);
    let sid = client.session_id().context("session id")?.to_owned();
    let unknown = format!("0-{}", unknown_hex32());
    let req = increment_request(81).to_string();
    let bad_post = |what, headers, body: &str, status, code, id| BadPost {
        what,
        headers,
        body: body.to_owned(),
        status,
        code,
        id,
    };
    let null = Value::Null;
    let cases = [
        bad_post(
            "no session",
            with(&good, "mcp-session-id", None),
            &req,
            400,
            INVALID_REQUEST,
            null.clone(),
        ),
        bad_post(
            "unknown session",
            with(&good, "mcp-session-id", Some(&unknown)),
            &req,
            404,
            SESSION_NOT_FOUND,
            null.clone(),
        ),
        bad_post(
            "malformed session",
            with(&good, "mcp-session-id", Some("0-*.>")),
            &req,
            404,
            SESSION_NOT_FOUND,
            null.clone(),
        ),
        bad_post(
            "bad version",
            with(&good, "mcp-protocol-version", Some("1999-01-01")),
            &req,
            400,
            INVALID_REQUEST,
            null.clone(),
        ),
        bad_post(
            "JSON-only Accept",
            with(&good, "accept", Some("application/json")),
            &req,
            406,
            INVALID_REQUEST,
            null.clone(),
        ),
        bad_post(
            "text/plain",
            with(&good, "content-type", Some("text/plain")),
            &req,
            415,
            INVALID_REQUEST,
            null.clone(),
        ),
        bad_post(
            "evil origin",
            with(&good, "origin", Some("http://evil.example.com")),
            &req,
            403,
            INVALID_REQUEST,
            null.clone(),
        ),
        bad_post(
            "parse error",
            good.clone(),
            r#"{"jsonrpc":"#,
            400,
            PARSE_ERROR,
            null.clone(),
        ),
        bad_post(
            "params 3",
            good.clone(),
            &json!({"jsonrpc": "2.0", "id": 82, "method": "ping", "params": 3}).to_string(),
            400,
            INVALID_REQUEST,
            json!(82),
        ),
        bad_post(
            "batch in 2025-11-25",
            good.clone(),
            &json!([increment_request(83)]).to_string(),
            400,
            INVALID_REQUEST,
            null.clone(),
        ),
        bad_post(
            "empty batch",
            with(&good, "mcp-protocol-version", Some("2025-03-26")),
            "[]",
            400,
            INVALID_REQUEST,
            null.clone(),
        ),
    ];
    for url in [s.a(), s.b()] {
        for case in &cases {
            let got = client
                .raw_post(&url, &case.headers, case.body.clone())
                .await?;
            expect_error(case.what, &got, case.status, case.code, &case.id);
        }
        let ex = client.call_tool(&url, "no_such_tool", json!({})).await?;
        assert_eq!(ex.error_code(), Some(INVALID_PARAMS), "{:?}", ex.response);
        let ex = client.request(&url, "foo/bar", json!({})).await?;
        assert_eq!(ex.error_code(), Some(METHOD_NOT_FOUND), "{:?}", ex.response);
        let note = json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"});
        let got = client.raw_post(&url, &good, note.to_string()).await?;
        expect_accepted("notification", &got);
        counter += 1;
        assert_eq!(increment(&client, &url).await?, counter);
    }
    ensure!(client.session_id() == Some(sid.as_str()));

    s.assert_unharmed(&client, counter, &other, 1).await?;
    // A third session, started after all of it, starts from zero.
    let third = McpClient::initialize(&s.b()).await?;
    assert_eq!(increment(&third, &s.a()).await?, 1);
    Ok(())
}

/// A one-element batch holding `initialize` is still a batch, and
/// `initialize` must not be part of one (2025-03-26 lifecycle): 400, and no
/// session is created.
#[tokio::test]
async fn one_element_batch_with_initialize_is_refused() -> Result<()> {
    let s = Stack::start().await?;
    let client = McpClient::new();
    let init = json!([{
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": jetway_tests::mcp::default_initialize_params()
    }]);
    let got = client
        .raw_post(
            &s.a(),
            &[ACCEPT, JSON, ("mcp-protocol-version", "2025-03-26")],
            init.to_string(),
        )
        .await?;
    expect_error(
        "batch [initialize]",
        &got,
        400,
        INVALID_REQUEST,
        &Value::Null,
    );
    assert!(
        got.1.get("mcp-session-id").is_none(),
        "no session for a refused initialize"
    );
    Ok(())
}
