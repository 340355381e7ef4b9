//! Server-Sent Events, read incrementally with the `sse-stream` crate.
//!
//! `sse-stream` splits a `text/event-stream` body into blocks (lines end in
//! CRLF, LF or a lone CR, also when split across chunks; a leading BOM is
//! dropped; comment lines such as `: keep-alive` are skipped; `data` lines
//! are joined by `\n`; an empty line ends a block; an unterminated block at
//! the end is discarded). It is stricter than the WHATWG standard: a line
//! without a colon, an unknown field, a non-numeric `retry` or a field given
//! twice in one block is an error, not ignored — for a test reading what
//! Jetway sends, a loud failure.
//!
//! On top of it, this module keeps what a client must remember across
//! blocks: the last event id and the reconnection time (`retry`), which a
//! block without `data` also sets. Only blocks with `data` (an MCP priming
//! event has empty data) are dispatched as an [`SseEvent`].
//!
//! [`SseStream`] reads an HTTP body and hands out events one at a time with
//! a deadline, so a test can react to a server→client request before the
//! final response arrives. Both POST responses and the standalone GET stream
//! use it. [`SseParser`] takes bytes pushed to it (a body already read whole).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use serde_json::Value;
use sse_stream::Sse;

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
    /// The `retry` field of this block, if it had one.
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

    /// `params.progress` of a `notifications/progress` event.
    pub fn progress(&self) -> Option<f64> {
        if self.method() != Some("notifications/progress") {
            return None;
        }
        self.json.as_ref()?.pointer("/params/progress")?.as_f64()
    }

    /// `(level, data.msg)` of a `notifications/message` event (the demo
    /// tools log `{"msg": …}`).
    pub fn log(&self) -> Option<(&str, &str)> {
        if self.method() != Some("notifications/message") {
            return None;
        }
        let params = self.json.as_ref()?.get("params")?;
        Some((
            params.get("level")?.as_str()?,
            params.pointer("/data/msg")?.as_str()?,
        ))
    }
}

/// What a client remembers across blocks.
#[derive(Debug, Default)]
struct StreamState {
    last_event_id: Option<String>,
    reconnection_time: Option<u64>,
}

impl StreamState {
    /// Takes in one block: its `id` and `retry` update the state; a block
    /// with `data` becomes an event.
    fn dispatch(&mut self, block: Sse) -> Option<SseEvent> {
        if let Some(id) = &block.id {
            self.last_event_id = Some(id.clone());
        }
        if let Some(ms) = block.retry {
            self.reconnection_time = Some(ms);
        }
        let data = block.data?;
        let json = if data.trim().is_empty() {
            None
        } else {
            serde_json::from_str(&data).ok()
        };
        Some(SseEvent {
            id: block.id,
            event: block.event,
            data,
            retry: block.retry,
            json,
        })
    }
}

/// Bytes pushed into an [`SseParser`], read by its `sse-stream` parser.
#[derive(Debug, Default)]
struct Pushed {
    chunks: VecDeque<Bytes>,
    finished: bool,
}

/// The byte stream an [`SseParser`] feeds: pending while nothing was pushed.
struct PushedStream(Arc<Mutex<Pushed>>);

impl Stream for PushedStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let mut pushed = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match pushed.chunks.pop_front() {
            Some(chunk) => Poll::Ready(Some(Ok(chunk))),
            None if pushed.finished => Poll::Ready(None),
            // Only ever polled right after a push, by `SseParser::drain`.
            None => Poll::Pending,
        }
    }
}

/// The blocks of one event stream, as `sse-stream` parses them.
type Blocks = BoxStream<'static, Result<Sse, sse_stream::Error>>;

