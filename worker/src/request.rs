//! Running one request taken from the bus.
//!
//! Each request gets its own rmcp service loop
//! (`serve_directly_with_ct`) with the session's peer info loaded from KV, so
//! any worker can run any request of any session. The runtime answers what
//! rmcp leaves to the transport: `logging/setLevel` (stored in the session
//! record), requests that exhausted their deliveries, and sessions that no
//! longer exist.

use crate::{
    config::Config,
    consumer::{ack, nak},
    publish::{OutMessage, Publisher},
    session::{Fence, Session},
    transport::{FinalHook, Outcome, RequestRoute, RequestTransport, Shared},
};
use async_nats::jetstream::{AckKind, Message, kv, stream::DirectGetErrorKind};
use futures::StreamExt;
use jetway_shared::{
    headers,
    jsonrpc::{self, method},
    kv_write,
    publish::Backoff,
    session::{SessionRecord, State, log_rank, update_record},
    subjects::{SessionId, StreamKey, session_of_subject},
};
use rmcp::{
    RoleServer, ServerHandler,
    model::{Extensions, InitializeRequestParams},
    service::{RxJsonRpcMessage, serve_directly_with_ct},
};
use serde_json::{Value, json};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Everything a request task needs, shared by all of them.
pub struct Runtime<S> {
    pub config: Config,
    pub handler: S,
    pub nats: async_nats::Client,
    pub publisher: Publisher,
    pub sessions: kv::Store,
    pub state: kv::Store,
    /// The session stream, to see whether a redelivered request was answered.
    pub stream: async_nats::jetstream::stream::Stream<()>,
}

