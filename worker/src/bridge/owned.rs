//! One stdio upstream process per Jetway session (`upstream_stdio =
//! "session"`), for servers that keep per-connection state.
//!
//! A session's process runs on one bridge worker, its owner, which holds a
//! lease in the claims bucket (`<session>.stdio`, like the listener's:
//! [`LEASE`], renewed every [`RENEW`]). The process is initialized with
//! the client's own recorded `initialize` params, so it sees the client's
//! capabilities. Every request of the session runs on it, one at a time:
//!
//! - delivered to the owner: it runs there;
//! - delivered to another worker: that worker keeps the request's lifecycle
//!   (claim, lease, fence, final answer) and forwards it to the owner over
//!   core NATS (request/reply on [`subjects::stdio_owner`] of the owner's
//!   probe subject, timing out at the request's deadline). The owner runs
//!   the conversation (progress, logs and server→client requests to the
//!   request's POST stream, the client's answers and cancellation from the
//!   session stream) and replies with the upstream's answer, which the
//!   delivering worker publishes. Nobody answering on the owner's subject
//!   means the owner is gone: the worker takes the lease over at the
//!   revision it saw and starts a fresh process.
//!
//! What the process writes while it runs no request belongs to its
//! session: notifications and server→client requests go to the session's
//! GET stream (requests with a `get:` id, [`super::ids`]), and the owner
//! follows the session's client messages to pass the answers back, with
//! the client's notifications that are not about a request.
//!
//! The process ends when the Jetway session ends (closed or gone, seen at
//! the next renewal), after `upstream_idle_secs` without a request, when
//! another worker took the lease, or when the owner dies. Its in-memory
//! state does not survive: the next request gets a fresh process,
//! initialized with the recorded params. A worker runs at most
//! `upstream_processes` of them; a request that would need one more gets a
//! -32001 error.

