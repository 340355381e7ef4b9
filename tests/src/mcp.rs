//! A test MCP client for the Streamable HTTP transport (protocol 2025-11-25).
//!
//! [`McpClient`] behaves as a real client: it initializes (POST `initialize`,
//! reads `Mcp-Session-Id`, POSTs `notifications/initialized`), then sends the
//! session id and `MCP-Protocol-Version` on every request. The target URL is
//! an argument of every call, so one session can alternate between gateways.
//!
//! - [`McpClient::request`] / [`McpClient::call_tool`]: send and read to the
//!   final response ([`Exchange`]).
//! - [`McpClient::send`]: send and get a [`ResponseStream`] to read event by
//!   event (answer server→client requests with [`McpClient::respond`]).
//! - [`McpClient::get_stream`]: the standalone GET SSE stream, with
//!   `Last-Event-ID` for resumption.
//! - [`McpClient::raw_post`] / [`McpClient::raw_request`]: exactly the
//!   headers and bytes given, for bad-input tests.
//!
//! Clones share the session and the request-id counter.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::exchange::{Body, Exchange, ResponseStream};
use crate::sse::SseStream;

/// The protocol version this client speaks.
pub const PROTOCOL_VERSION: &str = "2025-11-25";
/// Default bound on one call (send plus reading to the final response).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Session header.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// Protocol version header.
pub const PROTOCOL_VERSION_HEADER: &str = "mcp-protocol-version";
/// Resumption header.
pub const LAST_EVENT_ID_HEADER: &str = "last-event-id";

/// An HTTP client for talking to local test servers: no proxy from the
/// environment, a short connect timeout, no overall timeout (SSE streams
/// are long-lived; callers bound their waits).
pub fn http_client() -> reqwest::Client {
    jetway_shared::tls::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("a reqwest client with plain HTTP and no TLS always builds")
}

/// The `initialize` params a full-featured client sends.
pub fn default_initialize_params() -> Value {
    json!({
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {
            "sampling": {},
            "elicitation": { "form": {}, "url": {} },
            "roots": { "listChanged": true }
        },
        "clientInfo": { "name": "jetway-tests", "version": "0" }
    })
}

/// An MCP client session over Streamable HTTP. Cheap to clone.
#[derive(Debug, Clone)]
pub struct McpClient {
    http: reqwest::Client,
    session_id: Option<String>,
    protocol_version: Option<String>,
    next_id: Arc<AtomicI64>,
    timeout: Duration,
    initialize_result: Option<Value>,
    /// Sent as `Authorization: Bearer …` with every request.
    bearer: Option<String>,
    /// Sent as `traceparent` with every request.
    traceparent: Option<String>,
}

impl Default for McpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl McpClient {
    /// A client with no session yet (requests carry no session headers).
    pub fn new() -> Self {
        Self {
            http: http_client(),
            session_id: None,
            protocol_version: None,
            next_id: Arc::new(AtomicI64::new(0)),
            timeout: DEFAULT_TIMEOUT,
            initialize_result: None,
            bearer: None,
            traceparent: None,
        }
    }

    /// Sends `traceparent` (W3C trace context) with every request from now on.
    pub fn set_traceparent(&mut self, traceparent: Option<String>) {
        self.traceparent = traceparent;
    }

    /// Send `Authorization: Bearer <token>` with every request (or none).
    pub fn with_bearer(mut self, token: Option<String>) -> Self {
        self.bearer = token;
        self
    }

    /// Initialize a session at `url` with [`default_initialize_params`].
    pub async fn initialize(url: &str) -> Result<Self> {
        Self::initialize_with(url, default_initialize_params()).await
    }

    /// Initialize a session at `url` with these `initialize` params.
    pub async fn initialize_with(url: &str, params: Value) -> Result<Self> {
        Self::new().initialize_session(url, params).await
    }

