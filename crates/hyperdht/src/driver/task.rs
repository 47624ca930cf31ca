//! The node task: the one task that owns the HyperDHT [`Node`] and both DHT sockets, runs
//! commands from the [`Dht`](super::Dht) handles, feeds the node datagrams and timeouts,
//! answers waiting callers, and starts opening the stream of every established connection
//! (each in a task of its own, which hands the connection over when its stream is up).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use peerhost_dht_rpc::SocketKind;
use peerhost_udx::driver::Socket;
use peerhost_udx::{Firewall, StreamConfig as UdxConfig};
use tokio::sync::{mpsc, oneshot};

use super::connection::{RawConnection, establish};
use super::{Command, Info, Server, Shared, Stop, Waiter, lock_early, lock_extra, lock_relayed};
use crate::error::{ConnectError, Error};
use crate::holepunch::{PunchCommand, PunchSocket};
use crate::node::{Event, Listening, LookupResult, Node, OpId, Outcome};

struct Task {
    node: Node,
    shared: std::sync::Arc<Shared>,
    waiters: HashMap<OpId, Waiter>,
    /// Lookups started with [`Dht::lookup_with`]: where their records go as they arrive.
    records: HashMap<OpId, mpsc::Sender<LookupResult>>,
    accept: HashMap<[u8; 32], mpsc::Sender<RawConnection>>,
    /// Our connects still running: their local stream ids (see [`open_early`]).
    connects: HashMap<OpId, u32>,
    bootstrapped: bool,
    on_bootstrap: Vec<oneshot::Sender<()>>,
}

pub(super) async fn run(
    node: Node,
    shared: std::sync::Arc<Shared>,
    mut commands: mpsc::Receiver<Command>,
    mut punches: mpsc::Receiver<(u32, Vec<u8>, SocketAddr)>,
    stop: std::sync::Arc<Stop>,
) {
    let mut t = Task {
        node,
        shared: shared.clone(),
        waiters: HashMap::new(),
        records: HashMap::new(),
        accept: HashMap::new(),
        connects: HashMap::new(),
        bootstrapped: false,
        on_bootstrap: Vec::new(),
    };
    while !stop.flag.load(std::sync::atomic::Ordering::Acquire) {
        t.drain().await;
        let deadline = t
            .node
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(60));
        tokio::select! {
            () = stop.notify.notified() => {}
            cmd = commands.recv() => match cmd {
                Some(cmd) => t.command(cmd),
                None => break,
            },
            d = shared.server.recv_datagram() => match d {
                Some((data, from)) => t.node.handle_datagram(Instant::now(), SocketKind::Server, from, &data),
                None => break,
            },
            d = shared.client.recv_datagram() => match d {
                Some((data, from)) => t.node.handle_datagram(Instant::now(), SocketKind::Client, from, &data),
                None => break,
            },
            Some((id, data, from)) = punches.recv() => {
                t.node.handle_punch_datagram(Instant::now(), PunchSocket::Extra(id), from, &data);
            }
            () = tokio::time::sleep_until(deadline.into()) => t.node.handle_timeout(Instant::now()),
        }
    }
    for (_, w) in t.waiters.drain() {
        fail(w);
    }
}

fn fail(w: Waiter) {
    match w {
        Waiter::Outcome(_) => {}
        Waiter::Connect(tx) => {
            let _ = tx.send(Err(ConnectError::Destroyed));
        }
        Waiter::Listen { reply, .. } => {
            let _ = reply.send(Err(Error::Destroyed));
        }
    }
}

impl Task {
    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Op { start, waiter } => match start(&mut self.node, now) {
                Ok(id) => {
                    if let (Waiter::Connect(_), Some(local)) =
                        (&waiter, self.node.connect_stream_id(id))
                    {
                        open_early(&self.shared, local);
                        self.connects.insert(id, local);
                    }
                    self.waiters.insert(id, waiter);
                }
                Err(outcome) => self.deliver(waiter, *outcome),
            },
            Command::Lookup {
                start,
                waiter,
                records,
            } => match start(&mut self.node, now) {
                Ok(id) => {
                    self.waiters.insert(id, waiter);
                    self.records.insert(id, records);
                }
                Err(outcome) => self.deliver(waiter, *outcome),
            },
            Command::Listen {
                key_pair,
                firewall,
                reply,
            } => {
                let public_key = key_pair.public_key();
                match self.node.listen(now, key_pair, firewall) {
                    Ok(id) => {
                        let (tx, rx) = mpsc::channel(super::ACCEPT_QUEUE);
                        self.accept.insert(public_key, tx);
                        let server = Server {
                            public_key,
                            incoming: rx,
                            commands: self.shared.commands.clone(),
                        };
                        self.waiters.insert(
                            id,
                            Waiter::Listen {
                                reply,
                                server: Some(server),
                            },
                        );
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Unlisten(pk) => {
                self.accept.remove(&pk);
                self.node.unlisten(now, &pk);
            }
            Command::Release(id) => {
                self.node.release_stream_id(id);
                // A relayed connection ended: drop its relay connection.
                lock_relayed(&self.shared).remove(&id);
            }
            Command::Bootstrapped(tx) => {
                if self.bootstrapped || self.node.dht().is_bootstrapped() {
                    let _ = tx.send(());
                } else {
                    self.on_bootstrap.push(tx);
                }
            }
            Command::Info(tx) => {
                let d = self.node.dht();
                let _ = tx.send(Info {
                    persistent: self.node.is_persistent(),
                    firewalled: d.is_firewalled(),
                    remote_address: d.remote_address(),
                    nodes: d.table().len(),
                    stats: self.node.stats(),
                    dht_stats: d.stats(),
                    stored: self.node.stored(),
                });
            }
            Command::RelayAddresses(pk, tx) => {
                let _ = tx.send(self.node.relay_addresses(&pk));
            }
        }
    }

    fn deliver(&mut self, waiter: Waiter, outcome: Outcome) {
        match (waiter, outcome) {
            (Waiter::Outcome(tx), o) => {
                let _ = tx.send(o);
            }
            (Waiter::Connect(tx), Outcome::Connect(r)) => match *r {
                Ok(est) => {
                    let shared = self.shared.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(establish(shared, est).await);
                    });
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            },
            (Waiter::Listen { reply, server }, Outcome::Listen(r)) => {
                let r = r.and_then(|_: Listening| server.ok_or(Error::Destroyed));
                let _ = reply.send(r);
            }
            (w, _) => fail(w),
        }
    }

