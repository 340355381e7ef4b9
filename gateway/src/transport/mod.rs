//! MCP transports served on the gateway's endpoint.
//!
//! - [`streamable_http`] — the legacy-era Streamable HTTP transport
//!   (2025-03-26 … 2025-11-25): POST, GET and DELETE on `/mcp`.
//! - [`http_sse`] — the HTTP+SSE transport of 2024-11-05: `GET /sse` and
//!   `POST /messages`, without sticky sessions.
//! - [`checks`] — everything checked before NATS is touched, as pure
//!   functions (`checks::post` / `get` / `delete`) built from small header
//!   checks (origin, accept, content type, protocol version, session id).
//! - [`respond`] — turning bus readers into SSE or JSON responses.
//! - [`trace`] — the spans of POSTs and GET streams, and their parents.

pub mod checks;
pub mod http_sse;
pub mod publish;
pub mod respond;
pub mod streamable_http;
pub mod trace;
