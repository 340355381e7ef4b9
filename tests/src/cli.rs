//! Running `jetway`, the operator CLI, the way an operator does: as a
//! process against a NATS URL, bounded in time, with what it printed.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::jetway_bin;
use jetway_harness::nats_users::{self, NatsRole};

/// Bound on one `jetway` run (it must not hang, e.g. on an unreachable NATS).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// What one `jetway` run printed, and how it exited.
#[derive(Debug)]
pub struct CliRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    /// Stdout of a successful run.
    pub fn ok(self) -> Result<String> {
        ensure!(
            self.code == Some(0),
            "jetway exited {:?}: {}",
            self.code,
            self.stderr
        );
        Ok(self.stdout)
    }

    /// A failure: non-zero, and exactly one line on stderr containing `what`.
    pub fn fails_with(&self, what: &str) -> Result<()> {
        ensure!(
            self.code.is_some_and(|c| c != 0),
            "expected a failure, got {:?}; stdout {}",
            self.code,
            self.stdout
        );
        let lines: Vec<&str> = self.stderr.trim().lines().collect();
        ensure!(lines.len() == 1, "expected one stderr line, got {lines:?}");
        ensure!(
            lines[0].contains(what),
            "{:?} does not say {what:?}",
            lines[0]
        );
        Ok(())
    }

    /// Stdout as JSON Lines (of a successful run).
    pub fn json_lines(self) -> Result<Vec<Value>> {
        self.ok()?
            .lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
            .collect()
    }
}

/// Runs `jetway --nats-url <url> <args…>` within [`RUN_TIMEOUT`].
pub async fn jetway(nats_url: &str, args: &[&str]) -> Result<CliRun> {
    jetway_with_env(nats_url, args, &[]).await
}

/// [`jetway`] with these `JETWAY_*` (or other) variables set.
pub async fn jetway_with_env(
    nats_url: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<CliRun> {
    let bin = jetway_bin("jetway")?;
    // On the shipped NATS users (JETWAY_TEST_NATS_USERS=1), the CLI is an
    // operator unless the caller logs in otherwise.
    let operator = NatsRole::Operator.client_env();
    let role_env: &[(&str, &str)] =
        if nats_users::enabled() && !env.iter().any(|(k, _)| k.starts_with("JETWAY_NATS_")) {
            &operator
        } else {
            &[]
        };
    let out = tokio::time::timeout(
        RUN_TIMEOUT,
        tokio::process::Command::new(&bin)
            .arg("--nats-url")
            .arg(nats_url)
            .args(args)
            .envs(role_env.iter().copied())
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("jetway {args:?} did not finish within {RUN_TIMEOUT:?}"))??;
    Ok(CliRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
