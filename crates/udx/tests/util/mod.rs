//! A deterministic in-memory network for two endpoints (after quinn's `tests/util.rs` `Pair`):
//! simulated time, one-way latency with jitter (which reorders), random loss, duplication, a
//! path MTU, and an optional bottleneck rate with a drop-tail queue.
#![allow(dead_code, unreachable_pub)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use peerhost_udx::{Endpoint, Event, Received, StreamConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One direction of the simulated path.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    pub latency: Duration,
    pub jitter: Duration,
    pub loss: f64,
    pub duplicate: f64,
    /// Datagrams longer than this (plus 28 bytes of IPv4/UDP) are dropped.
    pub mtu: usize,
    /// Bottleneck in bytes per second (0 = unlimited) and its queue in bytes.
    pub rate: u64,
    pub queue: usize,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            mtu: 1500,
            rate: 0,
            queue: 0,
        }
    }
}

#[derive(Debug)]
struct InFlight {
    at: Instant,
    order: u64,
    to_b: bool,
    from: SocketAddr,
    bytes: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.order) == (o.at, o.order)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(o.at, o.order))
    }
}

/// The application side of one endpoint: writes `to_send`, ends, reads everything.
#[derive(Debug, Default)]
pub struct App {
    pub to_send: Vec<u8>,
    pub written: usize,
    pub end_called: bool,
    pub auto_end: bool,
    pub received: Vec<u8>,
    pub eof: bool,
    pub closed: Option<Option<peerhost_udx::StreamError>>,
    pub messages: Vec<Vec<u8>>,
    pub events: Vec<Event>,
    pub reading: bool,
    pub not_udx: Vec<Vec<u8>>,
}

pub struct Side {
    pub ep: Endpoint,
    pub addr: SocketAddr,
    pub id: u32,
    pub app: App,
    pub link_free: Instant,
    pub queued: usize,
}

pub struct Pair {
    pub now: Instant,
    pub start: Instant,
    pub a: Side,
    pub b: Side,
    /// a -> b and b -> a.
    pub ab: Link,
    pub ba: Link,
    rng: StdRng,
    net: BinaryHeap<Reverse<InFlight>>,
    order: u64,
    pub datagrams: u64,
    pub dropped: u64,
    /// Every datagram a sent, when recording.
    pub record: Option<Vec<Vec<u8>>>,
}