use super::{
    Stop, client_messages, ids,
    relay::{Conversation, Ended, Io, converse},
    stdio::{self, ProcessError},
};
use crate::{
    answers::Answers,
    claim::{ClaimError, Claims},
    incoming::Request,
    publish::{Out, OutMessage, Publisher},
    transport::Outcome,
};
use async_nats::jetstream::kv;
use futures::StreamExt;
use jetway_shared::{
    jsonrpc, kv_write, msg_id,
    protocol::ProtocolVersion,
    service::Service,
    session::{SessionRecord, State, UpstreamSession},
    subjects::{self, SessionId, StreamKey},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::{
    io::{AsyncWriteExt, BufReader, Lines},
    process::{ChildStdin, ChildStdout},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

/// How long an owner's lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(15);
/// How often the owner renews it, and looks at the session and idleness.
pub const RENEW: Duration = Duration::from_secs(5);
/// Messages of the process a request may have waiting.
const INBOX: usize = 64;
/// Sessions whose start lock is kept before unused ones are dropped.
const STARTING_REMEMBERED: usize = 1024;

/// Why a session's process cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum OwnError {
    #[error("this bridge worker runs its maximum of {0} per-session upstream processes")]
    Full(usize),
    #[error("another worker took the session's upstream process")]
    Taken,
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Claims(#[from] ClaimError),
    #[error("could not take forwarded requests: {0}")]
    Subscribe(#[source] async_nats::SubscribeError),
}

/// What the processes need of the worker, owned.
#[derive(Clone)]
pub struct Env {
    pub publisher: Publisher,
    pub answers: Answers,
    pub claims: Arc<Claims>,
    pub sessions: kv::Store,
}

/// The per-session processes of one bridge worker.
pub struct Owners {
    command: Vec<String>,
    cap: usize,
    idle: Duration,
    service: Service,
    procs: Mutex<HashMap<String, Arc<Owned>>>,
    /// One per process this worker may run (`cap` of them).
    slots: Arc<Semaphore>,
    /// Per session, held while finding or starting its process.
    starting: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    serving: tokio::sync::OnceCell<()>,
}

/// Who runs a session's process.
pub enum Owner {
    Here(Arc<Owned>),
    /// Another worker, answering probes on `probe` (and taking forwarded
    /// requests on [`subjects::stdio_owner`] of it); its lease is at
    /// `revision`.
    There {
        probe: String,
        revision: u64,
    },
}

/// One session's process.
pub struct Owned {
    stdin: tokio::sync::Mutex<ChildStdin>,
    /// The inbox of the request running on it.
    current: Mutex<Option<mpsc::Sender<Value>>>,
    /// One request at a time.
    turn: tokio::sync::Mutex<()>,
    /// Its answer to `initialize`.
    pub initialized: Value,
    last_used: Mutex<Instant>,
    stop: CancellationToken,
    next_id: AtomicU64,
}

impl Owners {
    pub fn new(command: Vec<String>, cap: usize, idle: Duration, service: Service) -> Self {
        Self {
            command,
            cap: cap.max(1),
            idle,
            service,
            procs: Mutex::default(),
            slots: Arc::new(Semaphore::new(cap.max(1))),
            starting: Mutex::default(),
            serving: tokio::sync::OnceCell::new(),
        }
    }

    /// Starts taking requests other workers forward (once).
    pub async fn serve(self: &Arc<Self>, env: &Env) -> Result<(), OwnError> {
        self.serving
            .get_or_try_init(|| async {
                let nats = env.publisher.jetstream().client();
                let subject = subjects::stdio_owner(env.claims.probe_subject());
                let mut forwarded = nats.subscribe(subject).await.map_err(OwnError::Subscribe)?;
                let (owners, env) = (self.clone(), env.clone());
                tokio::spawn(async move {
                    while let Some(m) = forwarded.next().await {
                        tokio::spawn(serve_one(owners.clone(), env.clone(), nats.clone(), m));
                    }
                });
                Ok(())
            })
            .await
            .map(|_| ())
    }

    fn local(&self, session: &SessionId) -> Option<Arc<Owned>> {
        self.procs.lock().ok()?.get(session.as_str()).cloned()
    }

    /// Waits until nobody else on this worker finds or starts `session`'s
    /// process (other sessions go on).
    async fn lock_session(&self, session: &SessionId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = match self.starting.lock() {
            Ok(mut starting) => {
                if starting.len() > STARTING_REMEMBERED {
                    starting.retain(|_, l| Arc::strong_count(l) > 1);
                }
                starting.entry(session.to_string()).or_default().clone()
            }
            Err(_) => Arc::default(),
        };
        lock.lock_owned().await
    }

    /// This session's process or its owner, starting one here if nobody
    /// owns it, initialized with `params`.
    pub async fn owner(
        self: &Arc<Self>,
        env: &Env,
        session: &SessionId,
        params: &Value,
    ) -> Result<Owner, OwnError> {
        if let Some(o) = self.local(session) {
            return Ok(Owner::Here(o));
        }
        let _starting = self.lock_session(session).await;
        if let Some(o) = self.local(session) {
            return Ok(Owner::Here(o));
        }
        let key = subjects::stdio_owner_key(session);
        let (revision, holder) = env.claims.lease_holder(&key).await?;
        match holder {
            Some(probe) if probe != env.claims.probe_subject() => {
                Ok(Owner::There { probe, revision })
            }
            _ => Ok(Owner::Here(
                self.start(env, session, revision, params).await?,
            )),
        }
    }

    /// Takes the process over from an owner that is gone (its lease at
    /// `revision`).
    pub async fn take_over(
        self: &Arc<Self>,
        env: &Env,
        session: &SessionId,
        revision: u64,
        params: &Value,
    ) -> Result<Arc<Owned>, OwnError> {
        let _starting = self.lock_session(session).await;
        if let Some(o) = self.local(session) {
            return Ok(o);
        }
        tracing::info!(session = %session, "the owner of the session's upstream process is gone; starting a new one");
        self.start(env, session, revision, params).await
    }

    async fn start(
        self: &Arc<Self>,
        env: &Env,
        session: &SessionId,
        revision: u64,
        params: &Value,
    ) -> Result<Arc<Owned>, OwnError> {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return Err(OwnError::Full(self.cap));
        };
        let key = subjects::stdio_owner_key(session);
        let Some(lease) = env.claims.renew_lease(&key, revision, LEASE).await? else {
            return Err(OwnError::Taken);
        };
        let init = json!({
            "jsonrpc": "2.0",
            "id": "jetway-session-init",
            "method": "initialize",
            "params": params,
        });
        let started = Instant::now();
        let (child, stdin, lines, initialized) = match stdio::start(&self.command, &init).await {
            Ok(s) => s,
            Err(e) => {
                release(env, &key, lease).await;
                return Err(e.into());
            }
        };
        tracing::info!(session = %session, took = ?started.elapsed(), "started the session's upstream process");
        let owned = Arc::new(Owned {
            stdin: tokio::sync::Mutex::new(stdin),
            current: Mutex::default(),
            turn: tokio::sync::Mutex::new(()),
            initialized,
            last_used: Mutex::new(Instant::now()),
            stop: CancellationToken::new(),
            next_id: AtomicU64::new(0),
        });
        if let Ok(mut p) = self.procs.lock() {
            p.insert(session.to_string(), owned.clone());
        }
        let keeper = Keeper {
            owners: self.clone(),
            owned: owned.clone(),
            env: env.clone(),
            session: session.clone(),
            key,
            lease,
            _slot: slot,
        };
        tokio::spawn(keeper.run(child, lines));
        Ok(owned)
    }

    fn forget(&self, session: &SessionId, owned: &Arc<Owned>) {
        if let Ok(mut p) = self.procs.lock()
            && p.get(session.as_str())
                .is_some_and(|o| Arc::ptr_eq(o, owned))
        {
            p.remove(session.as_str());
        }
    }
}

/// Lets the lease `key` go, unless it changed since `revision` (a new
/// process of the session holds it).
async fn release(env: &Env, key: &str, revision: u64) {
    let (_, store) = env.claims.bucket();
    if let Err(e) = store.delete_expect_revision(key, Some(revision)).await {
        tracing::debug!(error = %e, "could not release the upstream process lease");
    }
}

impl Owned {
    async fn write(&self, msg: &Value) -> Result<(), ProcessError> {
        let mut line = serde_json::to_vec(msg).unwrap_or_default();
        line.push(b'\n');
        let mut stdin = self.stdin.lock().await;
        stdin.write_all(&line).await.map_err(ProcessError::Io)?;
        stdin.flush().await.map_err(ProcessError::Io)
    }

    fn touch(&self) {
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
    }
}

/// Clears a process's current request when its run ends, however it ends.
struct Running<'a>(&'a Owned);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Ok(mut c) = self.0.current.lock() {
            c.take();
        }
        self.0.touch();
    }
}

