//! Authentication at the edge: the gateway as an OAuth 2.1 resource server
//! (MCP authorization, 2025-11-25), and sessions bound to their principal.
//!
//! A real issuer ([`TestIssuer`]): P-256 keys generated here, metadata and
//! JWKS served over HTTP by this test, tokens signed with those keys. A real
//! gateway and worker on a real nats-server, configured with
//! `JETWAY_AUTH_ISSUER` and `JETWAY_PUBLIC_URL`.

use anyhow::{Context, Result, ensure};
use base64::Engine;
use jetway_tests::{Gateway, McpClient, NatsServer, Worker, eventually_msg, issuer::TestIssuer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

/// What the gateway is told its clients reach it at.
const PUBLIC_URL: &str = "https://mcp.example.test";
/// The resource (and default audience) of `/mcp`.
const RESOURCE: &str = "https://mcp.example.test/mcp";
const METADATA: &str = "https://mcp.example.test/.well-known/oauth-protected-resource/mcp";
const UNAUTHORIZED: i64 = -32005;
const INSUFFICIENT_SCOPE: i64 = -32006;
const SESSION_NOT_FOUND: i64 = -32002;

struct Stack {
    issuer: TestIssuer,
    nats: NatsServer,
    _worker: Worker,
    gw: Gateway,
}

impl Stack {
    async fn start(extra: &[(&str, &str)]) -> Result<Self> {
        Self::start_with(TestIssuer::start().await?, extra).await
    }

    async fn start_with(issuer: TestIssuer, extra: &[(&str, &str)]) -> Result<Self> {
        let nats = NatsServer::start().await?;
        let worker = Worker::start(&nats.url()).await?;
        let mut b = Gateway::builder(&nats.url())
            .env("JETWAY_AUTH_ISSUER", issuer.issuer())
            .env("JETWAY_PUBLIC_URL", PUBLIC_URL);
        for (k, v) in extra {
            b = b.env(*k, *v);
        }
        let gw = b.start().await?;
        Ok(Self {
            issuer,
            nats,
            _worker: worker,
            gw,
        })
    }

    fn token(&self, subject: &str, scope: &str) -> Result<String> {
        self.issuer
            .sign("k1", &self.issuer.claims(subject, RESOURCE, scope))
    }

    async fn client(&self, subject: &str) -> Result<McpClient> {
        McpClient::new()
            .with_bearer(Some(self.token(subject, "")?))
            .initialize_session(
                &self.gw.mcp_url(),
                jetway_tests::mcp::default_initialize_params(),
            )
            .await
    }
}

/// POSTs `initialize` with `token` and returns the status, the
/// `WWW-Authenticate` header and the JSON-RPC error code.
async fn try_initialize(
    url: &str,
    token: Option<String>,
) -> Result<(StatusCode, String, Option<i64>)> {
    let client = McpClient::new().with_bearer(token);
    let ex = client
        .request(
            url,
            "initialize",
            jetway_tests::mcp::default_initialize_params(),
        )
        .await?;
    let challenge = ex.header("www-authenticate").unwrap_or_default().to_owned();
    Ok((ex.status, challenge, ex.error_code()))
}

#[tokio::test]
async fn without_a_token_the_gateway_answers_401_with_the_resource_metadata() -> Result<()> {
    let s = Stack::start(&[]).await?;
    let (status, challenge, code) = try_initialize(&s.gw.mcp_url(), None).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge,
        format!("Bearer resource_metadata=\"{METADATA}\"")
    );
    assert_eq!(code, Some(UNAUTHORIZED));

    // Not a bearer token, or two of them: 401 invalid_request.
    let http = jetway_tests::mcp::http_client();
    for auth in [&["Basic dXNlcjpwYXNz"][..], &["Bearer a", "Bearer b"]] {
        let mut req = http
            .post(s.gw.mcp_url())
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json");
        for a in auth {
            req = req.header("authorization", *a);
        }
        let resp = req.body("{}").send().await?;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        let challenge = resp.headers()["www-authenticate"].to_str()?;
        assert!(
            challenge.contains("error=\"invalid_request\""),
            "{challenge}"
        );
    }

    // RFC 9728 metadata, at the root and path-suffixed; nothing for
    // endpoints the gateway does not serve. Health stays open.
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let doc: Value = http
            .get(format!("{}{path}", s.gw.base_url()))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        assert_eq!(doc["resource"], RESOURCE, "{path}");
        assert_eq!(doc["authorization_servers"], json!([s.issuer.issuer()]));
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    }
    for path in [
        "/.well-known/oauth-protected-resource/nothing",
        "/.well-known/oauth-protected-resource/services/other/mcp",
    ] {
        let status = http
            .get(format!("{}{path}", s.gw.base_url()))
            .send()
            .await?
            .status();
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let health = http
        .get(format!("{}/readyz", s.gw.base_url()))
        .send()
        .await?
        .status();
    assert_eq!(health, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn bad_tokens_are_refused_with_invalid_token() -> Result<()> {
    let s = Stack::start(&[]).await?;
    let url = s.gw.mcp_url();
    let now = jetway_tests::issuer::now_secs();
    let good = s.issuer.claims("alice", RESOURCE, "");
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().into_iter().flatten() {
            c[k] = v.clone();
        }
        c
    };
    s.issuer.add_key("unpublished", false)?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let valid = s.issuer.sign("k1", &good)?;
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered = {
        let mut claims = good.clone();
        claims["sub"] = json!("mallory");
        format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(claims.to_string()),
            parts[2]
        )
    };
    let alg_none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(good.to_string())
    );
    // HS256 "signed" with the published key set as the secret (the
    // classic key-confusion attack: public material as an HMAC key).
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some("k1".into()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &good,
        &jsonwebtoken::EncodingKey::from_secret(s.issuer.jwks_json().as_bytes())?,
    )?;
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            s.issuer
                .sign("k1", &with(json!({"exp": now - 600, "nbf": now - 3600})))?,
            "expired",
        ),
        (
            "not valid yet",
            s.issuer.sign("k1", &with(json!({"nbf": now + 600})))?,
            "not valid yet",
        ),
        (
            "wrong audience",
            s.issuer
                .sign("k1", &with(json!({"aud": "https://other.example/mcp"})))?,
            "not meant for this resource",
        ),
        (
            "wrong issuer",
            s.issuer
                .sign("k1", &with(json!({"iss": "https://evil.example"})))?,
            "another issuer",
        ),
        (
            "no subject",
            s.issuer.sign("k1", &{
                let mut c = good.clone();
                c.as_object_mut().context("object")?.remove("sub");
                c
            })?,
            "required claim",
        ),
        (
            "unknown kid",
            s.issuer.sign("unpublished", &good)?,
            "no signing key",
        ),
        ("tampered signature", tampered, "signature does not verify"),
        ("alg none", alg_none, "not a well-formed JWT"),
        ("HS256 with the public key", hs256, "not accepted"),
        ("garbage", "not.a.jwt".into(), "not a well-formed JWT"),
    ];
    for (name, token, why) in cases {
        let (status, challenge, code) = try_initialize(&url, Some(token)).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(code, Some(UNAUTHORIZED), "{name}");
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\"")
                && challenge.contains(why)
                && challenge.ends_with(&format!("resource_metadata=\"{METADATA}\"")),
            "{name}: {challenge}"
        );
    }
    // And the good one is accepted.
    let (status, _, code) = try_initialize(&url, Some(valid)).await?;
    assert_eq!((status, code), (StatusCode::OK, None));
    Ok(())
}

