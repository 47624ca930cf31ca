//! The upload limit: one token bucket on the bytes every connection of a node sends.
//!
//! A writer takes tokens for what it is about to write and may go into debt by one write (a
//! frame is never split for the limit); while the bucket is in debt every writer waits until
//! it refills. So the long-run rate is the limit, and a burst is at most the bucket's size plus
//! one frame per connection.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `rate` bytes per second, holding at most `burst` bytes.
#[derive(Debug)]
pub(crate) struct Bucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    /// A full bucket. `rate` is at least 1 byte per second; the burst is one second's worth
    /// but at least 64 KiB (one block and its proof go out without waiting twice).
    pub(crate) fn new(rate: u64, now: Instant) -> Self {
        let rate = rate.max(1) as f64;
        let burst = rate.max(64.0 * 1024.0);
        Self {
            rate,
            burst,
            state: Mutex::new((burst, now)),
        }
    }

    fn refill(&self, now: Instant) -> std::sync::MutexGuard<'_, (f64, Instant)> {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * self.rate).min(self.burst);
        s.1 = now;
        s
    }

    /// When a writer may write next: `None` if now.
    pub(crate) fn ready_at(&self, now: Instant) -> Option<Instant> {
        let s = self.refill(now);
        if s.0 >= 0.0 {
            return None;
        }
        Some(now + Duration::from_secs_f64(-s.0 / self.rate))
    }

    /// `bytes` were written.
    pub(crate) fn take(&self, bytes: usize, now: Instant) {
        let mut s = self.refill(now);
        s.0 -= bytes as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debt_is_paid_at_the_rate() {
        let t0 = Instant::now();
        let b = Bucket::new(100_000, t0);
        assert_eq!(b.ready_at(t0), None);
        b.take(100_000, t0);
        assert_eq!(b.ready_at(t0), None, "the burst covers one second");
        b.take(50_000, t0);
        let at = b.ready_at(t0).unwrap();
        assert_eq!(at - t0, Duration::from_millis(500));
        assert_eq!(b.ready_at(at), None);
        // Never more than the burst.
        let later = t0 + Duration::from_secs(100);
        b.take(100_000, later);
        assert_eq!(b.ready_at(later), None);
        b.take(1, later);
        assert!(b.ready_at(later).is_some());
    }
}
