//! [`Session`]: what a tool sees of its MCP session.
//!
//! Tools take it as an rmcp extractor argument, `Extension(session):
//! Extension<Session>`, the same way rmcp's HTTP server hands out request
//! parts. Nothing in it lives in worker memory: state is in the
//! `jetway_state` KV bucket, updated with compare-and-set, so concurrent
//! requests of one session on different workers never lose an update.
//!
//! Every write carries a message id naming it (this request, the write's
//! number within the request, the key, and the revision it expects), so a
//! write retried after a lost acknowledgement, during a NATS leader
//! election, is applied once; reads are retried the same way. A re-run of
//! a request (its claim replaced an earlier run's) first looks for each of
//! its writes among the key's history, by the part of the write id that
//! every attempt shares, and takes a landed one's value instead of writing.

use crate::{
    claim::ClaimFence,
    publish::{Out, OutMessage, Publisher},
};
use async_nats::jetstream::kv;
use futures::TryStreamExt;
use jetway_shared::{
    kv_write::{self, Expect, WriteError},
    msg_id::{self, StateExpect},
    principal::{Principal, may_use},
    session::{SessionRecord, State},
    subjects::{SessionId, StreamKey},
};
use serde::{Serialize, de::DeserializeOwned};
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

/// Why session state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("session state store unavailable: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The state bucket is full (`kv_max_bytes`): nothing was written.
    #[error("session state storage is full: {0}")]
    Full(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("could not publish a notification: {0}")]
    Publish(#[source] jetway_shared::publish::PublishFailure),
    #[error("stored value of {key} is not what the tool expects: {source}")]
    Decode {
        key: String,
        source: serde_json::Error,
    },
    #[error("value could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("too many concurrent updates of {0}")]
    Contended(String),
    /// Another worker took this request over while this one was cut off
    /// from NATS; this run must not change state any more.
    #[error("this request now runs on another worker")]
    TakenOver,
}

impl From<StateError> for rmcp::ErrorData {
    fn from(e: StateError) -> Self {
        rmcp::ErrorData::internal_error(e.to_string(), None)
    }
}

/// A handle on one MCP session, for tools.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    id: SessionId,
    instance: String,
    state: kv::Store,
    sessions: kv::Store,
    publisher: Publisher,
    /// The request this handle belongs to (its stream key): the scope of
    /// write ids, the same on every delivery of the request.
    request: StreamKey,
    /// Writes started by this request so far.
    writes: AtomicU64,
    /// Checked before every write.
    fence: ClaimFence,
    /// Who opened the session (auth on): other sessions are visible to
    /// this one only if the same principal opened them.
    owner: Option<Principal>,
}

/// What a write did.
enum Written {
    Stored,
    /// Compare-and-set: the key changed since it was read.
    Conflict,
}

const MAX_CAS_ATTEMPTS: usize = 64;

