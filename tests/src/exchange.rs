//! What came back from the gateway for one HTTP request.
//!
//! [`ResponseStream`] is a response still being read: a POST answered with
//! `text/event-stream`, or the standalone GET stream. A test pulls events one
//! at a time (to answer a `sampling/createMessage` request mid-stream, say)
//! and then calls [`ResponseStream::finish`] to read on to the final JSON-RPC
//! response. [`Exchange`] is the finished result: status, headers, every SSE
//! event seen, the raw body for non-SSE answers, and the final response, with
//! accessors for what tests assert on (`result`, `error_code`,
//! `structured_content`, …).

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::sse::{SseEvent, SseStream};

/// A finished HTTP exchange with the gateway.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// SSE events in arrival order (empty for non-SSE responses).
    pub events: Vec<SseEvent>,
    /// The raw body of a non-SSE response (empty for SSE).
    pub body: Bytes,
    /// The final JSON-RPC response: the message whose `id` equals the request
    /// id (from the SSE stream or the JSON body). For error statuses with a
    /// JSON body that has no matching id, the JSON body.
    pub response: Option<Value>,
}

impl Exchange {
    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The `Content-Type` header.
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// Whether the body was an SSE stream.
    pub fn is_sse(&self) -> bool {
        self.content_type()
            .is_some_and(|ct| ct.starts_with("text/event-stream"))
    }

