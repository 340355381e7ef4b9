//! `jetway-baseline`: the benchmark's demo tools served directly by rmcp's
//! Streamable HTTP server (no bus), for comparison with Jetway.

use clap::Parser;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// Flags of `jetway-baseline`.
#[derive(Debug, Parser)]
#[command(
    name = "jetway-baseline",
    version,
    about = "rmcp Streamable HTTP server with the benchmark's demo tools"
)]
struct Args {
    /// Address to listen on; port 0 picks a free one (printed as `listening on ADDR`).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rmcp=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %args.listen, error = %e, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => tracing::info!("listening on {addr}"),
        Err(e) => tracing::warn!(error = %e, "listening (address unknown)"),
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(jetway_shared::signal::cancel_on_signal(shutdown.clone()));
    match jetway_bench::baseline::serve(listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}
