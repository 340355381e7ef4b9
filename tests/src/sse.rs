//! Server-Sent Events, read incrementally.
//!
//! [`SseParser`] is a push parser for the `text/event-stream` format as the
//! WHATWG HTML standard defines it ("9.2.6 Interpreting an event stream"):
//! lines end in CRLF, LF or a lone CR (also when split across chunks); a
//! leading BOM is dropped; lines starting with `:` are comments; `data` lines
//! accumulate joined by `\n`; an empty line dispatches the event; a block with
//! no `data` field is not dispatched (its `id`/`retry` still take effect).
//!
//! [`SseStream`] drives the parser over an HTTP body and hands out events one
//! at a time with a deadline, so a test can react to a server→client request
//! before the final response arrives. Both POST responses and the standalone
//! GET stream use it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::Value;

/// One dispatched SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `id` field *of this event's block*, if it had one (`Some("")` for
    /// an empty `id:`). Unlike the browser's `lastEventId`, it is not
    /// inherited from earlier events; see [`SseParser::last_event_id`].
    pub id: Option<String>,
    /// The `event` field (the type); `None` means the default, `message`.
    pub event: Option<String>,
    /// The data lines joined by `\n`.
    pub data: String,
    /// The `retry` field of this block, if it had a valid one.
    pub retry: Option<u64>,
    /// `data` parsed as JSON when it is non-empty and valid JSON.
    pub json: Option<Value>,
}

impl SseEvent {
    /// True when this event carries a JSON-RPC request (has `method` and `id`).
    pub fn is_request(&self) -> bool {
        self.json
            .as_ref()
            .is_some_and(|j| j.get("method").is_some() && j.get("id").is_some())
    }

    /// The JSON-RPC `method`, if the data is a request or notification.
    pub fn method(&self) -> Option<&str> {
        self.json.as_ref()?.get("method")?.as_str()
    }
}

