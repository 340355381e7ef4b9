//! Streams and KV buckets are created by whichever process starts first; an
//! existing stream whose configuration Jetway cannot work with is reported,
//! not silently used.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use async_nats::jetstream::{self, stream};
use jetway_tests::{Gateway, NatsServer, Worker, jetway_bin};

#[tokio::test]
async fn an_incompatible_existing_stream_stops_the_process_with_a_clear_message() -> Result<()> {
    let nats = NatsServer::start().await?;
    // Someone created JETWAY_0 by hand, without the RePublish rule Jetway reads live messages from.
    let client = async_nats::connect(nats.url()).await?;
    jetstream::new(client)
        .create_stream(stream::Config {
            name: "JETWAY_0".into(),
            subjects: vec!["jetway.0.>".into()],
            allow_direct: true,
            ..Default::default()
        })
        .await?;

    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(jetway_bin("jetway-gateway")?)
            .args(["--nats-url", &nats.url(), "--listen", "127.0.0.1:0"])
            .output(),
    )
    .await
    .context("the gateway should exit, not wait")??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success(),
        "gateway started on an incompatible stream: {stderr}"
    );
    ensure!(
        stderr.contains("JETWAY_0")
            && stderr.contains("incompatible")
            && stderr.contains("republish"),
        "the message names the stream and what differs: {stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn a_tunable_difference_is_a_warning_and_the_stream_is_shared() -> Result<()> {
    let nats = NatsServer::start().await?;
    let _gateway = Gateway::builder(&nats.url())
        .instance_id("gw-1")
        .start()
        .await?;
    // A worker configured with another retention still starts, keeps the
    // stream's setting, and says so.
    let worker = Worker::builder(&nats.url())
        .instance_id("wk-1")
        .env("JETWAY_RETENTION_SECS", "60")
        .start()
        .await?;
    ensure!(
        worker.log().contains("existing stream differs"),
        "a warning about the difference is logged"
    );
    Ok(())
}
