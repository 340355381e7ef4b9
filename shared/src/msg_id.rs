//! Every `Nats-Msg-Id` Jetway puts on a JetStream publish or KV write.
//!
//! JetStream drops a second message with the same id inside the stream's
//! duplicate window, so an id decides which publishes count as one: a
//! retry after a lost acknowledgement must reuse its id, and two writes
//! that must both land must never share one. Each function below says what
//! its id deduplicates, and which parts make it unique.
//!
//! Non-final server messages are published under [`out`] with a *tag*
//! naming the message within its request; the tags are built here too.

use crate::subjects::{SessionId, StreamKey};

/// A request's final response: the same on every redelivery and every
/// worker, so the stream keeps exactly one answer per request.
pub fn final_response(session: &SessionId, key: &StreamKey) -> String {
    format!("{session}.{key}.final")
}

/// A non-final server message published by a worker; `tag` (one of the
/// `*_tag` functions below) names the message within its request and
/// delivery, so only a retry of that very publish shares it.
pub fn out(session: &SessionId, tag: &str) -> String {
    format!("{session}.{tag}")
}

/// An inbound client message: `nonce` is drawn once per HTTP request, so a
/// gateway may retry the publish after a timeout without storing the
/// message twice.
pub fn inbound(session: &SessionId, nonce: &str) -> String {
    format!("{session}.in.{nonce}")
}

/// One claim write: `attempt` names the claiming attempt, `from` the
/// revision it replaces (0: none), so only a retry of the same write shares
/// it — a later delivery to the same process is a new attempt.
pub fn claim_write(session: &SessionId, key: &StreamKey, attempt: &str, from: u64) -> String {
    format!("cl.{session}.{key}.{attempt}.{from}")
}

/// One renewal of the lease `key` (claims bucket) by the worker process
/// `nonce` over `revision`: a retried renewal is applied once, the next
/// renewal (a newer revision) is a new write.
pub fn lease_write(key: &str, nonce: &str, revision: u64) -> String {
    format!("ls.{key}.{nonce}.{revision}")
}

/// One compare-and-set update of a session record: `call` is drawn once per
/// update, `revision` is the revision it replaces, so a retried write is
/// applied once and the next round of the same update is a new write.
pub fn record_write(session: &str, call: u64, revision: u64) -> String {
    format!("rec.{session}.{call:x}.{revision}")
}

/// What a session-state write expected; part of its id so that only a
/// retry of the very same write shares it.
#[derive(Debug, Clone, Copy)]
pub enum StateExpect<'a> {
    /// A plain put, named by a digest of its value.
    Put { digest: &'a str },
    /// A compare-and-set over this revision (0: the key was never written).
    Revision(u64),
    /// A copy of the key from another session.
    CopyFrom(&'a SessionId),
}

/// Write `n` of `request` to state `key` of `session`. A request that runs
/// again after its worker died makes the same writes in the same order, so
/// a write that already landed is not applied twice.
pub fn state_write(
    session: &SessionId,
    request: &StreamKey,
    n: u64,
    key: &str,
    expect: StateExpect<'_>,
) -> String {
    let expect = match expect {
        StateExpect::Put { digest } => format!("p{digest}"),
        StateExpect::Revision(rev) => format!("r{rev}"),
        StateExpect::CopyFrom(from) => format!("c.{from}"),
    };
    format!("{}{expect}", state_write_prefix(session, request, n, key))
}

/// What every attempt of write `n` of `request` to state `key` has in
/// common: the start of its [`state_write`] id, whatever it expected. A
/// re-run of the request finds the earlier run's write by it.
pub fn state_write_prefix(session: &SessionId, request: &StreamKey, n: u64, key: &str) -> String {
    format!("st.{session}.{request}.{n}.{key}.")
}

/// Tag of the `ticket`-th message an in-process run of request `stream`
/// publishes in delivery `delivery`.
pub fn run_tag(stream: &StreamKey, delivery: u64, ticket: u64) -> String {
    format!("{stream}.{delivery}.{ticket}")
}

/// Tag of the `sent`-th message a bridged upstream sent while answering
/// request `stream` in delivery `delivery`.
pub fn upstream_tag(stream: &StreamKey, delivery: u64, sent: u64) -> String {
    format!("{stream}.{delivery}.u{sent}")
}

/// Tag of the `relayed`-th message relayed from an upstream GET stream by
/// the listener holding the listener lease at `revision`.
pub fn listener_tag(revision: u64, relayed: u64) -> String {
    format!("up.{revision}.{relayed}")
}

/// Tag of the upstream GET-stream event whose id hashes (with its
/// upstream session id) to `digest`: the same whichever listener relays
/// it, so an event relayed again after a takeover is stored once.
pub fn listener_event_tag(digest: &str) -> String {
    format!("up.{digest}")
}

/// Message id of a listener's position write: `listener` names the
/// listener, `from` the revision it replaces.
pub fn listener_position_write(session: &SessionId, listener: &str, from: u64) -> String {
    format!("lp.{session}.{listener}.{from}")
}

/// Tag of the `n`-th message a session's own stdio process (`process`, a
/// nonce drawn when it started) wrote outside any request.
pub fn stdio_tag(process: &str, n: u64) -> String {
    format!("stdio.{process}.{n}")
}

/// Tag of a notification a tool sends outside any request, `nonce` drawn
/// once per notification.
pub fn notify_tag(nonce: u64) -> String {
    format!("get.{nonce:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Service;

    #[test]
    fn ids_keep_their_wire_spelling_and_differ_where_writes_differ() {
        let s = SessionId::generate(&Service::default(), 0);
        let k = StreamKey::get();
        assert_eq!(final_response(&s, &k), format!("{s}.{k}.final"));
        assert_eq!(out(&s, &notify_tag(1)), format!("{s}.get.0000000000000001"));
        assert_eq!(inbound(&s, "n"), format!("{s}.in.n"));
        assert_eq!(record_write("sid", 255, 7), "rec.sid.ff.7");
        assert_eq!(lease_write("k", "n", 3), "ls.k.n.3");
        assert_ne!(claim_write(&s, &k, "a", 0), claim_write(&s, &k, "b", 0));
        assert_ne!(claim_write(&s, &k, "a", 0), claim_write(&s, &k, "a", 1));
        let put = state_write(&s, &k, 0, "x", StateExpect::Put { digest: "d" });
        assert_eq!(put, format!("st.{s}.{k}.0.x.pd"));
        assert_ne!(put, state_write(&s, &k, 0, "x", StateExpect::Revision(0)));
        assert!(
            state_write(&s, &k, 1, "x", StateExpect::CopyFrom(&s)).ends_with(&format!(".c.{s}"))
        );
        assert_ne!(run_tag(&k, 1, 2), upstream_tag(&k, 1, 2));
        assert_eq!(listener_tag(4, 5), "up.4.5");
    }
}
