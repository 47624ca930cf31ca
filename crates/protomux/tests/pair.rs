//! Two muxes back to back, driven by random operations: whatever both sides do, in whatever
//! order the frames are delivered, neither side sees a protocol error, every message arrives on
//! the channel it was sent on, in order, with none missing unless a side closed, and both sides
//! agree on which channels are open once the wire is quiet.

use std::collections::{HashMap, VecDeque};

use peerhost_protomux::{ChannelHandle, Event, Mux, OpenOptions};
use proptest::prelude::*;

/// Channel names: three paired on both sides, one that nobody pairs (always rejected unless
/// both sides open it).
const NAMES: &[(&str, Option<&[u8]>)] = &[
    ("p", None),
    ("p", Some(b"1")),
    ("q", Some(b"2")),
    ("z", None),
];

#[derive(Debug, Clone)]
enum Op {
    Open(usize, usize),
    Send(usize, usize, u64, usize),
    Close(usize, usize),
    Cork(usize),
    Uncork(usize),
    Deliver(usize, usize),
    Answer(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    let side = 0usize..2;
    prop_oneof![
        3 => (side.clone(), 0..NAMES.len()).prop_map(|(s, n)| Op::Open(s, n)),
        6 => (side.clone(), 0usize..8, 0u64..300, 0usize..600).prop_map(|(s, i, t, l)| Op::Send(s, i, t, l)),
        1 => (side.clone(), 0usize..8).prop_map(|(s, i)| Op::Close(s, i)),
        1 => side.clone().prop_map(Op::Cork),
        1 => side.clone().prop_map(Op::Uncork),
        6 => (side.clone(), 1usize..6).prop_map(|(s, n)| Op::Deliver(s, n)),
        2 => (side, any::<bool>()).prop_map(|(s, a)| Op::Answer(s, a)),
    ]
}

/// One side: the mux, the frames it sent that are still on the wire, and what it has seen.
struct Side {
    n: u8,
    mux: Mux,
    wire: VecDeque<Vec<u8>>,
    corked: usize,
    next_tag: u64,
    /// Our channels that are open, with their tag (the handshake we sent).
    open: Vec<(ChannelHandle, u64)>,
    /// Our channel → the remote's tag, once opened.
    partner: HashMap<ChannelHandle, u64>,
    /// Messages sent per own tag; messages received per own channel.
    sent: HashMap<u64, u64>,
    received: HashMap<ChannelHandle, u64>,
    /// Remote opens not answered yet (name index).
    asked: Vec<usize>,
}

impl Side {
    fn new(n: u8) -> Self {
        let mut mux = Mux::default();
        for (protocol, id) in &NAMES[..3] {
            mux.pair(protocol, *id);
        }
        Self {
            n,
            mux,
            wire: VecDeque::new(),
            corked: 0,
            next_tag: 0,
            open: Vec::new(),
            partner: HashMap::new(),
            sent: HashMap::new(),
            received: HashMap::new(),
            asked: Vec::new(),
        }
    }

    fn open(&mut self, name: usize) {
        let (protocol, id) = NAMES[name];
        let tag = self.next_tag;
        self.next_tag += 1;
        let mut handshake = vec![self.n];
        handshake.extend_from_slice(&tag.to_le_bytes());
        let ch = self
            .mux
            .open_with(
                OpenOptions::new(protocol)
                    .id(id)
                    .handshake(&handshake)
                    .unique(false),
            )
            .unwrap();
        self.open.push((ch, tag));
        self.sent.insert(tag, 0);
    }

    fn send(&mut self, i: usize, ty: u64, len: usize) {
        if self.open.is_empty() {
            return;
        }
        let (ch, tag) = self.open[i % self.open.len()];
        let seq = self.sent[&tag];
        let mut payload = tag.to_le_bytes().to_vec();
        payload.extend_from_slice(&seq.to_le_bytes());
        payload.resize(16 + len, self.n);
        self.mux.send(ch, ty, &payload).unwrap();
        *self.sent.get_mut(&tag).unwrap() += 1;
    }

    fn close(&mut self, i: usize) {
        if self.open.is_empty() {
            return;
        }
        let (ch, _) = self.open.remove(i % self.open.len());
        assert!(self.mux.close(ch));
    }

    fn answer(&mut self, accept: bool) {
        let Some(name) = self.asked.pop() else { return };
        if accept {
            self.open(name);
        } else {
            let (protocol, id) = NAMES[name];
            self.mux.reject(protocol, id);
            self.asked.retain(|n| *n != name);
        }
    }

