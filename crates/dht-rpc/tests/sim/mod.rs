//! A deterministic in-memory network of sans-IO nodes (quinn's `Pair`, for many nodes):
//! simulated time, 1 ms latency, optional loss, optional NATs that drop unsolicited datagrams.
//!
//! Every node has two sockets on its own IP: server port 10000, client port 20000.
//! Application commands are answered by a built-in handler:
//! - 42: echo the value reversed, with a token;
//! - 43: without a token, reply with a token (the walk); with one, store the value under the
//!   target (the commit).

#![allow(dead_code, unreachable_pub)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use peerhost_dht_rpc::{
    Config, Event, IncomingRequest, Node, QueryId, QueryResult, ReplyOptions, RequestId, SocketKind,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const SERVER: u16 = 10000;
pub const CLIENT: u16 = 20000;
const LATENCY: Duration = Duration::from_millis(1);

pub struct SimNode {
    pub node: Node,
    pub ip: Ipv4Addr,
    pub alive: bool,
    /// Drop datagrams to a socket from addresses that socket never sent to.
    pub natted: bool,
    contacted: HashSet<(SocketKind, SocketAddrV4)>,
    pub events: Vec<Event>,
    pub store: HashMap<[u8; 32], Vec<u8>>,
    pub responses: BTreeMap<RequestId, Event>,
    pub queries: BTreeMap<QueryId, Event>,
    pub query_replies: HashMap<QueryId, usize>,
}

impl SimNode {
    pub fn server_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.ip, SERVER)
    }

    pub fn query_result(&self, id: QueryId) -> Option<&QueryResult> {
        match self.queries.get(&id)? {
            Event::QueryDone { result: Ok(r), .. } => Some(r),
            _ => None,
        }
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Packet {
    from: SocketAddrV4,
    to: SocketAddrV4,
    data: Vec<u8>,
}

pub struct Sim {
    pub now: Instant,
    pub nodes: Vec<SimNode>,
    queue: BinaryHeap<Reverse<(Instant, u64, Packet)>>,
    seq: u64,
    rng: StdRng,
    pub loss: f64,
    pub delivered: u64,
    /// Datagrams sent to addresses where no node is: (from, to, bytes).
    pub strays: Vec<(SocketAddrV4, SocketAddrV4, usize)>,
}

pub fn seed(i: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&i.to_le_bytes());
    s
}

impl Sim {
    pub fn new(seed_: u64) -> Self {
        Self {
            now: Instant::now(),
            nodes: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            rng: StdRng::from_seed(seed(seed_)),
            loss: 0.0,
            delivered: 0,
            strays: Vec::new(),
        }
    }

