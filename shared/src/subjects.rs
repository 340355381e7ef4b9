//! Names on the bus: session ids, subjects, SSE stream keys and event ids.
//!
//! Layout of the default service (one stream per partition `p`, subjects
//! `jetway.<p>.>`; a named service has its name after each root, see
//! [`crate::service`]):
//!
//! - `jetway.<p>.<sid>.in.rpc` — client requests; the workers' durable consumer reads these.
//! - `jetway.<p>.<sid>.in.msg` — client notifications and client responses to server requests.
//! - `jetway.<p>.<sid>.out.<key>` — server messages of one SSE stream: `get` for the
//!   standalone GET stream, or the key the gateway minted for one request's POST stream.
//!
//! Every stored message is republished by the stream to the same subject under
//! the core prefix `jetway-live.`, which gateways and workers subscribe to for
//! live delivery (a core subscription per connection, not a JetStream consumer).

use crate::service::Service;
use rand::RngExt;
use std::fmt;

/// Root token of every stored subject.
pub const ROOT: &str = "jetway";
/// Root token of the core subjects the stream republishes to.
pub const LIVE_ROOT: &str = "jetway-live";
/// Root of the core subjects workers answer liveness probes on (outside the
/// stream, so nothing sent there is stored).
pub const PROBE_ROOT: &str = "jetway-probe";
/// Stream key of the standalone GET stream of a session.
pub const GET_STREAM: &str = "get";

/// Name of the stream holding partition `p` of `service`.
pub fn stream_name(service: &Service, partition: u32) -> String {
    service.stream_name(partition)
}

/// Subjects captured by the stream of partition `p`.
pub fn stream_subjects(service: &Service, partition: u32) -> String {
    format!("{}.{partition}.>", service.stored_root())
}

/// Source and destination of the stream's RePublish rule.
pub fn republish(service: &Service, partition: u32) -> (String, String) {
    (
        stream_subjects(service, partition),
        format!("{}.{partition}.>", service.live_root()),
    )
}

/// Filter of the shared durable worker consumer: every session's requests.
pub fn worker_filter(service: &Service, partition: u32) -> String {
    format!("{}.{partition}.*.in.rpc", service.stored_root())
}

/// An MCP session id: `<partition>-<32 hex digits>` (128 random bits),
/// within one service.
///
/// Visible ASCII, safe as a NATS subject token and as a KV key, and it names
/// its partition so partitions can be added without moving old sessions.
/// The service is not part of the text a client sees: it comes from the URL
/// the client uses (or the subject a message was read from).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionId {
    service: Service,
    partition: u32,
    raw: String,
}

/// Why a client-supplied session id was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed session id")]
pub struct MalformedSessionId;

impl SessionId {
    /// A fresh, cryptographically random session id in `partition` of `service`.
    pub fn generate(service: &Service, partition: u32) -> Self {
        let bytes: [u8; 16] = rand::rng().random();
        let mut raw = format!("{partition}-");
        for b in bytes {
            raw.push_str(&format!("{b:02x}"));
        }
        Self {
            service: service.clone(),
            partition,
            raw,
        }
    }

    /// Parses an id of `service` received from a client or an operator.
    pub fn parse(service: &Service, s: &str) -> Result<Self, MalformedSessionId> {
        let (p, hex) = s.split_once('-').ok_or(MalformedSessionId)?;
        let partition: u32 = p.parse().map_err(|_| MalformedSessionId)?;
        let canonical = partition.to_string() == p;
        let hex_ok = hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !canonical || !hex_ok {
            return Err(MalformedSessionId);
        }
        Ok(Self {
            service: service.clone(),
            partition,
            raw: s.to_owned(),
        })
    }