/// Runs `request` on the session's process, here.
pub(crate) async fn run_here(
    owned: &Owned,
    io: &mut Io<'_>,
    request: &Request,
) -> Result<Ended, Stop> {
    let _turn = owned.turn.lock().await;
    if owned.stop.is_cancelled() {
        return Err(Stop::HandBack("the upstream process ended".into()));
    }
    let (tx, inbox) = mpsc::channel(INBOX);
    if let Ok(mut c) = owned.current.lock() {
        *c = Some(tx);
    }
    let _running = Running(owned);
    let wire = Value::from(format!(
        "j{}",
        owned.next_id.fetch_add(1, Ordering::Relaxed)
    ));
    let mut msg = request.raw.clone();
    msg["id"] = wire.clone();
    let mut conversation = OwnedConversation {
        owned,
        inbox,
        id: wire,
    };
    let started = std::time::Instant::now();
    let ended = match conversation.send(&msg).await {
        Ok(()) => converse(io, request, &mut conversation).await,
        Err(stop) => Err(stop),
    };
    crate::metrics::stdio_call("session", started, ended.is_ok());
    ended
}

struct OwnedConversation<'a> {
    owned: &'a Owned,
    inbox: mpsc::Receiver<Value>,
    id: Value,
}

impl Conversation for OwnedConversation<'_> {
    fn id(&self) -> &Value {
        &self.id
    }

    async fn next(&mut self) -> Result<Value, Stop> {
        self.inbox
            .recv()
            .await
            .ok_or_else(|| Stop::HandBack("the upstream process ended".into()))
    }

    async fn send(&mut self, msg: &Value) -> Result<(), Stop> {
        self.owned.write(msg).await.map_err(|e| {
            self.owned.stop.cancel();
            Stop::HandBack(e.to_string())
        })
    }
}

/// Reads a process's output, keeps its lease, and ends it.
struct Keeper {
    owners: Arc<Owners>,
    owned: Arc<Owned>,
    env: Env,
    session: SessionId,
    key: String,
    lease: u64,
    /// Given back when the process ends.
    _slot: OwnedSemaphorePermit,
}

