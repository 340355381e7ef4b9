//! What the processes the benchmark starts cost: [`Usage`] reads a
//! process's resident memory and CPU time from `/proc`; [`ThreadTimes`] its
//! threads' CPU time in nanoseconds, for windows too short for clock ticks.
//! (Starting and stopping them is `jetway-harness`'s job.)

use anyhow::{Context, Result, anyhow};

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
