//! `jetway sessions list`: every session with its record and message counts.
//!
//! Built to stay quick with thousands of sessions: the message counts of all
//! sessions come from one paged stream-info request listing per-subject
//! counts (`jetway.<p>.>`), not one call per session; the records are read
//! with bounded concurrency, each with one direct get of the session's last
//! message (its time is the last activity).

use super::state_name;
use crate::{
    args::{ListArgs, StateFilter},
    bus::Bus,
    error::CliError,
    message::{Place, parse_subject},
    output::{Paint, Style, Table},
    timefmt::{ago, now_ms, rfc3339},
};
use async_nats::jetstream::{kv, stream::Stream};
use futures::{StreamExt, TryStreamExt};
use jetway_shared::{
    protocol::ProtocolVersion,
    session::{SessionRecord, State},
    subjects::{self, SessionId},
};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::io::Write;

/// Records read at once.
const CONCURRENCY: usize = 64;

/// One line of the list.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub id: String,
    /// `initializing`, `active`, `closed`, or `unknown` when the record has
    /// aged out but messages remain.
    pub state: &'static str,
    pub created: Option<String>,
    pub created_ms: Option<u64>,
    pub created_by: Option<String>,
    pub last_activity: Option<String>,
    pub last_activity_ms: Option<u64>,
    pub client_name: Option<String>,
    pub client_version: Option<String>,
    pub protocol_version: Option<ProtocolVersion>,
    /// `streamable-http` or `http+sse`; `None` when the record aged out.
    pub transport: Option<&'static str>,
    pub messages_in: usize,
    pub messages_out: usize,
}

pub async fn run(
    bus: &Bus,
    args: &ListArgs,
    style: &Style,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let sessions = bus.sessions().await?;
    let keys: Vec<String> = sessions
        .keys()
        .await
        .map_err(|e| bus.js_error("listing sessions".into(), e))?
        .try_collect()
        .await
        .map_err(|e| bus.js_error("listing sessions".into(), e))?;
    let partitions: BTreeSet<u32> = keys
        .iter()
        .filter_map(|k| SessionId::parse(&bus.service, k).ok())
        .map(|s| s.partition())
        .chain([0])
        .collect();
    let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
    let mut streams: HashMap<u32, Stream> = HashMap::new();
    for p in partitions {
        let stream = match bus.stream(p).await {
            Ok(s) => s,
            Err(CliError::NoStream { .. }) if p != 0 => continue,
            Err(e) => return Err(e),
        };
        count_messages(bus, &stream, p, &mut counts).await?;
        streams.insert(p, stream);
    }

    let mut rows: Vec<Row> = futures::stream::iter(keys)
        .map(|key| {
            let (sessions, streams, counts) = (&sessions, &streams, &counts);
            async move { read_row(bus, sessions, streams, counts, key).await }
        })
        .buffer_unordered(CONCURRENCY)
        .try_filter_map(|row| async move { Ok(row) })
        .try_collect()
        .await?;
    let known: BTreeSet<String> = rows.iter().map(|r| r.id.clone()).collect();
    for (id, (messages_in, messages_out)) in &counts {
        if !known.contains(id) {
            rows.push(Row {
                id: id.clone(),
                state: "unknown",
                created: None,
                created_ms: None,
                created_by: None,
                last_activity: None,
                last_activity_ms: None,
                client_name: None,
                client_version: None,
                protocol_version: None,
                transport: None,
                messages_in: *messages_in,
                messages_out: *messages_out,
            });
        }
    }

    let now = now_ms();
    rows.retain(|r| keep(r, args, now));
    rows.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &rows).map_err(std::io::Error::from)?;
        writeln!(out)?;
        return Ok(());
    }
    let mut table = Table::new(&[
        "SESSION",
        "CREATED",
        "LAST ACTIVITY",
        "CLIENT",
        "PROTOCOL",
        "TRANSPORT",
        "STATE",
        "IN",
        "OUT",
    ])
    .right_align(&[7, 8]);
    for r in &rows {
        let state_paint = match r.state {
            "active" => Paint::Green,
            "closed" => Paint::Dim,
            _ => Paint::Yellow,
        };
        let client = match (&r.client_name, &r.client_version) {
            (Some(n), Some(v)) => format!("{n} {v}"),
            (Some(n), None) => n.clone(),
            _ => "-".into(),
        };
        table.row(vec![
            (r.id.clone(), Some(Paint::Cyan)),
            (r.created.clone().unwrap_or_else(|| "-".into()), None),
            (
                r.last_activity_ms
                    .map(|ms| ago(ms, now))
                    .unwrap_or_else(|| "-".into()),
                None,
            ),
            (client, None),
            (
                r.protocol_version
                    .map_or("-", ProtocolVersion::as_str)
                    .to_owned(),
                None,
            ),
            (r.transport.unwrap_or("-").to_owned(), None),
            (r.state.to_owned(), Some(state_paint)),
            (r.messages_in.to_string(), None),
            (r.messages_out.to_string(), None),
        ]);
    }
    if table.is_empty() {
        writeln!(out, "no sessions")?;
    } else {
        table.write(out, style)?;
    }
    Ok(())
}

