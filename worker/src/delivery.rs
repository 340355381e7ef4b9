//! One delivery of a request from the workers' consumer: what it is (delivery
//! count, stream position, publish time), how it is settled (ack, nak,
//! term), and its lease (in-progress acks while this worker holds it).

use async_nats::jetstream::{AckKind, Message};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};
use tokio_util::sync::{CancellationToken, DropGuard};

/// A request message as the consumer handed it to this worker.
pub struct Delivery {
    msg: Message,
    /// 1 on the first delivery.
    pub delivered: u64,
    /// The request's sequence in the session stream.
    pub stream_sequence: u64,
    /// When the gateway stored the request (the stream's clock).
    pub published: SystemTime,
    /// Requests waiting in the consumer behind this one when it was
    /// delivered.
    pub pending: u64,
}

impl Delivery {
    pub fn new(msg: Message) -> Self {
        let (delivered, stream_sequence, published, pending) = match msg.info() {
            Ok(i) => (
                i.delivered.max(1) as u64,
                i.stream_sequence,
                SystemTime::UNIX_EPOCH
                    + Duration::from_nanos(i.published.unix_timestamp_nanos().max(0) as u64),
                i.pending,
            ),
            // Not from a consumer (no ack subject): treat as new, now.
            Err(_) => (1, 0, SystemTime::now(), 0),
        };
        Self {
            msg,
            delivered,
            stream_sequence,
            published,
            pending,
        }
    }

    pub fn message(&self) -> &Message {
        &self.msg
    }

    /// Acknowledges the request, waiting for the server, retrying briefly: a
    /// lost ack means a needless redelivery, which the request's claim and
    /// its deduplicated answer make harmless, so give up after that.
    pub async fn ack(&self) {
        for _ in 0..3 {
            match self.msg.double_ack().await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "ack failed; retrying"),
            }
        }
    }

    /// Hands the request back for redelivery after `delay`.
    pub async fn nak(&self, delay: Option<Duration>) {
        if let Err(e) = self.msg.ack_with(AckKind::Nak(delay)).await {
            tracing::warn!(error = %e, "nak failed; the request will be redelivered after the ack wait");
        }
    }

    /// Drops a message that is not a request Jetway can run; never redelivered.
    pub async fn term(&self) {
        if let Err(e) = self.msg.ack_with(AckKind::Term).await {
            tracing::warn!(error = %e, "term failed");
        }
    }

    /// Renews the lease every `every` until the returned guard is dropped,
    /// so only a dead (or cut-off) worker's requests are redelivered. A
    /// lease counts as lapsed once `lapse` passed without a renewal.
    pub fn hold(&self, every: Duration, lapse: Duration) -> Lease {
        let stop = CancellationToken::new();
        let msg = self.msg.clone();
        let stopped = stop.clone();
        let clock = LeaseClock {
            inner: Arc::new(ClockInner {
                start: Instant::now(),
                renewed_ms: AtomicU64::new(0),
                lapsed: AtomicBool::new(false),
                lapse,
            }),
        };
        let ticking = clock.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        // A late tick (a frozen or starved process) may
                        // have let the lease run out: say so first.
                        ticking.renewing();
                        if let Err(e) = msg.ack_with(AckKind::Progress).await {
                            tracing::debug!(error = %e, "lease renewal failed");
                        }
                    }
                    _ = stopped.cancelled() => break,
                }
            }
        });
        Lease {
            clock,
            _stop: stop.drop_guard(),
        }
    }
}

/// Keeps a delivery's lease renewed while alive.
pub struct Lease {
    clock: LeaseClock,
    _stop: DropGuard,
}

impl Lease {
    /// Tells whether the lease may have run out at some point.
    pub fn clock(&self) -> LeaseClock {
        self.clock.clone()
    }
}

/// Whether a lease may have lapsed: a renewal came later than the lapse
/// time after the one before (or has not come for that long).
#[derive(Clone)]
pub struct LeaseClock {
    inner: Arc<ClockInner>,
}

struct ClockInner {
    start: Instant,
    renewed_ms: AtomicU64,
    lapsed: AtomicBool,
    lapse: Duration,
}

impl LeaseClock {
    fn now_ms(&self) -> u64 {
        self.inner.start.elapsed().as_millis() as u64
    }

    fn renewing(&self) {
        let now = self.now_ms();
        let before = self.inner.renewed_ms.load(Ordering::SeqCst);
        if now.saturating_sub(before) > self.inner.lapse.as_millis() as u64 {
            self.inner.lapsed.store(true, Ordering::SeqCst);
        }
        self.inner.renewed_ms.store(now, Ordering::SeqCst);
    }

    /// True if the lease may have lapsed since [`Self::clear`] was last called.
    pub fn may_have_lapsed(&self) -> bool {
        let since = self
            .now_ms()
            .saturating_sub(self.inner.renewed_ms.load(Ordering::SeqCst));
        self.inner.lapsed.load(Ordering::SeqCst) || since > self.inner.lapse.as_millis() as u64
    }

    /// The holder checked that it still owns the request.
    pub fn clear(&self) {
        self.inner.lapsed.store(false, Ordering::SeqCst);
    }
}
