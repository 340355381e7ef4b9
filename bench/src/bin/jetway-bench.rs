//! `jetway-bench`: Jetway against a direct rmcp server, side by side in one
//! run. `jetway-bench all` runs every scenario; `--smoke` with tiny counts.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `jetway-bench`.
#[derive(Debug, Parser)]
#[command(
    name = "jetway-bench",
    version,
    about = "Benchmark Jetway against a direct rmcp server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the scenarios (all, or those named by --only), print the report
    /// and write it as JSON (and Markdown beside it).
    All {
        /// Tiny counts, every scenario, under a minute: proves the benchmark works.
        #[arg(long)]
        smoke: bool,
        /// Only these scenarios (comma-separated): tools_call, idle_streams,
        /// resume, crash, replay, scaling, claims, renewals, bridge.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// JSON report path. [default: target/bench/results.json; smoke: target/bench/smoke.json]
        #[arg(long)]
        out: Option<PathBuf>,
        /// Directory of jetway-gateway, jetway-worker, jetway-baseline (and jetway).
        /// [default: the directory of this binary]
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// The nats-server binary. [default: NATS_SERVER_BIN, .local/bin/nats-server, PATH]
        #[arg(long)]
        nats_server: Option<PathBuf>,
        /// Idle streams to open (default 10,000; smoke 20), e.g. for profiling.
        #[arg(long)]
        idle_streams: Option<usize>,
        /// Workers' `--ack-wait-secs` in the crash scenario. [default: the worker's default]
        #[arg(long)]
        crash_ack_wait_secs: Option<u64>,
        /// Gateways and workers export traces over OTLP/HTTP to a sink in
        /// this process, sampling this ratio of requests (0.0–1.0). [default: traces off]
        #[arg(long)]
        traces: Option<f64>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let opts = match cli.command {
        Command::All {
            smoke,
            only,
            out,
            bin_dir,
            nats_server,
            idle_streams,
            crash_ack_wait_secs,
            traces,
        } => jetway_bench::run::Options {
            smoke,
            only,
            out,
            bin_dir,
            nats_server,
            idle_streams,
            crash_ack_wait: crash_ack_wait_secs,
            traces,
            command: std::env::args().collect::<Vec<_>>().join(" "),
        },
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,async_nats=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match jetway_bench::run::all(opts).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jetway-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
