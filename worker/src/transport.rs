//! The rmcp transport of one request: what lets an unchanged rmcp server run
//! one service loop per request taken from the bus.
//!
//! - `receive()` yields the request, then only what the client sends to this
//!   request (answers to its server→client requests, its cancellation), and
//!   ends once the request's outcome is settled.
//! - `send()` routes what the handler emits: progress and logs to the
//!   request's POST stream, other notifications to the session's GET stream,
//!   server→client requests to the POST stream with session-unique ids, and
//!   the final response, deduplicated, to the POST stream.
//!
//! rmcp runs each `send()` future as its own task, so this transport hands out
//! tickets in call order and publishes strictly in ticket order: a client sees
//! notifications in the order the handler sent them, and the response last.
//!
//! The request's [`Outcome`] is one `watch` value: the transport settles it
//! (answered, cancelled, or unanswered when the final publish failed), the
//! loop's `receive()` ends on it, and the request's owner reads it.

use crate::{
    claim::ClaimFence,
    publish::{Out, OutMessage, Publisher},
};
use async_nats::jetstream::{Context, kv};
use jetway_shared::{
    jsonrpc::method,
    protocol::ProtocolVersion,
    session::{LogLevel, State, update_record},
    subjects::{SessionId, StreamKey},
};
use rmcp::{
    RoleServer,
    model::{Extensions, JsonRpcMessage, NumberOrString, RequestId},
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::Transport,
};
use serde_json::Value;
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};
use tokio::sync::{mpsc, watch};

/// Client answers kept for server→client requests not sent yet (a re-run
/// finds its earlier run's answers on the stream before it asks again).
const EARLY_ANSWERS: usize = 64;

/// Why a message could not be handed to the bus.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("publish failed: {0}")]
    Publish(#[from] jetway_shared::publish::PublishFailure),
    #[error("message could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing final yet.
    Running,
    /// The final response or error is on the stream.
    Answered,
    /// The client cancelled; a `cancelled` marker is on the stream instead.
    Cancelled,
    /// The final message could not be published, or the loop ended without
    /// one: the request must be handed back.
    Unanswered,
    /// The runtime stopped the handler (deadline, shutdown): whatever the
    /// handler still sends as its answer is dropped.
    Stopped,
}

/// The owner's side of a request's outcome.
pub struct OutcomeHandle {
    tx: Arc<watch::Sender<Outcome>>,
}

impl OutcomeHandle {
    /// Where the request stands now.
    pub fn get(&self) -> Outcome {
        *self.tx.borrow()
    }

    /// Stops the handler's answer from being published, unless one is out
    /// already; returns the outcome after that.
    pub fn stop(&self) -> Outcome {
        settle(&self.tx, Outcome::Stopped);
        self.get()
    }
}

/// Where a request came from and where its answers go.
pub struct RequestRoute {
    pub session: SessionId,
    pub stream: StreamKey,
    pub request_id: Value,
    /// `logging/setLevel` of the session; `None` sends every level.
    pub log_level: Option<LogLevel>,
    pub delivery: u64,
}

/// Records what an `initialize` negotiated in the session record, just
/// before its answer is published, so the client's next request finds the
/// session active on any worker.
#[derive(Clone)]
pub struct InitializeRecorder {
    pub js: Context,
    pub sessions: kv::Store,
}

impl InitializeRecorder {
    async fn record(&self, session: &SessionId, answer: &Value) {
        let Some(version) = answer
            .pointer("/result/protocolVersion")
            .and_then(Value::as_str)
            .and_then(ProtocolVersion::parse)
        else {
            return;
        };
        let recorded = update_record(&self.js, &self.sessions, session.as_str(), |r| {
            r.state = State::Active;
            r.protocol_version = version;
            true
        });
        if let Err(e) = recorded.await {
            tracing::warn!(error = %e, "could not record the negotiated protocol version");
        }
    }
}

/// The transport of one request. Build it with [`RequestTransport::new`].
pub struct RequestTransport {
    route: Arc<RequestRoute>,
    publisher: Publisher,
    first: Option<RxJsonRpcMessage<RoleServer>>,
    extensions: Extensions,
    /// Client messages for this loop that were read before it could take them.
    ready: VecDeque<Value>,
    inbound: mpsc::Receiver<Value>,
    outcome: Arc<watch::Sender<Outcome>>,
    settled: watch::Receiver<Outcome>,
    initialize: Option<InitializeRecorder>,
    fence: ClaimFence,
    /// Outbound request id (as rmcp numbered it) by the id the client sees.
    pending: HashMap<String, RequestId>,
    /// Client answers to ids of this request that are not pending (yet).
    early: HashMap<String, Value>,
    next_ticket: u64,
    turn: Arc<watch::Sender<u64>>,
}

