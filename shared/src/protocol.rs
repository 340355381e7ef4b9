//! MCP protocol versions Jetway speaks, the transports they are served on,
//! and what each version changes on the wire.
//!
//! Versions are compared by what they allow (`allows_batches`,
//! `primes_streams`, …), never by comparing their date strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The Streamable HTTP header naming the session (`Mcp-Session-Id`).
pub const SESSION_HEADER: &str = "mcp-session-id";
/// The Streamable HTTP header naming the negotiated version (`MCP-Protocol-Version`).
pub const VERSION_HEADER: &str = "mcp-protocol-version";
/// The SSE header a client resumes a stream with.
pub const LAST_EVENT_ID: &str = "last-event-id";

/// The MCP transport a session was opened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Streamable HTTP (2025-03-26 and later): one endpoint, `Mcp-Session-Id`.
    #[default]
    StreamableHttp,
    /// The HTTP+SSE transport of 2024-11-05: `GET /sse` plus a message URL.
    HttpSse,
}

impl Transport {
    /// The name shown to operators (CLI tables, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::StreamableHttp => "streamable-http",
            Transport::HttpSse => "http+sse",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol version of the legacy (session-based) era.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ProtocolVersion {
    /// HTTP+SSE era.
    #[serde(rename = "2024-11-05")]
    V2024_11_05,
    /// First Streamable HTTP version; the only one with JSON-RPC batches.
    #[serde(rename = "2025-03-26")]
    V2025_03_26,
    /// Adds `MCP-Protocol-Version` on every request, drops batches.
    #[serde(rename = "2025-06-18")]
    V2025_06_18,
    /// Adds stream priming events and polling (SEP-1699).
    #[serde(rename = "2025-11-25")]
    V2025_11_25,
}

impl ProtocolVersion {
    /// Every version Jetway knows, newest first.
    pub const ALL: [ProtocolVersion; 4] = [
        ProtocolVersion::V2025_11_25,
        ProtocolVersion::V2025_06_18,
        ProtocolVersion::V2025_03_26,
        ProtocolVersion::V2024_11_05,
    ];

    /// The newest version Jetway negotiates on Streamable HTTP.
    pub const LATEST: ProtocolVersion = ProtocolVersion::V2025_11_25;

    /// Assumed when a Streamable HTTP request carries no `MCP-Protocol-Version`.
    pub const DEFAULT_HEADER: ProtocolVersion = ProtocolVersion::V2025_03_26;

    /// The version's wire spelling (`"2025-11-25"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolVersion::V2024_11_05 => "2024-11-05",
            ProtocolVersion::V2025_03_26 => "2025-03-26",
            ProtocolVersion::V2025_06_18 => "2025-06-18",
            ProtocolVersion::V2025_11_25 => "2025-11-25",
        }
    }

    /// Parses a wire spelling; `None` for versions Jetway does not know.
    pub fn parse(s: &str) -> Option<ProtocolVersion> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The transport this version is served on.
    pub fn transport(self) -> Transport {
        match self {
            ProtocolVersion::V2024_11_05 => Transport::HttpSse,
            _ => Transport::StreamableHttp,
        }
    }

    /// True if a session on `transport` may negotiate this version.
    pub fn served_on(self, transport: Transport) -> bool {
        self.transport() == transport
    }

    /// True for the one version that allows JSON-RPC batches (2025-03-26).
    pub fn allows_batches(self) -> bool {
        self == ProtocolVersion::V2025_03_26
    }

    /// True for versions whose SSE streams start with a priming event
    /// (an event id and empty data, 2025-11-25 on).
    pub fn primes_streams(self) -> bool {
        self >= ProtocolVersion::V2025_11_25
    }

    /// The versions served on `transport`, newest first.
    pub fn list(transport: Transport) -> impl Iterator<Item = ProtocolVersion> {
        Self::ALL
            .into_iter()
            .filter(move |v| v.served_on(transport))
    }

    /// The versions served on `transport`, comma-separated, for error messages.
    pub fn joined(transport: Transport) -> String {
        Self::list(transport)
            .map(ProtocolVersion::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A version string Jetway does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported protocol version {0:?}")]
pub struct UnknownVersion(pub String);

impl FromStr for ProtocolVersion {
    type Err = UnknownVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProtocolVersion::parse(s).ok_or_else(|| UnknownVersion(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_round_trips_through_its_spelling_and_serde() {
        for v in ProtocolVersion::ALL {
            assert_eq!(ProtocolVersion::parse(v.as_str()), Some(v));
            assert_eq!(v.as_str().parse::<ProtocolVersion>(), Ok(v));
            let json = serde_json::to_string(&v).expect("serializes");
            assert_eq!(json, format!("\"{}\"", v.as_str()));
            assert_eq!(
                serde_json::from_str::<ProtocolVersion>(&json).expect("parses"),
                v
            );
        }
        assert_eq!(ProtocolVersion::parse("2025-13-01"), None);
        assert_eq!(ProtocolVersion::parse(" 2025-11-25"), None);
    }

    #[test]
    fn capabilities_follow_the_spec_pages() {
        use ProtocolVersion::*;
        let batches: Vec<_> = ProtocolVersion::ALL
            .into_iter()
            .filter(|v| v.allows_batches())
            .collect();
        assert_eq!(batches, [V2025_03_26]);
        assert!(V2025_11_25.primes_streams());
        assert!(!V2025_06_18.primes_streams());
        assert!(!V2024_11_05.primes_streams());
        assert_eq!(
            ProtocolVersion::joined(Transport::StreamableHttp),
            "2025-11-25, 2025-06-18, 2025-03-26"
        );
        assert_eq!(ProtocolVersion::joined(Transport::HttpSse), "2024-11-05");
        assert!(ProtocolVersion::LATEST.served_on(Transport::StreamableHttp));
        assert!(ProtocolVersion::DEFAULT_HEADER.served_on(Transport::StreamableHttp));
    }

    #[test]
    fn transports_serialize_in_snake_case_and_default_to_streamable_http() {
        assert_eq!(Transport::default(), Transport::StreamableHttp);
        assert_eq!(
            serde_json::to_string(&Transport::HttpSse).expect("serializes"),
            "\"http_sse\""
        );
        assert_eq!(Transport::HttpSse.to_string(), "http+sse");
    }
}
