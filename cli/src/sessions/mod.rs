//! `jetway sessions …`: finding a session on the bus, and the list, show and
//! delete commands.
//!
//! - [`locate`] — parse an operator-given id and tell apart "never
//!   existed / aged out", "deleted" and "messages expired".
//! - [`streams`] — a session's SSE streams and request statuses, derived
//!   from its messages.
//! - [`list`], [`show`], [`delete`] — the commands.

pub mod delete;
pub mod list;
pub mod show;
pub mod streams;

use crate::{
    bus::{Bus, retention},
    error::CliError,
};
use async_nats::jetstream::{kv, stream::DirectGetErrorKind, stream::Stream};
use jetway_shared::{
    service::Service,
    session::{SessionRecord, State},
    subjects::SessionId,
};
use std::time::Duration;

/// A session that exists on the bus, with what is known about it.
pub struct Found {
    pub id: SessionId,
    pub stream: Stream,
    /// The KV record, if it has not aged out.
    pub record: Option<SessionRecord>,
    pub retention: Duration,
}

/// Parses an operator-given session id of `service`.
pub fn parse_id(service: &Service, text: &str) -> Result<SessionId, CliError> {
    SessionId::parse(service, text).map_err(|_| CliError::MalformedId(text.to_owned()))
}

/// Finds a session with stored messages, or says precisely why there is none.
pub async fn locate(bus: &Bus, text: &str) -> Result<Found, CliError> {
    let id = parse_id(&bus.service, text)?;
    let stream = bus.stream_of(&id).await?;
    let retention = retention(&stream);
    let sessions = bus.sessions().await?;
    let record = read_record(bus, &sessions, &id).await?.map(|(r, _)| r);
    if !has_messages(bus, &stream, &id).await? {
        let id = id.to_string();
        return Err(match record {
            None => CliError::NotFound { id, retention },
            Some(r) if r.state == State::Closed => CliError::Deleted { id, retention },
            Some(r) => CliError::Expired {
                id,
                retention,
                state: state_name(r.state).to_owned(),
            },
        });
    }
    Ok(Found {
        id,
        stream,
        record,
        retention,
    })
}

/// The session's record and its KV revision, if it exists (deleted and
/// purged keys count as absent).
pub async fn read_record(
    bus: &Bus,
    sessions: &kv::Store,
    id: &SessionId,
) -> Result<Option<(SessionRecord, u64)>, CliError> {
    let entry = sessions
        .entry(id.as_str())
        .await
        .map_err(|e| bus.js_error(format!("reading the record of {id}"), e))?;
    Ok(entry
        .filter(|e| e.operation == kv::Operation::Put)
        .and_then(|e| {
            SessionRecord::from_bytes(&e.value)
                .ok()
                .map(|r| (r, e.revision))
        }))
}

/// True if any message of the session is still stored.
pub async fn has_messages(bus: &Bus, stream: &Stream, id: &SessionId) -> Result<bool, CliError> {
    match stream.direct_get_next_for_subject(id.all(), None).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(false),
        Err(e) => Err(bus.js_error(format!("reading the messages of {id}"), e)),
    }
}

/// `active`, `closed`, `initializing`.
pub fn state_name(state: State) -> &'static str {
    match state {
        State::Initializing => "initializing",
        State::Active => "active",
        State::Closed => "closed",
    }
}

/// `name version` from the record's `initialize` params.
pub fn client_name(record: &SessionRecord) -> String {
    let info = record.client.get("clientInfo");
    let field = |k: &str| {
        info.and_then(|i| i.get(k))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let (name, version) = (field("name"), field("version"));
    let shown = match (name.is_empty(), version.is_empty()) {
        (true, _) => "-".to_owned(),
        (false, true) => name,
        (false, false) => format!("{name} {version}"),
    };
    crate::output::printable(&shown).into_owned()
}
