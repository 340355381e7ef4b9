//! [`GatedProxy`]: a loopback TCP proxy in front of a gateway whose
//! server→client direction the test closes and opens, for a client that
//! stops reading and later reads again.
//!
//! A client's own socket cannot stand in for that: Linux grows a loopback
//! connection's receive buffer to tens of MiB, so a client that merely reads
//! slowly never makes the gateway wait. The proxy's connection to the
//! gateway has a 4 KiB receive buffer, and while the gate is closed the
//! proxy reads nothing from it: the gateway's writes stall after a few
//! KiB, as for a client on a slow network that stopped reading.

use anyhow::{Context, Result};
use std::net::SocketAddr;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::watch,
};

/// The proxy; it stops (and its connections end) when dropped.
pub struct GatedProxy {
    addr: SocketAddr,
    open: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl GatedProxy {
    /// Proxies to `target`, the gate open.
    pub async fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (open, gate) = watch::channel(true);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, target, gate.clone()));
            }
        });
        Ok(Self { addr, open, task })
    }

    /// `http://ADDR`, to use in place of the gateway's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops passing on what the gateway sends.
    pub fn close(&self) {
        self.open.send_replace(false);
    }

    /// Passes on what the gateway sent, and what it sends from now on.
    pub fn open(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for GatedProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, target: SocketAddr, gate: watch::Receiver<bool>) {
    let Ok(upstream) = connect_small(target).await else {
        return;
    };
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut up_rx, mut up_tx) = upstream.into_split();
    let to_server = async { tokio::io::copy(&mut client_rx, &mut up_tx).await };
    let to_client = async move {
        let mut gate = gate;
        let mut buf = vec![0u8; 4096];
        loop {
            if gate.wait_for(|open| *open).await.is_err() {
                return;
            }
            match up_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if client_tx.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = to_server => {}
        () = to_client => {}
    }
}

/// A connection to `target` with a receive buffer too small to hide a stall.
async fn connect_small(target: SocketAddr) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    socket.connect(target).await.context("proxy connect")
}
