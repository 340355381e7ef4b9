//! [`LoadBalancer`]: a real HAProxy in front of several backends, the way
//! Jetway is deployed: round robin per request, no stickiness (no cookie,
//! no source hashing), so consecutive requests of one client land on
//! different gateways. A variant serves everything under a path prefix
//! (`/jetway/sse` → backend `/sse`), as an ingress with a path rule does.
//!
//! The binary is `JETWAY_HAPROXY_BIN`, else `haproxy` on `PATH`, else
//! `/usr/sbin/haproxy` (Debian's package; `scripts/install-haproxy.sh`
//! installs the pinned version). Backends are health-checked every 200 ms
//! on `/readyz` and a connection refused by a dead one is sent to another
//! (`option redispatch`), so a killed gateway drops out at once.

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::process::Command;

use crate::error::{HarnessError, Result};
use crate::listen::free_port;
use crate::log::ProcessLog;
use crate::process::ProcessGuard;
use crate::ready::{Ready, wait_ready};

/// Options for starting a [`LoadBalancer`].
#[derive(Debug, Clone, Default)]
pub struct LoadBalancerBuilder {
    backends: Vec<SocketAddr>,
    prefix: Option<String>,
}

impl LoadBalancerBuilder {
    /// Serve everything under `prefix` (such as `/jetway`): the prefix is
    /// stripped before the request reaches a backend; other paths get 404.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into().trim_end_matches('/').to_owned());
        self
    }

    /// Starts HAProxy and waits until a request through it reaches a backend.
    pub async fn start(self) -> Result<LoadBalancer> {
        let bin = haproxy_bin()?;
        let port = free_port()?;
        let dir = tempfile::tempdir().map_err(HarnessError::io("creating the HAProxy dir"))?;
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(&config, self.config(port))
            .map_err(HarnessError::io("writing haproxy.cfg"))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("-db").arg("-f").arg(&config);
        let process = ProcessGuard::spawn(cmd, ProcessLog::new("haproxy"))?;
        let base_url = format!(
            "http://127.0.0.1:{port}{}",
            self.prefix.as_deref().unwrap_or("")
        );
        wait_ready(
            &process,
            &format!("{base_url}/readyz"),
            Ready::Ok,
            crate::START_TIMEOUT,
        )
        .await?;
        Ok(LoadBalancer {
            process,
            base_url,
            _dir: dir,
        })
    }

    fn config(&self, port: u16) -> String {
        let mut cfg = format!(
            "global\n  maxconn 4096\n\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 120s\n  \
             timeout server 120s\n  timeout tunnel 120s\n  retries 3\n  option redispatch\n  \
             option http-server-close\n\n\
             frontend jetway\n  bind 127.0.0.1:{port}\n"
        );
        if let Some(p) = &self.prefix {
            cfg.push_str(&format!(
                "  http-request deny deny_status 404 unless {{ path_beg {p}/ }}\n  \
                 http-request replace-path ^{p}(/.*)$ \\1\n"
            ));
        }
        cfg.push_str(
            "  default_backend gateways\n\n\
             backend gateways\n  balance roundrobin\n  option httpchk GET /readyz\n",
        );
        for (i, b) in self.backends.iter().enumerate() {
            cfg.push_str(&format!(
                "  server gw{i} {b} check inter 200ms fall 1 rise 1\n"
            ));
        }
        cfg
    }
}

/// A running HAProxy; SIGKILLed on drop.
#[derive(Debug)]
pub struct LoadBalancer {
    process: ProcessGuard,
    base_url: String,
    _dir: tempfile::TempDir,
}

impl LoadBalancer {
    /// Options for a load balancer in front of `backends`.
    pub fn builder(backends: impl IntoIterator<Item = SocketAddr>) -> LoadBalancerBuilder {
        LoadBalancerBuilder {
            backends: backends.into_iter().collect(),
            prefix: None,
        }
    }

    /// Round robin over `backends`, at the root.
    pub async fn start(backends: impl IntoIterator<Item = SocketAddr>) -> Result<Self> {
        Self::builder(backends).start().await
    }

    /// `http://127.0.0.1:PORT` plus the prefix, if any.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The captured output.
    pub fn log(&self) -> &ProcessLog {
        self.process.log()
    }
}

/// Where HAProxy is: `JETWAY_HAPROXY_BIN`, `PATH`, or Debian's place.
pub fn haproxy_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("JETWAY_HAPROXY_BIN") {
        return Ok(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("haproxy"))
        .chain([PathBuf::from("/usr/sbin/haproxy")])
        .find(|p| p.is_file());
    on_path.ok_or_else(|| HarnessError::NotFound {
        what: "haproxy".into(),
        hint:
            "run scripts/install-haproxy.sh (Debian's haproxy package), or set JETWAY_HAPROXY_BIN"
                .into(),
    })
}
