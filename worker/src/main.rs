//! `jetway-worker`: hosts the built-in demo and conformance tool sets.

use clap::Parser;
use jetway_shared::{setup, telemetry};
use jetway_worker::{Config, config::Args, toolsets::Builtin};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("jetway-worker: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.bus.log_format);
    let shutdown = CancellationToken::new();
    tokio::spawn(jetway_shared::signal::cancel_on_signal(shutdown.clone()));
    let nats = match setup::connect(&config.bus, "jetway-worker").await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "cannot connect to NATS");
            return ExitCode::FAILURE;
        }
    };
    let handler = Builtin::new();
    match jetway_worker::run(config, nats, handler, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "worker failed");
            ExitCode::FAILURE
        }
    }
}
