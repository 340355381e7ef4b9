//! What runs a request once the lifecycle ([`crate::request`]) holds its
//! claim: a [`Handler`]. Two kinds exist: an rmcp server in this process
//! ([`crate::in_process`]) and the bridge to an upstream MCP server
//! ([`crate::bridge`]). Both get the same [`RunContext`] and report the
//! same [`Outcome`], so deliveries, claims, deadlines and acknowledgements
//! are one piece of code.

use crate::{
    answers::Answers,
    claim::{ClaimFence, Claims},
    health::Health,
    incoming::Request,
    publish::{Out, OutMessage, Publisher},
    transport::Outcome,
};
use async_nats::jetstream::kv;
use jetway_shared::{
    service::Service,
    session::SessionRecord,
    subjects::{SessionId, StreamKey},
};
use serde_json::Value;
use std::{future::Future, sync::Arc};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

/// Everything a handler gets for one run of one request.
pub struct RunContext<'a> {
    pub publisher: &'a Publisher,
    pub sessions: &'a kv::Store,
    pub state: &'a kv::Store,
    /// This worker's instance id.
    pub instance: &'a str,
    /// Claims and leases in the claims bucket.
    pub claims: &'a Arc<Claims>,
    /// The worker's reader of the session stream (it catches up after
    /// every NATS reconnect), for followers not tied to this run.
    pub answers: &'a Answers,
    /// The session record as it was when the run started.
    pub record: SessionRecord,
    /// 1 on the first delivery.
    pub delivery: u64,
    /// The request's sequence in the session stream.
    pub stored_at: u64,
    /// Checked before state writes and the answer.
    pub fence: ClaimFence,
    /// What the client sent the session after the request (stored), and
    /// what it sends while the request runs.
    pub history: Vec<Value>,
    pub inbound: mpsc::Receiver<Value>,
    /// When the request must be answered by.
    pub deadline: Instant,
    /// Cancelled when the worker stops for good.
    pub hard_stop: &'a CancellationToken,
}

/// What the worker shares with a handler for work outside any request
/// (the bridge's watch on its listeners), once it is set up.
#[derive(Clone)]
pub struct Shared {
    pub service: Service,
    pub publisher: Publisher,
    pub sessions: kv::Store,
    pub answers: Answers,
    pub claims: Arc<Claims>,
}

/// Runs requests: answers each with a final message on its POST stream, or
/// says why not.
pub trait Handler: Send + Sync + 'static {
    fn run<'a>(
        &'a self,
        ctx: RunContext<'a>,
        request: &'a Request,
    ) -> impl Future<Output = Outcome> + Send + 'a;

    /// Gives the handler the worker's readiness to report on (the bridge
    /// reports whether its upstream answers).
    fn report_to(&self, _health: &Arc<Health>) {}

    /// Called once the worker is set up, before its first request.
    fn started(&self, _shared: &Shared) {}
}

/// Publishes a final answer the worker makes itself (not the handler).
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
