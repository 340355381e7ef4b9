//! Claims: which worker process runs a request, so that a request runs
//! once even when JetStream delivers it twice.
//!
//! A consumer redelivers a request when its lease runs out, but also, after
//! a consumer leader change, while the first worker still runs it (with a
//! delivery count of 1). So before a request runs, its worker claims it:
//! a compare-and-set create of `<session>.<request>` in the claims bucket,
//! naming the claiming process and the core subject it answers probes on.
//! A delivery that finds someone else's claim asks that process whether it
//! still runs the request:
//! - it does: wait (holding this delivery's lease) until the answer is on
//!   the stream, then acknowledge; the request does not run twice;
//! - it does not: take the claim over with a compare-and-set on the
//!   revision seen, and run;
//! - nobody answers the probe subject ("no responders"): the process is
//!   gone, or reconnecting to NATS. Probe again until `grace` has passed
//!   with no responder, then take over;
//! - it cannot say (a probe times out): keep waiting, for at most
//!   `patience`, then take over.
//!
//! A holder that was cut off from NATS may have lost its claim meanwhile,
//! so after a reconnect its request checks the claim ([`ClaimFence`])
//! before every state write and before its answer, and stops if another
//! process has taken over.
//!
//! Claims are never deleted: each write carries a TTL longer than any run
//! (the request deadline plus a margin), so the bucket holds only recent
//! requests. The cost is one replicated KV write per request, paid by every
//! request, read-only ones too: a bridged upstream's tools may have effects
//! Jetway cannot see.

use crate::{answers::Answers, delivery::LeaseClock};
use async_nats::jetstream::{Context, kv};
use futures::StreamExt;
use jetway_shared::{
    kv_write::{self, Expect, WriteError},
    msg_id,
    service::Service,
    subjects::{self, SessionId, StreamKey},
};
use serde::{Deserialize, Serialize};
use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{sync::watch, time::Instant};

/// How often a delivery waiting on another holder looks again.
const POLL: Duration = Duration::from_millis(500);
/// How often a holder that has no responder is probed again.
const GONE_POLL: Duration = Duration::from_millis(100);
/// How long a fence check waits for a lost connection to come back.
const RECONNECT_WAIT: Duration = Duration::from_secs(10);
/// How long a probe may take before its holder counts as unresponsive.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const RUNNING: &[u8] = b"running";
const IDLE: &[u8] = b"idle";

