//! The edge checks, unit by unit and as one table of requests.

use super::*;
use axum::http::HeaderValue;

fn with(name: &'static str, value: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(name, HeaderValue::from_static(value));
    h
}

#[test]
fn accept_needs_both_media_types_for_post() {
    assert!(accept_post(&with("accept", "application/json, text/event-stream")).is_ok());
    assert!(
        accept_post(&with(
            "accept",
            "text/event-stream;q=1, application/json;q=0.9"
        ))
        .is_ok()
    );
    assert!(accept_post(&with("accept", "*/*")).is_ok());
    assert!(accept_post(&with("accept", "application/json")).is_err());
    assert!(accept_post(&HeaderMap::new()).is_err());
    assert!(accept_get(&with("accept", "text/event-stream")).is_ok());
    assert!(accept_get(&with("accept", "application/json")).is_err());
}

#[test]
fn protocol_version_defaults_and_refuses_unknown() {
    assert_eq!(
        protocol_version(&HeaderMap::new()).ok(),
        Some(ProtocolVersion::V2025_03_26)
    );
    assert_eq!(
        protocol_version(&with("mcp-protocol-version", "2025-11-25")).ok(),
        Some(ProtocolVersion::V2025_11_25)
    );
    assert!(protocol_version(&with("mcp-protocol-version", "2026-07-28")).is_err());
    assert!(protocol_version(&with("mcp-protocol-version", "banana")).is_err());
    assert!(protocol_version(&with("mcp-protocol-version", "2024-11-05")).is_err());
}

