//! What an HTTP upstream sends outside any request: its session's
//! standalone GET stream (`notifications/resources/updated` after a
//! subscription, `list_changed`, log messages of background work), relayed
//! to the Jetway session's GET stream.
//!
//! One bridge worker listens per session, holding a lease in the claims
//! bucket (`<session>.listener`, a TTL of [`LEASE`], renewed every
//! [`RENEW`]); every bridge worker watches those leases and tries to take
//! one over as soon as it runs out (its holder died), and any bridge
//! worker that serves a request of the session also checks, at most every
//! [`RECHECK`], that somebody holds it. The listener reconnects with
//! `Last-Event-ID` when the stream breaks off, and stops when the Jetway
//! session ends (then it ends the upstream session too: DELETE), its
//! upstream session changes, or another worker holds the lease. An upstream
//! that offers no GET stream still gets the client's messages.
//!
//! Server→client requests on that stream (`roots/list` after
//! `notifications/roots/list_changed`, a background job's sampling or
//! elicitation) reach the client there too, with an id that names the
//! upstream session and the upstream's id ([`super::ids`]); the listener
//! follows the session's client messages ([`super::client_messages`]) and
//! POSTs the answer to the upstream session, and the client notifications
//! that are not about a request with it. Since the id carries everything,
//! a worker that took the lease over routes answers to requests its
//! predecessor relayed.
//!
//! The listener records where it got to ([`super::position`]): the id of
//! each upstream event it relayed and the last client message it read. The
//! worker that takes over resumes the upstream stream with `Last-Event-ID`
//! (an upstream with an event store replays what it sent while nobody
//! listened; one without refuses, and the stream opens afresh), and reads
//! the client's messages from there, so an answer or `list_changed` sent
//! while nobody listened reaches the upstream. An event relayed again after
//! a takeover has the same message id, so the client gets it once; a client
//! message passed upstream just before its listener died may be passed
//! again (an SDK ignores a second answer to one request).

use super::{
    client_messages::{self, ClientMessages},
    ids,
    position::{Position, PositionError, Recorder},
    upstream::{Events, Listen, SessionHeaders, Upstream, UpstreamError},
};
use crate::{
    answers::Answers,
    claim::Claims,
    publish::{Out, OutMessage, Publisher},
};
use async_nats::jetstream::kv;
use futures::StreamExt;
use jetway_shared::{
    backoff::Backoff,
    kv_write, msg_id,
    service::Service,
    session::{SessionRecord, State, UpstreamSession},
    subjects::{self, SessionId, StreamKey},
};
use serde_json::Value;
use sha2::Digest;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::time::Instant;

/// How long a listener's lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(15);
/// How often the listener renews its lease and re-reads the session.
pub const RENEW: Duration = Duration::from_secs(5);
/// How often a worker checks that a session has a listener.
pub const RECHECK: Duration = Duration::from_secs(10);
/// Sessions whose last check this worker remembers (a cache: forgetting one
/// costs one more check).
const REMEMBERED: usize = 10_000;

/// When a session was last seen to have a listener, and for which
/// upstream session id.
type Checked = (Instant, Option<String>);

/// The listeners of one bridge worker.
#[derive(Clone, Default)]
pub struct Listeners {
    /// The last check of each session.
    checked: Arc<Mutex<HashMap<String, Checked>>>,
    /// Set once this worker watches for listener leases running out.
    watching: Arc<std::sync::OnceLock<()>>,
}

/// What a listener needs, owned.
#[derive(Clone)]
pub struct ListenerContext {
    pub upstream: Upstream,
    pub claims: Arc<Claims>,
    pub answers: Answers,
    pub sessions: kv::Store,
    pub publisher: Publisher,
    pub timeout: Duration,
}

impl Listeners {
    /// Watches the listener leases of `service` (once per worker): when one
    /// runs out (its holder died without letting go), this worker tries to
    /// take it over at once, without waiting for a request of the session.
    pub fn watch_expiries(&self, service: &Service, ctx: impl FnOnce() -> ListenerContext) {
        if self.watching.set(()).is_err() {
            return;
        }
        tokio::spawn(watch_expiries(service.clone(), ctx()));
    }

    /// Makes sure somebody listens to `upstream` for `session`, without
    /// waiting: a recent check is remembered; otherwise the lease is tried
    /// in the background, and a listener started if it is taken.
    pub fn ensure(
        &self,
        session: &SessionId,
        upstream: &UpstreamSession,
        ctx: impl FnOnce() -> ListenerContext,
    ) {
        let Some(upstream_id) = upstream.id.clone() else {
            return; // a stateless upstream has no session stream
        };
        {
            let Ok(mut checked) = self.checked.lock() else {
                return;
            };
            if let Some((at, id)) = checked.get(session.as_str())
                && at.elapsed() < RECHECK
                && id.as_deref() == Some(upstream_id.as_str())
            {
                return;
            }
            if checked.len() >= REMEMBERED {
                checked.retain(|_, (at, _)| at.elapsed() < RECHECK);
            }
            checked.insert(session.to_string(), (Instant::now(), Some(upstream_id)));
        }
        let ctx = ctx();
        let session = session.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let key = subjects::listener_key(&session);
            match ctx.claims.try_lease(&key, LEASE).await {
                Ok(Some(revision)) => listen(ctx, session, upstream, key, revision).await,
                Ok(None) => {} // somebody listens
                Err(e) => tracing::debug!(error = %e, "could not check the session's listener"),
            }
        });
    }
}

