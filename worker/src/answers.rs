//! What the session stream already holds for a request: its answer (a final
//! message on its POST stream), and what the client sent it (cancellation,
//! answers to server→client requests), history first and then live. The
//! bridge's listener follows a session's client messages the same way, from
//! the moment it starts ([`Answers::inbound_position`]).
//!
//! The live part is the stream's RePublish of the session's inbound
//! subject: core NATS, at most once, so each message's `Nats-Last-Sequence`
//! is checked against the last one seen and a gap is filled from the stream
//! by direct get, as the gateway's SSE readers do. A reconnect triggers the
//! same catch-up, so a cancellation sent while this worker was reconnecting
//! still reaches the request.

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{
    DirectGetError, DirectGetErrorKind, LastRawMessageError, LastRawMessageErrorKind, Stream,
};
use futures::StreamExt;
use jetway_shared::{
    backoff::Backoff,
    headers,
    subjects::{SessionId, StreamKey},
};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

/// Messages the inbound follower may buffer for a request loop.
const INBOUND_BUFFER: usize = 64;

/// What a follower passes on for each stored client message: the message
/// (what a request needs), or the message with its stream sequence (what
/// the bridge's listener records as its position).
pub trait Inbound: Send + 'static {
    fn stored(seq: u64, message: Value) -> Self;
}

impl Inbound for Value {
    fn stored(_: u64, message: Value) -> Self {
        message
    }
}

/// A client message and its stream sequence.
pub struct Sequenced {
    pub seq: u64,
    pub message: Value,
}

impl Inbound for Sequenced {
    fn stored(seq: u64, message: Value) -> Self {
        Self { seq, message }
    }
}

/// Read access to the session stream, shared by every request.
#[derive(Clone)]
pub struct Answers {
    stream: Stream<()>,
    nats: async_nats::Client,
    /// Bumped on every NATS (re)connect.
    connects: watch::Receiver<u64>,
}

impl Answers {
    pub fn new(
        stream: Stream<()>,
        nats: async_nats::Client,
        connects: watch::Receiver<u64>,
    ) -> Self {
        Self {
            stream,
            nats,
            connects,
        }
    }

    /// True if the request's POST stream already holds its final message.
    /// A failed read is retried (through a leader election) for a bounded
    /// time; then the error says nobody can tell.
    pub async fn answered(
        &self,
        session: &SessionId,
        request: &StreamKey,
    ) -> Result<bool, DirectGetError> {
        let last = self.last_on(&session.out(request)).await?;
        Ok(last.is_some_and(|m| m.headers.get(headers::FINAL).is_some()))
    }

    /// The last message stored on `subject` (`None`: there is none); a
    /// failed read is retried for a bounded time.
    async fn last_on(&self, subject: &str) -> Result<Option<StreamMessage>, DirectGetError> {
        let last = Backoff::new()
            .retry(
                || self.stream.direct_get_last_for_subject(subject),
                |e: &DirectGetError| e.kind() != DirectGetErrorKind::NotFound,
            )
            .await;
        match last {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// [`Self::answered`], asked of the stream's leader rather than any
    /// replica, for the one decision a lagging replica must not sway:
    /// whether to run again a request whose previous holder just let go.
    pub async fn answered_per_leader(
        &self,
        session: &SessionId,
        request: &StreamKey,
    ) -> Result<bool, LastRawMessageError> {
        let subject = session.out(request);
        let last = Backoff::new()
            .retry(
                || self.stream.get_last_raw_message_by_subject(&subject),
                |e: &LastRawMessageError| e.kind() != LastRawMessageErrorKind::NoMessageFound,
            )
            .await;
        match last {
            Ok(m) => Ok(m.headers.get(headers::FINAL).is_some()),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The stream sequence of the last client notification or response of
    /// `session` stored (0 if none): [`Self::inbound_after`] it follows what
    /// the client sends from now on, for a follower not tied to a request
    /// (the bridge's listener). Retried like [`Self::answered`].
    pub async fn inbound_position(&self, session: &SessionId) -> Result<u64, DirectGetError> {
        let last = self.last_on(&session.in_msg()).await?;
        Ok(last.map_or(0, |m| m.sequence))
    }

    /// Every client notification and response of `session` stored after
    /// stream sequence `after`, each once and in order: what is stored
    /// already (returned at once), then what arrives (on the receiver,
    /// until it is dropped).
    ///
    /// Subscribes before reading history, so nothing falls between the two.
    pub async fn inbound_after<T: Inbound>(
        &self,
        session: &SessionId,
        after: u64,
    ) -> Result<(Vec<T>, mpsc::Receiver<T>), async_nats::SubscribeError> {
        let live = self.nats.subscribe(session.live_in_msg()).await?;
        let (tx, rx) = mpsc::channel(INBOUND_BUFFER);
        let mut follower = Follower {
            stream: self.stream.clone(),
            subject: session.in_msg(),
            last: after,
            tx,
            history: Some(Vec::new()),
        };
        let _ = follower.catch_up(None).await;
        let history = follower.history.take().unwrap_or_default();
        tokio::spawn(follower.run(live, self.connects.clone()));
        Ok((history, rx))
    }
}

struct Follower<T> {
    stream: Stream<()>,
    subject: String,
    /// Stream sequence of the last message passed on.
    last: u64,
    tx: mpsc::Sender<T>,
    /// While reading what was stored before the request ran: collected here.
    history: Option<Vec<T>>,
}

impl<T: Inbound> Follower<T> {
    async fn run(mut self, mut live: async_nats::Subscriber, mut connects: watch::Receiver<u64>) {
        connects.mark_unchanged();
        loop {
            tokio::select! {
                m = live.next() => {
                    let Some(m) = m else { return };
                    let Some((seq, prev)) = headers::republished_positions(m.headers.as_ref()) else {
                        continue;
                    };
                    if seq <= self.last {
                        continue;
                    }
                    if prev > self.last && self.catch_up(Some(seq)).await.is_err() {
                        return;
                    }
                    if self.pass(seq, &m.payload).await.is_err() {
                        return;
                    }
                }
                changed = connects.changed() => {
                    if changed.is_err() || self.catch_up(None).await.is_err() {
                        return;
                    }
                }
                _ = self.tx.closed() => return,
            }
        }
    }

    /// Passes on the stored messages after `last` (and before `until`).
    async fn catch_up(&mut self, until: Option<u64>) -> Result<(), Closed> {
        let mut backoff = Backoff::new();
        loop {
            let next = self
                .stream
                .direct_get_next_for_subject(self.subject.as_str(), Some(self.last + 1))
                .await;
            match next {
                Ok(m) if until.is_none_or(|u| m.sequence < u) => {
                    self.pass(m.sequence, &m.payload).await?;
                }
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(()),
                Err(e) => {
                    if !backoff.wait().await {
                        // Live messages still flow; the next gap or
                        // reconnect tries again.
                        tracing::warn!(error = %e, "could not read the session's inbound messages");
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn pass(&mut self, seq: u64, payload: &[u8]) -> Result<(), Closed> {
        self.last = seq;
        let Ok(v) = serde_json::from_slice::<Value>(payload) else {
            return Ok(());
        };
        let v = T::stored(seq, v);
        match &mut self.history {
            Some(h) => {
                h.push(v);
                Ok(())
            }
            None => self.tx.send(v).await.map_err(|_| Closed),
        }
    }
}

struct Closed;