impl Pair {
    /// Two endpoints with one stream each (a: id 1, b: id 2), connected to each other.
    pub fn new(seed: u64, ab: Link, ba: Link, ca: StreamConfig, cb: StreamConfig) -> Self {
        let now = Instant::now();
        let a_addr: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let b_addr: SocketAddr = "10.0.0.2:2000".parse().unwrap();
        let mut a = Endpoint::new();
        let mut b = Endpoint::new();
        a.create_stream(1, ca, now).unwrap();
        b.create_stream(2, cb, now).unwrap();
        a.connect(1, 2, b_addr, now).unwrap();
        b.connect(2, 1, a_addr, now).unwrap();
        let side = |ep, addr, id| Side {
            ep,
            addr,
            id,
            app: App {
                auto_end: true,
                reading: true,
                ..App::default()
            },
            link_free: now,
            queued: 0,
        };
        Self {
            now,
            start: now,
            a: side(a, a_addr, 1),
            b: side(b, b_addr, 2),
            ab,
            ba,
            rng: StdRng::seed_from_u64(seed),
            net: BinaryHeap::new(),
            order: 0,
            datagrams: 0,
            dropped: 0,
            record: None,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn pump_app(side: &mut Side, now: Instant) {
        let id = side.id;
        while let Some(ev) = side.ep.poll_event() {
            match &ev {
                Event::Message { data, .. } => side.app.messages.push(data.clone()),
                Event::Closed { error, .. } => side.app.closed = Some(*error),
                _ => {}
            }
            side.app.events.push(ev);
        }
        let app = &mut side.app;
        while app.written < app.to_send.len() {
            match side.ep.write(id, &app.to_send[app.written..], now) {
                Ok(0) | Err(_) => break,
                Ok(n) => app.written += n,
            }
        }
        if app.auto_end
            && !app.end_called
            && app.written == app.to_send.len()
            && side.ep.end(id, now).is_ok()
        {
            app.end_called = true;
        }
        if app.reading {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match side.ep.read(id, &mut buf) {
                    Ok(Some(0)) => {
                        app.eof = true;
                        break;
                    }
                    Ok(Some(n)) => app.received.extend_from_slice(&buf[..n]),
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }

    fn send_all(&mut self, from_a: bool) {
        let now = self.now;
        loop {
            let (side, link) = if from_a {
                (&mut self.a, self.ab)
            } else {
                (&mut self.b, self.ba)
            };
            let Some(t) = side.ep.poll_transmit(now) else {
                break;
            };
            assert!(t.bytes.len() <= peerhost_udx::packet::MAX_DATAGRAM);
            self.datagrams += 1;
            let from = side.addr;
            if from_a {
                if let Some(r) = self.record.as_mut() {
                    r.push(t.bytes.clone());
                }
            }
            if t.bytes.len() + 28 > link.mtu {
                self.dropped += 1;
                continue;
            }
            // Bottleneck: serialization delay and a drop-tail queue.
            let mut depart = now;
            if link.rate > 0 {
                let side = if from_a { &mut self.a } else { &mut self.b };
                let backlog = side.link_free.saturating_duration_since(now);
                let queued = (backlog.as_secs_f64() * link.rate as f64) as usize;
                if queued + t.bytes.len() > link.queue {
                    self.dropped += 1;
                    continue;
                }
                let tx = Duration::from_secs_f64(t.bytes.len() as f64 / link.rate as f64);
                side.link_free = side.link_free.max(now) + tx;
                depart = side.link_free;
            }
            if self.rng.gen_bool(link.loss) {
                self.dropped += 1;
                continue;
            }
            let copies = if self.rng.gen_bool(link.duplicate) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let jitter = if link.jitter.is_zero() {
                    Duration::ZERO
                } else {
                    link.jitter.mul_f64(self.rng.gen_range(0.0..1.0))
                };
                self.order += 1;
                self.net.push(Reverse(InFlight {
                    at: depart + link.latency + jitter,
                    order: self.order,
                    to_b: from_a,
                    from,
                    bytes: t.bytes.clone(),
                }));
            }
        }
    }

    /// Run the apps, flush both endpoints, and advance time to the next event. Returns false
    /// when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        Self::pump_app(&mut self.a, self.now);
        Self::pump_app(&mut self.b, self.now);
        self.send_all(true);
        self.send_all(false);
        Self::pump_app(&mut self.a, self.now);
        Self::pump_app(&mut self.b, self.now);
        self.send_all(true);
        self.send_all(false);

        let next_net = self.net.peek().map(|Reverse(d)| d.at);
        let next = [next_net, self.a.ep.poll_timeout(), self.b.ep.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else {
            return false;
        };
        self.now = self.now.max(next);
        while let Some(Reverse(d)) = self.net.peek() {
            if d.at > self.now {
                break;
            }
            let Reverse(d) = self.net.pop().unwrap();
            let side = if d.to_b { &mut self.b } else { &mut self.a };
            if side.ep.handle_datagram(self.now, d.from, &d.bytes) == Received::NotUdx {
                side.app.not_udx.push(d.bytes);
            }
        }
        self.a.ep.handle_timeout(self.now);
        self.b.ep.handle_timeout(self.now);
        true
    }

    /// Step until `done` holds or `limit` of simulated time passes; returns whether `done`.
    pub fn drive_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let deadline = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if self.now > deadline || !self.step() {
                return done(self);
            }
        }
    }

    /// Inject a raw datagram to a (`to_a`) or b.
    pub fn inject(&mut self, to_a: bool, from: SocketAddr, bytes: Vec<u8>) {
        self.order += 1;
        self.net.push(Reverse(InFlight {
            at: self.now,
            order: self.order,
            to_b: !to_a,
            from,
            bytes,
        }));
    }
}

/// Deterministic pseudo-random test data.
pub fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    v
}