/// See [`Listeners::watch_expiries`]. A watch that ends (NATS went away)
/// is opened again.
async fn watch_expiries(service: Service, ctx: ListenerContext) {
    let mut retry = Backoff::unbounded(Duration::from_millis(100), Duration::from_secs(5)).jitter();
    loop {
        let (_, store) = ctx.claims.bucket();
        match store
            .watch(format!("*.{}", subjects::LISTENER_SUFFIX))
            .await
        {
            Ok(mut watch) => {
                retry.reset();
                while let Some(entry) = watch.next().await {
                    let Ok(entry) = entry else { break };
                    if entry.operation == kv::Operation::Put {
                        continue;
                    }
                    let Some(session) = subjects::session_of_listener_key(&service, &entry.key)
                    else {
                        continue;
                    };
                    tokio::spawn(take_over(ctx.clone(), session));
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot watch the listener leases"),
        }
        retry.sleep().await;
    }
}

/// Takes over the listener of `session`, whose lease ran out, if the
/// session still has an upstream session to listen to.
async fn take_over(ctx: ListenerContext, session: SessionId) {
    let record = match kv_write::get(&ctx.sessions, session.as_str()).await {
        Ok(raw) => raw.and_then(|raw| SessionRecord::from_bytes(&raw).ok()),
        Err(_) => return, // the session's next request looks again
    };
    let Some(upstream) = record
        .filter(|r| r.state != State::Closed)
        .and_then(|r| r.upstream)
        .filter(|u| u.id.is_some())
    else {
        return;
    };
    let key = subjects::listener_key(&session);
    if let Ok(Some(revision)) = ctx.claims.try_lease(&key, LEASE).await {
        tracing::info!(session = %session, "a listener's lease ran out; taking it over");
        listen(ctx, session, upstream, key, revision).await;
    }
}

/// Relays the upstream session's GET stream until there is no reason to,
/// and passes what the client sends for it upstream.
async fn listen(
    ctx: ListenerContext,
    session: SessionId,
    upstream: UpstreamSession,
    key: String,
    mut revision: u64,
) {
    let headers = SessionHeaders {
        id: upstream.id.as_deref(),
        version: Some(upstream.protocol_version),
    };
    let (js, store) = ctx.claims.bucket();
    let mut recorder = match Recorder::open(js.clone(), store.clone(), &session).await {
        Ok(r) => r,
        Err(e) => {
            // The lease runs out; the next request of the session tries again.
            tracing::warn!(error = %e, session = %session, "cannot listen to the upstream session's stream");
            return;
        }
    };
    let before = recorder.written.clone();
    // Followed before the stream opens: every answer to a request relayed
    // from it comes after.
    let inbound_from = before.as_ref().map(|p| p.inbound);
    let mut client = match ClientMessages::follow(&ctx.answers, &session, inbound_from).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, session = %session, "cannot listen to the upstream session's stream");
            return;
        }
    };
    let mut position = Position {
        upstream: upstream.id.clone(),
        event: before
            .filter(|p| p.upstream == upstream.id)
            .and_then(|p| p.event),
        inbound: client.position(),
    };
    let resumed = position.event.is_some();
    // Recorded at once: a listener that dies before its first event still
    // tells the next one where the client's messages start.
    if let Err(e) = recorder.record(&position).await {
        tracing::warn!(error = %e, session = %session, "cannot listen to the upstream session's stream");
        return;
    }
    let mut relayed = 0u64;
    let mut renew = tokio::time::interval(RENEW);
    renew.tick().await;
    tracing::info!(session = %session, resumed, "listening to the upstream session's stream");
    let mut retry = Backoff::unbounded(Duration::from_millis(200), Duration::from_secs(2)).jitter();
    let why = 'connect: loop {
        let opened = ctx
            .upstream
            .listen(headers, position.event.as_deref(), ctx.timeout)
            .await;
        // `None`: no stream to relay, but still the client's messages to
        // pass on and the session's end to watch for.
        let mut events = match opened {
            Ok(Listen::Open(events)) => {
                retry.reset();
                Some(events)
            }
            Ok(Listen::NotOffered) => None,
            Err(UpstreamError::SessionNotFound) => break Wanted::Elsewhere,
            Err(e) => {
                if let UpstreamError::Status { status, .. } = &e
                    && *status != reqwest::StatusCode::CONFLICT
                    && position.event.is_some()
                {
                    // An upstream without an event store (or that lost it)
                    // refuses to resume: start afresh.
                    tracing::warn!(error = %e, "the upstream refused to resume its stream; opening it afresh");
                    position.event = None;
                    continue;
                }
                tracing::debug!(error = %e, "upstream stream not open; retrying");
                retry.sleep().await;
                match still_wanted(&ctx, &session, &upstream, &key, &mut revision).await {
                    Wanted::Yes => continue,
                    other => break other,
                }
            }
        };
        loop {
            tokio::select! {
                event = next_event(&mut events) => match event {
                    Some(Ok((id, message))) => {
                        let tag = match &id {
                            // The same for the listener that resumes after it.
                            Some(id) => event_tag(&upstream, id),
                            None => {
                                relayed += 1;
                                msg_id::listener_tag(revision, relayed)
                            }
                        };
                        if let Some(message) = for_client(message, &upstream) {
                            let out = OutMessage {
                                session: &session,
                                stream: &StreamKey::get(),
                                payload: serde_json::to_vec(&message).unwrap_or_default(),
                                kind: Out::Message { tag },
                            };
                            if let Err(e) = ctx.publisher.publish(out).await {
                                tracing::warn!(error = %e, "could not relay an upstream message");
                            }
                        }
                        if id.is_some() {
                            position.event = id;
                            if let Err(e) = recorder.record(&position).await {
                                break 'connect lost(e);
                            }
                        }
                    }
                    // Broke off: reconnect after the last event seen.
                    Some(Err(_)) | None => {
                        retry.sleep().await;
                        continue 'connect;
                    }
                },
                msg = client.next() => match msg {
                    Some(msg) => {
                        if let Some(msg) = client_messages::for_upstream(msg, &upstream) {
                            client_messages::send(&ctx.upstream, &msg, headers, ctx.timeout).await;
                            position.inbound = client.position();
                            if let Err(e) = recorder.record(&position).await {
                                break 'connect lost(e);
                            }
                        } else {
                            position.inbound = client.position();
                        }
                    }
                    // The follower ended with the NATS connection: the
                    // lease runs out, another worker takes over.
                    None => break 'connect Wanted::Elsewhere,
                },
                _ = renew.tick() => {
                    match still_wanted(&ctx, &session, &upstream, &key, &mut revision).await {
                        Wanted::Yes => {}
                        other => break 'connect other,
                    }
                }
            }
        }
    };
    let ended = matches!(why, Wanted::SessionEnded);
    if ended {
        // The Jetway session is over: so is its upstream session.
        ctx.upstream.end(headers).await;
        recorder.remove().await;
    }
    tracing::info!(session = %session, ended, "stopped listening to the upstream session's stream");
}

