//! Reading one session's messages in stream order with an ordered consumer
//! (ephemeral, unacknowledged, recreated on a gap, so every message comes
//! exactly once and in order).
//!
//! Two ways to read, chosen as it goes:
//! - **Range** (first): an unfiltered consumer from the session's first
//!   sequence to its last one, skipping other sessions' messages here. A
//!   session's messages cluster in time, and the server streams a plain
//!   range far faster than it evaluates `jetway.<p>.<sid>.>` per message —
//!   that filter costs the server a walk over the session's subjects for
//!   every message, so a session with thousands of requests (thousands of
//!   `out.<key>` subjects) would replay at a few thousand messages a second.
//! - **Filtered**: a consumer with `filter_subject: jetway.<p>.<sid>.>`,
//!   used when the range turns out to be mostly other sessions' traffic,
//!   and to follow live messages after the stored ones (`--follow`).
//!
//! "Caught up" means every message stored when reading began has been
//! returned; `--follow` reads on past it.

use crate::{bus::Bus, error::CliError, message::Stored};
use async_nats::jetstream::{
    consumer::{DeliverPolicy, ReplayPolicy, pull},
    stream::{DirectGetErrorKind, Stream},
};
use futures::StreamExt;
use jetway_shared::subjects::{self, SessionId};
use serde_json::json;

/// Where reading starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// The session's first stored message.
    Beginning,
    /// The first message stored at or after this Unix millisecond.
    Time(u64),
}

/// In range mode, switch to a filtered consumer once this many other
/// sessions' messages were skipped…
const SPARSE_AFTER: u64 = 10_000;
/// …and they outnumber the session's own by this factor.
const SPARSE_RATIO: u64 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Unfiltered, up to and including the session's last sequence at open.
    Range {
        last: u64,
    },
    Filtered,
}

/// A session's messages, in stream order.
pub struct Reader {
    bus: Bus,
    stream: Stream,
    session: SessionId,
    /// `jetway.<p>.<sid>.`: subjects of this session.
    prefix: String,
    follow: bool,
    mode: Mode,
    messages: Option<pull::Ordered>,
    /// Sequence of the last message read (of any session).
    position: u64,
    kept: u64,
    skipped: u64,
    caught_up: bool,
}

impl Reader {
    /// Prepares to read `session` from `start`; with `follow`, reading goes
    /// on past the stored messages.
    pub async fn open(
        bus: &Bus,
        stream: &Stream,
        session: &SessionId,
        start: Start,
        follow: bool,
    ) -> Result<Self, CliError> {
        let mut reader = Self {
            bus: bus.clone(),
            stream: stream.clone(),
            session: session.clone(),
            prefix: format!("{}.", session.all().trim_end_matches(".>")),
            follow,
            mode: Mode::Filtered,
            messages: None,
            position: 0,
            kept: 0,
            skipped: 0,
            caught_up: false,
        };
        let first = reader.first_sequence(start).await?;
        let last = reader.last_sequence().await?;
        match (first, last) {
            (Some(first), Some(last)) if first <= last => {
                reader.mode = Mode::Range { last };
                reader.consume(first, false).await?;
            }
            // Nothing stored from `start` on.
            _ => {
                reader.caught_up = true;
                if follow {
                    let from = last.map_or(1, |l| l + 1).max(first.unwrap_or(1));
                    reader.consume(from, true).await?;
                }
            }
        }
        Ok(reader)
    }