/// Incremental `text/event-stream` parser. Feed bytes, get events.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// The previous chunk ended in CR: skip an LF at the start of the next.
    pending_cr: bool,
    /// Whether the (possible) leading BOM has been dealt with.
    started: bool,
    // Per-event buffers.
    data: String,
    has_data: bool,
    event: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
    // Stream state.
    last_event_id: Option<String>,
    reconnection_time: Option<u64>,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed a chunk; returns the events completed by it, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        const BOM: &[u8] = b"\xEF\xBB\xBF";
        let mut out = Vec::new();
        if self.started {
            let mut chunk = chunk;
            if self.pending_cr && !chunk.is_empty() {
                self.pending_cr = false;
                chunk = chunk.strip_prefix(b"\n").unwrap_or(chunk);
            }
            self.feed_started(chunk, &mut out);
            return out;
        }
        // Buffer until we know whether the stream starts with a BOM (which
        // may itself be split across chunks).
        self.line.extend_from_slice(chunk);
        if self.line.len() < BOM.len() && BOM.starts_with(&self.line) {
            return out;
        }
        self.started = true;
        let head = std::mem::take(&mut self.line);
        self.feed_started(head.strip_prefix(BOM).unwrap_or(&head), &mut out);
        out
    }

    fn feed_started(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        let mut i = 0;
        while i < chunk.len() {
            match chunk[i] {
                b'\n' => self.end_line(out),
                b'\r' => {
                    self.end_line(out);
                    match chunk.get(i + 1) {
                        Some(b'\n') => i += 1,
                        Some(_) => {}
                        None => self.pending_cr = true,
                    }
                }
                b => self.line.push(b),
            }
            i += 1;
        }
    }

    /// Signal end of stream. Per the standard an unterminated event is
    /// discarded, so this only resets the partial state.
    pub fn finish(&mut self) {
        self.line.clear();
        self.reset_event();
    }

    /// The last event ID buffer as the standard defines it (persists across
    /// events; what a client sends as `Last-Event-ID` when it reconnects).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// The last `retry` value received, in milliseconds.
    pub fn reconnection_time(&self) -> Option<u64> {
        self.reconnection_time
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let raw = std::mem::take(&mut self.line);
        let line = String::from_utf8_lossy(&raw);
        if line.is_empty() {
            if let Some(ev) = self.dispatch() {
                out.push(ev);
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (&line[..], ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "id" if !value.contains('\0') => {
                self.id = Some(value.to_owned());
                self.last_event_id = Some(value.to_owned());
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    self.retry = Some(ms);
                    self.reconnection_time = Some(ms);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        if !self.has_data {
            self.reset_event();
            return None;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        let json = if data.trim().is_empty() {
            None
        } else {
            serde_json::from_str(&data).ok()
        };
        let ev = SseEvent {
            id: self.id.take(),
            event: self.event.take(),
            data,
            retry: self.retry.take(),
            json,
        };
        self.reset_event();
        Some(ev)
    }

    fn reset_event(&mut self) {
        self.data.clear();
        self.has_data = false;
        self.event = None;
        self.id = None;
        self.retry = None;
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// An HTTP response body read as SSE, event by event.
pub struct SseStream {
    body: ByteStream,
    parser: SseParser,
    queued: VecDeque<SseEvent>,
    ended: bool,
    received: usize,
}

impl std::fmt::Debug for SseStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseStream")
            .field("queued", &self.queued.len())
            .field("ended", &self.ended)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl SseStream {
    /// Read `response`'s body as an event stream.
    pub fn new(response: reqwest::Response) -> Self {
        Self::from_stream(response.bytes_stream())
    }

    /// Read any byte stream as an event stream (used by unit tests).
    pub fn from_stream(body: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static) -> Self {
        Self {
            body: Box::pin(body),
            parser: SseParser::new(),
            queued: VecDeque::new(),
            ended: false,
            received: 0,
        }
    }

    /// The next event, `Ok(None)` once the server closed the stream, or an
    /// error if nothing arrived within `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> Result<Option<SseEvent>> {
        tokio::time::timeout(timeout, self.next_event_inner())
            .await
            .with_context(|| {
                format!(
                    "no SSE event within {timeout:?} (after {} events)",
                    self.received
                )
            })?
    }

    async fn next_event_inner(&mut self) -> Result<Option<SseEvent>> {
        loop {
            if let Some(ev) = self.queued.pop_front() {
                self.received += 1;
                return Ok(Some(ev));
            }
            if self.ended {
                return Ok(None);
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.queued.extend(self.parser.feed(&chunk)),
                Some(Err(e)) => {
                    self.ended = true;
                    return Err(e).context("reading SSE body");
                }
                None => {
                    self.ended = true;
                    self.parser.finish();
                }
            }
        }
    }

    /// The next event that carries a JSON message (skips priming events with
    /// empty data); `Ok(None)` at end of stream.
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

    /// Read until the server closes the stream; error after `timeout`.
    pub async fn collect_to_end(&mut self, timeout: Duration) -> Result<Vec<SseEvent>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await? {
                Some(ev) => out.push(ev),
                None => return Ok(out),
            }
        }
    }

    /// Expect the server to close the stream within `timeout` without sending
    /// further events; errors if an event arrives instead.
    pub async fn expect_end(&mut self, timeout: Duration) -> Result<()> {
        if let Some(ev) = self.next_event(timeout).await? {
            bail!("expected end of SSE stream, got event {ev:?}");
        }
        Ok(())
    }

    /// The last event ID seen on this stream (standard semantics).
    pub fn last_event_id(&self) -> Option<&str> {
        self.parser.last_event_id()
    }

    /// The last `retry` value seen on this stream, in milliseconds.
    pub fn reconnection_time(&self) -> Option<u64> {
        self.parser.reconnection_time()
    }

    /// Whether the server has closed the stream and all events were read.
    pub fn is_ended(&self) -> bool {
        self.ended && self.queued.is_empty()
    }
}
