//! A local OTLP/HTTP sink for measuring what tracing costs (`--traces`):
//! accepts `POST /v1/traces`, counts the export requests and their bytes,
//! answers an empty `ExportTraceServiceResponse`. It runs in the bench
//! process, on the same cores as everything else, as a collector on the
//! same node would.

use anyhow::Result;
use axum::{Router, body::Bytes, extract::State, http::header, routing::post};
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

/// What the sink received.
#[derive(Debug, Default)]
pub struct Received {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
}

/// A running sink; stops when dropped.
pub struct Sink {
    pub endpoint: String,
    pub received: Arc<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    pub async fn start() -> Result<Self> {
        let received = Arc::new(Received::default());
        let app = Router::new()
            .route("/v1/traces", post(export))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            endpoint,
            received,
            task,
        })
    }
}

async fn export(
    State(r): State<Arc<Received>>,
    body: Bytes,
) -> ([(header::HeaderName, &'static str); 1], Vec<u8>) {
    r.requests.fetch_add(1, Ordering::Relaxed);
    r.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    // An empty protobuf message is an empty body.
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        Vec::new(),
    )
}
