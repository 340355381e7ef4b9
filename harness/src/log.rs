//! Captured output of a child process.
//!
//! Every process the harness starts (nats-server, gateways, workers) has its
//! stdout and stderr read line by line into a [`ProcessLog`]: ANSI colour
//! codes are stripped, the last [`MAX_LINES`] lines are kept in memory so a
//! failing test can print them, and waiters can block until a line matching a
//! predicate appears (how the harness learns a port or readiness without
//! sleeping). With `JETWAY_TEST_LOG=1` every line is also forwarded to the
//! test's stderr, prefixed with the process name. [`ProcessLog::to_file`]
//! also writes every line to a file (the benchmark keeps one per process).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

use crate::error::{HarnessError, Result};

/// How many lines a [`ProcessLog`] keeps.
pub const MAX_LINES: usize = 2000;

/// How many lines are printed when a guard is dropped during a panic.
pub const PANIC_TAIL_LINES: usize = 300;

/// How many lines an error about a process quotes.
pub const ERROR_TAIL_LINES: usize = 40;

/// Whether `JETWAY_TEST_LOG` asks for process output to be forwarded.
pub fn forward_enabled() -> bool {
    std::env::var("JETWAY_TEST_LOG").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A bounded, shared, waitable buffer of output lines. Cheap to clone.
#[derive(Clone)]
pub struct ProcessLog {
    inner: Arc<Inner>,
}

struct Inner {
    prefix: Mutex<String>,
    state: Mutex<State>,
    /// Bumped on every new line and every closed reader.
    changed: watch::Sender<u64>,
    forward: bool,
    /// Where every line is also written, if anywhere.
    file: Option<Mutex<BufWriter<File>>>,
}

#[derive(Default)]
struct State {
    lines: VecDeque<String>,
    /// Lines ever received (the position of the next line).
    total: u64,
    /// Attached readers that have not reached EOF.
    open_readers: usize,
    /// Whether any reader was ever attached (a log fed only by `push` never
    /// counts as closed).
    attached: bool,
}

impl State {
    fn closed(&self) -> bool {
        self.attached && self.open_readers == 0
    }
}

impl std::fmt::Debug for ProcessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state();
        f.debug_struct("ProcessLog")
            .field("prefix", &self.prefix())
            .field("total", &st.total)
            .field("open_readers", &st.open_readers)
            .finish_non_exhaustive()
    }
}

