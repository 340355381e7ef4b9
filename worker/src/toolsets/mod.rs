//! The tool sets `jetway-worker` hosts, as one ordinary rmcp server.
//!
//! - [`demo`] — counters, notes, analysis with progress and logs, session resume.
//! - [`conformance`] — what the official MCP conformance suite's server scenarios call.
//!
//! Results whose rmcp types are non-exhaustive are built from their wire
//! form (the MCP schema), which is what a reader checks them against anyway.

pub mod conformance;
pub mod demo;

use crate::Session;
use jetway_shared::protocol::Transport;
use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler, handler::server::router::tool::ToolRouter,
    model::*, service::RequestContext, tool_handler,
};
use serde_json::{Value, json};
use std::{borrow::Cow, time::Instant};

/// Session state key holding the resource URIs the client subscribed to.
pub const SUBSCRIPTIONS_KEY: &str = "resource_subscriptions";

/// The built-in server: demo and conformance tool sets together.
#[derive(Clone)]
pub struct Builtin {
    tool_router: ToolRouter<Self>,
    started: Instant,
}

impl Default for Builtin {
    fn default() -> Self {
        Self::new()
    }
}

impl Builtin {
    pub fn new() -> Self {
        Self {
            tool_router: Self::demo_router() + Self::conformance_router(),
            started: Instant::now(),
        }
    }
}

pub(crate) fn session_of(ctx: &RequestContext<RoleServer>) -> Result<Session, McpError> {
    ctx.extensions
        .get::<Session>()
        .cloned()
        .ok_or_else(|| McpError::internal_error("request is not running on a Jetway worker", None))
}

/// The version a client asking for `requested` gets on `transport`: the
/// one it asked for if it is served there, else the newest that is.
pub fn negotiate(requested: &str, transport: Transport) -> ProtocolVersion {
    let wanted = jetway_shared::protocol::ProtocolVersion::parse(requested)
        .filter(|v| v.served_on(transport))
        .or_else(|| jetway_shared::protocol::ProtocolVersion::list(transport).next())
        .unwrap_or(jetway_shared::protocol::ProtocolVersion::LATEST);
    ProtocolVersion::KNOWN_VERSIONS
        .iter()
        .find(|v| v.as_str() == wanted.as_str())
        .cloned()
        .unwrap_or(ProtocolVersion::LATEST)
}

pub(crate) fn from_wire<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, McpError> {
    serde_json::from_value(v)
        .map_err(|e| McpError::internal_error(format!("building a result: {e}"), None))
}

#[tool_handler(router = self.tool_router)]
#[allow(deprecated)] // logging is deprecated in the modern era, and still part of the legacy one
impl ServerHandler for Builtin {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_resources_list_changed()
            .enable_prompts()
            .enable_logging()
            .enable_completions()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                "jetway-worker",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Jetway demo server. Tools: increment_counter, get_counter, add_note, list_notes, \
                 get_server_info, get_status, analyze_data, watch_counter, resume_session.",
            )
    }

    /// Negotiates among the versions served on the session's transport: a
    /// Streamable HTTP session never gets 2024-11-05, an HTTP+SSE session
    /// only gets it (rmcp's default negotiation knows no transports).
    async fn initialize(
        &self,
        request: InitializeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        ctx.peer.set_peer_info(request.clone());
        let transport = ctx
            .extensions
            .get::<Transport>()
            .copied()
            .unwrap_or_default();
        let mut info = self.get_info();
        info.protocol_version = negotiate(request.protocol_version.as_str(), transport);
        Ok(info)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Owned(
            ProtocolVersion::KNOWN_VERSIONS
                .iter()
                .filter(|v| {
                    jetway_shared::protocol::ProtocolVersion::parse(v.as_str())
                        .is_some_and(|v| v.served_on(Transport::StreamableHttp))
                })
                .cloned()
                .collect(),
        )
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let session = session_of(&ctx)?;
        let mut resources = conformance::resources();
        resources.push(json!({
            "uri": demo::summary_uri(session.id().as_str()),
            "name": "session-summary",
            "title": "This session's summary",
            "mimeType": "application/json",
        }));
        from_wire(json!({ "resources": resources }))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let mut templates = conformance::resource_templates();
        templates.push(json!({
            "uriTemplate": "resource://session/{session_id}/summary",
            "name": "session-summary",
            "title": "Session summary",
            "description": "Counter, notes and last analysis of a session",
            "mimeType": "application/json",
        }));
        from_wire(json!({ "resourceTemplates": templates }))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let uri = request.uri.as_str();
        let contents = if let Some(id) = uri
            .strip_prefix("resource://session/")
            .and_then(|rest| rest.strip_suffix("/summary"))
        {
            let session = session_of(&ctx)?;
            let summary = demo::summary(&session, id).await?;
            vec![json!({"uri": uri, "mimeType": "application/json", "text": summary.to_string()})]
        } else if let Some(c) = conformance::read_resource(uri) {
            c
        } else {
            return Err(McpError::resource_not_found(
                format!("unknown resource {uri}"),
                Some(json!({"uri": uri})),
            ));
        };
        let result: ReadResourceResult = from_wire(json!({ "contents": contents }))?;
        Ok(ReadResourceResponse::Complete(result))
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let session = session_of(&ctx)?;
        let uri = request.uri.clone();
        session
            .update(SUBSCRIPTIONS_KEY, |s: Option<Vec<String>>| {
                let mut s = s.unwrap_or_default();
                if !s.contains(&uri) {
                    s.push(uri.clone());
                }
                s
            })
            .await?;
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let session = session_of(&ctx)?;
        session
            .update(SUBSCRIPTIONS_KEY, |s: Option<Vec<String>>| {
                let mut s = s.unwrap_or_default();
                s.retain(|u| u != &request.uri);
                s
            })
            .await?;
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        from_wire(json!({ "prompts": conformance::prompts() }))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let args = request
            .arguments
            .clone()
            .map(Value::Object)
            .unwrap_or_else(|| json!({}));
        let result = conformance::get_prompt(&request.name, &args)?;
        Ok(GetPromptResponse::Complete(from_wire(result)?))
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let request = serde_json::to_value(&request)
            .map_err(|e| McpError::invalid_params(e.to_string(), None))?;
        from_wire(json!({ "completion": conformance::complete(&request) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_negotiated_per_transport() {
        let sse = Transport::HttpSse;
        let http = Transport::StreamableHttp;
        assert_eq!(negotiate("2024-11-05", sse).as_str(), "2024-11-05");
        assert_eq!(negotiate("2025-11-25", sse).as_str(), "2024-11-05");
        assert_eq!(negotiate("2024-11-05", http).as_str(), "2025-11-25");
        assert_eq!(negotiate("2025-06-18", http).as_str(), "2025-06-18");
        assert_eq!(negotiate("banana", http).as_str(), "2025-11-25");
    }
}