impl Session {
    /// The handle of the request `request` of `id`, run under `ctx`.
    pub(crate) fn for_request(
        ctx: &crate::handler::RunContext<'_>,
        id: SessionId,
        request: StreamKey,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                owner: ctx.record.principal.clone(),
                id,
                instance: ctx.instance.to_owned(),
                state: ctx.state.clone(),
                sessions: ctx.sessions.clone(),
                publisher: ctx.publisher.clone(),
                request,
                writes: AtomicU64::new(0),
                fence: ctx.fence.clone(),
            }),
        }
    }

    /// Numbers this request's writes, telling apart even concurrent ones.
    fn next_write(&self) -> u64 {
        self.inner.writes.fetch_add(1, Ordering::Relaxed)
    }

    /// The message id of write `n` of this request to `key`; `attempt`
    /// tells what the write expected, so only a retry of the very same
    /// write shares it.
    fn write_id(&self, n: u64, key: &str, attempt: StateExpect<'_>) -> String {
        msg_id::state_write(&self.inner.id, &self.inner.request, n, key, attempt)
    }

    /// On a re-run of this request, what write `n` of an earlier run
    /// stored under `key`, if it landed (the worker died, or lost NATS,
    /// between that write and the answer): the re-run takes that value
    /// instead of writing again, so an update is applied once. Costs
    /// nothing on a first run; a few reads of the key's history on a re-run.
    async fn earlier_write(&self, n: u64, key: &str) -> Result<Option<bytes::Bytes>, StateError> {
        if !self.inner.fence.may_have_run_before() {
            return Ok(None);
        }
        let prefix = msg_id::state_write_prefix(&self.inner.id, &self.inner.request, n, key);
        let found = kv_write::find_write(&self.inner.state, &self.inner.id.state_key(key), &prefix)
            .await
            .map_err(store)?;
        if found.is_some() {
            tracing::info!(
                key,
                n,
                "re-run: an earlier run's write landed; not applying it again"
            );
        }
        Ok(found)
    }

    async fn write(
        &self,
        key: &str,
        bytes: bytes::Bytes,
        expect: Expect,
        write_id: &str,
    ) -> Result<Written, StateError> {
        match self.inner.fence.still_ours().await {
            Ok(true) => {}
            Ok(false) => return Err(StateError::TakenOver),
            Err(e) => return Err(store(e)),
        }
        let written = kv_write::write(
            self.inner.publisher.jetstream(),
            &self.inner.state,
            &self.inner.id.state_key(key),
            bytes,
            expect,
            write_id,
        )
        .await;
        match written {
            Ok(_) => Ok(Written::Stored),
            Err(WriteError::Conflict) => Ok(Written::Conflict),
            Err(e) => Err(store(e)),
        }
    }

    /// The session id the client holds.
    pub fn id(&self) -> &SessionId {
        &self.inner.id
    }

    /// The id of the worker instance running this request.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance
    }

    /// Reads `key` of this session's state.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StateError> {
        get_in(&self.inner.state, &self.inner.id, key).await
    }

    /// Reads `key` of another session's state (for tools that link
    /// sessions); `None` for a session of another principal, as for one
    /// that does not exist.
    pub async fn get_of<T: DeserializeOwned>(
        &self,
        session: &SessionId,
        key: &str,
    ) -> Result<Option<T>, StateError> {
        if session != &self.inner.id && !self.exists(session).await? {
            return Ok(None);
        }
        get_in(&self.inner.state, session, key).await
    }

    /// Writes `key` of this session's state, replacing what was there.
    ///
    /// If the request runs again after a worker died, the same write (same
    /// position in the request, same key and value) is not applied again.
    pub async fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(value)?;
        let n = self.next_write();
        if self.earlier_write(n, key).await?.is_some() {
            return Ok(());
        }
        let write_id = self.write_id(
            n,
            key,
            StateExpect::Put {
                digest: &digest(&bytes),
            },
        );
        self.write(key, bytes.into(), Expect::Any, &write_id)
            .await?;
        Ok(())
    }

    /// Atomically replaces `key` with `f(current)` and returns the new value.
    ///
    /// Compare-and-set: if another worker wrote `key` in between, `f` runs
    /// again on the newer value. `f` must therefore be a pure function.
    pub async fn update<T, F>(&self, key: &str, mut f: F) -> Result<T, StateError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> T,
    {
        let full = self.inner.id.state_key(key);
        let n = self.next_write();
        if let Some(earlier) = self.earlier_write(n, key).await? {
            return serde_json::from_slice(&earlier).map_err(|source| StateError::Decode {
                key: key.to_owned(),
                source,
            });
        }
        for _ in 0..MAX_CAS_ATTEMPTS {
            let entry = kv_write::read(&self.inner.state, &full)
                .await
                .map_err(store)?;
            let current = match &entry {
                Some(e) if e.operation == kv::Operation::Put => Some(
                    serde_json::from_slice(&e.value).map_err(|source| StateError::Decode {
                        key: key.to_owned(),
                        source,
                    })?,
                ),
                _ => None,
            };
            // Revision 0: the key was never written.
            let rev = entry.as_ref().map_or(0, |e| e.revision);
            let next = f(current);
            let bytes: bytes::Bytes = serde_json::to_vec(&next)?.into();
            let write_id = self.write_id(n, key, StateExpect::Revision(rev));
            match self
                .write(key, bytes, Expect::Revision(rev), &write_id)
                .await?
            {
                Written::Stored => return Ok(next),
                Written::Conflict => continue,
            }
        }
        Err(StateError::Contended(key.to_owned()))
    }

    /// The keys of this session's state, without the session prefix.
    pub async fn keys(&self) -> Result<Vec<String>, StateError> {
        keys_of(&self.inner.state, &self.inner.id).await
    }

    /// Copies every state key of `from` into this session; returns how
    /// many (none from a session of another principal).
    pub async fn copy_state_from(&self, from: &SessionId) -> Result<usize, StateError> {
        if !self.exists(from).await? {
            return Ok(0);
        }
        let keys = keys_of(&self.inner.state, from).await?;
        let mut copied = 0;
        for key in keys {
            if let Some(value) = kv_write::get(&self.inner.state, &from.state_key(&key))
                .await
                .map_err(store)?
            {
                let write_id = self.write_id(self.next_write(), &key, StateExpect::CopyFrom(from));
                self.write(&key, value, Expect::Any, &write_id).await?;
                copied += 1;
            }
        }
        Ok(copied)
    }

    /// True if `id` names a session that exists (active or closed, not
    /// expired) and was opened by the same principal as this one (auth
    /// on; with auth off every session is anonymous): a tool cannot reach
    /// another principal's session, even knowing its id.
    pub async fn exists(&self, id: &SessionId) -> Result<bool, StateError> {
        let Some(raw) = kv_write::get(&self.inner.sessions, id.as_str())
            .await
            .map_err(store)?
        else {
            return Ok(false);
        };
        Ok(SessionRecord::from_bytes(&raw)
            .is_ok_and(|r| may_use(r.principal.as_ref(), self.inner.owner.as_ref())))
    }

    /// Number of sessions that are currently active.
    pub async fn active_sessions(&self) -> Result<usize, StateError> {
        let keys: Vec<String> = match self.inner.sessions.keys().await {
            Ok(k) => k.try_collect().await.map_err(store)?,
            Err(e) => return Err(store(e)),
        };
        let mut active = 0;
        for key in keys {
            if let Some(raw) = kv_write::get(&self.inner.sessions, &key)
                .await
                .map_err(store)?
                && let Ok(rec) = SessionRecord::from_bytes(&raw)
                && rec.state != State::Closed
            {
                active += 1;
            }
        }
        Ok(active)
    }

    /// Sends a notification on the session's standalone GET stream (for
    /// changes not tied to a request, such as `notifications/resources/updated`).
    pub async fn notify(&self, method: &str, params: serde_json::Value) -> Result<(), StateError> {
        let msg = serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params});
        let nonce: u64 = rand::random();
        self.inner
            .publisher
            .publish(OutMessage {
                session: &self.inner.id,
                stream: &StreamKey::get(),
                payload: serde_json::to_vec(&msg)?,
                kind: Out::Message {
                    tag: msg_id::notify_tag(nonce),
                },
            })
            .await
            .map_err(StateError::Publish)
    }
}

