//! `jetway`, the operator CLI: reads MCP sessions straight from the
//! JetStream stream that holds them, from any machine that can reach NATS,
//! without logging having been turned on.
//!
//! Commands (`jetway --help`):
//! - `sessions list` — every session: created, last activity, client,
//!   protocol, state, messages in each direction ([`sessions::list`]).
//! - `sessions show <id>` — the record and the session's streams with each
//!   request's status and event count ([`sessions::show`]).
//! - `sessions delete <id>` — close the record, purge messages and state
//!   ([`sessions::delete`]).
//! - `replay <id>` — the transcript in stream order, aligned text or JSON
//!   Lines, `--follow`, `--since`/`--until`, `--stream`, `--request`
//!   ([`replay`]).
//! - `replay <id> --redrive --gateway <url>` — re-send the recorded client
//!   traffic through a gateway and compare results ([`redrive`]).
//!
//! Layout:
//! - [`args`] — flags; [`config`] — `cli::Config` (the shared figment rules).
//! - [`bus`] — connecting (fails fast) and the stream / KV handles.
//! - [`message`] — one stored message: subject, direction, stream, event id,
//!   instance, JSON-RPC kind, control markers.
//! - [`output`], [`timefmt`] — colour, tables, times.
//! - [`error`] — `CliError`, one line per failure.

pub mod args;
pub mod bus;
pub mod config;
pub mod error;
pub mod message;
pub mod output;
pub mod redrive;
pub mod replay;
pub mod sessions;
pub mod timefmt;

use args::{Cli, Command, SessionsCmd};
use bus::Bus;
use config::Config;
use error::CliError;
use output::Style;
use std::io::Write;

/// How a command that ran to the end turned out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    Ok,
    /// `--redrive` found results that differ from the recording.
    Differs {
        differing: usize,
    },
}

/// Runs one command, writing its output to `out`.
pub async fn run(cli: &Cli, config: &Config, out: &mut impl Write) -> Result<Finished, CliError> {
    let style = Style::for_stdout(cli.color);
    // Refuse a malformed id before touching the network.
    if let Some(id) = session_arg(&cli.command) {
        sessions::parse_id(&config.service, id)?;
    }
    let bus = Bus::connect(config).await?;
    match &cli.command {
        Command::Sessions(SessionsCmd::List(a)) => {
            sessions::list::run(&bus, a, &style, out).await?
        }
        Command::Sessions(SessionsCmd::Show(a)) => {
            sessions::show::run(&bus, a, &style, out).await?
        }
        Command::Sessions(SessionsCmd::Delete(a)) => {
            sessions::delete::run(&bus, &a.id, out).await?
        }
        Command::Replay(a) => match (a.redrive, &a.gateway) {
            (true, Some(gateway)) => {
                let differing = redrive::run(&bus, a, gateway, style, out).await?;
                if differing > 0 {
                    return Ok(Finished::Differs { differing });
                }
            }
            _ => replay::run(&bus, a, style, out).await?,
        },
    }
    Ok(Finished::Ok)
}

fn session_arg(command: &Command) -> Option<&str> {
    match command {
        Command::Sessions(SessionsCmd::Show(a)) => Some(&a.id),
        Command::Sessions(SessionsCmd::Delete(a)) => Some(&a.id),
        Command::Replay(a) => Some(&a.id),
        Command::Sessions(SessionsCmd::List(_)) => None,
    }
}
