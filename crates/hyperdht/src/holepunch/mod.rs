//! Holepunching (hyperdht `lib/connect.js` `holepunch`, `lib/server.js` `_onpeerholepunch`,
//! `lib/holepuncher.js`, `lib/nat.js`), as part of the sans-IO [`Node`].
//!
//! When a client and a server both sit behind NATs, the handshake that went through a relay
//! node tells each the other's public address and NAT kind, and then:
//! 1. **probe round** — the client sends `PEER_HOLEPUNCH` (its NAT kind and addresses, encrypted
//!    with the handshake's holepunch secret) through the server's announce relay; the server
//!    answers with its own view and a token for the client's address;
//! 2. **punch round** — the client sends `punching: true` with its own token for the server's
//!    address and the server's token echoed; each side now knows the other's host is real
//!    (*verified*), and both start punching ([`puncher`]);
//! 3. the first punch the client receives connects it (on that socket, to that address); the
//!    server's UDX stream connects on the client's first packet.
//!
//! Where we differ from JS, on purpose (see `protocol/holepunch.md`):
//! - we punch from the DHT's own default socket instead of a fresh socket per attempt, and our
//!   NAT kind is what dht-rpc's NAT sampler already knows of that socket ("what the DHT sees of
//!   us": a sampled host and port is CONSISTENT, a host whose port changes is RANDOM), so no
//!   sampling round is needed before the first probe;
//! - a client whose NAT randomizes opens the 256 birthday sockets as JS does; a server whose NAT
//!   randomizes punches only from its DHT socket (its UDX stream waits there), which is enough
//!   towards full- and restricted-cone clients; towards port-restricted clients the attempt
//!   runs out and the connection falls back to a blind relay.
//!
//! The driver sends what [`Node::poll_punch`] returns (one-byte datagrams at a TTL, opening
//! and closing birthday sockets) and feeds datagrams from birthday sockets to
//! [`Node::handle_punch_datagram`]; one-byte datagrams on the DHT sockets reach us through
//! [`Node::handle_datagram`].

mod client;
pub(crate) mod puncher;
mod server;

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, SocketAddrV4};
use std::time::Instant;

use peerhost_dht_rpc::{Reply, RequestError, RequestId, SocketKind};

use crate::constants::Firewall;
use crate::node::{Node, OpId};

pub(crate) use client::ClientSession;
pub(crate) use server::ServerSession;

/// A socket a punch leaves from or arrives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PunchSocket {
    /// One of the DHT's two sockets.
    Dht(SocketKind),
    /// A birthday socket the driver opened for us ([`PunchCommand::Open`]).
    Extra(u32),
}

/// What the driver must do for holepunching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PunchCommand {
    /// Send the one-byte punch `00` from `socket` to `dest` with IP TTL `ttl`.
    Send {
        /// Where from.
        socket: PunchSocket,
        /// Where to.
        dest: SocketAddrV4,
        /// IP time-to-live (5 opens only our own NAT; 64 is the default).
        ttl: u32,
    },
    /// Bind one UDP socket per id on an ephemeral port and pass what they receive to
    /// [`Node::handle_punch_datagram`]. Processed before any `Send` that names them.
    Open {
        /// The new sockets' ids.
        ids: Vec<u32>,
        /// A server's connection waiting for its client on these sockets too: create a UDX
        /// stream `(local id, remote id)` on each that connects to the first packet's
        /// source, and offer it to that connection's [`crate::Route::Await`].
        stream: Option<(u32, u32)>,
    },
    /// Close these sockets (a connection may already hold one of them: keep it alive while
    /// its stream lives).
    Close {
        /// The sockets' ids.
        ids: Vec<u32>,
    },
}

/// Holepunch state of a [`Node`].
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) clients: HashMap<OpId, ClientSession>,
    pub(crate) servers: HashMap<u64, ServerSession>,
    pub(crate) requests: HashMap<RequestId, OpId>,
    pub(crate) commands: VecDeque<PunchCommand>,
    pub(crate) next_extra: u32,
    pub(crate) next_slot: u64,
    /// Random-NAT punches running (JS `_randomPunches`, limit 1).
    pub(crate) random_punches: usize,
}

impl State {
    /// The earliest timer of any session.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let c = self
            .clients
            .values()
            .filter_map(ClientSession::poll_timeout);
        let s = self
            .servers
            .values()
            .filter_map(ServerSession::poll_timeout);
        c.chain(s).min()
    }
}

/// How long a server's stream waits for a holepunched client (the random strategies run
/// ~35 s; JS's puncher lives as long).
pub(crate) const AWAIT_PUNCHED: std::time::Duration = std::time::Duration::from_secs(45);

/// Bound on holepunch sessions a server keeps at once (JS has none; slots are reused).
pub(crate) const MAX_SERVER_SESSIONS: usize = 256;

impl Node {
    /// Our NAT kind and public addresses as the DHT sees our default socket: OPEN when not
    /// firewalled, CONSISTENT with the sampled address, RANDOM with `host:0` when the port
    /// changes per destination, UNKNOWN before any sample.
    pub(crate) fn our_nat(&self) -> (Firewall, Vec<SocketAddrV4>) {
        if let Some(addr) = self.dht.remote_address() {
            return (Firewall::OPEN, vec![addr]);
        }
        match self.dht.nat() {
            (Some(host), 0) => (Firewall::RANDOM, vec![SocketAddrV4::new(host, 0)]),
            (Some(host), port) => (Firewall::CONSISTENT, vec![SocketAddrV4::new(host, port)]),
            (None, _) => (Firewall::UNKNOWN, Vec::new()),
        }
    }

    /// The next holepunch action for the driver.
    pub fn poll_punch(&mut self) -> Option<PunchCommand> {
        self.holepunch.commands.pop_front()
    }

    /// A datagram arrived on a birthday socket.
    pub fn handle_punch_datagram(
        &mut self,
        now: Instant,
        socket: PunchSocket,
        from: SocketAddr,
        data: &[u8],
    ) {
        if data.len() <= 1 {
            self.on_punch(now, socket, from);
        }
    }

    /// A one-byte datagram (a punch) arrived on `socket` from `from`.
    pub(crate) fn on_punch(&mut self, now: Instant, socket: PunchSocket, from: SocketAddr) {
        let SocketAddr::V4(from) = from else { return };
        let op = self
            .holepunch
            .clients
            .iter()
            .find(|(_, c)| c.accepts_punch(&socket, &from))
            .map(|(op, _)| *op);
        if let Some(op) = op {
            return self.client_punched(now, op, socket, from);
        }
        let hs = &mut self.holepunch;
        for s in hs.servers.values_mut() {
            if s.puncher.is_remote(&from) || s.client_host() == Some(*from.ip()) {
                s.puncher.on_punch(socket, from, &mut hs.commands);
                return;
            }
        }
    }

    /// A response to a holepunch request.
    pub(crate) fn on_holepunch_response(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<Reply, RequestError>,
    ) {
        if let Some(op) = self.holepunch.requests.remove(&id) {
            self.client_holepunch_response(now, op, id, result);
        }
    }

    /// Run due holepunch timers.
    pub(crate) fn holepunch_timeout(&mut self, now: Instant) {
        let due: Vec<OpId> = self
            .holepunch
            .clients
            .iter()
            .filter(|(_, c)| c.poll_timeout().is_some_and(|t| t <= now))
            .map(|(op, _)| *op)
            .collect();
        for op in due {
            self.client_timeout(now, op);
        }
        self.servers_holepunch_timeout(now);
    }
}
