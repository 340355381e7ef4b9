//! Child processes owned by a test, and where their binaries come from.
//!
//! [`ProcessGuard`] spawns a binary with its output captured in a
//! [`ProcessLog`], and kills it (SIGKILL) when dropped, so a failing test
//! never leaks servers. When the guard is dropped during a panic it prints
//! the process's last output lines first: the log of the thing that failed
//! ends up in the test report.
//!
//! [`jetway_bin`] finds `jetway-gateway` / `jetway-worker`: `JETWAY_BIN_DIR`
//! if set, else it runs `cargo build --bins -q` once per test process in the
//! workspace root and uses `<target-dir>/debug/`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::process::{Child, Command};

use crate::log::{PANIC_TAIL_LINES, ProcessLog};

/// How long `Drop` waits for a killed process to be reaped.
const DROP_REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long to wait, after an exit, for the output pipes to be drained (a
/// grandchild holding them open would block it forever).
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The Cargo workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative paths are taken
/// from the workspace root) or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// The directory holding the Jetway binaries, building them on first use.
pub fn jetway_bin_dir() -> Result<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("JETWAY_BIN_DIR").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
        build_bins().map_err(|e| format!("{e:#}"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

fn build_bins() -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = workspace_root();
    let out = std::process::Command::new(&cargo)
        .args(["build", "--bins", "-q"])
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cargo:?} build --bins in {}", root.display()))?;
    if !out.status.success() {
        bail!(
            "`cargo build --bins -q` in {} failed ({}):\n{}",
            root.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(target_dir().join("debug"))
}

/// Path of the Jetway binary `name` (e.g. `"jetway-gateway"`).
pub fn jetway_bin(name: &str) -> Result<PathBuf> {
    let dir = jetway_bin_dir()?;
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "binary {name} not found in {} (set JETWAY_BIN_DIR, or check that the \
             workspace builds a binary named {name})",
            dir.display()
        );
    }
    Ok(path)
}

/// A running child process with captured output; SIGKILLed on drop.
pub struct ProcessGuard {
    child: Child,
    log: ProcessLog,
    program: PathBuf,
    exit: Option<ExitStatus>,
}

impl std::fmt::Debug for ProcessGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGuard")
            .field("program", &self.program)
            .field("pid", &self.child.id())
            .field("exit", &self.exit)
            .finish_non_exhaustive()
    }
}

impl ProcessGuard {
    /// Spawn `program args…` with extra environment `envs`, stdin closed and
    /// stdout/stderr captured into `log`.
    pub fn spawn(
        program: &Path,
        args: &[OsString],
        envs: &[(OsString, OsString)],
        log: ProcessLog,
    ) -> Result<Self> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", program.display()))?;
        if let Some(out) = child.stdout.take() {
            log.attach(out);
        }
        if let Some(err) = child.stderr.take() {
            log.attach(err);
        }
        log.push(format!(
            "[harness] started pid {} : {} {}",
            child.id().unwrap_or(0),
            program.display(),
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        ));
        Ok(Self {
            child,
            log,
            program: program.to_path_buf(),
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

    /// The exit status if the process has exited (does not block).
    pub fn try_exit_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().context("try_wait")?;
        }
        Ok(self.exit)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_exit_status(), Ok(None))
    }

    /// Send a signal (e.g. `rustix::process::Signal::TERM`). No-op once exited.
    pub fn signal(&mut self, sig: rustix::process::Signal) -> Result<()> {
        if self.try_exit_status()?.is_some() {
            return Ok(());
        }
        let pid = self
            .child
            .id()
            .and_then(|p| rustix::process::Pid::from_raw(i32::try_from(p).ok()?))
            .context("process has no pid")?;
        rustix::process::kill_process(pid, sig).with_context(|| format!("signal {sig:?}"))?;
        Ok(())
    }

    /// Wait for the process to exit on its own.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.exit {
            return Ok(status);
        }
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .map_err(|_| {
                anyhow!(
                    "[{}] did not exit within {timeout:?}; last lines:\n{}",
                    self.log.prefix(),
                    self.log.tail(40).join("\n")
                )
            })?
            .context("waiting for process")?;
        self.exit = Some(status);
        // Let the readers drain the pipes, so the log holds the last words.
        self.log.wait_closed(LOG_DRAIN_TIMEOUT).await;
        self.log.push(format!("[harness] exited: {status}"));
        Ok(status)
    }

    /// SIGKILL the process and wait until it is gone.
    pub async fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.try_exit_status()? {
            return Ok(status);
        }
        self.child.start_kill().context("SIGKILL")?;
        self.wait_exit(DROP_REAP_TIMEOUT).await
    }

    /// SIGTERM the process (graceful shutdown) and wait up to `timeout` for it
    /// to exit. On timeout the process is left running (Drop kills it).
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.signal(rustix::process::Signal::TERM)?;
        self.wait_exit(timeout).await
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.log.dump_tail(PANIC_TAIL_LINES);
        }
        if self.exit.is_some() || matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = self.child.start_kill();
        // Reap it so the caller can, e.g., remove its data directory next.
        let deadline = std::time::Instant::now() + DROP_REAP_TIMEOUT;
        while std::time::Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                _ => break,
            }
        }
    }
}
