//! `CliError`: everything a `jetway` command can fail with, each printed as
//! one line on stderr with a non-zero exit.

use jetway_shared::BoxError;
use std::time::Duration;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "malformed session id {0:?}: expected <partition>-<32 lowercase hex digits>, \
         like 0-5f0c8e8a2b7d4c1e9a3b6d2f1e0c7b4a"
    )]
    MalformedId(String),
    #[error("cannot reach NATS at {url}: {reason}")]
    Unreachable {
        url: String,
        #[source]
        reason: BoxError,
    },
    #[error(
        "no Jetway stream {stream} on NATS at {url} (has a gateway or worker run against this server?)"
    )]
    NoStream { stream: String, url: String },
    #[error("session {id} not found or expired (retention is {})", human(*retention))]
    NotFound { id: String, retention: Duration },
    #[error(
        "session {id} not found: it was closed and its messages were purged or have expired \
         (retention is {})", human(*retention)
    )]
    Deleted { id: String, retention: Duration },
    #[error(
        "session {id}: its messages have expired (retention is {}); its record says {state}",
        human(*retention)
    )]
    Expired {
        id: String,
        retention: Duration,
        state: String,
    },
    #[error("{what} not found in session {id}")]
    NotInSession { id: String, what: String },
    #[error("stream key {0:?} is neither `get` nor a request stream `r<16 hex digits>`")]
    BadStreamKey(String),
    #[error("{flag}: {value:?} is neither a duration like `10m` nor an RFC 3339 time")]
    BadTime { flag: &'static str, value: String },
    #[error("{what}: {reason}")]
    Bus {
        what: String,
        #[source]
        reason: BoxError,
    },
    #[error("gateway {url}: {reason}")]
    Gateway {
        url: String,
        #[source]
        reason: BoxError,
    },
    #[error("session {id} has no recorded `initialize` request to redrive")]
    NothingToRedrive { id: String },
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// A NATS/JetStream failure while doing `what`; `e` (an error, or a
    /// sentence) is kept as the source.
    pub fn bus(what: impl Into<String>, e: impl Into<BoxError>) -> Self {
        Self::Bus {
            what: what.into(),
            reason: e.into(),
        }
    }

    /// A failure talking to the gateway at `url`; `e` is kept as the source.
    pub fn gateway(url: impl Into<String>, e: impl Into<BoxError>) -> Self {
        Self::Gateway {
            url: url.into(),
            reason: e.into(),
        }
    }

    /// The message as one line (stderr gets exactly one).
    pub fn line(&self) -> String {
        one_line(&self.to_string())
    }
}

/// A duration the way operators write it (`1day`, `2h 30m`).
pub fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
