//! `jetway-bench all`: runs the scenarios, prints the report, writes the files.

use crate::report::{Machine, Report, Section, loadavg};
use crate::scenarios::{self, Ctx, Params};
use crate::stack::{Bins, Env, workspace_root};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::time::Instant;

/// Options of `jetway-bench all`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub smoke: bool,
    /// Only these scenarios (empty: all).
    pub only: Vec<String>,
    /// JSON report path (default `target/bench/results.json`, smoke:
    /// `target/bench/smoke.json`); the Markdown report goes beside it (`.md`).
    pub out: Option<PathBuf>,
    pub bin_dir: Option<PathBuf>,
    pub nats_server: Option<PathBuf>,
    /// Override the number of idle streams (profiling at a smaller scale).
    pub idle_streams: Option<usize>,
    /// Workers' `--ack-wait-secs` in `crash` (default: the worker's own).
    pub crash_ack_wait: Option<u64>,
    /// Gateways and workers export traces to a local OTLP sink, sampling
    /// this ratio of requests (`None`: traces off).
    pub traces: Option<f64>,
    /// The command line, for the report.
    pub command: String,
}

/// Runs the benchmark. Fails if any scenario failed (after writing the
/// report of the others).
pub async fn all(opts: Options) -> Result<Report> {
    let started = Instant::now();
    let nofile = raise_nofile_limit();
    let out = opts.out.clone().unwrap_or_else(|| {
        let name = if opts.smoke {
            "smoke.json"
        } else {
            "results.json"
        };
        workspace_root().join("target/bench").join(name)
    });
    let log_dir = out
        .parent()
        .map_or_else(|| PathBuf::from("logs"), |d| d.join("logs"));
    let sink = match opts.traces {
        Some(_) => Some(crate::otlp_sink::Sink::start().await?),
        None => None,
    };
    let vars = match (&sink, opts.traces) {
        (Some(s), Some(ratio)) => vec![
            ("JETWAY_OTEL_ENDPOINT".to_owned(), s.endpoint.clone()),
            (
                "JETWAY_OTEL_PROTOCOL".to_owned(),
                "http/protobuf".to_owned(),
            ),
            ("JETWAY_OTEL_SAMPLING".to_owned(), ratio.to_string()),
        ],
        _ => Vec::new(),
    };
    let env = Env {
        bins: Bins::locate(opts.bin_dir.clone(), opts.nats_server.clone())?,
        log_dir,
        vars,
    };
    let mut params = if opts.smoke {
        Params::smoke()
    } else {
        Params::full()
    };
    if let Some(n) = opts.idle_streams {
        params.idle_streams = n;
    }
    if let Some(s) = opts.crash_ack_wait {
        params.crash_ack_wait = Some(s);
    }
    let names: Vec<&str> = scenarios::ALL
        .iter()
        .copied()
        .filter(|n| opts.only.is_empty() || opts.only.iter().any(|o| o == n))
        .collect();
    if names.is_empty() {
        bail!("no scenario selected; known: {}", scenarios::ALL.join(", "));
    }
    let ctx = Ctx {
        env,
        http: crate::client::http_client()?,
        params,
    };
    let mut machine = Machine::probe(nofile);
    tracing::info!(
        bins = %ctx.env.bins.dir.display(),
        nats_server = %ctx.env.bins.nats_server.display(),
        logs = %ctx.env.log_dir.display(),
        nofile,
        load = ?machine.load_start,
        "starting"
    );
    let mut sections = Vec::new();
    let mut failed = Vec::new();
    for name in names {
        let t = Instant::now();
        tracing::info!(scenario = name, "running");
        match scenarios::run(&ctx, name).await {
            Ok(s) => {
                tracing::info!(scenario = name, secs = t.elapsed().as_secs_f64(), "done");
                sections.push(s);
            }
            Err(e) => {
                tracing::error!(scenario = name, error = format!("{e:#}"), "failed");
                failed.push(name);
                sections.push(Section {
                    key: name_key(name),
                    title: format!("{name}: FAILED"),
                    markdown: format!("The scenario failed: `{e:#}`\n"),
                    json: serde_json::json!({ "error": format!("{e:#}") }),
                    targets: Vec::new(),
                });
            }
        }
    }
    machine.load_end = loadavg();
    let report = Report {
        machine,
        command: opts.command.clone(),
        smoke: opts.smoke,
        duration_secs: started.elapsed().as_secs_f64(),
        sections,
    };
    let markdown = report.markdown();
    println!("{markdown}");
    report.write_json(&out)?;
    let md = out.with_extension("md");
    std::fs::write(&md, &markdown).with_context(|| format!("writing {}", md.display()))?;
    tracing::info!(json = %out.display(), markdown = %md.display(), "report written");
    if let Some(s) = &sink {
        use std::sync::atomic::Ordering;
        tracing::info!(
            exports = s.received.requests.load(Ordering::Relaxed),
            bytes = s.received.bytes.load(Ordering::Relaxed),
            "the OTLP sink received"
        );
    }
    if !failed.is_empty() {
        bail!("scenarios failed: {}", failed.join(", "));
    }
    Ok(report)
}

fn name_key(name: &str) -> &'static str {
    scenarios::ALL
        .iter()
        .find(|n| **n == name)
        .copied()
        .unwrap_or("unknown")
}

/// Raises this process's open-files limit to its hard limit (children
/// inherit it); returns the soft limit in effect.
fn raise_nofile_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "could not raise the open-files limit");
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}