fn blocks<E>(body: impl Stream<Item = Result<Bytes, E>> + Send + 'static) -> Blocks
where
    E: std::error::Error + Send + Sync + 'static,
{
    sse_stream::SseStream::from_bytes_stream(body).boxed()
}

/// `text/event-stream` bytes pushed in, events out (for a body read whole,
/// or fed chunk by chunk).
pub struct SseParser {
    pushed: Arc<Mutex<Pushed>>,
    blocks: Blocks,
    state: StreamState,
    /// `sse-stream` drops the rest of a chunk with an invalid line: after
    /// an error, what follows cannot be trusted.
    failed: bool,
}

impl std::fmt::Debug for SseParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseParser")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        let pushed = Arc::new(Mutex::new(Pushed::default()));
        Self {
            blocks: blocks(PushedStream(pushed.clone())),
            pushed,
            state: StreamState::default(),
            failed: false,
        }
    }

    /// Feed a chunk; returns the events completed by it, in order, or the
    /// reason the bytes are not a valid event stream.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>> {
        self.lock().chunks.push_back(Bytes::copy_from_slice(chunk));
        self.drain()
    }

    /// Signal end of stream: an unterminated event is discarded.
    pub fn finish(&mut self) {
        self.lock().finished = true;
        // Nothing can complete now; what is left is an unterminated block.
        let _ = self.drain();
    }

    /// The last event ID as the standard defines it (persists across
    /// events; what a client sends as `Last-Event-ID` when it reconnects).
    pub fn last_event_id(&self) -> Option<&str> {
        self.state.last_event_id.as_deref()
    }

    /// The last `retry` value received, in milliseconds.
    pub fn reconnection_time(&self) -> Option<u64> {
        self.state.reconnection_time
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pushed> {
        self.pushed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Polls the parser until it has consumed everything pushed. The byte
    /// stream is in memory, so nothing here waits: a no-op waker suffices.
    fn drain(&mut self) -> Result<Vec<SseEvent>> {
        if self.failed {
            bail!("an earlier chunk was not a valid SSE stream");
        }
        let mut cx = TaskContext::from_waker(Waker::noop());
        let mut out = Vec::new();
        loop {
            match self.blocks.poll_next_unpin(&mut cx) {
                Poll::Ready(Some(Ok(block))) => out.extend(self.state.dispatch(block)),
                Poll::Ready(Some(Err(e))) => {
                    self.failed = true;
                    return Err(anyhow::Error::new(e)).context("not a valid SSE stream");
                }
                Poll::Ready(None) | Poll::Pending => return Ok(out),
            }
        }
    }
}

/// An HTTP response body read as SSE, event by event.
pub struct SseStream {
    blocks: Blocks,
    state: StreamState,
    ended: bool,
    received: usize,
}

impl std::fmt::Debug for SseStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseStream")
            .field("state", &self.state)
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
            blocks: blocks(body),
            state: StreamState::default(),
            ended: false,
            received: 0,
        }
    }

    /// The next event, `Ok(None)` once the server closed the stream, or an
    /// error if nothing arrived within `timeout` (the stream stays usable)
    /// or the body could not be read or parsed (the stream has ended).
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
        while !self.ended {
            match self.blocks.next().await {
                Some(Ok(block)) => {
                    if let Some(ev) = self.state.dispatch(block) {
                        self.received += 1;
                        return Ok(Some(ev));
                    }
                }
                Some(Err(e)) => {
                    self.ended = true;
                    let what = match e {
                        sse_stream::Error::Body(_) => "reading SSE body",
                        _ => "parsing SSE body",
                    };
                    return Err(anyhow::Error::new(e)).context(what);
                }
                None => self.ended = true,
            }
        }
        Ok(None)
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
        self.state.last_event_id.as_deref()
    }

    /// The last `retry` value seen on this stream, in milliseconds.
    pub fn reconnection_time(&self) -> Option<u64> {
        self.state.reconnection_time
    }

    /// Whether the server has closed the stream (or it failed) and all
    /// events were read.
    pub fn is_ended(&self) -> bool {
        self.ended
    }
}
