//! The `jetway` command line: subcommands and their flags.
//!
//! The bus flags (`--nats-url`, `--config`, …) are the ones every Jetway
//! binary takes ([`CommonArgs`]); they are global, so they may follow the
//! subcommand (`jetway replay 0-… --nats-url nats://…`).

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use jetway_shared::config::CommonArgs;
use serde::Serialize;

/// Flags of `jetway`.
#[derive(Debug, Clone, Parser, Serialize)]
#[command(
    name = "jetway",
    version,
    about = "Jetway operator CLI: list, inspect, replay, redrive and delete MCP sessions \
             straight from the JetStream stream"
)]
pub struct Cli {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
    /// The service whose sessions to read (its streams and buckets on NATS). [default: default]
    #[arg(long, value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Colour in human-readable output: `auto` (only on a terminal, and not
    /// when NO_COLOR is set), `always` or `never`.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    #[serde(skip)]
    pub color: ColorWhen,
    #[command(subcommand)]
    #[serde(skip)]
    pub command: Command,
}

impl Cli {
    /// Parses the process arguments; bus flags are accepted before or after
    /// the subcommand. Exits with usage help on bad flags, like clap does.
    pub fn parse_args() -> Self {
        let command = Self::command().mut_args(|a| a.global(true));
        let matches = command.get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

/// When to colour human-readable output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// List, show or delete sessions.
    #[command(subcommand)]
    Sessions(SessionsCmd),
    /// Print a session's transcript in stream order, both directions; or
    /// re-send its client requests through a gateway (`--redrive`).
    Replay(ReplayArgs),
}

#[derive(Debug, Clone, Subcommand)]
pub enum SessionsCmd {
    /// Every session: created, last activity, client, protocol, state, message counts.
    List(ListArgs),
    /// One session's record and its streams (the GET stream, one per request).
    Show(ShowArgs),
    /// End a session (record closed) and purge its messages and state.
    Delete(DeleteArgs),
}

/// Session states to filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateFilter {
    Initializing,
    Active,
    Closed,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Only sessions in this state.
    #[arg(long, value_name = "STATE")]
    pub state: Option<StateFilter>,
    /// Only sessions created longer ago than this (e.g. `1h`, `2days`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub older_than: Option<std::time::Duration>,
    /// Only sessions created more recently than this (e.g. `10m`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub newer_than: Option<std::time::Duration>,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// Session id (`<partition>-<32 hex digits>`).
    pub id: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// Session id (`<partition>-<32 hex digits>`).
    pub id: String,
}

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// Session id (`<partition>-<32 hex digits>`).
    pub id: String,
    /// JSON Lines: one raw message per line with its metadata.
    #[arg(long)]
    pub json: bool,
    /// Keep tailing live messages after the stored ones (Ctrl-C stops; a
    /// session-closed marker ends it).
    #[arg(long, conflicts_with = "redrive")]
    pub follow: bool,
    /// Only messages stored at or after this time: a duration ago (`10m`) or
    /// an RFC 3339 time (`2026-01-02T03:04:05Z`).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only messages stored at or before this time (same forms as `--since`).
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only one SSE stream: `get`, or a request's stream key `r<16 hex>`
    /// (with the request that opened it and the client's answers to it).
    #[arg(long, value_name = "KEY", conflicts_with = "request")]
    pub stream: Option<String>,
    /// Only one request's exchange, by JSON-RPC id (`7`, or `"7"` for a
    /// string id): the request, its POST stream, the client's answers to its
    /// server→client requests, and its cancellation.
    #[arg(long, value_name = "ID")]
    pub request: Option<String>,
    /// Re-send the session's client messages as a new session through
    /// `--gateway` and compare each result with the recorded one.
    #[arg(long, requires = "gateway",
          conflicts_with_all = ["since", "until", "stream", "request"])]
    pub redrive: bool,
    /// Gateway MCP endpoint for `--redrive` (e.g. `http://127.0.0.1:8080/mcp`).
    #[arg(long, value_name = "URL")]
    pub gateway: Option<String>,
    /// `--redrive`: also treat these result fields as volatile (repeatable;
    /// `instance`, `timestamp`, `uptime_seconds`, `at`, `sessions`,
    /// `active_sessions` always are).
    #[arg(long, value_name = "FIELD")]
    pub volatile: Vec<String>,
    /// `--redrive`: how long to wait for one result.
    #[arg(long, value_name = "DURATION", default_value = "60s",
          value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}