/// Why a claim could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("could not write the claim: {0}")]
    Write(#[source] WriteError),
    #[error("could not read the claim: {0}")]
    Read(#[source] kv::EntryError),
    #[error("could not tell whether the request was answered: {0}")]
    Answers(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the request's holder neither answered nor let go in time")]
    Waited,
    #[error("not connected to NATS")]
    Disconnected,
}

/// What a delivery found.
pub enum Acquired {
    /// This process runs the request now.
    Ours(ClaimGuard),
    /// The request is answered (by an earlier run or the holder it waited on).
    Answered,
}

/// Who holds a claim, as stored.
#[derive(Serialize, Deserialize)]
struct Holder {
    instance: String,
    probe: String,
}

enum Probe {
    Running,
    Idle,
    Gone,
    Unknown,
}

/// This process's side of claims: taking them, and answering probes.
pub struct Claims {
    store: kv::Store,
    js: Context,
    nats: async_nats::Client,
    /// Names this process (not its instance id, which a restarted pod reuses).
    nonce: String,
    /// The core subject this process answers probes on.
    probe: String,
    holder: bytes::Bytes,
    ttl: Duration,
    grace: Duration,
    patience: Duration,
    running: Arc<Mutex<HashSet<String>>>,
    /// Bumped on every NATS (re)connect.
    connects: watch::Receiver<u64>,
}

/// How long holders are given; see the module docs.
pub struct Timing {
    /// How long a claim outlives its last write: longer than any run.
    pub ttl: Duration,
    /// How long a holder with no responder may take to come back.
    pub grace: Duration,
    /// How long a holder that does not answer probes is waited for.
    pub patience: Duration,
}

impl Claims {
    /// Starts answering probes.
    pub async fn start(
        store: kv::Store,
        js: Context,
        nats: async_nats::Client,
        connects: watch::Receiver<u64>,
        service: &Service,
        instance: &str,
        timing: Timing,
    ) -> Result<Arc<Self>, async_nats::SubscribeError> {
        let nonce = format!("{:016x}", rand::random::<u64>());
        let probe = subjects::probe(service, &nonce);
        let holder = serde_json::to_vec(&Holder {
            instance: instance.to_owned(),
            probe: probe.clone(),
        })
        .unwrap_or_default()
        .into();
        let running: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut probes = nats.subscribe(probe.clone()).await?;
        let answering = running.clone();
        let replier = nats.clone();
        tokio::spawn(async move {
            while let Some(m) = probes.next().await {
                let Some(reply) = m.reply else { continue };
                let key = String::from_utf8_lossy(&m.payload);
                let runs = answering
                    .lock()
                    .map(|r| r.contains(key.as_ref()))
                    .unwrap_or(false);
                let answer = if runs { RUNNING } else { IDLE };
                let _ = replier.publish(reply, answer.into()).await;
            }
        });
        Ok(Arc::new(Self {
            store,
            js,
            nats,
            nonce,
            probe,
            holder,
            ttl: timing.ttl,
            grace: timing.grace,
            patience: timing.patience,
            running,
            connects,
        }))
    }

    /// Claims `request` for this process, or waits until its current
    /// holder answers it (see the module docs). Gives up at `until`.
    pub async fn acquire(
        self: &Arc<Self>,
        session: &SessionId,
        request: &StreamKey,
        answers: &Answers,
        until: Instant,
    ) -> Result<Acquired, ClaimError> {
        let key = subjects::claim_key(session, request);
        // Names this attempt: a retry of one write is deduplicated as
        // such, but a later delivery of the same request to this process
        // must not mistake its claim write for a retry of the first one.
        let attempt = format!("{}-{:08x}", self.nonce, rand::random::<u32>());
        // Some(revision): write the claim over that revision (0: none);
        // None: someone runs it, look again.
        let mut replace = Some(0);
        let mut unresponsive_since: Option<Instant> = None;
        let mut gone_since: Option<Instant> = None;
        let mut waited = false;
        loop {
            if let Some(revision) = replace.take() {
                let connects = *self.connects.borrow();
                let id = msg_id::claim_write(session, request, &attempt, revision);
                let wrote = kv_write::write_expiring(
                    &self.js,
                    &self.store,
                    &key,
                    self.holder.clone(),
                    Expect::Revision(revision),
                    &id,
                    Some(self.ttl),
                )
                .await;
                match wrote {
                    Ok(written) => {
                        // Written over an earlier claim: an earlier run may
                        // have changed state before it died or let go.
                        let rerun = revision != 0;
                        return Ok(Acquired::Ours(self.guard(key, written, connects, rerun)));
                    }
                    Err(WriteError::Conflict) => {}
                    Err(e) => return Err(ClaimError::Write(e)),
                }
            }
            let entry = kv_write::read(&self.store, &key)
                .await
                .map_err(ClaimError::Read)?;
            let Some(entry) = entry else {
                replace = Some(0);
                continue;
            };
            let holder = (entry.operation == kv::Operation::Put)
                .then(|| serde_json::from_slice::<Holder>(&entry.value).ok())
                .flatten();
            let Some(holder) = holder else {
                // Expired or unreadable: nobody holds it.
                replace = Some(entry.revision);
                continue;
            };
            let answered = answers
                .answered(session, request)
                .await
                .map_err(|e| ClaimError::Answers(Box::new(e)))?;
            if answered {
                return Ok(Acquired::Answered);
            }
            let probe = self.probe(&holder.probe, &key).await;
            if !matches!(probe, Probe::Gone) {
                gone_since = None;
            }
            if !matches!(probe, Probe::Unknown) {
                unresponsive_since = None;
            }
            let let_go = match probe {
                Probe::Running => false,
                Probe::Idle => true,
                Probe::Gone => gone_since.get_or_insert_with(Instant::now).elapsed() >= self.grace,
                Probe::Unknown => {
                    unresponsive_since
                        .get_or_insert_with(Instant::now)
                        .elapsed()
                        >= self.patience
                }
            };
            if let_go {
                // The holder may have let go because it just answered.
                let answered = answers
                    .answered_per_leader(session, request)
                    .await
                    .map_err(|e| ClaimError::Answers(Box::new(e)))?;
                if answered {
                    return Ok(Acquired::Answered);
                }
                let why = if gone_since.is_some() {
                    "gone"
                } else {
                    "not running it"
                };
                tracing::info!(holder = %holder.instance, why, "taking over a request from its holder");
                replace = Some(entry.revision);
                continue;
            }
            tracing::debug!(holder = %holder.instance, "request is running elsewhere; waiting for its answer");
            if !std::mem::replace(&mut waited, true) {
                crate::metrics::claim_waited();
            }
            let poll = if gone_since.is_some() {
                GONE_POLL
            } else {
                POLL
            };
            if Instant::now() + poll > until {
                return Err(ClaimError::Waited);
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Takes the lease `key` for this process if nobody holds it (it is
    /// absent, or its TTL ran out); the revision to renew it from.
    pub async fn try_lease(&self, key: &str, ttl: Duration) -> Result<Option<u64>, ClaimError> {
        let entry = kv_write::read(&self.store, key)
            .await
            .map_err(ClaimError::Read)?;
        let from = match entry {
            None => 0,
            Some(e) if e.operation != kv::Operation::Put => e.revision,
            Some(_) => return Ok(None),
        };
        self.renew_lease(key, from, ttl).await
    }

    /// Renews the lease `key` held at `revision`; `None` if someone else
    /// took it meanwhile.
    pub async fn renew_lease(
        &self,
        key: &str,
        revision: u64,
        ttl: Duration,
    ) -> Result<Option<u64>, ClaimError> {
        let id = msg_id::lease_write(key, &self.nonce, revision);
        let wrote = kv_write::write_expiring(
            &self.js,
            &self.store,
            key,
            self.holder.clone(),
            Expect::Revision(revision),
            &id,
            Some(ttl),
        )
        .await;
        match wrote {
            Ok(r) => Ok(Some(r)),
            Err(WriteError::Conflict) => Ok(None),
            Err(e) => Err(ClaimError::Write(e)),
        }
    }

    /// Who holds the lease `key`: its revision (0 if never written), and
    /// the probe subject of the holding process, `None` when nobody holds
    /// it (absent, or its TTL ran out).
    pub async fn lease_holder(&self, key: &str) -> Result<(u64, Option<String>), ClaimError> {
        let entry = kv_write::read(&self.store, key)
            .await
            .map_err(ClaimError::Read)?;
        Ok(match entry {
            None => (0, None),
            Some(e) if e.operation != kv::Operation::Put => (e.revision, None),
            Some(e) => {
                let holder = serde_json::from_slice::<Holder>(&e.value).ok();
                (e.revision, holder.map(|h| h.probe))
            }
        })
    }

    /// The probe subject of this process, as [`Self::lease_holder`] names it.
    pub fn probe_subject(&self) -> &str {
        &self.probe
    }

    /// The claims bucket and the JetStream context that writes to it, for
    /// other records kept beside the claims (a listener's position).
    pub fn bucket(&self) -> (&Context, &kv::Store) {
        (&self.js, &self.store)
    }

    fn guard(
        self: &Arc<Self>,
        key: String,
        revision: u64,
        connects: u64,
        rerun: bool,
    ) -> ClaimGuard {
        if let Ok(mut r) = self.running.lock() {
            r.insert(key.clone());
        }
        ClaimGuard {
            fence: ClaimFence {
                claims: self.clone(),
                key: Arc::from(key),
                revision,
                connects: Arc::new(connects.into()),
                lease: None,
                rerun,
            },
        }
    }

    async fn probe(&self, subject: &str, key: &str) -> Probe {
        let request = async_nats::client::Request::new()
            .payload(key.to_owned().into())
            .timeout(Some(PROBE_TIMEOUT));
        match self.nats.send_request(subject.to_owned(), request).await {
            Ok(m) if m.payload.as_ref() == RUNNING => Probe::Running,
            Ok(_) => Probe::Idle,
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => Probe::Gone,
            Err(_) => Probe::Unknown,
        }
    }
}

/// Marks a request as running in this process until dropped; drop it only
/// once the request's answer is on the stream or it was handed back.
pub struct ClaimGuard {
    fence: ClaimFence,
}

impl ClaimGuard {
    /// The check the request makes before its writes and its answer, for a
    /// run under the delivery whose lease `lease` tells about.
    pub fn fence(&self, lease: LeaseClock) -> ClaimFence {
        ClaimFence {
            lease: Some(lease),
            ..self.fence.clone()
        }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if let Ok(mut r) = self.fence.claims.running.lock() {
            r.remove(self.fence.key.as_ref());
        }
    }
}

/// Whether this process still holds a request's claim.
#[derive(Clone)]
pub struct ClaimFence {
    claims: Arc<Claims>,
    key: Arc<str>,
    /// The revision this process wrote.
    revision: u64,
    /// The connect count when it was written or last checked.
    connects: Arc<std::sync::atomic::AtomicU64>,
    /// The lease of the delivery that runs under this claim.
    lease: Option<LeaseClock>,
    /// The claim replaced an earlier one: another run of this request may
    /// have written state before it died or let go.
    rerun: bool,
}

impl ClaimFence {
    /// True if an earlier run of this request may have written state (see
    /// `Session`, which then looks for those writes instead of repeating them).
    pub fn may_have_run_before(&self) -> bool {
        self.rerun
    }

    /// True unless another process took the request over. Costs nothing
    /// while the NATS connection has stayed up and the lease renewed since
    /// the claim was taken (nobody takes over a holder that renews and
    /// answers probes); after an outage, or a pause of this process longer
    /// than a lease, it waits for the connection and reads the claim.
    pub async fn still_ours(&self) -> Result<bool, ClaimError> {
        let nats = &self.claims.nats;
        let connected = || nats.connection_state() == async_nats::connection::State::Connected;
        let seen = self.connects.load(std::sync::atomic::Ordering::Relaxed);
        let now = *self.claims.connects.borrow();
        let lapsed = self.lease.as_ref().is_some_and(LeaseClock::may_have_lapsed);
        if connected() && now == seen && !lapsed {
            return Ok(true);
        }
        let mut connects = self.claims.connects.clone();
        let back = tokio::time::timeout(RECONNECT_WAIT, async {
            while !connected() {
                if connects.changed().await.is_err() {
                    return;
                }
            }
        });
        if back.await.is_err() || !connected() {
            return Err(ClaimError::Disconnected);
        }
        let entry = kv_write::read(&self.claims.store, &self.key)
            .await
            .map_err(ClaimError::Read)?;
        let ours = entry.is_some_and(|e| e.revision == self.revision);
        if ours {
            self.connects.store(
                *self.claims.connects.borrow(),
                std::sync::atomic::Ordering::Relaxed,
            );
        } else {
            tracing::warn!("this request was taken over while NATS was unreachable; stopping it");
        }
        Ok(ours)
    }
}
