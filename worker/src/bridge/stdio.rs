//! stdio upstreams: each bridge worker runs a small pool of upstream
//! processes (`upstream_cmd`, `upstream_processes` of them), each
//! initialized once by the bridge, and gives each process one request at a
//! time. One request per process keeps routing exact: everything a process
//! writes while it runs a request (progress, logs, server→client requests,
//! notifications) belongs to that request's session. Requests of many
//! sessions share the processes, so an upstream that keeps per-connection
//! state sees every session as one client: such state is neither per Jetway
//! session nor kept when a worker dies. Roots are not offered (they belong
//! to a connection), so an upstream has no `roots/list` to ask. What a
//! process writes while it runs no request belongs to no session: before
//! its next request, a server→client request it wrote is answered with an
//! error (a background job asking for sampling has no client to ask) and
//! the rest dropped, rather than reaching whichever session comes next.
//! stdio has no equivalent of an HTTP upstream's GET stream to tell such a
//! message apart while a request runs: then it goes to that request's
//! client. Ids are rewritten on the way in and restored on the way out. A
//! process that dies (or whose output breaks off) is started again for the
//! next request, and the request it was running is handed back, to run
//! again.

use futures::FutureExt;
use jetway_shared::jsonrpc;
use serde_json::{Value, json};
use std::{
    process::Stdio,
    sync::atomic::{AtomicU64, Ordering},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
    sync::{Mutex, OwnedSemaphorePermit, Semaphore},
};

/// Why a process could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("could not start the upstream command: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the upstream process closed its output")]
    Closed,
    #[error("could not talk to the upstream process: {0}")]
    Io(#[source] std::io::Error),
    #[error("the upstream process refused to initialize: {0}")]
    Initialize(String),
}

/// One running upstream process.
pub struct Process {
    /// Killed when dropped (`kill_on_drop`).
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// The answer to the bridge's own `initialize`.
    pub initialized: Value,
}

/// A started upstream process, its pipes, and its answer to `initialize`.
pub(crate) type Started = (Child, ChildStdin, Lines<BufReader<ChildStdout>>, Value);

/// Starts `command` and initializes it with `init` (then
/// `notifications/initialized`).
pub(crate) async fn start(command: &[String], init: &Value) -> Result<Started, ProcessError> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| ProcessError::Spawn(std::io::Error::other("empty upstream command")))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(ProcessError::Spawn)?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(ProcessError::Spawn(std::io::Error::other("no stdio pipes")));
    };
    let mut p = Process {
        _child: child,
        stdin,
        lines: BufReader::new(stdout).lines(),
        initialized: Value::Null,
    };
    p.send(init).await?;
    let answer = loop {
        let m = p.next().await?;
        if m.get("id") == init.get("id") && m.get("method").is_none() {
            break m;
        }
    };
    if answer.get("result").is_none() {
        return Err(ProcessError::Initialize(answer.to_string()));
    }
    p.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await?;
    let Process {
        _child: child,
        stdin,
        lines,
        ..
    } = p;
    Ok((child, stdin, lines, answer))
}

impl Process {
    async fn start(command: &[String], init: &Value) -> Result<Self, ProcessError> {
        let (child, stdin, lines, initialized) = start(command, init).await?;
        Ok(Self {
            _child: child,
            stdin,
            lines,
            initialized,
        })
    }

    /// Writes one message (one line).
    pub async fn send(&mut self, msg: &Value) -> Result<(), ProcessError> {
        let mut line = serde_json::to_vec(msg).unwrap_or_default();
        line.push(b'\n');
        self.stdin
            .write_all(&line)
            .await
            .map_err(ProcessError::Io)?;
        self.stdin.flush().await.map_err(ProcessError::Io)
    }

