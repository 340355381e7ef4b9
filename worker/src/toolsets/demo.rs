//! The demo tool set: counters, notes, a long analysis with progress and
//! logs, and session resumption — all state in the session's KV state, so
//! every call may land on a different worker. `echo` and `sleep_ms` are the
//! benchmark's tools: the smallest round trip, and a tool that only waits.

// MCP logging is deprecated in the modern era (SEP-2577) but part of the legacy one.
#![allow(deprecated)]

use super::Builtin;
use crate::Session;
use rmcp::{
    ErrorData as McpError, Peer, RoleServer,
    handler::server::{common::Extension, wrapper::Parameters},
    model::{
        CallToolResult, LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam,
    },
    service::RequestContext,
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

/// Result of `analyze_data`, also stored in session state as `analysis_result`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AnalysisResult {
    pub total_score: f64,
    pub items_processed: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct AddNote {
    /// Text of the note.
    pub note: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct AnalyzeData {
    /// Number of items to analyze (0–1000).
    pub num_items: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct Echo {
    /// Text to send back.
    pub text: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct EmitLogs {
    /// How many log notifications to send (at most 1000).
    pub count: u64,
    /// Bytes of text in each (at most 65536).
    pub bytes: usize,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SleepMs {
    /// How long to sleep, in milliseconds (at most 10000).
    pub ms: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WatchCounter {
    /// How long to watch, in seconds (at most 30).
    pub duration_seconds: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ResumeSession {
    /// Id of the session whose state to copy into this one.
    pub old_session_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Change {
    from: i64,
    to: i64,
    at: String,
}

const MAX_ANALYZE_ITEMS: u64 = 1000;
const MAX_WATCH_SECS: u64 = 30;
const MAX_SLEEP_MS: u64 = 10_000;
const MAX_EMIT_LOGS: u64 = 1000;
const MAX_EMIT_BYTES: usize = 64 * 1024;

#[tool_router(router = demo_router, vis = "pub(crate)")]
impl Builtin {
    #[tool(description = "Atomically increment this session's counter and return it.")]
    async fn increment_counter(
        &self,
        Extension(session): Extension<Session>,
    ) -> Result<CallToolResult, McpError> {
        let counter = session
            .update("counter", |c: Option<i64>| c.unwrap_or(0) + 1)
            .await?;
        self.changed(&session).await;
        Ok(structured(
            json!({"counter": counter, "instance": session.instance_id()}),
        ))
    }

    #[tool(description = "Return this session's counter.")]
    async fn get_counter(
        &self,
        Extension(session): Extension<Session>,
    ) -> Result<CallToolResult, McpError> {
        let counter: i64 = session.get("counter").await?.unwrap_or(0);
        Ok(structured(
            json!({"counter": counter, "instance": session.instance_id()}),
        ))
    }

    #[tool(description = "Append a note to this session's notes.")]
    async fn add_note(
        &self,
        Extension(session): Extension<Session>,
        Parameters(AddNote { note }): Parameters<AddNote>,
    ) -> Result<CallToolResult, McpError> {
        let notes = session
            .update("notes", |n: Option<Vec<String>>| {
                let mut n = n.unwrap_or_default();
                n.push(note.clone());
                n
            })
            .await?;
        self.changed(&session).await;
        Ok(structured(
            json!({"notes_count": notes.len(), "instance": session.instance_id()}),
        ))
    }

    #[tool(description = "List this session's notes in insertion order.")]
    async fn list_notes(
        &self,
        Extension(session): Extension<Session>,
    ) -> Result<CallToolResult, McpError> {
        let notes: Vec<String> = session.get("notes").await?.unwrap_or_default();
        Ok(structured(
            json!({"notes": notes, "instance": session.instance_id()}),
        ))
    }

    #[tool(description = "Send the text back, naming the worker: the smallest round trip.")]
    async fn echo(
        &self,
        Extension(session): Extension<Session>,
        Parameters(Echo { text }): Parameters<Echo>,
    ) -> Result<CallToolResult, McpError> {
        Ok(structured(
            json!({"text": text, "instance": session.instance_id()}),
        ))
    }

    #[tool(
        description = "Send count log notifications of bytes bytes each (max 1000 × 64 KiB), then answer: a large stream, for testing clients that read slowly."
    )]
    async fn emit_logs(
        &self,
        Parameters(EmitLogs { count, bytes }): Parameters<EmitLogs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        if count > MAX_EMIT_LOGS || bytes > MAX_EMIT_BYTES {
            return Err(McpError::invalid_params(
                format!("count must be at most {MAX_EMIT_LOGS}, bytes at most {MAX_EMIT_BYTES}"),
                None,
            ));
        }
        let text = "x".repeat(bytes);
        for i in 0..count {
            log(&ctx.peer, LoggingLevel::Info, format!("{i} {text}")).await;
        }
        Ok(structured(json!({"sent": count})))
    }

    #[tool(description = "Sleep ms milliseconds (max 10000): a tool that waits, not computes.")]
    async fn sleep_ms(
        &self,
        Extension(session): Extension<Session>,
        Parameters(SleepMs { ms }): Parameters<SleepMs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        if ms > MAX_SLEEP_MS {
            return Err(McpError::invalid_params(
                format!("ms must be at most {MAX_SLEEP_MS}"),
                None,
            ));
        }
        pause(&ctx, ms).await?;
        Ok(structured(
            json!({"slept_ms": ms, "instance": session.instance_id()}),
        ))
    }

    #[tool(description = "Name the worker serving this call and count active sessions.")]
    async fn get_server_info(
        &self,
        Extension(session): Extension<Session>,
    ) -> Result<CallToolResult, McpError> {
        let sessions = session.active_sessions().await?;
        Ok(structured(
            json!({"instance": session.instance_id(), "sessions": sessions}),
        ))
    }

    #[tool(description = "Worker status: instance, uptime, active sessions, time.")]
    async fn get_status(
        &self,
        Extension(session): Extension<Session>,
    ) -> Result<CallToolResult, McpError> {
        let active = session.active_sessions().await?;
        Ok(structured(json!({
            "instance": session.instance_id(),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "active_sessions": active,
            "timestamp": now(),
        })))
    }

    #[tool(
        description = "Analyze num_items items, reporting progress and logs; stores the result in session state."
    )]
    async fn analyze_data(
        &self,
        Extension(session): Extension<Session>,
        Parameters(AnalyzeData { num_items }): Parameters<AnalyzeData>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        if num_items > MAX_ANALYZE_ITEMS {
            return Err(McpError::invalid_params(
                format!("num_items must be at most {MAX_ANALYZE_ITEMS}"),
                None,
            ));
        }
        let instance = session.instance_id().to_owned();
        let peer = &ctx.peer;
        let token = ctx.meta.get_progress_token();
        let progress = |i: u64| {
            let token = token.clone();
            async move {
                if let Some(t) = token {
                    let p =
                        ProgressNotificationParam::new(t, i as f64).with_total(num_items as f64);
                    let _ = peer.notify_progress(p).await;
                }
            }
        };
        log(
            peer,
            LoggingLevel::Info,
            format!("Starting analysis of {num_items} items on {instance}"),
        )
        .await;
        log(peer, LoggingLevel::Debug, "Phase 1: loading items".into()).await;
        pause(&ctx, 500).await?;
        let mut total_score = 0.0;
        log(peer, LoggingLevel::Debug, "Phase 2: scoring items".into()).await;
        // Items are numbered 1..=N, as in the reference server: item i
        // scores 1.5·i, so N items total 1.5·N(N+1)/2.
        for i in 1..=num_items {
            progress(i - 1).await;
            pause(&ctx, 300).await?;
            let score = 1.5 * i as f64;
            total_score += score;
            log(
                peer,
                LoggingLevel::Debug,
                format!("Processed item {i}: score={score:.1}"),
            )
            .await;
        }
        progress(num_items).await;
        log(peer, LoggingLevel::Info, "Aggregating results".into()).await;
        pause(&ctx, 300).await?;
        let result = AnalysisResult {
            total_score,
            items_processed: num_items,
        };
        session.put("analysis_result", &result).await?;
        self.changed(&session).await;
        log(
            peer,
            LoggingLevel::Info,
            format!("Analysis complete: processed {num_items} items, total score={total_score:.1}"),
        )
        .await;
        Ok(structured(json!({
            "items_processed": num_items,
            "total_score": total_score,
            "instance": instance,
        })))
    }

    #[tool(
        description = "Watch this session's counter for duration_seconds (max 30), logging each change."
    )]
    async fn watch_counter(
        &self,
        Extension(session): Extension<Session>,
        Parameters(WatchCounter { duration_seconds }): Parameters<WatchCounter>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        if duration_seconds > MAX_WATCH_SECS {
            return Err(McpError::invalid_params(
                format!("duration_seconds must be at most {MAX_WATCH_SECS}"),
                None,
            ));
        }
        let token = ctx.meta.get_progress_token();
        let polls = duration_seconds * 2;
        let mut last: i64 = session.get("counter").await?.unwrap_or(0);
        let mut changes = Vec::new();
        for poll in 1..=polls {
            pause(&ctx, 500).await?;
            let now_value: i64 = session.get("counter").await?.unwrap_or(0);
            if now_value != last {
                log(
                    &ctx.peer,
                    LoggingLevel::Info,
                    format!("Counter changed: {last} -> {now_value}"),
                )
                .await;
                changes.push(Change {
                    from: last,
                    to: now_value,
                    at: now(),
                });
                last = now_value;
            }
            if let Some(t) = &token {
                let p =
                    ProgressNotificationParam::new(t.clone(), poll as f64).with_total(polls as f64);
                let _ = ctx.peer.notify_progress(p).await;
            }
        }
        Ok(structured(json!({
            "changes": changes,
            "total_changes": changes.len(),
            "instance": session.instance_id(),
        })))
    }

    #[tool(description = "Copy the state of an earlier session into this one.")]
    async fn resume_session(
        &self,
        Extension(session): Extension<Session>,
        Parameters(ResumeSession { old_session_id }): Parameters<ResumeSession>,
    ) -> Result<CallToolResult, McpError> {
        if old_session_id == session.id().as_str() {
            return Ok(structured(json!({"status": "same_session"})));
        }
        let Ok(old) =
            jetway_shared::subjects::SessionId::parse(session.id().service(), &old_session_id)
        else {
            return Ok(tool_error(format!(
                "'{old_session_id}' is not a Jetway session id"
            )));
        };
        if !session.exists(&old).await? {
            return Ok(tool_error(format!(
                "session {old_session_id} not found (never existed or expired)"
            )));
        }
        let keys_copied = session.copy_state_from(&old).await?;
        self.changed(&session).await;
        Ok(structured(
            json!({"status": "resumed", "keys_copied": keys_copied}),
        ))
    }
}

impl Builtin {
    /// The summary resource of a session changed: tell the session if it
    /// subscribed to it.
    async fn changed(&self, session: &Session) {
        let uri = summary_uri(session.id().as_str());
        if let Ok(Some(subs)) = session.get::<Vec<String>>(super::SUBSCRIPTIONS_KEY).await
            && subs.contains(&uri)
        {
            let _ = session
                .notify("notifications/resources/updated", json!({"uri": uri}))
                .await;
        }
    }
}

/// URI of a session's summary resource.
pub fn summary_uri(session_id: &str) -> String {
    format!("resource://session/{session_id}/summary")
}

/// The summary resource of `session_id`, read through `session`.
pub async fn summary(session: &Session, session_id: &str) -> Result<Value, McpError> {
    let id = jetway_shared::subjects::SessionId::parse(session.id().service(), session_id)
        .map_err(|_| McpError::resource_not_found(format!("no session {session_id}"), None))?;
    if !session.exists(&id).await? {
        return Err(McpError::resource_not_found(
            format!("no session {session_id}"),
            None,
        ));
    }
    let counter: i64 = session.get_of(&id, "counter").await?.unwrap_or(0);
    let notes: Vec<String> = session.get_of(&id, "notes").await?.unwrap_or_default();
    let analysis: Option<AnalysisResult> = session.get_of(&id, "analysis_result").await?;
    Ok(json!({
        "session_id": session_id,
        "counter": counter,
        "notes": notes,
        "analysis_result": analysis,
        "instance": session.instance_id(),
    }))
}

fn structured(v: Value) -> CallToolResult {
    CallToolResult::structured(v)
}

fn tool_error(message: String) -> CallToolResult {
    CallToolResult::error(vec![rmcp::model::ContentBlock::text(message)])
}

#[allow(deprecated)]
async fn log(peer: &Peer<RoleServer>, level: LoggingLevel, msg: String) {
    let param =
        LoggingMessageNotificationParam::new(level, json!({"msg": msg})).with_logger("jetway-demo");
    let _ = peer.notify_logging_message(param).await;
}

/// Sleeps, unless the client cancels the request first.
async fn pause(ctx: &RequestContext<RoleServer>, ms: u64) -> Result<(), McpError> {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(()),
        _ = ctx.ct.cancelled() => Err(McpError::internal_error("request cancelled", None)),
    }
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
