//! The session record, kept in the service's sessions KV bucket
//! (`jetway_sessions` for the default service) under the session id. Gateways create and close it; workers fill in what the
//! `initialize` handshake negotiated and the log level.

use crate::kv_write::{self, Expect, WriteError};
use crate::protocol::ProtocolVersion;
use async_nats::jetstream::{Context, kv};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::protocol::Transport;

/// Lifecycle of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// `initialize` was received; the worker has not answered yet.
    Initializing,
    /// The handshake completed; requests are served.
    Active,
    /// The client sent DELETE (or an operator ended it).
    Closed,
}

/// Everything about a session that any gateway or worker may need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub state: State,
    /// The version negotiated by `initialize` (requested, until the worker
    /// answers); stored in its wire spelling (`"2025-11-25"`).
    pub protocol_version: ProtocolVersion,
    /// The params of the client's `initialize` request (clientInfo, capabilities).
    pub client: Value,
    /// `logging/setLevel` level; `None` sends every level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<LogLevel>,
    /// Unix milliseconds.
    pub created_ms: u64,
    /// Unix milliseconds of the last refresh (refreshed lazily, not per message).
    pub last_seen_ms: u64,
    /// Gateway instance that created the session.
    pub created_by: String,
    /// The transport the session was opened on; records written before
    /// HTTP+SSE existed have none and are Streamable HTTP sessions.
    #[serde(default)]
    pub transport: Transport,
    /// The session a bridge worker opened on its upstream MCP server for
    /// this one; any bridge worker uses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamSession>,
    /// Who opened the session, when the gateway authenticates clients;
    /// only the same principal may use it (see [`crate::principal::may_use`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<crate::principal::Principal>,
}

/// A Jetway session's counterpart on a bridged upstream server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamSession {
    /// The upstream's `Mcp-Session-Id`; `None` for a stateless upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The protocol version the upstream negotiated.
    pub protocol_version: ProtocolVersion,
}

impl SessionRecord {
    /// A Streamable HTTP session's record created now, with no log level
    /// set (see [`SessionRecord::on`] for another transport).
    pub fn new(
        state: State,
        protocol_version: ProtocolVersion,
        client: Value,
        created_by: impl Into<String>,
    ) -> Self {
        let now = crate::headers::now_ms();
        Self {
            state,
            protocol_version,
            client,
            log_level: None,
            created_ms: now,
            last_seen_ms: now,
            created_by: created_by.into(),
            transport: Transport::StreamableHttp,
            upstream: None,
            principal: None,
        }
    }

    /// The same record for a session opened on `transport`.
    pub fn on(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Serializes for KV (cannot fail: every field is plain data).
    pub fn to_bytes(&self) -> bytes::Bytes {
        serde_json::to_vec(self)
            .expect("a SessionRecord is plain data and always serializes")
            .into()
    }

    /// Deserializes from KV.
    pub fn from_bytes(b: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(b)
    }
}

/// Why a session record could not be updated.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// No record, or the session is closed (when closed sessions are refused).
    #[error("session not found")]
    NotFound,
    #[error("session store unavailable: {0}")]
    Read(#[source] kv::EntryError),
    #[error("session store unavailable: {0}")]
    Write(#[source] WriteError),
    #[error("session record is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("session record kept changing; gave up")]
    Contended,
}

/// Compare-and-set update of a session's record: reads it, applies `f`, and
/// writes it back only if nobody wrote in between (else tries again), so
/// concurrent updates from gateways and workers never lose each other.
/// `f` returns `false` to refuse the update (the record is not live).
///
/// Reads and writes are retried through a leader election (see
/// [`kv_write`](crate::kv_write)); a write whose acknowledgement was lost is
/// not applied twice.
pub async fn update_record(
    js: &Context,
    sessions: &kv::Store,
    session: &str,
    mut f: impl FnMut(&mut SessionRecord) -> bool,
) -> Result<SessionRecord, UpdateError> {
    let call: u64 = rand::random();
    for _ in 0..32 {
        let entry = kv_write::read(sessions, session)
            .await
            .map_err(UpdateError::Read)?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Err(UpdateError::NotFound);
        };
        let mut record = SessionRecord::from_bytes(&entry.value)?;
        if !f(&mut record) {
            return Err(UpdateError::NotFound);
        }
        let write_id = crate::msg_id::record_write(session, call, entry.revision);
        let expect = Expect::Revision(entry.revision);
        match kv_write::write(js, sessions, session, record.to_bytes(), expect, &write_id).await {
            Ok(_) => return Ok(record),
            Err(WriteError::Conflict) => continue,
            Err(e) => return Err(UpdateError::Write(e)),
        }
    }
    Err(UpdateError::Contended)
}

/// An MCP logging level (RFC 5424 severities), least severe first, so
/// levels compare by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

/// A string that names no MCP logging level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not one of debug, info, notice, warning, error, critical, alert, emergency")]
pub struct UnknownLogLevel(pub String);

impl LogLevel {
    /// Every level, least severe first.
    pub const ALL: [LogLevel; 8] = [
        Self::Debug,
        Self::Info,
        Self::Notice,
        Self::Warning,
        Self::Error,
        Self::Critical,
        Self::Alert,
        Self::Emergency,
    ];