#[tokio::test]
async fn a_rotated_key_is_fetched_when_a_token_names_it_without_hammering_the_issuer() -> Result<()>
{
    let s = Stack::start(&[]).await?;
    let url = s.gw.mcp_url();
    let (status, ..) = try_initialize(&url, Some(s.token("alice", "")?)).await?;
    assert_eq!(status, StatusCode::OK);
    let before = s.issuer.jwks_fetches();
    s.issuer.add_key("k2", true)?;
    let rotated = s
        .issuer
        .sign("k2", &s.issuer.claims("alice", RESOURCE, ""))?;
    // The gateway fetched k1's set moments ago; it looks again once its
    // minimum refetch interval (10 s) has passed, however many tokens
    // with the new kid arrive meanwhile.
    let mut tries = 0;
    let rotated_at = std::time::Instant::now();
    eventually_msg(
        "a token signed with the rotated key is accepted",
        Duration::from_secs(30),
        || {
            tries += 1;
            let (url, token) = (url.clone(), rotated.clone());
            async move { anyhow::Ok(try_initialize(&url, Some(token)).await?.0 == StatusCode::OK) }
        },
    )
    .await?;
    let fetches = s.issuer.jwks_fetches() - before;
    println!(
        "rotation: {tries} tries, {fetches} JWKS fetches, {:?}",
        rotated_at.elapsed()
    );
    ensure!(
        (1..=2).contains(&fetches),
        "{fetches} JWKS fetches for {tries} tokens with an unknown kid"
    );
    Ok(())
}

