//! The gateway's HTTP server: hyper's HTTP/1 connection loop with the
//! limits a public endpoint needs, which `axum::serve` does not offer:
//!
//! - at most `max_connections` open at once; one more is closed at once
//!   (a load balancer retries it elsewhere) rather than queued;
//! - `header_read_timeout_secs`: a request's headers must arrive within
//!   it (a slowloris client sending a byte a second is cut off);
//! - `idle_timeout_secs`: a connection on which nothing is read or
//!   written for that long is closed (an idle keep-alive; SSE streams stay
//!   open through their keep-alive comments);
//! - `write_timeout_secs`: a connection whose writes have been stuck that
//!   long (a client that stopped reading its SSE stream) is closed; until
//!   then it holds at most the socket's buffers and one bounded channel per
//!   stream, and the client can come back with `Last-Event-ID`;
//! - drain: on shutdown every connection is asked to finish its request
//!   and close; the caller bounds how long that may take.
//!
//! Request bodies have their own read timeout where they are read
//! (`body_read_timeout_secs`, 408).

use crate::{
    config::Config,
    metrics::{self, Limit},
    quota::client_addr::Peer,
};
use axum::Router;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

/// The connection limits of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
}

impl Limits {
    pub fn of(config: &Config) -> Self {
        Self {
            max_connections: config.max_connections,
            header_read_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
            write_timeout: config.write_timeout,
        }
    }
}

/// Serves `app` on `listener` until `shutdown`, then stops accepting and
/// lets open connections finish; returns once they have.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "connection limit reached; closing a new connection");
            metrics::limit_rejected(Limit::Connections);
            drop(tcp);
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            // SSE writes are small and latency-bound (Nagle would hold them).
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let clock = Arc::new(Clock::default());
        let started = Instant::now();
        let io = TokioIo::new(Watched {
            inner: tcp,
            clock: clock.clone(),
            started,
        });
        // Every request learns its socket peer (the quotas key on it).
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(Peer(peer));
                req
            },
        ));
        let conn = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        if e.is_timeout() {
                            metrics::limit_rejected(Limit::HeaderTimeout);
                        }
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                }
                (limit, why) = watchdog(limits, &clock, started) => {
                    metrics::limit_rejected(limit);
                    tracing::info!(%peer, why, "closing a connection");
                }
            }
        });
    }
    graceful.shutdown().await;
}

/// What a connection did last, in milliseconds since it was accepted.
#[derive(Default)]
struct Clock {
    /// The last read or write that moved bytes.
    active: AtomicU64,
    /// Since when a write has been waiting for the socket, plus one (0:
    /// no write waits).
    blocked: AtomicU64,
}

/// Resolves, saying why, once the connection was idle for `idle_timeout`
/// or its writes were stuck for `write_timeout`.
async fn watchdog(limits: Limits, clock: &Clock, started: Instant) -> (Limit, &'static str) {
    let tick = limits
        .write_timeout
        .min(limits.idle_timeout)
        .min(Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        let now = started.elapsed();
        let active = Duration::from_millis(clock.active.load(Ordering::Relaxed));
        if now.saturating_sub(active) >= limits.idle_timeout {
            return (Limit::IdleTimeout, "idle");
        }
        let blocked = clock.blocked.load(Ordering::Relaxed);
        if blocked > 0
            && now.saturating_sub(Duration::from_millis(blocked - 1)) >= limits.write_timeout
        {
            return (
                Limit::WriteTimeout,
                "the client stopped reading (write timeout)",
            );
        }
    }
}

/// A TCP stream that tells its [`Clock`] when it moved bytes and since
/// when a write waits.
struct Watched {
    inner: TcpStream,
    clock: Arc<Clock>,
    started: Instant,
}

impl Watched {
    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.clock.active.store(self.now(), Ordering::Relaxed);
    }

    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        match r {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.touch();
                self.clock.blocked.store(0, Ordering::Relaxed);
            }
            Poll::Pending => {
                let since = self.now() + 1;
                let _ = self.clock.blocked.compare_exchange(
                    0,
                    since,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            _ => {}
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&r);
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
