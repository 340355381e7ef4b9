//! The in-process handler: an unchanged rmcp server, run with an rmcp
//! service loop of its own per request (`serve_directly_with_ct`) over the
//! request's [`RequestTransport`], with the session's peer info loaded from
//! KV, so any worker can run any request of any session. The loop ends
//! when the request's outcome is settled, at its deadline, or when the
//! worker stops hard. `logging/setLevel` is answered here: rmcp leaves it
//! to the transport, and the level lives in the session record.

use crate::{
    handler::{Handler, RunContext, publish_final},
    incoming::Request,
    session::Session,
    transport::{InitializeRecorder, Outcome, RequestRoute, RequestTransport},
};
use jetway_shared::{
    jsonrpc,
    session::{LogLevel, State, update_record},
};
use rmcp::{
    ServerHandler,
    model::{ClientRequest, Extensions, InitializeRequestParams, JsonRpcMessage},
    service::serve_directly_with_ct,
};
use serde_json::{Value, json};
use std::time::Duration;

/// How long a stopped loop may take to wind down.
const WIND_DOWN: Duration = Duration::from_secs(2);

/// An rmcp server as a Jetway [`Handler`].
#[derive(Clone)]
pub struct InProcess<S>(pub S);

impl<S: ServerHandler + Clone> Handler for InProcess<S> {
    fn run<'a>(
        &'a self,
        ctx: RunContext<'a>,
        request: &'a Request,
    ) -> impl std::future::Future<Output = Outcome> + Send + 'a {
        self.run_one(ctx, request)
    }
}

impl<S: ServerHandler + Clone> InProcess<S> {
    async fn run_one(&self, ctx: RunContext<'_>, request: &Request) -> Outcome {
        let message = match &request.message {
            Ok(m) => m,
            Err(why) => {
                let why = format!("invalid params: {why}");
                let body = jsonrpc::error(Some(&request.id), jsonrpc::INVALID_PARAMS, why);
                return publish_final(ctx.publisher, &request.session, &request.stream, body).await;
            }
        };
        #[allow(deprecated)] // see set_level
        if let JsonRpcMessage::Request(r) = message
            && let ClientRequest::SetLevelRequest(set) = &r.request
        {
            let body = set_level(&ctx, request, &set.params.level).await;
            return publish_final(ctx.publisher, &request.session, &request.stream, body).await;
        }
        let session = Session::for_request(&ctx, request.session.clone(), request.stream.clone());
        let initialize = request.is_initialize().then(|| InitializeRecorder {
            js: ctx.publisher.jetstream().clone(),
            sessions: ctx.sessions.clone(),
        });
        let peer_info: Option<InitializeRequestParams> = match message {
            JsonRpcMessage::Request(r) => match &r.request {
                ClientRequest::InitializeRequest(init) => Some(init.params.clone()),
                _ => serde_json::from_value(ctx.record.client.clone()).ok(),
            },
            _ => None,
        };
        let mut extensions = Extensions::new();
        extensions.insert(session);
        // The transport the session was opened on: what a handler needs to
        // negotiate a protocol version served on it (see `Builtin::initialize`).
        extensions.insert(ctx.record.transport);
        let route = RequestRoute {
            session: request.session.clone(),
            stream: request.stream.clone(),
            request_id: request.id.clone(),
            log_level: ctx.record.log_level,
            delivery: ctx.delivery,
        };
        let (transport, outcome) = RequestTransport::new(
            route,
            message.clone(),
            extensions,
            ctx.history,
            ctx.inbound,
            ctx.publisher.clone(),
            initialize,
            ctx.fence,
        );
        let ct = ctx.hard_stop.child_token();
        let running = serve_directly_with_ct(self.0.clone(), transport, peer_info, ct.clone());
        let waiting = running.waiting();
        tokio::pin!(waiting);
        let ended = tokio::select! {
            r = &mut waiting => {
                if let Err(e) = r { tracing::error!(error = %e, "request loop panicked"); }
                Ended::Loop
            }
            _ = ctx.hard_stop.cancelled() => Ended::HardStop,
            _ = tokio::time::sleep_until(ctx.deadline) => Ended::Deadline,
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
                publish_final(ctx.publisher, &request.session, &request.stream, body).await
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

#[allow(deprecated)] // logging is deprecated in the modern era, and still part of the legacy one
async fn set_level(
    ctx: &RunContext<'_>,
    request: &Request,
    level: &rmcp::model::LoggingLevel,
) -> Value {
    let level = serde_json::to_value(level)
        .ok()
        .and_then(|v| v.as_str().and_then(|s| s.parse::<LogLevel>().ok()));
    let Some(level) = level else {
        return jsonrpc::error(
            Some(&request.id),
            jsonrpc::INVALID_PARAMS,
            "params.level must be one of debug, info, notice, warning, error, critical, alert, emergency",
        );
    };
    let js = ctx.publisher.jetstream();
    let set = update_record(js, ctx.sessions, request.session.as_str(), |r| {
        r.log_level = Some(level);
        r.state != State::Closed
    });
    match set.await {
        Ok(_) => jsonrpc::result(&request.id, json!({})),
        Err(e) => jsonrpc::error(Some(&request.id), jsonrpc::INTERNAL_ERROR, e.to_string()),
    }
}