    /// The service this session belongs to.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// The partition this session lives in.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The id as the client sees it.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    fn base(&self) -> String {
        format!(
            "{}.{}.{}",
            self.service.stored_root(),
            self.partition,
            self.raw
        )
    }

    /// Subject of the session's client requests.
    pub fn in_rpc(&self) -> String {
        format!("{}.in.rpc", self.base())
    }

    /// Subject of the session's client notifications and responses.
    pub fn in_msg(&self) -> String {
        format!("{}.in.msg", self.base())
    }

    /// Live (republished) subject of the session's client notifications and responses.
    pub fn live_in_msg(&self) -> String {
        live(&self.in_msg())
    }

    /// Subject of one SSE stream of the session.
    pub fn out(&self, key: &StreamKey) -> String {
        format!("{}.out.{}", self.base(), key.as_str())
    }

    /// Live (republished) subject of one SSE stream of the session.
    pub fn live_out(&self, key: &StreamKey) -> String {
        live(&self.out(key))
    }

    /// Every server-message subject of the session (all its SSE streams):
    /// what an HTTP+SSE session's one connection carries.
    pub fn out_all(&self) -> String {
        format!("{}.out.*", self.base())
    }

    /// Live (republished) form of [`SessionId::out_all`].
    pub fn live_out_all(&self) -> String {
        live(&self.out_all())
    }

    /// Every subject of the session, for purge and replay.
    pub fn all(&self) -> String {
        format!("{}.>", self.base())
    }

    /// Prefix of the session's keys in the `jetway_state` bucket.
    pub fn state_key(&self, key: &str) -> String {
        format!("{}.{key}", self.raw)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Maps a stored subject to the core subject the stream republishes it on.
pub fn live(subject: &str) -> String {
    match subject.strip_prefix(ROOT) {
        Some(rest) => format!("{LIVE_ROOT}{rest}"),
        None => subject.to_owned(),
    }
}

/// Where a subject sits in a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// `in.rpc`: client requests.
    InRpc,
    /// `in.msg`: client notifications and responses.
    InMsg,
    /// `out.<key>`: server messages of one SSE stream.
    Out(StreamKey),
}

/// Extracts the session id (and its service) from a stored or live subject.
pub fn session_of_subject(subject: &str) -> Option<SessionId> {
    parse_subject(subject).map(|(session, _)| session)
}

/// Splits a stored or live session subject into its session (with its
/// service) and its place; `None` for any other subject.
pub fn parse_subject(subject: &str) -> Option<(SessionId, Place)> {
    let mut tokens = subject.split('.');
    let root = tokens.next()?;
    if root != ROOT && root != LIVE_ROOT {
        return None;
    }
    let mut next = tokens.next()?;
    let service = if next.starts_with(|c: char| c.is_ascii_digit()) {
        Service::default()
    } else {
        let named = Service::parse(next).ok().filter(|s| !s.is_default())?;
        next = tokens.next()?;
        named
    };
    let partition: u32 = next.parse().ok()?;
    let id = SessionId::parse(&service, tokens.next()?).ok()?;
    if id.partition() != partition {
        return None;
    }
    let place = match (tokens.next()?, tokens.next()?, tokens.next()) {
        ("in", "rpc", None) => Place::InRpc,
        ("in", "msg", None) => Place::InMsg,
        ("out", key, None) => Place::Out(StreamKey::parse(key)?),
        _ => return None,
    };
    Some((id, place))
}

/// Names one SSE stream of a session: [`GET_STREAM`] or `r<hex>` for a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StreamKey(String);

impl StreamKey {
    /// The session's standalone GET stream.
    pub fn get() -> Self {
        Self(GET_STREAM.to_owned())
    }

    /// A fresh key for the POST stream of one request.
    pub fn new_request() -> Self {
        let bytes: [u8; 8] = rand::rng().random();
        let mut s = String::from("r");
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        Self(s)
    }

