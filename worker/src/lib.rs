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
//! and its compare-and-set session state.
//!
//! Layout:
//! - [`config`] — `worker::Config` and the `jetway-worker` flags.
//! - [`consumer`] — the consumer loop: concurrency limit, drain, acks.
//! - [`request`] — running one request: session lookup, `logging/setLevel`,
//!   the rmcp loop, bounded redelivery.
//! - [`transport`] — the rmcp `Transport` of one request (routing, ordering,
//!   server→client request ids).
//! - [`publish`] — publishing server messages with provenance headers.
//! - [`session`] — [`Session`], the tool-facing session handle.
//! - [`toolsets`] — the built-in demo and conformance servers of `jetway-worker`.

pub mod config;
pub mod consumer;
pub mod publish;
pub mod request;
pub mod session;
pub mod toolsets;
pub mod transport;

pub use config::Config;
pub use session::{Session, StateError};

use jetway_shared::setup;
use rmcp::ServerHandler;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Why a worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Setup(#[from] setup::SetupError),
    #[error("could not create the worker consumer: {0}")]
    Consumer(String),
}

/// Runs a worker serving `handler` until `shutdown` is cancelled, then drains.
pub async fn run<S>(
    config: Config,
    nats: async_nats::Client,
    handler: S,
    shutdown: CancellationToken,
) -> Result<(), WorkerError>
where
    S: ServerHandler + Clone,
{
    let js = setup::context(nats.clone(), &config.bus);
    let resources = setup::ensure_with_retry(&js, &config.bus, &shutdown).await?;
    let consumer =
        consumer::ensure_consumer(&resources.stream, config.ack_wait, config.max_deliver)
            .await
            .map_err(|e| WorkerError::Consumer(e.to_string()))?;
    let answers = js
        .get_stream_no_info(resources.stream.cached_info().config.name.as_str())
        .await
        .map_err(|e| WorkerError::Consumer(e.to_string()))?;
    let runtime = Arc::new(request::Runtime {
        publisher: publish::Publisher::new(js, config.bus.instance_id.clone()),
        config,
        handler,
        nats,
        sessions: resources.sessions,
        state: resources.state,
        stream: answers,
    });
    consumer::run(runtime, consumer, shutdown).await;
    Ok(())
}
