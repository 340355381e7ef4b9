//! The lifecycle of one request taken from the bus, the same for every
//! handler:
//!
//! 1. parse the delivery once (a message that is not a Jetway request is
//!    terminated, never redelivered);
//! 2. hold its lease (in-progress acks) for as long as this worker has it;
//! 3. claim it ([`crate::claim`]): an answered request is acknowledged, one
//!    running elsewhere is waited for, so it runs once;
//! 4. answer what the runtime answers itself: a request past its deadline
//!    or its deliveries, a session that no longer exists, a request the
//!    client cancelled while it was queued;
//! 5. run the handler ([`crate::handler`]) until it answers, is cancelled,
//!    or reaches its deadline;
//! 6. acknowledge once the final message is on the stream, else hand the
//!    request back.
//!
//! Data flows one way: `consumer` → `request` → `delivery`, `claim`,
//! `answers`, `handler` (`in_process` → `transport`, or `bridge`) → `publish`.

use crate::{
    answers::Answers,
    claim::{Acquired, ClaimFence, Claims},
    config::Config,
    delivery::{Delivery, Lease},
    handler::{Handler, RunContext, Shared, publish_final},
    incoming::{Request, Unrunnable},
    metrics::Execution,
    publish::Publisher,
    trace,
    transport::Outcome,
};
use async_nats::jetstream::kv;
use jetway_shared::{
    jsonrpc, kv_write,
    session::{SessionRecord, State},
};
use jetway_shared::{otel_span, telemetry, text::printable};
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, field::Empty};

/// How long after its deadline a delivery waits for another worker's run
/// of the same request before handing it back.
const WAIT_PAST_DEADLINE: Duration = Duration::from_secs(30);

/// Everything a request task needs, shared by all of them.
pub struct Runtime<H> {
    pub config: Config,
    pub handler: H,
    pub publisher: Publisher,
    pub sessions: kv::Store,
    pub state: kv::Store,
    pub answers: Answers,
    pub claims: Arc<Claims>,
}

impl<H: Handler> Runtime<H> {
    /// What the handler may use outside any request ([`Handler::started`]).
    pub fn shared(&self) -> Shared {
        Shared {
            service: self.config.service.clone(),
            publisher: self.publisher.clone(),
            sessions: self.sessions.clone(),
            answers: self.answers.clone(),
            claims: self.claims.clone(),
        }
    }

    /// Handles one delivery; never panics, always acks, naks or terminates.
    pub async fn handle(self: Arc<Self>, delivery: Delivery, hard_stop: CancellationToken) {
        let lease = delivery.hold(self.config.lease_renewal(), self.config.ack_wait);
        let request = match Request::parse(&delivery) {
            Ok(r) => r,
            Err(Unrunnable(what)) => {
                tracing::warn!(subject = %delivery.message().subject, what, "not a Jetway request; dropping");
                delivery.term().await;
                return;
            }
        };
        let span = tracing::info_span!(
            "request",
            session = %request.session,
            stream = %request.stream,
            // Debug-formatted: the method is the client's text, and Debug
            // escapes control characters a terminal would act on.
            method = ?request.method,
            delivered = delivery.delivered,
            otel.name = Empty,
            otel.kind = Empty,
            mcp.method.name = Empty,
            mcp.session.id = Empty,
            jsonrpc.request.id = Empty,
            gen_ai.tool.name = Empty,
            messaging.system = Empty,
            messaging.operation.type = Empty,
            messaging.message.delivery_count = Empty,
            trace_id = Empty,
        );
        let tool = (request.method == "tools/call")
            .then(|| request.raw.pointer("/params/name").and_then(|n| n.as_str()))
            .flatten();
        if telemetry::enabled() {
            trace::delivery(&span, &delivery, &request, tool);
        }
        let execution = Execution::delivered(&request.method, tool, delivery.delivered);
        self.handle_in(&delivery, &lease, request, &hard_stop, execution)
            .instrument(span)
            .await;
    }

