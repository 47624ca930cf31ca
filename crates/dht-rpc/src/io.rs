//! Outgoing requests in flight: transaction ids, retransmissions, timeouts and dht-rpc's
//! congestion window (dht-rpc `lib/io.js` `IO#createRequest`, `Request#send`, `_sendNow`,
//! `oncycle`, `CongestionWindow`).
//!
//! - A request is encoded once; retransmissions resend the same bytes with the same tid.
//! - Each send arms a timeout (1000 ms unless the request says otherwise). When it fires the
//!   request is resent until it has been sent `retries + 1` times, then it fails.
//! - The congestion window admits at most 80 sends per 750 ms bucket and 160 over the last
//!   four buckets; sends beyond it wait in a FIFO released by [`Io::drain`] every 750 ms.
//! - Responses are matched by tid only, as in JS.
//!
//! Unlike JS, the number of requests (in flight or queued) is bounded: [`Io::alloc_tid`] refuses
//! beyond `max_inflight`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use crate::peer::NodeId;
use crate::table::TableNode;
use crate::{QueryId, RequestId, SocketKind, Transmit};

/// JS `MAX_WINDOW`.
pub(crate) const MAX_WINDOW: u32 = 80;
/// Per-send timeout when the request sets none.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);

/// Who waits for a request's outcome.
#[derive(Debug, Clone)]
pub(crate) enum Owner {
    /// `Node::request` / `Node::ping` by the application.
    User(RequestId),
    /// A query visiting a node.
    Visit(QueryId),
    /// A DOWN_HINT sent on behalf of a query (its outcome is ignored).
    DownHint(QueryId),
    /// A query's commit request.
    Commit(QueryId),
    /// A maintenance ping (`_check`).
    Check { node: NodeId },
    /// A ping to the oldest node of a full row (`_repingAndSwap`).
    Reping { old: NodeId, new: Box<TableNode> },
    /// The quick firewall PING_NAT during bootstrap.
    QuickNat,
    /// A PING_NAT of a firewall check.
    Firewall { generation: u64 },
    /// A PING proving that `ip` receives, so that answers held for it can go (`proof.rs`).
    Probe { ip: std::net::Ipv4Addr },
}

/// One request in flight or queued.
#[derive(Debug)]
pub(crate) struct Inflight {
    pub(crate) to: SocketAddrV4,
    /// Set when the destination came from the routing table or a query: a final timeout then
    /// removes it from the table (`_ontimeout`).
    pub(crate) to_id: Option<NodeId>,
    pub(crate) socket: SocketKind,
    pub(crate) buffer: Vec<u8>,
    pub(crate) sent: u32,
    pub(crate) retries: u32,
    pub(crate) timeout: Duration,
    deadline: Option<Instant>,
    queued: bool,
    /// A query's request that already hit one timeout (`req.oncycle = noop` in JS).
    pub(crate) slow: bool,
    pub(crate) started: Instant,
    pub(crate) owner: Owner,
}

/// What a new request needs.
#[derive(Debug)]
pub(crate) struct NewRequest {
    pub(crate) to: SocketAddrV4,
    pub(crate) to_id: Option<NodeId>,
    pub(crate) socket: SocketKind,
    pub(crate) retries: u32,
    pub(crate) timeout: Duration,
    pub(crate) owner: Owner,
}

/// dht-rpc's `CongestionWindow`.
#[derive(Debug, Clone, Default)]
struct CongestionWindow {
    i: usize,
    total: u32,
    window: [u32; 4],
    max: u32,
}

impl CongestionWindow {
    fn is_full(&self) -> bool {
        self.total >= 2 * self.max || self.window[self.i] >= self.max
    }

    fn recv(&mut self) {
        if self.window[self.i] > 0 {
            self.window[self.i] -= 1;
            self.total -= 1;
        }
    }

    fn send(&mut self) {
        self.total += 1;
        self.window[self.i] += 1;
    }

    fn drain(&mut self) {
        self.i = (self.i + 1) & 3;
        self.total -= self.window[self.i];
        self.window[self.i] = 0;
    }
}

/// The requests layer.
#[derive(Debug)]
pub(crate) struct Io {
    next_tid: u16,
    inflight: HashMap<u16, Inflight>,
    timers: BTreeSet<(Instant, u16)>,
    pending: VecDeque<u16>,
    congestion: CongestionWindow,
    max_inflight: usize,
}