#[tokio::test]
async fn an_unreachable_issuer_gives_503_not_401() -> Result<()> {
    let issuer = TestIssuer::start().await?;
    let nats = NatsServer::start().await?;
    let closed = format!("http://127.0.0.1:{}", jetway_tests::nats::free_port()?);
    let gw = Gateway::builder(&nats.url())
        .env("JETWAY_AUTH_ISSUER", issuer.issuer())
        .env("JETWAY_AUTH_JWKS_URL", format!("{closed}/jwks"))
        .env("JETWAY_AUTH_FETCH_TIMEOUT_MS", "500")
        .env("JETWAY_PUBLIC_URL", PUBLIC_URL)
        .start()
        .await?;
    let token = issuer.sign("k1", &issuer.claims("alice", RESOURCE, ""))?;
    let client = McpClient::new().with_bearer(Some(token));
    let ex = client
        .request(
            &gw.mcp_url(),
            "initialize",
            jetway_tests::mcp::default_initialize_params(),
        )
        .await?;
    assert_eq!(ex.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ex.header("retry-after"), Some("1"));
    assert_eq!(ex.error_code(), Some(-32001));
    Ok(())
}

#[tokio::test]
async fn scopes_are_required_per_tool_with_403_insufficient_scope() -> Result<()> {
    let s = Stack::start(&[("JETWAY_AUTH_TOOL_SCOPES", "increment_counter=counter:write")]).await?;
    let url = s.gw.mcp_url();
    let reader = s.client("alice").await?;
    let echo = reader
        .call_tool(&url, "echo", json!({"text": "hi"}))
        .await?;
    assert_eq!(echo.structured_content()?["text"], "hi");
    let ex = reader
        .call_tool(&url, "increment_counter", json!({}))
        .await?;
    assert_eq!(ex.status, StatusCode::FORBIDDEN);
    assert_eq!(ex.error_code(), Some(INSUFFICIENT_SCOPE));
    let challenge = ex.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer error=\"insufficient_scope\", scope=\"counter:write\"")
            && challenge.ends_with(&format!("resource_metadata=\"{METADATA}\"")),
        "{challenge}"
    );

    // The same principal with the scope, on the same session.
    let writer = reader
        .clone()
        .with_bearer(Some(s.token("alice", "counter:write other")?));
    let out = writer
        .call_tool_structured(&url, "increment_counter", json!({}))
        .await?;
    assert_eq!(out["counter"], 1);
    // The refused call never ran.
    let out = writer
        .call_tool_structured(&url, "get_counter", json!({}))
        .await?;
    assert_eq!(out["counter"], 1);
    Ok(())
}