impl RequestTransport {
    /// `request` is the client's JSON-RPC request; `history` what the
    /// client sent the session after it (already stored), `inbound` what
    /// it sends while the request runs.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        route: RequestRoute,
        request: RxJsonRpcMessage<RoleServer>,
        extensions: Extensions,
        history: Vec<Value>,
        inbound: mpsc::Receiver<Value>,
        publisher: Publisher,
        initialize: Option<InitializeRecorder>,
        fence: ClaimFence,
    ) -> (Self, OutcomeHandle) {
        let (outcome, settled) = watch::channel(Outcome::Running);
        let outcome = Arc::new(outcome);
        let handle = OutcomeHandle {
            tx: outcome.clone(),
        };
        let t = Self {
            route: Arc::new(route),
            publisher,
            first: Some(request),
            extensions,
            ready: history.into(),
            inbound,
            outcome,
            settled,
            initialize,
            fence,
            pending: HashMap::new(),
            early: HashMap::new(),
            next_ticket: 0,
            turn: Arc::new(watch::channel(0).0),
        };
        (t, handle)
    }

    /// Turns a client message of the session into what this loop must see, if anything.
    fn route_inbound(&mut self, msg: Value) -> Option<RxJsonRpcMessage<RoleServer>> {
        let obj = msg.as_object()?;
        if obj.get("method").and_then(Value::as_str) == Some(method::CANCELLED) {
            let target = obj.get("params")?.get("requestId")?;
            return (target == &self.route.request_id)
                .then(|| serde_json::from_value(msg.clone()).ok())
                .flatten();
        }
        if obj.contains_key("method") {
            return None;
        }
        // A response: is it to one of this loop's requests?
        let id = obj.get("id")?.as_str()?.to_owned();
        match self.pending.remove(&id) {
            Some(original) => answer_with(msg, original),
            None => {
                if id.starts_with(&public_prefix(&self.route.stream))
                    && self.early.len() < EARLY_ANSWERS
                {
                    self.early.entry(id).or_insert(msg);
                }
                None
            }
        }
    }

    /// Decides where an outbound message goes, synchronously and in call order.
    fn plan(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> Result<Option<Planned>, TransportError> {
        let mut value = serde_json::to_value(&item)?;
        let route = self.route.clone();
        let to_request = |value, kind| Planned {
            value,
            stream: route.stream.clone(),
            kind,
        };
        let is_final = value.get("method").is_none() && value.get("id") == Some(&route.request_id);
        if is_final {
            return Ok(Some(to_request(value, PlanKind::Final)));
        }
        let method_name = value
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_owned);
        match method_name.as_deref() {
            Some(m) if value.get("id").is_some() => {
                // A server→client request: give it an id unique in the session.
                let original: RequestId = serde_json::from_value(value["id"].clone())?;
                let public = format!("{}{}", public_prefix(&route.stream), value["id"]);
                if let Some(answer) = self.early.remove(&public) {
                    self.ready.push_back(answer);
                }
                self.pending.insert(public.clone(), original);
                value["id"] = Value::from(public);
                tracing::debug!(method = m, "server request to client");
                Ok(Some(to_request(value, PlanKind::Message)))
            }
            Some(method::MESSAGE) => {
                let level = value
                    .pointer("/params/level")
                    .and_then(Value::as_str)
                    .and_then(|l| l.parse::<LogLevel>().ok())
                    .unwrap_or(LogLevel::Info);
                if !level.passes(route.log_level) {
                    return Ok(None);
                }
                Ok(Some(to_request(value, PlanKind::Message)))
            }
            Some(method::PROGRESS) => Ok(Some(to_request(value, PlanKind::Message))),
            Some(_) => Ok(Some(Planned {
                value,
                stream: StreamKey::get(),
                kind: PlanKind::Message,
            })),
            // A response to something other than this request cannot happen
            // in a one-request loop; drop it rather than confuse the client.
            None => Ok(None),
        }
    }
}

/// Server→client request ids of a request start with this.
fn public_prefix(stream: &StreamKey) -> String {
    format!("{stream}:")
}

