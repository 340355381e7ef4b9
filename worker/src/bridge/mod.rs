//! The bridge: a [`Handler`] that forwards each request to an upstream MCP
//! server that knows nothing about Jetway, over Streamable HTTP or stdio.
//!
//! - **Sessions.** Each Jetway session gets its own upstream session: the
//!   client's `initialize` is forwarded as it came, and the upstream's
//!   session id and negotiated version go into the Jetway session record,
//!   so any bridge worker can use them. When the upstream answers 404 (it
//!   restarted, expired the session, or a replica without it answered), the
//!   bridge initializes a new upstream session with the client's recorded
//!   `initialize` params and retries the request once: a request answered
//!   404 never ran. A stateless upstream (no session id) works the same,
//!   without one.
//! - **Messages.** The request goes upstream unchanged. What comes back on
//!   its SSE stream goes to the client unchanged: progress and logs on the
//!   request's POST stream, other notifications on the session's GET stream,
//!   server→client requests (sampling, elicitation, roots) on the POST
//!   stream with a session-unique id ([`ids`]); the client's answer, which
//!   may reach any gateway, is posted back to the upstream with the
//!   upstream's id. A client's cancellation is posted upstream too. One
//!   relay loop ([`relay`]) serves every kind of upstream.
//! - **Failures.** An upstream that cannot be reached within
//!   `upstream_unreachable_secs` gets the client a -32001 error; one whose
//!   stream breaks off before the answer (it died mid-call) has the request
//!   handed back, to run again on another worker, as when a worker dies.
//!   The worker's `/readyz` answers 503 while its last attempt to reach the
//!   upstream failed, until one succeeds.
//!
//! stdio upstreams ([`stdio`]) run as a pool of processes per worker, one
//! request per process at a time, or as one process per session on one
//! worker that owns it ([`owned`], `upstream_stdio = "session"`).
//!
//! What an HTTP upstream sends outside any request, on its session's own
//! GET stream, reaches the Jetway session's GET stream ([`listener`]):
//! notifications, and server→client requests (`roots/list`), whose answers
//! go back to the upstream session with what else the client sends outside
//! a request (`notifications/roots/list_changed`, [`client_messages`]).
//!
//! When the Jetway session ends, so does the upstream session (the
//! listener ends it).

pub mod client_messages;
pub mod ids;
pub mod listener;
pub mod owned;
pub mod position;
mod relay;
pub mod stdio;
pub mod upstream;

use crate::{
    handler::{Handler, RunContext, Shared, publish_final},
    health::Health,
    incoming::Request,
    transport::Outcome,
};
use futures::StreamExt;
use jetway_shared::{
    backoff::Backoff,
    jsonrpc::{self, method},
    protocol::{ProtocolVersion, UnknownVersion},
    session::{State, UpstreamSession, update_record},
    subjects::SessionId,
};
use relay::{Conversation, Ended, Io, converse, is_answer_to};
use serde_json::{Value, json};
use std::{
    future::Future,
    sync::{Arc, OnceLock},
    time::Duration,
};
use tokio::time::Instant;
use upstream::{Reply, SessionHeaders, Upstream, UpstreamError};

/// How the bridge reaches its upstream.
#[derive(Clone)]
pub struct Bridge {
    target: Target,
    /// How long the upstream may take to answer with response headers.
    response_timeout: Duration,
    /// How long an unreachable upstream is retried before the client gets
    /// an error.
    unreachable_for: Duration,
    /// The worker's readiness, told whether the upstream answers.
    health: Arc<OnceLock<Arc<Health>>>,
    /// Who relays each upstream session's own stream.
    listeners: listener::Listeners,
}

/// The upstream: a Streamable HTTP server, or a pool of stdio processes.
#[derive(Clone)]
enum Target {
    Http(Upstream),
    Stdio(Arc<stdio::Pool>),
    /// One stdio process per session ([`owned`]).
    PerSession(Arc<owned::Owners>),
}

