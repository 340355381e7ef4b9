//! Unit tests for [`McpClient`] against a scripted in-process HTTP/1.1 server
//! (raw tokio TCP, one request per connection), so the client's wire
//! behaviour is checked without the Jetway binaries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::McpClient;

/// One parsed request as the mock server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    headers: HashMap<String, String>,
    body: Value,
}

#[derive(Default)]
struct MockState {
    seen: Vec<Seen>,
    /// Fired when the client answers the server→client request.
    sampling_answer: Option<oneshot::Sender<Value>>,
}

type Shared = Arc<Mutex<MockState>>;

async fn read_request(stream: &mut BufReader<TcpStream>) -> Seen {
    let mut line = String::new();
    stream.read_line(&mut line).await.unwrap();
    let method = line.split_whitespace().next().unwrap_or("").to_owned();
    let mut headers = HashMap::new();
    loop {
        line.clear();
        stream.read_line(&mut line).await.unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    let len: usize = headers
        .get("content-length")
        .map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await.unwrap();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Seen {
        method,
        headers,
        body,
    }
}

async fn write_head(s: &mut BufReader<TcpStream>, status: &str, extra: &str, ctype: &str) {
    let head =
        format!("HTTP/1.1 {status}\r\nconnection: close\r\ncontent-type: {ctype}\r\n{extra}\r\n");
    s.get_mut().write_all(head.as_bytes()).await.unwrap();
}

async fn write_sse(s: &mut BufReader<TcpStream>, id: &str, msg: &Value) {
    let ev = format!("id: {id}\r\ndata: {msg}\r\n\r\n");
    s.get_mut().write_all(ev.as_bytes()).await.unwrap();
    s.get_mut().flush().await.unwrap();
}

async fn handle(stream: TcpStream, state: Shared) {
    let mut s = BufReader::new(stream);
    let req = read_request(&mut s).await;
    state.lock().unwrap().seen.push(req.clone());
    let rpc_method = req.body.get("method").and_then(Value::as_str).unwrap_or("");
    let id = req.body.get("id").cloned().unwrap_or(Value::Null);
    match (req.method.as_str(), rpc_method) {
        ("POST", "initialize") => {
            write_head(
                &mut s,
                "200 OK",
                "mcp-session-id: s-1\r\n",
                "text/event-stream",
            )
            .await;
            s.get_mut()
                .write_all(b": hello\n\nid: p0\ndata:\n\n")
                .await
                .unwrap();
            let result = json!({"protocolVersion": "2025-11-25", "capabilities": {},
                                "serverInfo": {"name": "mock", "version": "0"}});
            write_sse(
                &mut s,
                "e1",
                &json!({"jsonrpc":"2.0","id":id,"result":result}),
            )
            .await;
        }
        ("POST", "tools/call") => {
            let (tx, rx) = oneshot::channel();
            state.lock().unwrap().sampling_answer = Some(tx);
            write_head(&mut s, "200 OK", "", "text/event-stream").await;
            let progress = json!({"jsonrpc":"2.0","method":"notifications/progress",
                                  "params":{"progress":1}});
            write_sse(&mut s, "t1", &progress).await;
            let ask = json!({"jsonrpc":"2.0","id":"srv-1","method":"sampling/createMessage",
                             "params":{"messages":[],"maxTokens":1}});
            write_sse(&mut s, "t2", &ask).await;
            let answer = rx.await.unwrap();
            let result = json!({"content": [], "structuredContent": {"echo": answer}});
            write_sse(
                &mut s,
                "t3",
                &json!({"jsonrpc":"2.0","id":id,"result":result}),
            )
            .await;
        }
        ("POST", "tools/list") => {
            let body = json!({"jsonrpc":"2.0","id":id,"result":{"tools":[]}}).to_string();
            let extra = format!("content-length: {}\r\n", body.len());
            write_head(&mut s, "200 OK", &extra, "application/json").await;
            s.get_mut().write_all(body.as_bytes()).await.unwrap();
        }
        ("POST", "") if req.body.get("result").is_some() => {
            let tx = state.lock().unwrap().sampling_answer.take();
            tx.unwrap().send(req.body["result"].clone()).unwrap();
            write_head(
                &mut s,
                "202 Accepted",
                "content-length: 0\r\n",
                "text/plain",
            )
            .await;
        }
        ("POST", _) => {
            write_head(
                &mut s,
                "202 Accepted",
                "content-length: 0\r\n",
                "text/plain",
            )
            .await;
        }
        ("GET", _) => {
            write_head(&mut s, "200 OK", "", "text/event-stream").await;
            let ping = json!({"jsonrpc":"2.0","method":"notifications/message"});
            write_sse(&mut s, "g1", &ping).await;
            write_sse(&mut s, "g2", &ping).await;
        }
        _ => {
            write_head(&mut s, "200 OK", "content-length: 0\r\n", "text/plain").await;
        }
    }
    let _ = s.get_mut().shutdown().await;
}

async fn mock_server() -> (String, Shared) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let state = Shared::default();
    let st = state.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(handle(stream, st.clone()));
        }
    });
    (url, state)
}

