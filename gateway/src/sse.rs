//! SSE delivery: the server messages of one stream of a session, read from
//! the bus, exactly once and in order, from any position.
//!
//! Per connection this costs one core subscription on the republished
//! subject (`jetway-live.…`), not a JetStream consumer. Each republished
//! message carries its stream sequence (`Nats-Sequence`) and the previous
//! sequence on the same subject (`Nats-Last-Sequence`); when the latter is
//! newer than the last event delivered, a message was missed (core delivery
//! is at-most-once) and the gap is filled from the stream with direct gets.
//! Resume uses the same path: subscribe, then read everything after the
//! client's `Last-Event-ID` by direct get, then continue live.
//!
//! A reader whose client falls behind by more than the stream's buffer
//! ([`crate::outlet`]) drops its subscription until the client has read,
//! then subscribes again and reads what it missed from the stream: a
//! client that stops reading costs the gateway its buffer, not what the
//! bus sends meanwhile.

use crate::outlet::{self, Held, Outlet};
use async_nats::{
    HeaderMap,
    jetstream::{
        message::StreamMessage,
        stream::{DirectGetError, DirectGetErrorKind, Stream},
    },
};
use bytes::Bytes;
use futures::StreamExt;
use jetway_shared::{
    headers::{self, Control},
    subjects::{EventId, SessionId, StreamKey},
};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One message of an SSE stream, with its position.
#[derive(Debug)]
pub struct Delivered {
    pub id: EventId,
    /// The JSON-RPC message; empty for a closing marker.
    pub payload: Bytes,
    /// The request's final message: the stream ends after it.
    pub is_final: bool,
    /// Its bytes in the stream's buffer, until written to the client.
    pub held: Held,
}

/// What ends a reader besides a final message.
#[derive(Debug)]
pub enum Item {
    Event(Delivered),
    /// Nothing happened for a while: the HTTP side sends a keep-alive.
    Idle,
    /// The bus cannot be read; the connection should end so the client resumes.
    Failed(ReadFailure),
}

/// Why a reader stopped reading the bus.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadFailure {
    #[error("subscription ended")]
    SubscriptionEnded,
    #[error("reading the stream: {0}")]
    Read(#[source] std::sync::Arc<async_nats::jetstream::stream::DirectGetError>),
}

/// How to read one stream.
pub struct ReadSpec {
    pub session: SessionId,
    pub key: StreamKey,
    /// Deliver events after this stream sequence.
    pub after: u64,
    /// True if the stream was just created and nothing can precede the
    /// subscription (skips the initial catch-up read).
    pub fresh: bool,
    /// How often to report [`Item::Idle`] and re-check the stream for a
    /// missed tail.
    pub idle: Duration,
    /// Bumped on every NATS (re)connect: what was published while the
    /// connection was down never reaches the core subscription, so the
    /// reader then catches up from the stream.
    pub connects: tokio::sync::watch::Receiver<u64>,
    /// For a GET stream: the sequence of this connection's own takeover
    /// marker. Takeover markers after it end the reader (a newer connection
    /// took over); those up to it are history and skipped.
    pub takeover: Option<u64>,
}

/// Starts reading: subscribes first (so nothing published from now on is
/// missed), then spawns the reader. The receiver ends after the final
/// message, on failure, or on `cancel`; dropping it stops the reader.
pub async fn open(
    nats: &async_nats::Client,
    stream: Stream<()>,
    spec: ReadSpec,
    cancel: CancellationToken,
) -> Result<mpsc::Receiver<Item>, async_nats::SubscribeError> {
    let live = spec.session.live_out(&spec.key);
    let sub = nats.subscribe(live.clone()).await?;
    let (outlet, rx) = outlet::channel();
    let reader = Reader {
        nats: nats.clone(),
        live,
        sub: Some(sub),
        stream,
        subject: spec.session.out(&spec.key),
        key: spec.key.clone(),
        last: spec.after,
        takeover: spec.takeover.unwrap_or(0),
        outlet,
    };
    tokio::spawn(read(reader, spec, cancel));
    Ok(rx)
}

async fn read(mut reader: Reader, spec: ReadSpec, cancel: CancellationToken) {
    if !spec.fresh && reader.catch_up(u64::MAX, true).await.is_break() {
        return;
    }
    let mut tick = tokio::time::interval(spec.idle);
    tick.reset();
    let mut connects = spec.connects;
    connects.mark_unchanged();
    let mut watching = true;
    loop {
        // Unsubscribed while the client was behind: subscribe again, then
        // read what was published meanwhile (which may fall behind again).
        while reader.sub.is_none() {
            if reader.resubscribe().await.is_break() {
                return;
            }
        }
        let Some(sub) = reader.sub.as_mut() else {
            return;
        };
        tokio::select! {
            changed = connects.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                } else if reader.catch_up(u64::MAX, false).await.is_break() {
                    return;
                }
            }
            msg = sub.next() => {
                let Some(msg) = msg else {
                    let _ = reader.outlet.send(Item::Failed(ReadFailure::SubscriptionEnded)).await;
                    return;
                };
                let Some((seq, prev)) = headers::republished_positions(msg.headers.as_ref()) else { continue };
                if seq <= reader.last {
                    continue;
                }
                let flow = if prev > reader.last {
                    // Missed at least one message: read the gap and this one from the stream.
                    reader.catch_up(seq, false).await
                } else {
                    reader.deliver(seq, msg.headers.as_ref(), msg.payload).await
                };
                if flow.is_break() {
                    return;
                }
                tick.reset();
            }
            _ = tick.tick() => {
                // A republished message lost right before a quiet period
                // would otherwise go unnoticed until the next message.
                if reader.catch_up(u64::MAX, false).await.is_break() {
                    return;
                }
                if !reader.outlet.offer(Item::Idle) {
                    return;
                }
            }
            _ = cancel.cancelled() => return,
            _ = reader.outlet.closed() => return,
        }
    }
}