    async fn drain(&mut self) {
        let now = Instant::now();
        while let Some(ev) = self.node.poll_event(now) {
            match ev {
                Event::Bootstrapped => {
                    self.bootstrapped = true;
                    for tx in self.on_bootstrap.drain(..) {
                        let _ = tx.send(());
                    }
                }
                Event::LookupRecords { id, result } => {
                    if let Some(tx) = self.records.get(&id) {
                        let _ = tx.try_send(result);
                    }
                }
                Event::Done { id, outcome } => {
                    self.records.remove(&id);
                    let early = self.connects.remove(&id);
                    let connected = matches!(&outcome, Outcome::Connect(r) if r.is_ok());
                    if let (Some(local), false) = (early, connected) {
                        // The connect failed: its early streams go (an established one's
                        // stream is taken from them in `establish`).
                        lock_early(&self.shared).remove(&local);
                    }
                    if let Some(w) = self.waiters.remove(&id) {
                        self.deliver(w, outcome);
                    } else if let Outcome::Connect(r) = outcome {
                        if let Ok(est) = *r {
                            lock_early(&self.shared).remove(&est.local_id);
                            self.node.release_stream_id(est.local_id);
                        }
                    }
                }
                Event::Incoming(inc) => {
                    let Some(tx) = self.accept.get(&inc.server).cloned() else {
                        self.node.release_stream_id(inc.established.local_id);
                        continue;
                    };
                    let shared = self.shared.clone();
                    tokio::spawn(async move {
                        if let Ok(conn) = establish(shared, inc.established).await {
                            let _ = tx.try_send(conn);
                        }
                    });
                }
                _ => {}
            }
        }
        while let Some(t) = self.node.poll_transmit() {
            let socket = self.shared.socket(t.socket);
            let _ = socket
                .send_datagram(&t.contents, SocketAddr::V4(t.destination))
                .await;
        }
        while let Some(cmd) = self.node.poll_punch() {
            punch_command(&self.shared, cmd).await;
        }
    }
}

// ---------------------------------------------------------------------- holepunching

/// Carry out one [`PunchCommand`]: a punch, or opening / closing birthday sockets.
async fn punch_command(shared: &std::sync::Arc<Shared>, cmd: PunchCommand) {
    match cmd {
        PunchCommand::Send { socket, dest, ttl } => {
            let sock = match socket {
                PunchSocket::Dht(kind) => Some(shared.socket(kind).clone()),
                PunchSocket::Extra(id) => lock_extra(shared).get(&id).map(|(s, _)| s.clone()),
            };
            if let Some(sock) = sock {
                let _ = sock
                    .send_datagram_ttl(&crate::holepunch::puncher::PUNCH, SocketAddr::V4(dest), ttl)
                    .await;
            }
        }
        PunchCommand::Open { ids, stream } => {
            let waiting = stream.and_then(|(local, _)| {
                let awaiting = shared.awaiting.lock().unwrap_or_else(|e| e.into_inner());
                awaiting.get(&local).cloned()
            });
            for id in ids {
                let Ok(sock) = Socket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).await
                else {
                    continue;
                };
                if let (Some(tx), Some((local, remote_id))) = (&waiting, stream) {
                    let config = UdxConfig::default().firewall(Firewall::Connect { remote_id });
                    if let Ok(s) = sock.create_stream(local, config) {
                        let _ = tx.try_send(s);
                    }
                }
                let tx = shared.punch_tx.clone();
                let reader = sock.clone();
                let task = tokio::spawn(async move {
                    while let Some((data, from)) = reader.recv_datagram().await {
                        // Bounded: drop when the node is behind, as UDP would.
                        if tx.try_send((id, data, from)).is_err() && tx.is_closed() {
                            break;
                        }
                    }
                });
                lock_extra(shared).insert(id, (sock, task));
            }
        }
        PunchCommand::Close { ids } => {
            let mut extra = lock_extra(shared);
            for id in ids {
                if let Some((_, task)) = extra.remove(&id) {
                    task.abort();
                }
            }
        }
    }
}

/// Open a stream with our connect's id on each DHT socket before the handshake completes,
/// taking packets in (`Firewall::Accept`: acknowledged once connected). A server that is to
/// connect to us sends its secret-stream header as soon as it answered; that can arrive
/// before the answer reaches us through the relay, and with no stream for its id it would be
/// dropped and resent only after UDX's 1 s retransmission timeout. JS creates the raw stream
/// up front for the same reason.
fn open_early(shared: &Shared, local_id: u32) {
    let config = UdxConfig::default().firewall(Firewall::Accept);
    let streams: Vec<_> = [SocketKind::Server, SocketKind::Client]
        .into_iter()
        .filter_map(|k| Some((k, shared.socket(k).create_stream(local_id, config).ok()?)))
        .collect();
    lock_early(shared).insert(local_id, streams);
}
