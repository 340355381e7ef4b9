//! The baseline: the benchmark's demo tools served directly by the official
//! Rust SDK — rmcp's Streamable HTTP server (`StreamableHttpService` with the
//! in-process `LocalSessionManager`, stateful sessions, SSE responses) on
//! axum — with no bus in between.
//!
//! rmcp creates one [`DemoServer`] per session, so its counter is the
//! session's counter, kept in memory. The tools answer like the Jetway demo
//! tool set's (`instance` is `"baseline"`): `increment_counter`, `echo`,
//! `sleep_ms`, and `analyze_data` with the same steps and pauses.

// MCP logging is deprecated in the modern era (SEP-2577) but part of the legacy one.
#![allow(deprecated)]

use axum::serve::ListenerExt;
use rmcp::{
    ErrorData as McpError, Peer, RoleServer, ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{
        CallToolResult, Implementation, LoggingLevel, LoggingMessageNotificationParam,
        ProgressNotificationParam, ServerCapabilities, ServerConfig, SetLevelRequestParams,
    },
    service::RequestContext,
    tool, tool_handler, tool_router,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The `instance` every baseline result names.
pub const INSTANCE: &str = "baseline";

#[derive(Debug, Deserialize, JsonSchema)]
pub struct Echo {
    /// Text to send back.
    pub text: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SleepMs {
    /// How long to sleep, in milliseconds (at most 10000).
    pub ms: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct AnalyzeData {
    /// Number of items to analyze (0–1000).
    pub num_items: u64,
}

/// One session's server: its counter lives here, in memory.
#[derive(Clone)]
pub struct DemoServer {
    counter: Arc<AtomicI64>,
    tool_router: ToolRouter<Self>,
}

impl Default for DemoServer {
    fn default() -> Self {
        Self::new()
    }
}

impl DemoServer {
    pub fn new() -> Self {
        Self {
            counter: Arc::new(AtomicI64::new(0)),
            tool_router: Self::tool_router(),
        }
    }
}

#[tool_router]
impl DemoServer {
    #[tool(description = "Atomically increment this session's counter and return it.")]
    async fn increment_counter(&self) -> Result<CallToolResult, McpError> {
        let counter = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(CallToolResult::structured(
            json!({"counter": counter, "instance": INSTANCE}),
        ))
    }

    #[tool(description = "Send the text back: the smallest round trip.")]
    async fn echo(
        &self,
        Parameters(Echo { text }): Parameters<Echo>,
    ) -> Result<CallToolResult, McpError> {
        Ok(CallToolResult::structured(
            json!({"text": text, "instance": INSTANCE}),
        ))
    }

    #[tool(description = "Sleep ms milliseconds (max 10000).")]
    async fn sleep_ms(
        &self,
        Parameters(SleepMs { ms }): Parameters<SleepMs>,
    ) -> Result<CallToolResult, McpError> {
        if ms > 10_000 {
            return Err(McpError::invalid_params("ms must be at most 10000", None));
        }
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(CallToolResult::structured(
            json!({"slept_ms": ms, "instance": INSTANCE}),
        ))
    }

    #[tool(description = "Analyze num_items items, reporting progress and logs.")]
    async fn analyze_data(
        &self,
        Parameters(AnalyzeData { num_items }): Parameters<AnalyzeData>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        if num_items > 1000 {
            return Err(McpError::invalid_params(
                "num_items must be at most 1000",
                None,
            ));
        }
        let mut steps = Steps {
            peer: &ctx.peer,
            token: ctx.meta.get_progress_token(),
            sent: 0.0,
        };
        let start = format!("Starting analysis of {num_items} items on {INSTANCE}");
        steps.step(LoggingLevel::Info, start).await;
        steps
            .step(LoggingLevel::Debug, "Phase 1: loading items".into())
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        steps
            .step(LoggingLevel::Debug, "Phase 2: scoring items".into())
            .await;
        let mut total_score = 0.0;
        for i in 1..=num_items {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let score = 1.5 * i as f64;
            total_score += score;
            let line = format!("Processed item {i}: score={score:.1}");
            steps.step(LoggingLevel::Debug, line).await;
        }
        steps
            .step(LoggingLevel::Info, "Aggregating results".into())
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let done =
            format!("Analysis complete: processed {num_items} items, total score={total_score:.1}");
        steps.step(LoggingLevel::Info, done).await;
        Ok(CallToolResult::structured(json!({
            "items_processed": num_items,
            "total_score": total_score,
            "instance": INSTANCE,
        })))
    }
}

/// The steps of `analyze_data`, told to the client. rmcp sends log
/// notifications on the standalone GET stream (only progress notifications
/// ride a request's own stream), so with a progress token each step is also
/// a progress notification carrying the log line: the request's stream then
/// holds the same steps as on Jetway, where logs ride the request's stream.
struct Steps<'a> {
    peer: &'a Peer<RoleServer>,
    token: Option<rmcp::model::ProgressToken>,
    sent: f64,
}

impl Steps<'_> {
    async fn step(&mut self, level: LoggingLevel, msg: String) {
        if let Some(t) = &self.token {
            self.sent += 1.0;
            let p = ProgressNotificationParam::new(t.clone(), self.sent).with_message(msg.clone());
            let _ = self.peer.notify_progress(p).await;
        }
        let param = LoggingMessageNotificationParam::new(level, json!({"msg": msg}))
            .with_logger("jetway-demo");
        let _ = self.peer.notify_logging_message(param).await;
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_logging()
            .build();
        ServerConfig::new(capabilities).with_server_info(Implementation::new(
            "jetway-baseline",
            env!("CARGO_PKG_VERSION"),
        ))
    }

    /// Accepted, so clients set levels as on Jetway; rmcp does not filter logs.
    async fn set_level(
        &self,
        _request: SetLevelRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        Ok(())
    }
}

/// Serves the demo tools on `listener` at `/mcp` until `shutdown`, with
/// `TCP_NODELAY` on accepted connections, as the Jetway gateway does.
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) -> std::io::Result<()> {
    let config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown.child_token())
        .with_sse_keep_alive(Some(Duration::from_secs(15)));
    let service = StreamableHttpService::new(
        || Ok(DemoServer::new()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new().nest_service("/mcp", service);
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
