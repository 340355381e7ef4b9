//! `/healthz` (liveness: the process serves HTTP) and `/readyz` (readiness:
//! NATS and JetStream answer, and the gateway is not draining).

use crate::Gateway;
use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde_json::json;
use std::{sync::Arc, time::Duration};

pub async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, Json(json!({"status": "ok"})))
}

pub async fn readyz(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    let instance = gw.config.bus.instance_id.clone();
    let problem = if gw.draining.is_cancelled() {
        Some("draining")
    } else if gw.nats.connection_state() != async_nats::connection::State::Connected {
        Some("NATS unreachable")
    } else {
        match tokio::time::timeout(Duration::from_secs(2), gw.js.query_account()).await {
            Ok(Ok(_)) => None,
            _ => Some("JetStream unreachable"),
        }
    };
    match problem {
        None => (
            StatusCode::OK,
            Json(json!({"status": "ok", "instance": instance})),
        ),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "degraded", "instance": instance, "reason": reason})),
        ),
    }
}
