//! [`InFlight`]: the requests of each session this gateway replica streams
//! right now, at most `max_inflight_per_session` per session, so that one
//! session cannot hold every stream a gateway can serve. Per replica: a
//! client spread over N gateways may have N times as many.

use crate::error::GatewayError;
use jetway_shared::subjects::SessionId;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// Counts per session; an entry exists only while the session streams.
pub struct InFlight {
    max: usize,
    counts: Mutex<HashMap<SessionId, usize>>,
}

/// `n` requests of a session counted until dropped.
pub struct Slots {
    owner: Arc<InFlight>,
    session: SessionId,
    n: usize,
}

impl InFlight {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// Counts `n` more requests of `session`; 429 if that makes more than
    /// the maximum.
    pub fn acquire(self: &Arc<Self>, session: &SessionId, n: usize) -> Result<Slots, GatewayError> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(session.clone()).or_insert(0);
        if *count + n > self.max {
            let now = *count;
            if now == 0 {
                counts.remove(session);
            }
            return Err(GatewayError::TooManyInFlight(now));
        }
        *count += n;
        Ok(Slots {
            owner: self.clone(),
            session: session.clone(),
            n,
        })
    }

    /// Requests of `session` counted now.
    pub fn count(&self, session: &SessionId) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(session).copied().unwrap_or(0)
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.session) {
            *count = count.saturating_sub(self.n);
            if *count == 0 {
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
        let two = f.acquire(&a, 2).expect("2 of 3");
        let one = f.acquire(&a, 1).expect("3 of 3");
        assert!(matches!(
            f.acquire(&a, 1),
            Err(GatewayError::TooManyInFlight(3))
        ));
        let other = f.acquire(&b, 3).expect("another session has its own");
        drop(two);
        assert_eq!(f.count(&a), 1);
        let again = f.acquire(&a, 2).expect("freed");
        drop((one, again, other));
        assert_eq!(f.count(&a), 0);
        assert!(
            f.counts.lock().expect("no panic").is_empty(),
            "no entries left"
        );
    }
}
