//! `jetway-worker`: hosts the built-in demo and conformance tool sets, or
//! bridges to an upstream MCP server (`--upstream-url`).

use clap::Parser;
use jetway_shared::{service::Service, setup, telemetry};
use jetway_worker::{
    Config, Nats,
    bridge::{Bridge, owned::Owners, stdio::Pool, upstream::Upstream},
    config::{Args, UpstreamConfig},
    toolsets::Builtin,
};
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
            eprintln!("jetway-worker: {e}");
            return ExitCode::from(2);
        }
    };
    let _telemetry = telemetry::init_traced(&config.bus, "jetway-worker");
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
    let nats = Nats { client, connects };
    let ran = match config.upstream.clone() {
        None => jetway_worker::run(config, nats, listener, Builtin::new(), shutdown).await,
        Some(up) => {
            let bridge = match bridge(&up, &config.service) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "cannot set up the upstream client");
                    return ExitCode::FAILURE;
                }
            };
            // Never the headers: they may hold the upstream's credentials.
            let target = match &up {
                UpstreamConfig::Http(h) => h.url.to_string(),
                UpstreamConfig::Stdio {
                    command,
                    processes,
                    per_session,
                } => {
                    let per = if per_session.is_some() {
                        " per session"
                    } else {
                        ""
                    };
                    format!("{} ({processes} processes{per})", command.join(" "))
                }
            };
            tracing::info!(upstream = %target, "bridging to an upstream MCP server");
            jetway_worker::run_handler(config, nats, listener, bridge, shutdown).await
        }
    };
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "worker failed");
            ExitCode::FAILURE
        }
    }
}

fn bridge(up: &UpstreamConfig, service: &Service) -> Result<Bridge, reqwest::Error> {
    let up = match up {
        UpstreamConfig::Stdio {
            command,
            processes,
            per_session: None,
        } => {
            return Ok(Bridge::stdio(Pool::new(command.clone(), *processes)));
        }
        UpstreamConfig::Stdio {
            command,
            processes,
            per_session: Some(idle),
        } => {
            let owners = Owners::new(command.clone(), *processes, *idle, service.clone());
            return Ok(Bridge::stdio_per_session(owners));
        }
        UpstreamConfig::Http(up) => up,
    };
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &up.headers {
        // Checked when the configuration was loaded.
        if let (Ok(n), Ok(v)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
        }
    }
    let upstream = Upstream::new(up.url.clone(), headers, up.timeout)?;
    Ok(Bridge::http(upstream, up.timeout, up.unreachable_for))
}