impl Bridge {
    /// A bridge to a Streamable HTTP upstream.
    pub fn http(upstream: Upstream, response_timeout: Duration, unreachable_for: Duration) -> Self {
        Self {
            target: Target::Http(upstream),
            response_timeout,
            unreachable_for,
            health: Arc::default(),
            listeners: listener::Listeners::default(),
        }
    }

    /// A bridge to stdio upstream processes.
    pub fn stdio(pool: stdio::Pool) -> Self {
        Self {
            target: Target::Stdio(Arc::new(pool)),
            response_timeout: Duration::ZERO,
            unreachable_for: Duration::ZERO,
            health: Arc::default(),
            listeners: listener::Listeners::default(),
        }
    }

    /// A bridge to one stdio upstream process per session.
    pub fn stdio_per_session(owners: owned::Owners) -> Self {
        Self {
            target: Target::PerSession(Arc::new(owners)),
            response_timeout: Duration::ZERO,
            unreachable_for: Duration::ZERO,
            health: Arc::default(),
            listeners: listener::Listeners::default(),
        }
    }

    /// Makes sure the upstream session's own stream is relayed (see [`listener`]).
    fn listen(&self, ctx: &RunContext<'_>, session: &SessionId, upstream: &UpstreamSession) {
        self.listeners
            .ensure(session, upstream, || listener::ListenerContext {
                upstream: self.upstream().clone(),
                claims: ctx.claims.clone(),
                answers: ctx.answers.clone(),
                sessions: ctx.sessions.clone(),
                publisher: ctx.publisher.clone(),
                timeout: self.response_timeout,
            });
    }

    /// The HTTP upstream (every method but [`Self::forward_stdio`] runs for one).
    fn upstream(&self) -> &Upstream {
        match &self.target {
            Target::Http(u) => u,
            Target::Stdio(_) | Target::PerSession(_) => {
                unreachable!("stdio requests do not reach the HTTP path")
            }
        }
    }
}

impl Handler for Bridge {
    fn run<'a>(
        &'a self,
        ctx: RunContext<'a>,
        request: &'a Request,
    ) -> impl Future<Output = Outcome> + Send + 'a {
        self.run_one(ctx, request)
    }

    fn report_to(&self, health: &Arc<Health>) {
        let _ = self.health.set(health.clone());
    }

    fn started(&self, shared: &Shared) {
        if let Target::Http(upstream) = &self.target {
            self.listeners
                .watch_expiries(&shared.service, || listener::ListenerContext {
                    upstream: upstream.clone(),
                    claims: shared.claims.clone(),
                    answers: shared.answers.clone(),
                    sessions: shared.sessions.clone(),
                    publisher: shared.publisher.clone(),
                    timeout: self.response_timeout,
                });
        }
    }
}

/// Why a run ends without going on.
pub(crate) enum Stop {
    /// Answer the client with this error.
    Answer(Value),
    /// Hand the request back.
    HandBack(String),
}

impl Bridge {
    async fn run_one(&self, mut ctx: RunContext<'_>, request: &Request) -> Outcome {
        let deadline = ctx.deadline;
        let hard_stop = ctx.hard_stop;
        let publisher = ctx.publisher;
        let outcome = tokio::select! {
            o = self.forward(&mut ctx, request) => o,
            _ = tokio::time::sleep_until(deadline) => Err(Stop::Answer(jsonrpc::error(
                Some(&request.id),
                jsonrpc::DEADLINE_EXCEEDED,
                "request exceeded its deadline and was stopped",
            ))),
            _ = hard_stop.cancelled() => Err(Stop::HandBack("worker stopping".into())),
        };
        match outcome {
            Ok(o) => o,
            Err(Stop::Answer(body)) => {
                publish_final(publisher, &request.session, &request.stream, body).await
            }
            Err(Stop::HandBack(why)) => {
                tracing::warn!(%why, "handing the request back");
                Outcome::Unanswered
            }
        }
    }