    /// Deals with what the process wrote while it ran no request, which
    /// belongs to no session: a server→client request (a background job's
    /// sampling, say) is answered with an error at once, so the process
    /// does not wait for an answer that cannot come; notifications, and
    /// what a request that was cancelled or ran out of time sent late, are
    /// dropped. An error means the process is gone.
    async fn settle_idle_output(&mut self) -> Result<(), ProcessError> {
        while let Some(line) = self.lines.next_line().now_or_never() {
            let line = line
                .map_err(ProcessError::Io)?
                .ok_or(ProcessError::Closed)?;
            let Ok(msg) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let method_name = msg.get("method").and_then(Value::as_str);
            match (method_name, msg.get("id")) {
                (Some(m), Some(id)) => {
                    tracing::warn!(
                        method = m,
                        "answering a request an idle upstream process sent with an error: it belongs to no session"
                    );
                    let refusal = jsonrpc::error(
                        Some(id),
                        jsonrpc::INTERNAL_ERROR,
                        "no client to ask: this upstream process serves many sessions, and a \
                         request sent outside any client request belongs to none",
                    );
                    self.send(&refusal).await?;
                }
                (Some(m), None) => {
                    tracing::debug!(
                        method = m,
                        "dropping a notification an idle upstream process sent"
                    )
                }
                // A late answer to something the bridge sent: nobody waits.
                (None, _) => {}
            }
        }
        Ok(())
    }

    /// The next message the process writes (lines that are not JSON are skipped).
    pub async fn next(&mut self) -> Result<Value, ProcessError> {
        loop {
            let line = self
                .lines
                .next_line()
                .await
                .map_err(ProcessError::Io)?
                .ok_or(ProcessError::Closed)?;
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                return Ok(v);
            }
        }
    }
}

/// The pool of one bridge worker.
pub struct Pool {
    command: Vec<String>,
    init: Value,
    slots: Vec<std::sync::Arc<Mutex<Option<Process>>>>,
    free: std::sync::Arc<Semaphore>,
    next_id: AtomicU64,
}

/// A process lent to one request; given back when dropped.
pub struct Lease {
    pub slot: tokio::sync::OwnedMutexGuard<Option<Process>>,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    /// `size` processes of `command`, started on first use.
    pub fn new(command: Vec<String>, size: usize) -> Self {
        let init = json!({
            "jsonrpc": "2.0",
            "id": "jetway-bridge-init",
            "method": "initialize",
            "params": {
                "protocolVersion": jetway_shared::protocol::LATEST,
                // The processes serve every session. Sampling and elicitation
                // happen inside a request, so they reach that request's client;
                // roots belong to a connection, which a pooled process does
                // not have per session, so none are offered.
                "capabilities": {
                    "sampling": {},
                    "elicitation": {},
                },
                "clientInfo": {"name": "jetway-bridge", "version": env!("CARGO_PKG_VERSION")},
            },
        });
        Self {
            command,
            init,
            slots: (0..size.max(1))
                .map(|_| std::sync::Arc::new(Mutex::new(None)))
                .collect(),
            free: std::sync::Arc::new(Semaphore::new(size.max(1))),
            next_id: AtomicU64::new(0),
        }
    }

    /// A running process for one request, started if its slot has none.
    pub async fn lease(&self) -> Result<Lease, ProcessError> {
        let permit = self
            .free
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ProcessError::Closed)?;
        // A permit means a slot is unlocked.
        let mut slot = None;
        for s in &self.slots {
            if let Ok(g) = s.clone().try_lock_owned() {
                slot = Some(g);
                break;
            }
        }
        let Some(mut slot) = slot else {
            return Err(ProcessError::Closed);
        };
        if let Some(process) = slot.as_mut()
            && let Err(e) = process.settle_idle_output().await
        {
            tracing::warn!(error = %e, "an idle upstream process is gone; starting another");
            *slot = None;
        }
        if slot.is_none() {
            *slot = Some(Process::start(&self.command, &self.init).await?);
        }
        Ok(Lease {
            slot,
            _permit: permit,
        })
    }

    /// An id for a request sent to a process, unique in this worker.
    pub fn wire_id(&self) -> Value {
        Value::from(format!("j{}", self.next_id.fetch_add(1, Ordering::Relaxed)))
    }
}
