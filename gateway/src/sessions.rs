//! Session records as the gateway sees them: create on `initialize`, look up
//! on every request (so a DELETE on one replica is a 404 on all of them),
//! close on DELETE. The lookup is a KV read, not a cache: correctness never
//! depends on what this replica saw before.

use crate::{auth::Caller, error::GatewayError};
use async_nats::jetstream::kv;
use jetway_shared::{
    backoff::Backoff,
    headers::now_ms,
    kv_write,
    principal::{Principal, may_use},
    protocol::{ProtocolVersion, Transport},
    publish::full,
    session::{SessionRecord, State, UpdateError, update_record},
    subjects::SessionId,
};
use serde_json::Value;
use std::time::Duration;

/// The `jetway_sessions` bucket.
#[derive(Clone)]
pub struct Sessions {
    store: kv::Store,
    js: async_nats::jetstream::Context,
    /// Refresh a record this long after its last refresh, so an active
    /// session does not age out of the bucket.
    refresh_after: Duration,
}

impl Sessions {
    pub fn new(store: kv::Store, js: async_nats::jetstream::Context, retention: Duration) -> Self {
        Self {
            store,
            js,
            refresh_after: retention / 10,
        }
    }

    /// Creates the record of a new session.
    pub async fn create(
        &self,
        session: &SessionId,
        protocol_version: ProtocolVersion,
        client: Value,
        instance: &str,
        principal: Option<Principal>,
    ) -> Result<(), GatewayError> {
        let mut record =
            SessionRecord::new(State::Initializing, protocol_version, client, instance);
        record.principal = principal;
        if let Err(e) = self.store.create(session.as_str(), record.to_bytes()).await {
            // The create may still be queued in the client or have landed
            // unacknowledged; nobody will ever use this session id, so remove
            // whatever it wrote once NATS answers again. (A create refused
            // for lack of room wrote nothing.)
            if full(&e).is_none() {
                tokio::spawn(remove_orphan(self.store.clone(), session.clone()));
            }
            return Err(unavailable("create session", e));
        }
        crate::metrics::session_created();
        Ok(())
    }

    /// Creates the record of a new HTTP+SSE session: it exists from the
    /// moment its SSE connection opens, before the client's `initialize`.
    pub async fn create_http_sse(
        &self,
        session: &SessionId,
        instance: &str,
        principal: Option<Principal>,
    ) -> Result<(), GatewayError> {
        let mut record = SessionRecord::new(
            State::Initializing,
            ProtocolVersion::V2024_11_05,
            Value::Null,
            instance,
        )
        .on(Transport::HttpSse);
        record.principal = principal;
        if let Err(e) = self.store.create(session.as_str(), record.to_bytes()).await {
            if full(&e).is_none() {
                tokio::spawn(remove_orphan(self.store.clone(), session.clone()));
            }
            return Err(unavailable("create session", e));
        }
        Ok(())
    }

    /// Records an HTTP+SSE session's `initialize` params (what workers hand
    /// their handlers as the peer's info) and the version it asked for.
    pub async fn record_initialize(
        &self,
        session: &SessionId,
        version: ProtocolVersion,
        client: Value,
    ) -> Result<(), GatewayError> {
        let updated = update_record(&self.js, &self.store, session.as_str(), |r| {
            let open = r.state == State::Initializing && r.transport == Transport::HttpSse;
            if open {
                r.client = client.clone();
                r.protocol_version = version;
                r.last_seen_ms = now_ms();
            }
            open
        })
        .await;
        match updated {
            Ok(_) => Ok(()),
            Err(UpdateError::NotFound | UpdateError::Corrupt(_)) => {
                Err(GatewayError::SessionNotFound)
            }
            Err(e) => Err(unavailable("record initialize", e)),
        }
    }

    /// The live record of a Streamable HTTP `session`, or 404 if it does not
    /// exist, was closed, or belongs to another transport.
    pub async fn find(&self, session: &SessionId) -> Result<SessionRecord, GatewayError> {
        self.find_on(session, Transport::StreamableHttp).await
    }