    async fn forward(&self, ctx: &mut RunContext<'_>, request: &Request) -> Result<Outcome, Stop> {
        match &self.target {
            Target::Stdio(pool) => return self.forward_stdio(pool, ctx, request).await,
            Target::PerSession(owners) => return self.forward_owned(owners, ctx, request).await,
            Target::Http(_) => {}
        }
        if request.is_initialize() {
            return self.initialize(ctx, request).await;
        }
        let mut session = match ctx.record.upstream.clone() {
            Some(s) => s,
            None => self.reopen(ctx, &request.session, None).await?,
        };
        let mut reopened = false;
        loop {
            self.listen(ctx, &request.session, &session);
            match self
                .post(&request.raw, headers(&session), ctx.deadline)
                .await
            {
                Ok(reply) => return self.relay(ctx, request, reply, &session).await,
                Err(UpstreamError::SessionNotFound) if !reopened => {
                    tracing::info!("upstream session not found; initializing a new one");
                    reopened = true;
                    session = self.reopen(ctx, &request.session, Some(&session)).await?;
                }
                Err(e) => return Err(self.failure(request, e)),
            }
        }
    }

    /// The client's own `initialize`: forwarded as it came; what the
    /// upstream negotiated is recorded before the client sees the answer.
    async fn initialize(&self, ctx: &RunContext<'_>, request: &Request) -> Result<Outcome, Stop> {
        let none = SessionHeaders {
            id: None,
            version: None,
        };
        let (session, answer) = match self.post(&request.raw, none, ctx.deadline).await {
            Ok(Reply::Json { session, message }) => (session, message),
            Ok(Reply::Stream {
                session,
                mut messages,
            }) => {
                let answer = first_response(&mut messages, &request.id).await?;
                (session, answer)
            }
            Ok(Reply::Accepted) => return Err(self.failure(request, accepted_request())),
            Err(e) => return Err(self.failure(request, e)),
        };
        let version = match negotiated(&answer) {
            // An error: the client sees it as the upstream sent it.
            None => return Ok(self.answer(ctx, request, answer).await),
            Some(Ok(version)) => version,
            Some(Err(unknown)) => {
                let headers = SessionHeaders {
                    id: session.as_deref(),
                    version: None,
                };
                self.upstream().end(headers).await;
                return Err(Stop::Answer(jsonrpc::error(
                    Some(&request.id),
                    jsonrpc::INTERNAL_ERROR,
                    format!("the upstream negotiated {unknown}"),
                )));
            }
        };
        let upstream = UpstreamSession {
            id: session,
            protocol_version: version,
        };
        self.initialized(&upstream, ctx).await;
        let js = ctx.publisher.jetstream();
        let recorded = update_record(js, ctx.sessions, request.session.as_str(), |r| {
            r.state = State::Active;
            r.protocol_version = upstream.protocol_version;
            r.upstream = Some(upstream.clone());
            true
        });
        if let Err(e) = recorded.await {
            self.upstream().end(headers(&upstream)).await;
            return Err(Stop::HandBack(format!(
                "could not record the upstream session: {e}"
            )));
        }
        self.listen(ctx, &request.session, &upstream);
        Ok(self.answer(ctx, request, answer).await)
    }

