//! [`Gateway`]: a `jetway-gateway` process (a [`Jetway`] in the gateway
//! role), with the URLs of the MCP endpoints it serves.

use crate::jetway::{Jetway, JetwayBuilder, Role};

/// The gateway role: `jetway-gateway`, instance ids `gw-N`.
#[derive(Debug, Clone)]
pub struct GatewayRole;

impl Role for GatewayRole {
    const BIN: &'static str = "jetway-gateway";
    const ID_PREFIX: &'static str = "gw";
    const NATS_ROLE: crate::nats_users::NatsRole = crate::nats_users::NatsRole::Gateway;
}

/// A running `jetway-gateway` process.
pub type Gateway = Jetway<GatewayRole>;
/// Options for starting a [`Gateway`].
pub type GatewayBuilder = JetwayBuilder<GatewayRole>;

impl Jetway<GatewayRole> {
    /// `http://127.0.0.1:PORT/mcp`: the default service's endpoint.
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base_url())
    }

    /// `http://127.0.0.1:PORT/services/<name>/mcp`: a named service's endpoint.
    pub fn service_mcp_url(&self, service: &str) -> String {
        format!("{}/services/{service}/mcp", self.base_url())
    }
}
