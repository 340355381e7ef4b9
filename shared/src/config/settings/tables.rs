//! The settings of every Jetway binary: key, default and meaning, in the
//! order README.md's configuration table lists them.

use super::{Binary, Setting};
use crate::service::DEFAULT as DEFAULT_SERVICE;

/// The NATS connection and JetStream resources ([`crate::config::Bus`]):
/// every binary reads them.
pub const BUS: &[Setting] = &[
    Setting::new(
        "nats_url",
        &["nats://127.0.0.1:4222"],
        "NATS server URL(s), comma-separated",
    ),
    Setting::without_value(
        "instance_id",
        "the hostname",
        "name in headers, logs and results",
    ),
    Setting::new(
        "log_format",
        &["text"],
        "`text` or `json` (filter with `RUST_LOG`)",
    ),
    Setting::new(
        "retention_secs",
        &["86400"],
        "how long streams keep messages and KV keeps sessions",
    ),
    Setting::new(
        "replicas",
        &["1"],
        "stream and KV replicas (3 in production)",
    ),
    Setting::new(
        "duplicate_window_secs",
        &["600"],
        "publish deduplication window",
    ),
    Setting::new(
        "nats_timeout_ms",
        &["5000"],
        "JetStream API and publish-ack timeout",
    ),
    Setting::new(
        "stream_max_bytes",
        &["2147483648"],
        "most bytes a session stream stores (2 GiB; `0`: no limit; JetStream reserves it in `max_file_store`); when full, writes get 507",
    ),
    Setting::new(
        "stream_discard",
        &["new"],
        "a full stream: `new` refuses writes (507), `old` drops its oldest messages (breaks their resume and replay)",
    ),
    Setting::new(
        "session_max_messages",
        &["10000"],
        "most messages stored on each subject of one session (its requests; its notifications; each SSE stream) within the retention; more get 507 (`0`: no cap)",
    ),
    Setting::new(
        "kv_max_bytes",
        &["268435456"],
        "most bytes each KV bucket (sessions, state, claims) stores (256 MiB; `0`: no limit; reserved like `stream_max_bytes`)",
    ),
    Setting::without_value(
        "nats_creds_file",
        "none",
        "NATS: a `.creds` file (JWT and NKey seed) to authenticate with",
    ),
    Setting::without_value(
        "nats_nkey_seed_file",
        "none",
        "NATS: a file holding an NKey seed to authenticate with",
    ),
    Setting::without_value("nats_token", "none", "NATS: a token to authenticate with"),
    Setting::without_value(
        "nats_user",
        "none",
        "NATS: a user name, with `nats_password`",
    ),
    Setting::without_value("nats_password", "none", "NATS: the user's password"),
    Setting::without_value(
        "nats_tls_ca_file",
        "none",
        "NATS: CA certificates (PEM) to verify the server with; setting it requires TLS",
    ),
    Setting::without_value(
        "nats_tls_cert_file",
        "none",
        "NATS: client certificate (PEM), with `nats_tls_key_file`",
    ),
    Setting::without_value(
        "nats_tls_key_file",
        "none",
        "NATS: the client certificate's key (PEM)",
    ),
    Setting::without_value(
        "otel_endpoint",
        "none: off, unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set",
        "OTLP collector to export traces to (base URL; `/v1/traces` is added over HTTP)",
    ),
    Setting::without_value(
        "otel_protocol",
        "`OTEL_EXPORTER_OTLP_PROTOCOL`, else `http/protobuf`",
        "OTLP protocol: `grpc` or `http/protobuf`",
    ),
    Setting::without_value(
        "otel_sampling",
        "`OTEL_TRACES_SAMPLER`, else 1.0",
        "ratio of new traces sampled, parent-based (a client's sampled trace is followed)",
    ),
];