    /// Opens a new upstream session with the client's recorded `initialize`
    /// params and records it, unless another worker replaced `stale` first
    /// (then that one is used and the new one ended).
    async fn reopen(
        &self,
        ctx: &RunContext<'_>,
        session: &SessionId,
        stale: Option<&UpstreamSession>,
    ) -> Result<UpstreamSession, Stop> {
        let init = json!({
            "jsonrpc": "2.0",
            "id": format!("jetway-init-{:016x}", rand::random::<u64>()),
            "method": method::INITIALIZE,
            "params": ctx.record.client,
        });
        let none = SessionHeaders {
            id: None,
            version: None,
        };
        let reply = self.post(&init, none, ctx.deadline).await;
        let (id, answer) = match reply {
            Ok(Reply::Json { session, message }) => (session, message),
            Ok(Reply::Stream {
                session,
                mut messages,
            }) => (session, first_response(&mut messages, &init["id"]).await?),
            Ok(Reply::Accepted) => return Err(Stop::HandBack(accepted_request().to_string())),
            Err(e) => return Err(Stop::HandBack(format!("re-initializing the upstream: {e}"))),
        };
        let version = match negotiated(&answer) {
            Some(Ok(version)) => version,
            Some(Err(unknown)) => {
                return Err(Stop::HandBack(format!("the upstream negotiated {unknown}")));
            }
            None => {
                return Err(Stop::HandBack(format!(
                    "the upstream refused to initialize: {answer}"
                )));
            }
        };
        let fresh = UpstreamSession {
            id,
            protocol_version: version,
        };
        self.initialized(&fresh, ctx).await;
        let mut current = None;
        let js = ctx.publisher.jetstream();
        let recorded = update_record(js, ctx.sessions, session.as_str(), |r| {
            if r.upstream.as_ref() == stale || r.upstream.is_none() {
                r.upstream = Some(fresh.clone());
                current = None;
                true
            } else {
                current = r.upstream.clone();
                false
            }
        });
        if let Err(e) = recorded.await {
            self.upstream().end(headers(&fresh)).await;
            return Err(Stop::HandBack(format!(
                "could not record the upstream session: {e}"
            )));
        }
        match current {
            Some(theirs) => {
                self.upstream().end(headers(&fresh)).await;
                Ok(theirs)
            }
            None => Ok(fresh),
        }
    }

    /// Sends `notifications/initialized` to a new upstream session.
    async fn initialized(&self, session: &UpstreamSession, ctx: &RunContext<'_>) {
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        if let Err(e) = self.post(&note, headers(session), ctx.deadline).await {
            tracing::warn!(error = %e, "upstream refused notifications/initialized");
        }
    }

    /// POSTs, retrying an unreachable upstream for a bounded time.
    async fn post(
        &self,
        message: &Value,
        session: SessionHeaders<'_>,
        deadline: Instant,
    ) -> Result<Reply, UpstreamError> {
        let mut backoff = Backoff::lasting(self.unreachable_for);
        loop {
            let started = std::time::Instant::now();
            let posted = self
                .upstream()
                .post(message, session, self.response_timeout)
                .await;
            crate::metrics::upstream_call(started, &posted);
            if let Some(health) = self.health.get() {
                health
                    .set_upstream_reachable(!matches!(posted, Err(UpstreamError::Unreachable(_))));
            }
            match posted {
                Err(UpstreamError::Unreachable(e)) => {
                    if Instant::now() >= deadline || !backoff.wait().await {
                        return Err(UpstreamError::Unreachable(e));
                    }
                    tracing::debug!(error = %e, url = %self.upstream().url(), "upstream unreachable; retrying");
                }
                other => return other,
            }
        }
    }

    /// What the client gets for an upstream failure.
    fn failure(&self, request: &Request, e: UpstreamError) -> Stop {
        match e {
            UpstreamError::Unreachable(_) => Stop::Answer(jsonrpc::error(
                Some(&request.id),
                jsonrpc::SERVICE_UNAVAILABLE,
                format!("{e} ({})", self.upstream().url()),
            )),
            UpstreamError::Status {
                body: Some(body), ..
            } if body.get("error").is_some() => {
                let mut body = body;
                body["id"] = request.id.clone();
                Stop::Answer(body)
            }
            UpstreamError::Status { status, .. } => Stop::Answer(jsonrpc::error(
                Some(&request.id),
                jsonrpc::INTERNAL_ERROR,
                format!("upstream answered HTTP {status}"),
            )),
            UpstreamError::SessionNotFound => Stop::Answer(jsonrpc::error(
                Some(&request.id),
                jsonrpc::INTERNAL_ERROR,
                "the upstream lost its session again right after re-initializing",
            )),
            UpstreamError::Body(why) => Stop::HandBack(why),
        }
    }

