//! One delivery of a request from the workers' consumer: what it is (delivery
//! count, stream position, publish time), how it is settled (ack, nak,
//! term), and its lease (in-progress acks while this worker holds it).

use async_nats::jetstream::{AckKind, Message};
use std::time::{Duration, SystemTime};
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
}

impl Delivery {
    pub fn new(msg: Message) -> Self {
        let (delivered, stream_sequence, published) = match msg.info() {
            Ok(i) => (
                i.delivered.max(1) as u64,
                i.stream_sequence,
                SystemTime::UNIX_EPOCH
                    + Duration::from_nanos(i.published.unix_timestamp_nanos().max(0) as u64),
            ),
            // Not from a consumer (no ack subject): treat as new, now.
            Err(_) => (1, 0, SystemTime::now()),
        };
        Self {
            msg,
            delivered,
            stream_sequence,
            published,
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
    /// so only a dead (or cut-off) worker's requests are redelivered.
    pub fn hold(&self, every: Duration) -> Lease {
        let stop = CancellationToken::new();
        let msg = self.msg.clone();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = msg.ack_with(AckKind::Progress).await {
                            tracing::debug!(error = %e, "lease renewal failed");
                        }
                    }
                    _ = stopped.cancelled() => break,
                }
            }
        });
        Lease {
            _stop: stop.drop_guard(),
        }
    }
}

/// Keeps a delivery's lease renewed while alive.
pub struct Lease {
    _stop: DropGuard,
}