#[tokio::test]
async fn a_session_answers_only_to_the_principal_that_opened_it() -> Result<()> {
    let s = Stack::start(&[]).await?;
    let url = s.gw.mcp_url();
    let alice = s.client("alice").await?;
    let session = alice.session_id().context("session id")?.to_owned();
    let first = alice
        .call_tool(&url, "increment_counter", json!({}))
        .await?;
    assert_eq!(first.structured_content()?["counter"], 1);
    let event = first
        .event_ids()
        .last()
        .map(|id| id.to_string())
        .context("an event id")?;

    // Bob, holding alice's session id and a valid token of his own: every
    // way in is 404, as for a session that does not exist.
    let mut bob = McpClient::new().with_bearer(Some(s.token("bob", "")?));
    bob.set_session_id(Some(session.clone()));
    bob.set_protocol_version(alice.protocol_version().map(str::to_owned));
    let ex = bob.call_tool(&url, "increment_counter", json!({})).await?;
    assert_eq!(
        (ex.status, ex.error_code()),
        (StatusCode::NOT_FOUND, Some(SESSION_NOT_FOUND))
    );
    let get = bob.get_stream(&url, None).await?;
    assert_eq!(get.status, StatusCode::NOT_FOUND);
    let resume = bob.get_stream(&url, Some(&event)).await?;
    assert_eq!(resume.status, StatusCode::NOT_FOUND);
    assert_eq!(bob.delete(&url).await?, StatusCode::NOT_FOUND);
    // An anonymous request with alice's id is 401, before any lookup.
    let mut anonymous = bob.clone().with_bearer(None);
    anonymous.set_session_id(Some(session.clone()));
    let ex = anonymous.call_tool(&url, "get_counter", json!({})).await?;
    assert_eq!(ex.status, StatusCode::UNAUTHORIZED);

    // Tools that take another session's id stay within one principal.
    let bobs = s.client("bob").await?;
    let resumed = bobs
        .call_tool(&url, "resume_session", json!({"old_session_id": session}))
        .await?;
    assert!(
        resumed.is_tool_error(),
        "bob resumed alice's session: {:?}",
        resumed.result()
    );
    let summary = bobs
        .request(
            &url,
            "resources/read",
            json!({"uri": format!("resource://session/{session}/summary")}),
        )
        .await?;
    assert!(
        summary.error().is_some(),
        "bob read alice's summary: {:?}",
        summary.result()
    );
    let alices_second = s.client("alice").await?;
    let resumed = alices_second
        .call_tool_structured(&url, "resume_session", json!({"old_session_id": session}))
        .await?;
    assert_eq!(resumed["status"], "resumed", "{resumed}");
    assert_eq!(
        alices_second
            .call_tool_structured(&url, "get_counter", json!({}))
            .await?["counter"],
        1
    );

    // Nothing bob did touched alice's session.
    assert_eq!(
        alice
            .call_tool_structured(&url, "increment_counter", json!({}))
            .await?["counter"],
        2
    );

    // Tokens are never stored: not in any message of the session stream
    // nor in any KV bucket. What the record keeps is the principal.
    let tokens = [s.token("alice", "")?, s.token("bob", "")?];
    let signatures: Vec<&str> = tokens.iter().filter_map(|t| t.rsplit('.').next()).collect();
    let bus = async_nats::connect(s.nats.url()).await?;
    let js = async_nats::jetstream::new(bus);
    let mut names = js.stream_names();
    let mut checked = 0;
    while let Some(name) = futures::StreamExt::next(&mut names).await {
        let stream = js.get_stream(name?).await?;
        let last = stream.cached_info().state.last_sequence;
        for seq in 1..=last {
            let Ok(m) = stream.get_raw_message(seq).await else {
                continue;
            };
            let text = format!("{:?} {}", m.headers, String::from_utf8_lossy(&m.payload));
            for sig in &signatures {
                ensure!(!text.contains(sig), "a token is stored: {text}");
            }
            checked += 1;
        }
    }
    ensure!(checked > 10, "only {checked} messages checked");
    let record = js
        .get_key_value("jetway_sessions")
        .await?
        .get(&session)
        .await?
        .context("alice's session record")?;
    let record: Value = serde_json::from_slice(&record)?;
    assert_eq!(
        record["principal"],
        json!({"issuer": s.issuer.issuer(), "subject": "alice", "client_id": "jetway-tests"})
    );
    Ok(())
}

