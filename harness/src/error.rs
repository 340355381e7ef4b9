//! [`HarnessError`]: what starting, waiting for and stopping a process can
//! fail with. Errors about a running process name it (`[gw-1]`) and carry
//! the last lines of its output, so a failed start explains itself.

use std::path::PathBuf;
use std::time::Duration;

/// Why the harness could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A binary or launcher is not where it should be.
    #[error("{what} not found: {hint}")]
    NotFound { what: String, hint: String },
    /// Building the workspace binaries (`cargo build --bins`) failed; the
    /// text is cargo's (kept as text: the outcome is cached per process).
    #[error("building the binaries in {dir}: {detail}")]
    Build { dir: PathBuf, detail: String },
    /// Spawning a process, or a file operation around it, failed.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A signal could not be delivered.
    #[error("[{name}] sending {signal:?}")]
    Signal {
        name: String,
        signal: rustix::process::Signal,
        #[source]
        source: rustix::io::Errno,
    },
    /// The process closed its output (it exited) before `what` happened.
    #[error("[{name}] {what}; last lines:\n{tail}")]
    Exited {
        name: String,
        what: String,
        tail: String,
    },
    /// `what` did not happen within `timeout`.
    #[error("[{name}] {what} within {timeout:?}; last lines:\n{tail}")]
    Timeout {
        name: String,
        what: String,
        timeout: Duration,
        tail: String,
    },
    /// The HTTP client for readiness checks could not be built.
    #[error("building the HTTP client for readiness checks")]
    Http(#[source] reqwest::Error),
}

impl HarnessError {
    /// An [`HarnessError::Io`] saying what was being done.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }

    /// A log wait's error, saying which line was expected.
    pub(crate) fn expecting(self, line: &str) -> Self {
        match self {
            Self::Timeout {
                name,
                timeout,
                tail,
                ..
            } => Self::Timeout {
                name,
                what: format!("{line} did not appear"),
                timeout,
                tail,
            },
            Self::Exited { name, tail, .. } => Self::Exited {
                name,
                what: format!("exited before {line} appeared"),
                tail,
            },
            other => other,
        }
    }
}

/// What every fallible harness call returns.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