/// `jetway-gateway`'s own settings.
pub const GATEWAY: &[Setting] = &[
    Setting::new(
        "services",
        &[DEFAULT_SERVICE],
        "services this gateway serves, comma-separated: the first on `/mcp`, each on `/services/<name>/mcp`",
    ),
    Setting::new("listen", &["127.0.0.1:8080"], "HTTP address"),
    Setting::new(
        "allowed_origins",
        &["http://localhost", "http://127.0.0.1", "http://[::1]"],
        "allowed `Origin` values; `*` allows any",
    )
    .noted("any port"),
    Setting::new(
        "max_body_bytes",
        &["1048576"],
        "larger bodies get 413; lowered to what NATS accepts (its `max_payload` less 8 KiB for headers) if that is less",
    ),
    Setting::without_value(
        "allowed_hosts",
        "loopback names when `listen` is loopback, else any",
        "allowed `Host` values (DNS rebinding), `*` for any; one without a port allows every port",
    ),
    Setting::new(
        "max_batch_messages",
        &["100"],
        "messages in one JSON-RPC batch (2025-03-26 sessions only); more get 400",
    ),
    Setting::new(
        "max_initialize_bytes",
        &["65536"],
        "size of `initialize` params, which the session record keeps; larger get 400",
    ),
    Setting::new(
        "max_connections",
        &["10000"],
        "open connections per gateway; one more is closed at once",
    ),
    Setting::new(
        "header_read_timeout_secs",
        &["10"],
        "a request's headers must arrive within this (slowloris)",
    ),
    Setting::new(
        "body_read_timeout_secs",
        &["30"],
        "a request's body must arrive within this; else 408",
    ),
    Setting::new(
        "idle_timeout_secs",
        &["120"],
        "a connection that reads and writes nothing for this long is closed (SSE keep-alives count)",
    ),
    Setting::new(
        "write_timeout_secs",
        &["30"],
        "a connection whose writes have been stuck this long (the client stopped reading) is closed",
    ),
    Setting::new(
        "max_inflight_per_session",
        &["64"],
        "requests of one session a gateway replica streams at once; more get 429",
    ),
    Setting::new(
        "max_sessions_per_principal",
        &["100"],
        "live sessions of one principal (of one client address when auth is off), counted across replicas; more `initialize`s get 429; 0 is no limit",
    ),
    Setting::new(
        "rate_limit_per_sec",
        &["50"],
        "requests per second of one principal (client address when auth is off) on one gateway replica; more get 429; 0 is no limit",
    ),
    Setting::new(
        "rate_limit_burst",
        &["200"],
        "requests a principal or address may send at once above the rate",
    ),
    Setting::without_value(
        "trusted_proxies",
        "none",
        "CIDRs of load balancers whose `Forwarded`/`X-Forwarded-For` names the client address",
    ),
    Setting::new(
        "json_response",
        &["false"],
        "answer requests with one JSON object instead of SSE",
    ),
    Setting::new(
        "request_timeout_secs",
        &["600"],
        "how long a POST stream waits for its response before ending (the client may resume)",
    ),
    Setting::new(
        "keep_alive_secs",
        &["15"],
        "SSE keep-alive comment interval",
    ),
    Setting::new(
        "sse_poll_secs",
        &["0"],
        "end SSE streams after this long with a `retry` hint (polling)",
    )
    .noted("off"),
    Setting::without_value(
        "public_url",
        "none",
        "the URL clients reach this gateway at (scheme, host, any path prefix), without `/mcp`: names the protected resource when auth is on",
    ),
    Setting::without_value(
        "auth_issuer",
        "off",
        "OAuth: the authorization server whose bearer JWTs the gateway accepts; unset, auth is off",
    ),
    Setting::without_value(
        "auth_jwks_url",
        "from the issuer's metadata",
        "OAuth: where the issuer publishes its signing keys (JWKS)",
    ),
    Setting::without_value(
        "auth_audience",
        "the resource URL",
        "OAuth: the `aud` tokens must carry; by default `public_url` plus the request's path (`…/mcp`)",
    ),
    Setting::new(
        "auth_algorithms",
        &[
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
        ],
        "OAuth: signature algorithms accepted (asymmetric only)",
    ),
    Setting::new(
        "auth_leeway_secs",
        &["30"],
        "OAuth: clock skew allowed on `exp` and `nbf`",
    ),
    Setting::without_value("auth_scopes", "none", "OAuth: scopes every request needs"),
    Setting::without_value(
        "auth_method_scopes",
        "none",
        "OAuth: scopes by method, `method=scope` items (`tools/call=mcp:tools`)",
    ),
    Setting::without_value(
        "auth_tool_scopes",
        "none",
        "OAuth: scopes by tool, `tool=scope` items (`delete_repo=admin`)",
    ),
    Setting::new(
        "auth_jwks_refresh_secs",
        &["300"],
        "OAuth: how old the cached keys may get before they are fetched again (an unknown `kid` fetches at once, at most every 10 s)",
    ),
    Setting::new(
        "auth_fetch_timeout_ms",
        &["5000"],
        "OAuth: timeout of a metadata, JWKS or introspection request",
    ),
    Setting::without_value(
        "auth_introspection_url",
        "off",
        "OAuth: the issuer's RFC 7662 introspection endpoint; set, opaque (non-JWT) bearer tokens are checked there",
    ),
    Setting::without_value(
        "auth_introspection_client_id",
        "none",
        "OAuth: the gateway's client id at the introspection endpoint (HTTP Basic)",
    ),
    Setting::without_value(
        "auth_introspection_client_secret",
        "none",
        "OAuth: the gateway's client secret at the introspection endpoint",
    ),
    Setting::new(
        "auth_introspection_cache_secs",
        &["60"],
        "OAuth: how long an active introspection answer is reused (never past the token's `exp`)",
    ),
    GRACE_PERIOD_SECS,
];

