//! The rmcp transport of one request: what lets an unchanged rmcp server run
//! one service loop per request taken from the bus.
//!
//! - `receive()` yields the request, then only what the client sends to this
//!   request (answers to its server→client requests, its cancellation), and
//!   ends once the final response is on the stream.
//! - `send()` routes what the handler emits: progress and logs to the
//!   request's POST stream, other notifications to the session's GET stream,
//!   server→client requests to the POST stream with session-unique ids, and
//!   the final response, deduplicated, to the POST stream.
//!
//! rmcp runs each `send()` future as its own task, so this transport hands out
//! tickets in call order and publishes strictly in ticket order: a client sees
//! notifications in the order the handler sent them, and the response last.

use crate::publish::{OutMessage, Publisher};
use futures::StreamExt;
use jetway_shared::{
    jsonrpc::method,
    session::log_passes,
    subjects::{SessionId, StreamKey},
};
use rmcp::{
    RoleServer,
    model::{Extensions, NumberOrString, RequestId},
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::Transport,
};
use serde_json::Value;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};
use tokio::sync::{mpsc, watch};

/// Why a message could not be handed to the bus.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("publish failed: {0}")]
    Publish(String),
    #[error("message could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Outcome of a request's service loop, read by the consumer once it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The final response or error is on the stream.
    Answered,
    /// The client cancelled; a closing marker is on the stream instead.
    Cancelled,
    /// Nothing final was published (the loop ended early or a publish failed).
    Unanswered,
}

/// Where a request came from and where its answers go.
pub struct RequestRoute {
    pub session: SessionId,
    pub stream: StreamKey,
    pub request_id: Value,
    pub log_level: Option<String>,
    pub delivery: u64,
}

/// Runs with the final message just before it is published.
pub type FinalHook = Box<dyn Fn(&Value) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// Shared between the transport and the consumer task that owns the request.
pub struct Shared {
    pub outcome: Mutex<Outcome>,
    /// Called with the final result just before it is published (used to
    /// record what `initialize` negotiated).
    pub on_final: Option<FinalHook>,
}

/// The transport of one request. Build it with [`RequestTransport::new`].
pub struct RequestTransport {
    route: Arc<RequestRoute>,
    publisher: Publisher,
    first: Option<RxJsonRpcMessage<RoleServer>>,
    extensions: Extensions,
    inbound: futures::stream::BoxStream<'static, Value>,
    done: watch::Receiver<bool>,
    done_tx: Arc<watch::Sender<bool>>,
    shared: Arc<Shared>,
    /// Outbound request id (as rmcp numbered it) by the id the client sees.
    pending: Arc<Mutex<HashMap<String, RequestId>>>,
    next_ticket: u64,
    turn: Arc<watch::Sender<u64>>,
    cancel_rx: mpsc::Receiver<()>,
}

impl RequestTransport {
    /// `request` is the client's JSON-RPC request; `inbound` yields every
    /// client notification and response of the session while the request runs.
    pub fn new(
        route: RequestRoute,
        request: RxJsonRpcMessage<RoleServer>,
        extensions: Extensions,
        inbound: futures::stream::BoxStream<'static, Value>,
        publisher: Publisher,
        shared: Arc<Shared>,
    ) -> (Self, mpsc::Sender<()>) {
        let (done_tx, done) = watch::channel(false);
        let (cancel_tx, cancel_rx) = mpsc::channel(1);
        let t = Self {
            route: Arc::new(route),
            publisher,
            first: Some(request),
            extensions,
            inbound,
            done,
            done_tx: Arc::new(done_tx),
            shared,
            pending: Arc::default(),
            next_ticket: 0,
            turn: Arc::new(watch::channel(0).0),
            cancel_rx,
        };
        (t, cancel_tx)
    }

    /// Turns a client message of the session into what this loop must see, if anything.
    fn route_inbound(&self, msg: Value) -> Option<RxJsonRpcMessage<RoleServer>> {
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
        let id = obj.get("id")?.as_str()?;
        let original = self.pending.lock().ok()?.remove(id)?;
        let mut msg = msg.clone();
        msg["id"] = match original {
            NumberOrString::Number(n) => Value::from(n),
            NumberOrString::String(s) => Value::from(s.as_ref()),
        };
        serde_json::from_value(msg).ok()
    }