    /// The live record of `session` opened on `transport`, or 404 if it does
    /// not exist, was closed, or was opened on another transport (a session
    /// id is only valid on the endpoints of its own transport).
    pub async fn find_on(
        &self,
        session: &SessionId,
        transport: Transport,
    ) -> Result<SessionRecord, GatewayError> {
        let entry = self
            .store
            .entry(session.as_str())
            .await
            .map_err(|e| unavailable("read session", e))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Err(GatewayError::SessionNotFound);
        };
        let record = SessionRecord::from_bytes(&entry.value).map_err(|e| {
            tracing::error!(session = %session, error = %e, "unreadable session record");
            GatewayError::SessionNotFound
        })?;
        if record.state == State::Closed || record.transport != transport {
            return Err(GatewayError::SessionNotFound);
        }
        if Duration::from_millis(now_ms().saturating_sub(record.last_seen_ms)) > self.refresh_after
        {
            let (store, session, mut fresh) = (self.store.clone(), session.clone(), record.clone());
            tokio::spawn(async move {
                fresh.last_seen_ms = now_ms();
                // A lost race means someone else just wrote it: fresh enough.
                let _ = store
                    .update(session.as_str(), fresh.to_bytes(), entry.revision)
                    .await;
            });
        }
        Ok(record)
    }

    /// [`Sessions::find`], for `caller`: another principal's session is
    /// 404 as well, so that a session id tells nobody else anything.
    pub async fn find_for(
        &self,
        session: &SessionId,
        caller: &Caller,
    ) -> Result<SessionRecord, GatewayError> {
        let record = self.find(session).await?;
        if !may_use(record.principal.as_ref(), caller.principal.as_ref()) {
            tracing::info!(session = %session, "session of another principal: answering 404");
            return Err(GatewayError::SessionNotFound);
        }
        Ok(record)
    }

    /// True if `session` has a record that is not closed, on either
    /// transport (for the session quota; no refresh).
    pub async fn is_live(&self, session: &SessionId) -> Result<bool, GatewayError> {
        let entry = self
            .store
            .entry(session.as_str())
            .await
            .map_err(|e| unavailable("read session", e))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .and_then(|e| SessionRecord::from_bytes(&e.value).ok())
            .is_some_and(|r| r.state != State::Closed))
    }

    /// Marks the session closed; 404 if it was not live.
    pub async fn close(&self, session: &SessionId) -> Result<(), GatewayError> {
        let closed = update_record(&self.js, &self.store, session.as_str(), |r| {
            let live = r.state != State::Closed;
            r.state = State::Closed;
            r.last_seen_ms = now_ms();
            live
        })
        .await;
        match closed {
            Ok(_) => {
                crate::metrics::session_closed();
                Ok(())
            }
            Err(UpdateError::NotFound | UpdateError::Corrupt(_)) => {
                Err(GatewayError::SessionNotFound)
            }
            Err(e) => Err(unavailable("close session", e)),
        }
    }
}

/// How long the gateway keeps trying to remove the record of a session
/// whose creation it reported as failed.
const ORPHAN_CLEANUP_FOR: Duration = Duration::from_secs(300);

/// Purges every message of a session record whose `initialize` was answered
/// 503, and checks a moment later that none came back: a create the client
/// sent before the purge can still be in the stream's queue when the purge
/// runs.
async fn remove_orphan(store: kv::Store, session: SessionId) {
    let subject = kv_write::subject_of(&store, session.as_str());
    let mut backoff = Backoff::lasting(ORPHAN_CLEANUP_FOR);
    loop {
        if store.stream.purge().filter(subject.as_str()).await.is_ok() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Ok(None) = store.entry(session.as_str()).await {
                tracing::info!(session = %session, "removed the record of a session refused with 503");
                return;
            }
        }
        if !backoff.wait().await {
            tracing::warn!(session = %session, "could not remove the record of a session refused with 503; it expires with the retention");
            return;
        }
    }
}

/// The answer for a session store that failed: 507 when the bucket is
/// full (`kv_max_bytes`), else 503.
fn unavailable(what: &str, e: impl std::error::Error + 'static) -> GatewayError {
    if full(&e).is_some() {
        tracing::warn!(error = %e, "{what}: session store full");
        return GatewayError::StorageFull;
    }
    tracing::warn!(error = %e, "{what}: session store unavailable");
    GatewayError::Unavailable
}
