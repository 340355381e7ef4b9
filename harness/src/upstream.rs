//! Real upstream MCP servers for the bridge, installed by
//! `scripts/install-upstreams.sh` into `.local/upstreams`:
//! - [`Upstream::stateful`]: `tests/upstream/stateful_server.py`, a FastMCP
//!   server keeping per-session state (`remember`, `recall`, `count`, `whoami`);
//! - [`Upstream::everything`]: the reference `@modelcontextprotocol/server-everything`
//!   over Streamable HTTP.
//!
//! Both listen on a loopback port chosen here ([`free_port`]) and are ready
//! once their `/mcp` endpoint answers HTTP at all (a bare `GET` gets a 4xx:
//! they have no readiness endpoint). [`Upstream::restart`] brings the server
//! back on the same port (a restarted upstream that lost its sessions).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use crate::bins::workspace_root;
use crate::error::{HarnessError, Result};
use crate::listen::free_port;
use crate::log::ProcessLog;
use crate::process::ProcessGuard;
use crate::ready::{Ready, wait_ready};

/// How long an upstream may take to serve (Python and Node.js start slowly).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Which upstream server.
#[derive(Debug, Clone)]
enum Kind {
    Stateful { args: Vec<String> },
    Everything,
}

/// A running upstream MCP server.
#[derive(Debug)]
pub struct Upstream {
    kind: Kind,
    port: u16,
    process: ProcessGuard,
    name: String,
}

fn launcher(name: &str) -> Result<PathBuf> {
    let path = workspace_root().join(".local/upstreams/bin").join(name);
    if !path.exists() {
        return Err(HarnessError::NotFound {
            what: path.display().to_string(),
            hint: "run scripts/install-upstreams.sh (scripts/test.sh does)".into(),
        });
    }
    Ok(path)
}

/// The command line that runs server-everything over stdio, for a bridge
/// worker's `--upstream-cmd`.
pub fn everything_stdio_command() -> Result<String> {
    Ok(format!(
        "{} stdio",
        launcher("server-everything")?.display()
    ))
}

impl Upstream {
    /// The Python stateful server over Streamable HTTP; `args` such as `--stateless`.
    pub async fn stateful(args: &[&str]) -> Result<Self> {
        let kind = Kind::Stateful {
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        Self::spawn(kind, free_port()?, "upstream-py").await
    }

    /// server-everything over Streamable HTTP.
    pub async fn everything() -> Result<Self> {
        Self::spawn(Kind::Everything, free_port()?, "upstream-everything").await
    }

    async fn spawn(kind: Kind, port: u16, name: &str) -> Result<Self> {
        let cmd = match &kind {
            Kind::Stateful { args } => {
                let mut cmd = Command::new(launcher("stateful-server")?);
                cmd.args([OsString::from("--port"), port.to_string().into()])
                    .args(args);
                cmd
            }
            Kind::Everything => {
                let mut cmd = Command::new(launcher("server-everything")?);
                cmd.arg("streamableHttp").env("PORT", port.to_string());
                cmd
            }
        };
        let process = ProcessGuard::spawn(cmd, ProcessLog::new(name))?;
        let url = format!("http://127.0.0.1:{port}/mcp");
        wait_ready(&process, &url, Ready::Answers, START_TIMEOUT).await?;
        Ok(Self {
            kind,
            port,
            process,
            name: name.to_owned(),
        })
    }

    /// `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// The captured output.
    pub fn log(&self) -> &ProcessLog {
        self.process.log()
    }

    /// SIGKILLs the server.
    pub async fn kill(&mut self) -> Result<()> {
        self.process.kill().await?;
        Ok(())
    }

    /// Kills the server and starts a new one on the same port: every
    /// upstream session is gone.
    pub async fn restart(&mut self) -> Result<()> {
        self.process.kill().await?;
        let again = Self::spawn(self.kind.clone(), self.port, &self.name).await?;
        *self = again;
        Ok(())
    }
}