    /// Initialize a session at `url` with this client's settings (a
    /// bearer token, say) and these `initialize` params.
    pub async fn initialize_session(self, url: &str, params: Value) -> Result<Self> {
        let mut client = self;
        let ex = client
            .request(url, "initialize", params)
            .await
            .context("initialize")?;
        if ex.status != StatusCode::OK {
            bail!(
                "initialize: HTTP {} ({:?})",
                ex.status,
                String::from_utf8_lossy(&ex.body)
            );
        }
        let result = ex.result().context("initialize")?.clone();
        client.session_id = ex.header(SESSION_HEADER).map(str::to_owned);
        client.protocol_version = Some(
            result
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or(PROTOCOL_VERSION)
                .to_owned(),
        );
        client.initialize_result = Some(result);
        let ack = client
            .notify(url, "notifications/initialized", Value::Null)
            .await?;
        if ack.status != StatusCode::ACCEPTED {
            bail!(
                "notifications/initialized: expected 202, got {}",
                ack.status
            );
        }
        Ok(client)
    }

    /// The underlying HTTP client (for plain requests such as `/healthz`).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The session id the server assigned (`None` before initialize or for
    /// a server without sessions).
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// Use another session id (or none), e.g. to test unknown sessions.
    pub fn set_session_id(&mut self, id: Option<String>) {
        self.session_id = id;
    }

    /// The negotiated protocol version sent as `MCP-Protocol-Version`.
    pub fn protocol_version(&self) -> Option<&str> {
        self.protocol_version.as_deref()
    }

    /// Send another (or no) `MCP-Protocol-Version`.
    pub fn set_protocol_version(&mut self, version: Option<String>) {
        self.protocol_version = version;
    }

    /// The `result` of the `initialize` response.
    pub fn initialize_result(&self) -> Option<&Value> {
        self.initialize_result.as_ref()
    }

