//! What redrive re-sends, derived from a recorded session: the client's
//! requests and notifications in stream order, each request with its
//! recorded final message and the client's recorded answers to its
//! server→client requests (sampling, elicitation, roots).

use crate::{
    message::{Control, Direction, Place, Stored, What, parse_subject},
    sessions::streams::{Status, target},
};
use jetway_shared::jsonrpc;
use serde_json::Value;
use std::collections::HashMap;

/// One server→client request of a recorded request, and the client's answer.
#[derive(Debug, Clone)]
pub struct Asked {
    pub method: String,
    pub request: Value,
    /// The client's JSON-RPC response, if it answered.
    pub answer: Option<Value>,
}

/// A recorded client request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub message: Value,
    pub id: Value,
    pub method: String,
    pub target: Option<String>,
    pub status: Status,
    /// The final response or error, if there was one.
    pub final_message: Option<Value>,
    pub asked: Vec<Asked>,
    /// The recorded client saw the final before it sent anything else, so
    /// redrive waits for it too (keeps sequential traffic sequential).
    pub wait: bool,
    /// Server messages on its stream so far (while building the plan).
    events: usize,
    seq: u64,
    final_seq: Option<u64>,
}

/// One thing the client sent.
#[derive(Debug, Clone)]
pub enum Step {
    Request(Recorded),
    Notification {
        message: Value,
        /// A cancellation is sent once the request it cancels (by index
        /// among the requests) has sent as many messages as it had when the
        /// recorded client cancelled it.
        after: Option<(usize, usize)>,
    },
}

/// The client side of a recorded session.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// The recorded session was ended by its client (DELETE).
    pub closed: bool,
}

impl Plan {
    pub fn from_messages(messages: &[Stored]) -> Self {
        let mut plan = Plan::default();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        for m in messages {
            let place = parse_subject(&m.subject).map(|(_, p)| p);
            match (&m.what, place) {
                (What::Request { method, id }, Some(Place::InRpc)) => {
                    let (Some(key), Some(message)) = (&m.stream, &m.message) else {
                        continue;
                    };
                    by_key.insert(key.clone(), plan.steps.len());
                    plan.steps.push(Step::Request(Recorded {
                        message: message.clone(),
                        id: id.clone(),
                        method: method.clone(),
                        target: target(message),
                        status: Status::Open,
                        final_message: None,
                        asked: Vec::new(),
                        wait: false,
                        events: 0,
                        seq: m.seq,
                        final_seq: None,
                    }));
                }
                (What::Notification { method }, Some(Place::InMsg)) => {
                    if let Some(v) = &m.message {
                        let after = (method == jsonrpc::method::CANCELLED)
                            .then(|| plan.cancelled(v))
                            .flatten();
                        plan.steps.push(Step::Notification {
                            message: v.clone(),
                            after,
                        });
                    }
                }
                (What::Control(Control::Closed), _) => plan.closed = true,
                (what, _) => {
                    let Some(r) =
                        m.stream.as_ref().and_then(|k| by_key.get(k)).and_then(
                            |&i| match &mut plan.steps[i] {
                                Step::Request(r) => Some(r),
                                Step::Notification { .. } => None,
                            },
                        )
                    else {
                        continue;
                    };
                    record(r, m, what);
                }
            }
        }
        plan.mark_waits(messages);
        plan
    }

    /// The request a cancellation names (index among the requests) and how
    /// many server messages its stream had when it was cancelled.
    fn cancelled(&self, notification: &Value) -> Option<(usize, usize)> {
        let target = notification.pointer("/params/requestId")?;
        self.requests()
            .enumerate()
            .find(|(_, r)| &r.id == target)
            .map(|(i, r)| (i, r.events))
    }

    /// The recorded requests, in order.
    pub fn requests(&self) -> impl Iterator<Item = &Recorded> {
        self.steps.iter().filter_map(|s| match s {
            Step::Request(r) => Some(r),
            Step::Notification { .. } => None,
        })
    }

