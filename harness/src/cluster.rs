//! [`NatsCluster`]: nats-server nodes forming one JetStream cluster.
//!
//! [`NatsCluster::start`] starts one node per [`NatsServerBuilder`] (each
//! with its cluster config), in order, each ready on its own
//! (`/healthz?js-enabled-only=true`), then waits until every node's full
//! `/healthz` answers 200: the cluster has a meta leader and each node is
//! current with it and with its streams. [`NatsCluster::local`] writes the
//! configs itself: `n` nodes on loopback, routes on free ports.

use std::time::Duration;

use crate::error::{HarnessError, Result};
use crate::listen::free_port;
use crate::nats::{NatsServer, NatsServerBuilder};
use crate::ready::{Ready, wait_ready};

/// How long a new cluster may take to elect a meta leader and be current.
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(60);

/// A running JetStream cluster; its nodes are killed on drop.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts the nodes, in order, then waits until all are healthy.
    pub async fn start(nodes: impl IntoIterator<Item = NatsServerBuilder>) -> Result<Self> {
        let mut started = Vec::new();
        for node in nodes {
            started.push(node.start().await?);
        }
        let cluster = Self { nodes: started };
        for i in 0..cluster.nodes.len() {
            cluster.wait_healthy(i, CLUSTER_TIMEOUT).await?;
        }
        Ok(cluster)
    }

    /// `n` nodes named `n0`, `n1`, … in the cluster `jetway-test`, with
    /// routes between all of them on free loopback ports.
    pub async fn local(n: usize) -> Result<Self> {
        let route_ports = (0..n).map(|_| free_port()).collect::<Result<Vec<_>>>()?;
        let routes = route_ports
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        Self::start(route_ports.iter().enumerate().map(|(i, port)| {
            NatsServer::builder().name(format!("n{i}")).config(format!(
                "server_name: n{i}\ncluster {{\n  name: jetway-test\n  listen: 127.0.0.1:{port}\n  \
                 routes: [{routes}]\n}}\n"
            ))
        }))
        .await
    }

    /// The nodes, in the order they were given.
    pub fn nodes(&self) -> &[NatsServer] {
        &self.nodes
    }

    /// One node, to kill or restart it.
    pub fn node_mut(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }

    /// Every node's client URL.
    pub fn client_urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// Waits until node `i`'s full `/healthz` answers 200: JetStream is
    /// enabled and the node is current with the meta leader and its streams.
    pub async fn wait_healthy(&self, i: usize, timeout: Duration) -> Result<()> {
        let node = &self.nodes[i];
        let url = format!("{}/healthz", node.monitor_url());
        match node.process() {
            Some(process) => wait_ready(process, &url, Ready::Ok, timeout).await,
            None => Err(HarnessError::Exited {
                name: node.log().prefix(),
                what: "is not running".into(),
                tail: node.log().tail_text(),
            }),
        }
    }
}