#[tokio::test]
async fn http_sse_sessions_are_bound_to_their_principal_too() -> Result<()> {
    let s = Stack::start(&[]).await?;
    let sse_url = format!("{}/sse", s.gw.base_url());
    let http = jetway_tests::mcp::http_client();
    let anonymous = http
        .get(&sse_url)
        .header("accept", "text/event-stream")
        .send()
        .await?;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // Both transports of a service are one resource: /sse and /messages
    // point to /mcp's metadata, and a token for it serves both.
    let challenge = anonymous.headers()["www-authenticate"].to_str()?.to_owned();
    assert_eq!(
        challenge,
        format!("Bearer resource_metadata=\"{METADATA}\"")
    );

    let mut alice =
        jetway_tests::http_sse::SseSession::open_as(&sse_url, &s.token("alice", "")?).await?;
    alice.initialize().await?;

    // Bob, with alice's message URL: 404, and alice's session goes on.
    let mut bob =
        jetway_tests::http_sse::SseSession::open_as(&sse_url, &s.token("bob", "")?).await?;
    bob.endpoint = alice.endpoint.clone();
    let call = |id: i64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "increment_counter", "arguments": {}}})
    };
    let refused = bob.post(&call(7)).await?;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.body);
    let posted = alice.post(&call(8)).await?;
    assert_eq!(posted.status, StatusCode::ACCEPTED, "{}", posted.body);
    let events = alice.until_response(8, Duration::from_secs(15)).await?;
    let last = events
        .last()
        .and_then(|e| e.json.clone())
        .context("a response")?;
    assert_eq!(last["result"]["structuredContent"]["counter"], 1, "{last}");
    Ok(())
}

/// A stack whose gateway introspects opaque tokens at the test issuer.
async fn introspecting(extra: &[(&str, &str)]) -> Result<Stack> {
    let issuer = TestIssuer::start().await?;
    let (id, secret) = jetway_tests::issuer::INTROSPECTION_CLIENT;
    let url = issuer.introspection_url();
    let mut env = vec![
        ("JETWAY_AUTH_INTROSPECTION_URL", url.as_str()),
        ("JETWAY_AUTH_INTROSPECTION_CLIENT_ID", id),
        ("JETWAY_AUTH_INTROSPECTION_CLIENT_SECRET", secret),
    ];
    env.extend_from_slice(extra);
    Stack::start_with(issuer, &env).await
}

/// An active introspection answer for `subject`, for `/mcp`, for an hour.
fn active(s: &Stack, subject: &str) -> Value {
    let now = jetway_tests::issuer::now_secs();
    json!({"active": true, "sub": subject, "aud": RESOURCE, "iss": s.issuer.issuer(),
           "exp": now + 3600, "scope": "mcp:tools", "client_id": "opaque-app"})
}