    /// The body parsed as JSON (non-SSE responses).
    pub fn json_body(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The final response, or an error describing what came back instead.
    pub fn response(&self) -> Result<&Value> {
        self.response.as_ref().ok_or_else(|| {
            anyhow!(
                "no JSON-RPC response (HTTP {}, {} events, body {:?})",
                self.status,
                self.events.len(),
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `result` of the final response; an error if it is a JSON-RPC
    /// error or missing.
    pub fn result(&self) -> Result<&Value> {
        let resp = self.response()?;
        if let Some(err) = resp.get("error") {
            bail!("JSON-RPC error (HTTP {}): {err}", self.status);
        }
        resp.get("result")
            .ok_or_else(|| anyhow!("response has no result: {resp}"))
    }

    /// The `error` object of the final response, if it is an error.
    pub fn error(&self) -> Option<&Value> {
        self.response.as_ref()?.get("error")
    }

    /// The JSON-RPC error code, if the final response is an error.
    pub fn error_code(&self) -> Option<i64> {
        self.error()?.get("code")?.as_i64()
    }

    /// `result.structuredContent` of a `tools/call` response.
    pub fn structured_content(&self) -> Result<&Value> {
        let result = self.result()?;
        if result.get("isError") == Some(&Value::Bool(true)) {
            bail!("tool returned isError: {result}");
        }
        result
            .get("structuredContent")
            .ok_or_else(|| anyhow!("result has no structuredContent: {result}"))
    }

    /// Whether a `tools/call` result has `isError: true`.
    pub fn is_tool_error(&self) -> bool {
        self.result()
            .is_ok_and(|r| r.get("isError") == Some(&Value::Bool(true)))
    }

    /// Every JSON-RPC message received (SSE data or the JSON body).
    pub fn messages(&self) -> Vec<&Value> {
        if self.events.is_empty() {
            return self.response.iter().collect();
        }
        self.events.iter().filter_map(|e| e.json.as_ref()).collect()
    }

    /// Notifications received (messages with a `method` and no `id`), in order.
    pub fn notifications(&self) -> Vec<&Value> {
        self.messages()
            .into_iter()
            .filter(|m| m.get("method").is_some() && m.get("id").is_none())
            .collect()
    }

    /// Server→client requests received (messages with `method` and `id`).
    pub fn requests(&self) -> Vec<&Value> {
        self.messages()
            .into_iter()
            .filter(|m| m.get("method").is_some() && m.get("id").is_some())
            .collect()
    }

    /// The `id` fields of the SSE events that had one, in order.
    pub fn event_ids(&self) -> Vec<&str> {
        self.events.iter().filter_map(|e| e.id.as_deref()).collect()
    }
}

/// Whether `msg` (or, for an array, one of its elements) is the response to
/// request `id`; returns that response.
pub(crate) fn find_response(msg: &Value, id: &Value) -> Option<Value> {
    match msg {
        Value::Array(items) => items.iter().find_map(|m| find_response(m, id)),
        Value::Object(o)
            if o.get("id") == Some(id) && (o.contains_key("result") || o.contains_key("error")) =>
        {
            Some(msg.clone())
        }
        _ => None,
    }
}

/// The body of a [`ResponseStream`].
#[derive(Debug)]
pub(crate) enum Body {
    /// `text/event-stream`, read incrementally.
    Sse(SseStream),
    /// Anything else, read whole.
    Whole(Bytes),
}

/// A response whose body may still be arriving.
#[derive(Debug)]
pub struct ResponseStream {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    request_id: Option<Value>,
    body: Body,
    events: Vec<SseEvent>,
    response: Option<Value>,
    timeout: Duration,
}

impl ResponseStream {
    pub(crate) fn new(
        status: StatusCode,
        headers: HeaderMap,
        request_id: Option<Value>,
        body: Body,
        timeout: Duration,
    ) -> Self {
        let response = match &body {
            Body::Whole(bytes) => serde_json::from_slice::<Value>(bytes).ok().map(|json| {
                request_id
                    .as_ref()
                    .and_then(|id| find_response(&json, id))
                    .unwrap_or(json)
            }),
            Body::Sse(_) => None,
        };
        Self {
            status,
            headers,
            request_id,
            body,
            events: Vec::new(),
            response,
            timeout,
        }
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// Whether the body is an SSE stream.
    pub fn is_sse(&self) -> bool {
        matches!(self.body, Body::Sse(_))
    }

    /// The events read so far.
    pub fn events(&self) -> &[SseEvent] {
        &self.events
    }

    /// Reads events until one satisfies `done` and returns it; an error
    /// naming `what` (and the events read) if the stream ends first or
    /// nothing satisfies it within `timeout`.
    pub async fn read_until(
        &mut self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&SseEvent) -> bool,
    ) -> Result<SseEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self
                .next_event(left)
                .await
                .with_context(|| format!("waiting for {what}; events so far: {:?}", self.events))?
            {
                Some(ev) if done(&ev) => return Ok(ev),
                Some(_) => {}
                None => bail!("the stream ended before {what}; events: {:?}", self.events),
            }
        }
    }

    /// Reads until the server ends the stream, within `timeout` (the
    /// events stay in [`ResponseStream::events`]).
    pub async fn read_to_end(&mut self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let next = self.next_event(left).await.with_context(|| {
                format!(
                    "reading to the end of the stream; events so far: {:?}",
                    self.events
                )
            })?;
            if next.is_none() {
                return Ok(());
            }
        }
    }

    /// The final response, once it has been read.
    pub fn final_response(&self) -> Option<&Value> {
        self.response.as_ref()
    }

    /// The last SSE event id seen (what to send as `Last-Event-ID`).
    pub fn last_event_id(&self) -> Option<&str> {
        match &self.body {
            Body::Sse(s) => s.last_event_id(),
            Body::Whole(_) => None,
        }
    }

    /// The last `retry` value (ms) the server sent on this stream, if any.
    pub fn reconnection_time(&self) -> Option<u64> {
        match &self.body {
            Body::Sse(s) => s.reconnection_time(),
            Body::Whole(_) => None,
        }
    }

    /// The next SSE event; `Ok(None)` at end of stream (always for non-SSE
    /// bodies); an error if none arrives within `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> Result<Option<SseEvent>> {
        let Body::Sse(stream) = &mut self.body else {
            return Ok(None);
        };
        let ev = stream.next_event(timeout).await?;
        if let Some(ev) = &ev {
            if let (Some(json), Some(id)) = (&ev.json, &self.request_id)
                && let Some(resp) = find_response(json, id)
            {
                self.response = Some(resp);
            }
            self.events.push(ev.clone());
        }
        Ok(ev)
    }

    /// The next event that carries a JSON message (skips priming events).
    pub async fn next_message(&mut self, timeout: Duration) -> Result<Option<SseEvent>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await? {
                Some(ev) if ev.json.is_some() => return Ok(Some(ev)),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }

    /// The next server→client request (e.g. `sampling/createMessage`),
    /// skipping notifications; an error if the final response or the end of
    /// the stream comes first.
    pub async fn next_request(&mut self, timeout: Duration) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ev = self
                .next_message(left)
                .await?
                .ok_or_else(|| anyhow!("stream ended before a server→client request"))?;
            if ev.is_request() {
                return ev.json.context("request event has JSON");
            }
            if self.response.is_some() {
                bail!(
                    "final response arrived before a server→client request: {:?}",
                    self.response
                );
            }
        }
    }

    /// Expect the server to close the stream within `timeout` with no
    /// further events.
    pub async fn expect_end(&mut self, timeout: Duration) -> Result<()> {
        if let Some(ev) = self.next_event(timeout).await? {
            bail!("expected the SSE stream to end, got event {ev:?}");
        }
        Ok(())
    }

    /// Read until the final response (or the end of the stream) and return
    /// the whole exchange. Uses the client's timeout.
    pub async fn finish(self) -> Result<Exchange> {
        let timeout = self.timeout;
        self.finish_within(timeout).await
    }

    /// [`ResponseStream::finish`] with an explicit timeout.
    pub async fn finish_within(mut self, timeout: Duration) -> Result<Exchange> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.response.is_none() || self.request_id.is_none() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    let methods: Vec<&str> =
                        self.events.iter().filter_map(|e| e.method()).collect();
                    return Err(e).context(format!(
                        "waiting for the final response (status {}, messages with methods so far: \
                         {methods:?}; a server→client request needs send() + respond())",
                        self.status
                    ));
                }
            }
        }
        let body = match self.body {
            Body::Whole(bytes) => bytes,
            Body::Sse(_) => Bytes::new(),
        };
        Ok(Exchange {
            status: self.status,
            headers: self.headers,
            events: self.events,
            body,
            response: self.response,
        })
    }

    /// Hand the remaining events to a background task and receive them on a
    /// bounded channel (closed at end of stream or on a read error). Lets a
    /// test keep a GET stream open while it does other things.
    pub fn into_receiver(mut self, capacity: usize) -> mpsc::Receiver<SseEvent> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(async move {
            let Body::Sse(stream) = &mut self.body else {
                return;
            };
            loop {
                // Stop reading (and drop the connection) once the receiver
                // is gone, even if the server sends nothing more.
                let ev = tokio::select! {
                    () = tx.closed() => break,
                    // A day: effectively "until the stream ends".
                    ev = stream.next_event(Duration::from_secs(86_400)) => ev,
                };
                match ev {
                    Ok(Some(ev)) => {
                        if tx.send(ev).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        });
        rx
    }
}
