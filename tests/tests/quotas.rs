//! Quotas per principal, or per client address when auth is off, end to
//! end: live sessions (counted across gateway replicas) and a request
//! rate (per replica); the client address is the socket peer unless the
//! peer is a trusted proxy. Each refusal is 429 with `Retry-After` and
//! -32007, is counted in `jetway_limit_rejections_total`, and other
//! clients are served meanwhile.

use anyhow::{Context, Result};
use jetway_tests::{Gateway, McpClient, NatsServer, Worker, mcp::default_initialize_params};
use reqwest::{StatusCode, header::HeaderMap};
use serde_json::{Value, json};

const TOO_MANY_REQUESTS: i64 = -32007;

/// What an `initialize` POST got: status, headers, and the JSON-RPC
/// message (from the SSE body or a JSON one).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    message: Value,
}

impl Answer {
    fn session(&self) -> Option<&str> {
        self.headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
    }

    fn code(&self) -> Option<i64> {
        self.message["error"]["code"].as_i64()
    }

    fn retry_after(&self) -> Option<u64> {
        self.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }
}

/// POSTs `initialize` with extra headers (`X-Forwarded-For`, say).
async fn initialize(url: &str, extra: &[(&str, &str)]) -> Result<Answer> {
    let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                      "params": default_initialize_params()});
    post(url, extra, &body).await
}

async fn post(url: &str, extra: &[(&str, &str)], body: &Value) -> Result<Answer> {
    let mut headers = vec![
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
    ];
    headers.extend_from_slice(extra);
    let (status, headers, body) = McpClient::new()
        .raw_post(url, &headers, serde_json::to_vec(body)?)
        .await?;
    let text = String::from_utf8_lossy(&body);
    let message = serde_json::from_str(&text).ok().or_else(|| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|m| m.get("id").is_some())
    });
    Ok(Answer {
        status,
        headers,
        message: message.with_context(|| format!("no JSON-RPC message in {text:?}"))?,
    })
}

/// `jetway_limit_rejections_total{limit="<limit>"}` of a gateway.
async fn rejections(gw: &Gateway, limit: &str) -> Result<u64> {
    let series = format!("jetway_limit_rejections_total{{limit=\"{limit}\"}}");
    let value = jetway_tests::scrape::metric(gw.base_url(), &series).await?;
    // Counters are whole numbers.
    value
        .map(|v| v as u64)
        .with_context(|| format!("no {series} in /metrics"))
}

#[tokio::test]
async fn sessions_per_address_are_counted_across_replicas_and_free_on_delete() -> Result<()> {
    let nats = NatsServer::start().await?;
    let _worker = Worker::start(&nats.url()).await?;
    let args = [
        "--max-sessions-per-principal",
        "3",
        "--trusted-proxies",
        "127.0.0.1/32",
    ];
    let a = Gateway::builder(&nats.url()).args(args).start().await?;
    let b = Gateway::builder(&nats.url()).args(args).start().await?;
    let client = [("x-forwarded-for", "198.51.100.7")];
    // Two sessions on one replica, one on the other: the limit is reached.
    let mut held = Vec::new();
    for url in [a.mcp_url(), a.mcp_url(), b.mcp_url()] {
        let ok = initialize(&url, &client).await?;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.message);
        held.push((url, ok.session().context("a session id")?.to_owned()));
    }
    for gw in [&a, &b] {
        let refused = initialize(&gw.mcp_url(), &client).await?;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.code(), Some(TOO_MANY_REQUESTS));
        assert_eq!(refused.retry_after(), Some(60));
        assert!(
            refused.session().is_none(),
            "a refused initialize made a session"
        );
    }
    assert!(rejections(&a, "sessions").await? >= 1);

    // Another client address behind the same proxy has its own count, and
    // the held sessions keep working.
    let other = initialize(&a.mcp_url(), &[("x-forwarded-for", "203.0.113.9")]).await?;
    assert_eq!(other.status, StatusCode::OK);
    let mut first = McpClient::new();
    first.set_session_id(Some(held[0].1.clone()));
    first.set_protocol_version(Some("2025-11-25".into()));
    let echo = first
        .call_tool(&held[0].0, "echo", json!({"text": "still here"}))
        .await?;
    assert_eq!(echo.structured_content()?["text"], "still here");

    // A DELETE on one replica frees a place on the other.
    let mut last = McpClient::new();
    last.set_session_id(Some(held[2].1.clone()));
    last.set_protocol_version(Some("2025-11-25".into()));
    let (status, _, _) = last
        .raw_request(
            reqwest::Method::DELETE,
            &b.mcp_url(),
            &[
                ("mcp-session-id", held[2].1.as_str()),
                ("x-forwarded-for", "198.51.100.7"),
            ],
            Vec::new(),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let again = initialize(&a.mcp_url(), &client).await?;
    assert_eq!(again.status, StatusCode::OK, "{}", again.message);
    let full = initialize(&b.mcp_url(), &client).await?;
    assert_eq!(full.status, StatusCode::TOO_MANY_REQUESTS);
    Ok(())
}