    async fn handle_in(
        &self,
        delivery: &Delivery,
        lease: &Lease,
        request: Request,
        hard_stop: &CancellationToken,
        mut execution: Execution,
    ) {
        let deadline = deadline_of(delivery.published, self.config.deadline);
        let claimed = tokio::select! {
            c = self.claims.acquire(
                &request.session,
                &request.stream,
                &self.answers,
                deadline + WAIT_PAST_DEADLINE,
            ).instrument(otel_span!("claim")) => c,
            _ = hard_stop.cancelled() => {
                delivery.nak(None).await;
                return;
            }
        };
        let claim = match claimed {
            Ok(Acquired::Ours(guard)) => guard,
            Ok(Acquired::Answered) => {
                tracing::info!("request was answered already; not running it again");
                delivery.ack().await;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not claim the request; handing it back");
                delivery.nak(Some(Duration::from_secs(1))).await;
                return;
            }
        };
        execution.claimed(claim.fence(lease.clock()).may_have_run_before());
        let outcome = self
            .answer(
                delivery,
                &request,
                claim.fence(lease.clock()),
                deadline,
                hard_stop,
            )
            .await;
        execution.ended(&outcome);
        settle(delivery, outcome, hard_stop.is_cancelled())
            .instrument(otel_span!("ack"))
            .await;
        // The claim is let go only now, with the answer on the stream.
        drop(claim);
    }

    /// Everything between holding the claim and settling the delivery.
    async fn answer(
        &self,
        delivery: &Delivery,
        request: &Request,
        fence: ClaimFence,
        deadline: Instant,
        hard_stop: &CancellationToken,
    ) -> Outcome {
        let error = |code, message: String| jsonrpc::error(Some(&request.id), code, message);
        if delivery.delivered as i64 > self.config.max_deliver {
            tracing::error!("request failed on every attempt; answering with an error");
            crate::metrics::abandoned();
            let body = error(
                jsonrpc::REQUEST_FAILED,
                format!(
                    "request abandoned after {} attempts (workers failed while running it)",
                    delivery.delivered - 1
                ),
            );
            return publish_final(&self.publisher, &request.session, &request.stream, body).await;
        }
        if Instant::now() >= deadline {
            tracing::warn!("request reached its deadline before it could run");
            crate::metrics::deadline_expired();
            let body = error(
                jsonrpc::DEADLINE_EXCEEDED,
                "request exceeded its deadline before it could run".to_owned(),
            );
            return publish_final(&self.publisher, &request.session, &request.stream, body).await;
        }
        let (record, inbound) = tokio::join!(
            kv_write::get(&self.sessions, request.session.as_str()),
            self.answers
                .inbound_after(&request.session, delivery.stream_sequence)
                .instrument(otel_span!("inbound read"))
        );
        let record = match record {
            Ok(Some(raw)) => SessionRecord::from_bytes(&raw).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "session store unavailable; handing the request back");
                return Outcome::Unanswered;
            }
        };
        let Some(record) = record.filter(|r| r.state != State::Closed) else {
            let body = error(jsonrpc::SESSION_NOT_FOUND, "session not found".to_owned());
            return publish_final(&self.publisher, &request.session, &request.stream, body).await;
        };
        let (history, live) = match inbound {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "could not follow client messages; handing the request back");
                return Outcome::Unanswered;
            }
        };
        if request.cancelled_in(&history) {
            tracing::info!("request was cancelled while it was queued; not running it");
            return match self
                .publisher
                .cancelled(&request.session, &request.stream)
                .await
            {
                Ok(()) => Outcome::Cancelled,
                Err(_) => Outcome::Unanswered,
            };
        }
        let ctx = RunContext {
            publisher: &self.publisher,
            sessions: &self.sessions,
            state: &self.state,
            instance: &self.config.bus.instance_id,
            claims: &self.claims,
            answers: &self.answers,
            record,
            delivery: delivery.delivered,
            stored_at: delivery.stream_sequence,
            fence,
            history,
            inbound: live,
            deadline,
            hard_stop,
        };
        self.handler
            .run(ctx, request)
            .instrument(otel_span!("handler", otel.name = %printable(&format!("handle {}", request.method))))
            .await
    }
}

/// Acknowledges a settled request, or hands back an unanswered one (at
/// once when the worker is stopping, so another worker takes it).
async fn settle(delivery: &Delivery, outcome: Outcome, stopping: bool) {
    match outcome {
        Outcome::Answered | Outcome::Cancelled => delivery.ack().await,
        Outcome::Running | Outcome::Unanswered | Outcome::Stopped if stopping => {
            delivery.nak(None).await
        }
        Outcome::Running | Outcome::Unanswered | Outcome::Stopped => {
            delivery.nak(Some(Duration::from_secs(1))).await
        }
    }
}

/// When a request stored at `published` must be answered by.
fn deadline_of(published: SystemTime, deadline: Duration) -> Instant {
    let age = SystemTime::now()
        .duration_since(published)
        .unwrap_or_default();
    Instant::now() + deadline.saturating_sub(age)
}
