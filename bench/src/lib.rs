//! Jetway's benchmark: Jetway against the same MCP tools served directly by
//! the official Rust SDK (rmcp), side by side in one run, every headline
//! figure a ratio against that baseline.
//!
//! `jetway-bench all` starts everything itself — a nats-server per scenario
//! (temp store, random ports), gateways, workers and the `jetway-baseline`
//! server — drives them with a load generator that speaks the legacy-era
//! Streamable HTTP protocol like a real client, prints a Markdown report and
//! writes it as JSON. `--smoke` runs every scenario with tiny counts.
//!
//! Layout:
//! - [`run`] — the `all` command: options, running the scenarios, the report files.
//! - [`scenarios`] — one module per scenario of the issue.
//! - [`client`] — the MCP client (initialize, tools/call over SSE, GET, resume).
//! - [`load`] — the closed-loop load generator (N sessions × C requests).
//! - [`stack`] — the nats-server, gateway, worker and baseline processes of a
//!   scenario, started and stopped by `jetway-harness`.
//! - [`usage`] — what a process costs: RSS and CPU time from `/proc`.
//! - [`baseline`] — the rmcp Streamable HTTP server of `jetway-baseline`.
//! - [`stats`] — percentiles and ratios; [`report`] — Markdown and JSON.
//! - [`otlp_sink`] — the local OTLP/HTTP sink of `--traces`.

pub mod baseline;
pub mod client;
pub mod load;
pub mod otlp_sink;
pub mod report;
pub mod run;
pub mod scenarios;
pub mod stack;
pub mod stats;
pub mod usage;