#[tokio::test]
async fn opaque_tokens_are_checked_by_introspection_and_bound_to_their_principal() -> Result<()> {
    let s = introspecting(&[]).await?;
    let url = s.gw.mcp_url();
    let alice = s.issuer.issue_opaque(active(&s, "alice"));
    let client = McpClient::new()
        .with_bearer(Some(alice.clone()))
        .initialize_session(&url, jetway_tests::mcp::default_initialize_params())
        .await?;
    for want in 1..=5 {
        let out = client
            .call_tool_structured(&url, "increment_counter", json!({}))
            .await?;
        assert_eq!(out["counter"], want);
    }
    // One introspection for the whole session: the answer is cached.
    assert_eq!(s.issuer.introspections(), 1);

    // Another principal's opaque token, on alice's session: 404.
    let mallory = s.issuer.issue_opaque(active(&s, "mallory"));
    let mut other = McpClient::new().with_bearer(Some(mallory));
    other.set_session_id(client.session_id().map(str::to_owned));
    other.set_protocol_version(client.protocol_version().map(str::to_owned));
    let ex = other
        .call_tool(&url, "increment_counter", json!({}))
        .await?;
    assert_eq!(ex.status, StatusCode::NOT_FOUND);
    assert_eq!(ex.error_code(), Some(SESSION_NOT_FOUND));

    // JWTs are still verified locally, next to opaque tokens.
    let jwt_client = s.client("bob").await?;
    let out = jwt_client
        .call_tool_structured(&url, "increment_counter", json!({}))
        .await?;
    assert_eq!(out["counter"], 1);

    // The record keeps the principal, never the token.
    let nats = async_nats::connect(s.nats.url()).await?;
    let js = async_nats::jetstream::new(nats);
    let sessions = js.get_key_value("jetway_sessions").await?;
    let sid = client.session_id().context("no session id")?;
    let record = sessions.get(sid).await?.context("no record")?;
    let text = String::from_utf8_lossy(&record);
    assert!(
        text.contains("alice") && text.contains("opaque-app"),
        "{text}"
    );
    assert!(!text.contains(&alice), "the token is in the record");
    Ok(())
}

#[tokio::test]
async fn opaque_tokens_that_introspection_does_not_vouch_for_are_refused() -> Result<()> {
    let s = introspecting(&[]).await?;
    let url = s.gw.mcp_url();
    let now = jetway_tests::issuer::now_secs();
    let base = active(&s, "alice");
    let with = |k: &str, v: Value| {
        let mut a = base.clone();
        a[k] = v;
        a
    };
    let cases = [
        ("unknown to the issuer", None, "the token is not active"),
        (
            "inactive",
            Some(with("active", json!(false))),
            "the token is not active",
        ),
        (
            "expired",
            Some(with("exp", json!(now - 120))),
            "the token has expired",
        ),
        (
            "another resource",
            Some(with("aud", json!("https://elsewhere.test/mcp"))),
            "the token is not meant for this resource (aud)",
        ),
        (
            "another issuer",
            Some(with("iss", json!("https://evil.test"))),
            "the token is from another issuer",
        ),
        (
            "no subject",
            Some(with("sub", json!(""))),
            "the introspection answer names no subject (sub)",
        ),
    ];
    for (what, answer, why) in cases {
        let token = match answer {
            Some(a) => s.issuer.issue_opaque(a),
            None => "never-issued-opaque-token".to_owned(),
        };
        let (status, challenge, code) = try_initialize(&url, Some(token)).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(code, Some(UNAUTHORIZED), "{what}");
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        assert!(challenge.contains(why), "{what}: {challenge}");
    }
    Ok(())
}

#[tokio::test]
async fn an_introspection_endpoint_that_refuses_the_gateway_gives_503_not_401() -> Result<()> {
    // Wrong client secret: the endpoint answers 401 to the gateway, which
    // cannot tell whether the token is good, so the client gets 503.
    let s = introspecting(&[("JETWAY_AUTH_INTROSPECTION_CLIENT_SECRET", "wrong")]).await?;
    let token = s.issuer.issue_opaque(active(&s, "alice"));
    let (status, _, _) = try_initialize(&s.gw.mcp_url(), Some(token)).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(s.issuer.introspections(), 0);
    Ok(())
}
