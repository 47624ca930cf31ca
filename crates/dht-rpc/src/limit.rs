//! Inbound request rate limits: a token bucket per source IP in a bounded table, and one global
//! bucket. dht-rpc has none; this is ours (see `protocol/dht-rpc.md`, "Limits").
//!
//! - A request first draws from its source IP's bucket, then from the global one. A flood
//!   from one IP (or a spoofed one) therefore empties only its own bucket and never the global
//!   budget of everyone else.
//! - The per-IP table holds at most `max_ips` buckets. When it is full, idle buckets (refilled
//!   to the brim, so forgetting them changes nothing) are swept at most once a second; IPs that
//!   still find no room share one overflow bucket.
//! - Buckets count in thousandths of a request so refills need no floating point.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Rate-limit settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests per second one IP may sustain.
    pub per_ip_rate: u32,
    /// Requests one IP may send in a burst.
    pub per_ip_burst: u32,
    /// Requests per second the node answers in total.
    pub global_rate: u32,
    /// Burst of the global bucket.
    pub global_burst: u32,
    /// Source IPs tracked at once.
    pub max_ips: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            // A JS node's congestion window bounds requests in flight, not their rate: one busy
            // client on a fast path sends several hundred per second, and several nodes may share
            // an IP (a NAT, a loopback testnet).
            per_ip_rate: 1000,
            per_ip_burst: 2000,
            global_rate: 20_000,
            global_burst: 20_000,
            max_ips: 4096,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    milli: u64,
    last: Instant,
}

impl Bucket {
    fn full(burst: u32, now: Instant) -> Self {
        Self {
            milli: u64::from(burst) * 1000,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant, rate: u32, burst: u32) {
        let cap = u64::from(burst) * 1000;
        let ms = now.saturating_duration_since(self.last).as_millis();
        let ms = u64::try_from(ms).unwrap_or(u64::MAX).min(1 << 32);
        // rate req/s = rate milli-req/ms; whole milliseconds only, the rest carries over.
        self.milli = self.milli.saturating_add(ms * u64::from(rate)).min(cap);
        self.last += Duration::from_millis(ms);
        if self.milli == cap {
            self.last = now;
        }
    }

    fn take(&mut self, now: Instant, rate: u32, burst: u32) -> bool {
        self.refill(now, rate, burst);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

/// The limiter.
#[derive(Debug, Clone)]
pub(crate) struct RateLimiter {
    cfg: RateLimits,
    ips: HashMap<Ipv4Addr, Bucket>,
    overflow: Bucket,
    global: Bucket,
    last_sweep: Instant,
}

impl RateLimiter {
    pub(crate) fn new(cfg: RateLimits, now: Instant) -> Self {
        Self {
            cfg,
            ips: HashMap::new(),
            overflow: Bucket::full(cfg.per_ip_burst, now),
            global: Bucket::full(cfg.global_burst, now),
            last_sweep: now,
        }
    }

    /// Whether a request from `ip` may be served now (and charge it).
    pub(crate) fn allow(&mut self, ip: Ipv4Addr, now: Instant) -> bool {
        let RateLimits {
            per_ip_rate: rate,
            per_ip_burst: burst,
            ..
        } = self.cfg;
        if !self.ips.contains_key(&ip) && self.ips.len() >= self.cfg.max_ips {
            self.sweep(now);
        }
        let bucket = if let Some(b) = self.ips.get_mut(&ip) {
            b
        } else if self.ips.len() < self.cfg.max_ips {
            self.ips.entry(ip).or_insert(Bucket::full(burst, now))
        } else {
            &mut self.overflow
        };
        if !bucket.take(now, rate, burst) {
            return false;
        }
        self.global
            .take(now, self.cfg.global_rate, self.cfg.global_burst)
    }

    fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) < Duration::from_secs(1) {
            return;
        }
        self.last_sweep = now;
        let RateLimits {
            per_ip_rate: rate,
            per_ip_burst: burst,
            ..
        } = self.cfg;
        self.ips.retain(|_, b| {
            b.refill(now, rate, burst);
            b.milli < u64::from(burst) * 1000
        });
    }

    /// Source IPs tracked.
    pub(crate) fn tracked(&self) -> usize {
        self.ips.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RateLimits {
        RateLimits {
            per_ip_rate: 10,
            per_ip_burst: 20,
            global_rate: 100,
            global_burst: 100,
            max_ips: 4,
        }
    }

    #[test]
    fn per_ip_burst_then_rate() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(cfg(), t0);
        let a = Ipv4Addr::new(1, 1, 1, 1);
        assert_eq!((0..30).filter(|_| l.allow(a, t0)).count(), 20);
        // 10/s: one more every 100 ms.
        assert!(l.allow(a, t0 + Duration::from_millis(100)));
        assert!(!l.allow(a, t0 + Duration::from_millis(100)));
        // Another IP is unaffected.
        assert!(l.allow(Ipv4Addr::new(2, 2, 2, 2), t0));
    }

    #[test]
    fn table_is_bounded_and_sweeps_idle_ips() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(cfg(), t0);
        for i in 0..1000u32 {
            let _ = l.allow(Ipv4Addr::from(i), t0);
            assert!(l.tracked() <= 4);
        }
        // The overflow bucket is shared and empties.
        let served = (1000..2000u32)
            .filter(|&i| l.allow(Ipv4Addr::from(i), t0))
            .count();
        assert!(served < 20, "{served}");
        // Later, idle buckets are swept and new IPs get their own again.
        let later = t0 + Duration::from_secs(10);
        assert!(l.allow(Ipv4Addr::from(5000u32), later));
        assert!(l.tracked() <= 4);
    }

    #[test]
    fn global_bucket_caps_the_total() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(
            RateLimits {
                max_ips: 1000,
                ..cfg()
            },
            t0,
        );
        let served = (0..500u32)
            .filter(|&i| l.allow(Ipv4Addr::from(i), t0))
            .count();
        assert_eq!(served, 100);
    }
}
