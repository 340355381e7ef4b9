//! What `--until`, `--stream` and `--request` let through (`--since` is
//! where the consumer starts).
//!
//! A stream's exchange is: the request that opened it (`in.rpc` with that
//! `Jetway-Stream`), every server message on it, the client's answers to
//! its server→client requests (their ids are `<stream key>:<n>`), and the
//! client's `notifications/cancelled` naming the request. `--stream` knows
//! the key and learns the request id; `--request` knows the id and learns
//! the key.

use crate::message::{Stored, What};
use jetway_shared::jsonrpc::method;
use serde_json::Value;

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Show,
    Skip,
    /// Past `--until`: nothing later can be shown.
    Stop,
}

/// The narrowing flags of `replay`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub until_ms: Option<u64>,
    /// Stream key of the exchange to show (given or learned).
    key: Option<String>,
    /// JSON-RPC id of its request (given or learned).
    request_id: Option<Value>,
    scoped: bool,
    matched: bool,
}

impl Filter {
    pub fn new(until_ms: Option<u64>, stream: Option<String>, request: Option<Value>) -> Self {
        let scoped = stream.is_some() || request.is_some();
        Self {
            until_ms,
            key: stream,
            request_id: request,
            scoped,
            matched: false,
        }
    }

    /// True if a scoped filter let something through (or nothing is scoped).
    pub fn matched(&self) -> bool {
        !self.scoped || self.matched
    }

    pub fn check(&mut self, m: &Stored) -> Verdict {
        let v = self.verdict(m);
        self.matched |= v == Verdict::Show;
        v
    }

    fn verdict(&mut self, m: &Stored) -> Verdict {
        if self.until_ms.is_some_and(|u| m.time_ms > u) {
            return Verdict::Stop;
        }
        if !self.scoped {
            return Verdict::Show;
        }
        if let What::Request { id, .. } = &m.what
            && m.subject.ends_with(".in.rpc")
        {
            let key_matches = m.stream.is_some() && m.stream == self.key;
            let id_matches = self.request_id.as_ref() == Some(id);
            if key_matches && self.request_id.is_none() {
                self.request_id = Some(id.clone());
            }
            if id_matches && self.key.is_none() {
                self.key = m.stream.clone();
            }
            return verdict(key_matches || (id_matches && m.stream == self.key));
        }
        if self.key.is_some() && m.stream == self.key {
            return Verdict::Show;
        }
        if let What::Notification { method: name } = &m.what
            && name == method::CANCELLED
            && self.request_id.is_some()
        {
            let target = m
                .message
                .as_ref()
                .and_then(|v| v.pointer("/params/requestId"));
            return verdict(target == self.request_id.as_ref());
        }
        Verdict::Skip
    }
}

fn verdict(show: bool) -> Verdict {
    if show { Verdict::Show } else { Verdict::Skip }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::HeaderMap;
    use bytes::Bytes;

    const SID: &str = "0-0123456789abcdef0123456789abcdef";
    const KEY: &str = "r00112233445566aa";

    fn msg(seq: u64, place: &str, stream: Option<&str>, body: &str) -> Stored {
        let mut h = HeaderMap::new();
        if let Some(k) = stream {
            h.insert(jetway_shared::headers::STREAM, k);
        }
        Stored::new(
            seq,
            &format!("jetway.0.{SID}.{place}"),
            seq,
            Some(&h),
            Bytes::from(body.to_owned()),
        )
        .expect("a session subject")
    }

    fn session() -> Vec<Stored> {
        vec![
            msg(
                1,
                "in.rpc",
                Some("r99999999999999aa"),
                r#"{"jsonrpc":"2.0","id":0,"method":"initialize"}"#,
            ),
            msg(
                2,
                "out.r99999999999999aa",
                None,
                r#"{"jsonrpc":"2.0","id":0,"result":{}}"#,
            ),
            msg(
                3,
                "in.rpc",
                Some(KEY),
                r#"{"jsonrpc":"2.0","id":7,"method":"tools/call"}"#,
            ),
            msg(
                4,
                &format!("out.{KEY}"),
                None,
                &format!(r#"{{"jsonrpc":"2.0","id":"{KEY}:0","method":"sampling/createMessage"}}"#),
            ),
            msg(
                5,
                "in.msg",
                None,
                &format!(r#"{{"jsonrpc":"2.0","id":"{KEY}:0","result":{{}}}}"#),
            ),
            msg(
                6,
                "in.msg",
                None,
                r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}"#,
            ),
            msg(
                7,
                "in.msg",
                None,
                r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":0}}"#,
            ),
            msg(
                8,
                "out.get",
                None,
                r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
            ),
        ]
    }

    fn shown(mut f: Filter) -> Vec<u64> {
        session()
            .iter()
            .filter(|m| f.check(m) == Verdict::Show)
            .map(|m| m.seq)
            .collect()
    }

    #[test]
    fn a_request_brings_its_whole_exchange() {
        assert_eq!(
            shown(Filter::new(None, None, Some(Value::from(7)))),
            [3, 4, 5, 6]
        );
        assert_eq!(
            shown(Filter::new(None, Some(KEY.into()), None)),
            [3, 4, 5, 6]
        );
        assert_eq!(shown(Filter::new(None, Some("get".into()), None)), [8]);
        assert_eq!(shown(Filter::new(None, None, None)).len(), 8);
        assert!(shown(Filter::new(None, None, Some(Value::from("7")))).is_empty());
    }

    #[test]
    fn until_stops_the_replay() {
        let mut f = Filter::new(Some(4), None, None);
        let verdicts: Vec<Verdict> = session().iter().map(|m| f.check(m)).collect();
        assert_eq!(verdicts[3], Verdict::Show);
        assert_eq!(verdicts[4], Verdict::Stop);
    }
}