impl Io {
    pub(crate) fn new(first_tid: u16, max_window: u32, max_inflight: usize) -> Self {
        Self {
            next_tid: first_tid,
            inflight: HashMap::new(),
            timers: BTreeSet::new(),
            pending: VecDeque::new(),
            congestion: CongestionWindow {
                max: max_window.max(1),
                ..Default::default()
            },
            max_inflight,
        }
    }

    /// Requests in flight or queued (`io.inflight.length`).
    pub(crate) fn len(&self) -> usize {
        self.inflight.len()
    }

    /// Whether another request fits.
    pub(crate) fn has_room(&self) -> bool {
        self.inflight.len() < self.max_inflight
    }

    /// Reserve the next free tid (`_tid++`, wrapping at 65536; tids still in flight are
    /// skipped, which JS does not do).
    /// A free tid, searching from `start` (the node passes a random one: our tids are not a
    /// counter an attacker could follow to forge an answer; see `crate::proof`).
    pub(crate) fn alloc_tid_from(&mut self, start: u16) -> Option<u16> {
        self.next_tid = start;
        self.alloc_tid()
    }

    pub(crate) fn alloc_tid(&mut self) -> Option<u16> {
        if !self.has_room() {
            return None;
        }
        loop {
            let tid = self.next_tid;
            self.next_tid = self.next_tid.wrapping_add(1);
            if !self.inflight.contains_key(&tid) {
                return Some(tid);
            }
        }
    }

    /// Register a request whose datagram (carrying `tid`) is `buffer`. Nothing is sent yet.
    pub(crate) fn insert(&mut self, tid: u16, buffer: Vec<u8>, req: NewRequest, now: Instant) {
        self.inflight.insert(
            tid,
            Inflight {
                to: req.to,
                to_id: req.to_id,
                socket: req.socket,
                buffer,
                sent: 0,
                retries: req.retries,
                timeout: req.timeout,
                deadline: None,
                queued: false,
                slow: false,
                started: now,
                owner: req.owner,
            },
        );
    }

    pub(crate) fn get(&self, tid: u16) -> Option<&Inflight> {
        self.inflight.get(&tid)
    }

    pub(crate) fn get_mut(&mut self, tid: u16) -> Option<&mut Inflight> {
        self.inflight.get_mut(&tid)
    }

    /// Send now, or queue behind the congestion window (`Request#send`).
    pub(crate) fn send(&mut self, tid: u16, now: Instant, force: bool, out: &mut Outbox) {
        let full = self.congestion.is_full();
        let Some(req) = self.inflight.get_mut(&tid) else {
            return;
        };
        if !force && full {
            if !req.queued {
                req.queued = true;
                self.pending.push_back(tid);
            }
            return;
        }
        self.send_now(tid, now, out);
    }

    /// `_sendNow`: count the send, transmit, arm the timeout.
    fn send_now(&mut self, tid: u16, now: Instant, out: &mut Outbox) {
        let Some(req) = self.inflight.get_mut(&tid) else {
            return;
        };
        req.queued = false;
        req.sent += 1;
        self.congestion.send();
        out.push(Transmit {
            socket: req.socket,
            destination: req.to,
            contents: req.buffer.clone(),
        });
        if let Some(old) = req.deadline.take() {
            self.timers.remove(&(old, tid));
        }
        let deadline = now + req.timeout;
        req.deadline = Some(deadline);
        self.timers.insert((deadline, tid));
    }

    /// Remove a request (answered, failed or cancelled); frees its congestion slot.
    pub(crate) fn remove(&mut self, tid: u16) -> Option<Inflight> {
        let req = self.inflight.remove(&tid)?;
        if let Some(d) = req.deadline {
            self.timers.remove(&(d, tid));
        }
        // Queued entries are skipped lazily in `drain`.
        self.congestion.recv();
        Some(req)
    }