/// A digest of a value that every worker build computes alike (a write id
/// must not change across Rust releases, or a rolling upgrade would apply a
/// retried write twice).
fn digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

async fn get_in<T: DeserializeOwned>(
    store: &kv::Store,
    session: &SessionId,
    key: &str,
) -> Result<Option<T>, StateError> {
    match kv_write::get(store, &session.state_key(key))
        .await
        .map_err(self::store)?
    {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| StateError::Decode {
                key: key.to_owned(),
                source,
            }),
    }
}

async fn keys_of(store: &kv::Store, session: &SessionId) -> Result<Vec<String>, StateError> {
    let prefix = format!("$KV.{}.", store.name);
    let filter = format!("{prefix}{}", session.state_key(">"));
    let mut info = store
        .stream
        .info_with_subjects(filter)
        .await
        .map_err(self::store)?;
    let mut keys = Vec::new();
    while let Some((subject, _count)) = info.try_next().await.map_err(self::store)? {
        if let Some(k) = subject
            .strip_prefix(&prefix)
            .and_then(|s| s.strip_prefix(&format!("{session}.")))
        {
            keys.push(k.to_owned());
        }
    }
    // Deleted keys keep a tombstone subject; keep only live ones.
    let mut live = Vec::new();
    for k in keys {
        if kv_write::get(store, &session.state_key(&k))
            .await
            .map_err(self::store)?
            .is_some()
        {
            live.push(k);
        }
    }
    live.sort();
    Ok(live)
}

fn store(e: impl std::error::Error + Send + Sync + 'static) -> StateError {
    if jetway_shared::publish::full(&e).is_some() {
        return StateError::Full(Box::new(e));
    }
    StateError::Store(Box::new(e))
}