    /// Decides where an outbound message goes, synchronously and in call order.
    fn plan(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> Result<Option<Planned>, TransportError> {
        let mut value = serde_json::to_value(&item)?;
        let route = &self.route;
        let is_final = value.get("method").is_none() && value.get("id") == Some(&route.request_id);
        if is_final {
            return Ok(Some(Planned {
                value,
                stream: route.stream.clone(),
                kind: PlanKind::Final,
            }));
        }
        let method_name = value
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_owned);
        match method_name.as_deref() {
            Some(m) if value.get("id").is_some() => {
                // A server→client request: give it an id unique in the session.
                let original: RequestId = serde_json::from_value(value["id"].clone())?;
                let public = format!("{}:{}", route.stream, value["id"]);
                if let Ok(mut p) = self.pending.lock() {
                    p.insert(public.clone(), original);
                }
                value["id"] = Value::from(public);
                tracing::debug!(method = m, "server request to client");
                Ok(Some(Planned {
                    value,
                    stream: route.stream.clone(),
                    kind: PlanKind::Message,
                }))
            }
            Some(method::MESSAGE) => {
                let level = value
                    .pointer("/params/level")
                    .and_then(Value::as_str)
                    .unwrap_or("info");
                if !log_passes(level, route.log_level.as_deref()) {
                    return Ok(None);
                }
                Ok(Some(Planned {
                    value,
                    stream: route.stream.clone(),
                    kind: PlanKind::Message,
                }))
            }
            Some(method::PROGRESS) => Ok(Some(Planned {
                value,
                stream: route.stream.clone(),
                kind: PlanKind::Message,
            })),
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
        let shared = self.shared.clone();
        let done = self.done_tx.clone();
        async move {
            let mut rx = turn.subscribe();
            let _ = rx.wait_for(|t| *t == ticket).await;
            let _guard = TurnGuard { turn, ticket };
            let Some(planned) = planned? else {
                return Ok(());
            };
            let final_ = planned.kind == PlanKind::Final;
            if final_ && let Some(hook) = &shared.on_final {
                hook(&planned.value).await;
            }
            let msg = OutMessage {
                session: &route.session,
                stream: &planned.stream,
                payload: serde_json::to_vec(&planned.value)?,
                is_final: final_,
                dedup: if final_ {
                    None
                } else {
                    Some(format!("{}.{}.{}", route.stream, route.delivery, ticket))
                },
            };
            let published = publisher
                .publish(msg)
                .await
                .map_err(|e| TransportError::Publish(e.to_string()));
            if final_ {
                if published.is_ok()
                    && let Ok(mut o) = shared.outcome.lock()
                {
                    *o = Outcome::Answered;
                }
                // Published or not, this loop is over: an unanswered request
                // is handed back for redelivery rather than held forever.
                done.send_replace(true);
            }
            published
        }
    }

    #[allow(clippy::manual_async_fn)] // the trait requires the future to be `Send`
    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleServer>>> + Send {
        async move {
            if let Some(mut first) = self.first.take() {
                if let rmcp::model::JsonRpcMessage::Request(r) = &mut first {
                    use rmcp::model::GetExtensions;
                    r.request
                        .extensions_mut()
                        .extend(std::mem::take(&mut self.extensions));
                }
                return Some(first);
            }
            loop {
                tokio::select! {
                    _ = wait_done(&mut self.done) => return None,
                    _ = self.cancel_rx.recv() => return None,
                    msg = self.inbound.next() => {
                        let msg = msg?;
                        if let Some(m) = self.route_inbound(msg) {
                            if matches!(&m, rmcp::model::JsonRpcMessage::Notification(_)) {
                                mark_cancelled(
                                    self.publisher.clone(),
                                    self.route.clone(),
                                    self.shared.clone(),
                                    self.done_tx.clone(),
                                )
                                .await;
                            }
                            return Some(m);
                        }
                    }
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

async fn wait_done(done: &mut watch::Receiver<bool>) {
    let _ = done.wait_for(|d| *d).await.is_ok();
}

/// The client cancelled this request: rmcp drops the handler's response, so
/// put a closing marker on the POST stream for the gateway instead.
async fn mark_cancelled(
    publisher: Publisher,
    route: Arc<RequestRoute>,
    shared: Arc<Shared>,
    done: Arc<watch::Sender<bool>>,
) {
    let msg = OutMessage {
        session: &route.session,
        stream: &route.stream,
        payload: Vec::new(),
        is_final: true,
        dedup: None,
    };
    match publisher.publish(msg).await {
        Ok(()) => {
            if let Ok(mut o) = shared.outcome.lock() {
                *o = Outcome::Cancelled;
            }
            done.send_replace(true);
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not mark a cancelled request");
            done.send_replace(true);
        }
    }
}
