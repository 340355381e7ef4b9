//! What the official MCP conformance suite's server scenarios call
//! (`@modelcontextprotocol/conformance` 0.1.16): tools, resources, prompts
//! and completions with the fixtures its checks expect.

// MCP logging is deprecated in the modern era (SEP-2577) but part of the legacy one.
#![allow(deprecated)]

use super::Builtin;
use rmcp::{
    ErrorData as McpError, RoleServer,
    handler::server::wrapper::Parameters,
    model::{
        CallToolResult, ClientResult, ContentBlock, CustomRequest, LoggingLevel,
        LoggingMessageNotificationParam, ProgressNotificationParam, ServerRequest,
    },
    service::RequestContext,
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::{sync::Arc, time::Duration};

/// A 1×1 red PNG.
pub const PNG_1X1_RED: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A minimal WAV file.
pub const WAV_MINIMAL: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SamplingArgs {
    /// The prompt to send to the LLM
    pub prompt: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ElicitationArgs {
    /// The message to show the user
    pub message: String,
}

/// Arguments of `json_schema_2020_12_tool`, as its input schema describes
/// them: both optional, nothing else allowed at the top level.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSchema2020Args {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
}

/// The `address` of `json_schema_2020_12_tool` (`#/$defs/address`).
#[derive(Debug, Deserialize, Serialize)]
pub struct Address {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
}

/// The `inputSchema` of `json_schema_2020_12_tool`, written by hand exactly
/// as the suite's `json-schema-2020-12` scenario (SEP-1613) prescribes: a
/// `$schema` naming draft 2020-12, `$defs` with an `address` that a property
/// `$ref`s, and `additionalProperties: false`. A schema generated from the
/// argument types would lose `$schema` (rmcp strips it) and name its
/// definitions differently; the scenario checks that all three keywords
/// reach the client as written.
pub fn json_schema_2020_12_input() -> Arc<rmcp::model::JsonObject> {
    let Value::Object(schema) = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "type": "object",
                "properties": {
                    "street": {"type": "string"},
                    "city": {"type": "string"},
                },
            },
        },
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/address"},
        },
        "additionalProperties": false,
    }) else {
        unreachable!("json! of an object literal is an object")
    };
    Arc::new(schema)
}

fn content(blocks: Value) -> Result<CallToolResult, McpError> {
    super::from_wire(json!({ "content": blocks }))
}

async fn elicit(ctx: &RequestContext<RoleServer>, params: Value) -> Result<Value, McpError> {
    let request =
        ServerRequest::CustomRequest(CustomRequest::new("elicitation/create", Some(params)));
    let result = ctx
        .peer
        .send_request(request)
        .await
        .map_err(|e| McpError::internal_error(format!("elicitation failed: {e}"), None))?;
    Ok(client_result_json(result))
}

fn client_result_json(r: ClientResult) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

#[tool_router(router = conformance_router, vis = "pub(crate)")]
impl Builtin {
    #[tool(description = "Returns a simple text response")]
    async fn test_simple_text(&self) -> Result<CallToolResult, McpError> {
        content(json!([{"type": "text", "text": "This is a simple text response for testing."}]))
    }

    #[tool(description = "Returns an image")]
    async fn test_image_content(&self) -> Result<CallToolResult, McpError> {
        content(json!([{"type": "image", "data": PNG_1X1_RED, "mimeType": "image/png"}]))
    }

    #[tool(description = "Returns audio")]
    async fn test_audio_content(&self) -> Result<CallToolResult, McpError> {
        content(json!([{"type": "audio", "data": WAV_MINIMAL, "mimeType": "audio/wav"}]))
    }

    #[tool(description = "Returns an embedded resource")]
    async fn test_embedded_resource(&self) -> Result<CallToolResult, McpError> {
        content(json!([{"type": "resource", "resource": {
            "uri": "test://embedded-resource", "mimeType": "text/plain",
            "text": "This is an embedded resource content."}}]))
    }

