//! Where a session's listener ([`super::listener`]) got to, kept in the
//! claims bucket (`<session>.listened`) so that the listener taking over
//! from one that died resumes there: the upstream GET stream from the
//! last event it relayed (`Last-Event-ID`), and the session's client
//! messages from the last one it read, so what the client sent while
//! nobody listened still reaches the upstream.
//!
//! Only the lease holder writes it, each write a compare-and-set on the
//! revision it last wrote or read: a conflict means another listener took
//! over, and this one stops.

use async_nats::jetstream::{Context, kv};
use jetway_shared::{
    kv_write::{self, Expect, WriteError},
    msg_id,
    subjects::{self, SessionId},
};
use serde::{Deserialize, Serialize};

/// What is recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// The upstream session whose stream `event` belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The id of the last upstream SSE event relayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The stream sequence of the last client message read.
    pub inbound: u64,
}

/// Why a position could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum PositionError {
    #[error("could not read the listener's position: {0}")]
    Read(#[source] kv::EntryError),
    #[error("could not record the listener's position: {0}")]
    Write(#[source] WriteError),
    #[error("another listener recorded its position")]
    Taken,
}

/// One listener's record of its position.
pub struct Recorder {
    js: Context,
    store: kv::Store,
    session: SessionId,
    key: String,
    /// Names this listener in write ids.
    listener: String,
    revision: u64,
    /// What was last written (or read).
    pub written: Option<Position>,
}

impl Recorder {
    /// Reads what the previous listener of `session` recorded.
    pub async fn open(
        js: Context,
        store: kv::Store,
        session: &SessionId,
    ) -> Result<Self, PositionError> {
        let key = subjects::listener_position_key(session);
        let entry = kv_write::read(&store, &key)
            .await
            .map_err(PositionError::Read)?;
        let (revision, written) = match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                (e.revision, serde_json::from_slice(&e.value).ok())
            }
            Some(e) => (e.revision, None),
            None => (0, None),
        };
        Ok(Self {
            js,
            store,
            session: session.clone(),
            key,
            listener: format!("{:016x}", rand::random::<u64>()),
            revision,
            written,
        })
    }

    /// Records `position` unless it is what was last written.
    pub async fn record(&mut self, position: &Position) -> Result<(), PositionError> {
        if self.written.as_ref() == Some(position) {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let value = serde_json::to_vec(position).unwrap_or_default().into();
        let id = msg_id::listener_position_write(&self.session, &self.listener, self.revision);
        let wrote = kv_write::write(
            &self.js,
            &self.store,
            &self.key,
            value,
            Expect::Revision(self.revision),
            &id,
        )
        .await;
        match wrote {
            Ok(revision) => {
                tracing::debug!(took = ?started.elapsed(), "recorded the listener's position");
                self.revision = revision;
                self.written = Some(position.clone());
                Ok(())
            }
            Err(WriteError::Conflict) => Err(PositionError::Taken),
            Err(e) => Err(PositionError::Write(e)),
        }
    }

    /// Forgets the position: the session ended.
    pub async fn remove(&self) {
        if let Err(e) = self.store.purge(&self.key).await {
            tracing::debug!(error = %e, "could not remove the listener's position");
        }
    }
}
