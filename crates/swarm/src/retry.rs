//! Reconnect backoff (hyperswarm `lib/retry-timer.js` over `lib/bulk-timer.js`), with time
//! passed in.
//!
//! Four bulk timers, S(hort), M(edium), L(ong) and X (explicit peers only). A bulk timer ticks
//! every `floor(0.66 · time)` from its first use; an entry added between two ticks is released
//! on the second tick after it was added, so about 0.66–1.32 × `time` later.

use std::time::{Duration, Instant};

use rand::Rng;

use crate::peer::Peer;

/// Random spread of the default backoffs and of each timer (`BACKOFF_JITTER`, 500 ms).
pub const DEFAULT_JITTER: Duration = Duration::from_millis(500);

/// The four backoffs before jitter: S, M, L and X (JS `opts.backoffs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoffs(pub [Duration; 4]);

impl Backoffs {
    /// JS's defaults, each drawn once: S = 1000 + [0, 500] ms, M = 5000 + [0, 1000] ms,
    /// L = 15000 + [0, 2000] ms, X = 10 min + [0, 120000] ms.
    pub fn random(rng: &mut impl Rng) -> Self {
        let j = DEFAULT_JITTER.as_millis() as f64;
        let ms = |base: u64, spread: f64, r: f64| {
            Duration::from_millis(base + (spread * j * r).round() as u64)
        };
        Self([
            ms(1_000, 1.0, rng.r#gen()),
            ms(5_000, 2.0, rng.r#gen()),
            ms(15_000, 4.0, rng.r#gen()),
            ms(600_000, 240.0, rng.r#gen()),
        ])
    }
}

/// One of the four timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backoff {
    S,
    M,
    L,
    X,
}

/// `lib/bulk-timer.js`: entries released in batches on a fixed interval.
#[derive(Debug)]
pub(crate) struct BulkTimer<K> {
    period: Duration,
    next_tick: Option<Instant>,
    /// Released on the next tick.
    next: Vec<K>,
    /// Moved to `next` on the next tick.
    pending: Vec<K>,
}

impl<K> BulkTimer<K> {
    /// A timer for `time`, ticking every `floor(0.66 · time)` (at least 1 ms).
    pub(crate) fn new(time: Duration) -> Self {
        let ms = (time.as_millis() as f64 * 0.66).floor() as u64;
        Self {
            period: Duration::from_millis(ms.max(1)),
            next_tick: None,
            next: Vec::new(),
            pending: Vec::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn period(&self) -> Duration {
        self.period
    }

    fn is_idle(&self) -> bool {
        self.next.is_empty() && self.pending.is_empty()
    }

    /// JS `add`: the interval starts with the first entry and then keeps its phase.
    pub(crate) fn add(&mut self, key: K, now: Instant) {
        match self.next_tick {
            None => self.next_tick = Some(now + self.period),
            Some(t) if t <= now && self.is_idle() => {
                // Ticks that passed while empty did nothing: keep the phase, skip them.
                let behind = now.duration_since(t).as_nanos() / self.period.as_nanos();
                let skip = u32::try_from(behind + 1).unwrap_or(u32::MAX);
                self.next_tick = Some(t + self.period.saturating_mul(skip));
            }
            Some(_) => {}
        }
        self.pending.push(key);
    }

    /// When the next tick matters (nothing to release: none).
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.is_idle() { None } else { self.next_tick }
    }

    /// Run every tick due at `now`; returns the released entries (JS `_ontick`).
    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut Vec<K>) {
        while let Some(t) = self.next_tick {
            if t > now || self.is_idle() {
                break;
            }
            out.append(&mut self.next);
            std::mem::swap(&mut self.next, &mut self.pending);
            self.next_tick = Some(t + self.period);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.next.clear();
        self.pending.clear();
    }
}

/// `lib/retry-timer.js`.
#[derive(Debug)]
pub(crate) struct RetryTimer<K> {
    timers: [BulkTimer<K>; 4],
}

impl<K> RetryTimer<K> {
    /// JS constructor: each timer gets `backoff + round(jitter · random)`.
    pub(crate) fn new(backoffs: Backoffs, jitter: Duration, rng: &mut impl Rng) -> Self {
        let mut timer = |b: Duration| {
            let extra = (jitter.as_millis() as f64 * rng.r#gen::<f64>()).round() as u64;
            BulkTimer::new(b + Duration::from_millis(extra))
        };
        let [s, m, l, x] = backoffs.0;
        Self {
            timers: [timer(s), timer(m), timer(l), timer(x)],
        }
    }

    /// JS `_selectRetryTimer`.
    pub(crate) fn select(peer: &Peer) -> Option<Backoff> {
        if peer.banned {
            return None;
        }
        if peer.attempts > 3 {
            return peer.explicit.then_some(Backoff::X);
        }
        match (peer.attempts, peer.proven) {
            (0, _) | (1, true) => Some(Backoff::S),
            (2, true) | (1, false) => Some(Backoff::M),
            _ => Some(Backoff::L),
        }
    }

    /// JS `add`: false when the peer is not retried.
    pub(crate) fn add(&mut self, peer: &Peer, key: K, now: Instant) -> bool {
        let Some(which) = Self::select(peer) else {
            return false;
        };
        self.timers[which as usize].add(key, now);
        true
    }

    #[cfg(test)]
    pub(crate) fn period(&self, which: Backoff) -> Duration {
        self.timers[which as usize].period()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().filter_map(BulkTimer::poll_timeout).min()
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Vec<K> {
        let mut out = Vec::new();
        for t in &mut self.timers {
            t.handle_timeout(now, &mut out);
        }
        out
    }

    pub(crate) fn clear(&mut self) {
        for t in &mut self.timers {
            t.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn bulk_timer_releases_on_the_second_tick() {
        let t0 = Instant::now();
        let mut t = BulkTimer::new(1000 * MS);
        assert_eq!(t.period(), 660 * MS);
        assert_eq!(t.poll_timeout(), None);
        t.add('a', t0);
        let mut out = Vec::new();
        // First tick (660 ms): 'a' moves to `next`.
        assert_eq!(t.poll_timeout(), Some(t0 + 660 * MS));
        t.handle_timeout(t0 + 659 * MS, &mut out);
        t.handle_timeout(t0 + 660 * MS, &mut out);
        assert!(out.is_empty());
        // Added just before the second tick: released one tick later than 'a'.
        t.add('b', t0 + 1300 * MS);
        t.handle_timeout(t0 + 1320 * MS, &mut out);
        assert_eq!(out, ['a']);
        t.handle_timeout(t0 + 1980 * MS, &mut out);
        assert_eq!(out, ['a', 'b']);
        assert_eq!(t.poll_timeout(), None);
        // Idle for a while: the phase is kept (ticks at multiples of 660 ms from t0).
        t.add('c', t0 + 5000 * MS);
        assert_eq!(t.poll_timeout(), Some(t0 + 5280 * MS));
        out.clear();
        t.handle_timeout(t0 + 5280 * MS, &mut out);
        assert!(out.is_empty());
        t.handle_timeout(t0 + 5940 * MS, &mut out);
        assert_eq!(out, ['c']);
    }

    #[test]
    fn overdue_ticks_catch_up_in_one_call() {
        let t0 = Instant::now();
        let mut t = BulkTimer::new(100 * MS);
        t.add(1, t0);
        let mut out = Vec::new();
        t.handle_timeout(t0 + 10_000 * MS, &mut out);
        assert_eq!(out, [1]);
    }

    fn peer(attempts: u32, proven: bool, explicit: bool) -> Peer {
        let mut p = Peer::new([0; 32], Vec::new());
        p.attempts = attempts;
        p.proven = proven;
        p.explicit = explicit;
        p
    }

    #[test]
    fn timer_choice_follows_retry_timer_js() {
        use Backoff::*;
        let cases = [
            // (attempts, proven, explicit) → timer
            ((0, false, false), Some(S)),
            ((0, true, false), Some(S)),
            ((1, true, false), Some(S)),
            ((2, true, false), Some(M)),
            ((3, true, false), Some(L)),
            ((1, false, false), Some(M)),
            ((2, false, false), Some(L)),
            ((3, false, false), Some(L)),
            ((4, true, false), None),
            ((4, false, true), Some(X)),
            ((9, true, true), Some(X)),
        ];
        for ((a, p, e), want) in cases {
            assert_eq!(
                RetryTimer::<()>::select(&peer(a, p, e)),
                want,
                "{a} {p} {e}"
            );
        }
        let mut banned = peer(0, false, true);
        banned.banned = true;
        assert_eq!(RetryTimer::<()>::select(&banned), None);
    }

    #[test]
    fn default_backoffs_are_in_js_ranges() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..100 {
            let b = Backoffs::random(&mut rng).0;
            assert!((1000..=1500).contains(&b[0].as_millis()), "{b:?}");
            assert!((5000..=6000).contains(&b[1].as_millis()), "{b:?}");
            assert!((15_000..=17_000).contains(&b[2].as_millis()), "{b:?}");
            assert!((600_000..=720_000).contains(&b[3].as_millis()), "{b:?}");
            let r = RetryTimer::<()>::new(Backoffs(b), DEFAULT_JITTER, &mut rng);
            // Each timer: (backoff + [0, 500] ms) · 0.66.
            for (i, which) in [Backoff::S, Backoff::M, Backoff::L, Backoff::X]
                .into_iter()
                .enumerate()
            {
                let lo = (b[i].as_millis() as f64 * 0.66).floor() as u128;
                let hi = ((b[i].as_millis() + 500) as f64 * 0.66).floor() as u128;
                assert!((lo..=hi).contains(&r.period(which).as_millis()));
            }
        }
    }

    #[test]
    fn retry_schedule_for_an_unproven_peer() {
        // Fixed backoffs, no jitter: S 1 s (tick 660 ms), M 5 s (3.3 s), L 15 s (9.9 s).
        let mut rng = StdRng::seed_from_u64(1);
        let b = Backoffs([1000 * MS, 5000 * MS, 15_000 * MS, 600_000 * MS]);
        let mut r = RetryTimer::new(b, Duration::ZERO, &mut rng);
        let t0 = Instant::now();
        let mut p = peer(1, false, false);
        assert!(r.add(&p, "p", t0));
        assert_eq!(r.poll_timeout(), Some(t0 + 3300 * MS));
        assert!(r.handle_timeout(t0 + 3300 * MS).is_empty());
        assert_eq!(r.handle_timeout(t0 + 6600 * MS), ["p"]);
        p.attempts = 4;
        assert!(!r.add(&p, "p", t0 + 7000 * MS), "dropped after 3 retries");
        assert_eq!(r.poll_timeout(), None);
    }
}
