//! [`Rate`]: a token bucket per principal, or per client address when the
//! request carries no principal (`rate_limit_per_sec`, `rate_limit_burst`),
//! on this gateway replica (a client spread over N replicas by the load
//! balancer may send N times as much).
//!
//! The buckets are `governor`'s keyed GCRA limiter. Memory is bounded: a
//! bucket that has refilled holds nothing worth keeping and is pruned
//! every [`PRUNE_EVERY`]; and once [`MAX_KEYS`] buckets exist (many
//! addresses at once), keys the limiter has not seen share one overflow
//! bucket instead of adding more, so a flood from many addresses is
//! limited together while known clients keep their own.

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio_util::sync::CancellationToken;

/// Buckets kept before new keys share the overflow bucket.
pub const MAX_KEYS: usize = 100_000;

/// How often refilled buckets are dropped.
pub const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// Whose bucket a request draws from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// An authenticated principal: issuer and subject.
    Principal(String, String),
    /// A client address; IPv6 by its /64 (one host usually holds a whole
    /// /64, so single addresses would be free for the taking).
    Addr(IpAddr),
    /// Every new key while [`MAX_KEYS`] buckets exist.
    Overflow,
}

impl Key {
    pub fn addr(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                Self::Addr(IpAddr::V6(bits.into()))
            }
            v4 => Self::Addr(v4),
        }
    }
}

/// The buckets of one gateway replica.
pub struct Rate {
    limiter: DefaultKeyedRateLimiter<Key>,
    /// Milliseconds (of the process clock) of the last prune forced by size.
    last_forced: AtomicU64,
}

impl Rate {
    /// `None` when `per_sec` is 0 (no limit).
    pub fn new(per_sec: u32, burst: u32) -> Option<Arc<Self>> {
        let per_sec = NonZeroU32::new(per_sec)?;
        let burst = NonZeroU32::new(burst).unwrap_or(per_sec);
        Some(Arc::new(Self {
            limiter: RateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst)),
            last_forced: AtomicU64::new(0),
        }))
    }

    /// Takes one token of `key`'s bucket, or says how long until one is
    /// there.
    pub fn check(&self, key: Key) -> Result<(), Duration> {
        let key = if self.limiter.len() >= MAX_KEYS {
            self.prune_now();
            if self.limiter.len() >= MAX_KEYS && !self.known(&key) {
                Key::Overflow
            } else {
                key
            }
        } else {
            key
        };
        self.limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// Buckets held now.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }

    /// Principals are authenticated, not free to mint: they keep their
    /// own buckets over the cap; addresses share the overflow bucket.
    fn known(&self, key: &Key) -> bool {
        matches!(key, Key::Principal(..))
    }

    /// Drops refilled buckets, at most once a second when forced by size.
    fn prune_now(&self) {
        let started = std::time::Instant::now();
        let stamp = PROCESS_START.elapsed().as_millis() as u64 + 1000;
        let last = self.last_forced.load(Ordering::Relaxed);
        if stamp.saturating_sub(last) >= 1000
            && self
                .last_forced
                .compare_exchange(last, stamp, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.prune();
            tracing::warn!(
                buckets = self.limiter.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "rate limiter at its key cap: pruned; new addresses share one bucket"
            );
        }
    }

    /// Drops the buckets that have refilled.
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Prunes every [`PRUNE_EVERY`] until `stop`.
    pub fn spawn_pruning(self: &Arc<Self>, stop: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PRUNE_EVERY);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => me.prune(),
                }
            }
        });
    }
}

static PROCESS_START: std::sync::LazyLock<std::time::Instant> =
    std::sync::LazyLock::new(std::time::Instant::now);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_waits_and_others_have_their_own() {
        let rate = Rate::new(1, 3).expect("limited");
        let a = Key::addr("192.0.2.1".parse().expect("ip"));
        let b = Key::addr("192.0.2.2".parse().expect("ip"));
        for _ in 0..3 {
            rate.check(a.clone()).expect("within the burst");
        }
        let wait = rate.check(a.clone()).expect_err("burst used up");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        rate.check(b).expect("another address has its own bucket");
        assert!(Rate::new(0, 10).is_none(), "0 is no limit");
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let a = Key::addr("2001:db8:1:2::1".parse().expect("ip"));
        let b = Key::addr("2001:db8:1:2:ffff::9".parse().expect("ip"));
        let c = Key::addr("2001:db8:1:3::1".parse().expect("ip"));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn many_addresses_do_not_grow_the_map_past_the_cap() {
        let rate = Rate::new(1000, 1000).expect("limited");
        for i in 0..(MAX_KEYS as u32 + 5_000) {
            let _ = rate.check(Key::addr(IpAddr::V4(i.into())));
        }
        assert!(rate.len() <= MAX_KEYS + 1, "{} buckets", rate.len());
    }
}
