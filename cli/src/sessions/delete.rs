//! `jetway sessions delete <id>`: ends a session for good.
//!
//! 1. Marks the record closed (compare-and-set, like the gateway's DELETE),
//!    so every gateway answers 404 and workers refuse its requests.
//! 2. Publishes the `closed` marker on its GET stream, so live GET
//!    connections on every gateway end now.
//! 3. Purges its subjects from the stream and its keys from `jetway_state`.

use super::{parse_id, read_record};
use crate::{bus::Bus, error::CliError};
use async_nats::{HeaderMap, jetstream::kv};
use futures::TryStreamExt;
use jetway_shared::{
    headers,
    service::Bucket,
    session::State,
    subjects::{SessionId, StreamKey},
};
use std::io::Write;

/// What a delete did.
#[derive(Debug, Default)]
pub struct Deleted {
    pub record_closed: bool,
    pub messages_purged: u64,
    pub state_keys: usize,
}

pub async fn run(bus: &Bus, text_id: &str, out: &mut impl Write) -> Result<(), CliError> {
    let id = parse_id(&bus.service, text_id)?;
    let stream = bus.stream_of(&id).await?;
    let sessions = bus.sessions().await?;
    if !super::has_messages(bus, &stream, &id).await? {
        // Nothing to purge: only a live record is left to end.
        let retention = crate::bus::retention(&stream);
        match read_record(bus, &sessions, &id).await? {
            None => {
                return Err(CliError::NotFound {
                    id: id.to_string(),
                    retention,
                });
            }
            Some((r, _)) if r.state == State::Closed => {
                return Err(CliError::Deleted {
                    id: id.to_string(),
                    retention,
                });
            }
            Some(_) => {}
        }
    }
    let record_closed = close_record(bus, &sessions, &id).await?;
    if record_closed.closed_now {
        end_get_streams(bus, &id).await?;
    }
    let purged = stream
        .purge()
        .filter(id.all())
        .await
        .map_err(|e| bus.js_error(format!("purging the messages of {id}"), e))?;
    let state_keys = purge_state(bus, &id).await?;
    let done = Deleted {
        record_closed: record_closed.closed_now,
        messages_purged: purged.purged,
        state_keys,
    };
    writeln!(
        out,
        "session {id} deleted: record {}, {} messages purged, {} state keys removed",
        if done.record_closed {
            "closed"
        } else if record_closed.found {
            "was already closed"
        } else {
            "already gone"
        },
        done.messages_purged,
        done.state_keys
    )?;
    Ok(())
}

struct Closing {
    found: bool,
    closed_now: bool,
}

/// Marks the record closed with compare-and-set, retrying on a concurrent write.
async fn close_record(
    bus: &Bus,
    sessions: &kv::Store,
    id: &SessionId,
) -> Result<Closing, CliError> {
    for _ in 0..16 {
        let Some((mut record, revision)) = read_record(bus, sessions, id).await? else {
            return Ok(Closing {
                found: false,
                closed_now: false,
            });
        };
        if record.state == State::Closed {
            return Ok(Closing {
                found: true,
                closed_now: false,
            });
        }
        record.state = State::Closed;
        record.last_seen_ms = headers::now_ms();
        match sessions
            .update(id.as_str(), record.to_bytes(), revision)
            .await
        {
            Ok(_) => {
                return Ok(Closing {
                    found: true,
                    closed_now: true,
                });
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
            Err(e) => return Err(bus.js_error(format!("closing the record of {id}"), e)),
        }
    }
    Err(CliError::bus(
        format!("closing the record of {id}"),
        "the record kept changing",
    ))
}

/// Publishes the `closed` control marker: the stream republishes it to every
/// gateway holding a GET connection of the session, which then ends it.
async fn end_get_streams(bus: &Bus, id: &SessionId) -> Result<(), CliError> {
    let mut h = HeaderMap::new();
    h.insert(headers::CONTROL, headers::Control::Closed.as_str());
    h.insert(
        headers::GATEWAY,
        format!("jetway-cli/{}", bus.instance).as_str(),
    );
    h.insert(headers::TIME_MS, headers::now_ms().to_string().as_str());
    let what = || format!("ending the GET streams of {id}");
    bus.js
        .publish_with_headers(id.out(&StreamKey::get()), h, bytes::Bytes::new())
        .await
        .map_err(|e| bus.js_error(what(), e))?
        .await
        .map_err(|e| bus.js_error(what(), e))?;
    Ok(())
}

/// Purges the session's keys (`<sid>.<key>`) from `jetway_state`, history
/// included (a purge of the bucket's stream by subject, no markers left);
/// returns how many keys there were.
async fn purge_state(bus: &Bus, id: &SessionId) -> Result<usize, CliError> {
    let what = || format!("removing the state of {id}");
    let bucket = bus.service.bucket(Bucket::State);
    let kv_stream = bus
        .js
        .get_stream(format!("KV_{bucket}"))
        .await
        .map_err(|e| bus.js_error(what(), e))?;
    let filter = format!("$KV.{bucket}.{}", id.state_key(">"));
    let keys = kv_stream
        .info_with_subjects(&filter)
        .await
        .map_err(|e| bus.js_error(what(), e))?
        .try_fold(0usize, |n, _| async move { Ok(n + 1) })
        .await
        .map_err(|e| bus.js_error(what(), e))?;
    if keys > 0 {
        kv_stream
            .purge()
            .filter(filter)
            .await
            .map_err(|e| bus.js_error(what(), e))?;
    }
    Ok(keys)
}
