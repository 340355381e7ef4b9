//! Jetway gateway: stateless MCP endpoints (Streamable HTTP, and the HTTP+SSE
//! transport of 2024-11-05) on NATS JetStream.
//!
//! The gateway terminates MCP clients and keeps nothing in memory that
//! another replica needs: every client message is published to the
//! session's inbound subject (acknowledged before the client gets an
//! answer), and every server message reaches the client by way of the
//! stream. Any replica can therefore serve any request of any session and
//! resume any SSE stream from `Last-Event-ID`.
//!
//! Layout:
//! - [`config`] — `gateway::Config` and the `jetway-gateway` flags.
//! - [`serve`] — the HTTP server loop and its connection limits.
//! - [`served`] — the services a gateway serves, and which one a request is for.
//! - [`transport`] — the MCP transports: Streamable HTTP on `/mcp` and
//!   `/services/<name>/mcp`, HTTP+SSE (2024-11-05) on `/sse` + `/messages`
//!   and `/services/<name>/sse` + `/services/<name>/messages`.
//! - [`sse`] — reading one SSE stream of a session from the bus, live and
//!   from any position (core subscription + direct-get gap fill).
//! - [`outlet`] — what an SSE stream may hold for a client that is behind.
//! - [`sessions`] — session records in KV: create, look up, close.
//! - [`auth`] — OAuth bearer tokens, scopes, and the resource metadata.
//! - [`health`] — `/healthz` and `/readyz`.
//! - [`metrics`] — `/metrics`: what the gateway counts and times.
//! - [`inflight`] — requests in flight per session, bounded.
//! - [`quota`] — request rates and live sessions per principal or client
//!   address.
//! - [`error`] — `GatewayError`, the HTTP edge's errors as values.

pub mod auth;
pub mod config;
pub mod error;
pub mod health;
pub mod inflight;
pub mod metrics;
pub mod outlet;
pub mod quota;
pub mod serve;
pub mod served;
pub mod sessions;
pub mod sse;
pub mod transport;

pub use config::Config;

use axum::{
    Router,
    http::{HeaderName, HeaderValue},
    routing::{get, post},
};
use jetway_shared::setup::{self, SetupError};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Room left in NATS's `max_payload` for the headers Jetway adds to a
/// client message (ids, kind, trace context).
pub const PUBLISH_HEADROOM: usize = 8 * 1024;

/// Response header naming the gateway instance that served a request.
pub const INSTANCE_HEADER: &str = "jetway-instance";

/// What every handler shares. Nothing here is session state.
pub struct Gateway {
    pub config: Config,
    pub nats: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    /// Each service this gateway serves: its stream and session records.
    pub services: served::Services,
    /// Cancelled when draining starts: readiness fails, new requests get 503.
    pub draining: CancellationToken,
    /// Cancelled to end every open SSE stream with a `retry` hint.
    pub stream_cancel: CancellationToken,
    /// Bumped on every NATS (re)connect (see [`sse::ReadSpec::connects`]).
    pub connects: tokio::sync::watch::Receiver<u64>,
    /// Token checks; `None` when auth is off.
    pub auth: Option<auth::verify::Verifier>,
    /// Requests each session streams on this replica.
    pub inflight: Arc<inflight::InFlight>,
    /// Rate and session quotas per principal or client address.
    pub quotas: quota::Quotas,
}

