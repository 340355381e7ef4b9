//! NATS credentials by config, not in the URL: a nats-server that requires
//! a user and password (or a token), and a gateway, a worker and the CLI
//! that get them from `JETWAY_NATS_*` variables.

use anyhow::Result;
use jetway_tests::{Gateway, McpClient, NatsServer, Worker, cli};
use serde_json::json;

async fn works_with(server_args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let mut b = NatsServer::builder();
    for a in server_args {
        b = b.arg(*a);
    }
    let nats = b.start().await?;
    let mut wb = Worker::builder(&nats.url());
    let mut gb = Gateway::builder(&nats.url());
    for (k, v) in env {
        wb = wb.env(*k, *v);
        gb = gb.env(*k, *v);
    }
    let _worker = wb.start().await?;
    let gw = gb.start().await?;
    let client = McpClient::initialize(&gw.mcp_url()).await?;
    let out = client
        .call_tool_structured(&gw.mcp_url(), "increment_counter", json!({}))
        .await?;
    assert_eq!(out["counter"], 1);
    let session = client.session_id().unwrap_or_default().to_owned();

    // The CLI with the same settings lists the session; without them it
    // fails with NATS's own reason, and does not hang.
    let listed = cli::jetway_with_env(&nats.url(), &["sessions", "list"], env)
        .await?
        .ok()?;
    assert!(listed.contains(&session), "{listed}");
    let refused = cli::jetway(&nats.url(), &["sessions", "list"]).await?;
    assert_ne!(refused.code, Some(0), "{refused:?}");
    assert!(
        refused.stderr.to_lowercase().contains("authoriz"),
        "{}",
        refused.stderr
    );
    Ok(())
}

#[tokio::test]
async fn user_and_password_come_from_config() -> Result<()> {
    works_with(
        &["--user", "jetway", "--pass", "s3cret-pass"],
        &[
            ("JETWAY_NATS_USER", "jetway"),
            ("JETWAY_NATS_PASSWORD", "s3cret-pass"),
        ],
    )
    .await
}

#[tokio::test]
async fn a_token_comes_from_config() -> Result<()> {
    works_with(
        &["--auth", "t0ken-for-jetway"],
        &[("JETWAY_NATS_TOKEN", "t0ken-for-jetway")],
    )
    .await
}