#[test]
fn only_a_missing_session_header_is_an_error() {
    assert!(matches!(
        session(&Service::default(), &HeaderMap::new()),
        Err(GatewayError::MissingSession)
    ));
    let id = "0-0123456789abcdef0123456789abcdef";
    assert_eq!(
        session(&Service::default(), &with("mcp-session-id", id))
            .ok()
            .flatten(),
        SessionId::parse(&Service::default(), id).ok()
    );
    let long = format!("0-{}", "a".repeat(10_000));
    let junk: [&[u8]; 8] = [
        b"abc",
        b"",
        b"not-a-jetway-id",
        b"0-abc.*",
        b"123e4567-e89b-12d3-a456-426614174000",
        long.as_bytes(),
        "0-\u{e9}\u{e9}".as_bytes(),
        b"\xff\xfe\x80junk",
    ];
    for raw in junk {
        let mut h = HeaderMap::new();
        let value = HeaderValue::from_bytes(raw).expect("no control characters");
        h.insert(SESSION_HEADER, value);
        assert!(
            matches!(session(&Service::default(), &h), Ok(None)),
            "{:?} names no session",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn last_event_id_edge_cases_are_400_never_accepted() {
    let ok = |v: &'static str| last_event_id(&with(LAST_EVENT_ID, v));
    assert!(matches!(ok("get-5"), Ok(Some(_))));
    for bad in [
        "get-",
        "-5",
        "get-99999999999999999999999",
        "get-18446744073709551616",
        "get-0",
        "get - 5",
        "get-5\t6",
        "get-5-6",
        "get-+5",
        "",
    ] {
        assert!(
            matches!(ok(bad), Err(GatewayError::MalformedEventId)),
            "{bad:?}: {:?}",
            ok(bad)
        );
    }
    let mut two = HeaderMap::new();
    two.append(LAST_EVENT_ID, HeaderValue::from_static("get-5"));
    two.append(LAST_EVENT_ID, HeaderValue::from_static("get-6"));
    assert!(matches!(
        last_event_id(&two),
        Err(GatewayError::MalformedEventId)
    ));
}

#[test]
fn content_type_allows_parameters() {
    assert!(content_type(&with("content-type", "application/json; charset=utf-8")).is_ok());
    assert!(content_type(&with("content-type", "text/plain")).is_err());
    assert!(content_type(&HeaderMap::new()).is_err());
}

// ---- The table: one request per row, through `post`, `get` or `delete`. ----

use crate::config::Args;
use clap::Parser;
use jetway_shared::jsonrpc::{INVALID_REQUEST, PARSE_ERROR};
use serde_json::json;

const SID: &str = "0-0123456789abcdef0123456789abcdef";

#[derive(Debug, Clone, Copy)]
enum Method {
    Post,
    Get,
    Delete,
}

#[derive(Debug, Clone, Copy)]
enum Gw {
    /// Default settings, a body limit of 4 KiB.
    Default,
    /// `--allowed-origins https://app.example.com`.
    Origins,
}

/// What a row must get.
#[derive(Debug)]
enum Want {
    /// The error the client sees: HTTP status, JSON-RPC code, and the id
    /// echoed in it.
    Error(u16, i64, Value),
    /// A new session negotiating this version.
    New(ProtocolVersion),
    /// A POST for a session (`found`: the header names one of ours) with
    /// this many messages, as a batch or not.
    Existing {
        found: bool,
        messages: usize,
        batch: bool,
    },
    /// A GET for a session, resuming or not.
    Get { found: bool, resume: bool },
    /// A DELETE for a session.
    Delete { found: bool },
}

struct Row {
    name: &'static str,
    method: Method,
    gw: Gw,
    /// Changes to the method's good headers: `None` removes one.
    headers: Vec<(&'static str, Option<&'static str>)>,
    /// `None`: over the body limit.
    body: Option<Vec<u8>>,
    want: Want,
}

fn config(gw: Gw) -> Config {
    let mut argv = vec!["jetway-gateway", "--max-body-bytes", "4096"];
    if let Gw::Origins = gw {
        argv.extend(["--allowed-origins", "https://app.example.com"]);
    }
    let args = Args::try_parse_from(argv).expect("valid flags");
    Config::load(&args).expect("valid settings")
}

fn good_headers(method: Method) -> Vec<(&'static str, &'static str)> {
    let mut h = vec![(SESSION_HEADER, SID), (VERSION_HEADER, "2025-11-25")];
    match method {
        Method::Post => h.extend([
            ("accept", "application/json, text/event-stream"),
            ("content-type", "application/json"),
        ]),
        Method::Get => h.push(("accept", "text/event-stream")),
        Method::Delete => {}
    }
    h
}

fn headers_of(row: &Row) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in good_headers(row.method) {
        h.insert(name, HeaderValue::from_static(value));
    }
    for (name, value) in &row.headers {
        match value {
            Some(v) => {
                h.insert(*name, HeaderValue::from_static(v));
            }
            None => {
                h.remove(*name);
            }
        }
    }
    h
}

/// Runs one row; `Err` says how it went wrong.
fn run(row: Row) -> Result<(), String> {
    let config = config(row.gw);
    let service = Service::default();
    let limits = Limits {
        config: &config,
        service: &service,
    };
    let h = headers_of(&row);
    let body = match row.body {
        Some(b) => Body::Read(Bytes::from(b)),
        None => Body::OverLimit,
    };
    let sid = SessionId::parse(&service, SID).ok();
    let got: Result<Want, GatewayError> = match row.method {
        Method::Post => post(&h, body, limits).map(|c| match c.target {
            Target::New { requested, .. } => Want::New(requested),
            Target::Existing(s) => Want::Existing {
                found: s == sid && s.is_some(),
                messages: c.messages.len(),
                batch: c.batch,
            },
        }),
        Method::Get => get(&h, limits).map(|c| Want::Get {
            found: c.session.is_some(),
            resume: c.resume.is_some(),
        }),
        Method::Delete => delete(&h, limits).map(|c| Want::Delete {
            found: c.session.is_some(),
        }),
    };
    let ok = match (&row.want, &got) {
        (Want::Error(status, code, id), Err(e)) => {
            let echoed = match e {
                GatewayError::InvalidRequest(_, Some(id)) => id.clone(),
                _ => Value::Null,
            };
            e.status().as_u16() == *status && e.code() == *code && &echoed == id
        }
        (Want::New(a), Ok(Want::New(b))) => a == b,
        (
            Want::Existing {
                found: a,
                messages: m,
                batch: b,
            },
            Ok(Want::Existing {
                found: a2,
                messages: m2,
                batch: b2,
            }),
        ) => a == a2 && m == m2 && b == b2,
        (
            Want::Get {
                found: a,
                resume: r,
            },
            Ok(Want::Get {
                found: a2,
                resume: r2,
            }),
        ) => a == a2 && r == r2,
        (Want::Delete { found: a }, Ok(Want::Delete { found: a2 })) => a == a2,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        let got = got.map_err(|e| format!("{} {} {e}", e.status(), e.code()));
        Err(format!("{}: want {:?}, got {got:?}", row.name, row.want))
    }
}

// One row a line: the table reads as a table.
#[rustfmt::skip]
fn rows() -> Vec<Row> {
    use Method::*;
    let null = Value::Null;
    let err = |status, code| Want::Error(status, code, Value::Null);
    let existing = |messages, batch| Want::Existing { found: true, messages, batch };
    let unknown = Want::Existing { found: false, messages: 1, batch: false };
    let j = |v: Value| Some(v.to_string().into_bytes());
    let t = |s: &str| Some(s.as_bytes().to_vec());
    let call = |id: i64| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "increment_counter", "arguments": {}}});
    let ping = json!({"jsonrpc": "2.0", "id": "p", "method": "ping"});
    let note = json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"});
    let init = |version: &str| json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": version, "capabilities": {},
                   "clientInfo": {"name": "t", "version": "1"}}});
    let v0326 = (VERSION_HEADER, Some("2025-03-26"));
    let no_sid = (SESSION_HEADER, None);
    let big_init = {
        let mut big = init("2025-11-25");
        big["params"]["clientInfo"]["name"] = json!("x".repeat(70_000));
        big
    };
    let evil = ("origin", Some("http://evil.example.com"));
    let row = |name, method, headers: Vec<(&'static str, Option<&'static str>)>, body, want| Row {
        name, method, gw: Gw::Default, headers, body, want,
    };
    let configured = |name, headers: Vec<(&'static str, Option<&'static str>)>, want| Row {
        name, method: Post, gw: Gw::Origins, headers, body: j(call(1)), want,
    };
    vec![
        // Origin (403), before anything else.
        row("POST foreign origin", Post, vec![evil], j(call(1)), err(403, INVALID_REQUEST)),
        row("POST origin posing as localhost", Post, vec![("origin", Some("http://localhost.evil.example.com"))], j(call(1)), err(403, INVALID_REQUEST)),
        row("POST https://localhost", Post, vec![("origin", Some("https://localhost"))], j(call(1)), err(403, INVALID_REQUEST)),
        row("POST origin null", Post, vec![("origin", Some("null"))], j(call(1)), err(403, INVALID_REQUEST)),
        row("initialize from a foreign origin", Post, vec![no_sid, evil], j(init("2025-11-25")), err(403, INVALID_REQUEST)),
        row("foreign origin over the body limit", Post, vec![evil], None, err(403, INVALID_REQUEST)),
        row("POST loopback origin with a port", Post, vec![("origin", Some("http://localhost:1234"))], j(ping.clone()), existing(1, false)),
        row("POST 127.0.0.1 origin", Post, vec![("origin", Some("http://127.0.0.1:8080"))], j(ping.clone()), existing(1, false)),
        row("POST http://localhost", Post, vec![("origin", Some("http://localhost"))], j(ping.clone()), existing(1, false)),
        configured("configured origin", vec![("origin", Some("https://app.example.com"))], existing(1, false)),
        configured("configured gateway, no origin", vec![], existing(1, false)),
        configured("configured gateway, foreign origin", vec![evil], err(403, INVALID_REQUEST)),
        configured("configured gateway, suffix origin", vec![("origin", Some("https://app.example.com.evil.example.com"))], err(403, INVALID_REQUEST)),
        configured("configured gateway, other scheme", vec![("origin", Some("http://app.example.com"))], err(403, INVALID_REQUEST)),
        configured("configured gateway, loopback no longer allowed", vec![("origin", Some("http://localhost"))], err(403, INVALID_REQUEST)),
        // Accept (406) and Content-Type (415).
        row("POST Accept: application/json", Post, vec![("accept", Some("application/json"))], j(call(1)), err(406, INVALID_REQUEST)),
        row("POST Accept: text/event-stream", Post, vec![("accept", Some("text/event-stream"))], j(call(1)), err(406, INVALID_REQUEST)),
        row("POST Accept: text/html", Post, vec![("accept", Some("text/html"))], j(call(1)), err(406, INVALID_REQUEST)),
        row("POST without Accept", Post, vec![("accept", None)], j(call(1)), err(406, INVALID_REQUEST)),
        row("POST Accept: */*", Post, vec![("accept", Some("*/*"))], j(call(1)), existing(1, false)),
        row("POST Accept with q and order", Post, vec![("accept", Some("text/event-stream;q=0.9, application/json"))], j(call(1)), existing(1, false)),
        row("POST Content-Type: text/plain", Post, vec![("content-type", Some("text/plain"))], j(call(1)), err(415, INVALID_REQUEST)),
        row("POST without Content-Type", Post, vec![("content-type", None)], j(call(1)), err(415, INVALID_REQUEST)),
        row("POST Content-Type: application/jsonx", Post, vec![("content-type", Some("application/jsonx"))], j(call(1)), err(415, INVALID_REQUEST)),
        row("POST Content-Type with charset and case", Post, vec![("content-type", Some("Application/JSON; charset=utf-8"))], j(call(1)), existing(1, false)),
        row("bad Accept wins over bad Content-Type", Post, vec![("accept", Some("text/html")), ("content-type", Some("text/plain"))], j(call(1)), err(406, INVALID_REQUEST)),
        // Protocol version (400).
        row("version 1999-01-01", Post, vec![(VERSION_HEADER, Some("1999-01-01"))], j(call(1)), err(400, INVALID_REQUEST)),
        row("version 2024-11-05 on Streamable HTTP", Post, vec![(VERSION_HEADER, Some("2024-11-05"))], j(call(1)), err(400, INVALID_REQUEST)),
        row("version banana", Post, vec![(VERSION_HEADER, Some("banana"))], j(call(1)), err(400, INVALID_REQUEST)),
        row("empty version", Post, vec![(VERSION_HEADER, Some(""))], j(call(1)), err(400, INVALID_REQUEST)),
        row("modern-era probe version", Post, vec![(VERSION_HEADER, Some("2026-07-28"))], j(call(1)), err(400, INVALID_REQUEST)),
        row("no version header: 2025-03-26", Post, vec![(VERSION_HEADER, None)], j(call(1)), existing(1, false)),
        row("version 2025-06-18", Post, vec![(VERSION_HEADER, Some("2025-06-18"))], j(call(1)), existing(1, false)),
        row("bad version wins over an oversized body", Post, vec![(VERSION_HEADER, Some("banana"))], None, err(400, INVALID_REQUEST)),
        // Body size (413) and JSON (parse error).
        row("body over the limit", Post, vec![], None, err(413, INVALID_REQUEST)),
        row("truncated JSON", Post, vec![], t(r#"{"jsonrpc":"#), err(400, PARSE_ERROR)),
        row("empty body", Post, vec![], t(""), err(400, PARSE_ERROR)),
        row("not JSON", Post, vec![], t("not json"), err(400, PARSE_ERROR)),
        row("trailing text", Post, vec![], t(r#"{"jsonrpc":"2.0","id":1,"method":"ping"} trailing"#), err(400, PARSE_ERROR)),
        row("byte order mark", Post, vec![], t("\u{feff}{}"), err(400, PARSE_ERROR)),
        row("invalid UTF-8", Post, vec![], Some(b"{\"jsonrpc\":\"\xff\"}".to_vec()), err(400, PARSE_ERROR)),
        row("100 000 nested arrays", Post, vec![], Some(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes()), err(400, PARSE_ERROR)),
        row("deeply nested params", Post, vec![], Some(format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"a":{}1{}}}}}"#, "[".repeat(1000), "]".repeat(1000)).into_bytes()), err(400, PARSE_ERROR)),
        // JSON-RPC shape (invalid request, echoing the id where there is one).
        row("missing jsonrpc", Post, vec![], j(json!({"id": 51, "method": "ping"})), Want::Error(400, INVALID_REQUEST, json!(51))),
        row("jsonrpc 1.0", Post, vec![], j(json!({"jsonrpc": "1.0", "id": "v1", "method": "ping"})), Want::Error(400, INVALID_REQUEST, json!("v1"))),
        row("id null with a method", Post, vec![], j(json!({"jsonrpc": "2.0", "id": null, "method": "ping"})), Want::Error(400, INVALID_REQUEST, null.clone())),
        row("fractional id", Post, vec![], j(json!({"jsonrpc": "2.0", "id": 1.5, "method": "ping"})), Want::Error(400, INVALID_REQUEST, json!(1.5))),
        row("method 5", Post, vec![], j(json!({"jsonrpc": "2.0", "id": 52, "method": 5})), Want::Error(400, INVALID_REQUEST, json!(52))),
        row("params 3", Post, vec![], j(json!({"jsonrpc": "2.0", "id": "p3", "method": "tools/call", "params": 3})), Want::Error(400, INVALID_REQUEST, json!("p3"))),
        row("result and error", Post, vec![], j(json!({"jsonrpc": "2.0", "id": 53, "result": {}, "error": {"code": 1, "message": "x"}})), Want::Error(400, INVALID_REQUEST, json!(53))),
        row("response with neither result nor error", Post, vec![], j(json!({"jsonrpc": "2.0", "id": 54})), Want::Error(400, INVALID_REQUEST, json!(54))),
        row("no method and no id", Post, vec![], j(json!({"jsonrpc": "2.0"})), Want::Error(400, INVALID_REQUEST, null.clone())),
        row("a number", Post, vec![], j(json!(42)), Want::Error(400, INVALID_REQUEST, null.clone())),
        row("a string", Post, vec![], j(json!("ping")), Want::Error(400, INVALID_REQUEST, null.clone())),
        row("a notification", Post, vec![], j(note.clone()), existing(1, false)),
        row("a client response", Post, vec![], j(json!({"jsonrpc": "2.0", "id": "s1", "result": {}})), existing(1, false)),
        // Host (403): the loopback names when listening on loopback.
        row("POST foreign Host", Post, vec![("host", Some("evil.example"))], j(call(1)), err(403, INVALID_REQUEST)),
        row("GET foreign Host", Get, vec![("host", Some("localhost.evil.example:8080"))], None, err(403, INVALID_REQUEST)),
        row("DELETE foreign Host", Delete, vec![("host", Some("10.0.0.1:8080"))], None, err(403, INVALID_REQUEST)),
        row("POST loopback Host with a port", Post, vec![("host", Some("127.0.0.1:8080"))], j(call(1)), existing(1, false)),
        // Size caps: batch length, initialize params.
        row("batch of 101 messages (max 100)", Post, vec![v0326], j(Value::Array(vec![ping.clone(); 101])), err(400, INVALID_REQUEST)),
        row("batch of 100 messages", Post, vec![v0326], j(Value::Array(vec![ping.clone(); 100])), existing(100, true)),
        row("initialize params over max_initialize_bytes", Post, vec![no_sid], j(big_init), Want::Error(400, INVALID_REQUEST, json!(0))),
        // Batches: only in 2025-03-26, never empty, never with initialize.
        row("batch in 2025-03-26", Post, vec![v0326], j(json!([call(61), note.clone(), call(62)])), existing(3, true)),
        row("one-element batch without a version header", Post, vec![(VERSION_HEADER, None)], j(json!([call(63)])), existing(1, true)),
        row("batch of notifications", Post, vec![v0326], j(json!([note.clone(), note.clone()])), existing(2, true)),
        row("batch in 2025-11-25", Post, vec![], j(json!([call(61), call(62)])), err(400, INVALID_REQUEST)),
        row("batch in 2025-06-18", Post, vec![(VERSION_HEADER, Some("2025-06-18"))], j(json!([call(61), call(62)])), err(400, INVALID_REQUEST)),
        row("empty batch", Post, vec![v0326], t("[]"), err(400, INVALID_REQUEST)),
        row("batch with an invalid member", Post, vec![v0326], j(json!([call(64), {"jsonrpc": "2.0", "id": 65, "method": 5}])), Want::Error(400, INVALID_REQUEST, json!(65))),
        row("batch with initialize on a session", Post, vec![v0326], j(json!([init("2025-03-26"), ping.clone()])), err(400, INVALID_REQUEST)),
        row("sessionless batch: initialize and initialized", Post, vec![v0326, no_sid], j(json!([init("2025-03-26"), {"jsonrpc": "2.0", "method": "notifications/initialized"}])), err(400, INVALID_REQUEST)),
        row("one-element batch with initialize", Post, vec![v0326, no_sid], j(json!([init("2025-03-26")])), err(400, INVALID_REQUEST)),
        // Which session.
        row("a request on a session", Post, vec![], j(call(1)), existing(1, false)),
        row("no session header", Post, vec![no_sid], j(call(1)), err(400, INVALID_REQUEST)),
        row("malformed session id", Post, vec![(SESSION_HEADER, Some("0-*.>"))], j(call(1)), unknown),
        row("foreign session id shape", Post, vec![(SESSION_HEADER, Some("123e4567-e89b-12d3-a456-426614174000"))], j(call(1)), Want::Existing { found: false, messages: 1, batch: false }),
        row("initialize", Post, vec![no_sid], j(init("2025-11-25")), Want::New(ProtocolVersion::V2025_11_25)),
        row("initialize asking for 2025-03-26", Post, vec![no_sid, (VERSION_HEADER, None)], j(init("2025-03-26")), Want::New(ProtocolVersion::V2025_03_26)),
        row("initialize asking for 2024-11-05 gets the latest", Post, vec![no_sid], j(init("2024-11-05")), Want::New(ProtocolVersion::LATEST)),
        row("initialize asking for an unknown version gets the latest", Post, vec![no_sid], j(init("2099-01-01")), Want::New(ProtocolVersion::LATEST)),
        row("initialize ignores a session header", Post, vec![], j(init("2025-06-18")), Want::New(ProtocolVersion::V2025_06_18)),
        // GET.
        row("GET on a session", Get, vec![], None, Want::Get { found: true, resume: false }),
        row("GET Accept: application/json", Get, vec![("accept", Some("application/json"))], None, err(406, INVALID_REQUEST)),
        row("GET foreign origin", Get, vec![evil], None, err(403, INVALID_REQUEST)),
        row("GET version 1999-01-01", Get, vec![(VERSION_HEADER, Some("1999-01-01"))], None, err(400, INVALID_REQUEST)),
        row("GET without a session header", Get, vec![no_sid], None, err(400, INVALID_REQUEST)),
        row("GET malformed session id", Get, vec![(SESSION_HEADER, Some("abc"))], None, Want::Get { found: false, resume: false }),
        row("GET resuming the GET stream", Get, vec![(LAST_EVENT_ID, Some("get-5"))], None, Want::Get { found: true, resume: true }),
        row("GET resuming a request stream", Get, vec![(LAST_EVENT_ID, Some("r00112233445566aa-7"))], None, Want::Get { found: true, resume: true }),
        row("GET malformed Last-Event-ID", Get, vec![(LAST_EVENT_ID, Some("banana"))], None, err(400, INVALID_REQUEST)),
        // DELETE.
        row("DELETE a session", Delete, vec![], None, Want::Delete { found: true }),
        row("DELETE foreign origin", Delete, vec![evil], None, err(403, INVALID_REQUEST)),
        row("DELETE version 1999-01-01", Delete, vec![(VERSION_HEADER, Some("1999-01-01"))], None, err(400, INVALID_REQUEST)),
        row("DELETE without a session header", Delete, vec![no_sid], None, err(400, INVALID_REQUEST)),
        row("DELETE malformed session id", Delete, vec![(SESSION_HEADER, Some("0-abc.*"))], None, Want::Delete { found: false }),
    ]
}

#[test]
fn every_row_of_the_table_gets_what_it_must() {
    let rows = rows();
    assert!(rows.len() >= 60, "{} rows", rows.len());
    let failures: Vec<String> = rows.into_iter().filter_map(|r| run(r).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