    /// Parses a key carried in a header or an event id.
    pub fn parse(s: &str) -> Option<Self> {
        let valid = s == GET_STREAM
            || (s.len() == 17
                && s.starts_with('r')
                && s[1..]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        valid.then(|| Self(s.to_owned()))
    }

    /// True for the standalone GET stream.
    pub fn is_get(&self) -> bool {
        self.0 == GET_STREAM
    }

    /// The key as it appears in subjects and event ids.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An SSE event id: `<stream key>-<stream sequence>`.
///
/// Any gateway maps it back to "this session's subject for that stream, after
/// this sequence"; the session comes from the `Mcp-Session-Id` header, so an
/// event id can never reach another session's messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventId {
    pub stream: StreamKey,
    pub sequence: u64,
}

impl EventId {
    /// Parses a `Last-Event-ID` header value: `<stream key>-<sequence>`,
    /// the sequence in decimal digits only (no sign, no spaces inside).
    pub fn parse(s: &str) -> Option<Self> {
        let (key, seq) = s.trim().rsplit_once('-')?;
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            stream: StreamKey::parse(key)?,
            sequence: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.stream, self.sequence)
    }
}

/// Key of a request's claim in the claims bucket.
pub fn claim_key(session: &SessionId, key: &StreamKey) -> String {
    format!("{session}.{key}")
}

/// Key, in the claims bucket, of the lease on listening to a bridged
/// session's upstream GET stream (not a stream key: no request's claim
/// shares it).
pub fn listener_key(session: &SessionId) -> String {
    format!("{session}.{LISTENER_SUFFIX}")
}

/// The last token of every [`listener_key`].
pub const LISTENER_SUFFIX: &str = "listener";

/// The session a [`listener_key`] of `service` names.
pub fn session_of_listener_key(service: &Service, key: &str) -> Option<SessionId> {
    let session = key.strip_suffix(LISTENER_SUFFIX)?.strip_suffix('.')?;
    SessionId::parse(service, session).ok()
}

/// Key, in the claims bucket, of where a bridged session's listener got
/// to: the last upstream event it relayed and the last client message it
/// read, so the next listener resumes there.
pub fn listener_position_key(session: &SessionId) -> String {
    format!("{session}.listened")
}

/// Core subject on which the worker process `nonce` of `service` answers
/// "do you still run this request?" (see the worker's claims).
pub fn probe(service: &Service, nonce: &str) -> String {
    format!("{}.{nonce}", service.probe_root())
}

/// Key, in the claims bucket, of the lease on a session's own stdio
/// upstream process (`upstream_stdio = "session"`): its holder runs it.
pub fn stdio_owner_key(session: &SessionId) -> String {
    format!("{session}.stdio")
}

