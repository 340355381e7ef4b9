//! Removing the state of sessions whose record aged out, and counting them.
//!
//! A session record is refreshed while its session is used and ages out of
//! the sessions bucket `retention_secs` after its last refresh. The bucket
//! then leaves a delete marker on the record's key (`Nats-Marker-Reason:
//! MaxAge`, JetStream's subject delete markers). Every worker of a service
//! reads the bucket's messages through one shared durable consumer,
//! headers only: a marker, or a record an operator purged, purges that
//! session's keys from the state bucket and is acknowledged only then, so a
//! worker that dies midway leaves it to another. State keys have no max age
//! of their own (see `jetway_shared::setup`): they live exactly as long as
//! their session, however long it is used.
//!
//! Each expiry is counted once in `jetway_sessions_expired_total` (of the
//! worker that read the marker; sum over workers).

use async_nats::jetstream::{
    AckKind,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    kv,
};
use futures::StreamExt;
use jetway_shared::{backoff::Backoff, service::Service, subjects::SessionId};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Name of the shared durable consumer on the sessions bucket's stream.
pub const CONSUMER: &str = "jetway_expiry";

/// What a message of the sessions bucket means for the session's state.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// A record written: nothing to do.
    Written,
    /// The record aged out.
    Expired,
    /// The record was deleted or purged by hand.
    Removed,
}

fn classify(headers: Option<&async_nats::HeaderMap>) -> Seen {
    let Some(h) = headers else {
        return Seen::Written;
    };
    if let Some(reason) = h.get(async_nats::header::NATS_MARKER_REASON) {
        return match reason.as_str() {
            "MaxAge" => Seen::Expired,
            _ => Seen::Removed,
        };
    }
    match h.get("KV-Operation").map(|v| v.as_str()) {
        Some("DEL") | Some("PURGE") => Seen::Removed,
        _ => Seen::Written,
    }
}

/// Reads the sessions bucket's markers until `stop`, purging expired
/// sessions' state; restarts its consumer after errors.
pub async fn run(service: Service, sessions: kv::Store, state: kv::Store, stop: CancellationToken) {
    let mut backoff = Backoff::unbounded(Duration::from_millis(200), Duration::from_secs(10));
    while !stop.is_cancelled() {
        match consume(&service, &sessions, &state, &stop).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "session expiry consumer failed; restarting"),
        }
        tokio::select! {
            _ = backoff.sleep() => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn consumer(sessions: &kv::Store) -> Result<PullConsumer, async_nats::Error> {
    let config = pull::Config {
        durable_name: Some(CONSUMER.to_owned()),
        filter_subject: format!("$KV.{}.>", sessions.name),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        headers_only: true,
        ..Default::default()
    };
    Ok(sessions
        .stream
        .get_or_create_consumer(CONSUMER, config)
        .await?)
}

async fn consume(
    service: &Service,
    sessions: &kv::Store,
    state: &kv::Store,
    stop: &CancellationToken,
) -> Result<(), async_nats::Error> {
    let consumer = consumer(sessions).await?;
    let mut messages = consumer.messages().await?;
    let prefix = format!("$KV.{}.", sessions.name);
    loop {
        let msg = tokio::select! {
            m = messages.next() => m,
            _ = stop.cancelled() => return Ok(()),
        };
        let Some(msg) = msg else {
            return Err("the consumer's message stream ended".into());
        };
        let msg = msg?;
        let seen = classify(msg.headers.as_ref());
        let session = msg
            .subject
            .strip_prefix(prefix.as_str())
            .and_then(|key| SessionId::parse(service, key).ok());
        let (Some(session), Seen::Expired | Seen::Removed) = (session, &seen) else {
            ack(&msg, AckKind::Ack).await;
            continue;
        };
        match purge_state(state, &session).await {
            Ok(()) => {
                if seen == Seen::Expired {
                    crate::metrics::session_expired();
                    tracing::info!(session = %session, "session expired; its state is removed");
                }
                ack(&msg, AckKind::Ack).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, session = %session, "could not remove an expired session's state; retrying");
                ack(&msg, AckKind::Nak(Some(Duration::from_secs(5)))).await;
            }
        }
    }
}

async fn ack(msg: &async_nats::jetstream::Message, kind: AckKind) {
    if let Err(e) = msg.ack_with(kind).await {
        tracing::debug!(error = %e, "expiry ack failed; the marker is read again");
    }
}

/// Purges every key of `session` from the state bucket, history included.
pub async fn purge_state(state: &kv::Store, session: &SessionId) -> Result<(), async_nats::Error> {
    let filter = format!("$KV.{}.{}", state.name, session.state_key(">"));
    state.stream.purge().filter(filter).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_and_operations_are_told_apart() {
        let mut h = async_nats::HeaderMap::new();
        assert_eq!(classify(None), Seen::Written);
        assert_eq!(classify(Some(&h)), Seen::Written);
        h.insert(async_nats::header::NATS_MARKER_REASON, "MaxAge");
        assert_eq!(classify(Some(&h)), Seen::Expired);
        let mut h = async_nats::HeaderMap::new();
        h.insert("KV-Operation", "PURGE");
        assert_eq!(classify(Some(&h)), Seen::Removed);
        let mut h = async_nats::HeaderMap::new();
        h.insert(async_nats::header::NATS_MARKER_REASON, "Remove");
        assert_eq!(classify(Some(&h)), Seen::Removed);
    }
}
