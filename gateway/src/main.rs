//! `jetway-gateway`: parses flags, loads config, runs the gateway until a
//! signal, then drains.

use clap::Parser;
use jetway_gateway::{Config, config::Args};
use jetway_shared::{setup, telemetry};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    // Every HTTP client of the process uses rustls with ring.
    jetway_shared::tls::install_crypto_provider();
    let args = Args::parse();
    let config = match Config::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("jetway-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let _telemetry = telemetry::init_traced(&config.bus, "jetway-gateway");
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %config.listen, error = %e, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(jetway_shared::signal::cancel_on_signal(shutdown.clone()));
    let (nats, connects) = match setup::connect_watching(&config.bus, "jetway-gateway").await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "cannot connect to NATS");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => tracing::info!("listening on {addr}"),
        Err(e) => tracing::warn!(error = %e, "listening (address unknown)"),
    }
    match jetway_gateway::run(config, nats, connects, listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "gateway failed");
            ExitCode::FAILURE
        }
    }
}
