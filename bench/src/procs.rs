//! Child processes the benchmark starts, and what they cost.
//!
//! [`Proc`] spawns a binary with stdout and stderr captured line by line into
//! a log file (`<log dir>/<name>.log`) and a bounded in-memory tail, so the
//! harness can wait for a readiness line (`listening on`,
//! `Server is ready`) with a deadline. It is SIGKILLed when dropped, so a
//! failed run leaves nothing behind. [`Usage`] reads a process's resident
//! memory and CPU time from `/proc`; [`ThreadTimes`] its threads' CPU time
//! in nanoseconds, for windows too short for clock ticks.

use anyhow::{Context, Result, anyhow, bail};
use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// Lines of output kept in memory per process (the file keeps everything).
const TAIL_LINES: usize = 2000;

/// A running child process; SIGKILLed on drop.
pub struct Proc {
    name: String,
    child: Child,
    pid: u32,
    out: Arc<Output>,
}

#[derive(Default)]
struct Output {
    lines: Mutex<VecDeque<String>>,
    /// Output pipes that reached end of file (2: the process is gone).
    closed: Mutex<usize>,
    changed: Notify,
}

impl Proc {
    /// Spawns `program args…` with `env` added and Jetway's own settings
    /// (`JETWAY_*`, `RUST_LOG`) removed from the inherited environment, so
    /// only the flags given here configure it.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log_dir: &Path,
    ) -> Result<Self> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("JETWAY_") || k == "RUST_LOG" {
                cmd.env_remove(&key);
            }
        }
        cmd.envs(env.iter().copied());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("{name} exited at once"))?;
        std::fs::create_dir_all(log_dir)
            .with_context(|| format!("creating {}", log_dir.display()))?;
        let file = std::fs::File::create(log_dir.join(format!("{name}.log")))
            .context("creating a log file")?;
        let file = Arc::new(tokio::sync::Mutex::new(BufWriter::new(
            tokio::fs::File::from_std(file),
        )));
        let out = Arc::new(Output::default());
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(capture(stdout, out.clone(), file.clone()));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(capture(stderr, out.clone(), file));
        }
        Ok(Self {
            name: name.to_owned(),
            child,
            pid,
            out,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for an output line containing `marker` and returns it. Fails if
    /// the process exits or `timeout` passes first.
    pub async fn wait_for_line(&self, marker: &str, timeout: Duration) -> Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.out.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(line) = self.find_line(marker) {
                return Ok(line);
            }
            if *self.out.closed.lock().map_err(|_| anyhow!("poisoned"))? >= 2 {
                bail!(
                    "{} exited before printing {marker:?}; last lines:\n{}",
                    self.name,
                    self.tail(20).join("\n")
                );
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                bail!(
                    "{} did not print {marker:?} within {timeout:?}; last lines:\n{}",
                    self.name,
                    self.tail(20).join("\n")
                );
            }
        }
    }

    fn find_line(&self, marker: &str) -> Option<String> {
        let lines = self.out.lines.lock().ok()?;
        lines.iter().find(|l| l.contains(marker)).cloned()
    }

    /// The last `n` lines of output.
    pub fn tail(&self, n: usize) -> Vec<String> {
        match self.out.lines.lock() {
            Ok(lines) => lines.iter().rev().take(n).rev().cloned().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Resident memory and CPU time so far.
    pub fn usage(&self) -> Result<Usage> {
        Usage::of(self.pid)
    }

    /// SIGKILL, and wait until the process is gone.
    pub async fn kill(&mut self) -> Result<()> {
        self.child.start_kill().ok();
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .map_err(|_| anyhow!("{} survived SIGKILL for 10 s", self.name))?
            .context("waiting for a killed process")?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.kill().await;
        }
    }
}

async fn capture<R>(
    pipe: R,
    out: Arc<Output>,
    file: Arc<tokio::sync::Mutex<BufWriter<tokio::fs::File>>>,
) where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        {
            let mut f = file.lock().await;
            let _ = f.write_all(line.as_bytes()).await;
            let _ = f.write_all(b"\n").await;
        }
        if let Ok(mut tail) = out.lines.lock() {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        out.changed.notify_waiters();
    }
    let _ = file.lock().await.flush().await;
    if let Ok(mut closed) = out.closed.lock() {
        *closed += 1;
    }
    out.changed.notify_waiters();
}

/// What a process costs at one moment.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    /// Resident set size (`VmRSS`), bytes.
    pub rss_bytes: u64,
    /// User + system CPU time since start, seconds.
    pub cpu_secs: f64,
}

impl Usage {
    /// Reads `/proc/<pid>/status` and `/proc/<pid>/stat`.
    pub fn of(pid: u32) -> Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let rss_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("no VmRSS for pid {pid}"))?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat"))?;
        // Fields after the command name (which may hold spaces): state is
        // field 3, utime and stime are fields 14 and 15.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .ok_or_else(|| anyhow!("unreadable /proc/{pid}/stat"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| -> u64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
        let hz = rustix::param::clock_ticks_per_second() as f64;
        Ok(Self {
            rss_bytes: rss_kib * 1024,
            cpu_secs: (ticks(11) + ticks(12)) as f64 / hz,
        })
    }

    pub fn rss_mib(&self) -> f64 {
        self.rss_bytes as f64 / (1024.0 * 1024.0)
    }
}

/// The CPU time of each live thread of a process (`/proc/<pid>/task/*/schedstat`,
/// nanoseconds): finer than [`Usage`]'s clock ticks (10 ms), for short
/// windows. A thread that exits between two snapshots takes its time in the
/// window with it (an undercount); one that starts is counted from its start.
#[derive(Debug, Clone, Default)]
pub struct ThreadTimes {
    ns: std::collections::HashMap<u32, u64>,
}

impl ThreadTimes {
    pub fn of(pid: u32) -> Result<Self> {
        let dir = format!("/proc/{pid}/task");
        let mut ns = std::collections::HashMap::new();
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
            let entry = entry?;
            let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            // A thread may exit while we look: skip it.
            let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
                continue;
            };
            let run: u64 = text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow!("unreadable {dir}/{tid}/schedstat"))?;
            ns.insert(tid, run);
        }
        Ok(Self { ns })
    }

    /// CPU seconds the process's threads spent from `self` to `later`.
    pub fn secs_until(&self, later: &ThreadTimes) -> f64 {
        let ns: u64 = later
            .ns
            .iter()
            .map(|(tid, &t)| t.saturating_sub(self.ns.get(tid).copied().unwrap_or(0)))
            .sum();
        ns as f64 / 1e9
    }
}
