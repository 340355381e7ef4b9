//! The worker's HTTP port: `/healthz` (liveness: the process serves HTTP)
//! and `/readyz` (readiness: connected to NATS, pulling from the workers'
//! consumer, not draining, and for a bridge worker, its upstream answering).
//! Metrics join them later.

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use serde_json::{Value, json};
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};
use tokio_util::sync::CancellationToken;

/// What readiness is made of; the consumer loop keeps it current.
pub struct Health {
    instance: String,
    nats: async_nats::Client,
    consuming: AtomicBool,
    draining: AtomicBool,
    upstream_unreachable: AtomicBool,
}

impl Health {
    pub fn new(instance: String, nats: async_nats::Client) -> Arc<Self> {
        Arc::new(Self {
            instance,
            nats,
            consuming: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            upstream_unreachable: AtomicBool::new(false),
        })
    }

    /// The consumer loop pulls (true) or cannot (false).
    pub fn set_consuming(&self, on: bool) {
        self.consuming.store(on, Ordering::Relaxed);
    }

    /// A bridge worker's upstream answered (true) or could not be reached.
    pub fn set_upstream_reachable(&self, reachable: bool) {
        self.upstream_unreachable
            .store(!reachable, Ordering::Relaxed);
    }

    /// The worker stopped taking requests.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    fn problem(&self) -> Option<&'static str> {
        if self.draining.load(Ordering::Relaxed) {
            Some("draining")
        } else if self.nats.connection_state() != async_nats::connection::State::Connected {
            Some("NATS unreachable")
        } else if !self.consuming.load(Ordering::Relaxed) {
            Some("not consuming")
        } else if self.upstream_unreachable.load(Ordering::Relaxed) {
            Some("upstream unreachable")
        } else {
            None
        }
    }
}

/// Serves the health endpoints on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::serve))
        .with_state(health);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn healthz(State(h): State<Arc<Health>>) -> Json<Value> {
    Json(json!({"status": "ok", "instance": h.instance}))
}

async fn readyz(State(h): State<Arc<Health>>) -> (StatusCode, Json<Value>) {
    match h.problem() {
        None => (
            StatusCode::OK,
            Json(json!({"status": "ok", "instance": h.instance})),
        ),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "degraded", "instance": h.instance, "reason": reason})),
        ),
    }
}