    #[tool(description = "Returns text, image and resource content")]
    async fn test_multiple_content_types(&self) -> Result<CallToolResult, McpError> {
        content(json!([
            {"type": "text", "text": "Multiple content types test:"},
            {"type": "image", "data": PNG_1X1_RED, "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "test://mixed-content-resource",
                "mimeType": "application/json", "text": "{\"test\":\"data\",\"value\":123}"}},
        ]))
    }

    #[tool(description = "Sends log messages while it runs")]
    async fn test_tool_with_logging(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        for (i, text) in [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed",
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let p = LoggingMessageNotificationParam::new(LoggingLevel::Info, json!(text))
                .with_logger("conformance-test-server");
            let _ = ctx.peer.notify_logging_message(p).await;
        }
        content(json!([{"type": "text", "text": "Tool with logging executed successfully"}]))
    }

    #[tool(description = "Reports progress while it runs")]
    async fn test_tool_with_progress(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let token = ctx.meta.get_progress_token();
        if let Some(token) = &token {
            for (i, step) in [0.0, 50.0, 100.0].into_iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let mut p = ProgressNotificationParam::new(token.clone(), step).with_total(100.0);
                p.message = Some(format!("Completed step {step} of 100"));
                let _ = ctx.peer.notify_progress(p).await;
            }
        }
        let text = token
            .map(|t| match serde_json::to_value(&t).unwrap_or(Value::Null) {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .unwrap_or_default();
        content(json!([{"type": "text", "text": text}]))
    }

    #[tool(description = "Always returns a tool error result")]
    async fn test_error_handling(&self) -> Result<CallToolResult, McpError> {
        Ok(CallToolResult::error(vec![ContentBlock::text(
            "This tool intentionally returns an error for testing",
        )]))
    }

    #[tool(description = "Asks the client's LLM to complete a prompt (sampling)")]
    async fn test_sampling(
        &self,
        Parameters(SamplingArgs { prompt }): Parameters<SamplingArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let params = json!({
            "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
            "maxTokens": 100,
        });
        let request = ServerRequest::CustomRequest(CustomRequest::new(
            "sampling/createMessage",
            Some(params),
        ));
        let result = ctx
            .peer
            .send_request(request)
            .await
            .map_err(|e| McpError::internal_error(format!("sampling failed: {e}"), None))?;
        let result = client_result_json(result);
        let text = result
            .pointer("/content/text")
            .and_then(Value::as_str)
            .unwrap_or("");
        content(json!([{"type": "text", "text": format!("LLM response: {text}")}]))
    }

    #[tool(description = "Asks the user for input (elicitation)")]
    async fn test_elicitation(
        &self,
        Parameters(ElicitationArgs { message }): Parameters<ElicitationArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let result = elicit(
            &ctx,
            json!({
                "message": message,
                "requestedSchema": {
                    "type": "object",
                    "properties": {
                        "username": {"type": "string", "description": "User's response"},
                        "email": {"type": "string", "description": "User's email address"},
                    },
                    "required": ["username", "email"],
                },
            }),
        )
        .await?;
        content(json!([{"type": "text", "text": format!(
            "User response: action={}, content={}",
            result.get("action").and_then(Value::as_str).unwrap_or(""),
            result.get("content").cloned().unwrap_or(json!({})),
        )}]))
    }

    #[tool(
        description = "Tool with JSON Schema 2020-12 features",
        input_schema = json_schema_2020_12_input()
    )]
    async fn json_schema_2020_12_tool(
        &self,
        Parameters(args): Parameters<JsonSchema2020Args>,
    ) -> Result<CallToolResult, McpError> {
        let args = serde_json::to_value(&args).unwrap_or(Value::Null);
        content(json!([{"type": "text", "text": format!(
            "JSON Schema 2020-12 tool called with {args}"
        )}]))
    }

    #[tool(description = "Elicitation whose fields carry defaults (SEP-1034)")]
    async fn test_elicitation_sep1034_defaults(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let result = elicit(&ctx, json!({
            "message": "Please review and update the form fields with defaults",
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "User name", "default": "John Doe"},
                    "age": {"type": "integer", "description": "User age", "default": 30},
                    "score": {"type": "number", "description": "User score", "default": 95.5},
                    "status": {"type": "string", "description": "User status",
                        "enum": ["active", "inactive", "pending"], "default": "active"},
                    "verified": {"type": "boolean", "description": "Verification status", "default": true},
                },
                "required": [],
            },
        }))
        .await?;
        completed(result)
    }

    #[tool(description = "Elicitation with every enum form (SEP-1330)")]
    async fn test_elicitation_sep1330_enums(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let result = elicit(&ctx, json!({
            "message": "Please select options from the enum fields",
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "untitledSingle": {"type": "string", "description": "Select one option",
                        "enum": ["option1", "option2", "option3"]},
                    "titledSingle": {"type": "string", "description": "Select one option with titles",
                        "oneOf": [{"const": "value1", "title": "First Option"},
                                  {"const": "value2", "title": "Second Option"},
                                  {"const": "value3", "title": "Third Option"}]},
                    "legacyEnum": {"type": "string", "description": "Select one option (legacy)",
                        "enum": ["opt1", "opt2", "opt3"],
                        "enumNames": ["Option One", "Option Two", "Option Three"]},
                    "untitledMulti": {"type": "array", "description": "Select multiple options",
                        "minItems": 1, "maxItems": 3,
                        "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                    "titledMulti": {"type": "array", "description": "Select multiple options with titles",
                        "minItems": 1, "maxItems": 3,
                        "items": {"anyOf": [{"const": "value1", "title": "First Choice"},
                                            {"const": "value2", "title": "Second Choice"},
                                            {"const": "value3", "title": "Third Choice"}]}},
                },
                "required": [],
            },
        }))
        .await?;
        completed(result)
    }
}

fn completed(result: Value) -> Result<CallToolResult, McpError> {
    content(json!([{"type": "text", "text": format!(
        "Elicitation completed: action={}, content={}",
        result.get("action").and_then(Value::as_str).unwrap_or(""),
        result.get("content").cloned().unwrap_or(json!({})),
    )}]))
}