/// Adds the per-direction message counts of every session in partition `p`.
async fn count_messages(
    bus: &Bus,
    stream: &Stream,
    p: u32,
    counts: &mut HashMap<String, (usize, usize)>,
) -> Result<(), CliError> {
    let what = || {
        format!(
            "counting messages of {}",
            subjects::stream_name(&bus.service, p)
        )
    };
    let mut subjects = stream
        .info_with_subjects(subjects::stream_subjects(&bus.service, p))
        .await
        .map_err(|e| bus.js_error(what(), e))?;
    while let Some((subject, n)) = subjects
        .try_next()
        .await
        .map_err(|e| bus.js_error(what(), e))?
    {
        let Some((sid, place)) = parse_subject(&subject) else {
            continue;
        };
        let entry = counts.entry(sid.as_str().to_owned()).or_default();
        match place {
            Place::InRpc | Place::InMsg => entry.0 += n,
            Place::Out(_) => entry.1 += n,
        }
    }
    Ok(())
}

async fn read_row(
    bus: &Bus,
    sessions: &kv::Store,
    streams: &HashMap<u32, Stream>,
    counts: &HashMap<String, (usize, usize)>,
    key: String,
) -> Result<Option<Row>, CliError> {
    let Ok(id) = SessionId::parse(&bus.service, &key) else {
        return Ok(None);
    };
    let Some((record, _)) = super::read_record(bus, sessions, &id).await? else {
        return Ok(None);
    };
    let last_message = match streams.get(&id.partition()) {
        Some(stream) => last_message_ms(stream, &id).await,
        None => None,
    };
    let (messages_in, messages_out) = counts.get(id.as_str()).copied().unwrap_or_default();
    Ok(Some(row(
        id,
        &record,
        last_message,
        messages_in,
        messages_out,
    )))
}

fn row(
    id: SessionId,
    record: &SessionRecord,
    last_message: Option<u64>,
    messages_in: usize,
    messages_out: usize,
) -> Row {
    let last = last_message.unwrap_or(0).max(record.last_seen_ms);
    Row {
        id: id.to_string(),
        state: state_name(record.state),
        created: Some(rfc3339(record.created_ms)),
        created_ms: Some(record.created_ms),
        created_by: Some(record.created_by.clone()),
        last_activity: Some(rfc3339(last)),
        last_activity_ms: Some(last),
        client_name: client_field(record, "name"),
        client_version: client_field(record, "version"),
        protocol_version: Some(record.protocol_version),
        transport: Some(record.transport.as_str()),
        messages_in,
        messages_out,
    }
}

fn client_field(record: &SessionRecord, key: &str) -> Option<String> {
    record
        .client
        .pointer(&format!("/clientInfo/{key}"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// Stored time of the session's last message (one direct get), if any.
async fn last_message_ms(stream: &Stream, id: &SessionId) -> Option<u64> {
    let m = stream.direct_get_last_for_subject(id.all()).await.ok()?;
    Some((m.time.unix_timestamp_nanos() / 1_000_000).max(0) as u64)
}

fn keep(r: &Row, args: &ListArgs, now: u64) -> bool {
    if let Some(want) = args.state {
        let want = match want {
            StateFilter::Initializing => State::Initializing,
            StateFilter::Active => State::Active,
            StateFilter::Closed => State::Closed,
        };
        if r.state != state_name(want) {
            return false;
        }
    }
    let age = r.created_ms.map(|c| now.saturating_sub(c));
    if let Some(min) = args.older_than
        && age.is_none_or(|a| u128::from(a) < min.as_millis())
    {
        return false;
    }
    if let Some(max) = args.newer_than
        && age.is_none_or(|a| u128::from(a) > max.as_millis())
    {
        return false;
    }
    true
}
