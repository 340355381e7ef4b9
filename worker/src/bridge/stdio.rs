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
//! process writes while it runs no request belongs to no session: a reader
//! task takes each process's output as it comes, and while no request runs
//! it answers a server→client request at once with an error (a background
//! job asking for sampling has no client to ask) and drops the rest,
//! rather than leaving it in the pipe for whichever session comes next.
//! stdio has no equivalent of an HTTP upstream's GET stream to tell such a
//! message apart while a request runs: what arrives then goes to that
//! request's client, also a background job's question that the process
//! wrote just after the bridge sent another session's request (for a
//! server that asks outside requests, use one process per session:
//! [`super::owned`]). Ids are rewritten on the way in and restored on the way out. A
//! process that dies (or whose output breaks off) is started again for the
//! next request, and the request it was running is handed back, to run
//! again.

use jetway_shared::jsonrpc;
use serde_json::{Value, json};
use std::{
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
    sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc},
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
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(ProcessError::Spawn(std::io::Error::other("no stdio pipes")));
    };
    let mut lines = BufReader::new(stdout).lines();
    write_line(&mut stdin, init).await?;
    let answer = loop {
        let m = read_message(&mut lines).await?;
        if m.get("id") == init.get("id") && m.get("method").is_none() {
            break m;
        }
    };
    if answer.get("result").is_none() {
        return Err(ProcessError::Initialize(answer.to_string()));
    }
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    write_line(&mut stdin, &initialized).await?;
    Ok((child, stdin, lines, answer))
}

/// Writes one message (one line).
pub(crate) async fn write_line(stdin: &mut ChildStdin, msg: &Value) -> Result<(), ProcessError> {
    let mut line = serde_json::to_vec(msg).unwrap_or_default();
    line.push(b'\n');
    stdin.write_all(&line).await.map_err(ProcessError::Io)?;
    stdin.flush().await.map_err(ProcessError::Io)
}

/// The next message a process writes (lines that are not JSON are skipped).
async fn read_message(lines: &mut Lines<BufReader<ChildStdout>>) -> Result<Value, ProcessError> {
    loop {
        let line = lines
            .next_line()
            .await
            .map_err(ProcessError::Io)?
            .ok_or(ProcessError::Closed)?;
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            return Ok(v);
        }
    }
}

/// Messages of a process a request may have waiting.
const OUTPUT_BUFFER: usize = 64;

/// One running upstream process of the pool. A reader task takes its
/// output as it comes: while a request runs, for that request; while none
/// does, it settles it at once ([`settle_idle`]), so what the process
/// writes between requests never waits for the next one.
pub struct Process {
    stdin: Arc<Mutex<ChildStdin>>,
    output: mpsc::Receiver<Result<Value, ProcessError>>,
    /// True while a request runs on the process.
    busy: Arc<AtomicBool>,
    reader: tokio::task::JoinHandle<()>,
    /// The answer to the bridge's own `initialize`.
    pub initialized: Value,
}

impl Process {
    async fn start(command: &[String], init: &Value) -> Result<Self, ProcessError> {
        let (child, stdin, lines, initialized) = start(command, init).await?;
        let stdin = Arc::new(Mutex::new(stdin));
        let busy = Arc::new(AtomicBool::new(false));
        let (tx, output) = mpsc::channel(OUTPUT_BUFFER);
        let reader = tokio::spawn(read_output(child, lines, tx, busy.clone(), stdin.clone()));
        Ok(Self {
            stdin,
            output,
            busy,
            reader,
            initialized,
        })
    }

    /// Marks the process as running a request from now on; what it wrote
    /// before and nobody read yet is settled as idle output. An error
    /// means the process is gone.
    async fn begin(&mut self) -> Result<(), ProcessError> {
        if self.reader.is_finished() && self.output.is_empty() {
            return Err(ProcessError::Closed);
        }
        self.busy.store(true, Ordering::SeqCst);
        while let Ok(left) = self.output.try_recv() {
            let mut stdin = self.stdin.lock().await;
            settle_idle(&mut stdin, left?).await?;
        }
        Ok(())
    }

    /// Writes one message (one line).
    pub async fn send(&mut self, msg: &Value) -> Result<(), ProcessError> {
        write_line(&mut *self.stdin.lock().await, msg).await
    }

    /// The next message the process writes for the running request.
    pub async fn next(&mut self) -> Result<Value, ProcessError> {
        self.output
            .recv()
            .await
            .unwrap_or(Err(ProcessError::Closed))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // The reader owns the child: ending it kills the process.
        self.reader.abort();
    }
}

/// Reads a process's output until it ends: for the running request, or
/// settled at once while none runs.
async fn read_output(
    _child: Child,
    mut lines: Lines<BufReader<ChildStdout>>,
    tx: mpsc::Sender<Result<Value, ProcessError>>,
    busy: Arc<AtomicBool>,
    stdin: Arc<Mutex<ChildStdin>>,
) {
    loop {
        let msg = read_message(&mut lines).await;
        let ended = msg.is_err();
        if busy.load(Ordering::SeqCst) || ended {
            if tx.send(msg).await.is_err() || ended {
                return;
            }
            continue;
        }
        let Ok(msg) = msg else { return };
        let mut stdin = stdin.lock().await;
        if settle_idle(&mut stdin, msg).await.is_err() {
            return;
        }
    }
}

/// Deals with what a process wrote while it ran no request, which belongs
/// to no session: a server→client request (a background job's sampling,
/// say) is answered with an error, so the process does not wait for an
/// answer that cannot come; notifications, and what a request that was
/// cancelled or ran out of time sent late, are dropped. An error means
/// the process is gone.
async fn settle_idle(stdin: &mut ChildStdin, msg: Value) -> Result<(), ProcessError> {
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
            write_line(stdin, &refusal).await
        }
        (Some(m), None) => {
            tracing::debug!(
                method = m,
                "dropping a notification an idle upstream process sent"
            );
            Ok(())
        }
        // A late answer to something the bridge sent: nobody waits.
        (None, _) => Ok(()),
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

/// A process lent to one request; given back when dropped, running no
/// request any more.
pub struct Lease {
    pub slot: tokio::sync::OwnedMutexGuard<Option<Process>>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(p) = self.slot.as_ref() {
            p.busy.store(false, Ordering::SeqCst);
        }
    }
}

impl Pool {
    /// `size` processes of `command`, started on first use.
    pub fn new(command: Vec<String>, size: usize) -> Self {
        let init = json!({
            "jsonrpc": "2.0",
            "id": "jetway-bridge-init",
            "method": "initialize",
            "params": {
                "protocolVersion": jetway_shared::protocol::ProtocolVersion::LATEST,
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
            && let Err(e) = process.begin().await
        {
            tracing::warn!(error = %e, "an idle upstream process is gone; starting another");
            *slot = None;
        }
        if slot.is_none() {
            let mut process = Process::start(&self.command, &self.init).await?;
            process.begin().await?;
            *slot = Some(process);
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