    /// Collect frames and check events.
    fn settle(&mut self) {
        while let Some(f) = self.mux.poll_transmit() {
            self.wire.push_back(f);
        }
        while let Some(e) = self.mux.poll_event() {
            match e {
                Event::ChannelOpened {
                    channel, handshake, ..
                } => {
                    assert!(self.open.iter().any(|(c, _)| *c == channel));
                    assert_eq!(handshake.len(), 9);
                    assert_ne!(handshake[0], self.n, "paired with ourselves");
                    let tag = u64::from_le_bytes(handshake[1..].try_into().unwrap());
                    assert!(self.partner.insert(channel, tag).is_none(), "opened twice");
                }
                Event::Message {
                    channel, payload, ..
                } => {
                    let partner = self.partner[&channel];
                    let tag = u64::from_le_bytes(payload[..8].try_into().unwrap());
                    let seq = u64::from_le_bytes(payload[8..16].try_into().unwrap());
                    assert_eq!(tag, partner, "message from another channel");
                    let next = self.received.entry(channel).or_default();
                    assert_eq!(seq, *next, "message lost or out of order");
                    *next += 1;
                    assert!(payload[16..].iter().all(|b| *b != self.n));
                }
                Event::ChannelClosed { channel, remote } => {
                    let before = self.open.len();
                    self.open.retain(|(c, _)| *c != channel);
                    assert_eq!(self.open.len() + usize::from(remote), before);
                }
                Event::Rejected { channel, .. } => {
                    assert!(!self.partner.contains_key(&channel));
                    self.open.retain(|(c, _)| *c != channel);
                }
                Event::RemoteOpen { protocol, id, .. } => {
                    let name = NAMES
                        .iter()
                        .position(|(p, i)| *p == protocol && i.map(<[u8]>::to_vec) == id)
                        .unwrap();
                    assert!(name < 3, "an unpaired name was offered");
                    self.asked.push(name);
                }
                Event::RemoteOpenCancelled { protocol, id } => {
                    let name = NAMES
                        .iter()
                        .position(|(p, i)| *p == protocol && i.map(<[u8]>::to_vec) == id)
                        .unwrap();
                    if let Some(at) = self.asked.iter().position(|n| *n == name) {
                        self.asked.remove(at);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

fn deliver(sides: &mut [Side; 2], from: usize, n: usize) {
    let to = 1 - from;
    for _ in 0..n {
        let Some(f) = sides[from].wire.pop_front() else {
            return;
        };
        sides[to]
            .mux
            .handle_input(&f)
            .expect("honest peers never break the protocol");
        sides[to].settle();
    }
}

fn quiesce(sides: &mut [Side; 2], accept: bool) {
    for s in sides.iter_mut() {
        while s.corked > 0 {
            s.corked -= 1;
            s.mux.uncork();
        }
        s.settle();
    }
    loop {
        deliver(sides, 0, usize::MAX);
        deliver(sides, 1, usize::MAX);
        let mut more = false;
        for s in sides.iter_mut() {
            while !s.asked.is_empty() {
                s.answer(accept);
                more = true;
            }
            s.settle();
        }
        if !more && sides.iter().all(|s| s.wire.is_empty()) {
            return;
        }
    }
}

fn check_agreement(sides: &[Side; 2]) {
    for me in 0..2 {
        let (a, b) = (&sides[me], &sides[1 - me]);
        for (ch, tag) in &a.open {
            let partner = *a
                .partner
                .get(ch)
                .expect("open but never paired after quiescence");
            let (bch, _) = b
                .open
                .iter()
                .find(|(_, t)| *t == partner)
                .expect("our channel is open, the remote's is not");
            assert_eq!(b.partner[bch], *tag, "paired with different channels");
            assert_eq!(
                b.received.get(bch).copied().unwrap_or(0),
                a.sent[tag],
                "not every message arrived"
            );
        }
    }
}

fn run(ops: &[Op]) {
    let mut sides = [Side::new(1), Side::new(2)];
    for op in ops {
        match *op {
            Op::Open(s, n) => sides[s].open(n),
            Op::Send(s, i, t, l) => sides[s].send(i, t, l),
            Op::Close(s, i) => sides[s].close(i),
            Op::Cork(s) => {
                sides[s].corked += 1;
                sides[s].mux.cork();
            }
            Op::Uncork(s) => {
                if sides[s].corked > 0 {
                    sides[s].corked -= 1;
                    sides[s].mux.uncork();
                }
            }
            Op::Deliver(s, n) => deliver(&mut sides, s, n),
            Op::Answer(s, a) => sides[s].answer(a),
        }
        for s in &mut sides {
            s.settle();
        }
    }
    quiesce(&mut sides, true);
    check_agreement(&sides);

    // Close everything from both sides: both end idle with nothing held.
    for s in &mut sides {
        while !s.open.is_empty() {
            s.close(0);
        }
        s.settle();
    }
    quiesce(&mut sides, false);
    for s in &sides {
        assert!(s.open.is_empty());
        assert!(s.mux.is_idle(), "a local id is still reserved");
        assert!(!s.mux.is_paused());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_deliver_what_was_sent(ops in proptest::collection::vec(op(), 0..120)) {
        run(&ops);
    }
}

#[test]
fn crossing_open_close_reuse() {
    // A opens and closes before B's answer; B accepted meanwhile; A reuses the id at once.
    run(&[
        Op::Open(0, 0),
        Op::Deliver(0, 1),
        Op::Answer(1, true),
        Op::Close(0, 0),
        Op::Open(0, 0),
        Op::Deliver(1, 9),
        Op::Deliver(0, 9),
        Op::Deliver(1, 9),
        Op::Send(0, 0, 1, 10),
    ]);
}

proptest! {
    /// Arbitrary messages never panic, and an error always leaves the mux closed.
    #[test]
    fn garbage_never_panics(msgs in proptest::collection::vec(
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            // Frames that start like control frames, to get past the first bytes more often.
            (0u8..5, proptest::collection::vec(any::<u8>(), 0..40))
                .prop_map(|(t, rest)| [vec![0, t], rest].concat()),
            (1u8..5, proptest::collection::vec(any::<u8>(), 0..8))
                .prop_map(|(id, rest)| [vec![0, 1, id, 1, b'p', 0], rest].concat()),
        ],
        0..40,
    )) {
        let mut mux = Mux::default();
        mux.pair("p", None);
        let ch = mux.open("p", None, b"").unwrap();
        for m in &msgs {
            match mux.handle_input(m) {
                Ok(()) => {}
                Err(_) => {
                    prop_assert!(mux.is_closed());
                    break;
                }
            }
            while mux.poll_transmit().is_some() {}
            while let Some(e) = mux.poll_event() {
                if let Event::RemoteOpen { protocol, id, .. } = e {
                    let _ = mux.open(&protocol, id.as_deref(), b"");
                }
            }
            let _ = mux.send(ch, 1, b"x");
        }
    }
}
