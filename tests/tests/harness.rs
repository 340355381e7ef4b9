//! Smoke test of the harness itself: a real nats-server starts, accepts TCP
//! connections, comes back on the same port after a crash, stops cleanly on
//! SIGTERM, and forms a three-node cluster from config files.

use std::time::Duration;

use jetway_tests::{NatsCluster, NatsServer, eventually};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Connect and read the server's greeting (`INFO {...}`).
async fn nats_info(port: u16) -> anyhow::Result<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await??;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test]
async fn nats_server_starts_and_restarts_on_same_port() -> anyhow::Result<()> {
    let mut nats = NatsServer::start().await?;
    let port = nats.port();
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{port}"));
    let info = nats_info(port).await?;
    assert!(info.starts_with("INFO "), "greeting: {info}");
    assert!(info.contains("\"jetstream\":true"), "greeting: {info}");

    nats.kill().await?;
    assert!(!nats.is_running());
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());

    nats.restart().await?;
    assert_eq!(nats.port(), port);
    let info = nats_info(port).await?;
    assert!(info.starts_with("INFO "), "greeting after restart: {info}");

    // The store directory survives the restart.
    let store = nats.store_dir().to_path_buf();
    assert!(store.join("jetstream").is_dir());
    drop(nats);
    eventually(Duration::from_secs(5), || async { !store.exists() }).await?;
    Ok(())
}

#[tokio::test]
async fn nats_server_terminates_gracefully() -> anyhow::Result<()> {
    let mut nats = NatsServer::start().await?;
    nats.terminate(Duration::from_secs(10)).await?;
    assert!(!nats.is_running());
    assert!(nats.log().contains("Server Exiting"));
    Ok(())
}

#[tokio::test]
async fn nats_cluster_of_three_from_config_files() -> anyhow::Result<()> {
    // Three nodes from generated config files, routed to each other; ready
    // once every node's /healthz says it is current with the meta leader.
    let cluster = NatsCluster::local(3).await?;
    let nodes = cluster.nodes();
    // JetStream elects a meta leader once the routes are up.
    eventually(Duration::from_secs(20), || async {
        nodes
            .iter()
            .any(|n| n.log().contains("JetStream cluster new metadata leader"))
    })
    .await?;
    let info = nats_info(nodes[1].port()).await?;
    assert!(info.contains("\"server_name\":\"n1\""), "greeting: {info}");
    Ok(())
}
