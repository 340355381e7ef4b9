//! The edge checks under generated input: whatever headers and body a
//! client sends, `post`, `get` and `delete` (and the HTTP+SSE endpoint's
//! checks) return, never panic, and every refusal is one of the statuses
//! the spec names with its JSON-RPC code.
//!
//! CI runs 10,000 cases per check; `JETWAY_EDGE_CASES=1000000 cargo test
//! --release -p jetway-gateway edge_checks` runs a million.

use super::*;
use crate::config::Args;
use axum::http::{HeaderName, HeaderValue};
use clap::Parser;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("JETWAY_EDGE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn config() -> Config {
    let args =
        Args::try_parse_from(["jetway-gateway", "--max-body-bytes", "65536"]).expect("valid flags");
    Config::load(&args).expect("valid settings")
}

/// Values near what the checks look for, and anything at all.
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"2025-11-25".to_vec()),
        Just(b"2025-03-26".to_vec()),
        Just(b"application/json, text/event-stream".to_vec()),
        Just(b"text/event-stream".to_vec()),
        Just(b"0-0123456789abcdef0123456789abcdef".to_vec()),
        Just(b"get-5".to_vec()),
        Just(b"127.0.0.1:8080".to_vec()),
        "[ -~]{0,80}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..80),
    ]
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    let names = prop_oneof![
        Just("mcp-session-id"),
        Just("mcp-protocol-version"),
        Just("accept"),
        Just("content-type"),
        Just("last-event-id"),
        Just("origin"),
        Just("host"),
        Just("traceparent"),
    ];
    proptest::collection::vec((names, value()), 0..10).prop_map(|pairs| {
        let mut h = HeaderMap::new();
        for (name, v) in pairs {
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                h.append(HeaderName::from_static(name), v);
            }
        }
        h
    })
}

/// JSON-RPC-shaped bodies, batches of them, and arbitrary bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let id = prop_oneof![
        Just("1".to_owned()),
        Just("\"a\"".to_owned()),
        Just("null".to_owned()),
        Just("1.5".to_owned()),
        Just("99999999999999999999".to_owned()),
    ];
    let method = prop_oneof![
        Just("\"initialize\"".to_owned()),
        Just("\"tools/call\"".to_owned()),
        Just("\"ping\"".to_owned()),
        Just("5".to_owned()),
    ];
    let message = (id, method, "[ -~]{0,20}").prop_map(|(id, method, extra)| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":{method},"params":{{"x":"{}"}}}}"#,
            extra.replace(['"', '\\'], "")
        )
    });
    prop_oneof![
        message.clone().prop_map(String::into_bytes),
        proptest::collection::vec(message, 0..5)
            .prop_map(|ms| format!("[{}]", ms.join(",")).into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..200),
    ]
}

/// A refusal the spec names: its status and JSON-RPC code agree.
fn sane(e: &GatewayError) -> bool {
    let code = e.code();
    match e.status().as_u16() {
        400 => code == jsonrpc::INVALID_REQUEST || code == jsonrpc::PARSE_ERROR,
        403 | 406 | 413 | 415 => code == jsonrpc::INVALID_REQUEST,
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn edge_checks_never_panic_and_refuse_with_the_spec_statuses(
        h in headers(),
        body in body(),
        over in any::<bool>(),
    ) {
        let config = config();
        let service = Service::default();
        let limits = Limits { config: &config, service: &service };
        let b = if over { Body::OverLimit } else { Body::Read(Bytes::from(body)) };
        if let Err(e) = post(&h, b, limits) {
            prop_assert!(sane(&e), "post: {} {} {e}", e.status(), e.code());
        }
        if let Err(e) = get(&h, limits) {
            prop_assert!(sane(&e), "get: {} {} {e}", e.status(), e.code());
        }
        if let Err(e) = delete(&h, limits) {
            prop_assert!(sane(&e), "delete: {} {} {e}", e.status(), e.code());
        }
    }
}
