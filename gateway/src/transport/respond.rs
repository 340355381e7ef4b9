//! Turning bus readers into HTTP responses: an SSE body that carries every
//! event of one or more streams, or (JSON response mode) the final
//! responses alone.

use crate::{
    metrics::{Exchange, StreamGuard, StreamKind},
    outlet::{self, Frame},
    sse::{self, Item},
};
use axum::response::Response;
use bytes::Bytes;
use futures::{StreamExt, stream::SelectAll};
use serde_json::Value;
use std::time::Duration;
use tokio::{sync::mpsc, time::Instant};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// How long clients should wait before reconnecting after the gateway ends
/// a stream on purpose (drain, timeout, bus trouble).
pub const RETRY_AFTER: Duration = Duration::from_millis(500);

/// When an SSE response ends besides its readers finishing.
pub struct Ending {
    /// Final messages after which the response is complete.
    pub finals: usize,
    /// End (with a `retry` hint) at this instant: the request timeout.
    pub deadline: Option<Instant>,
    /// Polling: end (with a `retry` hint) after this long. Only for streams
    /// whose events carry ids, so the client can come back with `Last-Event-ID`.
    pub poll: Option<Duration>,
    /// End (with a `retry` hint) when cancelled: the gateway is draining.
    pub shutdown: CancellationToken,
}

/// What a response's metrics record: the stream's kind (counted while it is
/// open) and, for a POST, the timing of its requests.
pub struct Observe {
    pub kind: StreamKind,
    pub exchange: Option<Exchange>,
    /// A resume (`Last-Event-ID`): when its GET arrived, to time its first
    /// event.
    pub resumed_at: Option<std::time::Instant>,
}

/// An SSE response over `readers`, starting with `prelude` (priming events).
pub fn sse(prelude: Vec<Bytes>, readers: Vec<mpsc::Receiver<Item>>, ending: Ending) -> Response {
    sse_observed(prelude, readers, ending, None)
}

/// [`sse`], counted and timed as `observe` says.
pub fn sse_observed(
    prelude: Vec<Bytes>,
    readers: Vec<mpsc::Receiver<Item>>,
    ending: Ending,
    observe: Option<Observe>,
) -> Response {
    let (tx, body) = outlet::body();
    let merged: SelectAll<ReceiverStream<Item>> =
        futures::stream::select_all(readers.into_iter().map(ReceiverStream::new));
    let pumped = pump(prelude, merged, ending, tx, observe);
    if jetway_shared::telemetry::enabled() {
        // The request's span lasts until its stream ends.
        tokio::spawn(tracing::Instrument::instrument(
            pumped,
            tracing::Span::current(),
        ));
    } else {
        tokio::spawn(pumped);
    }
    outlet::response(body)
}

async fn pump(
    prelude: Vec<Bytes>,
    mut readers: SelectAll<ReceiverStream<Item>>,
    ending: Ending,
    out: mpsc::Sender<Frame>,
    observe: Option<Observe>,
) {
    let _open = observe.as_ref().map(|o| StreamGuard::open(o.kind));
    let (mut exchange, mut resumed_at) = match observe {
        Some(o) => (o.exchange, o.resumed_at),
        None => (None, None),
    };
    let Ending {
        mut finals,
        deadline,
        poll,
        shutdown,
    } = ending;
    for p in prelude {
        if out.send(p.into()).await.is_err() {
            return;
        }
    }
    let mut first_sent = false;
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let deadline = tokio::time::sleep_until(deadline.unwrap_or(far));
    let poll = tokio::time::sleep_until(poll.map(|p| Instant::now() + p).unwrap_or(far));
    tokio::pin!(deadline, poll);
    loop {
        let chunk = tokio::select! {
            // Draining first: a reader that stops because of the same
            // shutdown must not win the race and skip the retry hint.
            biased;
            _ = shutdown.cancelled() => {
                let _ = out.send(sse::retry(RETRY_AFTER).into()).await;
                return;
            }
            item = readers.next() => match item {
                None => {
                    if shutdown.is_cancelled() {
                        let _ = out.send(sse::retry(RETRY_AFTER).into()).await;
                    }
                    return;
                }
                Some(Item::Event(d)) => {
                    if d.is_final {
                        finals = finals.saturating_sub(1);
                    }
                    let last = d.is_final && finals == 0;
                    if !d.payload.is_empty() && !first_sent {
                        first_sent = true;
                        tracing::debug!(final = d.is_final, "first event");
                    }
                    if last {
                        tracing::debug!("final event");
                    }
                    if let Some(x) = exchange.as_mut() {
                        if last {
                            x.finished(&d.payload);
                        } else if !d.payload.is_empty() {
                            x.event();
                        }
                    }
                    if !d.payload.is_empty() {
                        if let Some(start) = resumed_at.take() {
                            crate::metrics::resume_first_event(start);
                        }
                        let frame = Frame {
                            bytes: sse::frame(&d.id, &d.payload),
                            held: Some(d.held),
                        };
                        if out.send(frame).await.is_err() {
                            return;
                        }
                    }
                    if last {
                        return;
                    }
                    continue;
                }
                Some(Item::Idle) => sse::keep_alive(),
                Some(Item::Failed(why)) => {
                    tracing::warn!(%why, "ending SSE stream: bus read failed");
                    let _ = out.send(sse::retry(RETRY_AFTER).into()).await;
                    return;
                }
            },
            _ = &mut deadline => {
                tracing::info!("ending SSE stream: request timeout; the client may resume");
                if let Some(x) = exchange.as_mut() {
                    x.timed_out();
                }
                let _ = out.send(sse::retry(RETRY_AFTER).into()).await;
                return;
            }
            _ = &mut poll => {
                let _ = out.send(sse::retry(RETRY_AFTER).into()).await;
                return;
            }
            _ = out.closed() => return,
        };
        if out.send(chunk.into()).await.is_err() {
            return;
        }
    }
}

/// JSON response mode: waits for each reader's final message and returns
/// them (one object, or an array for a batch). `None` on timeout/failure.
pub async fn collect_finals(
    readers: Vec<mpsc::Receiver<Item>>,
    deadline: Instant,
) -> Option<Vec<Value>> {
    let mut out = Vec::with_capacity(readers.len());
    for mut rx in readers {
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await.ok()?? {
                Item::Event(d) if d.is_final => {
                    if !d.payload.is_empty() {
                        out.push(serde_json::from_slice(&d.payload).ok()?);
                    }
                    break;
                }
                Item::Event(_) | Item::Idle => continue,
                Item::Failed(_) => return None,
            }
        }
    }
    Some(out)
}
