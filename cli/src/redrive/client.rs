//! A small MCP Streamable HTTP client for redrive: POST JSON-RPC messages
//! with the session headers, read SSE responses event by event, resume a
//! stream with `GET` + `Last-Event-ID` if it ends early, DELETE the session.
//! For a session recorded on HTTP+SSE it speaks that transport instead
//! (see [`super::http_sse`]).

use crate::error::CliError;
use futures::{StreamExt, stream::BoxStream};
use jetway_shared::protocol::{LAST_EVENT_ID, ProtocolVersion, SESSION_HEADER, VERSION_HEADER};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One client session at one gateway endpoint. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    session: Arc<Mutex<SessionHeaders>>,
    /// Set for an HTTP+SSE session: its one SSE connection.
    sse: Option<Arc<super::http_sse::Link>>,
}

#[derive(Default)]
struct SessionHeaders {
    id: Option<String>,
    protocol: Option<ProtocolVersion>,
}

/// What the gateway answered to a POST.
pub enum Reply {
    /// 202: a notification or response was accepted.
    Accepted,
    /// A single JSON body.
    Json(Value),
    /// An SSE stream.
    Events(Events),
}

impl Client {
    /// A client for `url`; a bare `http://host:port` gets the `/mcp` path.
    pub fn new(url: &str) -> Result<Self, CliError> {
        let mut url = url.trim_end_matches('/').to_owned();
        let has_path = url
            .split_once("://")
            .is_some_and(|(_, rest)| rest.contains('/'));
        if !has_path {
            url.push_str("/mcp");
        }
        jetway_shared::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| gateway_error(&url, e))?;
        Ok(Self {
            http,
            url,
            session: Arc::default(),
            sse: None,
        })
    }

    /// A client for an HTTP+SSE endpoint: a bare `http://host:port` gets
    /// `/sse`, a URL ending in `/mcp` gets `/sse` in its place. Opens the
    /// SSE connection (a new session) at once.
    pub async fn http_sse(url: &str) -> Result<Self, CliError> {
        let mut url = url.trim_end_matches('/').to_owned();
        let has_path = url
            .split_once("://")
            .is_some_and(|(_, rest)| rest.contains('/'));
        if let Some(base) = url.strip_suffix("/mcp") {
            url = format!("{base}/sse");
        } else if !has_path {
            url.push_str("/sse");
        }
        jetway_shared::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| gateway_error(&url, e))?;
        let link = super::http_sse::Link::open(&http, &url).await?;
        let session = SessionHeaders {
            id: Some(link.session_id.clone()),
            protocol: None,
        };
        Ok(Self {
            http,
            url,
            session: Arc::new(Mutex::new(session)),
            sse: Some(Arc::new(link)),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The session id the gateway assigned, once initialized.
    pub fn session_id(&self) -> Option<String> {
        self.session.lock().ok().and_then(|s| s.id.clone())
    }

    /// Sends the negotiated version from now on.
    pub fn set_protocol(&self, version: ProtocolVersion) {
        if let Ok(mut s) = self.session.lock() {
            s.protocol = Some(version);
        }
    }

    fn with_session(&self, mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Ok(s) = self.session.lock() {
            if let Some(id) = &s.id {
                req = req.header(SESSION_HEADER, id);
            }
            if let Some(v) = s.protocol {
                req = req.header(VERSION_HEADER, v.as_str());
            }
        }
        req
    }

    /// POSTs one JSON-RPC message.
    pub async fn post(&self, message: &Value) -> Result<Reply, CliError> {
        if let Some(link) = &self.sse {
            return self.post_http_sse(link, message).await;
        }
        let req = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(serde_json::to_vec(message).unwrap_or_default());
        let resp = self
            .with_session(req)
            .send()
            .await
            .map_err(|e| gateway_error(&self.url, e))?;
        if let Some(id) = resp.headers().get(SESSION_HEADER)
            && let (Ok(id), Ok(mut s)) = (id.to_str(), self.session.lock())
            && s.id.is_none()
        {
            s.id = Some(id.to_owned());
        }
        self.reply(resp).await
    }

    /// HTTP+SSE: POST to the message URL; a request's messages arrive on
    /// the session's SSE connection.
    async fn post_http_sse(
        &self,
        link: &super::http_sse::Link,
        message: &Value,
    ) -> Result<Reply, CliError> {
        let request_id = message.get("method").and(message.get("id")).cloned();
        let rx = request_id.map(|id| link.expect(id));
        let resp = self
            .http
            .post(&link.endpoint)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(message).unwrap_or_default())
            .send()
            .await
            .map_err(|e| gateway_error(&link.endpoint, e))?;
        match (resp.status(), rx) {
            (reqwest::StatusCode::ACCEPTED, Some(rx)) => Ok(Reply::Events(Events::relayed(rx))),
            (reqwest::StatusCode::ACCEPTED, None) => Ok(Reply::Accepted),
            _ => self.reply(resp).await,
        }
    }

    /// Resumes a stream after `last_event_id` (GET + `Last-Event-ID`).
    pub async fn resume(&self, last_event_id: &str) -> Result<Reply, CliError> {
        let req = self
            .http
            .get(&self.url)
            .header("accept", "text/event-stream")
            .header(LAST_EVENT_ID, last_event_id);
        let resp = self
            .with_session(req)
            .send()
            .await
            .map_err(|e| gateway_error(&self.url, e))?;
        self.reply(resp).await
    }

    /// Ends the session (DELETE). HTTP+SSE has no DELETE: its session
    /// ends for the client when the connection closes.
    pub async fn delete(&self) -> Result<(), CliError> {
        if self.sse.is_some() {
            return Ok(());
        }
        let req = self.with_session(self.http.delete(&self.url));
        let resp = req.send().await.map_err(|e| gateway_error(&self.url, e))?;
        if !resp.status().is_success() {
            return Err(gateway_error(
                &self.url,
                format!("DELETE answered {}", resp.status()),
            ));
        }
        Ok(())
    }

    async fn reply(&self, resp: reqwest::Response) -> Result<Reply, CliError> {
        let status = resp.status();
        let is_sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        if status == reqwest::StatusCode::ACCEPTED {
            return Ok(Reply::Accepted);
        }
        if status.is_success() && is_sse {
            return Ok(Reply::Events(Events::new(resp)));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| gateway_error(&self.url, e))?;
        match serde_json::from_slice::<Value>(&body) {
            // Error statuses carry a JSON-RPC error: that is the answer.
            Ok(v) => Ok(Reply::Json(v)),
            Err(_) => Err(gateway_error(
                &self.url,
                format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ),
            )),
        }
    }
}