impl<S: ServerHandler + Clone> Runtime<S> {
    /// Handles one delivery; never panics, always acks, naks or terminates.
    pub async fn handle(self: Arc<Self>, msg: Message, hard_stop: CancellationToken) {
        let Some(session) = session_of_subject(&msg.subject) else {
            tracing::warn!(subject = %msg.subject, "request on an unexpected subject; dropping");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        };
        let stream = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(headers::STREAM))
            .and_then(|v| StreamKey::parse(v.as_str()));
        let Some(stream) = stream else {
            tracing::warn!(session = %session, "request without a stream key; dropping");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        };
        let delivered = msg.info().map(|i| i.delivered as u64).unwrap_or(1);
        let span = tracing::info_span!("request", session = %session, stream = %stream, delivered);
        self.handle_in(msg, session, stream, delivered, hard_stop)
            .instrument(span)
            .await;
    }

    async fn handle_in(
        &self,
        msg: Message,
        session: SessionId,
        stream: StreamKey,
        delivered: u64,
        hard_stop: CancellationToken,
    ) {
        let request: Value = match serde_json::from_slice(&msg.payload) {
            Ok(v) => v,
            Err(e) => {
                // The gateway only publishes valid JSON; anything else is not ours.
                tracing::warn!(error = %e, "request is not JSON; dropping");
                let _ = msg.ack_with(AckKind::Term).await;
                return;
            }
        };
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let method_name = request
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let answer = |body: Value| self.publish_final(&session, &stream, body);
        tracing::debug!(method = %method_name, "request received");

        if delivered as i64 > self.config.max_deliver {
            tracing::error!(method = %method_name, "request failed on every attempt; answering with an error");
            let body = jsonrpc::error(
                Some(&id),
                jsonrpc::REQUEST_FAILED,
                format!(
                    "request abandoned after {} attempts (workers failed while running it)",
                    delivered - 1
                ),
            );
            self.finish(&msg, answer(body).await).await;
            return;
        }

        // A request may have been answered already even on a first
        // delivery: after a consumer leader change or a NATS restart, a
        // request answered and acknowledged just before can come back with a
        // delivery count of 1. A redelivery is checked before it runs; a
        // first delivery just before its first state write (the fence in
        // its Session), so read-only requests pay nothing for it.
        let (answered, record) = tokio::join!(
            async {
                if delivered > 1 {
                    already_answered(&self.stream, &session, &stream).await
                } else {
                    Ok(false)
                }
            },
            kv_write::get(&self.sessions, session.as_str())
        );
        match answered {
            Ok(true) => {
                // A worker before us published the answer and then died, or
                // its acknowledgement was lost: don't run it again.
                tracing::info!(method = %method_name, "redelivered request was already answered");
                ack(&msg).await;
                return;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell whether the request was answered already; handing it back");
                nak(&msg, Some(Duration::from_secs(1))).await;
                return;
            }
        }
        let record = match record {
            Ok(Some(raw)) => SessionRecord::from_bytes(&raw).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "session store unavailable; handing the request back");
                nak(&msg, Some(Duration::from_secs(1))).await;
                return;
            }
        };
        let Some(record) = record.filter(|r| r.state != State::Closed) else {
            let body = jsonrpc::error(Some(&id), jsonrpc::SESSION_NOT_FOUND, "session not found");
            self.finish(&msg, answer(body).await).await;
            return;
        };

        if method_name == method::SET_LEVEL {
            let body = self.set_level(&session, &id, &request).await;
            self.finish(&msg, answer(body).await).await;
            return;
        }

        // Keep the lease while the tool runs, so only a dead worker's
        // requests wait for the ack wait to run out.
        let progress = CancellationToken::new();
        let lease = {
            let every = self.config.ack_wait / 3;
            let progress = progress.clone();
            let acker = msg.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => { let _ = acker.ack_with(AckKind::Progress).await; }
                        _ = progress.cancelled() => break,
                    }
                }
            })
        };
        let outcome = self
            .run_loop(
                &session,
                &stream,
                &record,
                request,
                id,
                delivered,
                hard_stop.clone(),
            )
            .await;
        progress.cancel();
        let _ = lease.await;
        match outcome {
            Outcome::Answered | Outcome::Cancelled => ack(&msg).await,
            Outcome::Unanswered if hard_stop.is_cancelled() => nak(&msg, None).await,
            Outcome::Unanswered => nak(&msg, Some(Duration::from_secs(1))).await,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_loop(
        &self,
        session: &SessionId,
        stream: &StreamKey,
        record: &SessionRecord,
        request: Value,
        id: Value,
        delivered: u64,
        hard_stop: CancellationToken,
    ) -> Outcome {
        let is_initialize =
            request.get("method").and_then(Value::as_str) == Some(method::INITIALIZE);
        let rx: RxJsonRpcMessage<RoleServer> = match serde_json::from_value(request.clone()) {
            Ok(m) => m,
            Err(e) => {
                let body = jsonrpc::error(
                    Some(&id),
                    jsonrpc::INVALID_PARAMS,
                    format!("invalid params: {e}"),
                );
                return match self.publish_final(session, stream, body).await {
                    Ok(()) => Outcome::Answered,
                    Err(_) => Outcome::Unanswered,
                };
            }
        };
        let peer_info: Option<InitializeRequestParams> = if is_initialize {
            request
                .get("params")
                .cloned()
                .and_then(|p| serde_json::from_value(p).ok())
        } else {
            serde_json::from_value(record.client.clone()).ok()
        };
        let inbound = match self.nats.subscribe(session.live_in_msg()).await {
            Ok(sub) => sub
                .filter_map(|m| async move { serde_json::from_slice::<Value>(&m.payload).ok() })
                .boxed(),
            Err(e) => {
                tracing::warn!(error = %e, "could not subscribe to client messages");
                return Outcome::Unanswered;
            }
        };
        // A redelivery was checked before it ran; a first delivery is
        // checked before its first state write.
        let fence = (delivered == 1).then(|| Fence::new(self.stream.clone()));
        let handle = Session::new(
            session.clone(),
            stream.clone(),
            fence,
            self.config.bus.instance_id.clone(),
            self.state.clone(),
            self.sessions.clone(),
            self.publisher.clone(),
        );
        let mut extensions = Extensions::new();
        extensions.insert(handle);
        let on_final = is_initialize.then(|| {
            let sessions = self.sessions.clone();
            let js = self.publisher.jetstream().clone();
            let session = session.clone();
            let hook: FinalHook = Box::new(move |final_msg: &Value| {
                let version = final_msg
                    .pointer("/result/protocolVersion")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let sessions = sessions.clone();
                let js = js.clone();
                let session = session.clone();
                Box::pin(async move {
                    if let Some(v) = version {
                        let _ = update_record(&js, &sessions, session.as_str(), |r| {
                            r.state = State::Active;
                            r.protocol_version = v.clone();
                            true
                        })
                        .await;
                    }
                })
            });
            hook
        });
        let shared = Arc::new(Shared {
            outcome: Mutex::new(Outcome::Unanswered),
            on_final,
        });
        let route = RequestRoute {
            session: session.clone(),
            stream: stream.clone(),
            request_id: id,
            log_level: record.log_level.clone(),
            delivery: delivered,
        };
        let (transport, stop) = RequestTransport::new(
            route,
            rx,
            extensions,
            inbound,
            self.publisher.clone(),
            shared.clone(),
        );
        let ct = hard_stop.child_token();
        let running =
            serve_directly_with_ct(self.handler.clone(), transport, peer_info, ct.clone());
        let waiting = running.waiting();
        tokio::pin!(waiting);
        tokio::select! {
            r = &mut waiting => {
                if let Err(e) = r { tracing::error!(error = %e, "request loop panicked"); }
            }
            _ = hard_stop.cancelled() => {
                let _ = stop.try_send(());
                let _ = tokio::time::timeout(Duration::from_secs(2), &mut waiting).await;
            }
        }
        shared
            .outcome
            .lock()
            .map(|o| *o)
            .unwrap_or(Outcome::Unanswered)
    }

    async fn set_level(&self, session: &SessionId, id: &Value, request: &Value) -> Value {
        let level = request.pointer("/params/level").and_then(Value::as_str);
        let Some(level) = level.filter(|l| log_rank(l).is_some()) else {
            return jsonrpc::error(
                Some(id),
                jsonrpc::INVALID_PARAMS,
                "params.level must be one of debug, info, notice, warning, error, critical, alert, emergency",
            );
        };
        let js = self.publisher.jetstream();
        let set = update_record(js, &self.sessions, session.as_str(), |r| {
            r.log_level = Some(level.to_owned());
            r.state != State::Closed
        });
        match set.await {
            Ok(_) => jsonrpc::result(id, json!({})),
            Err(e) => jsonrpc::error(Some(id), jsonrpc::INTERNAL_ERROR, e.to_string()),
        }
    }

    async fn publish_final(
        &self,
        session: &SessionId,
        stream: &StreamKey,
        body: Value,
    ) -> Result<(), jetway_shared::publish::PublishFailure> {
        let payload = serde_json::to_vec(&body).unwrap_or_default();
        self.publisher
            .publish(OutMessage {
                session,
                stream,
                payload,
                is_final: true,
                dedup: None,
            })
            .await
    }

    async fn finish(
        &self,
        msg: &Message,
        published: Result<(), jetway_shared::publish::PublishFailure>,
    ) {
        match published {
            Ok(()) => ack(msg).await,
            Err(e) => {
                tracing::warn!(error = %e, "could not publish the answer; handing the request back");
                nak(msg, Some(Duration::from_secs(1))).await;
            }
        }
    }
}

/// True if the request's POST stream already holds its final message. A
/// failed read is retried (through a leader election) for a bounded time;
/// then the error says nobody can tell.
pub(crate) async fn already_answered(
    answers: &async_nats::jetstream::stream::Stream<()>,
    session: &SessionId,
    stream: &StreamKey,
) -> Result<bool, async_nats::jetstream::stream::DirectGetError> {
    let subject = session.out(stream);
    let mut backoff = Backoff::new();
    loop {
        match answers.direct_get_last_for_subject(subject.as_str()).await {
            Ok(m) => return Ok(m.headers.get(headers::FINAL).is_some()),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(false),
            Err(e) => {
                if !backoff.wait().await {
                    return Err(e);
                }
                tracing::debug!(error = %e, "reading the request's stream failed; retrying");
            }
        }
    }
}
