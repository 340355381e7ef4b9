//! [`AnswerRoom`]: keeps the last place of each request's subject for its
//! answer.
//!
//! JetStream stores at most `session_max_messages` messages on one subject
//! (and refuses more: discard-new-per-subject). A request whose handler
//! sends that many notifications would leave no place for its final answer;
//! handing it back would run it again, and again be refused. So the
//! publisher counts the messages it stores on each request's subject and
//! drops the non-final ones past `session_max_messages - 1`: the client
//! misses some notifications (counted in
//! `jetway_worker_messages_dropped_total`) and gets its answer.
//!
//! The count is per worker process and run: a request run again after its
//! worker died starts from zero while the earlier run's messages are still
//! stored, and may then find the subject full; the publisher then drops
//! that too (see `publish`), since running the request again would not
//! make room.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Subjects counted at once before those of old runs are forgotten.
const MAX_TRACKED: usize = 10_000;
/// How long a subject's count is kept after its last message: longer than
/// any request runs.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Messages stored per request subject by this process.
pub struct AnswerRoom {
    /// `session_max_messages`; 0: no limit.
    cap: u64,
    counts: Mutex<HashMap<String, (u64, Instant)>>,
}

/// Whether a non-final message may be stored.
#[derive(Debug, PartialEq, Eq)]
pub enum Place {
    Free,
    /// The last place, kept for the answer: drop the message.
    KeptForTheAnswer,
}

impl AnswerRoom {
    pub fn new(cap: u64) -> Self {
        Self {
            cap,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a place on `subject` for a non-final message, if one is left
    /// besides the answer's.
    pub fn take(&self, subject: &str) -> Place {
        if self.cap == 0 {
            return Place::Free;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() >= MAX_TRACKED && !counts.contains_key(subject) {
            counts.retain(|_, (_, at)| at.elapsed() < FORGET_AFTER);
        }
        let (n, at) = counts
            .entry(subject.to_owned())
            .or_insert((0, Instant::now()));
        *at = Instant::now();
        if *n + 1 >= self.cap {
            return Place::KeptForTheAnswer;
        }
        *n += 1;
        Place::Free
    }

    /// Gives back a place taken for a message that was not stored.
    pub fn give_back(&self, subject: &str) {
        if self.cap == 0 {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, _)) = counts.get_mut(subject) {
            *n = n.saturating_sub(1);
        }
    }

    /// Forgets `subject`: its request is answered.
    pub fn answered(&self, subject: &str) {
        if self.cap == 0 {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.remove(subject);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_place_is_kept_for_the_answer() {
        let room = AnswerRoom::new(3);
        assert_eq!(room.take("a"), Place::Free);
        assert_eq!(room.take("a"), Place::Free);
        assert_eq!(room.take("a"), Place::KeptForTheAnswer);
        assert_eq!(room.take("b"), Place::Free, "each subject has its own");
        room.give_back("a");
        assert_eq!(
            room.take("a"),
            Place::Free,
            "a place not used is free again"
        );
        room.answered("a");
        assert_eq!(room.take("a"), Place::Free);
        let unlimited = AnswerRoom::new(0);
        assert!((0..10).all(|_| unlimited.take("a") == Place::Free));
    }
}
