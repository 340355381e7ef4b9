//! The redrive report: each request's recorded result beside its new one,
//! differences marked `~` (volatile: expected to change) or `✗` (a real
//! change), and a verdict per request and overall.

use super::{
    Outcome,
    diff::{Difference, diff},
    plan::Plan,
};
use crate::{
    message::show_id,
    output::{Paint, Style, truncate},
    sessions::streams::Status,
};
use serde::Serialize;
use serde_json::{Value, json};
use std::io::Write;

/// How one request compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Same,
    /// Only volatile fields differ.
    VolatileOnly,
    Differs,
    /// The recording has no result to compare with (the request was open).
    NotRecorded,
}

/// One request's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub method: String,
    pub id: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub recorded_status: Status,
    pub new_status: Status,
    pub verdict: Verdict,
    pub differences: Vec<Difference>,
    pub recorded: Option<Value>,
    pub new: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// Every comparison of a redrive.
pub struct Report {
    pub comparisons: Vec<Comparison>,
}

impl Report {
    pub fn new(plan: &Plan, outcomes: &[Outcome], volatile: &[String]) -> Self {
        let comparisons = plan
            .requests()
            .zip(outcomes)
            .map(|(r, outcome)| {
                let (new, new_status, failure) = match outcome {
                    Outcome::Final(v) => (Some(v.clone()), final_status(v), None),
                    Outcome::Ended => (None, Status::Cancelled, None),
                    Outcome::Failed(why) => (None, Status::Open, Some(why.clone())),
                };
                let differences = match (&r.final_message, &new) {
                    (Some(a), Some(b)) => diff(a, b, volatile),
                    _ if r.status == new_status => Vec::new(),
                    _ => vec![Difference {
                        path: "(status)".into(),
                        recorded: Some(json!(r.status.as_str())),
                        new: Some(json!(new_status.as_str())),
                        // Whether a cancellation wins the race with the
                        // result is timing, not behaviour.
                        volatile: r.status == Status::Cancelled && failure.is_none(),
                    }],
                };
                let verdict = if r.status == Status::Open {
                    Verdict::NotRecorded
                } else if differences.is_empty() {
                    Verdict::Same
                } else if differences.iter().all(|d| d.volatile) {
                    Verdict::VolatileOnly
                } else {
                    Verdict::Differs
                };
                Comparison {
                    method: r.method.clone(),
                    id: r.id.clone(),
                    target: r.target.clone(),
                    recorded_status: r.status,
                    new_status,
                    verdict,
                    differences,
                    recorded: r.final_message.clone(),
                    new,
                    failure,
                }
            })
            .collect();
        Self { comparisons }
    }

    /// Requests whose result changed beyond volatile fields.
    pub fn differing(&self) -> usize {
        self.count(Verdict::Differs)
    }

    fn count(&self, v: Verdict) -> usize {
        self.comparisons.iter().filter(|c| c.verdict == v).count()
    }

    pub fn write(
        &self,
        out: &mut impl Write,
        style: &Style,
        json: bool,
        recorded_id: &str,
        new_id: &str,
        url: &str,
    ) -> std::io::Result<()> {
        let summary = json!({
            "recorded_session": recorded_id,
            "new_session": new_id,
            "gateway": url,
            "requests": self.comparisons.len(),
            "same": self.count(Verdict::Same),
            "volatile_only": self.count(Verdict::VolatileOnly),
            "differs": self.count(Verdict::Differs),
            "not_recorded": self.count(Verdict::NotRecorded),
        });
        if json {
            for c in &self.comparisons {
                serde_json::to_writer(&mut *out, c)?;
                writeln!(out)?;
            }
            serde_json::to_writer(&mut *out, &json!({ "summary": summary }))?;
            return writeln!(out);
        }
        writeln!(
            out,
            "redrive of {} as {} via {url}",
            style.paint(Paint::Cyan, recorded_id),
            style.paint(Paint::Cyan, new_id)
        )?;
        let total = self.comparisons.len();
        for (i, c) in self.comparisons.iter().enumerate() {
            self.write_one(out, style, i + 1, total, c)?;
        }
        writeln!(
            out,
            "{total} requests: {} same, {} volatile only, {} differ, {} not recorded",
            summary["same"], summary["volatile_only"], summary["differs"], summary["not_recorded"]
        )
    }

    fn write_one(
        &self,
        out: &mut impl Write,
        style: &Style,
        n: usize,
        total: usize,
        c: &Comparison,
    ) -> std::io::Result<()> {
        let (verdict, paint) = match c.verdict {
            Verdict::Same => ("same", Paint::Green),
            Verdict::VolatileOnly => ("volatile only", Paint::Yellow),
            Verdict::Differs => ("DIFFERS", Paint::Red),
            Verdict::NotRecorded => ("not recorded", Paint::Magenta),
        };
        let mut title = format!("{} id={}", c.method, show_id(&c.id));
        if let Some(t) = &c.target {
            title.push(' ');
            title.push_str(t);
        }
        writeln!(
            out,
            "[{n}/{total}] {}  {}",
            style.pad(Some(Paint::Bold), &title, 40),
            style.paint(paint, verdict)
        )?;
        let shown = |v: &Option<Value>, status: Status| match v {
            Some(v) => truncate(&gist(v).to_string(), 160),
            None => format!("({})", status.as_str()),
        };
        let recorded = shown(&c.recorded, c.recorded_status);
        if c.verdict == Verdict::Same {
            return writeln!(out, "      both      {recorded}");
        }
        writeln!(out, "      recorded  {recorded}")?;
        let new = match &c.failure {
            Some(why) => format!("(failed: {why})"),
            None => shown(&c.new, c.new_status),
        };
        writeln!(out, "      new       {new}")?;
        for d in &c.differences {
            let show = |v: &Option<Value>| {
                v.as_ref()
                    .map(|v| truncate(&v.to_string(), 60))
                    .unwrap_or_else(|| "(absent)".into())
            };
            let (mark, paint) = if d.volatile {
                ("~", Paint::Yellow)
            } else {
                ("✗", Paint::Red)
            };
            writeln!(
                out,
                "      {} {}  {} → {}{}",
                style.paint(paint, mark),
                d.path,
                show(&d.recorded),
                show(&d.new),
                if d.volatile { "  (volatile)" } else { "" }
            )?;
        }
        Ok(())
    }
}

/// The telling part of a response: a tool's structured result, else the
/// result, else the error.
fn gist(v: &Value) -> &Value {
    v.pointer("/result/structuredContent")
        .or_else(|| v.get("result"))
        .or_else(|| v.get("error"))
        .unwrap_or(v)
}

fn final_status(v: &Value) -> Status {
    if v.get("error").is_some() {
        Status::Failed
    } else {
        Status::Finished
    }
}