/// `jetway-worker`'s own settings.
pub const WORKER: &[Setting] = &[
    Setting::new(
        "service",
        &[DEFAULT_SERVICE],
        "the service whose requests this worker runs; it names the streams, buckets and consumer on NATS",
    ),
    Setting::new(
        "listen",
        &["127.0.0.1:9090"],
        "HTTP address of the worker's `/healthz`, `/readyz` and `/metrics`",
    ),
    Setting::new(
        "max_concurrency",
        &["64"],
        "requests run at once by one worker (its slots)",
    ),
    Setting::without_value(
        "max_slots_per_session",
        "half of max_concurrency, at least 1",
        "slots one session's requests may hold at once in a worker; its further requests wait in the worker (fairness between sessions)",
    ),
    Setting::new(
        "ack_wait_secs",
        &["2"],
        "lease of a held request; renewed every third of it, so a dead worker's requests go elsewhere after at most this long",
    ),
    Setting::new(
        "deadline_secs",
        &["600"],
        "how long a request may take from the moment it is stored, queueing and re-runs included; then the handler is stopped and the client gets -32004",
    ),
    Setting::new(
        "max_deliver",
        &["5"],
        "executions of a request before it fails with a JSON-RPC error",
    ),
    Setting::new(
        "metrics_max_tool_labels",
        &["50"],
        "distinct tool names the worker's metrics label by; further tools count as `other`",
    ),
    Setting::without_value(
        "upstream_url",
        "none",
        "bridge mode: forward every request to this Streamable HTTP MCP server",
    ),
    Setting::without_value(
        "upstream_cmd",
        "none",
        "bridge mode: the command line of a stdio MCP server to run and forward to",
    ),
    Setting::new(
        "upstream_processes",
        &["4"],
        "stdio upstream processes per bridge worker (one request each at a time); with `upstream_stdio = \"session\"`, the most it runs",
    ),
    Setting::new(
        "upstream_stdio",
        &["shared"],
        "stdio upstream processes: `shared` (a pool serving every session) or `session` (one per session, on one worker)",
    ),
    Setting::new(
        "upstream_idle_secs",
        &["300"],
        "how long a session's own stdio process (`upstream_stdio = \"session\"`) lives without a request",
    ),
    Setting::without_value(
        "upstream_headers",
        "none",
        "headers for every upstream request, `Name: value` (flag `--upstream-header`, repeatable)",
    ),
    Setting::new(
        "upstream_timeout_secs",
        &["30"],
        "how long the upstream may take to start answering a request",
    ),
    Setting::new(
        "upstream_unreachable_secs",
        &["5"],
        "how long an unreachable upstream is retried before the client gets -32001",
    ),
    GRACE_PERIOD_SECS,
];

/// `jetway`'s own settings (the operator CLI).
pub const CLI: &[Setting] = &[Setting::new(
    "service",
    &[DEFAULT_SERVICE],
    "the service whose sessions `jetway` reads",
)];

/// The same for the gateway and the worker (one row in the README).
const GRACE_PERIOD_SECS: Setting =
    Setting::new("grace_period_secs", &["20"], "drain time on SIGTERM");

/// `jetway-gateway`.
pub const JETWAY_GATEWAY: Binary = Binary {
    name: "gateway",
    own: GATEWAY,
    accepts: &[],
};

/// `jetway-worker`.
pub const JETWAY_WORKER: Binary = Binary {
    name: "worker",
    own: WORKER,
    accepts: &[],
};

/// `jetway`, the operator CLI: it accepts the gateway's and the worker's
/// keys in its file (and ignores them), so it can share their TOML file.
pub const JETWAY_CLI: Binary = Binary {
    name: "jetway",
    own: CLI,
    accepts: &[GATEWAY, WORKER],
};

/// Every binary that reads settings.
pub const BINARIES: &[Binary] = &[JETWAY_GATEWAY, JETWAY_WORKER, JETWAY_CLI];