#[tokio::test]
async fn a_session_that_is_gone_without_delete_no_longer_counts() -> Result<()> {
    // Sessions whose records are gone (here: purged, as when they age
    // out) are dropped from the count once the limit is reached.
    let nats = NatsServer::start().await?;
    let _worker = Worker::start(&nats.url()).await?;
    let gw = Gateway::builder(&nats.url())
        .args(["--max-sessions-per-principal", "2"])
        .start()
        .await?;
    let url = gw.mcp_url();
    let one = initialize(&url, &[]).await?;
    let two = initialize(&url, &[]).await?;
    assert_eq!(
        initialize(&url, &[]).await?.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await?);
    let bucket = js.get_key_value("jetway_sessions").await?;
    bucket.purge(one.session().context("id")?).await?;
    let three = initialize(&url, &[]).await?;
    assert_eq!(three.status, StatusCode::OK, "{}", three.message);
    assert_ne!(three.session(), two.session());
    assert_eq!(
        initialize(&url, &[]).await?.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    Ok(())
}

#[tokio::test]
async fn the_request_rate_is_limited_per_client_address_through_trusted_proxies_only() -> Result<()>
{
    let nats = NatsServer::start().await?;
    let _worker = Worker::start(&nats.url()).await?;
    // 1 a second with a burst of 4: the fifth request in quick succession
    // is refused (the test sends far faster than one a second).
    let limited = |trusted: bool| {
        let mut args = vec!["--rate-limit-per-sec", "1", "--rate-limit-burst", "4"];
        if trusted {
            args.extend(["--trusted-proxies", "127.0.0.0/8"]);
        }
        Gateway::builder(&nats.url()).args(args).start()
    };
    let gw = limited(true).await?;
    let url = gw.mcp_url();
    let me = [("x-forwarded-for", "198.51.100.7")];
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let init = initialize(&url, &me).await?;
    assert_eq!(init.status, StatusCode::OK);
    let session = init.session().context("id")?.to_owned();
    let with_session = [
        ("x-forwarded-for", "198.51.100.7"),
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..8 {
        let a = post(&url, &with_session, &ping).await?;
        statuses.push(a.status);
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(a);
            break;
        }
    }
    let refused = refused.with_context(|| format!("never limited: {statuses:?}"))?;
    assert_eq!(refused.code(), Some(TOO_MANY_REQUESTS));
    assert!(
        refused.retry_after().is_some_and(|s| s >= 1),
        "{:?}",
        refused.headers
    );
    // initialize took one token of the burst of four; the next three fit
    // (a fourth may too if a second passed and a token came back).
    assert!(statuses.len() >= 4, "{statuses:?}");
    assert!(
        statuses[..3].iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert!(rejections(&gw, "rate").await? >= 1);

    // Another address behind the trusted proxy is served meanwhile.
    let other = initialize(&url, &[("x-forwarded-for", "203.0.113.9")]).await?;
    assert_eq!(other.status, StatusCode::OK);

    // A gateway that trusts no proxy keys on the socket peer: a forged
    // X-Forwarded-For buys nothing.
    let strict = limited(false).await?;
    let mut codes = Vec::new();
    for i in 0..10 {
        let forged = format!("192.0.2.{i}");
        codes.push(
            initialize(&strict.mcp_url(), &[("x-forwarded-for", forged.as_str())])
                .await?
                .status,
        );
    }
    // Ten addresses claimed, one bucket drawn from: the burst of four and
    // what came back meanwhile pass, the rest is refused.
    let served = codes.iter().filter(|s| **s == StatusCode::OK).count();
    assert!((4..10).contains(&served), "{codes:?}");
    assert!(codes[..4].iter().all(|s| *s == StatusCode::OK), "{codes:?}");
    Ok(())
}
