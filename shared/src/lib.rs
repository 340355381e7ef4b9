//! What Jetway gateways and workers must agree on.
//!
//! Both sides of the bus import this crate so that a subject, a header or a
//! KV key is spelled in exactly one place:
//!
//! - [`service`] — service names, which scope a deployment's streams, buckets and subjects.
//! - [`subjects`] — session ids, subject names, SSE stream keys and event ids.
//! - [`msg_id`] — every `Nats-Msg-Id`, and what each one deduplicates.
//! - [`headers`] — the NATS header names carried beside each MCP message.
//! - [`jsonrpc`] — JSON-RPC error codes, constructors and message classification.
//! - [`protocol`] — the MCP protocol versions Jetway speaks.
//! - [`backoff`] — the retry delay policy of every loop that tries again.
//! - [`http_sse`] — the HTTP+SSE transport's paths, `endpoint` event and event ids.
//! - [`publish`] — acknowledged publishing with deduplicated retries.
//! - [`kv_write`] — KV compare-and-set writes and reads that survive a leader election.
//! - [`metrics`] — label vocabularies, NATS-side metrics, the Prometheus exposition.
//! - [`session`] — the session record kept in the `jetway_sessions` KV bucket.
//! - [`principal`] — who a session belongs to when clients authenticate.
//! - [`setup`] — idempotent creation of streams, KV buckets and the worker consumer.
//! - [`signal`] — waiting for SIGTERM or Ctrl-C.
//! - [`config`] — settings both binaries share and the figment loading rules.
//! - [`telemetry`] — logs, OTLP trace export and W3C trace context across the bus.
//! - [`tls`] — the crypto provider of the HTTP clients.
//! - [`text`] — client-supplied text made safe for terminals and log lines.

/// An error kept as the source of another when several unrelated error
/// types can cause it (a NATS request, a stream read, a publish).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub mod backoff;
pub mod config;
pub mod headers;
pub mod http_sse;
pub mod jsonrpc;
pub mod kv_write;
pub mod metrics;
pub mod msg_id;
pub mod principal;
pub mod protocol;
pub mod publish;
pub mod service;
pub mod session;
pub mod setup;
pub mod signal;
pub mod subjects;
pub mod telemetry;
pub mod text;
pub mod tls;