    /// The IP of the node with index `i`.
    pub fn ip(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1)
    }

    pub fn addr(i: usize) -> SocketAddrV4 {
        SocketAddrV4::new(Self::ip(i), SERVER)
    }

    /// Add a node; `config.seed` is set from its index when unset.
    pub fn add(&mut self, mut config: Config) -> usize {
        let i = self.nodes.len();
        if config.seed.is_none() {
            config.seed = Some(seed(1000 + i as u64));
        }
        config.handle_user_commands = true;
        let node = Node::new(config, SERVER, self.now);
        self.nodes.push(SimNode {
            node,
            ip: Self::ip(i),
            alive: true,
            natted: false,
            contacted: HashSet::new(),
            events: Vec::new(),
            store: HashMap::new(),
            responses: BTreeMap::new(),
            queries: BTreeMap::new(),
            query_replies: HashMap::new(),
        });
        self.flush();
        i
    }

    /// A bootstrap node (index 0 normally).
    pub fn add_bootstrapper(&mut self) -> usize {
        let i = self.nodes.len();
        self.add(Config::bootstrapper(Self::addr(i)))
    }

    /// A node that joins through node 0 and becomes persistent as soon as it can.
    pub fn add_persistent(&mut self) -> usize {
        let mut c = Config::with_bootstrap(vec![Self::addr(0)]);
        c.ephemeral = Some(false);
        c.firewalled = false;
        self.add(c)
    }

    fn socket_of(&self, to: SocketAddrV4) -> Option<(usize, SocketKind)> {
        let i = self.nodes.iter().position(|n| n.ip == *to.ip())?;
        match to.port() {
            SERVER => Some((i, SocketKind::Server)),
            CLIENT => Some((i, SocketKind::Client)),
            _ => None,
        }
    }

    /// Move transmits into the network and handle events, until nothing moves.
    pub fn flush(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(t) = self.nodes[i].node.poll_transmit() {
                    moved = true;
                    let n = &mut self.nodes[i];
                    assert!(t.contents.len() <= peerhost_dht_rpc::messages::MAX_DATAGRAM);
                    if !n.alive {
                        continue;
                    }
                    n.contacted.insert((t.socket, t.destination));
                    let port = match t.socket {
                        SocketKind::Server => SERVER,
                        _ => CLIENT,
                    };
                    let from = SocketAddrV4::new(n.ip, port);
                    if self.loss > 0.0 && self.rng.r#gen::<f64>() < self.loss {
                        continue;
                    }
                    self.seq += 1;
                    self.queue.push(Reverse((
                        self.now + LATENCY,
                        self.seq,
                        Packet {
                            from,
                            to: t.destination,
                            data: t.contents,
                        },
                    )));
                }
                while let Some(ev) = self.nodes[i].node.poll_event() {
                    moved = true;
                    self.on_event(i, ev);
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn on_event(&mut self, i: usize, ev: Event) {
        let now = self.now;
        let n = &mut self.nodes[i];
        match ev {
            Event::Request(req) => handle(n, &req, now),
            Event::Response { id, .. } => {
                n.responses.insert(id, ev);
            }
            Event::QueryDone { id, .. } => {
                n.queries.insert(id, ev);
            }
            Event::QueryReply { id, .. } => {
                *n.query_replies.entry(id).or_default() += 1;
            }
            ev => n.events.push(ev),
        }
    }

    /// Advance to the next thing that happens (a delivery or a timeout), at most to `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        self.flush();
        let next_packet = self.queue.peek().map(|Reverse((t, _, _))| *t);
        let next_timer = self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .filter_map(|n| n.node.poll_timeout())
            .min();
        let Some(next) = [next_packet, next_timer].into_iter().flatten().min() else {
            return false;
        };
        if next > limit {
            self.now = limit;
            return false;
        }
        self.now = self.now.max(next);
        while let Some(Reverse((t, _, _))) = self.queue.peek() {
            if *t > self.now {
                break;
            }
            let Some(Reverse((_, _, p))) = self.queue.pop() else {
                break;
            };
            self.deliver(p);
        }
        let now = self.now;
        for n in self.nodes.iter_mut().filter(|n| n.alive) {
            if n.node.poll_timeout().is_some_and(|t| t <= now) {
                n.node.handle_timeout(now);
            }
        }
        self.flush();
        true
    }

    fn deliver(&mut self, p: Packet) {
        let Some((i, socket)) = self.socket_of(p.to) else {
            if self.strays.len() < 100_000 {
                self.strays.push((p.from, p.to, p.data.len()));
            }
            return;
        };
        let n = &mut self.nodes[i];
        if !n.alive {
            return;
        }
        if n.natted && !n.contacted.contains(&(socket, p.from)) {
            return;
        }
        self.delivered += 1;
        n.node
            .handle_datagram(self.now, socket, SocketAddr::V4(p.from), &p.data);
    }

    /// Run for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        while self.step(limit) {}
        self.now = self.now.max(limit);
    }

    /// Run until `pred` holds, at most `d`. Returns whether it held.
    pub fn run_until(&mut self, d: Duration, mut pred: impl FnMut(&Self) -> bool) -> bool {
        let limit = self.now + d;
        loop {
            if pred(self) {
                return true;
            }
            if !self.step(limit) {
                return pred(self);
            }
        }
    }

    /// Inject a raw datagram from `from` to node `i`'s server socket.
    pub fn inject(&mut self, from: SocketAddrV4, i: usize, data: &[u8]) {
        let now = self.now;
        self.nodes[i]
            .node
            .handle_datagram(now, SocketKind::Server, SocketAddr::V4(from), data);
    }
}

fn handle(n: &mut SimNode, req: &IncomingRequest, _now: Instant) {
    match req.command {
        42 => {
            let mut v = req.value.clone().unwrap_or_default();
            v.reverse();
            n.node
                .reply(req, Some(&v), ReplyOptions::REPLY)
                .expect("fits");
        }
        43 => {
            if let (Some(_), Some(target)) = (req.token, req.target) {
                n.store
                    .insert(target, req.value.clone().unwrap_or_default());
            }
            n.node.reply(req, None, ReplyOptions::REPLY).expect("fits");
        }
        _ => {
            n.node
                .reply_error(
                    req,
                    peerhost_dht_rpc::messages::UNKNOWN_COMMAND,
                    ReplyOptions::ERROR,
                )
                .expect("fits");
        }
    }
}
