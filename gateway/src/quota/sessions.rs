//! [`SessionQuota`]: at most `max_sessions_per_principal` live sessions per
//! principal (per client address when auth is off) and service, counted
//! across every gateway replica.
//!
//! Each owner has one key in the `jetway_quotas` KV bucket listing its
//! sessions, written with compare-and-set, so two replicas creating
//! sessions for one owner at once cannot both take the last place. A
//! DELETE removes its session from the list. Sessions that end without a
//! DELETE (they age out of the session bucket after `retention_secs`)
//! are removed lazily: only when the list is full are its sessions looked
//! up, and those no longer live are dropped. So an `initialize` costs one
//! KV read and one write, and one lookup per listed session only at the
//! limit. The list key ages out `retention_secs` after its last write; a
//! session kept in use longer than that without its owner opening or
//! closing another is then no longer counted (the count errs low, never
//! high).

use super::rate::Key;
use crate::error::GatewayError;
use async_nats::jetstream::{self, kv};
use futures::future::join_all;
use jetway_shared::backoff::Backoff;
use jetway_shared::{config::Bus, subjects::SessionId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::{future::Future, time::Duration};

/// Waits between contended compare-and-sets: jittered, so that writers
/// spread out, for at most [`CONTENTION_FOR`].
fn contention() -> Backoff {
    Backoff::unbounded(Duration::from_millis(2), Duration::from_millis(50))
        .jitter()
        .within(CONTENTION_FOR)
}

/// The bucket of per-owner session lists.
pub const BUCKET: &str = "jetway_quotas";

/// How long an `initialize` keeps retrying a contended compare-and-set
/// (many sessions of one owner opened at once) before 503.
const CONTENTION_FOR: Duration = Duration::from_secs(5);

/// What one owner holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Held {
    sessions: Vec<String>,
}

/// The session quota of a gateway.
#[derive(Clone)]
pub struct SessionQuota {
    store: kv::Store,
    max: usize,
}

impl SessionQuota {
    /// Opens (or creates) the bucket; `None` when `max` is 0 (no limit).
    pub async fn open(
        js: &jetstream::Context,
        bus: &Bus,
        max: usize,
    ) -> Result<Option<Self>, jetway_shared::setup::SetupError> {
        if max == 0 {
            return Ok(None);
        }
        let config = kv::Config {
            bucket: BUCKET.to_owned(),
            history: 1,
            max_age: bus.retention(),
            storage: jetstream::stream::StorageType::File,
            num_replicas: bus.replicas,
            ..Default::default()
        };
        let store = match js.create_key_value(config).await {
            Ok(store) => store,
            Err(create) => js.get_key_value(BUCKET).await.map_err(|_| {
                jetway_shared::setup::SetupError::Create {
                    what: format!("KV bucket {BUCKET}"),
                    source: Box::new(create),
                }
            })?,
        };
        Ok(Some(Self { store, max }))
    }

    /// Counts `session` (of `service`) for `owner`, or 429 if the owner
    /// holds the maximum already. `live` says whether a listed session
    /// still exists; it is asked only when the list is full.
    pub async fn acquire<F, Fut>(
        &self,
        owner: &Key,
        service: &str,
        session: &SessionId,
        live: F,
    ) -> Result<(), GatewayError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<bool, GatewayError>>,
    {
        let key = owner_key(owner, service);
        let mut backoff = contention();
        loop {
            let (mut held, revision) = self.read(&key).await?;
            if held.sessions.len() >= self.max {
                let alive = join_all(held.sessions.iter().cloned().map(&live)).await;
                let mut keep = Vec::with_capacity(held.sessions.len());
                for (s, alive) in held.sessions.into_iter().zip(alive) {
                    if alive? {
                        keep.push(s);
                    }
                }
                held.sessions = keep;
            }
            if held.sessions.len() >= self.max {
                return Err(GatewayError::TooManySessions(self.max));
            }
            held.sessions.push(session.as_str().to_owned());
            if self.write(&key, &held, revision).await? {
                return Ok(());
            }
            if !backoff.wait().await {
                tracing::warn!("session quota: the owner's list kept changing; answering 503");
                return Err(GatewayError::Unavailable);
            }
        }
    }

