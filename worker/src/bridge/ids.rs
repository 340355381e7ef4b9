//! The ids a client sees for the upstream's server→client requests, and
//! the way back to the id the upstream used.
//!
//! An upstream numbers its requests per upstream session; the client sees
//! every request of its Jetway session, from whichever stream, so each gets
//! an id unique in the Jetway session, a string that tells where it came
//! from:
//!
//! - on a request's POST stream: `<stream key>:<upstream id>`, the key the
//!   gateway minted for that stream (`r` and 16 hex digits). The request's
//!   relay keeps the way back while the request runs.
//! - on the upstream session's own GET stream: `get:<tag>:<upstream id>`,
//!   where `<tag>` names the upstream session (16 hex digits of the SHA-256
//!   of its id: the client never sees the id itself). Nothing is kept: any
//!   bridge worker that listens to that upstream session turns the id back,
//!   also one that took over from the worker that relayed the request. An
//!   answer naming another upstream session (one replaced since) goes
//!   nowhere.
//!
//! The upstream id is kept as its JSON text (`7`, `"abc"`), so a number
//! comes back a number and a string a string. A POST stream key never reads
//! `get`, so the two kinds never collide.

use jetway_shared::{session::UpstreamSession, subjects::StreamKey};
use serde_json::Value;
use sha2::Digest;

/// The client's id for a request the upstream sent on the POST stream `stream`.
pub fn in_request(stream: &StreamKey, upstream_id: &Value) -> String {
    format!("{}:{upstream_id}", stream.as_str())
}

/// The client's id for a request the upstream sent on the GET stream of
/// `upstream`.
pub fn on_session_stream(upstream: &UpstreamSession, upstream_id: &Value) -> String {
    format!(
        "{}:{}:{upstream_id}",
        StreamKey::get().as_str(),
        tag(upstream)
    )
}

/// The upstream's id behind a client's id from [`on_session_stream`], if it
/// is one and names `upstream`.
pub fn from_session_stream(public: &str, upstream: &UpstreamSession) -> Option<Value> {
    let rest = public.strip_prefix(StreamKey::get().as_str())?;
    let rest = rest.strip_prefix(':')?;
    let (tagged, id) = rest.split_once(':')?;
    if tagged != tag(upstream) {
        return None;
    }
    serde_json::from_str(id).ok()
}

/// 16 hex digits naming an upstream session.
fn tag(upstream: &UpstreamSession) -> String {
    let digest = sha2::Sha256::digest(upstream.id.as_deref().unwrap_or_default().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn session(id: &str) -> UpstreamSession {
        UpstreamSession {
            id: Some(id.into()),
            protocol_version: jetway_shared::protocol::ProtocolVersion::LATEST,
        }
    }

    #[test]
    fn an_id_from_the_session_stream_comes_back_as_the_upstream_sent_it() {
        let up = session("abc");
        for id in [json!(0), json!(42), json!("x:y"), json!("7")] {
            let public = on_session_stream(&up, &id);
            assert!(public.starts_with("get:"), "{public}");
            assert_eq!(from_session_stream(&public, &up), Some(id));
        }
    }

    #[test]
    fn an_id_of_another_upstream_session_or_a_request_stream_goes_nowhere() {
        let public = on_session_stream(&session("abc"), &json!(1));
        assert_eq!(from_session_stream(&public, &session("abd")), None);
        let key = StreamKey::new_request();
        let scoped = in_request(&key, &json!(1));
        assert_eq!(from_session_stream(&scoped, &session("abc")), None);
        assert_ne!(scoped, public);
        assert_eq!(from_session_stream("get:", &session("abc")), None);
    }
}