    /// A request waits for its result if the recorded result came before the
    /// client's next request or notification.
    fn mark_waits(&mut self, messages: &[Stored]) {
        let step_seqs: Vec<u64> = messages
            .iter()
            .filter(|m| {
                m.direction == Direction::In
                    && matches!(m.what, What::Request { .. } | What::Notification { .. })
            })
            .map(|m| m.seq)
            .collect();
        for step in &mut self.steps {
            if let Step::Request(r) = step {
                let next = step_seqs.iter().find(|&&s| s > r.seq);
                r.wait = match (r.final_seq, next) {
                    (Some(f), Some(&n)) => f < n,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
            }
        }
    }
}

/// Adds a server message or a client answer to its recorded request.
fn record(r: &mut Recorded, m: &Stored, what: &What) {
    if m.direction == Direction::Out && !m.is_final {
        r.events += 1;
    }
    match (m.direction, what) {
        (Direction::Out, What::Request { method, .. }) => {
            if let Some(v) = &m.message {
                r.asked.push(Asked {
                    method: method.clone(),
                    request: v.clone(),
                    answer: None,
                });
            }
        }
        (Direction::Out, _) if m.is_final => {
            r.final_seq = Some(m.seq);
            r.final_message = m.message.clone();
            r.status = match what {
                What::Control(Control::Cancelled) => Status::Cancelled,
                What::Error { .. } => Status::Failed,
                _ => Status::Finished,
            };
        }
        (Direction::In, What::Response { id } | What::Error { id, .. }) => {
            let asked = r
                .asked
                .iter_mut()
                .find(|a| a.request.get("id") == Some(id) && a.answer.is_none());
            if let (Some(a), Some(v)) = (asked, &m.message) {
                a.answer = Some(v.clone());
            }
        }
        _ => {}
    }
}

impl Recorded {
    /// The recorded answer to the `n`-th server→client request of `method`.
    pub fn answer_for(&self, method: &str, n: usize) -> Option<&Value> {
        self.asked
            .iter()
            .filter(|a| a.method == method)
            .nth(n)
            .and_then(|a| a.answer.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetway_shared::headers;

    use crate::message::testing::msg;
    const A: &str = "r000000000000000a";
    const B: &str = "r000000000000000b";

    #[test]
    fn sequential_requests_wait_and_cancellations_keep_their_place() {
        let fin = [(headers::FINAL, "1")];
        let rpc = |key| [(headers::STREAM, key)];
        let messages = vec![
            msg(
                1,
                "in.rpc",
                &rpc(A),
                r#"{"jsonrpc":"2.0","id":0,"method":"initialize"}"#,
            ),
            msg(
                2,
                &format!("out.{A}"),
                &fin,
                r#"{"jsonrpc":"2.0","id":0,"result":{}}"#,
            ),
            msg(
                3,
                "in.msg",
                &[],
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            ),
            msg(
                4,
                "in.rpc",
                &rpc(B),
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            ),
            msg(
                5,
                &format!("out.{B}"),
                &[],
                &format!(r#"{{"jsonrpc":"2.0","id":"{B}:0","method":"sampling/createMessage"}}"#),
            ),
            msg(
                6,
                "in.msg",
                &[],
                &format!(r#"{{"jsonrpc":"2.0","id":"{B}:0","result":{{"n":1}}}}"#),
            ),
            msg(
                7,
                &format!("out.{B}"),
                &[],
                r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#,
            ),
            msg(
                8,
                "in.msg",
                &[],
                r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
            ),
            msg(9, &format!("out.{B}"), &fin, ""),
            msg(10, "out.get", &[(headers::CONTROL, "closed")], ""),
        ];
        let plan = Plan::from_messages(&messages);
        assert!(plan.closed);
        let requests: Vec<&Recorded> = plan.requests().collect();
        assert!(
            requests[0].wait,
            "initialize finished before the next message"
        );
        assert!(
            !requests[1].wait,
            "cancelled after the client's next message"
        );
        assert_eq!(requests[1].status, Status::Cancelled);
        assert_eq!(
            requests[1].answer_for("sampling/createMessage", 0),
            Some(&serde_json::json!({"jsonrpc":"2.0","id":format!("{B}:0"),"result":{"n":1}}))
        );
        let after: Vec<Option<(usize, usize)>> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Notification { after, .. } => Some(*after),
                Step::Request(_) => None,
            })
            .collect();
        assert_eq!(after, [None, Some((1, 2))]);
    }
}
