//! KV reads and writes that survive a leader election.
//!
//! `kv::Store::update` cannot be retried after a lost acknowledgement: the
//! retry fails with "wrong last revision" although the first write may have
//! landed, and a caller that re-reads and re-applies its change may apply
//! it twice. [`write`] publishes the KV message itself, with the
//! compare-and-set header and a `Nats-Msg-Id` naming the write, and retries
//! through timeouts:
//! - a plain put retried after its first attempt landed is deduplicated by
//!   JetStream (same message id), so it is stored once;
//! - a compare-and-set retried after its first attempt landed fails the
//!   revision check (JetStream checks it before the message id), so [`write`]
//!   looks for its message id among the key's messages after the expected
//!   revision: a compare-and-set that landed is the first of them. Found:
//!   the write is done. Not there: it never landed, and the caller re-reads.
//!   If the key was written more often since than the bucket keeps history
//!   for, the outcome cannot be told and the write fails with
//!   [`WriteError::Unknown`] rather than guessing.
//!
//! [`read`] retries reads, which are idempotent, for the same bounded time.

use crate::backoff::Backoff;
use crate::publish::{PublishFailure, publish_once};
use async_nats::{
    HeaderMap,
    jetstream::{Context, kv, stream::RawMessageErrorKind},
};
use bytes::Bytes;
use tracing::Instrument;

/// History the Jetway buckets keep per key: how many later writes an
/// uncertain write can be told apart from (see the module docs).
pub const HISTORY: i64 = 8;

/// What a write expects of the key's current revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Write whatever is there.
    Any,
    /// The key's last message (value or delete marker) has this revision;
    /// 0: the key has never been written.
    Revision(u64),
}

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The key changed since it was read: read again and retry.
    #[error("the key was written by someone else since it was read")]
    Conflict,
    /// An attempt timed out, and so many writes followed that its outcome
    /// can no longer be told.
    #[error("could not tell whether the write was stored")]
    Unknown,
    #[error(transparent)]
    Publish(#[from] PublishFailure),
}

/// Writes `value` under `key` once, however often it has to be retried;
/// returns the new revision.
///
/// `write_id` must differ for every distinct intended write: a write with
/// the id of an earlier one that landed is taken for its retry.
pub async fn write(
    js: &Context,
    store: &kv::Store,
    key: &str,
    value: Bytes,
    expect: Expect,
    write_id: &str,
) -> Result<u64, WriteError> {
    write_expiring(js, store, key, value, expect, write_id, None).await
}

/// [`write`], with a per-message TTL (the bucket must allow them): the
/// value disappears `ttl` after this write unless written again.
pub async fn write_expiring(
    js: &Context,
    store: &kv::Store,
    key: &str,
    value: Bytes,
    expect: Expect,
    write_id: &str,
    ttl: Option<std::time::Duration>,
) -> Result<u64, WriteError> {
    let span = kv_span("kv write", store, key);
    write_traced(js, store, key, value, expect, write_id, ttl)
        .instrument(span)
        .await
}

/// A span (while traces are exported) of one KV operation.
fn kv_span(name: &'static str, store: &kv::Store, key: &str) -> tracing::Span {
    crate::otel_span!(
        "kv",
        otel.name = %format!("{name} {}", store.name),
        db.system.name = "nats_kv",
        db.namespace = store.name.as_str(),
        jetway.kv.key = key,
    )
}

