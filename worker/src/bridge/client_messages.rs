//! What the client sends a session outside any request, as the session's
//! listener ([`super::listener`]) passes it to the upstream session:
//! answers to the requests the upstream sent on its own GET stream, and
//! notifications not about one request (`notifications/roots/list_changed`).
//!
//! The listener follows the session's inbound messages with the follower
//! every request uses ([`crate::answers`]), from where the previous
//! listener of the session recorded it got to ([`super::position`]), so
//! what the client sent while nobody listened is passed on too; the first
//! listener of a session starts from the moment it starts.

use super::{
    ids,
    upstream::{SessionHeaders, Upstream},
};
use crate::answers::{Answers, Sequenced};
use async_nats::jetstream::stream::DirectGetError;
use jetway_shared::{jsonrpc::method, session::UpstreamSession, subjects::SessionId};
use serde_json::Value;
use std::time::Duration;
use tokio::sync::mpsc;

/// The notification that ends a client's initialization.
const INITIALIZED: &str = "notifications/initialized";

/// Why the session's client messages cannot be followed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("could not read where the session's client messages stand: {0}")]
    Position(#[source] DirectGetError),
    #[error("could not subscribe to the session's client messages: {0}")]
    Subscribe(#[source] async_nats::SubscribeError),
}

/// The client messages of one session, from where the previous listener
/// got to (or from when this one started, if none did). The worker's
/// [`Answers`] reader catches up on what its live subscription missed
/// whenever NATS reconnects.
pub struct ClientMessages {
    history: std::vec::IntoIter<Sequenced>,
    live: mpsc::Receiver<Sequenced>,
    /// The stream sequence of the last message read.
    position: u64,
}

impl ClientMessages {
    /// Starts following `session`'s client messages after stream sequence
    /// `after`, or after the last one stored if `None`.
    pub async fn follow(
        answers: &Answers,
        session: &SessionId,
        after: Option<u64>,
    ) -> Result<Self, FollowError> {
        let after = match after {
            Some(a) => a,
            None => answers
                .inbound_position(session)
                .await
                .map_err(FollowError::Position)?,
        };
        let (history, live) = answers
            .inbound_after(session, after)
            .await
            .map_err(FollowError::Subscribe)?;
        Ok(Self {
            history: history.into_iter(),
            live,
            position: after,
        })
    }

    /// The next message; `None` once the follower ended (the NATS
    /// connection closed). Cancel-safe.
    pub async fn next(&mut self) -> Option<Value> {
        let m = match self.history.next() {
            Some(m) => m,
            None => self.live.recv().await?,
        };
        self.position = m.seq;
        Some(m.message)
    }

    /// The stream sequence of the last message [`Self::next`] returned
    /// (where following started, before the first).
    pub fn position(&self) -> u64 {
        self.position
    }
}

/// `msg` as the upstream session gets it, if it is for that session: an
/// answer to one of its GET-stream requests (with the upstream's id back),
/// or a notification not about a request. Not `initialized` (the bridge
/// sent its own when it opened the upstream session) nor `cancelled` (the
/// request's relay passes it on, with the upstream's request id).
pub fn for_upstream(mut msg: Value, upstream: &UpstreamSession) -> Option<Value> {
    match msg.get("method").and_then(Value::as_str) {
        Some(method::CANCELLED | INITIALIZED) => None,
        Some(_) => msg.get("id").is_none().then_some(msg),
        None => {
            let public = msg.get("id")?.as_str()?;
            let original = ids::from_session_stream(public, upstream)?;
            msg["id"] = original;
            Some(msg)
        }
    }
}

/// POSTs one client message to the upstream session (it answers 202);
/// a failure is only logged: the upstream's own timeout ends a request
/// whose answer does not arrive.
pub async fn send(
    upstream: &Upstream,
    msg: &Value,
    headers: SessionHeaders<'_>,
    timeout: Duration,
) {
    if let Err(e) = upstream.post(msg, headers, timeout).await {
        tracing::warn!(error = %e, "could not pass a client message to the upstream session");
    }
}
