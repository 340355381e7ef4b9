//! Many services on one NATS: a service name scopes a deployment's streams,
//! buckets, consumer and subjects, gateways serve services on `/mcp` (the
//! first configured) and `/services/<name>/mcp`, and two services never see
//! each other's sessions, through the gateways or the operator CLI.

use anyhow::{Context, Result, ensure};
use jetway_tests::cli::jetway;
use jetway_tests::{Gateway, McpClient, NatsServer, Worker, jetway_bin};
use serde_json::{Value, json};
use std::process::Stdio;

const SESSION_NOT_FOUND: i64 = -32002;

/// The session ids `jetway [--service S] sessions list --json` prints.
async fn listed(nats_url: &str, service: Option<&str>) -> Result<Vec<String>> {
    let mut args = Vec::new();
    if let Some(s) = service {
        args.extend(["--service", s]);
    }
    args.extend(["sessions", "list", "--json"]);
    let rows: Value = serde_json::from_str(&jetway(nats_url, &args).await?.ok()?)?;
    Ok(rows
        .as_array()
        .context("a JSON array")?
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect())
}

/// `increment_counter` on `client`'s session through `url`: (counter, worker).
async fn increment(client: &McpClient, url: &str) -> Result<(i64, String)> {
    let out = client
        .call_tool_structured(url, "increment_counter", json!({}))
        .await?;
    Ok((
        out["counter"].as_i64().context("counter")?,
        out["instance"].as_str().context("instance")?.to_owned(),
    ))
}

#[tokio::test]
async fn two_services_on_one_nats_never_see_each_others_sessions() -> Result<()> {
    let nats = NatsServer::start().await?;
    let url = nats.url();
    let _plain = Worker::builder(&url)
        .instance_id("wk-default")
        .start()
        .await?;
    let _billing = Worker::builder(&url)
        .instance_id("wk-billing")
        .args(["--service", "billing"])
        .start()
        .await?;
    // gw-1 serves both (the default on /mcp), gw-2 only billing (on /mcp too).
    let gw1 = Gateway::builder(&url)
        .instance_id("gw-1")
        .args(["--services", "default,billing"])
        .start()
        .await?;
    let gw2 = Gateway::builder(&url)
        .instance_id("gw-2")
        .args(["--services", "billing"])
        .start()
        .await?;
    let plain_url = gw1.mcp_url();
    let billing_urls = [
        gw1.service_mcp_url("billing"),
        gw2.mcp_url(),
        gw2.service_mcp_url("billing"),
    ];

    let plain = McpClient::initialize(&plain_url).await?;
    let billing = McpClient::initialize(&billing_urls[0]).await?;
    for n in 1..=3 {
        assert_eq!(
            increment(&plain, &plain_url).await?,
            (n, "wk-default".into())
        );
    }
    // One billing session, every path that serves billing, one counter, and
    // only the billing worker runs it.
    for (i, u) in billing_urls.iter().enumerate() {
        assert_eq!(
            increment(&billing, u).await?,
            (i as i64 + 1, "wk-billing".into()),
            "{u}"
        );
    }

    // A session id is a session only in its own service: elsewhere it is
    // unknown (404, session not found), never the other service's session.
    let cross = [
        (&plain, billing_urls[0].clone()),
        (&plain, billing_urls[1].clone()),
        (&billing, plain_url.clone()),
    ];
    for (client, u) in cross {
        let ex = client.call_tool(&u, "get_counter", json!({})).await?;
        assert_eq!(ex.status.as_u16(), 404, "{u}: {:?}", ex.response);
        assert_eq!(ex.error_code(), Some(SESSION_NOT_FOUND), "{u}");
    }

    // A service a gateway does not serve is not found, whether it exists on
    // the bus (default on gw-2) or not, or is not even a valid name.
    for path in [
        "/services/default/mcp",
        "/services/nope/mcp",
        "/services/Bad_Name/mcp",
    ] {
        let u = format!("{}{path}", gw2.base_url());
        let fresh = McpClient::new();
        let ex = fresh
            .request(
                &u,
                "initialize",
                jetway_tests::mcp::default_initialize_params(),
            )
            .await?;
        assert_eq!(ex.status.as_u16(), 404, "{u}");
        assert!(ex.error().is_some(), "{u}: a JSON-RPC error body");
    }

    // The counters stayed apart.
    let got = plain
        .call_tool_structured(&plain_url, "get_counter", json!({}))
        .await?;
    assert_eq!(got["counter"], 3);
    let got = billing
        .call_tool_structured(&billing_urls[1], "get_counter", json!({}))
        .await?;
    assert_eq!(got["counter"], 3);

    // The operator CLI sees each service's sessions, and only those.
    let plain_id = plain.session_id().context("session id")?.to_owned();
    let billing_id = billing.session_id().context("session id")?.to_owned();
    assert_eq!(listed(&url, None).await?, vec![plain_id.clone()]);
    assert_eq!(
        listed(&url, Some("billing")).await?,
        vec![billing_id.clone()]
    );
    let transcript = jetway(
        &url,
        &["--service", "billing", "replay", &billing_id, "--json"],
    )
    .await?
    .ok()?;
    let mut increments = 0;
    for line in transcript.lines() {
        let line: Value = serde_json::from_str(line)?;
        if line["kind"] == "request" && line["message"]["params"]["name"] == "increment_counter" {
            increments += 1;
        }
    }
    assert_eq!(increments, 3, "the billing transcript has its three calls");
    let not_here = tokio::process::Command::new(jetway_bin("jetway")?)
        .args(["--nats-url", &url, "replay", &billing_id])
        .stdin(Stdio::null())
        .output()
        .await?;
    assert!(
        !not_here.status.success(),
        "the default service has no session {billing_id}"
    );

    // On NATS, each service has its own stream.
    let nc = async_nats::connect(&url).await?;
    let js = async_nats::jetstream::new(nc);
    for (stream, sid, other) in [
        ("JETWAY_0", &plain_id, &billing_id),
        ("JETWAY_BILLING_0", &billing_id, &plain_id),
    ] {
        let mut s = js.get_stream(stream).await?;
        let subjects: Vec<String> = {
            use futures::TryStreamExt;
            s.info_with_subjects(">")
                .await?
                .map_ok(|(subject, _)| subject)
                .try_collect()
                .await?
        };
        ensure!(
            subjects.iter().any(|x| x.contains(sid.as_str())),
            "{stream}: {subjects:?}"
        );
        ensure!(
            !subjects.iter().any(|x| x.contains(other.as_str())),
            "{stream}: {subjects:?}"
        );
        let _ = s.info().await?;
    }
    Ok(())
}
