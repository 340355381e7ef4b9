//! A child process owned by a test or a benchmark run.
//!
//! [`ProcessGuard`] spawns a prepared command with its output captured in a
//! [`ProcessLog`], and kills it (SIGKILL) when dropped, so a failing run
//! never leaks servers. When the guard is dropped during a panic it prints
//! the process's last output lines first: the log of the thing that failed
//! ends up in the test report.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::Signal;
use tokio::process::{Child, Command};

use crate::error::{HarnessError, Result};
use crate::log::{PANIC_TAIL_LINES, ProcessLog};

/// How long `kill` and `Drop` wait for a killed process to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long to wait, after an exit, for the output pipes to be drained (a
/// grandchild holding them open would block it forever).
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A running child process with captured output; SIGKILLed on drop.
pub struct ProcessGuard {
    child: Child,
    log: ProcessLog,
    program: PathBuf,
    spawned_pid: u32,
    exit: Option<ExitStatus>,
}

impl std::fmt::Debug for ProcessGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGuard")
            .field("program", &self.program)
            .field("pid", &self.spawned_pid)
            .field("exit", &self.exit)
            .finish_non_exhaustive()
    }
}

impl ProcessGuard {
    /// Spawn `cmd` with stdin closed and stdout/stderr captured into `log`.
    /// Everything else (arguments, environment) is the caller's.
    pub fn spawn(mut cmd: Command, log: ProcessLog) -> Result<Self> {
        let std_cmd = cmd.as_std();
        let program = PathBuf::from(std_cmd.get_program());
        let command_line = std::iter::once(std_cmd.get_program())
            .chain(std_cmd.get_args())
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(HarnessError::io(format!("spawning {}", program.display())))?;
        // Set until the child is reaped, which only `wait` does.
        let spawned_pid = child.id().unwrap_or(0);
        if let Some(out) = child.stdout.take() {
            log.attach(out);
        }
        if let Some(err) = child.stderr.take() {
            log.attach(err);
        }
        log.push(format!(
            "[harness] started pid {spawned_pid} : {command_line}"
        ));
        Ok(Self {
            child,
            log,
            program,
            spawned_pid,
            exit: None,
        })
    }

    /// The captured output.
    pub fn log(&self) -> &ProcessLog {
        &self.log
    }

    /// The OS process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        if self.exit.is_some() {
            None
        } else {
            self.child.id()
        }
    }

    /// The OS process id it was started with, also after it exited (for
    /// reading `/proc/<pid>` while it runs).
    pub fn spawned_pid(&self) -> u32 {
        self.spawned_pid
    }

    /// The exit status if the process has exited (does not block).
    pub fn try_exit_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().map_err(HarnessError::io(format!(
                "[{}] try_wait",
                self.log.prefix()
            )))?;
        }
        Ok(self.exit)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_exit_status(), Ok(None))
    }

    /// Send a signal (e.g. [`Signal::TERM`]). No-op once exited.
    pub fn signal(&mut self, signal: Signal) -> Result<()> {
        if self.try_exit_status()?.is_some() {
            return Ok(());
        }
        let name = self.log.prefix();
        let pid = self
            .child
            .id()
            .and_then(|p| rustix::process::Pid::from_raw(i32::try_from(p).ok()?))
            .ok_or_else(|| HarnessError::Exited {
                name: name.clone(),
                what: format!("has no pid to send {signal:?} to"),
                tail: self.log.tail_text(),
            })?;
        rustix::process::kill_process(pid, signal).map_err(|source| HarnessError::Signal {
            name,
            signal,
            source,
        })
    }

    /// Wait for the process to exit on its own.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.exit {
            return Ok(status);
        }
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .map_err(|_| HarnessError::Timeout {
                name: self.log.prefix(),
                what: "did not exit".into(),
                timeout,
                tail: self.log.tail_text(),
            })?
            .map_err(HarnessError::io(format!(
                "[{}] waiting for the process",
                self.log.prefix()
            )))?;
        self.exit = Some(status);
        // Let the readers drain the pipes, so the log holds the last words.
        self.log.wait_closed(LOG_DRAIN_TIMEOUT).await;
        self.log.push(format!("[harness] exited: {status}"));
        self.log.flush_file();
        Ok(status)
    }

    /// SIGKILL the process and wait until it is gone.
    pub async fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.try_exit_status()? {
            return Ok(status);
        }
        self.child
            .start_kill()
            .map_err(HarnessError::io(format!("[{}] SIGKILL", self.log.prefix())))?;
        self.wait_exit(REAP_TIMEOUT).await
    }

    /// SIGTERM the process (graceful shutdown) and wait up to `timeout` for it
    /// to exit. On timeout the process is left running (Drop kills it).
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.signal(Signal::TERM)?;
        self.wait_exit(timeout).await
    }

    /// SIGTERM, then SIGKILL if the process has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) -> Result<ExitStatus> {
        match self.terminate(grace).await {
            Ok(status) => Ok(status),
            Err(HarnessError::Timeout { .. }) => self.kill().await,
            Err(e) => Err(e),
        }
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.log.dump_tail(PANIC_TAIL_LINES);
        }
        self.log.flush_file();
        if self.exit.is_some() || matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = self.child.start_kill();
        // Reap it so the caller can, e.g., remove its data directory next.
        // (Drop cannot await; this is a bounded spin on a syscall.)
        let deadline = std::time::Instant::now() + REAP_TIMEOUT;
        while std::time::Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                _ => break,
            }
        }
    }
}
