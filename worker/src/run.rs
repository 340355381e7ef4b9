//! Running one request's handler: an rmcp service loop of its own
//! (`serve_directly_with_ct`) over the request's [`RequestTransport`], with
//! the session's peer info loaded from KV, so any worker can run any
//! request of any session. The loop ends when the request's outcome is
//! settled, at its deadline, or when the worker stops hard.

use crate::{
    claim::ClaimFence,
    incoming::Request,
    publish::{Out, OutMessage, Publisher},
    session::Session,
    transport::{InitializeRecorder, Outcome, RequestRoute, RequestTransport},
};
use jetway_shared::{
    jsonrpc,
    session::SessionRecord,
    subjects::{SessionId, StreamKey},
};
use rmcp::{
    ServerHandler,
    model::{ClientRequest, Extensions, InitializeRequestParams, JsonRpcMessage},
    service::serve_directly_with_ct,
};
use serde_json::Value;
use std::time::Duration;
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

/// How long a stopped loop may take to wind down.
const WIND_DOWN: Duration = Duration::from_secs(2);

/// What one run needs besides the request.
pub struct Run<'a, S> {
    pub handler: &'a S,
    pub publisher: &'a Publisher,
    pub record: &'a SessionRecord,
    /// The tool-facing session handle.
    pub session: Session,
    /// Set for `initialize`: records what it negotiated.
    pub initialize: Option<InitializeRecorder>,
    pub delivery: u64,
    /// Checked before the answer is published.
    pub fence: ClaimFence,
    /// What the client sent the session after the request (stored), and
    /// what it sends while the request runs.
    pub history: Vec<Value>,
    pub inbound: mpsc::Receiver<Value>,
    pub deadline: Instant,
    pub hard_stop: &'a CancellationToken,
}

impl<S: ServerHandler + Clone> Run<'_, S> {
    pub async fn run(self, request: &Request) -> Outcome {
        let peer_info: Option<InitializeRequestParams> = match &request.message {
            JsonRpcMessage::Request(r) => match &r.request {
                ClientRequest::InitializeRequest(init) => Some(init.params.clone()),
                _ => serde_json::from_value(self.record.client.clone()).ok(),
            },
            _ => None,
        };
        let mut extensions = Extensions::new();
        extensions.insert(self.session);
        let route = RequestRoute {
            session: request.session.clone(),
            stream: request.stream.clone(),
            request_id: request.id.clone(),
            log_level: self.record.log_level,
            delivery: self.delivery,
        };
        let (transport, outcome) = RequestTransport::new(
            route,
            request.message.clone(),
            extensions,
            self.history,
            self.inbound,
            self.publisher.clone(),
            self.initialize,
            self.fence,
        );
        let ct = self.hard_stop.child_token();
        let running =
            serve_directly_with_ct(self.handler.clone(), transport, peer_info, ct.clone());
        let waiting = running.waiting();
        tokio::pin!(waiting);
        let ended = tokio::select! {
            r = &mut waiting => {
                if let Err(e) = r { tracing::error!(error = %e, "request loop panicked"); }
                Ended::Loop
            }
            _ = self.hard_stop.cancelled() => Ended::HardStop,
            _ = tokio::time::sleep_until(self.deadline) => Ended::Deadline,
        };
        if ended != Ended::Loop {
            // Settle first: rmcp answers a cancelled handler with an error of
            // its own, which must not reach the client as the answer.
            outcome.stop();
            ct.cancel();
            let _ = tokio::time::timeout(WIND_DOWN, &mut waiting).await;
        }
        match outcome.get() {
            Outcome::Stopped if ended == Ended::Deadline => {
                tracing::warn!("request ran past its deadline; stopped");
                let body = jsonrpc::error(
                    Some(&request.id),
                    jsonrpc::DEADLINE_EXCEEDED,
                    "request exceeded its deadline and was stopped",
                );
                publish_final(self.publisher, &request.session, &request.stream, body).await
            }
            Outcome::Running | Outcome::Stopped => Outcome::Unanswered,
            settled => settled,
        }
    }
}

#[derive(PartialEq)]
enum Ended {
    Loop,
    HardStop,
    Deadline,
}

/// Publishes a final answer the runtime makes itself (not the handler).
pub async fn publish_final(
    publisher: &Publisher,
    session: &SessionId,
    stream: &StreamKey,
    body: Value,
) -> Outcome {
    let msg = OutMessage {
        session,
        stream,
        payload: serde_json::to_vec(&body).unwrap_or_default(),
        kind: Out::Final,
    };
    match publisher.publish(msg).await {
        Ok(()) => Outcome::Answered,
        Err(e) => {
            tracing::warn!(error = %e, "could not publish the answer");
            Outcome::Unanswered
        }
    }
}