fn gateway_error(url: &str, e: impl Into<jetway_shared::BoxError>) -> CliError {
    CliError::gateway(url, e)
}

/// An SSE response (parsed by `sse-stream`), read one JSON message at a
/// time; or, on HTTP+SSE, one request's messages taken from the session's
/// connection.
pub struct Events {
    blocks: BoxStream<'static, Result<sse_stream::Sse, sse_stream::Error>>,
    /// The last event id received (what to resume from).
    pub last_event_id: Option<String>,
}

impl Events {
    fn new(resp: reqwest::Response) -> Self {
        Self {
            blocks: sse_stream::SseStream::from_bytes_stream(resp.bytes_stream()).boxed(),
            last_event_id: None,
        }
    }

    /// One request's messages of an HTTP+SSE connection (no resume: the
    /// connection is the session's, not the request's).
    fn relayed(rx: tokio::sync::mpsc::Receiver<Value>) -> Self {
        let blocks = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|m| Ok(sse_stream::Sse::default().data(m.to_string())));
        Self {
            blocks: blocks.boxed(),
            last_event_id: None,
        }
    }

    /// The next event carrying JSON data; `None` when the stream ends.
    /// Priming events (an id, empty data) only move `last_event_id`; so do
    /// events whose data is not JSON.
    pub async fn next_message(&mut self) -> Result<Option<Value>, sse_stream::Error> {
        while let Some(block) = self.blocks.next().await {
            let block = block?;
            if let Some(id) = block.id {
                self.last_event_id = Some(id);
            }
            if let Some(message) = block
                .data
                .and_then(|data| serde_json::from_str::<Value>(&data).ok())
            {
                return Ok(Some(message));
            }
        }
        Ok(None)
    }
}
