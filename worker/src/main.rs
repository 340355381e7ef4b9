//! `jetway-worker`: hosts the built-in demo and conformance tool sets.

use clap::Parser;
use jetway_shared::{setup, telemetry};
use jetway_worker::{Config, Nats, config::Args, toolsets::Builtin};
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
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, listen = %config.listen, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, "listening on {addr}"),
        Err(e) => tracing::warn!(error = %e, "listening, address unknown"),
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(jetway_shared::signal::cancel_on_signal(shutdown.clone()));
    let (client, connects) = match setup::connect_watching(&config.bus, "jetway-worker").await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "cannot connect to NATS");
            return ExitCode::FAILURE;
        }
    };
    let handler = Builtin::new();
    let nats = Nats { client, connects };
    match jetway_worker::run(config, nats, listener, handler, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "worker failed");
            ExitCode::FAILURE
        }
    }
}
