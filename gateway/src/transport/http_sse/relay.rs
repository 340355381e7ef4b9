//! The relay of an HTTP+SSE session: every server message of the session,
//! on whichever of its stream subjects a worker published it (a request's
//! responses, progress, logs and server→client requests; the session's
//! notifications), in stream order, exactly once, from any position.
//!
//! Per connection: one core subscription on the session's live `out.*`
//! subjects, and direct gets by stream sequence. The stream interleaves
//! every session of the partition, so a live message whose sequence does
//! not directly follow the last one delivered may hide a missed message of
//! this session (core delivery is at-most-once): the relay then reads the
//! stream from the last delivered sequence up to it (`next_by_subj` on the
//! session's `out.*`), so it never delivers out of order or skips one. The
//! idle tick re-reads the tail, for a message lost right before a quiet
//! period. Resume is the same path from the client's sequence. A client
//! behind by more than its buffer ([`crate::outlet`]) costs no more: the
//! relay leaves the live subscription until it has read, then subscribes
//! again and reads the rest from the stream.
//!
//! Control markers on the GET subject decide the connection's life: a
//! `takeover` newer than the connection's own ends it (a newer connection
//! of the session opened, on any gateway), `closed` ends it (the session
//! ended). Other markers and empty payloads are not events.

use crate::{
    outlet::{self, Held, Outlet},
    sse,
};
use async_nats::{HeaderMap, jetstream::stream::Stream};
use bytes::Bytes;
use futures::StreamExt;
use jetway_shared::{
    headers::{self, Control},
    subjects::SessionId,
};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// What the relay hands the HTTP side.
#[derive(Debug)]
pub enum Item {
    /// A server message and its stream sequence, holding its bytes of the
    /// connection's buffer until written.
    Event {
        sequence: u64,
        payload: Bytes,
        held: Held,
    },
    /// Nothing happened for a while: send a keep-alive.
    Idle,
    /// The connection is over: a newer one took over, or the session ended.
    Ended(End),
    /// The bus cannot be read; end the connection so the client resumes.
    Failed(String),
}

/// Why a relay ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    TakenOver,
    Closed,
}

/// How to read one session.
pub struct Spec {
    pub session: SessionId,
    /// Deliver messages after this stream sequence.
    pub after: u64,
    /// The sequence of this connection's own takeover marker.
    pub takeover: u64,
    /// How often to send [`Item::Idle`] and re-read the tail.
    pub idle: Duration,
    /// Bumped on every NATS (re)connect: the relay then re-reads the stream.
    pub connects: watch::Receiver<u64>,
}

/// Subscribes first (nothing published from now on is missed), then spawns
/// the relay. The receiver ends after [`Item::Ended`] or [`Item::Failed`],
/// or on `cancel`; dropping it stops the relay.
pub async fn open(
    nats: &async_nats::Client,
    stream: Stream<()>,
    spec: Spec,
    cancel: CancellationToken,
) -> Result<mpsc::Receiver<Item>, async_nats::SubscribeError> {
    let live = spec.session.live_out_all();
    let sub = nats.subscribe(live.clone()).await?;
    let (outlet, rx) = outlet::channel();
    let relay = Relay {
        nats: nats.clone(),
        live,
        sub: Some(sub),
        stream,
        subject: spec.session.out_all(),
        last: spec.after,
        takeover: spec.takeover,
        outlet,
    };
    tokio::spawn(run(relay, spec, cancel));
    Ok(rx)
}

async fn run(mut relay: Relay, spec: Spec, cancel: CancellationToken) {
    if relay.catch_up(u64::MAX).await.is_break() {
        return;
    }
    let mut tick = tokio::time::interval(spec.idle);
    tick.reset();
    let mut connects = spec.connects;
    connects.mark_unchanged();
    let mut watching = true;
    loop {
        // Unsubscribed while the client was behind: subscribe again, then
        // read what was published meanwhile.
        while relay.sub.is_none() {
            if relay.resubscribe().await.is_break() {
                return;
            }
        }
        let Some(sub) = relay.sub.as_mut() else {
            return;
        };
        let flow = tokio::select! {
            changed = connects.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                    Flow::Continue(())
                } else {
                    relay.catch_up(u64::MAX).await
                }
            }
            msg = sub.next() => {
                let Some(msg) = msg else {
                    let _ = relay.outlet.send(Item::Failed("subscription ended".into())).await;
                    return;
                };
                let Some((seq, _)) = headers::republished_positions(msg.headers.as_ref()) else {
                    continue;
                };
                tick.reset();
                if seq <= relay.last {
                    Flow::Continue(())
                } else if seq == relay.last + 1 {
                    relay.deliver(seq, msg.headers.as_ref(), msg.payload).await
                } else {
                    relay.catch_up(seq).await
                }
            }
            _ = tick.tick() => {
                match relay.catch_up(u64::MAX).await {
                    Flow::Continue(()) if !relay.outlet.offer(Item::Idle) => Flow::Break(()),
                    flow => flow,
                }
            }
            _ = cancel.cancelled() => return,
            _ = relay.outlet.closed() => return,
        };
        if flow.is_break() {
            return;
        }
    }
}

struct Relay {
    nats: async_nats::Client,
    /// The republished subjects the live subscription is on.
    live: String,
    /// `None` while the client is behind (see [`crate::outlet`]).
    sub: Option<async_nats::Subscriber>,
    stream: Stream<()>,
    /// The session's stored `out.*` subjects.
    subject: String,
    last: u64,
    takeover: u64,
    outlet: Outlet<Item>,
}

type Flow = std::ops::ControlFlow<()>;

impl Relay {
    /// Subscribes again, then delivers what was stored meanwhile.
    async fn resubscribe(&mut self) -> Flow {
        match self.nats.subscribe(self.live.clone()).await {
            Ok(sub) => self.sub = Some(sub),
            Err(e) => {
                let _ = self.outlet.send(Item::Failed(e.to_string())).await;
                return Flow::Break(());
            }
        }
        self.catch_up(u64::MAX).await
    }

    /// Delivers the session's stored messages after `last`, up to and including `until`.
    async fn catch_up(&mut self, until: u64) -> Flow {
        while self.last < until {
            match sse::next_stored(&self.stream, &self.subject, self.last, until).await {
                Ok(Some(m)) => {
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
                    let _ = self.outlet.send(Item::Failed(e.to_string())).await;
                    return Flow::Break(());
                }
            }
        }
        Flow::Continue(())
    }

    async fn deliver(&mut self, seq: u64, headers: Option<&HeaderMap>, payload: Bytes) -> Flow {
        self.last = seq;
        let end = match Control::of(headers) {
            Some(Control::Takeover) if seq <= self.takeover => return Flow::Continue(()),
            Some(Control::Takeover) => Some(End::TakenOver),
            Some(Control::Closed) => Some(End::Closed),
            _ if Control::present(headers) || payload.is_empty() => return Flow::Continue(()),
            _ => None,
        };
        if let Some(end) = end {
            let _ = self.outlet.send(Item::Ended(end)).await;
            return Flow::Break(());
        }
        // A client behind: the reader leaves the live subscription until it
        // has read (the stream keeps what comes meanwhile).
        let Some(room) = self.outlet.room_leaving(payload.len(), &mut self.sub).await else {
            return Flow::Break(());
        };
        room.send(|held| Item::Event {
            sequence: seq,
            payload,
            held,
        });
        Flow::Continue(())
    }
}
