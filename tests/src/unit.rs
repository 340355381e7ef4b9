//! Unit tests for the test helpers' pure logic: SSE reading, response
//! matching and `eventually`. (The process harness's own are in
//! `jetway-harness`.)

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;

use crate::exchange::find_response;
use crate::sse::{SseEvent, SseParser, SseStream};

fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
    try_parse_all(chunks).unwrap()
}

fn try_parse_all(chunks: &[&[u8]]) -> anyhow::Result<Vec<SseEvent>> {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    for c in chunks {
        out.extend(p.feed(c)?);
    }
    p.finish();
    Ok(out)
}

fn datas(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

#[test]
fn sse_basic_fields_and_json() {
    let evs = parse_all(&[b"id: 7\nevent: message\nretry: 1500\ndata: {\"a\":1}\n\n"]);
    assert_eq!(evs.len(), 1);
    let e = &evs[0];
    assert_eq!(e.id.as_deref(), Some("7"));
    assert_eq!(e.event.as_deref(), Some("message"));
    assert_eq!(e.retry, Some(1500));
    assert_eq!(e.data, "{\"a\":1}");
    assert_eq!(e.json, Some(json!({"a": 1})));
}

#[test]
fn sse_multiline_data_and_comments() {
    let evs = parse_all(&[b": keepalive\ndata: one\ndata:two\ndata:\n\n"]);
    assert_eq!(datas(&evs), ["one\ntwo\n"]);
    assert_eq!(evs[0].json, None);
}

#[test]
fn sse_a_line_without_a_colon_is_an_error() {
    // WHATWG reads `data` as an empty data line; sse-stream rejects it.
    let err = try_parse_all(&[b"data: one\ndata\n\n"]).unwrap_err();
    assert!(format!("{err:#}").contains("invalid line"), "{err:#}");
}

#[test]
fn sse_line_endings_crlf_cr_lf_and_split_chunks() {
    let evs = parse_all(&[b"data: a\r\n\r\ndata: b\r\rdata: c\n\n"]);
    assert_eq!(datas(&evs), ["a", "b", "c"]);
    // CRLF split across chunks must not produce an extra empty line.
    let evs = parse_all(&[b"data: x\r", b"\ndata: y\r", b"\n\r", b"\n"]);
    assert_eq!(datas(&evs), ["x\ny"]);
    // Byte-by-byte feeding gives the same result.
    let text = b"id: 1\r\ndata: {\"k\":\"v\"}\r\n\r\n: c\ndata: z\n\n";
    let chunks: Vec<&[u8]> = text.chunks(1).collect();
    let evs = parse_all(&chunks);
    assert_eq!(datas(&evs), ["{\"k\":\"v\"}", "z"]);
    assert_eq!(evs[0].id.as_deref(), Some("1"));
    assert_eq!(evs[1].id, None);
}

#[test]
fn sse_bom_and_no_space_after_colon() {
    let evs = parse_all(&[b"\xEF\xBB", b"\xBFdata:x\n\n"]);
    assert_eq!(datas(&evs), ["x"]);
    let evs = parse_all(&[b"data:  two spaces\n\n"]);
    assert_eq!(datas(&evs), [" two spaces"]);
}

#[test]
fn sse_blocks_without_data_are_not_dispatched_but_set_id_and_retry() {
    let mut p = SseParser::new();
    assert!(p.feed(b"id: 5\nretry: 300\n\n").unwrap().is_empty());
    assert_eq!(p.last_event_id(), Some("5"));
    assert_eq!(p.reconnection_time(), Some(300));
    // Empty data (MCP priming event) is dispatched with empty data.
    let evs = p.feed(b"id: 6\ndata:\n\n").unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].data, "");
    assert_eq!(evs[0].json, None);
    assert_eq!(p.last_event_id(), Some("6"));
}

#[test]
fn sse_ignores_nul_ids() {
    let evs = parse_all(&[b"id: a\0b\ndata: d\n\n"]);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].retry, None);
    assert_eq!(evs[0].id, None);
}

#[test]
fn sse_bad_retry_and_unknown_fields_are_errors() {
    // WHATWG ignores both; sse-stream rejects them (Jetway sends neither).
    let err = try_parse_all(&[b"retry: 12a\ndata: d\n\n"]).unwrap_err();
    assert!(format!("{err:#}").contains("int parse"), "{err:#}");
    let err = try_parse_all(&[b"foo: bar\ndata: d\n\n"]).unwrap_err();
    assert!(format!("{err:#}").contains("invalid line"), "{err:#}");
}

#[test]
fn sse_unterminated_event_at_eof_is_discarded() {
    let evs = parse_all(&[b"data: done\n\ndata: partial\n"]);
    assert_eq!(datas(&evs), ["done"]);
}

#[test]
fn sse_event_request_detection() {
    let evs = parse_all(&[
        b"data: {\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"method\":\"sampling/createMessage\"}\n\n",
    ]);
    assert!(evs[0].is_request());
    assert_eq!(evs[0].method(), Some("sampling/createMessage"));
}

#[tokio::test]
async fn sse_stream_reads_incrementally_and_ends() {
    let chunks: Vec<reqwest::Result<Bytes>> = vec![
        Ok(Bytes::from_static(b"id: 1\ndata: {\"n\":1}\n")),
        Ok(Bytes::from_static(b"\nid: 2\ndata: {\"n\"")),
        Ok(Bytes::from_static(b":2}\n\n")),
    ];
    let mut s = SseStream::from_stream(futures::stream::iter(chunks));
    let t = Duration::from_secs(1);
    let a = s.next_event(t).await.unwrap().unwrap();
    assert_eq!(a.json, Some(json!({"n": 1})));
    let b = s.next_event(t).await.unwrap().unwrap();
    assert_eq!(b.json, Some(json!({"n": 2})));
    assert_eq!(s.last_event_id(), Some("2"));
    assert!(s.next_event(t).await.unwrap().is_none());
    assert!(s.is_ended());
}

#[tokio::test]
async fn sse_stream_times_out_when_nothing_arrives() {
    let mut s = SseStream::from_stream(futures::stream::pending());
    let err = s.next_event(Duration::from_millis(20)).await.unwrap_err();
    assert!(format!("{err:#}").contains("no SSE event"), "{err:#}");
}

#[test]
fn response_matching_by_id() {
    let id = json!(3);
    assert!(find_response(&json!({"jsonrpc":"2.0","id":3,"result":{}}), &id).is_some());
    assert!(find_response(&json!({"jsonrpc":"2.0","id":"3","result":{}}), &id).is_none());
    // A server→client request reusing the number is not a response.
    assert!(find_response(&json!({"jsonrpc":"2.0","id":3,"method":"ping"}), &id).is_none());
    let batch = json!([{"id":1,"result":1},{"id":3,"error":{"code":-1}}]);
    assert_eq!(
        find_response(&batch, &id),
        Some(json!({"id":3,"error":{"code":-1}}))
    );
}

#[tokio::test]
async fn eventually_succeeds_and_times_out() {
    let n = std::sync::atomic::AtomicU32::new(0);
    crate::eventually(Duration::from_secs(5), || async {
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= 2
    })
    .await
    .unwrap();
    let err = crate::eventually(Duration::from_millis(50), || async {
        Err::<bool, _>(anyhow::anyhow!("still 3 sessions"))
    })
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("still 3 sessions"), "{err:#}");
}