async fn write_traced(
    js: &Context,
    store: &kv::Store,
    key: &str,
    value: Bytes,
    expect: Expect,
    write_id: &str,
    ttl: Option<std::time::Duration>,
) -> Result<u64, WriteError> {
    let subject = subject_of(store, key);
    let mut h = HeaderMap::new();
    h.insert(async_nats::header::NATS_MESSAGE_ID, write_id);
    if let Some(ttl) = ttl {
        h.insert(
            async_nats::header::NATS_MESSAGE_TTL,
            ttl.as_secs().max(1).to_string().as_str(),
        );
    }
    let after = match expect {
        Expect::Any => None,
        Expect::Revision(r) => Some(r),
    };
    if let Some(r) = after {
        h.insert(
            async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            r.to_string().as_str(),
        );
    }
    let mut backoff = Backoff::new();
    let mut uncertain = false;
    loop {
        match publish_once(js, subject.clone(), h.clone(), value.clone()).await {
            Ok(ack) => return Ok(ack.sequence),
            Err(PublishFailure::Conflict) => {
                let outcome = match after {
                    Some(after) if uncertain => landed(store, key, after, write_id).await,
                    _ => Err(WriteError::Conflict),
                };
                tracing::debug!(key, write_id, uncertain, ?outcome, "KV write conflicted");
                return outcome;
            }
            Err(PublishFailure::Unavailable(e)) => {
                uncertain = true;
                if !backoff.wait().await {
                    return Err(PublishFailure::Unavailable(e).into());
                }
                tracing::debug!(error = %e, key, "KV write not acknowledged; retrying");
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The subject `kv::Store::put` uses for `key` (Jetway uses no JetStream domain).
pub fn subject_of(store: &kv::Store, key: &str) -> String {
    format!(
        "{}{key}",
        store.put_prefix.as_deref().unwrap_or(&store.prefix)
    )
}

/// Whether the compare-and-set `write_id`, which expected revision `after`
/// of `key`, was stored: its revision if so, else [`WriteError::Conflict`]
/// ([`WriteError::Unknown`] if history no longer tells).
pub async fn landed(
    store: &kv::Store,
    key: &str,
    after: u64,
    write_id: &str,
) -> Result<u64, WriteError> {
    let subject = subject_of(store, key);
    let history = store
        .stream
        .cached_info()
        .config
        .max_messages_per_subject
        .max(1);
    let mut next = after + 1;
    let mut seen = 0;
    while let Some(m) = next_on(store, &subject, next).await? {
        let id = m.headers.get(async_nats::header::NATS_MESSAGE_ID);
        if id.map(|v| v.as_str()) == Some(write_id) {
            return Ok(m.sequence);
        }
        // A landed compare-and-set is the first message after `after`;
        // it can only be missing if history pushed it out.
        seen += 1;
        if seen >= history {
            return Err(WriteError::Unknown);
        }
        next = m.sequence + 1;
    }
    Err(WriteError::Conflict)
}

/// The value of the write to `key` whose message id starts with
/// `id_prefix`, among the messages the bucket still keeps for the key
/// (at most [`HISTORY`]), oldest first; `None` if there is none.
pub async fn find_write(
    store: &kv::Store,
    key: &str,
    id_prefix: &str,
) -> Result<Option<Bytes>, WriteError> {
    let subject = subject_of(store, key);
    async {
        let mut next = 1;
        while let Some(m) = next_on(store, &subject, next).await? {
            let id = m.headers.get(async_nats::header::NATS_MESSAGE_ID);
            if id.is_some_and(|v| v.as_str().starts_with(id_prefix)) {
                return Ok(Some(m.payload));
            }
            next = m.sequence + 1;
        }
        Ok(None)
    }
    .instrument(kv_span("kv find write", store, key))
    .await
}

/// The first message on `subject` at or after sequence `from`, or `None`;
/// asked of the stream's leader (a replica that lags behind could hide a
/// write), retried with backoff for up to [`RETRY_FOR`](crate::publish::RETRY_FOR).
async fn next_on(
    store: &kv::Store,
    subject: &str,
    from: u64,
) -> Result<Option<async_nats::jetstream::message::StreamMessage>, WriteError> {
    let mut backoff = Backoff::new();
    loop {
        let found = store
            .stream
            .raw_message_builder()
            .sequence(from)
            .next_by_subject(subject)
            .send()
            .await;
        match found {
            Ok(m) => return Ok(Some(m)),
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => return Ok(None),
            Err(e) => {
                if !backoff.wait().await {
                    return Err(PublishFailure::Unavailable(Box::new(e)).into());
                }
            }
        }
    }
}

/// The entry of `key` (value, delete marker or nothing), retrying failed
/// reads with backoff for up to [`RETRY_FOR`](crate::publish::RETRY_FOR).
pub async fn read(store: &kv::Store, key: &str) -> Result<Option<kv::Entry>, kv::EntryError> {
    Backoff::new()
        .retry(
            || store.entry(key),
            |e: &kv::EntryError| e.kind() != kv::EntryErrorKind::InvalidKey,
        )
        .instrument(kv_span("kv read", store, key))
        .await
}

/// The value of `key`, or `None` if it is absent or deleted (see [`read`]).
pub async fn get(store: &kv::Store, key: &str) -> Result<Option<Bytes>, kv::EntryError> {
    Ok(read(store, key)
        .await?
        .filter(|e| e.operation == kv::Operation::Put)
        .map(|e| e.value))
}
