//! A Streamable HTTP upstream MCP server, as the bridge talks to it: POST
//! one JSON-RPC message with the upstream session's headers, and read what
//! comes back (202, one JSON body, or an SSE stream of messages).

use bytes::Bytes;
use futures::{Stream, StreamExt};
use jetway_shared::protocol::ProtocolVersion;
use reqwest::{StatusCode, header};
use serde_json::Value;
use std::{pin::Pin, time::Duration};

pub use jetway_shared::protocol::{SESSION_HEADER, VERSION_HEADER};

/// Why the upstream could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Nothing answered (connection refused, reset, DNS, or no response
    /// headers within the timeout): the request did not reach the server.
    #[error("upstream unreachable: {0}")]
    Unreachable(#[source] reqwest::Error),
    /// The upstream does not know the session (restarted, expired, or a
    /// replica without it): the request did not run.
    #[error("upstream session not found")]
    SessionNotFound,
    /// Any other HTTP status, with the body if it was a JSON-RPC message.
    #[error("upstream answered HTTP {status}")]
    Status {
        status: StatusCode,
        body: Option<Value>,
    },
    /// The response broke off or was not what the transport allows.
    #[error("upstream response unreadable: {0}")]
    Body(String),
}

/// Where an upstream lives and what every request to it carries.
#[derive(Clone)]
pub struct Upstream {
    http: reqwest::Client,
    url: reqwest::Url,
    /// Headers from configuration (an API key, say), never from the stream.
    headers: header::HeaderMap,
}

/// What a POST brought back.
pub enum Reply {
    /// 202: a notification or response was accepted.
    Accepted,
    /// One JSON-RPC message.
    Json {
        session: Option<String>,
        message: Value,
    },
    /// An SSE stream of JSON-RPC messages.
    Stream {
        session: Option<String>,
        messages: Messages,
    },
}

/// The messages of an upstream SSE stream, in order.
pub type Messages = Pin<Box<dyn Stream<Item = Result<Value, UpstreamError>> + Send>>;

/// The messages of an upstream SSE stream with their event ids.
pub type Events =
    Pin<Box<dyn Stream<Item = Result<(Option<String>, Value), UpstreamError>> + Send>>;

/// What opening the upstream's GET stream brought.
pub enum Listen {
    Open(Events),
    /// 405: the upstream offers no GET stream.
    NotOffered,
}

/// The upstream session headers of one request.
#[derive(Clone, Copy)]
pub struct SessionHeaders<'a> {
    pub id: Option<&'a str>,
    pub version: Option<ProtocolVersion>,
}

impl Upstream {
    /// `connect_timeout` bounds reaching the server, `response_timeout` the
    /// wait for response headers (not the SSE stream that follows).
    pub fn new(
        url: reqwest::Url,
        headers: header::HeaderMap,
        connect_timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        jetway_shared::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self { http, url, headers })
    }

    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// POSTs one message and returns what came back.
    pub async fn post(
        &self,
        message: &Value,
        session: SessionHeaders<'_>,
        response_timeout: Duration,
    ) -> Result<Reply, UpstreamError> {
        let mut req = self
            .http
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header(header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(message).unwrap_or_default());
        let session_sent = session.id.is_some();
        if let Some(id) = session.id {
            req = req.header(SESSION_HEADER, id);
        }
        if let Some(v) = session.version {
            req = req.header(VERSION_HEADER, v.as_str());
        }
        let resp = tokio::time::timeout(response_timeout, req.send())
            .await
            .map_err(|_| UpstreamError::Body("no response headers in time".into()))?
            .map_err(UpstreamError::Unreachable)?;
        let status = resp.status();
        let session = resp
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if status == StatusCode::NOT_FOUND && session_sent {
            return Err(UpstreamError::SessionNotFound);
        }
        if status == StatusCode::ACCEPTED {
            return Ok(Reply::Accepted);
        }
        let is_sse = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        if !status.is_success() {
            let body: Option<Value> = resp
                .bytes()
                .await
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            // The TypeScript SDK answers an unknown session id with 400 and
            // an error that names the session, where the spec says 404.
            if status == StatusCode::BAD_REQUEST && session_sent && names_session(body.as_ref()) {
                return Err(UpstreamError::SessionNotFound);
            }
            return Err(UpstreamError::Status { status, body });
        }
        if is_sse {
            let messages = sse_messages(resp.bytes_stream());
            return Ok(Reply::Stream { session, messages });
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| UpstreamError::Body(e.to_string()))?;
        let message =
            serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Body(e.to_string()))?;
        Ok(Reply::Json { session, message })
    }

    /// Opens the upstream session's standalone GET stream, resuming after
    /// `last_event_id`.
    pub async fn listen(
        &self,
        session: SessionHeaders<'_>,
        last_event_id: Option<&str>,
        response_timeout: Duration,
    ) -> Result<Listen, UpstreamError> {
        let mut req = self
            .http
            .get(self.url.clone())
            .headers(self.headers.clone())
            .header(header::ACCEPT, "text/event-stream");
        if let Some(id) = session.id {
            req = req.header(SESSION_HEADER, id);
        }
        if let Some(v) = session.version {
            req = req.header(VERSION_HEADER, v.as_str());
        }
        if let Some(id) = last_event_id {
            req = req.header(jetway_shared::protocol::LAST_EVENT_ID, id);
        }
        let resp = tokio::time::timeout(response_timeout, req.send())
            .await
            .map_err(|_| UpstreamError::Body("no response headers in time".into()))?
            .map_err(UpstreamError::Unreachable)?;
        match resp.status() {
            StatusCode::METHOD_NOT_ALLOWED => Ok(Listen::NotOffered),
            StatusCode::NOT_FOUND => Err(UpstreamError::SessionNotFound),
            s if s.is_success() => Ok(Listen::Open(sse_events(resp.bytes_stream()))),
            status => Err(UpstreamError::Status { status, body: None }),
        }
    }

    /// Ends an upstream session (DELETE); errors are only logged: the
    /// upstream expires it anyway.
    pub async fn end(&self, session: SessionHeaders<'_>) {
        let Some(id) = session.id else { return };
        let mut req = self
            .http
            .delete(self.url.clone())
            .headers(self.headers.clone())
            .header(SESSION_HEADER, id);
        if let Some(v) = session.version {
            req = req.header(VERSION_HEADER, v.as_str());
        }
        if let Err(e) = req.send().await {
            tracing::debug!(error = %e, "could not end the upstream session");
        }
    }
}

/// True if a JSON-RPC error body is about the session.
fn names_session(body: Option<&Value>) -> bool {
    body.and_then(|b| b.pointer("/error/message"))
        .and_then(Value::as_str)
        .is_some_and(|m| m.to_ascii_lowercase().contains("session"))
}

/// The JSON-RPC messages of an SSE body (events without data, such as a
/// priming event, are skipped).
fn sse_messages(
    body: impl Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
) -> Messages {
    Box::pin(sse_events(body).map(|e| e.map(|(_, message)| message)))
}

/// [`sse_messages`], with each message's event id.
fn sse_events(body: impl Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static) -> Events {
    let events = sse_stream::SseStream::from_bytes_stream(body);
    Box::pin(events.filter_map(|event| async move {
        match event {
            Err(e) => Some(Err(UpstreamError::Body(e.to_string()))),
            Ok(sse) => {
                let data = sse.data?;
                if data.trim().is_empty() {
                    return None;
                }
                let message =
                    serde_json::from_str(&data).map_err(|e| UpstreamError::Body(e.to_string()));
                Some(message.map(|m| (sse.id, m)))
            }
        }
    }))
}