    /// Relays what the upstream sends for the request until its answer.
    async fn relay(
        &self,
        ctx: &mut RunContext<'_>,
        request: &Request,
        reply: Reply,
        session: &UpstreamSession,
    ) -> Result<Outcome, Stop> {
        let messages = match reply {
            Reply::Json { message, .. } => return Ok(self.answer(ctx, request, message).await),
            Reply::Accepted => return Err(self.failure(request, accepted_request())),
            Reply::Stream { messages, .. } => messages,
        };
        let mut conversation = HttpConversation {
            bridge: self,
            session,
            messages,
            id: request.id.clone(),
            deadline: ctx.deadline,
        };
        let ended = converse(&mut Io::of(ctx), request, &mut conversation).await?;
        Ok(self.ended(ctx, request, ended).await)
    }

    /// Publishes how a conversation ended.
    async fn ended(&self, ctx: &RunContext<'_>, request: &Request, ended: Ended) -> Outcome {
        match ended {
            Ended::Answer(answer) => self.answer(ctx, request, answer).await,
            Ended::Done(outcome) => outcome,
        }
    }

    /// A request on a stdio upstream: one process, one request at a time.
    async fn forward_stdio(
        &self,
        pool: &stdio::Pool,
        ctx: &mut RunContext<'_>,
        request: &Request,
    ) -> Result<Outcome, Stop> {
        let mut lease = pool.lease().await.map_err(|e| {
            Stop::Answer(jsonrpc::error(
                Some(&request.id),
                jsonrpc::SERVICE_UNAVAILABLE,
                format!("upstream unavailable: {e}"),
            ))
        })?;
        if let Some(health) = self.health.get() {
            health.set_upstream_reachable(true);
        }
        let Some(process) = lease.slot.as_mut() else {
            return Err(Stop::HandBack("no upstream process".into()));
        };
        if request.is_initialize() {
            // Every process was initialized once, by the bridge: the client
            // gets that answer, and the version it negotiated is recorded.
            let answer = process.initialized.clone();
            return self.initialized_stdio(ctx, request, answer).await;
        }
        let wire = pool.wire_id();
        let mut msg = request.raw.clone();
        msg["id"] = wire.clone();
        let mut conversation = StdioConversation {
            slot: &mut lease.slot,
            id: wire,
        };
        let started = std::time::Instant::now();
        let ended = match conversation.send(&msg).await {
            Ok(()) => converse(&mut Io::of(ctx), request, &mut conversation).await,
            Err(stop) => Err(stop),
        };
        crate::metrics::stdio_call("pool", started, ended.is_ok());
        Ok(self.ended(ctx, request, ended?).await)
    }

    /// Records what a stdio process's `initialize` answer negotiated and
    /// gives the client that answer.
    async fn initialized_stdio(
        &self,
        ctx: &RunContext<'_>,
        request: &Request,
        answer: Value,
    ) -> Result<Outcome, Stop> {
        let version = match negotiated(&answer) {
            Some(Ok(version)) => version,
            Some(Err(unknown)) => {
                return Err(Stop::Answer(jsonrpc::error(
                    Some(&request.id),
                    jsonrpc::INTERNAL_ERROR,
                    format!("the upstream negotiated {unknown}"),
                )));
            }
            None => ProtocolVersion::LATEST,
        };
        let js = ctx.publisher.jetstream();
        let recorded = update_record(js, ctx.sessions, request.session.as_str(), |r| {
            r.state = State::Active;
            r.protocol_version = version;
            true
        });
        if let Err(e) = recorded.await {
            return Err(Stop::HandBack(format!("could not record the session: {e}")));
        }
        Ok(self.answer(ctx, request, answer).await)
    }