impl Keeper {
    async fn run(mut self, child: tokio::process::Child, mut lines: Lines<BufReader<ChildStdout>>) {
        // Names this process in the ids of the requests it sends outside
        // any request, so answers meant for an earlier one go nowhere.
        let nonce = format!("{:016x}", rand::random::<u64>());
        let tag = UpstreamSession {
            id: Some(format!("stdio.{}.{nonce}", self.session)),
            protocol_version: ProtocolVersion::LATEST,
        };
        let mut client =
            client_messages::ClientMessages::follow(&self.env.answers, &self.session, None)
                .await
                .map_err(
                    |e| tracing::warn!(error = %e, "cannot follow the session's client messages"),
                )
                .ok();
        let mut tick = tokio::time::interval(RENEW);
        tick.tick().await;
        let mut relayed = 0u64;
        let (why, release_lease) = loop {
            tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(line)) => {
                        if let Ok(msg) = serde_json::from_str::<Value>(&line) {
                            relayed += 1;
                            self.dispatch(msg, &tag, &msg_id::stdio_tag(&nonce, relayed)).await;
                        }
                    }
                    _ => break ("the process ended", true),
                },
                msg = next_client(&mut client) => match msg {
                    Some(msg) => {
                        if let Some(msg) = client_messages::for_upstream(msg, &tag)
                            && self.owned.write(&msg).await.is_err()
                        {
                            break ("the process ended", true);
                        }
                    }
                    None => client = None,
                },
                _ = tick.tick() => match self.keep().await {
                    Ok(()) => {}
                    Err(why) => break why,
                },
                _ = self.owned.stop.cancelled() => break ("the process broke", true),
            }
        };
        self.owned.stop.cancel();
        if let Ok(mut c) = self.owned.current.lock() {
            c.take();
        }
        self.owners.forget(&self.session, &self.owned);
        drop(child); // killed
        if release_lease {
            release(&self.env, &self.key, self.lease).await;
        }
        tracing::info!(session = %self.session, why, "ended the session's upstream process");
    }

    /// Passes on one message of the process: to the request it runs, or,
    /// running none, to the session's GET stream.
    async fn dispatch(&self, mut msg: Value, tag: &UpstreamSession, out_tag: &str) {
        let current = self.owned.current.lock().ok().and_then(|c| c.clone());
        if let Some(tx) = current {
            let _ = tx.send(msg).await;
            return;
        }
        if msg.get("method").is_none() {
            return; // a late answer to something nobody waits for now
        }
        if let Some(id) = msg.get("id") {
            msg["id"] = Value::from(ids::on_session_stream(tag, id));
        }
        let out = OutMessage {
            session: &self.session,
            stream: &StreamKey::get(),
            payload: serde_json::to_vec(&msg).unwrap_or_default(),
            kind: Out::Message {
                tag: out_tag.to_owned(),
            },
        };
        if let Err(e) = self.env.publisher.publish(out).await {
            tracing::warn!(error = %e, "could not relay an upstream process message");
        }
    }

    /// Renews the lease, unless the process should end: why, and whether
    /// to let the lease go.
    async fn keep(&mut self) -> Result<(), (&'static str, bool)> {
        let idle = self.owned.turn.try_lock().is_ok()
            && self
                .owned
                .last_used
                .lock()
                .map(|t| t.elapsed() >= self.owners.idle)
                .unwrap_or(false);
        if idle {
            return Err(("idle", true));
        }
        if let Ok(raw) = kv_write::get(&self.env.sessions, self.session.as_str()).await {
            let record = raw.and_then(|raw| SessionRecord::from_bytes(&raw).ok());
            if record.is_none_or(|r| r.state == State::Closed) {
                return Err(("the session ended", true));
            }
        }
        match self
            .env
            .claims
            .renew_lease(&self.key, self.lease, LEASE)
            .await
        {
            Ok(Some(r)) => {
                self.lease = r;
                Ok(())
            }
            Ok(None) => Err(("another worker took the lease", false)),
            // Cannot tell now: look again at the next renewal.
            Err(_) => Ok(()),
        }
    }
}

async fn next_client(client: &mut Option<client_messages::ClientMessages>) -> Option<Value> {
    match client {
        Some(c) => c.next().await,
        None => std::future::pending().await,
    }
}

/// A request forwarded to the owner of its session's process.
#[derive(Serialize, Deserialize)]
struct Forwarded {
    session: String,
    stream: String,
    raw: Value,
    delivery: u64,
    /// The request's stream sequence: its client messages come after.
    after: u64,
    /// How long it may still take.
    left_ms: u64,
}

/// What the owner replies.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Returned {
    /// The upstream's answer: the delivering worker publishes it.
    Answer { message: Value },
    /// Settled by the owner (cancelled, or it could not say).
    Done { cancelled: bool },
    /// Answer the client with this error.
    Error { message: Value },
    /// Hand the request back.
    HandBack { why: String },
    /// The owner no longer runs the session's process: look again.
    NotOwner,
}

/// What became of a forwarded request.
pub enum Remote {
    Returned(Returned),
    /// Nobody takes requests on the owner's subject: it is gone.
    Gone,
}

/// How often a worker waiting on a forwarded request checks that the
/// owner is still there.
const OWNER_CHECK: Duration = Duration::from_secs(1);