/// Resources listed by `resources/list`.
pub fn resources() -> Vec<Value> {
    vec![
        json!({"uri": "test://static-text", "name": "static-text", "title": "Static Text Resource",
               "description": "A static text resource for testing", "mimeType": "text/plain"}),
        json!({"uri": "test://static-binary", "name": "static-binary", "title": "Static Binary Resource",
               "description": "A static binary resource (image) for testing", "mimeType": "image/png"}),
        json!({"uri": "test://watched-resource", "name": "watched-resource", "title": "Watched Resource",
               "description": "A resource clients can subscribe to", "mimeType": "text/plain"}),
    ]
}

/// Templates listed by `resources/templates/list`.
pub fn resource_templates() -> Vec<Value> {
    vec![
        json!({"uriTemplate": "test://template/{id}/data", "name": "template",
                "title": "Template Resource", "description": "A templated resource for testing",
                "mimeType": "application/json"}),
    ]
}

/// Contents of a conformance resource, or `None` if `uri` is not one.
pub fn read_resource(uri: &str) -> Option<Vec<Value>> {
    let one = match uri {
        "test://static-text" => json!({"uri": uri, "mimeType": "text/plain",
            "text": "This is the content of the static text resource."}),
        "test://static-binary" => json!({"uri": uri, "mimeType": "image/png", "blob": PNG_1X1_RED}),
        "test://watched-resource" => {
            json!({"uri": uri, "mimeType": "text/plain", "text": "Watched resource content"})
        }
        _ => {
            let id = uri
                .strip_prefix("test://template/")?
                .strip_suffix("/data")?;
            if id.is_empty() || id.contains('/') {
                return None;
            }
            let text =
                json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
            json!({"uri": uri, "mimeType": "application/json", "text": text.to_string()})
        }
    };
    Some(vec![one])
}

/// Prompts listed by `prompts/list`.
pub fn prompts() -> Vec<Value> {
    vec![
        json!({"name": "test_simple_prompt", "title": "Simple Prompt", "description": "A simple prompt without arguments"}),
        json!({"name": "test_prompt_with_arguments", "title": "Prompt With Arguments",
               "description": "A prompt with required arguments",
               "arguments": [{"name": "arg1", "description": "First test argument", "required": true},
                             {"name": "arg2", "description": "Second test argument", "required": true}]}),
        json!({"name": "test_prompt_with_embedded_resource", "title": "Prompt With Embedded Resource",
               "description": "A prompt that embeds a resource",
               "arguments": [{"name": "resourceUri", "description": "URI of the resource to embed", "required": true}]}),
        json!({"name": "test_prompt_with_image", "title": "Prompt With Image", "description": "A prompt that includes an image"}),
    ]
}

/// The result of `prompts/get`.
pub fn get_prompt(name: &str, args: &Value) -> Result<Value, McpError> {
    let arg = |k: &str| -> Result<String, McpError> {
        args.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| McpError::invalid_params(format!("missing required argument {k}"), None))
    };
    let user = |content: Value| json!({"role": "user", "content": content});
    let messages = match name {
        "test_simple_prompt" => vec![user(
            json!({"type": "text", "text": "This is a simple prompt for testing."}),
        )],
        "test_prompt_with_arguments" => {
            let (a1, a2) = (arg("arg1")?, arg("arg2")?);
            vec![user(
                json!({"type": "text", "text": format!("Prompt with arguments: arg1='{a1}', arg2='{a2}'")}),
            )]
        }
        "test_prompt_with_embedded_resource" => {
            let uri = arg("resourceUri")?;
            vec![
                user(
                    json!({"type": "resource", "resource": {"uri": uri, "mimeType": "text/plain",
                    "text": "Embedded resource content for testing."}}),
                ),
                user(
                    json!({"type": "text", "text": "Please process the embedded resource above."}),
                ),
            ]
        }
        "test_prompt_with_image" => vec![
            user(json!({"type": "image", "data": PNG_1X1_RED, "mimeType": "image/png"})),
            user(json!({"type": "text", "text": "Please analyze the image above."})),
        ],
        other => {
            return Err(McpError::invalid_params(
                format!("unknown prompt {other}"),
                None,
            ));
        }
    };
    Ok(json!({ "messages": messages }))
}

/// The `completion` of `completion/complete`: prompt argument values that
/// start with what the user typed.
pub fn complete(request: &Value) -> Value {
    let name = request
        .pointer("/ref/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let arg = request
        .pointer("/argument/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let typed = request
        .pointer("/argument/value")
        .and_then(Value::as_str)
        .unwrap_or("");
    let candidates: &[&str] = match (name, arg) {
        ("test_prompt_with_arguments", "arg1" | "arg2") => &["test", "testValue1", "testValue2"],
        _ => &[],
    };
    let values: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|c| c.starts_with(typed))
        .collect();
    json!({"values": values, "total": values.len(), "hasMore": false})
}
