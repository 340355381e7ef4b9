//! The run's report: one section per scenario (a Markdown table and its
//! JSON), the targets with met/missed and by how much, and the machine the
//! figures come from. Printed as Markdown, written as JSON.

use serde::Serialize;
use serde_json::{Value, json};
use std::path::Path;

/// One target of the issue, judged against this run.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub scenario: String,
    /// What is measured, e.g. "p50 − baseline p50, echo, c=1, 1+1".
    pub what: String,
    /// The target, e.g. "≤ 1 ms".
    pub target: String,
    /// The measured figure, e.g. "+0.84 ms".
    pub measured: String,
    pub met: bool,
    /// By how much it is met or missed, in words.
    pub margin: String,
}

/// What one scenario reports.
#[derive(Debug, Clone)]
pub struct Section {
    pub key: &'static str,
    pub title: String,
    pub markdown: String,
    pub json: Value,
    pub targets: Vec<Target>,
}

/// Where the figures come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: f64,
    pub cpu: String,
    pub kernel: String,
    /// `/proc/loadavg` (1, 5, 15 min) when the run started and ended.
    pub load_start: [f64; 3],
    pub load_end: [f64; 3],
    /// The open-files limit (soft) the run had.
    pub nofile: u64,
}

impl Machine {
    pub fn probe(nofile: u64) -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let mem_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".into());
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: mem_kib / (1024.0 * 1024.0),
            cpu,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            load_start: loadavg(),
            load_end: [0.0; 3],
            nofile,
        }
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
    [
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    ]
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct Report {
    pub machine: Machine,
    pub command: String,
    pub smoke: bool,
    pub duration_secs: f64,
    pub sections: Vec<Section>,
}

impl Report {
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        out.push_str(&format!(
            "Machine: {} cores ({}), {:.1} GiB memory, Linux {}; load average {:.2} / {:.2} / {:.2} \
             at the start, {:.2} / {:.2} / {:.2} at the end; open-files limit {}.\n\n\
             Command: `{}`{} — {:.0} s.\n\n",
            m.cores,
            m.cpu,
            m.memory_gib,
            m.kernel,
            m.load_start[0],
            m.load_start[1],
            m.load_start[2],
            m.load_end[0],
            m.load_end[1],
            m.load_end[2],
            m.nofile,
            self.command,
            if self.smoke {
                " (smoke mode: tiny counts, figures meaningless)"
            } else {
                ""
            },
            self.duration_secs,
        ));
        out.push_str("## Targets\n\n");
        let rows = self
            .sections
            .iter()
            .flat_map(|s| &s.targets)
            .map(|t| {
                vec![
                    t.scenario.clone(),
                    t.what.clone(),
                    t.target.clone(),
                    t.measured.clone(),
                    if t.met { "met" } else { "**missed**" }.to_owned(),
                    t.margin.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["scenario", "what", "target", "measured", "", "margin"],
            rows,
        ));
        for s in &self.sections {
            out.push_str(&format!("\n## {}\n\n{}", s.title, s.markdown));
        }
        out
    }

    pub fn json(&self) -> Value {
        let sections: serde_json::Map<String, Value> = self
            .sections
            .iter()
            .map(|s| (s.key.to_owned(), s.json.clone()))
            .collect();
        let targets: Vec<&Target> = self.sections.iter().flat_map(|s| &s.targets).collect();
        json!({
            "machine": self.machine,
            "command": self.command,
            "smoke": self.smoke,
            "duration_secs": self.duration_secs,
            "targets": targets,
            "scenarios": sections,
        })
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_vec_pretty(&self.json())?)?;
        Ok(())
    }
}

/// A Markdown table.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut out = format!("| {} |\n", headers.join(" | "));
    out.push_str(&format!(
        "|{}\n",
        headers.iter().map(|_| "---|").collect::<String>()
    ));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn markdown_table() {
        let t = table(&["a", "b"], vec![vec!["1".into(), "2".into()]]);
        assert_eq!(t, "| a | b |\n|---|---|\n| 1 | 2 |\n");
    }
}
