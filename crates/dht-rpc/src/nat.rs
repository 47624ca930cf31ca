//! Our public address from what others report (nat-sampler 1.0.1).
//!
//! Every response (and every request from a persistent node) carries `to`: our address as the
//! other side saw it. The sampler keeps the last 16 samples as pairs (host:port, host:0) in a
//! ring of 32 and reports:
//! - `host:port` when the top host:port sample has at least `threshold` hits,
//! - else `host:0` (a NAT that randomises ports) when the top host has,
//! - else nothing,
//!
//! where `threshold = size - (0 | 1 | 2 | 3)` for `size < 4 | < 8 | < 12 | ≥ 12`.
//!
//! This is a port of the JS, quirks included: a new sample only merges with the same
//! host:port among the **last four** samples (`_bump`), and a sample object that falls out of
//! the ring keeps its (decremented) hit count while it is still the running top.

use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy)]
struct Sample {
    host: Ipv4Addr,
    port: u16,
    hits: i32,
}

/// The NAT sampler.
#[derive(Debug, Clone, Default)]
pub struct NatSampler {
    host: Option<Ipv4Addr>,
    port: u16,
    size: usize,
    threshold: usize,
    top: usize,
    a: Option<usize>,
    b: Option<usize>,
    /// The ring: indices into `objs` (JS keeps object references; an object may sit in the
    /// ring more than once).
    ring: Vec<usize>,
    objs: Vec<Sample>,
}

const RING: usize = 32;

impl NatSampler {
    /// An empty sampler.
    pub fn new() -> Self {
        Self::default()
    }

    /// The reported host, if any.
    pub fn host(&self) -> Option<Ipv4Addr> {
        self.host
    }

    /// The reported port: 0 when unknown or randomised.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Samples taken (at most 16 are remembered).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Add one sample; returns the hits of its host:port entry.
    pub fn add(&mut self, host: Ipv4Addr, port: u16) -> i32 {
        let a = self.bump(host, port, 2, None);
        let b = self.bump(host, 0, 1, Some(a));

        if self.ring.len() < RING {
            self.size += 1;
            self.threshold = self.size
                - if self.size < 4 {
                    0
                } else if self.size < 8 {
                    1
                } else if self.size < 12 {
                    2
                } else {
                    3
                };
            self.ring.push(a);
            self.ring.push(b);
            self.top += 2;
        } else {
            if self.top == RING {
                self.top = 0;
            }
            let oa = std::mem::replace(&mut self.ring[self.top], a);
            self.top += 1;
            self.objs[oa].hits -= 1;
            let ob = std::mem::replace(&mut self.ring[self.top], b);
            self.top += 1;
            self.objs[ob].hits -= 1;
        }

        if self.a.is_none_or(|i| self.objs[i].hits < self.objs[a].hits) {
            self.a = Some(a);
        }
        if self.b.is_none_or(|i| self.objs[i].hits < self.objs[b].hits) {
            self.b = Some(b);
        }

        let threshold = i32::try_from(self.threshold).unwrap_or(i32::MAX);
        let (ta, tb) = (
            self.objs[self.a.unwrap_or(a)],
            self.objs[self.b.unwrap_or(b)],
        );
        if ta.hits >= threshold {
            self.host = Some(ta.host);
            self.port = ta.port;
        } else if tb.hits >= threshold {
            self.host = Some(tb.host);
            self.port = 0;
        } else {
            self.host = None;
            self.port = 0;
        }
        self.objs[a].hits
    }

    /// > `const j = (this._top - inc - (2 * i)) & 31` … only the last four pairs are searched.
    fn bump(&mut self, host: Ipv4Addr, port: u16, inc: usize, pending: Option<usize>) -> usize {
        for i in 0..4 {
            let j = (self.top + 2 * RING - inc - 2 * i) & (RING - 1);
            if j >= self.ring.len() {
                break;
            }
            let s = self.ring[j];
            if self.objs[s].port == port && self.objs[s].host == host {
                self.objs[s].hits += 1;
                return s;
            }
        }
        self.alloc(
            Sample {
                host,
                port,
                hits: 1,
            },
            pending,
        )
    }

    /// Store a new sample object, reusing a slot nothing refers to any more.
    fn alloc(&mut self, s: Sample, pending: Option<usize>) -> usize {
        let free = (0..self.objs.len()).find(|&i| {
            Some(i) != pending && Some(i) != self.a && Some(i) != self.b && !self.ring.contains(&i)
        });
        match free {
            Some(i) => {
                self.objs[i] = s;
                i
            }
            None => {
                self.objs.push(s);
                self.objs.len() - 1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn consistent_samples_report_host_and_port() {
        let mut n = NatSampler::new();
        assert_eq!(n.host(), None);
        n.add(ip("1.2.3.4"), 1000);
        assert_eq!((n.host(), n.port()), (Some(ip("1.2.3.4")), 1000));
        n.add(ip("1.2.3.4"), 1000);
        n.add(ip("1.2.3.4"), 1000);
        assert_eq!((n.host(), n.port()), (Some(ip("1.2.3.4")), 1000));
    }

    #[test]
    fn random_ports_report_host_only() {
        let mut n = NatSampler::new();
        for port in 1000..1004 {
            n.add(ip("1.2.3.4"), port);
        }
        assert_eq!((n.host(), n.port()), (Some(ip("1.2.3.4")), 0));
    }

    #[test]
    fn disagreeing_hosts_report_nothing() {
        let mut n = NatSampler::new();
        n.add(ip("1.1.1.1"), 1);
        n.add(ip("2.2.2.2"), 2);
        assert_eq!(n.host(), None);
        // size 3, threshold 3: a third different sample keeps it undecided
        n.add(ip("3.3.3.3"), 3);
        assert_eq!(n.host(), None);
    }

    #[test]
    fn matches_js_on_a_random_stream() {
        // `nat` in `node interop-tests/dht-rpc/vectors.js` (nat-sampler 1.0.1).
        const JS: &str = "0:1000 0:1000 -:0 0:0 0:0 -:0 -:0 0:0 0:0 -:0 -:0 -:0 -:0 -:0 -:0 -:0 \
            -:0 -:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 \
            0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 -:0 -:0 \
            -:0 0:0 0:1000 0:1000 0:0 0:0 0:0 0:0 -:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 0:0 -:0 \
            -:0 -:0 -:0 -:0 -:0 -:0";
        let mut n = NatSampler::new();
        let mut x: u64 = 12345;
        let mut got = Vec::new();
        for _ in 0..80 {
            x = x * 48271 % 2_147_483_647;
            let h = if x % 10 < 8 { 0 } else { (x % 10) as u8 - 7 };
            let p = if (x >> 8) % 10 < 7 { 1000 } else { 1001 };
            n.add(Ipv4Addr::new(1, 1, 1, h), p);
            got.push(match n.host() {
                Some(h) => format!("{}:{}", h.octets()[3], n.port()),
                None => format!("-:{}", n.port()),
            });
        }
        assert_eq!(
            got.join(" "),
            JS.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }

    #[test]
    fn ring_wraps_and_memory_stays_bounded() {
        let mut n = NatSampler::new();
        for i in 0..10_000u32 {
            let host = Ipv4Addr::from(i % 7);
            n.add(host, (i % 3) as u16);
            assert!(n.objs.len() <= RING + 3);
            assert!(n.ring.len() <= RING);
        }
        assert_eq!(n.size(), 16);
        for _ in 0..40 {
            n.add(ip("9.9.9.9"), 99);
        }
        assert_eq!((n.host(), n.port()), (Some(ip("9.9.9.9")), 99));
    }
}