impl ProcessLog {
    /// An empty log whose lines are labelled `prefix` when forwarded or dumped.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self::with_file(prefix.into(), None)
    }

    /// A log that also writes every line to `path` (created, or truncated).
    pub fn to_file(prefix: impl Into<String>, path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(HarnessError::io(format!("creating {}", dir.display())))?;
        }
        let file =
            File::create(path).map_err(HarnessError::io(format!("creating {}", path.display())))?;
        Ok(Self::with_file(prefix.into(), Some(file)))
    }

    fn with_file(prefix: String, file: Option<File>) -> Self {
        let (changed, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                prefix: Mutex::new(prefix),
                state: Mutex::new(State::default()),
                changed,
                forward: forward_enabled(),
                file: file.map(|f| Mutex::new(BufWriter::new(f))),
            }),
        }
    }

    /// The label used when forwarding or dumping.
    pub fn prefix(&self) -> String {
        lock(&self.inner.prefix).clone()
    }

    /// Change the label (e.g. once a server's port is known).
    pub fn set_prefix(&self, prefix: impl Into<String>) {
        *lock(&self.inner.prefix) = prefix.into();
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    /// Start reading `reader` line by line into this log (spawns a task on
    /// the current tokio runtime).
    pub fn attach(&self, reader: impl AsyncRead + Unpin + Send + 'static) {
        {
            let mut st = self.state();
            st.open_readers += 1;
            st.attached = true;
        }
        let log = self.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(reader);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&buf);
                        log.push(strip_ansi(text.trim_end_matches(['\n', '\r'])));
                    }
                }
            }
            let closed = {
                let mut st = log.state();
                st.open_readers -= 1;
                st.closed()
            };
            if closed {
                log.flush_file();
            }
            log.inner.changed.send_modify(|v| *v += 1);
        });
    }

    /// Append a line (also used by the harness for its own notes).
    pub fn push(&self, line: String) {
        if self.inner.forward {
            eprintln!("[{}] {line}", self.prefix());
        }
        if let Some(file) = &self.inner.file {
            // A log file that cannot be written loses lines, not the run.
            let _ = writeln!(lock(file), "{line}");
        }
        {
            let mut st = self.state();
            if st.lines.len() == MAX_LINES {
                st.lines.pop_front();
            }
            st.lines.push_back(line);
            st.total += 1;
        }
        self.inner.changed.send_modify(|v| *v += 1);
    }

    /// The position of the next line; pass it to [`ProcessLog::wait_for`] to
    /// only look at lines that arrive from now on.
    pub fn position(&self) -> u64 {
        self.state().total
    }

    /// The retained lines (at most [`MAX_LINES`]), oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.state().lines.iter().cloned().collect()
    }

    /// The last `n` retained lines.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let st = self.state();
        st.lines
            .iter()
            .skip(st.lines.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    /// The last lines an error message shows, one per line.
    pub fn tail_text(&self) -> String {
        self.tail(ERROR_TAIL_LINES).join("\n")
    }

    /// Whether any retained line contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.state().lines.iter().any(|l| l.contains(needle))
    }

    /// Whether all attached readers reached end of file (the process closed
    /// its output, normally because it exited).
    pub fn is_closed(&self) -> bool {
        self.state().closed()
    }

    /// Wait until all attached readers reached end of file (so every line the
    /// process wrote is in the log); `false` if that takes over `timeout`.
    pub async fn wait_closed(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.changed.subscribe();
        let wait = async {
            loop {
                rx.borrow_and_update();
                if self.is_closed() || !self.state().attached {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// Write buffered lines to the log file, if there is one.
    pub fn flush_file(&self) {
        if let Some(file) = &self.inner.file {
            let _ = lock(file).flush();
        }
    }

    /// Print the last `n` lines to stderr, labelled.
    pub fn dump_tail(&self, n: usize) {
        let prefix = self.prefix();
        let st = self.state();
        let skip = st.lines.len().saturating_sub(n);
        eprintln!(
            "----- [{prefix}] last {} of {} output lines -----",
            st.lines.len() - skip,
            st.total
        );
        for line in st.lines.iter().skip(skip) {
            eprintln!("[{prefix}] {line}");
        }
        eprintln!("----- [{prefix}] end -----");
    }

    /// Wait for a line at position `from` or later for which `pred` returns
    /// `Some`, and return that value. Fails when the deadline passes or when
    /// the process closes its output first; the error includes the log tail.
    pub async fn wait_for<T>(
        &self,
        from: u64,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> Option<T>,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.inner.changed.subscribe();
        let mut next = from;
        loop {
            rx.borrow_and_update();
            let closed = {
                let st = self.state();
                let first = st.total - st.lines.len() as u64;
                let start = next.max(first);
                for (i, line) in st.lines.iter().enumerate().skip((start - first) as usize) {
                    if let Some(v) = pred(line) {
                        return Ok(v);
                    }
                    next = first + i as u64 + 1;
                }
                next = next.max(st.total);
                st.closed()
            };
            if closed {
                return Err(HarnessError::Exited {
                    name: self.prefix(),
                    what: "process closed its output before the expected line appeared".into(),
                    tail: self.tail_text(),
                });
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Err(HarnessError::Timeout {
                    name: self.prefix(),
                    what: "expected line did not appear".into(),
                    timeout,
                    tail: self.tail_text(),
                });
            }
        }
    }

    /// Wait for a line containing `needle` (from position `from` on).
    pub async fn wait_for_text(
        &self,
        from: u64,
        timeout: Duration,
        needle: &str,
    ) -> Result<String> {
        self.wait_for(from, timeout, |l| l.contains(needle).then(|| l.to_owned()))
            .await
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Remove ANSI escape sequences (CSI `ESC [ … final`, OSC `ESC ] … BEL|ESC \`,
/// and two-byte `ESC x`) from `s`.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                // Parameters and intermediates, then one final byte @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}