struct Reader {
    nats: async_nats::Client,
    /// The republished subject the live subscription is on.
    live: String,
    /// `None` while the client is behind (see [`crate::outlet`]).
    sub: Option<async_nats::Subscriber>,
    stream: Stream<()>,
    subject: String,
    key: StreamKey,
    last: u64,
    takeover: u64,
    outlet: Outlet<Item>,
}

type Flow = std::ops::ControlFlow<()>;

impl Reader {
    /// Subscribes again, then delivers what was stored meanwhile.
    async fn resubscribe(&mut self) -> Flow {
        match self.nats.subscribe(self.live.clone()).await {
            Ok(sub) => self.sub = Some(sub),
            Err(_) => {
                let _ = self
                    .outlet
                    .send(Item::Failed(ReadFailure::SubscriptionEnded))
                    .await;
                return Flow::Break(());
            }
        }
        self.catch_up(u64::MAX, false).await
    }

    /// Delivers stored messages after `last`, up to and including `until`;
    /// counts them as replayed (`replay`) or as a gap filled.
    async fn catch_up(&mut self, until: u64, replay: bool) -> Flow {
        let mut read = 0;
        let flow = self.catch_up_counting(until, &mut read).await;
        crate::metrics::read_from_stream(replay, read);
        flow
    }

    async fn catch_up_counting(&mut self, until: u64, read: &mut u64) -> Flow {
        while self.last < until {
            match next_stored(&self.stream, &self.subject, self.last, until).await {
                Ok(Some(m)) => {
                    *read += 1;
                    if self
                        .deliver(m.sequence, Some(&m.headers), m.payload)
                        .await
                        .is_break()
                    {
                        return Flow::Break(());
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = self
                        .outlet
                        .send(Item::Failed(ReadFailure::Read(std::sync::Arc::new(e))))
                        .await;
                    return Flow::Break(());
                }
            }
        }
        Flow::Continue(())
    }

    async fn deliver(&mut self, seq: u64, headers: Option<&HeaderMap>, payload: Bytes) -> Flow {
        self.last = seq;
        let is_final = match Control::of(headers) {
            // An older connection's takeover is history for this one.
            Some(Control::Takeover) if seq <= self.takeover => return Flow::Continue(()),
            // Any marker ends the stream, also one a newer build added.
            _ if Control::present(headers) => true,
            _ => headers.and_then(|h| h.get(headers::FINAL)).is_some(),
        };
        let id = EventId {
            stream: self.key.clone(),
            sequence: seq,
        };
        // A client behind: the reader leaves the live subscription until it
        // has read (the stream keeps what comes meanwhile).
        let Some(room) = self.outlet.room_leaving(payload.len(), &mut self.sub).await else {
            return Flow::Break(());
        };
        room.send(|held| {
            Item::Event(Delivered {
                id,
                payload,
                is_final,
                held,
            })
        });
        if is_final {
            return Flow::Break(());
        }
        Flow::Continue(())
    }
}

/// The first message stored on `subject` (which may name several with a
/// wildcard) after sequence `after`, if it is at most `until`.
pub async fn next_stored(
    stream: &Stream<()>,
    subject: &str,
    after: u64,
    until: u64,
) -> Result<Option<StreamMessage>, DirectGetError> {
    match stream
        .direct_get_next_for_subject(subject, Some(after + 1))
        .await
    {
        Ok(m) if m.sequence <= until => Ok(Some(m)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Frames one SSE event. Stored payloads are compact JSON (no newlines).
pub fn frame(id: &EventId, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 48);
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b"\nevent: message\ndata: ");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\n\n");
    out.into()
}

/// The priming event of a stream: an id and empty data (2025-11-25).
pub fn priming(id: &EventId) -> Bytes {
    format!("id: {id}\ndata: \n\n").into()
}

/// Tells the client when to reconnect (before the server closes a stream).
pub fn retry(after: Duration) -> Bytes {
    format!("retry: {}\n\n", after.as_millis()).into()
}

/// An SSE comment, to keep idle connections open through proxies.
pub fn keep_alive() -> Bytes {
    Bytes::from_static(b": keep-alive\n\n")
}