    /// The earliest send timeout.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Pop one request whose send timed out by `now`; its deadline is cleared.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<u16> {
        let &(t, tid) = self.timers.first()?;
        if t > now {
            return None;
        }
        self.timers.remove(&(t, tid));
        if let Some(req) = self.inflight.get_mut(&tid) {
            req.deadline = None;
        }
        Some(tid)
    }

    /// The 750 ms drain: rotate the window, release queued sends while there is room.
    pub(crate) fn drain(&mut self, now: Instant, out: &mut Outbox) {
        self.congestion.drain();
        while !self.congestion.is_full() {
            let Some(tid) = self.pending.pop_front() else {
                break;
            };
            if self.inflight.get(&tid).is_some_and(|r| r.queued) {
                self.send_now(tid, now, out);
            }
        }
        // Stale entries (requests removed while queued) never outnumber live ones by much.
        if self.pending.len() > 2 * self.max_inflight {
            let inflight = &self.inflight;
            self.pending
                .retain(|t| inflight.get(t).is_some_and(|r| r.queued));
        }
    }

    /// Tids of requests owned as `pred` says.
    pub(crate) fn tids_where(&self, mut pred: impl FnMut(&Owner) -> bool) -> Vec<u16> {
        self.inflight
            .iter()
            .filter(|(_, r)| pred(&r.owner))
            .map(|(t, _)| *t)
            .collect()
    }
}

/// The bounded queue of datagrams to send.
#[derive(Debug)]
pub(crate) struct Outbox {
    queue: VecDeque<Transmit>,
    cap: usize,
    pub(crate) dropped: u64,
}

impl Outbox {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            cap,
            dropped: 0,
        }
    }

    /// Queue a datagram; beyond the cap it is dropped, as a full socket buffer would.
    pub(crate) fn push(&mut self, t: Transmit) {
        if self.queue.len() >= self.cap {
            self.dropped += 1;
        } else {
            self.queue.push_back(t);
        }
    }

    pub(crate) fn pop(&mut self) -> Option<Transmit> {
        self.queue.pop_front()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(now: Instant) -> (NewRequest, Instant) {
        (
            NewRequest {
                to: "1.2.3.4:5".parse().unwrap(),
                to_id: None,
                socket: SocketKind::Client,
                retries: 3,
                timeout: DEFAULT_TIMEOUT,
                owner: Owner::QuickNat,
            },
            now,
        )
    }

    #[test]
    fn congestion_window_matches_js() {
        let mut w = CongestionWindow {
            max: 80,
            ..Default::default()
        };
        for _ in 0..79 {
            w.send();
        }
        assert!(!w.is_full());
        w.send();
        assert!(w.is_full());
        w.recv();
        assert!(!w.is_full());
        w.send();
        w.drain();
        // 80 in the old bucket still count towards the 160 total
        for _ in 0..79 {
            w.send();
        }
        assert!(!w.is_full());
        w.send();
        assert!(w.is_full());
        for _ in 0..3 {
            w.drain();
        }
        // the first bucket was cleared on the fourth drain
        assert!(!w.is_full());
    }

    #[test]
    fn queued_sends_are_released_by_drain() {
        let now = Instant::now();
        let mut io = Io::new(0, 2, 10);
        let mut out = Outbox::new(100);
        for _ in 0..5 {
            let tid = io.alloc_tid().unwrap();
            let (r, now) = req(now);
            io.insert(tid, vec![tid as u8], r, now);
            io.send(tid, now, false, &mut out);
        }
        assert_eq!(out.len(), 2);
        // A queued request removed before its turn is skipped.
        io.remove(2);
        io.drain(now, &mut out);
        let mut sent = Vec::new();
        while let Some(t) = out.pop() {
            sent.push(t.contents[0]);
        }
        // The drain moved to an empty bucket: two more fit.
        assert_eq!(sent, [0, 1, 3, 4]);
        assert_eq!(io.next_timeout(), Some(now + DEFAULT_TIMEOUT));
    }

    #[test]
    fn tids_wrap_and_skip_live_ones() {
        let now = Instant::now();
        let mut io = Io::new(u16::MAX, 80, 10);
        let mut out = Outbox::new(10);
        let a = io.alloc_tid().unwrap();
        assert_eq!(a, u16::MAX);
        let (r, _) = req(now);
        io.insert(a, vec![], r, now);
        io.send(a, now, true, &mut out);
        assert_eq!(io.alloc_tid(), Some(0));
        io.next_tid = u16::MAX;
        assert_eq!(io.alloc_tid(), Some(0), "live tid skipped");
        assert_eq!(io.pop_expired(now), None);
        assert_eq!(io.pop_expired(now + DEFAULT_TIMEOUT), Some(a));
        assert_eq!(io.next_timeout(), None);
    }

    #[test]
    fn inflight_is_bounded() {
        let now = Instant::now();
        let mut io = Io::new(0, 80, 3);
        for _ in 0..3 {
            let tid = io.alloc_tid().unwrap();
            io.insert(tid, vec![], req(now).0, now);
        }
        assert_eq!(io.alloc_tid(), None);
    }
}