/// The axum application for a gateway.
pub fn router(gw: Arc<Gateway>) -> Router {
    let instance = HeaderValue::from_str(&gw.config.bus.instance_id)
        .unwrap_or_else(|_| HeaderValue::from_static("jetway"));
    let mcp = Router::new()
        .route(
            "/mcp",
            get(transport::streamable_http::get)
                .post(transport::streamable_http::post)
                .delete(transport::streamable_http::delete),
        )
        .route(
            "/services/{service}/mcp",
            get(transport::streamable_http::get)
                .post(transport::streamable_http::post)
                .delete(transport::streamable_http::delete),
        )
        .route("/sse", get(transport::http_sse::sse))
        .route("/messages", post(transport::http_sse::messages))
        .route("/services/{service}/sse", get(transport::http_sse::sse))
        .route(
            "/services/{service}/messages",
            post(transport::http_sse::messages),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            quota::layer,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            auth::authenticate,
        ))
        .route_layer(axum::middleware::from_fn(metrics::layer));
    mcp.route("/healthz", get(health::healthz))
        .route("/metrics", get(metrics::serve))
        .route("/readyz", get(health::readyz))
        .route(
            "/.well-known/oauth-protected-resource",
            get(auth::metadata::root),
        )
        .route(
            "/.well-known/oauth-protected-resource/{*path}",
            get(auth::metadata::suffixed),
        )
        .layer(axum::middleware::map_response(
            move |mut resp: axum::response::Response| {
                let instance = instance.clone();
                async move {
                    resp.headers_mut()
                        .insert(HeaderName::from_static(INSTANCE_HEADER), instance);
                    resp
                }
            },
        ))
        .with_state(gw)
}

/// Runs a gateway on `listener` until `shutdown`, then drains: readiness
/// fails, new requests get 503, open SSE streams end with a `retry` hint,
/// and the server exits within the grace period.
pub async fn run(
    config: Config,
    nats: async_nats::Client,
    connects: tokio::sync::watch::Receiver<u64>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), SetupError> {
    let js = setup::context(nats.clone(), &config.bus);
    let mut services = Vec::new();
    for service in &config.services {
        let resources = setup::ensure_with_retry(&js, &config.bus, service, &shutdown).await?;
        services.push(served::Served::new(&js, resources, config.bus.retention()).await?);
    }
    let grace = config.grace_period;
    let auth = match config.auth.clone() {
        Some(cfg) => Some(
            auth::verify::Verifier::new(cfg).map_err(|e| SetupError::Create {
                what: "the HTTP client for token checks".into(),
                source: Box::new(e),
            })?,
        ),
        None => None,
    };
    let mut config = config;
    // A message over NATS's max_payload would be refused at publish time,
    // after the client was told nothing: refuse it at the edge instead.
    let max_payload = nats.server_info().max_payload;
    let fits = max_payload.saturating_sub(PUBLISH_HEADROOM);
    if config.max_body_bytes > fits {
        tracing::info!(
            max_body_bytes = config.max_body_bytes,
            max_payload,
            "max_body_bytes lowered to fit NATS's max_payload"
        );
        config.max_body_bytes = fits.max(1);
    }
    let quotas = quota::Quotas {
        rate: quota::rate::Rate::new(config.rate_limit_per_sec, config.rate_limit_burst),
        sessions: quota::sessions::SessionQuota::open(
            &js,
            &config.bus,
            config.max_sessions_per_principal,
        )
        .await?,
    };
    let gw = Arc::new(Gateway {
        auth,
        quotas,
        inflight: inflight::InFlight::new(config.max_inflight_per_session),
        services: served::Services::new(services),
        config,
        nats,
        js,
        draining: CancellationToken::new(),
        stream_cancel: CancellationToken::new(),
        connects,
    });
    if let Some(rate) = &gw.quotas.rate {
        rate.spawn_pruning(gw.draining.clone());
    }
    let app = router(gw.clone());
    {
        let gw = gw.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            tracing::info!("draining: readiness off, ending SSE streams with a retry hint");
            gw.draining.cancel();
            gw.stream_cancel.cancel();
        });
    }
    let server = serve::serve(
        listener,
        app,
        serve::Limits::of(&gw.config),
        gw.draining.clone(),
    );
    let deadline = async {
        gw.draining.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = server => {}
        _ = deadline => tracing::warn!(?grace, "grace period over; closing remaining connections"),
    }
    tracing::info!("gateway stopped");
    Ok(())
}