#[tokio::test]
async fn client_session_flow_against_mock() {
    let (url, state) = mock_server().await;
    let t = Duration::from_secs(5);

    let client = McpClient::initialize(&url).await.unwrap();
    assert_eq!(client.session_id(), Some("s-1"));
    assert_eq!(client.protocol_version(), Some("2025-11-25"));
    {
        let st = state.lock().unwrap();
        let init = &st.seen[0];
        assert_eq!(init.body["id"], 0);
        assert_eq!(init.body["params"]["clientInfo"]["name"], "jetway-tests");
        assert!(init.body["params"]["capabilities"]["sampling"].is_object());
        assert_eq!(
            init.headers["accept"],
            "application/json, text/event-stream"
        );
        assert!(!init.headers.contains_key("mcp-session-id"));
        let ack = &st.seen[1];
        assert_eq!(ack.body["method"], "notifications/initialized");
        assert_eq!(ack.headers["mcp-session-id"], "s-1");
        assert_eq!(ack.headers["mcp-protocol-version"], "2025-11-25");
    }

    // JSON response.
    let ex = client
        .request(&url, "tools/list", Value::Null)
        .await
        .unwrap();
    assert_eq!(ex.result().unwrap()["tools"], json!([]));
    assert!(!ex.is_sse());

    // Server→client request in the middle of a POST SSE stream.
    let mut call = client
        .send(&url, "tools/call", json!({"name": "ask", "arguments": {}}))
        .await
        .unwrap();
    let ask = call.next_request(t).await.unwrap();
    assert_eq!(ask["method"], "sampling/createMessage");
    let ack = client
        .respond(&url, &ask["id"], json!({"text": "hi"}))
        .await
        .unwrap();
    assert_eq!(ack.status, 202);
    let ex = call.finish().await.unwrap();
    assert_eq!(ex.structured_content().unwrap()["echo"]["text"], "hi");
    assert_eq!(ex.event_ids(), ["t1", "t2", "t3"]);
    assert_eq!(ex.notifications().len(), 1);
    assert_eq!(ex.requests().len(), 1);

    // GET stream with resumption header, read incrementally to the end.
    let mut get = client.get_stream(&url, Some("t3")).await.unwrap();
    let first = get.next_event(t).await.unwrap().unwrap();
    assert_eq!(first.id.as_deref(), Some("g1"));
    let second = get.next_event(t).await.unwrap().unwrap();
    assert_eq!(second.id.as_deref(), Some("g2"));
    assert!(get.next_event(t).await.unwrap().is_none());
    {
        let st = state.lock().unwrap();
        let g = st.seen.iter().find(|s| s.method == "GET").unwrap();
        assert_eq!(g.headers["last-event-id"], "t3");
        assert_eq!(g.headers["accept"], "text/event-stream");
    }

    assert_eq!(client.delete(&url).await.unwrap(), 200);
    let (status, _, body) = client
        .raw_post(&url, &[("content-type", "application/json")], "{}")
        .await
        .unwrap();
    assert_eq!(status, 202);
    assert!(body.is_empty());
    let st = state.lock().unwrap();
    let raw = st.seen.last().unwrap();
    assert!(!raw.headers.contains_key("mcp-session-id"));
}
