//! A legacy-era Streamable HTTP MCP client (protocol 2025-11-25), the way a
//! real client talks: `initialize` (reading `Mcp-Session-Id`), then
//! `notifications/initialized`, then requests whose answers arrive as SSE
//! streams; the standalone `GET` stream; and resumption with `Last-Event-ID`.
//!
//! The URL is an argument of every call, so one session can alternate between
//! gateways (round robin without stickiness). [`McpSession`] is cheap to share
//! behind an `Arc`: request ids come from an atomic counter.

pub mod sse;

pub use sse::{Event, EventStream};

use anyhow::{Context, Result, anyhow, bail};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// The protocol version the client negotiates.
pub const PROTOCOL_VERSION: &str = "2025-11-25";
/// Bound on one request, from sending it to its final response.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
const LAST_EVENT_ID: &str = "last-event-id";
const ACCEPT_POST: &str = "application/json, text/event-stream";

/// The HTTP client every scenario uses, for Jetway and the baseline alike:
/// HTTP/1.1 keep-alive pool, `TCP_NODELAY`, no proxy, a short connect timeout
/// and no overall timeout (SSE streams are long; callers bound their waits).
pub fn http_client() -> Result<reqwest::Client> {
    jetway_shared::tls::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(300))
        .build()
        .context("building the HTTP client")
}

/// One MCP session.
#[derive(Debug)]
pub struct McpSession {
    http: reqwest::Client,
    id: String,
    next_id: AtomicI64,
}

impl McpSession {
    /// `initialize` on `url`, then `notifications/initialized`.
    pub async fn initialize(http: &reqwest::Client, url: &str) -> Result<Self> {
        let body = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "jetway-bench", "version": env!("CARGO_PKG_VERSION")},
            }
        });
        let resp = http
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, ACCEPT_POST)
            .body(body.to_string())
            .send()
            .await
            .with_context(|| format!("POST initialize to {url}"))?;
        let resp = ok(resp).await.context("initialize")?;
        let id = resp
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("initialize answered without {SESSION_HEADER}"))?
            .to_owned();
        let session = Self {
            http: http.clone(),
            id,
            next_id: AtomicI64::new(1),
        };
        let mut events = EventStream::new(resp);
        tokio::time::timeout(CALL_TIMEOUT, read_response(&mut events, 0))
            .await
            .map_err(|_| anyhow!("initialize: no response within {CALL_TIMEOUT:?}"))??;
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let resp = session.post(url, &note).await?;
        if resp.status() != StatusCode::ACCEPTED {
            bail!("notifications/initialized answered {}", resp.status());
        }
        Ok(session)
    }

    /// The session id the server assigned.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `tools/call` on `url`, read to the final response; returns the
    /// tool's `structuredContent`. A JSON-RPC error or a tool error is an error.
    pub async fn call_tool(&self, url: &str, name: &str, arguments: &Value) -> Result<Value> {
        let call = async {
            let (id, mut events) = self.start_call(url, name, arguments, None).await?;
            read_response(&mut events, id).await
        };
        let result = tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| anyhow!("{name}: no response within {CALL_TIMEOUT:?}"))??;
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            bail!("{name} failed: {result}");
        }
        Ok(result.get("structuredContent").cloned().unwrap_or(result))
    }

    /// Any request (e.g. `logging/setLevel`), read to its final response;
    /// returns its `result`.
    pub async fn request(&self, url: &str, method: &str, params: Value) -> Result<Value> {
        let call = async {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
            let resp = ok(self.post(url, &body).await?)
                .await
                .context(method.to_owned())?;
            read_response(&mut EventStream::new(resp), id).await
        };
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| anyhow!("{method}: no response within {CALL_TIMEOUT:?}"))?
    }

    /// Sends `tools/call` and returns its id and the response's event stream,
    /// to be read event by event. `progress` sets `_meta.progressToken`.
    pub async fn start_call(
        &self,
        url: &str,
        name: &str,
        arguments: &Value,
        progress: Option<&str>,
    ) -> Result<(i64, EventStream)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut params = json!({"name": name, "arguments": arguments});
        if let Some(token) = progress {
            params["_meta"] = json!({"progressToken": token});
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
        let resp = ok(self.post(url, &body).await?)
            .await
            .with_context(|| format!("tools/call {name}"))?;
        Ok((id, EventStream::new(resp)))
    }

    /// Opens the standalone GET stream, or with `last_event_id` resumes the
    /// stream that id belongs to. Returns once the response headers arrived.
    pub async fn get_stream(&self, url: &str, last_event_id: Option<&str>) -> Result<EventStream> {
        let mut req = self
            .http
            .get(url)
            .header(header::ACCEPT, "text/event-stream")
            .header(SESSION_HEADER, &self.id)
            .header(VERSION_HEADER, PROTOCOL_VERSION);
        if let Some(last) = last_event_id {
            req = req.header(LAST_EVENT_ID, last);
        }
        let resp = req.send().await.with_context(|| format!("GET {url}"))?;
        Ok(EventStream::new(ok(resp).await.context("GET stream")?))
    }

    async fn post(&self, url: &str, body: &Value) -> Result<reqwest::Response> {
        self.http
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, ACCEPT_POST)
            .header(SESSION_HEADER, &self.id)
            .header(VERSION_HEADER, PROTOCOL_VERSION)
            .body(body.to_string())
            .send()
            .await
            .with_context(|| format!("POST to {url}"))
    }
}

/// Reads events until the JSON-RPC response to request `id`; returns its
/// `result`, or the JSON-RPC error as an error.
pub async fn read_response(events: &mut EventStream, id: i64) -> Result<Value> {
    while let Some(event) = events.next().await? {
        let Some(msg) = event.json() else { continue };
        if msg.get("id").and_then(Value::as_i64) != Some(id) || msg.get("method").is_some() {
            continue;
        }
        if let Some(err) = msg.get("error") {
            bail!("JSON-RPC error: {err}");
        }
        return msg
            .get("result")
            .cloned()
            .ok_or_else(|| anyhow!("response without result: {msg}"));
    }
    bail!("stream ended before the response to request {id}")
}

/// The response if its status is a success, else an error with its body.
async fn ok(resp: reqwest::Response) -> Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    bail!(
        "HTTP {status}: {}",
        body.chars().take(300).collect::<String>()
    )
}
