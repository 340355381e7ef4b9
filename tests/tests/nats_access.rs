//! NATS credentials by config, not in the URL: a nats-server that requires
//! a user and password (or a token, an NKey, or mutual TLS), and a
//! gateway, a worker and the CLI that get them from `JETWAY_NATS_*`
//! variables.

use anyhow::Result;
use jetway_tests::{Gateway, McpClient, NatsServer, Worker, cli};
use serde_json::json;

async fn works_with(server_args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    works_on(NatsServer::builder(), server_args, env, "authoriz").await
}

/// A gateway, a worker and the CLI work on `b`'s server with `env`; the
/// CLI without it fails with a reason that contains `refusal`.
async fn works_on(
    mut b: jetway_tests::NatsServerBuilder,
    server_args: &[&str],
    env: &[(&str, &str)],
    refusal: &str,
) -> Result<()> {
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
        refused.stderr.to_lowercase().contains(refusal),
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

#[tokio::test]
async fn an_nkey_seed_file_comes_from_config() -> Result<()> {
    let user = nkeys::KeyPair::new_user();
    let dir = tempfile::tempdir()?;
    let seed = dir.path().join("jetway.nk");
    std::fs::write(&seed, user.seed()?)?;
    let server = NatsServer::builder().config(format!(
        "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
        user.public_key()
    ));
    let seed = seed.to_string_lossy().into_owned();
    works_on(
        server,
        &[],
        &[("JETWAY_NATS_NKEY_SEED_FILE", seed.as_str())],
        "authoriz",
    )
    .await
}

/// Mutual TLS: a CA made here, a server certificate for 127.0.0.1, and a
/// client certificate the server requires (`verify: true`).
#[tokio::test]
async fn tls_with_a_client_certificate_comes_from_config() -> Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let dir = tempfile::tempdir()?;
    let write = |name: &str, pem: String| -> Result<String> {
        let path = dir.path().join(name);
        std::fs::write(&path, pem)?;
        Ok(path.to_string_lossy().into_owned())
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let issue = |names: Vec<String>| -> Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names)?;
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        let cert = params.signed_by(&key, &ca, &ca_key)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server_cert, server_key) = issue(vec!["localhost".into()])?;
    let (client_cert, client_key) = issue(vec!["jetway-client".into()])?;
    let ca_file = write("ca.pem", ca.pem())?;
    let server = NatsServer::builder().config(format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{ca_file}\"\n  verify: true\n}}\n",
        write("server.pem", server_cert)?,
        write("server-key.pem", server_key)?,
    ));
    let cert_file = write("client.pem", client_cert)?;
    let key_file = write("client-key.pem", client_key)?;
    works_on(
        server,
        &[],
        &[
            ("JETWAY_NATS_TLS_CA_FILE", ca_file.as_str()),
            ("JETWAY_NATS_TLS_CERT_FILE", cert_file.as_str()),
            ("JETWAY_NATS_TLS_KEY_FILE", key_file.as_str()),
        ],
        // Without the CA, the CLI does not trust the server.
        "certificate",
    )
    .await
}
