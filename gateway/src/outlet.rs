//! [`Outlet`]: how a bus reader hands events to an SSE response without
//! holding more than [`STREAM_BUFFER_BYTES`] for a client that reads slowly
//! or not at all.
//!
//! A reader's live core subscription buffers in async-nats (up to 65,536
//! messages, whatever their size) whenever the reader does not poll it, so
//! a reader must never wait for its client while subscribed. It hands an
//! event over with [`Outlet::try_room`], which succeeds only if the event's
//! bytes fit in the stream's budget and the channel has a free slot. When
//! it does not, the client is behind: the reader drops its subscription,
//! waits with [`Outlet::room`], and once the client has read, subscribes
//! again and reads what it missed from the stream (the path a gap takes).
//!
//! An event's bytes stay counted ([`Held`]) until the response body hands
//! its frame to hyper ([`Frame`], [`body`]), so events queued in the
//! reader's channel, in the response's channel and in the body all count.

use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures::StreamExt;
use std::{convert::Infallible, sync::Arc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;

/// What one SSE stream may hold of events its client has not read yet.
/// An event larger than this is held alone.
pub const STREAM_BUFFER_BYTES: usize = 1 << 20;

/// How many events a reader's channel holds (each also counts its bytes).
const CHANNEL_EVENTS: usize = 64;

/// The bytes of one event, counted until dropped.
#[derive(Debug)]
pub struct Held {
    _permit: OwnedSemaphorePermit,
}

/// The sending side of a reader's channel, with its stream's byte budget.
pub struct Outlet<T> {
    tx: mpsc::Sender<T>,
    budget: Arc<Semaphore>,
}

/// A slot in the channel and the bytes of the event that goes in it.
pub struct Room<'a, T> {
    slot: mpsc::Permit<'a, T>,
    held: Held,
}

impl<T> Room<'_, T> {
    /// Sends the event, which carries its [`Held`] bytes.
    pub fn send(self, event: impl FnOnce(Held) -> T) {
        self.slot.send(event(self.held));
    }
}

/// A reader's channel: its [`Outlet`] and the receiver the response reads.
pub fn channel<T>() -> (Outlet<T>, mpsc::Receiver<T>) {
    let (tx, rx) = mpsc::channel(CHANNEL_EVENTS);
    let budget = Arc::new(Semaphore::new(STREAM_BUFFER_BYTES));
    (Outlet { tx, budget }, rx)
}

/// What an event of `bytes` takes from the budget: at least 1, at most all.
fn cost(bytes: usize) -> u32 {
    // STREAM_BUFFER_BYTES fits in u32.
    u32::try_from(bytes.clamp(1, STREAM_BUFFER_BYTES)).unwrap_or(u32::MAX)
}

impl<T> Outlet<T> {
    /// Room for an event of `bytes` right now, or `None`: the client is
    /// behind (or gone).
    pub fn try_room(&self, bytes: usize) -> Option<Room<'_, T>> {
        let permit = self
            .budget
            .clone()
            .try_acquire_many_owned(cost(bytes))
            .ok()?;
        let slot = self.tx.try_reserve().ok()?;
        Some(Room {
            slot,
            held: Held { _permit: permit },
        })
    }

    /// Waits until there is room for an event of `bytes`; `None` once the
    /// receiver is gone.
    pub async fn room(&self, bytes: usize) -> Option<Room<'_, T>> {
        let permit = tokio::select! {
            p = self.budget.clone().acquire_many_owned(cost(bytes)) => p.ok()?,
            () = self.tx.closed() => return None,
        };
        let slot = self.tx.reserve().await.ok()?;
        Some(Room {
            slot,
            held: Held { _permit: permit },
        })
    }

    /// Room for an event of `bytes`: at once, or, when the client is
    /// behind, after dropping `live` (the reader's subscription, which would
    /// buffer whatever the bus sends meanwhile) and waiting until the client
    /// has read. `None` once the receiver is gone.
    pub async fn room_leaving(
        &self,
        bytes: usize,
        live: &mut Option<async_nats::Subscriber>,
    ) -> Option<Room<'_, T>> {
        if let Some(room) = self.try_room(bytes) {
            return Some(room);
        }
        if live.take().is_some() {
            crate::metrics::reader_paused();
        }
        self.room(bytes).await
    }

    /// Sends what carries no payload (an end, a failure); `false` once the
    /// receiver is gone.
    pub async fn send(&self, item: T) -> bool {
        self.tx.send(item).await.is_ok()
    }

    /// Sends `item` if the channel has a slot now (a keep-alive, which a
    /// client that is behind does not need); `false` once the receiver is
    /// gone.
    pub fn offer(&self, item: T) -> bool {
        !matches!(
            self.tx.try_send(item),
            Err(mpsc::error::TrySendError::Closed(_))
        )
    }

    /// Resolves once the receiver is gone.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

/// One chunk of an SSE body and the bytes it holds of its stream's budget.
pub struct Frame {
    pub bytes: Bytes,
    pub held: Option<Held>,
}

impl From<Bytes> for Frame {
    fn from(bytes: Bytes) -> Self {
        Self { bytes, held: None }
    }
}

/// The response's side: frames flow through a small channel into the
/// body; each frame's bytes are released when hyper takes it.
pub fn body() -> (mpsc::Sender<Frame>, Body) {
    let (tx, rx) = mpsc::channel::<Frame>(16);
    let body = Body::from_stream(ReceiverStream::new(rx).map(|f| Ok::<_, Infallible>(f.bytes)));
    (tx, body)
}

/// A 200 SSE response over `body`, with the headers that keep proxies
/// from buffering or transforming it.
pub fn response(body: Body) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_are_held_until_the_event_is_dropped() {
        let (outlet, mut rx) = channel::<Held>();
        let half = STREAM_BUFFER_BYTES / 2;
        outlet.try_room(half).expect("room").send(|h| h);
        outlet.try_room(half).expect("room").send(|h| h);
        assert!(outlet.try_room(1).is_none(), "the budget is spent");
        let first = rx.recv().await.expect("sent");
        assert!(outlet.try_room(1).is_none(), "received but not yet written");
        drop(first);
        outlet.try_room(half).expect("freed").send(|h| h);
        // One event larger than the budget is held alone.
        drop(rx);
        let (outlet, mut rx) = channel::<Held>();
        outlet
            .try_room(10 * STREAM_BUFFER_BYTES)
            .expect("alone")
            .send(|h| h);
        assert!(outlet.try_room(1).is_none());
        drop(rx.recv().await);
        assert!(outlet.try_room(1).is_some());
    }

    #[tokio::test]
    async fn a_full_channel_is_no_room_and_waiting_ends_when_the_receiver_goes() {
        let (outlet, rx) = channel::<Held>();
        for _ in 0..CHANNEL_EVENTS {
            outlet.try_room(1).expect("a slot").send(|h| h);
        }
        assert!(outlet.try_room(1).is_none(), "no slot left");
        let waiting = outlet.room(1);
        drop(rx);
        assert!(waiting.await.is_none());
    }
}