/// Core subject on which the worker process answering probes on `probe`
/// takes requests for the stdio upstream processes it owns.
pub fn stdio_owner(probe: &str) -> String {
    format!("{probe}.stdio")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_round_trip_and_are_subject_safe() {
        let svc = Service::default();
        let id = SessionId::generate(&svc, 0);
        assert_eq!(SessionId::parse(&svc, id.as_str()), Ok(id.clone()));
        assert!(
            id.as_str()
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b".*>".contains(&b))
        );
        assert_ne!(SessionId::generate(&svc, 0), id);
    }

    #[test]
    fn a_listener_key_names_its_session_and_no_other_key_does() {
        let svc = Service::default();
        let id = SessionId::generate(&svc, 0);
        let key = listener_key(&id);
        assert_eq!(session_of_listener_key(&svc, &key), Some(id.clone()));
        for other in [
            listener_position_key(&id),
            stdio_owner_key(&id),
            claim_key(&id, &StreamKey::new_request()),
            "listener".to_owned(),
        ] {
            assert_eq!(session_of_listener_key(&svc, &other), None, "{other}");
        }
    }

    #[test]
    fn malformed_session_ids_are_refused() {
        for bad in [
            "",
            "0",
            "0-",
            "x-0123456789abcdef0123456789abcdef",
            "00-0123456789abcdef0123456789abcdef",
            "0-0123456789ABCDEF0123456789abcdef",
            "0-0123456789abcdef0123456789abcde",
            "0-0123456789abcdef.123456789abcdef",
            "0-*123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(
                SessionId::parse(&Service::default(), bad),
                Err(MalformedSessionId),
                "{bad}"
            );
        }
    }

    #[test]
    fn subjects_follow_the_layout() {
        let id = SessionId::parse(&Service::default(), "3-0123456789abcdef0123456789abcdef")
            .expect("valid");
        let key = StreamKey::parse("r00112233445566aa").expect("valid");
        assert_eq!(id.in_rpc(), format!("jetway.3.{id}.in.rpc"));
        assert_eq!(id.out(&key), format!("jetway.3.{id}.out.r00112233445566aa"));
        assert_eq!(
            id.live_out(&StreamKey::get()),
            format!("jetway-live.3.{id}.out.get")
        );
        assert_eq!(session_of_subject(&id.live_in_msg()), Some(id.clone()));
        assert_eq!(id.live_out_all(), format!("jetway-live.3.{id}.out.*"));
        assert_eq!(session_of_subject("other.3.x"), None);
        assert_eq!(
            parse_subject(&id.in_rpc()),
            Some((id.clone(), Place::InRpc))
        );
        assert_eq!(
            parse_subject(&id.in_msg()),
            Some((id.clone(), Place::InMsg))
        );
        assert_eq!(
            parse_subject(&id.out(&key)),
            Some((id.clone(), Place::Out(key)))
        );
        for junk in [
            ".weird",
            ".in",
            ".in.rpc.x",
            ".out",
            ".out.zz",
            ".out.get.x",
        ] {
            let subject = format!("jetway.3.{id}{junk}");
            assert_eq!(parse_subject(&subject), None, "{subject}");
        }
        assert_eq!(worker_filter(&Service::default(), 0), "jetway.0.*.in.rpc");
    }

    #[test]
    fn a_named_service_has_its_own_subjects() {
        let billing = Service::parse("billing").expect("valid");
        let raw = "0-0123456789abcdef0123456789abcdef";
        let id = SessionId::parse(&billing, raw).expect("valid");
        let plain = SessionId::parse(&Service::default(), raw).expect("valid");
        assert_ne!(id, plain, "the same text in two services is two sessions");
        assert_eq!(id.in_rpc(), format!("jetway.billing.0.{raw}.in.rpc"));
        assert_eq!(
            id.live_in_msg(),
            format!("jetway-live.billing.0.{raw}.in.msg")
        );
        assert_eq!(session_of_subject(&id.in_rpc()), Some(id.clone()));
        assert_eq!(
            session_of_subject(&id.live_out(&StreamKey::get())),
            Some(id)
        );
        assert_eq!(session_of_subject(&plain.in_rpc()), Some(plain));
        assert_eq!(worker_filter(&billing, 0), "jetway.billing.0.*.in.rpc");
        assert_eq!(
            republish(&billing, 0),
            (
                "jetway.billing.0.>".into(),
                "jetway-live.billing.0.>".into()
            )
        );
        assert_eq!(probe(&billing, "n1"), "jetway-probe.billing.n1");
        // `default` is never spelled out, and a wrong partition is no session.
        assert_eq!(
            session_of_subject(&format!("jetway.default.0.{raw}.in.rpc")),
            None
        );
        assert_eq!(
            session_of_subject(&format!("jetway.billing.1.{raw}.in.rpc")),
            None
        );
    }

    #[test]
    fn event_ids_round_trip() {
        let key = StreamKey::new_request();
        let id = EventId {
            stream: key.clone(),
            sequence: 42,
        };
        assert_eq!(EventId::parse(&id.to_string()), Some(id));
        assert_eq!(
            EventId::parse("get-7"),
            Some(EventId {
                stream: StreamKey::get(),
                sequence: 7
            })
        );
        for bad in ["", "get", "get-", "get-x", "zzz-1", "r12-1", "get--1"] {
            assert_eq!(EventId::parse(bad), None, "{bad}");
        }
    }
}
