//! [`Fair`]: at most `max_slots_per_session` of a worker's slots run
//! requests of one session, so a session that queues many long calls
//! cannot take every slot while another session's call waits behind them
//! in the consumer's queue.
//!
//! A request whose session already runs its share, while other requests
//! wait in the consumer behind it (the delivery's `pending`), is parked: this worker
//! keeps it (renewing its lease, so it is not redelivered) without a slot,
//! and pulls the next request into the freed slot. When a request of that
//! session ends, its slot goes straight to the session's oldest parked
//! request. Parking is not a nak: a nak would count as a delivery and run
//! into `max_deliver`. Nothing is claimed while parked, so exactly-once is
//! untouched: a parked request is claimed when it starts, like any other.
//! A session's requests still start in the order the worker received them.
//!
//! Work-conserving: a request with nothing waiting behind it runs even over
//! its session's share, so a lone session still gets every slot; once
//! others' requests queue up behind its own, its next ones are parked and
//! the others' reach free slots (another session waits for at most one of
//! the busy session's calls to end, not for all of them).
//!
//! At most [`PARKED_PER_SLOT`] × `max_concurrency` requests are parked; past
//! that a request runs even over its session's share (fairness degrades,
//! no slot idles and nothing is handed back). On shutdown the parked
//! requests are handed back (nak) for other workers.
//!
//! Requests of one session are never run in parallel beyond the share, so
//! a worker with one slot (or a share equal to its slots) is not fair:
//! fairness needs `max_concurrency` ≥ 2.

use crate::delivery::{Delivery, Lease};
use jetway_shared::subjects::parse_subject;
use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::Duration,
};

/// Requests parked per slot of the worker, at most.
pub const PARKED_PER_SLOT: usize = 4;

/// The default share of one session: half the slots, at least one.
pub fn default_share(max_concurrency: usize) -> usize {
    (max_concurrency / 2).max(1)
}

/// What to do with a delivery just pulled.
pub enum Admit {
    /// Run it now, in the slot it was pulled with.
    Run(Box<Delivery>),
    /// Parked; the slot is free for the next pull.
    Parked,
}

/// The running and parked requests of a worker, by session.
pub struct Fair {
    share: usize,
    max_parked: usize,
    renew: (Duration, Duration),
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    running: HashMap<String, usize>,
    parked: HashMap<String, VecDeque<(Delivery, Lease)>>,
    parked_total: usize,
    /// The last delivery had nothing waiting behind it.
    queue_empty: bool,
    draining: bool,
}

impl Fair {
    /// `renew`: how often a parked request's lease is renewed, and when it
    /// counts as lapsed.
    pub fn new(share: usize, max_concurrency: usize, renew: (Duration, Duration)) -> Self {
        Self {
            share: share.max(1),
            max_parked: max_concurrency * PARKED_PER_SLOT,
            renew,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session a delivery is for (`""` when the subject names none:
    /// the request handler drops such a message).
    pub fn session_of(delivery: &Delivery) -> String {
        parse_subject(delivery.message().subject.as_str())
            .map(|(s, _)| s.as_str().to_owned())
            .unwrap_or_default()
    }

    /// Runs `delivery` now or parks it. With nothing waiting behind it in
    /// the consumer, it (or its session's oldest parked request, so that
    /// the session's requests start in order) runs over the share.
    pub fn admit(&self, session: &str, delivery: Delivery) -> Admit {
        let mut st = self.state();
        let alone = delivery.pending == 0;
        st.queue_empty = alone;
        let running = st.running.get(session).copied().unwrap_or(0);
        let has_parked = st.parked.contains_key(session);
        let full = st.parked_total >= self.max_parked;
        if (running < self.share && !has_parked) || st.draining || (full && !has_parked) {
            *st.running.entry(session.to_owned()).or_insert(0) += 1;
            return Admit::Run(Box::new(delivery));
        }
        if (alone || running < self.share || full) && has_parked {
            // Its oldest parked request runs; this one queues behind it.
            let lease = delivery.hold(self.renew.0, self.renew.1);
            let queue = st.parked.entry(session.to_owned()).or_default();
            queue.push_back((delivery, lease));
            let (oldest, _lease) = queue.pop_front().unwrap_or_else(|| unreachable!("pushed"));
            *st.running.entry(session.to_owned()).or_insert(0) += 1;
            return Admit::Run(Box::new(oldest));
        }
        if alone {
            *st.running.entry(session.to_owned()).or_insert(0) += 1;
            return Admit::Run(Box::new(delivery));
        }
        let lease = delivery.hold(self.renew.0, self.renew.1);
        st.parked
            .entry(session.to_owned())
            .or_default()
            .push_back((delivery, lease));
        st.parked_total += 1;
        tracing::debug!(
            session,
            running,
            parked = st.parked_total,
            "session runs its share of slots; parked a request"
        );
        Admit::Parked
    }

    /// A parked request to run in a free slot instead of pulling, when the
    /// consumer had nothing waiting at the last delivery (or the last pull
    /// found nothing): the session with the fewest running requests first.
    /// Its session, and the request.
    pub fn idle_slot(&self) -> Option<(String, Delivery)> {
        let mut st = self.state();
        if !st.queue_empty || st.parked_total == 0 || st.draining {
            return None;
        }
        let session = st
            .parked
            .keys()
            .min_by_key(|s| st.running.get(*s).copied().unwrap_or(0))?
            .clone();
        let queue = st.parked.get_mut(&session)?;
        let (next, _lease) = queue.pop_front()?;
        if queue.is_empty() {
            st.parked.remove(&session);
        }
        st.parked_total -= 1;
        *st.running.entry(session.clone()).or_insert(0) += 1;
        // Once: the next free slot pulls, and learns what waits now (a
        // request of another session may have come meanwhile).
        st.queue_empty = false;
        Some((session, next))
    }

    /// A pull found nothing to deliver: parked requests may take free slots.
    pub fn nothing_pending(&self) {
        self.state().queue_empty = true;
    }

    /// A request of `session` ended: the session's next parked request,
    /// to run in the same slot, if any.
    pub fn finished(&self, session: &str) -> Option<Delivery> {
        let mut st = self.state();
        if !st.draining
            && let Some(queue) = st.parked.get_mut(session)
            && let Some((next, _lease)) = queue.pop_front()
        {
            if queue.is_empty() {
                st.parked.remove(session);
            }
            st.parked_total -= 1;
            return Some(next);
        }
        if let Some(n) = st.running.get_mut(session) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.running.remove(session);
            }
        }
        None
    }

    /// Stops parking and takes every parked request, to hand back.
    pub fn drain(&self) -> Vec<Delivery> {
        let mut st = self.state();
        st.draining = true;
        st.parked_total = 0;
        st.parked
            .drain()
            .flat_map(|(_, q)| q.into_iter().map(|(d, _)| d))
            .collect()
    }

    /// Requests parked now.
    pub fn parked(&self) -> usize {
        self.state().parked_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_half_the_slots_and_at_least_one() {
        assert_eq!(default_share(64), 32);
        assert_eq!(default_share(2), 1);
        assert_eq!(default_share(1), 1);
    }
}