    /// Bound each call by `timeout` instead of [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Take the next request id (0 for the first request).
    pub fn next_request_id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// `Mcp-Session-Id` and `MCP-Protocol-Version`, as far as known.
    pub fn session_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = self.session_id.as_deref().and_then(|s| s.parse().ok()) {
            h.insert(SESSION_HEADER, v);
        }
        if let Some(v) = self
            .protocol_version
            .as_deref()
            .and_then(|s| s.parse().ok())
        {
            h.insert(PROTOCOL_VERSION_HEADER, v);
        }
        if let Some(v) = self
            .bearer
            .as_deref()
            .and_then(|t| format!("Bearer {t}").parse().ok())
        {
            h.insert(reqwest::header::AUTHORIZATION, v);
        }
        if let Some(v) = self.traceparent.as_deref().and_then(|t| t.parse().ok()) {
            h.insert("traceparent", v);
        }
        h
    }

    /// POST any JSON-RPC message with the session headers; the body is read
    /// lazily. `request_id` names the id whose response ends the exchange.
    pub async fn send_message(
        &self,
        url: &str,
        message: &Value,
        request_id: Option<Value>,
    ) -> Result<ResponseStream> {
        let req = self
            .http
            .post(url)
            .headers(self.session_headers())
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(serde_json::to_vec(message)?);
        self.execute(req, request_id)
            .await
            .with_context(|| format!("POST {url}"))
    }

    /// POST a request and return the response as it arrives.
    pub async fn send(&self, url: &str, method: &str, params: Value) -> Result<ResponseStream> {
        let id = Value::from(self.next_request_id());
        let mut msg = json!({ "jsonrpc": "2.0", "id": id, "method": method });
        if !params.is_null() {
            msg["params"] = params;
        }
        self.send_message(url, &msg, Some(id)).await
    }

    /// POST a request and read to its final response.
    pub async fn request(&self, url: &str, method: &str, params: Value) -> Result<Exchange> {
        self.send(url, method, params)
            .await?
            .finish()
            .await
            .with_context(|| format!("{method} at {url}"))
    }

    /// `tools/call` with `name` and `arguments`.
    pub async fn call_tool(&self, url: &str, name: &str, arguments: Value) -> Result<Exchange> {
        self.request(
            url,
            "tools/call",
            json!({ "name": name, "arguments": arguments }),
        )
        .await
    }

    /// `tools/call` and return `result.structuredContent`.
    pub async fn call_tool_structured(
        &self,
        url: &str,
        name: &str,
        arguments: Value,
    ) -> Result<Value> {
        let ex = self.call_tool(url, name, arguments).await?;
        ex.structured_content().cloned()
    }

    /// POST a notification (no id); the server should answer 202.
    pub async fn notify(&self, url: &str, method: &str, params: Value) -> Result<Exchange> {
        let mut msg = json!({ "jsonrpc": "2.0", "method": method });
        if !params.is_null() {
            msg["params"] = params;
        }
        self.send_message(url, &msg, None).await?.finish().await
    }

    /// POST the response to a server→client request `id`.
    pub async fn respond(&self, url: &str, id: &Value, result: Value) -> Result<Exchange> {
        let msg = json!({ "jsonrpc": "2.0", "id": id, "result": result });
        self.send_message(url, &msg, None).await?.finish().await
    }

    /// POST an error response to a server→client request `id`.
    pub async fn respond_error(
        &self,
        url: &str,
        id: &Value,
        code: i64,
        message: &str,
    ) -> Result<Exchange> {
        let msg = json!({
            "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message }
        });
        self.send_message(url, &msg, None).await?.finish().await
    }

    /// Open the standalone GET SSE stream, resuming after `last_event_id`.
    /// The returned stream is read with [`ResponseStream::next_event`].
    pub async fn get_stream(
        &self,
        url: &str,
        last_event_id: Option<&str>,
    ) -> Result<ResponseStream> {
        let mut req = self
            .http
            .get(url)
            .headers(self.session_headers())
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header(LAST_EVENT_ID_HEADER, id);
        }
        self.execute(req, None)
            .await
            .with_context(|| format!("GET {url}"))
    }

    /// DELETE the session.
    pub async fn delete(&self, url: &str) -> Result<StatusCode> {
        let req = self.http.delete(url).headers(self.session_headers());
        let resp = tokio::time::timeout(self.timeout, req.send())
            .await
            .map_err(|_| anyhow!("DELETE {url}: no response within {:?}", self.timeout))??;
        Ok(resp.status())
    }

    /// POST exactly `headers` and `body` (no session headers added).
    pub async fn raw_post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<(StatusCode, HeaderMap, Bytes)> {
        self.raw_request(Method::POST, url, headers, body).await
    }

    /// Any method with exactly `headers` and `body`; reads the whole body.
    pub async fn raw_request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<(StatusCode, HeaderMap, Bytes)> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            let name: HeaderName = k.parse().with_context(|| format!("header name {k:?}"))?;
            let value: HeaderValue = v.parse().with_context(|| format!("header value {v:?}"))?;
            map.append(name, value);
        }
        let req = self
            .http
            .request(method.clone(), url)
            .headers(map)
            .body(body.into());
        let fut = async {
            let resp = req.send().await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await?;
            anyhow::Ok((status, headers, body))
        };
        tokio::time::timeout(self.timeout, fut).await.map_err(|_| {
            anyhow!(
                "{method} {url}: no complete response within {:?}",
                self.timeout
            )
        })?
    }

    async fn execute(
        &self,
        req: reqwest::RequestBuilder,
        request_id: Option<Value>,
    ) -> Result<ResponseStream> {
        let resp = tokio::time::timeout(self.timeout, req.send())
            .await
            .map_err(|_| anyhow!("no response headers within {:?}", self.timeout))??;
        let status = resp.status();
        let headers = resp.headers().clone();
        let is_sse = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        let body = if is_sse {
            Body::Sse(SseStream::new(resp))
        } else {
            let bytes = tokio::time::timeout(self.timeout, resp.bytes())
                .await
                .map_err(|_| anyhow!("body not complete within {:?}", self.timeout))??;
            Body::Whole(bytes)
        };
        Ok(ResponseStream::new(
            status,
            headers,
            request_id,
            body,
            self.timeout,
        ))
    }
}