/// Forwards `request` to the owner answering probes on `probe`. An owner
/// that dies while it runs the request sends no reply: the worker probes
/// it while it waits, and takes over when nobody answers.
pub(crate) async fn forward(
    env: &Env,
    probe: &str,
    request: &Request,
    delivery: u64,
    after: u64,
    deadline: Instant,
) -> Remote {
    tracing::debug!(
        owner = probe,
        "forwarding the request to the owner of the session's upstream process"
    );
    let left = deadline.saturating_duration_since(Instant::now());
    let body = Forwarded {
        session: request.session.to_string(),
        stream: request.stream.as_str().to_owned(),
        raw: request.raw.clone(),
        delivery,
        after,
        left_ms: left.as_millis() as u64,
    };
    let nats = env.publisher.jetstream().client();
    let ask = async_nats::client::Request::new()
        .payload(serde_json::to_vec(&body).unwrap_or_default().into())
        .timeout(Some(left + Duration::from_secs(1)));
    let asked = nats.send_request(subjects::stdio_owner(probe), ask);
    tokio::pin!(asked);
    let mut check = tokio::time::interval(OWNER_CHECK);
    check.tick().await;
    let replied = loop {
        tokio::select! {
            r = &mut asked => break r,
            _ = check.tick() => {
                let ping = async_nats::client::Request::new()
                    .payload(bytes::Bytes::from_static(b"stdio-owner"))
                    .timeout(Some(OWNER_CHECK));
                if let Err(e) = nats.send_request(probe.to_owned(), ping).await
                    && e.kind() == async_nats::RequestErrorKind::NoResponders
                {
                    tracing::info!("the owner of the session's upstream process died mid-call");
                    return Remote::Gone;
                }
            }
        }
    };
    match replied {
        Ok(m) => Remote::Returned(serde_json::from_slice(&m.payload).unwrap_or_else(|e| {
            Returned::HandBack {
                why: format!("unreadable reply of the process owner: {e}"),
            }
        })),
        Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => Remote::Gone,
        Err(e) => Remote::Returned(Returned::HandBack {
            why: format!("the process owner did not answer: {e}"),
        }),
    }
}

async fn serve_one(
    owners: Arc<Owners>,
    env: Env,
    nats: async_nats::Client,
    m: async_nats::Message,
) {
    let Some(reply) = m.reply else { return };
    let returned = match serde_json::from_slice::<Forwarded>(&m.payload) {
        Ok(f) => run_forwarded(&owners, &env, f).await,
        Err(e) => Returned::HandBack {
            why: format!("unreadable forwarded request: {e}"),
        },
    };
    let payload = serde_json::to_vec(&returned).unwrap_or_default();
    if let Err(e) = nats.publish(reply, payload.into()).await {
        tracing::warn!(error = %e, "could not reply to a forwarded request");
    }
}

async fn run_forwarded(owners: &Owners, env: &Env, f: Forwarded) -> Returned {
    let hand_back = |why: &str| Returned::HandBack {
        why: why.to_owned(),
    };
    let Ok(session) = SessionId::parse(&owners.service, &f.session) else {
        return hand_back("a forwarded request of another service");
    };
    let Some(stream) = StreamKey::parse(&f.stream) else {
        return hand_back("a forwarded request without a stream key");
    };
    let Some(owned) = owners.local(&session) else {
        return Returned::NotOwner;
    };
    let method = f.raw["method"].as_str().unwrap_or_default().to_owned();
    if method == jsonrpc::method::INITIALIZE {
        return Returned::Answer {
            message: owned.initialized.clone(),
        };
    }
    let (history, mut inbound) = match env.answers.inbound_after(&session, f.after).await {
        Ok(i) => i,
        Err(e) => return hand_back(&format!("could not follow client messages: {e}")),
    };
    let raw = f.raw;
    let request = Request {
        session,
        stream,
        id: raw["id"].clone(),
        method,
        raw: raw.clone(),
        message: rmcp::service::RxJsonRpcMessage::<rmcp::RoleServer>::deserialize(&raw),
    };
    let mut io = Io {
        publisher: &env.publisher,
        delivery: f.delivery,
        history,
        inbound: &mut inbound,
    };
    let ran = tokio::time::timeout(
        Duration::from_millis(f.left_ms),
        run_here(&owned, &mut io, &request),
    )
    .await;
    match ran {
        Err(_) => hand_back("the request reached its deadline"),
        Ok(Ok(Ended::Answer(message))) => Returned::Answer { message },
        Ok(Ok(Ended::Done(outcome))) => Returned::Done {
            cancelled: matches!(outcome, Outcome::Cancelled),
        },
        Ok(Err(Stop::Answer(message))) => Returned::Error { message },
        Ok(Err(Stop::HandBack(why))) => Returned::HandBack { why },
    }
}
