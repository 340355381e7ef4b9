//! Jetway worker runtime and SDK.
//!
//! A worker takes MCP requests from the shared durable JetStream consumer,
//! runs each in its own rmcp service loop, and publishes what the handler
//! sends back onto the session's subjects. Workers keep no session in
//! memory: any worker can run any request of any session.
//!
//! Tool authors write an ordinary rmcp server (`#[tool_router]`,
//! `#[tool_handler]`, `ServerHandler`) and hand it to [`run`]. The one
//! addition is [`Session`], an rmcp extractor argument
//! (`Extension(session): Extension<Session>`) giving a tool its session id
//! and its compare-and-set session state. The request's extensions also
//! hold the session's `jetway_shared::protocol::Transport`: a handler that
//! negotiates `initialize` itself offers only the versions served on it
//! (2024-11-05 on HTTP+SSE, 2025-03-26 … 2025-11-25 on Streamable HTTP), as
//! the built-in one does.
//!
//! Layout, in the order a request passes through it:
//! - [`config`] — `worker::Config` and the `jetway-worker` flags.
//! - [`consumer`] — the consumer loop: slots, fair pulls, drain.
//! - [`fair`] — each session's share of the slots; parked requests.
//! - [`pull`] — asking the consumer for one request per free slot.
//! - [`delivery`] — one delivery: ack, nak, term, and its lease.
//! - [`incoming`] — a request as parsed from its delivery, once.
//! - [`request`] — the lifecycle of one request, the same for every handler.
//! - [`claim`] — which worker process runs a request, so it runs once.
//! - [`answer_room`] — the last place of a request's subject, kept for its answer.
//! - [`answers`] — what the stream already holds for a request: its answer,
//!   and what the client sent it (history, then live).
//! - [`handler`] — what runs a claimed request: the [`handler::Handler`] trait.
//! - [`in_process`] — an rmcp server in this process as a handler, with its
//!   deadline.
//! - [`bridge`] — the handler that forwards requests to an upstream MCP
//!   server over Streamable HTTP.
//! - [`transport`] — the rmcp `Transport` of one request (routing, ordering,
//!   server→client request ids, the request's outcome).
//! - [`publish`] — publishing server messages with provenance headers.
//! - [`session`] — [`Session`], the tool-facing session handle.
//! - [`expiry`] — removing the state of sessions whose record aged out.
//! - [`health`] — the worker's HTTP port: `/healthz`, `/readyz`, `/metrics`.
//! - [`metrics`] — what the worker counts and times.
//! - [`toolsets`] — the built-in demo and conformance servers of `jetway-worker`.

pub mod answer_room;
pub mod answers;
pub mod bridge;
pub mod claim;
pub mod config;
pub mod consumer;
pub mod delivery;
pub mod expiry;
pub mod fair;
pub mod handler;
pub mod health;
pub mod in_process;
pub mod incoming;
pub mod metrics;
pub mod publish;
pub mod pull;
pub mod request;
pub mod session;
pub mod toolsets;
pub mod trace;
pub mod transport;

pub use config::Config;
pub use session::{Session, StateError};

use jetway_shared::setup;
use rmcp::ServerHandler;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Why a worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Setup(#[from] setup::SetupError),
    #[error("could not create the worker consumer: {0}")]
    Consumer(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("could not subscribe: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    #[error("could not pull from the consumer: {0}")]
    Pull(#[from] pull::PullError),
}

/// A NATS connection and its (re)connect counter (see `setup::connect_watching`).
pub struct Nats {
    pub client: async_nats::Client,
    pub connects: watch::Receiver<u64>,
}

/// Runs a worker serving the rmcp server `handler` until `shutdown` is
/// cancelled, then drains. `listener` serves the health endpoints.
pub async fn run<S>(
    config: Config,
    nats: Nats,
    listener: tokio::net::TcpListener,
    handler: S,
    shutdown: CancellationToken,
) -> Result<(), WorkerError>
where
    S: ServerHandler + Clone,
{
    run_handler(
        config,
        nats,
        listener,
        in_process::InProcess(handler),
        shutdown,
    )
    .await
}

/// [`run`] with any [`handler::Handler`] (the bridge, for one).
pub async fn run_handler<H: handler::Handler>(
    config: Config,
    nats: Nats,
    listener: tokio::net::TcpListener,
    handler: H,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    metrics::init(config.metrics_max_tool_labels);
    let health = health::Health::new(config.bus.instance_id.clone(), nats.client.clone());
    handler.report_to(&health);
    let http_stop = CancellationToken::new();
    let http = tokio::spawn(health::serve(listener, health.clone(), http_stop.clone()));

    let js = setup::context(nats.client.clone(), &config.bus);
    let resources = setup::ensure_with_retry(&js, &config.bus, &config.service, &shutdown).await?;
    let consumer = consumer::ensure_consumer(
        &resources.stream,
        &config.service,
        config.ack_wait,
        config.max_deliver,
    )
    .await
    .map_err(WorkerError::Consumer)?;
    let stream = js
        .get_stream_no_info(resources.stream.cached_info().config.name.as_str())
        .await
        .map_err(|e| WorkerError::Consumer(Box::new(e)))?;
    let claims = claim::Claims::start(
        resources.claims.clone(),
        js.clone(),
        nats.client.clone(),
        nats.connects.clone(),
        &config.service,
        &config.bus.instance_id,
        config.claim_timing(),
    )
    .await?;
    tokio::spawn(metrics::watch_consumer(consumer.clone(), http_stop.clone()));
    tokio::spawn(metrics::watch_storage(
        vec![
            ("stream", resources.stream.clone()),
            ("sessions", resources.sessions.stream.clone()),
            ("state", resources.state.stream.clone()),
            ("claims", resources.claims.stream.clone()),
        ],
        http_stop.clone(),
    ));
    tokio::spawn(expiry::run(
        config.service.clone(),
        resources.sessions.clone(),
        resources.state.clone(),
        http_stop.clone(),
    ));
    let puller = pull::Puller::new(consumer, &nats.client, js.clone()).await?;
    let runtime = Arc::new(request::Runtime {
        publisher: publish::Publisher::new(
            js,
            config.bus.instance_id.clone(),
            config.bus.session_max_messages,
        ),
        answers: answers::Answers::new(stream, nats.client.clone(), nats.connects),
        claims,
        config,
        handler,
        sessions: resources.sessions,
        state: resources.state,
    });
    runtime.handler.started(&runtime.shared());
    consumer::run(runtime, puller, health, shutdown).await;
    http_stop.cancel();
    let _ = http.await;
    Ok(())
}
