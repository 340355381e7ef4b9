//! `jetway`: parses flags, loads config, runs one operator command.
//!
//! Exit status: 0 done; 1 failed (one line on stderr says why); 2 bad
//! configuration; 3 `replay --redrive` found results that differ from the
//! recording beyond volatile fields.

use jetway_cli::{Finished, args::Cli, config::Config};
use std::io::{BufWriter, ErrorKind, Write};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // Every HTTP client of the process uses rustls with ring.
    jetway_shared::tls::install_crypto_provider();
    let cli = Cli::parse_args();
    let config = match Config::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("jetway: {e}");
            return ExitCode::from(2);
        }
    };
    // Diagnostics only on request: stderr carries one line per failure.
    if std::env::var_os("RUST_LOG").is_some() {
        jetway_shared::telemetry::init(config.bus.log_format);
    }
    let mut out = BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let result = jetway_cli::run(&cli, &config, &mut out).await;
    let flushed = out.flush();
    match result {
        Ok(Finished::Ok) => ExitCode::SUCCESS,
        Ok(Finished::Differs { differing }) => {
            eprintln!("jetway: {differing} result(s) differ from the recording");
            ExitCode::from(3)
        }
        // A closed pipe (`jetway replay … | head`) is not a failure.
        Err(jetway_cli::error::CliError::Output(e)) if e.kind() == ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            if flushed.is_ok() {
                eprintln!("jetway: {}", e.line());
            }
            ExitCode::FAILURE
        }
    }
}
