//! The one relay loop of a request and its upstream, whichever the
//! upstream (an HTTP request's SSE stream, a stdio process): what the
//! upstream sends before its answer goes to the client (progress and logs
//! to the request's POST stream, server→client requests there with an id
//! unique in the session, other notifications to the GET stream), and what
//! the client sends for the request (its answers to those requests, its
//! cancellation) goes upstream.

use super::{Stop, ids};
use crate::{
    handler::RunContext,
    incoming::Request,
    publish::{Out, OutMessage, Publisher},
    transport::Outcome,
};
use jetway_shared::{jsonrpc::method, subjects::StreamKey};
use serde_json::Value;
use std::{collections::HashMap, future::Future};

enum Event {
    Upstream(Result<Value, Stop>),
    Client(Option<Value>),
}

/// How a conversation ended, short of a failure.
pub(crate) enum Ended {
    /// The upstream's answer, to publish as the request's final message.
    Answer(Value),
    /// Settled already (cancelled, or it could not say).
    Done(Outcome),
}

/// What a conversation needs of the request's run: where to publish, and
/// what the client sends the request (history, then live).
pub(crate) struct Io<'a> {
    pub publisher: &'a Publisher,
    pub delivery: u64,
    pub history: Vec<Value>,
    pub inbound: &'a mut tokio::sync::mpsc::Receiver<Value>,
}

impl<'a> Io<'a> {
    pub(crate) fn of(ctx: &'a mut RunContext<'_>) -> Self {
        Io {
            publisher: ctx.publisher,
            delivery: ctx.delivery,
            history: std::mem::take(&mut ctx.history),
            inbound: &mut ctx.inbound,
        }
    }
}

/// The one relay loop: what the upstream sends before its answer goes
/// to the client, what the client sends for the request (its answers
/// to the upstream's requests, its cancellation) goes upstream.
pub(crate) async fn converse(
    io: &mut Io<'_>,
    request: &Request,
    upstream: &mut impl Conversation,
) -> Result<Ended, Stop> {
    let mut relay = Relay {
        request,
        pending: HashMap::new(),
        sent: 0,
    };
    let mut history = std::mem::take(&mut io.history).into_iter();
    loop {
        let event = match history.next() {
            Some(m) => Event::Client(Some(m)),
            None => tokio::select! {
                m = upstream.next() => Event::Upstream(m),
                m = io.inbound.recv() => Event::Client(m),
            },
        };
        match event {
            Event::Upstream(Err(stop)) => return Err(stop),
            Event::Upstream(Ok(msg)) => {
                if is_answer_to(&msg, upstream.id()) {
                    return Ok(Ended::Answer(msg));
                }
                relay.on_upstream(io, msg).await?;
            }
            // The client's side ended: the worker is going away.
            Event::Client(None) => return Err(Stop::HandBack("inbound ended".into())),
            Event::Client(Some(msg)) => {
                if let Some(outcome) = relay.on_client(io, upstream, msg).await? {
                    return Ok(Ended::Done(outcome));
                }
            }
        }
    }
}

/// One request's exchange with its upstream.
pub(crate) trait Conversation: Send {
    /// The id the upstream knows the request by.
    fn id(&self) -> &Value;
    /// The next message the upstream sends for the request.
    fn next(&mut self) -> impl Future<Output = Result<Value, Stop>> + Send;
    /// Sends the upstream a message for the request.
    fn send(&mut self, msg: &Value) -> impl Future<Output = Result<(), Stop>> + Send;
}

/// The routing state of one relayed request.
struct Relay<'r> {
    request: &'r Request,
    /// The upstream's id of each server→client request, by the id the client sees.
    pending: HashMap<String, Value>,
    sent: u64,
}

impl Relay<'_> {
    /// A message the upstream sent before its answer.
    async fn on_upstream(&mut self, ctx: &Io<'_>, mut msg: Value) -> Result<(), Stop> {
        let method_name = msg.get("method").and_then(Value::as_str).map(str::to_owned);
        let stream = match method_name.as_deref() {
            None => return Ok(()), // a response to someone else: not ours to pass on
            Some(_) if msg.get("id").is_some() => {
                // A server→client request: an id unique in the session.
                let public = ids::in_request(&self.request.stream, &msg["id"]);
                self.pending.insert(public.clone(), msg["id"].clone());
                msg["id"] = Value::from(public);
                self.request.stream.clone()
            }
            Some(method::PROGRESS | method::MESSAGE) => self.request.stream.clone(),
            Some(_) => StreamKey::get(),
        };
        self.sent += 1;
        let out = OutMessage {
            session: &self.request.session,
            stream: &stream,
            payload: serde_json::to_vec(&msg).unwrap_or_default(),
            kind: Out::Message {
                tag: jetway_shared::msg_id::upstream_tag(
                    &self.request.stream,
                    ctx.delivery,
                    self.sent,
                ),
            },
        };
        ctx.publisher
            .publish(out)
            .await
            .map_err(|e| Stop::HandBack(format!("could not publish: {e}")))
    }

    /// A message the client sent the session while the request runs:
    /// answers to the upstream's requests and this request's cancellation
    /// go upstream. `Some` ends the request.
    async fn on_client(
        &mut self,
        ctx: &Io<'_>,
        upstream: &mut impl Conversation,
        mut msg: Value,
    ) -> Result<Option<Outcome>, Stop> {
        if msg.get("method").and_then(Value::as_str) == Some(method::CANCELLED) {
            if msg.pointer("/params/requestId") != Some(&self.request.id) {
                return Ok(None);
            }
            msg["params"]["requestId"] = upstream.id().clone();
            upstream.send(&msg).await?;
            let marked = ctx
                .publisher
                .cancelled(&self.request.session, &self.request.stream)
                .await;
            return Ok(Some(match marked {
                Ok(()) => Outcome::Cancelled,
                Err(_) => Outcome::Unanswered,
            }));
        }
        if msg.get("method").is_some() {
            return Ok(None);
        }
        let original = msg
            .get("id")
            .and_then(Value::as_str)
            .and_then(|public| self.pending.remove(public));
        if let Some(original) = original {
            msg["id"] = original;
            upstream.send(&msg).await?;
        }
        Ok(None)
    }
}

/// True for the response (result or error) to request `id`.
pub(crate) fn is_answer_to(msg: &Value, id: &Value) -> bool {
    msg.get("method").is_none()
        && msg.get("id") == Some(id)
        && (msg.get("result").is_some() || msg.get("error").is_some())
}