    /// Stops counting `session` for `owner` (a DELETE). Best effort: a
    /// session left in the list is dropped once the list is full.
    pub async fn release(&self, owner: &Key, service: &str, session: &SessionId) {
        let key = owner_key(owner, service);
        let mut backoff = contention();
        loop {
            let Ok((mut held, revision)) = self.read(&key).await else {
                return;
            };
            let before = held.sessions.len();
            held.sessions.retain(|s| s != session.as_str());
            if held.sessions.len() == before {
                return;
            }
            match self.write(&key, &held, revision).await {
                Ok(true) | Err(_) => return,
                Ok(false) if backoff.wait().await => continue,
                Ok(false) => return,
            }
        }
    }

    /// The owner's list and the revision to write it back at (`None`: the
    /// key does not exist).
    async fn read(&self, key: &str) -> Result<(Held, Option<u64>), GatewayError> {
        let entry = self
            .store
            .entry(key)
            .await
            .map_err(|e| unavailable("read", e))?;
        Ok(match entry {
            Some(e) if e.operation == kv::Operation::Put => (
                serde_json::from_slice(&e.value).unwrap_or_default(),
                Some(e.revision),
            ),
            Some(e) => (Held::default(), Some(e.revision)),
            None => (Held::default(), None),
        })
    }

    /// Writes `held` if the key is still at `revision`; `false` if another
    /// write came first.
    async fn write(
        &self,
        key: &str,
        held: &Held,
        revision: Option<u64>,
    ) -> Result<bool, GatewayError> {
        let bytes = serde_json::to_vec(held).unwrap_or_default().into();
        let written = match revision {
            Some(r) => self
                .store
                .update(key, bytes, r)
                .await
                .map(|_| ())
                .map_err(|e| {
                    (
                        e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                        e.to_string(),
                    )
                }),
            None => self
                .store
                .create(key, bytes)
                .await
                .map(|_| ())
                .map_err(|e| {
                    (
                        e.kind() == kv::CreateErrorKind::AlreadyExists,
                        e.to_string(),
                    )
                }),
        };
        match written {
            Ok(()) => Ok(true),
            Err((true, _)) => Ok(false),
            Err((false, e)) => Err(unavailable("write", e)),
        }
    }
}

/// The KV key of `owner`'s sessions of `service`: a hash, so that neither
/// addresses nor subjects appear in key names.
fn owner_key(owner: &Key, service: &str) -> String {
    let mut h = Sha256::new();
    h.update(service.as_bytes());
    h.update([0]);
    match owner {
        Key::Principal(issuer, subject) => {
            h.update(b"p\0");
            h.update(issuer.as_bytes());
            h.update([0]);
            h.update(subject.as_bytes());
        }
        Key::Addr(ip) => {
            h.update(b"a\0");
            h.update(ip.to_string().as_bytes());
        }
        Key::Overflow => h.update(b"o\0"),
    }
    let digest = h.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("sessions.{hex}")
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> GatewayError {
    tracing::warn!(error = %e, "session quota {what}: KV unavailable");
    GatewayError::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_keys_are_valid_kv_keys_and_distinct() {
        let a = owner_key(&Key::addr("192.0.2.1".parse().expect("ip")), "default");
        let b = owner_key(&Key::addr("192.0.2.2".parse().expect("ip")), "default");
        let c = owner_key(&Key::addr("192.0.2.1".parse().expect("ip")), "billing");
        let p = owner_key(
            &Key::Principal("https://idp".into(), "alice".into()),
            "default",
        );
        assert!(a.starts_with("sessions.") && a.len() == "sessions.".len() + 32);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'));
        assert!(a != b && a != c && a != p);
    }
}