    /// The level's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Notice => "notice",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
            Self::Alert => "alert",
            Self::Emergency => "emergency",
        }
    }

    /// True if a message at this level passes the session's `threshold`
    /// (`None`: every level passes).
    pub fn passes(self, threshold: Option<LogLevel>) -> bool {
        threshold.is_none_or(|t| self >= t)
    }
}

impl std::str::FromStr for LogLevel {
    type Err = UnknownLogLevel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| UnknownLogLevel(s.to_owned()))
    }
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_without_a_transport_are_streamable_http() {
        let old = br#"{"state":"active","protocol_version":"2025-11-25","client":null,"created_ms":1,"last_seen_ms":1,"created_by":"gw"}"#;
        let r = SessionRecord::from_bytes(old).expect("an old record parses");
        assert_eq!(r.transport, Transport::StreamableHttp);
        let sse = SessionRecord::new(
            State::Initializing,
            crate::protocol::ProtocolVersion::V2024_11_05,
            Value::Null,
            "gw",
        )
        .on(Transport::HttpSse);
        let back = SessionRecord::from_bytes(&sse.to_bytes()).expect("round trips");
        assert_eq!(back.transport, Transport::HttpSse);
    }

    #[test]
    fn log_levels_filter_by_severity() {
        use LogLevel::*;
        assert!(Debug.passes(None));
        assert!(!Debug.passes(Some(Info)));
        assert!(Info.passes(Some(Info)));
        assert!(Error.passes(Some(Warning)));
        assert!(!Notice.passes(Some(Error)));
        for l in LogLevel::ALL {
            assert_eq!(l.as_str().parse::<LogLevel>(), Ok(l));
        }
        assert!("verbose".parse::<LogLevel>().is_err());
    }

    #[test]
    fn a_stored_record_keeps_the_wire_spelling_of_its_version() {
        let stored = br#"{"state":"active","protocol_version":"2025-06-18","client":{},
            "created_ms":1,"last_seen_ms":2,"created_by":"gw",
            "upstream":{"protocol_version":"2025-03-26"}}"#;
        let record = SessionRecord::from_bytes(stored).expect("an older record still reads");
        assert_eq!(record.protocol_version, ProtocolVersion::V2025_06_18);
        let upstream = record.upstream.as_ref().expect("upstream kept");
        assert_eq!(upstream.protocol_version, ProtocolVersion::V2025_03_26);
        let json: Value = serde_json::from_slice(&record.to_bytes()).expect("json");
        assert_eq!(json["protocol_version"], "2025-06-18");
        assert_eq!(json["upstream"]["protocol_version"], "2025-03-26");
    }
}
