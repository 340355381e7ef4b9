//! Wire vocabulary of the HTTP+SSE transport (protocol 2024-11-05): the
//! paths, the `endpoint` event and its message URL, and the event ids that
//! let a client resume the session's one SSE connection on any gateway.
//!
//! A session of this transport has one SSE connection carrying every server
//! message of the session, whichever of the session's stream subjects it was
//! published on. An event's id is therefore the session and the stream
//! sequence, `<session id>.<sequence>`: the connection's URL (`/sse`) names
//! no session, so the id must, for a reconnect with `Last-Event-ID` to find
//! the session again.

use crate::{service::Service, subjects::SessionId};
use std::fmt;

/// Path of the SSE endpoint, below the service's root (`/sse`, `/services/<name>/sse`).
pub const SSE_PATH: &str = "sse";
/// Path of the message endpoint, beside the SSE endpoint.
pub const MESSAGES_PATH: &str = "messages";
/// Query parameter naming the session on the message URL.
pub const SESSION_PARAM: &str = "session_id";
/// The spelling the TypeScript SDK's own server uses, accepted as an alias.
pub const SESSION_PARAM_ALIAS: &str = "sessionId";
/// SSE event type of the first event of every connection.
pub const ENDPOINT_EVENT: &str = "endpoint";

/// The message URL sent in the `endpoint` event: relative to the SSE URL,
/// so it resolves under any path prefix and through any load balancer
/// (`http://lb/prefix/sse` → `http://lb/prefix/messages?session_id=…`).
pub fn endpoint_url(session: &SessionId) -> String {
    format!("{MESSAGES_PATH}?{SESSION_PARAM}={session}")
}

/// An HTTP+SSE event id: `<session id>.<stream sequence>`.
///
/// The sequence is that of the stored message the event carries (or, for
/// the `endpoint` event of a new connection, of the connection's takeover
/// marker): resuming after it delivers every later message of the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionEventId {
    pub session: SessionId,
    pub sequence: u64,
}

/// Why a `Last-Event-ID` is not an HTTP+SSE event id of this service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed HTTP+SSE event id")]
pub struct MalformedEventId;

impl SessionEventId {
    /// Parses an id strictly: one `.`, a session id of `service`, and a
    /// sequence in canonical decimal (no sign, no leading zeros, no blanks).
    pub fn parse(service: &Service, s: &str) -> Result<Self, MalformedEventId> {
        let (sid, seq) = s.split_once('.').ok_or(MalformedEventId)?;
        let canonical = !seq.is_empty()
            && seq.bytes().all(|b| b.is_ascii_digit())
            && (seq == "0" || !seq.starts_with('0'));
        if !canonical {
            return Err(MalformedEventId);
        }
        let sequence = seq.parse().map_err(|_| MalformedEventId)?;
        let session = SessionId::parse(service, sid).map_err(|_| MalformedEventId)?;
        Ok(Self { session, sequence })
    }
}

impl fmt::Display for SessionEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.session, self.sequence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "0-0123456789abcdef0123456789abcdef";

    #[test]
    fn event_ids_round_trip_and_parse_strictly() {
        let svc = Service::default();
        let id = SessionEventId::parse(&svc, &format!("{SID}.42")).expect("parses");
        assert_eq!(id.sequence, 42);
        assert_eq!(id.session.as_str(), SID);
        assert_eq!(id.to_string(), format!("{SID}.42"));
        for bad in [
            String::new(),
            SID.to_owned(),
            format!("{SID}."),
            format!("{SID}.042"),
            format!("{SID}.+4"),
            format!("{SID}. 4"),
            format!("{SID}.4 "),
            format!("{SID}.4.5"),
            format!("{SID}.-4"),
            format!("{SID}.99999999999999999999999"),
            "r0123456789abcdef-7".to_owned(),
            "0-XYZ.4".to_owned(),
        ] {
            assert_eq!(
                SessionEventId::parse(&svc, &bad),
                Err(MalformedEventId),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_endpoint_url_is_relative() {
        let sid = SessionId::parse(&Service::default(), SID).expect("valid");
        assert_eq!(endpoint_url(&sid), format!("messages?session_id={SID}"));
    }
}
