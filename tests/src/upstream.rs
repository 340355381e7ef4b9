//! Real upstream MCP servers for the bridge tests, installed by
//! `scripts/install-upstreams.sh` into `.local/upstreams`:
//! - [`Upstream::stateful`]: `tests/upstream/stateful_server.py`, a FastMCP
//!   server keeping per-session state (`remember`, `recall`, `count`, `whoami`);
//! - [`Upstream::everything`]: the reference `@modelcontextprotocol/server-everything`
//!   over Streamable HTTP.
//!
//! Both listen on a loopback port chosen here; [`Upstream::restart`]
//! brings the server back on the same port (a restarted upstream that lost
//! its sessions).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::{ProcessGuard, ProcessLog, free_port, workspace_root};

/// How long an upstream may take to listen.
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
        bail!(
            "{} is missing: run scripts/install-upstreams.sh (scripts/test.sh does)",
            path.display()
        );
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
        let log = ProcessLog::new(name.to_owned());
        let (bin, args, envs, ready): (PathBuf, Vec<OsString>, Vec<(OsString, OsString)>, String) =
            match &kind {
                Kind::Stateful { args } => {
                    let mut a: Vec<OsString> = vec!["--port".into(), port.to_string().into()];
                    a.extend(args.iter().map(OsString::from));
                    (
                        launcher("stateful-server")?,
                        a,
                        Vec::new(),
                        format!("listening on 127.0.0.1:{port}"),
                    )
                }
                Kind::Everything => (
                    launcher("server-everything")?,
                    vec!["streamableHttp".into()],
                    vec![("PORT".into(), port.to_string().into())],
                    format!("listening on port {port}"),
                ),
            };
        let process = ProcessGuard::spawn(&bin, &args, &envs, log.clone())?;
        log.wait_for_text(0, START_TIMEOUT, &ready)
            .await
            .with_context(|| format!("{name} did not log `{ready}`"))?;
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