/// A position that could not be recorded ends the listener: another took
/// over, or the bucket cannot be written (the lease runs out too).
fn lost(e: PositionError) -> Wanted {
    tracing::warn!(error = %e, "stopping the listener");
    Wanted::Elsewhere
}

/// The tag of the upstream event `id` on the Jetway session's GET stream:
/// the same whichever listener relays it, so an event relayed again after
/// a takeover is stored once.
fn event_tag(upstream: &UpstreamSession, id: &str) -> String {
    let digest = sha2::Sha256::digest(
        format!("{}\n{id}", upstream.id.as_deref().unwrap_or_default()).as_bytes(),
    );
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    msg_id::listener_event_tag(&hex)
}

/// The next event of the upstream's stream; never, when there is none.
async fn next_event(
    events: &mut Option<Events>,
) -> Option<Result<(Option<String>, Value), UpstreamError>> {
    match events {
        Some(events) => events.next().await,
        None => std::future::pending().await,
    }
}

/// What the client gets of a message on the upstream's stream:
/// notifications as they are, requests with a session-unique id
/// ([`ids::on_session_stream`]); responses are nobody's business here.
fn for_client(mut message: Value, upstream: &UpstreamSession) -> Option<Value> {
    message.get("method")?;
    if let Some(id) = message.get("id") {
        message["id"] = Value::from(ids::on_session_stream(upstream, id));
    }
    Some(message)
}

/// Whether a listener goes on.
enum Wanted {
    Yes,
    /// The Jetway session was closed or is gone.
    SessionEnded,
    /// Another upstream session, or another worker's lease.
    Elsewhere,
}

/// Renews the lease, unless the session no longer needs this listener.
async fn still_wanted(
    ctx: &ListenerContext,
    session: &SessionId,
    upstream: &UpstreamSession,
    key: &str,
    revision: &mut u64,
) -> Wanted {
    let record = match kv_write::get(&ctx.sessions, session.as_str()).await {
        Ok(raw) => raw.and_then(|raw| SessionRecord::from_bytes(&raw).ok()),
        // Cannot tell now: keep the lease, look again at the next renewal.
        Err(_) => return renewed(ctx, key, revision).await,
    };
    match record {
        None => Wanted::SessionEnded,
        Some(r) if r.state == State::Closed => Wanted::SessionEnded,
        Some(r) if r.upstream.as_ref() != Some(upstream) => Wanted::Elsewhere,
        Some(_) => renewed(ctx, key, revision).await,
    }
}

async fn renewed(ctx: &ListenerContext, key: &str, revision: &mut u64) -> Wanted {
    match ctx.claims.renew_lease(key, *revision, LEASE).await {
        Ok(Some(r)) => {
            *revision = r;
            Wanted::Yes
        }
        _ => Wanted::Elsewhere,
    }
}