/// The client's answer, with the id rmcp gave its request.
fn answer_with(mut msg: Value, original: RequestId) -> Option<RxJsonRpcMessage<RoleServer>> {
    msg["id"] = match original {
        NumberOrString::Number(n) => Value::from(n),
        NumberOrString::String(s) => Value::from(s.as_ref()),
    };
    serde_json::from_value(msg).ok()
}

struct Planned {
    value: Value,
    stream: StreamKey,
    kind: PlanKind,
}

#[derive(PartialEq)]
enum PlanKind {
    Message,
    Final,
}

/// Advances the publish turn when dropped, once it is this ticket's turn.
struct TurnGuard {
    turn: Arc<watch::Sender<u64>>,
    ticket: u64,
}

impl Drop for TurnGuard {
    fn drop(&mut self) {
        let ticket = self.ticket;
        self.turn.send_if_modified(|t| {
            if *t == ticket {
                *t += 1;
                true
            } else {
                false
            }
        });
    }
}

/// Settles the outcome once: the first final word wins.
fn settle(outcome: &watch::Sender<Outcome>, to: Outcome) {
    outcome.send_if_modified(|o| {
        if *o == Outcome::Running {
            *o = to;
            true
        } else {
            false
        }
    });
}

impl Transport<RoleServer> for RequestTransport {
    type Error = TransportError;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let planned = self.plan(item);
        let turn = self.turn.clone();
        let publisher = self.publisher.clone();
        let route = self.route.clone();
        let outcome = self.outcome.clone();
        let initialize = self.initialize.clone();
        let fence = self.fence.clone();
        async move {
            let mut rx = turn.subscribe();
            let _ = rx.wait_for(|t| *t == ticket).await;
            let _guard = TurnGuard { turn, ticket };
            let Some(planned) = planned? else {
                return Ok(());
            };
            let final_ = planned.kind == PlanKind::Final;
            if final_ {
                if *outcome.borrow() != Outcome::Running {
                    // Cancelled or past its deadline: the answer is settled.
                    return Ok(());
                }
                if !fence.still_ours().await.unwrap_or(false) {
                    // Another worker runs it now (or nobody can tell):
                    // its answer is the one.
                    settle(&outcome, Outcome::Stopped);
                    return Ok(());
                }
                if let Some(recorder) = &initialize {
                    recorder.record(&route.session, &planned.value).await;
                }
            }
            let kind = if final_ {
                Out::Final
            } else {
                Out::Message {
                    tag: jetway_shared::msg_id::run_tag(&route.stream, route.delivery, ticket),
                }
            };
            let msg = OutMessage {
                session: &route.session,
                stream: &planned.stream,
                payload: serde_json::to_vec(&planned.value)?,
                kind,
            };
            let published = publisher.publish(msg).await;
            if final_ {
                // Published or not, this loop is over: an unanswered request
                // is handed back for redelivery rather than held forever.
                let to = match published {
                    Ok(()) => Outcome::Answered,
                    Err(_) => Outcome::Unanswered,
                };
                settle(&outcome, to);
            }
            Ok(published?)
        }
    }

    #[allow(clippy::manual_async_fn)] // the trait requires the future to be `Send`
    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleServer>>> + Send {
        async move {
            if let Some(mut first) = self.first.take() {
                if let JsonRpcMessage::Request(r) = &mut first {
                    use rmcp::model::GetExtensions;
                    r.request
                        .extensions_mut()
                        .extend(std::mem::take(&mut self.extensions));
                }
                return Some(first);
            }
            loop {
                if *self.settled.borrow() != Outcome::Running {
                    return None;
                }
                let msg = match self.ready.pop_front() {
                    Some(m) => m,
                    None => tokio::select! {
                        _ = self.settled.changed() => continue,
                        m = self.inbound.recv() => m?,
                    },
                };
                let Some(m) = self.route_inbound(msg) else {
                    continue;
                };
                if matches!(&m, JsonRpcMessage::Notification(_)) {
                    cancel(&self.publisher, &self.route, &self.outcome).await;
                }
                return Some(m);
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// The client cancelled this request: rmcp drops the handler's response, so
/// put a `cancelled` marker on the POST stream for the gateway instead.
pub async fn cancel(publisher: &Publisher, route: &RequestRoute, outcome: &watch::Sender<Outcome>) {
    match publisher.cancelled(&route.session, &route.stream).await {
        Ok(()) => settle(outcome, Outcome::Cancelled),
        Err(e) => {
            tracing::warn!(error = %e, "could not mark a cancelled request");
            settle(outcome, Outcome::Unanswered);
        }
    }
}