    /// A request of a session with its own stdio process ([`owned`]): run
    /// where the process is, starting it here if nobody runs it.
    async fn forward_owned(
        &self,
        owners: &Arc<owned::Owners>,
        ctx: &mut RunContext<'_>,
        request: &Request,
    ) -> Result<Outcome, Stop> {
        let env = owned::Env {
            publisher: ctx.publisher.clone(),
            answers: ctx.answers.clone(),
            claims: ctx.claims.clone(),
            sessions: ctx.sessions.clone(),
        };
        let unavailable = |e: &owned::OwnError| {
            if let (owned::OwnError::Process(_), Some(health)) = (e, self.health.get()) {
                health.set_upstream_reachable(false);
            }
            Stop::Answer(jsonrpc::error(
                Some(&request.id),
                jsonrpc::SERVICE_UNAVAILABLE,
                format!("upstream unavailable: {e}"),
            ))
        };
        owners
            .serve(&env)
            .await
            .map_err(|e| Stop::HandBack(e.to_string()))?;
        let params = ctx.record.client.clone();
        let mut again = Backoff::unbounded(Duration::from_millis(50), Duration::from_millis(500));
        for _ in 0..20 {
            let owner = match owners.owner(&env, &request.session, &params).await {
                Ok(o) => o,
                Err(owned::OwnError::Taken) => continue,
                Err(e @ (owned::OwnError::Full(_) | owned::OwnError::Process(_))) => {
                    return Err(unavailable(&e));
                }
                Err(e) => return Err(Stop::HandBack(e.to_string())),
            };
            let process = match owner {
                owned::Owner::Here(p) => p,
                owned::Owner::There { probe, revision } => {
                    let forwarded = owned::forward(
                        &env,
                        &probe,
                        request,
                        ctx.delivery,
                        ctx.stored_at,
                        ctx.deadline,
                    );
                    match forwarded.await {
                        // Between the lease and the process (it is starting,
                        // or just ended): look again.
                        owned::Remote::Returned(owned::Returned::NotOwner) => {
                            again.sleep().await;
                            continue;
                        }
                        owned::Remote::Returned(r) => return self.returned(ctx, request, r).await,
                        owned::Remote::Gone => {
                            let taken = owners
                                .take_over(&env, &request.session, revision, &params)
                                .await;
                            match taken {
                                Ok(p) => p,
                                Err(owned::OwnError::Taken) => continue,
                                Err(
                                    e @ (owned::OwnError::Full(_) | owned::OwnError::Process(_)),
                                ) => {
                                    return Err(unavailable(&e));
                                }
                                Err(e) => return Err(Stop::HandBack(e.to_string())),
                            }
                        }
                    }
                }
            };
            if let Some(health) = self.health.get() {
                health.set_upstream_reachable(true);
            }
            if request.is_initialize() {
                let answer = process.initialized.clone();
                return self.initialized_stdio(ctx, request, answer).await;
            }
            let ended = owned::run_here(&process, &mut Io::of(ctx), request).await?;
            return Ok(self.ended(ctx, request, ended).await);
        }
        Err(Stop::HandBack(
            "the session's upstream process kept changing owner".into(),
        ))
    }

    /// What the owner of a session's process replied for a forwarded request.
    async fn returned(
        &self,
        ctx: &RunContext<'_>,
        request: &Request,
        returned: owned::Returned,
    ) -> Result<Outcome, Stop> {
        match returned {
            owned::Returned::Answer { message } => {
                if request.is_initialize() {
                    return self.initialized_stdio(ctx, request, message).await;
                }
                Ok(self.answer(ctx, request, message).await)
            }
            owned::Returned::Done { cancelled: true } => Ok(Outcome::Cancelled),
            owned::Returned::Done { cancelled: false } => Ok(Outcome::Unanswered),
            owned::Returned::Error { message } => Err(Stop::Answer(message)),
            owned::Returned::HandBack { why } => Err(Stop::HandBack(why)),
            owned::Returned::NotOwner => Err(Stop::HandBack(
                "the worker named as the process owner does not run it".into(),
            )),
        }
    }

