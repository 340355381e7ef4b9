//! [`InFlight`]: the requests of each session this gateway replica streams
//! right now, at most `max_inflight_per_session` per session, so that one
//! session cannot hold every stream a gateway can serve. Per replica: a
//! client spread over N gateways may have N times as many.
//!
//! It also keeps the JSON-RPC ids of those requests: a request whose id is
//! in flight in its session already (the spec: ids MUST NOT be reused
//! within a session) is refused with 400 -32600 and never published, so a
//! `notifications/cancelled` names one request, not two. Per replica too:
//! two requests with one id sent to two replicas at once both run.

use crate::error::GatewayError;
use jetway_shared::subjects::SessionId;
use serde_json::Value;
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

/// Counts per session; an entry exists only while the session streams.
pub struct InFlight {
    max: usize,
    counts: Mutex<HashMap<SessionId, Streaming>>,
}

/// What one session streams on this replica.
#[derive(Default)]
struct Streaming {
    count: usize,
    /// The JSON text of each request id in flight.
    ids: HashSet<String>,
}

/// Requests of a session counted until dropped.
pub struct Slots {
    owner: Arc<InFlight>,
    session: SessionId,
    ids: Vec<String>,
}

impl InFlight {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// Counts the requests with these `ids` of `session`: 429 if that
    /// makes more than the maximum, 400 if one of the ids is in flight in
    /// the session already (or named twice).
    pub fn acquire(
        self: &Arc<Self>,
        session: &SessionId,
        ids: &[&Value],
    ) -> Result<Slots, GatewayError> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let entry = counts.entry(session.clone()).or_default();
        let refused = if entry.count + ids.len() > self.max {
            Some(GatewayError::TooManyInFlight(entry.count))
        } else {
            let mut seen = HashSet::new();
            ids.iter()
                .find(|id| {
                    let text = id.to_string();
                    entry.ids.contains(&text) || !seen.insert(text)
                })
                .map(|id| {
                    GatewayError::InvalidRequest(
                        format!(
                            "duplicate request id {id}: a request with this id is in flight in this session"
                        ),
                        Some((*id).clone()),
                    )
                })
        };
        if let Some(e) = refused {
            if entry.count == 0 {
                counts.remove(session);
            }
            return Err(e);
        }
        let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        entry.count += ids.len();
        entry.ids.extend(ids.iter().cloned());
        Ok(Slots {
            owner: self.clone(),
            session: session.clone(),
            ids,
        })
    }

    /// Requests of `session` counted now.
    pub fn count(&self, session: &SessionId) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(session).map(|s| s.count).unwrap_or(0)
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = counts.get_mut(&self.session) {
            entry.count = entry.count.saturating_sub(self.ids.len());
            for id in &self.ids {
                entry.ids.remove(id);
            }
            if entry.count == 0 {
                counts.remove(&self.session);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetway_shared::service::Service;

    #[test]
    fn a_session_gets_at_most_max_and_slots_free_when_dropped() {
        let f = InFlight::new(3);
        let a = SessionId::generate(&Service::default(), 0);
        let b = SessionId::generate(&Service::default(), 0);
        let ids: Vec<Value> = (0..10).map(Value::from).collect();
        let two = f.acquire(&a, &[&ids[0], &ids[1]]).expect("2 of 3");
        let one = f.acquire(&a, &[&ids[2]]).expect("3 of 3");
        assert!(matches!(
            f.acquire(&a, &[&ids[3]]),
            Err(GatewayError::TooManyInFlight(3))
        ));
        let other = f
            .acquire(&b, &[&ids[0], &ids[1], &ids[2]])
            .expect("another session has its own");
        drop(two);
        assert_eq!(f.count(&a), 1);
        let again = f.acquire(&a, &[&ids[0], &ids[1]]).expect("freed");
        drop((one, again, other));
        assert_eq!(f.count(&a), 0);
        assert!(
            f.counts.lock().expect("no panic").is_empty(),
            "no entries left"
        );
    }

    #[test]
    fn an_id_in_flight_in_the_session_is_refused_until_its_request_ends() {
        let f = InFlight::new(10);
        let a = SessionId::generate(&Service::default(), 0);
        let b = SessionId::generate(&Service::default(), 0);
        let (seven, text) = (Value::from(7), Value::from("7"));
        let first = f.acquire(&a, &[&seven]).expect("first");
        let dup = f.acquire(&a, &[&seven]);
        assert!(
            matches!(&dup, Err(GatewayError::InvalidRequest(_, Some(id))) if *id == seven),
            "{:?}",
            dup.err()
        );
        assert_eq!(f.count(&a), 1, "a refused request holds nothing");
        let _string = f.acquire(&a, &[&text]).expect("\"7\" is another id than 7");
        let _other = f
            .acquire(&b, &[&seven])
            .expect("another session's ids are its own");
        assert!(
            f.acquire(&a, &[&Value::from(8), &Value::from(8)]).is_err(),
            "twice in one batch"
        );
        drop(first);
        f.acquire(&a, &[&seven])
            .expect("free once its request ended");
    }
}
