//! [`Backoff`]: the one retry delay policy of every loop that waits before
//! trying again (publishes, KV reads and writes, setup, the workers' pull
//! loop, the bridge's upstream listener, the harness's readiness checks
//! and the tests' `eventually`).
//!
//! A delay starts at `initial` and grows by `factor` up to `max`; with
//! jitter each delay is drawn from ±50 % around it, so processes that lost
//! NATS together do not retry in step. A backoff may also carry a deadline:
//! [`Backoff::wait`] then says when the next try would start too late.

use std::time::Duration;
use tokio::time::Instant;

/// Exponential backoff, optionally jittered and bounded by a deadline.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    factor: u32,
    jitter: bool,
    delay: Duration,
    deadline: Option<Instant>,
}

impl Backoff {
    /// The policy of idempotent NATS retries: 50 ms doubling to 1 s, all
    /// tries starting within [`RETRY_FOR`](crate::publish::RETRY_FOR).
    pub fn new() -> Self {
        Self::lasting(crate::publish::RETRY_FOR)
    }

    /// The policy of [`Backoff::new`] with tries starting within `span`.
    pub fn lasting(span: Duration) -> Self {
        Self::unbounded(Duration::from_millis(50), Duration::from_secs(1)).within(span)
    }

    /// `initial` doubling to `max`, no jitter, no deadline.
    pub fn unbounded(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            factor: 2,
            jitter: false,
            delay: initial,
            deadline: None,
        }
    }

    /// Grows each delay by `factor` instead of 2.
    pub fn factor(mut self, factor: u32) -> Self {
        self.factor = factor.max(1);
        self
    }

    /// Draws each delay from ±50 % around the nominal one.
    pub fn jitter(mut self) -> Self {
        self.jitter = true;
        self
    }

    /// Sets a deadline `span` from now: [`Backoff::wait`] refuses a try
    /// that would start after it.
    pub fn within(mut self, span: Duration) -> Self {
        self.deadline = Some(Instant::now() + span);
        self
    }

    /// The delay before the next try, advancing the backoff.
    // Not `Iterator::next`: a backoff never ends, an `Option` would only be unwrapped.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Duration {
        let nominal = self.delay;
        self.delay = nominal.saturating_mul(self.factor).min(self.max);
        if self.jitter {
            nominal.mul_f64(rand::random_range(0.5..1.5))
        } else {
            nominal
        }
    }

    /// Sleeps for [`Backoff::next`].
    pub async fn sleep(&mut self) {
        let delay = self.next();
        tokio::time::sleep(delay).await;
    }

    /// Sleeps before the next try; `false` (at once) if that try would
    /// start after the deadline.
    pub async fn wait(&mut self) -> bool {
        let delay = self.next();
        if self.deadline.is_some_and(|d| Instant::now() + delay > d) {
            return false;
        }
        tokio::time::sleep(delay).await;
        true
    }

    /// Runs `attempt` until it succeeds or fails with an error that
    /// `retriable` refuses, waiting ([`Backoff::wait`]) between tries; once
    /// the deadline refuses another try, the last error.
    pub async fn retry<T, E, Fut>(
        mut self,
        mut attempt: impl FnMut() -> Fut,
        retriable: impl Fn(&E) -> bool,
    ) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        loop {
            match attempt().await {
                Err(e) if retriable(&e) => {
                    if !self.wait().await {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "retrying");
                }
                done => return done,
            }
        }
    }

    /// Starts again from `initial` (after a success); the deadline stays.
    pub fn reset(&mut self) {
        self.delay = self.initial;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_by_the_factor_up_to_max_and_reset() {
        let ms = Duration::from_millis;
        let mut b = Backoff::unbounded(ms(10), ms(100)).factor(3);
        let delays: Vec<_> = (0..5).map(|_| b.next()).collect();
        assert_eq!(delays, [ms(10), ms(30), ms(90), ms(100), ms(100)]);
        b.reset();
        assert_eq!(b.next(), ms(10));
    }

    #[test]
    fn jitter_stays_within_half_the_delay() {
        let mut b =
            Backoff::unbounded(Duration::from_millis(100), Duration::from_millis(100)).jitter();
        for _ in 0..100 {
            let d = b.next();
            assert!(
                d >= Duration::from_millis(50) && d <= Duration::from_millis(150),
                "{d:?}"
            );
        }
    }

    #[tokio::test]
    async fn retry_stops_at_success_at_a_final_error_and_at_the_deadline() {
        let ms = Duration::from_millis;
        let tries = std::cell::Cell::new(0);
        let count = || {
            tries.set(tries.get() + 1);
            let n = tries.get();
            async move {
                if n < 3 {
                    Err(format!("try {n}"))
                } else {
                    Ok(n)
                }
            }
        };
        assert_eq!(
            Backoff::unbounded(ms(1), ms(1))
                .retry(count, |_| true)
                .await,
            Ok(3)
        );
        tries.set(0);
        let never = Backoff::unbounded(ms(1), ms(1))
            .retry(count, |_| false)
            .await;
        assert_eq!(never, Err("try 1".to_owned()));
        tries.set(-100);
        let late = Backoff::unbounded(ms(100), ms(100)).within(ms(150));
        assert!(late.retry(count, |_| true).await.is_err());
        assert_eq!(tries.get(), -98, "one wait of 100 ms fits in 150 ms");
    }

    #[tokio::test]
    async fn wait_refuses_a_try_past_the_deadline() {
        let mut b = Backoff::lasting(Duration::from_millis(200));
        let mut tries = 0;
        while b.wait().await {
            tries += 1;
        }
        // 50 + 100 ms fit in 200 ms; the next (200 ms) would not.
        assert_eq!(tries, 2);
    }
}