    /// True once every message stored when reading began has been returned.
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// The next message of the session; `None` when there is nothing more
    /// to read (not following and caught up, or the consumer ended).
    pub async fn next(&mut self) -> Option<Result<Stored, CliError>> {
        loop {
            if self.caught_up && !self.follow {
                return None;
            }
            let msg = match self.messages.as_mut()?.next().await? {
                Ok(m) => m,
                Err(e) => return Some(Err(self.bus.js_error("reading the stream".into(), e))),
            };
            let Ok(info) = msg.info() else { continue };
            let seq = info.stream_sequence;
            let pending = info.pending;
            let time_ms = (info.published.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
            self.position = seq;
            let inner = &msg.message;
            let subject = inner.subject.as_str();
            let ours = subject.starts_with(&self.prefix);
            let stored = if ours {
                self.kept += 1;
                Stored::new(
                    seq,
                    subject,
                    time_ms,
                    inner.headers.as_ref(),
                    inner.payload.clone(),
                )
            } else {
                self.skipped += 1;
                None
            };
            if let Err(e) = self.advance(pending).await {
                return Some(Err(e));
            }
            if let Some(stored) = stored {
                return Some(Ok(stored));
            }
        }
    }

    /// Updates "caught up" after a message, and changes mode when the range
    /// is done (following) or too sparse.
    async fn advance(&mut self, pending: u64) -> Result<(), CliError> {
        match self.mode {
            Mode::Filtered => self.caught_up = pending == 0,
            Mode::Range { last } => {
                if self.position >= last {
                    self.caught_up = true;
                    if self.follow {
                        self.consume(self.position + 1, true).await?;
                    }
                } else if self.skipped > SPARSE_AFTER
                    && self.skipped > SPARSE_RATIO * (self.kept + 1)
                {
                    self.consume(self.position + 1, true).await?;
                }
            }
        }
        Ok(())
    }

    /// (Re)creates the consumer at `from`, filtered or not.
    async fn consume(&mut self, from: u64, filtered: bool) -> Result<(), CliError> {
        let config = pull::OrderedConfig {
            filter_subject: if filtered {
                self.session.all()
            } else {
                String::new()
            },
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from.max(1),
            },
            replay_policy: ReplayPolicy::Instant,
            ..Default::default()
        };
        let what = || format!("reading session {}", self.session);
        let consumer = self
            .stream
            .create_consumer(config)
            .await
            .map_err(|e| self.bus.js_error(what(), e))?;
        if filtered {
            self.mode = Mode::Filtered;
            self.caught_up |= consumer.cached_info().num_pending == 0;
        }
        self.messages = Some(
            consumer
                .messages()
                .await
                .map_err(|e| self.bus.js_error(what(), e))?,
        );
        Ok(())
    }

    /// Sequence of the session's first message at or after `start`.
    async fn first_sequence(&self, start: Start) -> Result<Option<u64>, CliError> {
        let what = || format!("finding the first message of {}", self.session);
        match start {
            Start::Beginning => {
                match self
                    .stream
                    .direct_get_next_for_subject(self.session.all(), None)
                    .await
                {
                    Ok(m) => Ok(Some(m.sequence)),
                    Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
                    Err(e) => Err(self.bus.js_error(what(), e)),
                }
            }
            Start::Time(ms) => {
                // A direct get by time (server 2.11+): the first message of
                // the session's subjects stored at or after `ms`.
                let time = humantime::format_rfc3339_nanos(crate::timefmt::system_time(ms));
                let request =
                    json!({"start_time": time.to_string(), "next_by_subj": self.session.all()});
                let subject = format!(
                    "$JS.API.DIRECT.GET.{}",
                    subjects::stream_name(self.session.service(), self.session.partition())
                );
                let reply = self
                    .bus
                    .client
                    .request(subject, request.to_string().into())
                    .await
                    .map_err(|e| self.bus.js_error(what(), e))?;
                if reply
                    .status
                    .is_some_and(|s| s != async_nats::StatusCode::OK)
                {
                    return Ok(None);
                }
                Ok(reply
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(async_nats::header::NATS_SEQUENCE))
                    .and_then(|v| v.as_str().parse().ok()))
            }
        }
    }

    /// Sequence of the session's last stored message.
    async fn last_sequence(&self) -> Result<Option<u64>, CliError> {
        match self
            .stream
            .direct_get_last_for_subject(self.session.all())
            .await
        {
            Ok(m) => Ok(Some(m.sequence)),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(self
                .bus
                .js_error(format!("finding the last message of {}", self.session), e)),
        }
    }

    /// Reads every stored message (not following).
    pub async fn collect(mut self) -> Result<Vec<Stored>, CliError> {
        self.follow = false;
        let mut out = Vec::new();
        while let Some(m) = self.next().await {
            out.push(m?);
        }
        Ok(out)
    }
}