    /// Publishes the upstream's answer as the request's final message,
    /// unless another worker holds the request now.
    async fn answer(&self, ctx: &RunContext<'_>, request: &Request, mut answer: Value) -> Outcome {
        if !ctx.fence.still_ours().await.unwrap_or(false) {
            return Outcome::Stopped;
        }
        answer["id"] = request.id.clone();
        publish_final(ctx.publisher, &request.session, &request.stream, answer).await
    }
}

/// A request's SSE stream from an HTTP upstream; messages for it are POSTed.
struct HttpConversation<'a> {
    bridge: &'a Bridge,
    session: &'a UpstreamSession,
    messages: upstream::Messages,
    id: Value,
    deadline: Instant,
}

impl Conversation for HttpConversation<'_> {
    fn id(&self) -> &Value {
        &self.id
    }

    async fn next(&mut self) -> Result<Value, Stop> {
        match self.messages.next().await {
            Some(Ok(m)) => Ok(m),
            Some(Err(e)) => Err(Stop::HandBack(e.to_string())),
            None => Err(Stop::HandBack(
                "the upstream's stream ended before its answer".into(),
            )),
        }
    }

    async fn send(&mut self, msg: &Value) -> Result<(), Stop> {
        // Its answer (202) matters not; a failure is only logged: the
        // request's own stream tells how it ends.
        if let Err(e) = self
            .bridge
            .post(msg, headers(self.session), self.deadline)
            .await
        {
            tracing::warn!(error = %e, "could not pass a client message upstream");
        }
        Ok(())
    }
}

/// A request on a stdio process, which it has to itself.
struct StdioConversation<'a> {
    slot: &'a mut Option<stdio::Process>,
    id: Value,
}

impl Conversation for StdioConversation<'_> {
    fn id(&self) -> &Value {
        &self.id
    }

    async fn next(&mut self) -> Result<Value, Stop> {
        let process = self
            .slot
            .as_mut()
            .ok_or_else(|| Stop::HandBack("no upstream process".into()))?;
        match process.next().await {
            Ok(m) => Ok(m),
            Err(e) => {
                // Dead or broken: a new one starts for the next request.
                *self.slot = None;
                Err(Stop::HandBack(e.to_string()))
            }
        }
    }

    async fn send(&mut self, msg: &Value) -> Result<(), Stop> {
        let process = self
            .slot
            .as_mut()
            .ok_or_else(|| Stop::HandBack("no upstream process".into()))?;
        if let Err(e) = process.send(msg).await {
            *self.slot = None;
            return Err(Stop::HandBack(e.to_string()));
        }
        Ok(())
    }
}

/// The version an `initialize` answer negotiated: `None` for an error
/// answer, an error for a version Jetway does not speak.
fn negotiated(answer: &Value) -> Option<Result<ProtocolVersion, UnknownVersion>> {
    let version = answer.pointer("/result/protocolVersion")?.as_str()?;
    Some(version.parse())
}

/// The upstream session headers of `s`.
fn headers(s: &UpstreamSession) -> SessionHeaders<'_> {
    SessionHeaders {
        id: s.id.as_deref(),
        version: Some(s.protocol_version),
    }
}

/// Reads an SSE stream up to the response to `id`.
async fn first_response(messages: &mut upstream::Messages, id: &Value) -> Result<Value, Stop> {
    while let Some(m) = messages.next().await {
        let m = m.map_err(|e| Stop::HandBack(e.to_string()))?;
        if is_answer_to(&m, id) {
            return Ok(m);
        }
    }
    Err(Stop::HandBack(
        "the upstream's stream ended before its answer".into(),
    ))
}

fn accepted_request() -> UpstreamError {
    UpstreamError::Body("the upstream answered a request with 202 and no response".into())
}
