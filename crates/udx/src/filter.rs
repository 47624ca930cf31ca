//! Windowed min/max filter (Kathleen Nichols' algorithm, as in Linux `lib/minmax.c` and libudx
//! `win_filter.c`): keeps the best, second-best and third-best samples spread across the
//! window, so it answers "best value over the last `win` time units" in O(1) space.

#[derive(Clone, Copy, Debug)]
struct Sample {
    t: u64,
    v: f64,
}

/// Which end the filter tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Min,
    Max,
}

/// A windowed min or max over `(time, value)` samples; time is any monotonic counter
/// (microseconds for RTT, round-trip counts for bandwidth).
#[derive(Clone, Debug)]
pub(crate) struct WinFilter {
    kind: Kind,
    s: [Sample; 3],
}

impl WinFilter {
    pub(crate) fn new(kind: Kind, t: u64, v: f64) -> Self {
        Self {
            kind,
            s: [Sample { t, v }; 3],
        }
    }

    /// The current best value.
    pub(crate) fn get(&self) -> f64 {
        self.s[0].v
    }

    pub(crate) fn reset(&mut self, t: u64, v: f64) {
        self.s = [Sample { t, v }; 3];
    }

    fn better(&self, a: f64, b: f64) -> bool {
        match self.kind {
            Kind::Min => a <= b,
            Kind::Max => a >= b,
        }
    }

    /// Add a sample taken at `t` and return the new best over `win`.
    pub(crate) fn apply(&mut self, win: u64, t: u64, v: f64) -> f64 {
        let val = Sample { t, v };
        if self.better(v, self.s[0].v) || t.saturating_sub(self.s[2].t) > win {
            self.reset(t, v);
            return v;
        }
        if self.better(v, self.s[1].v) {
            self.s[1] = val;
            self.s[2] = val;
        } else if self.better(v, self.s[2].v) {
            self.s[2] = val;
        }
        // Sub-window bookkeeping: age the samples so the three stay spread over the window.
        let dt = t.saturating_sub(self.s[0].t);
        if dt > win {
            self.s[0] = self.s[1];
            self.s[1] = self.s[2];
            self.s[2] = val;
            if t.saturating_sub(self.s[0].t) > win {
                self.s[0] = self.s[1];
                self.s[1] = self.s[2];
                self.s[2] = val;
            }
        } else if self.s[1].t == self.s[0].t && dt > win / 4 {
            self.s[1] = val;
            self.s[2] = val;
        } else if self.s[2].t == self.s[1].t && dt > win / 2 {
            self.s[2] = val;
        }
        self.s[0].v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_expires_after_window() {
        let mut f = WinFilter::new(Kind::Max, 0, 0.0);
        assert_eq!(f.apply(10, 1, 5.0), 5.0);
        assert_eq!(f.apply(10, 2, 3.0), 5.0);
        assert_eq!(f.apply(10, 8, 4.0), 5.0);
        // The 5.0 sample is older than the window now; the next best survives.
        assert_eq!(f.apply(10, 12, 1.0), 4.0);
        assert_eq!(f.apply(10, 30, 2.0), 2.0);
    }

    #[test]
    fn min_tracks_lowest() {
        let mut f = WinFilter::new(Kind::Min, 0, f64::INFINITY);
        assert_eq!(f.apply(100, 1, 50.0), 50.0);
        assert_eq!(f.apply(100, 2, 70.0), 50.0);
        assert_eq!(f.apply(100, 3, 20.0), 20.0);
        assert_eq!(f.apply(100, 200, 90.0), 90.0);
    }
}
