//! The punch strategies (hyperdht `lib/holepuncher.js` `_punch` and its probes), sans-IO.
//!
//! A punch is a one-byte UDP datagram `00` ([`PUNCH`]). Which datagrams to send, from which
//! socket and when, depends on both NATs (OPEN counts as CONSISTENT, as JS coerces it):
//!
//! | local \ remote | CONSISTENT | RANDOM |
//! |---|---|---|
//! | CONSISTENT | [`Strategy::Consistent`]: every remote address, 10 rounds 1 s apart (unverified addresses only on rounds 4 and 8; the responder waits 1 s first) | [`Strategy::Random`]: 3500 punches, 4 ms apart, to random ports of the verified host (JS: 1750, 20 ms apart) |
//! | RANDOM | [`Strategy::Birthday`]: 256 extra sockets each punch the verified address once at TTL 5, then 1750 round-robin punches 20 ms apart (first pass TTL 5) | none (both randomize: relay) |
//!
//! Everything but the consistent pair needs a *verified* remote address: one whose host the
//! remote proved it holds by echoing our token (see `SecurePayload::token`).
//!
//! The responder echoes every punch it receives; the initiator is connected on the first punch
//! it receives (on any of its sockets), and stops. Both stop when their strategy runs out.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use rand::Rng;

use super::{PunchCommand, PunchSocket};
use crate::constants::Firewall;

/// The punch datagram (`HOLEPUNCH`); the driver sends it.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) const PUNCH: [u8; 1] = [0];
/// TTL of "open session" punches that should only open our own NAT (`HOLEPUNCH_TTL`).
pub(crate) const LOW_TTL: u32 = 5;
/// TTL of ordinary punches (`DEFAULT_TTL`).
pub(crate) const DEFAULT_TTL: u32 = 64;
/// Extra sockets a randomizing side opens (`BIRTHDAY_SOCKETS`).
pub(crate) const BIRTHDAY_SOCKETS: usize = 256;
/// Punches of the birthday strategy (`tries = 1750`, ~35 s at 20 ms, as JS).
pub(crate) const RANDOM_TRIES: u32 = 1750;
const RANDOM_GAP: Duration = Duration::from_millis(20);
/// Punches of the random-port strategy, and their spacing. Each punch finds the remote's
/// birthday sockets with odds of about 256 in 64 536, so the expected wait is the gap times
/// ~250: JS's 20 ms makes that ~5 s, 4 ms makes it ~1 s, for the same 29-byte datagrams (250
/// a second at most, 14 s in all). 3500 punches miss 256 sockets with odds of about 1 in a
/// million (JS's 1750: 1 in a thousand), and the relay is the fallback.
pub(crate) const PROBE_TRIES: u32 = 3500;
const PROBE_GAP: Duration = Duration::from_millis(4);
const CONSISTENT_TRIES: u32 = 10;
const CONSISTENT_GAP: Duration = Duration::from_secs(1);

/// One of the remote's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RemoteAddr {
    pub(crate) addr: SocketAddrV4,
    pub(crate) verified: bool,
}

/// What the puncher is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// Both consistent: probe each address, `tries` rounds done so far.
    Consistent { tries: u32 },
    /// We are consistent, the remote randomizes: random ports of `host`.
    Random { host: Ipv4Addr, left: u32 },
    /// We randomize: round-robin over the extra sockets towards `remote`.
    Birthday {
        remote: SocketAddrV4,
        next: usize,
        low_ttl_rounds: u32,
        left: u32,
    },
}

/// One side's holepuncher. See the module docs.
#[derive(Debug)]
pub(crate) struct Puncher {
    pub(crate) initiator: bool,
    pub(crate) local_firewall: Firewall,
    pub(crate) remote_firewall: Firewall,
    pub(crate) remote_addresses: Vec<RemoteAddr>,
    pub(crate) remote_punching: bool,
    /// The socket we punch from (the DHT's default socket).
    pub(crate) socket: PunchSocket,
    /// Birthday sockets we opened.
    pub(crate) extra: Vec<u32>,
    /// Whether we may open birthday sockets (a server punches from its DHT socket only).
    pub(crate) allow_extra: bool,
    /// The sockets the birthday strategy cycles through.
    birthday: Vec<PunchSocket>,
    /// A responder's UDX stream `(local id, remote id)`, to wait on birthday sockets too.
    pub(crate) stream: Option<(u32, u32)>,
    pub(crate) strategy: Option<Strategy>,
    pub(crate) next: Option<Instant>,
    /// Set on the initiator by the first punch received.
    pub(crate) connected: Option<(PunchSocket, SocketAddrV4)>,
    /// The strategy ran out without a connection.
    pub(crate) exhausted: bool,
}

fn coerce(f: Firewall) -> Firewall {
    if f == Firewall::OPEN {
        Firewall::CONSISTENT
    } else {
        f
    }
}

/// `randomPort()`: `[1000, 65536)`.
fn random_port(rng: &mut impl Rng) -> u16 {
    rng.gen_range(1000..=65535)
}

impl Puncher {
    pub(crate) fn new(initiator: bool, socket: PunchSocket, local_firewall: Firewall) -> Self {
        Self {
            initiator,
            local_firewall,
            remote_firewall: Firewall::UNKNOWN,
            remote_addresses: Vec::new(),
            remote_punching: false,
            socket,
            extra: Vec::new(),
            allow_extra: initiator,
            birthday: Vec::new(),
            stream: None,
            strategy: None,
            next: None,
            connected: None,
            exhausted: false,
        }
    }

    /// `updateRemote`: the remote's latest view; `verified` is a host the remote proved.
    pub(crate) fn update_remote(
        &mut self,
        punching: bool,
        firewall: Firewall,
        addresses: &[SocketAddrV4],
        verified: Option<Ipv4Addr>,
    ) {
        let was: Vec<Ipv4Addr> = self
            .remote_addresses
            .iter()
            .filter(|a| a.verified)
            .map(|a| *a.addr.ip())
            .collect();
        self.remote_addresses = addresses
            .iter()
            .map(|a| RemoteAddr {
                addr: *a,
                verified: verified == Some(*a.ip()) || was.contains(a.ip()),
            })
            .collect();
        self.remote_firewall = firewall;
        self.remote_punching = punching;
    }

    pub(crate) fn is_punching(&self) -> bool {
        self.strategy.is_some()
    }

    fn send(out: &mut VecDeque<PunchCommand>, socket: PunchSocket, dest: SocketAddrV4, ttl: u32) {
        out.push_back(PunchCommand::Send { socket, dest, ttl });
    }

    /// One low-TTL punch that opens our NAT towards `addr` (`openSession`).
    pub(crate) fn open_session(&self, out: &mut VecDeque<PunchCommand>, addr: SocketAddrV4) {
        Self::send(out, self.socket, addr, LOW_TTL);
    }

    /// One ordinary punch (`ping`).
    pub(crate) fn ping(&self, out: &mut VecDeque<PunchCommand>, addr: SocketAddrV4) {
        Self::send(out, self.socket, addr, DEFAULT_TTL);
    }

    /// `punch()`: pick and start a strategy. `new_ids` hands out ids for extra sockets.
    /// Returns false when no strategy fits (JS then aborts).
    pub(crate) fn punch(
        &mut self,
        now: Instant,
        out: &mut VecDeque<PunchCommand>,
        mut new_ids: impl FnMut() -> u32,
    ) -> bool {
        if self.strategy.is_some() {
            return true;
        }
        if self.connected.is_some() || self.remote_addresses.is_empty() {
            return false;
        }
        let local = coerce(self.local_firewall);
        let remote = coerce(self.remote_firewall);
        if local == Firewall::CONSISTENT && remote == Firewall::CONSISTENT {
            self.strategy = Some(Strategy::Consistent { tries: 0 });
            // > if (!this.isInitiator) await this._sleeper.pause(1000)
            self.next = Some(if self.initiator {
                now
            } else {
                now + CONSISTENT_GAP
            });
            return true;
        }
        let Some(verified) = self.remote_addresses.iter().find(|a| a.verified).copied() else {
            return false;
        };
        if local == Firewall::CONSISTENT && remote >= Firewall::RANDOM {
            self.strategy = Some(Strategy::Random {
                host: *verified.addr.ip(),
                left: PROBE_TRIES,
            });
            self.next = Some(now);
            return true;
        }
        if local >= Firewall::RANDOM && remote == Firewall::CONSISTENT {
            if self.allow_extra {
                let ids: Vec<u32> = (0..BIRTHDAY_SOCKETS).map(|_| new_ids()).collect();
                out.push_back(PunchCommand::Open {
                    ids: ids.clone(),
                    stream: self.stream,
                });
                for id in &ids {
                    Self::send(out, PunchSocket::Extra(*id), verified.addr, LOW_TTL);
                }
                self.birthday = ids.iter().map(|id| PunchSocket::Extra(*id)).collect();
                self.extra = ids;
            } else {
                Self::send(out, self.socket, verified.addr, LOW_TTL);
                self.birthday = vec![self.socket];
            }
            self.strategy = Some(Strategy::Birthday {
                remote: verified.addr,
                next: 0,
                low_ttl_rounds: 1,
                left: RANDOM_TRIES,
            });
            self.next = Some(now + Duration::from_millis(100));
            return true;
        }
        false
    }

    /// Run the strategy's due steps.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        rng: &mut impl Rng,
        out: &mut VecDeque<PunchCommand>,
    ) {
        let Some(at) = self.next else { return };
        if now < at {
            return;
        }
        let socket = self.socket;
        let Some(strategy) = &mut self.strategy else {
            self.next = None;
            return;
        };
        match strategy {
            Strategy::Consistent { tries } => {
                *tries += 1;
                let t = *tries;
                for a in &self.remote_addresses {
                    // > only try unverified addresses every 4 ticks
                    if !a.verified && (t & 3) != 0 {
                        continue;
                    }
                    Self::send(out, socket, a.addr, DEFAULT_TTL);
                }
                if t >= CONSISTENT_TRIES {
                    self.stop_exhausted();
                } else {
                    self.next = Some(now + CONSISTENT_GAP);
                }
            }
            Strategy::Random { host, left } => {
                let dest = SocketAddrV4::new(*host, random_port(rng));
                Self::send(out, socket, dest, DEFAULT_TTL);
                *left -= 1;
                if *left == 0 {
                    self.stop_exhausted();
                } else {
                    self.next = Some(now + PROBE_GAP);
                }
            }
            Strategy::Birthday {
                remote,
                next,
                low_ttl_rounds,
                left,
            } => {
                if self.birthday.is_empty() {
                    self.stop_exhausted();
                    return;
                }
                if *next >= self.birthday.len() {
                    *next = 0;
                    *low_ttl_rounds = low_ttl_rounds.saturating_sub(1);
                }
                let ttl = if *low_ttl_rounds > 0 {
                    LOW_TTL
                } else {
                    DEFAULT_TTL
                };
                Self::send(out, self.birthday[*next], *remote, ttl);
                *next += 1;
                *left -= 1;
                if *left == 0 {
                    self.stop_exhausted();
                } else {
                    self.next = Some(now + RANDOM_GAP);
                }
            }
        }
    }

    fn stop_exhausted(&mut self) {
        self.strategy = None;
        self.next = None;
        self.exhausted = true;
    }

    /// A punch arrived on `socket` from `from`. The responder echoes it; the initiator is
    /// connected (the first time) and stops. Returns true when this connected us.
    pub(crate) fn on_punch(
        &mut self,
        socket: PunchSocket,
        from: SocketAddrV4,
        out: &mut VecDeque<PunchCommand>,
    ) -> bool {
        if !self.initiator {
            // > holepunch(ref.socket, addr, false) // never fails
            Self::send(out, socket, from, DEFAULT_TTL);
            return false;
        }
        if self.connected.is_some() {
            return false;
        }
        self.connected = Some((socket, from));
        self.strategy = None;
        self.next = None;
        true
    }

    /// Stop punching; returns the extra sockets to close, keeping `keep` open.
    pub(crate) fn stop(&mut self, keep: Option<PunchSocket>) -> Vec<u32> {
        self.strategy = None;
        self.next = None;
        let extra = std::mem::take(&mut self.extra);
        extra
            .into_iter()
            .filter(|id| keep != Some(PunchSocket::Extra(*id)))
            .collect()
    }

    /// Whether a datagram from `from` may be one of the remote's punches.
    pub(crate) fn is_remote(&self, from: &SocketAddrV4) -> bool {
        self.remote_addresses
            .iter()
            .any(|a| a.addr.ip() == from.ip())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().expect("addr")
    }

    fn sends(out: &VecDeque<PunchCommand>) -> Vec<(PunchSocket, SocketAddrV4, u32)> {
        out.iter()
            .filter_map(|c| match c {
                PunchCommand::Send { socket, dest, ttl } => Some((*socket, *dest, *ttl)),
                _ => None,
            })
            .collect()
    }

    const DHT: PunchSocket = PunchSocket::Dht(peerhost_dht_rpc::SocketKind::Client);

    #[test]
    fn consistent_pair_probes_ten_rounds_and_unverified_only_every_fourth() {
        let now = Instant::now();
        let mut p = Puncher::new(true, DHT, Firewall::CONSISTENT);
        p.update_remote(
            true,
            Firewall::CONSISTENT,
            &[a("1.2.3.4:5"), a("9.9.9.9:9")],
            Some("1.2.3.4".parse().expect("ip")),
        );
        let mut out = VecDeque::new();
        assert!(p.punch(now, &mut out, || 1));
        let mut rng = StdRng::seed_from_u64(1);
        let mut t = now;
        for _ in 0..10 {
            p.handle_timeout(t, &mut rng, &mut out);
            t += CONSISTENT_GAP;
        }
        let s = sends(&out);
        assert_eq!(s.iter().filter(|x| x.1 == a("1.2.3.4:5")).count(), 10);
        assert_eq!(s.iter().filter(|x| x.1 == a("9.9.9.9:9")).count(), 2);
        assert!(p.exhausted && !p.is_punching());
    }

    #[test]
    fn random_strategies_need_a_verified_address() {
        let now = Instant::now();
        let mut p = Puncher::new(true, DHT, Firewall::CONSISTENT);
        p.update_remote(true, Firewall::RANDOM, &[a("1.2.3.4:0")], None);
        let mut out = VecDeque::new();
        assert!(!p.punch(now, &mut out, || 1));
        p.update_remote(
            true,
            Firewall::RANDOM,
            &[a("1.2.3.4:0")],
            "1.2.3.4".parse().ok(),
        );
        assert!(p.punch(now, &mut out, || 1));
        let mut rng = StdRng::seed_from_u64(2);
        for i in 0..5 {
            p.handle_timeout(now + PROBE_GAP * i, &mut rng, &mut out);
        }
        let s = sends(&out);
        assert_eq!(s.len(), 5);
        assert!(
            s.iter()
                .all(|x| x.1.ip() == &Ipv4Addr::new(1, 2, 3, 4) && x.1.port() >= 1000)
        );
    }

    #[test]
    fn birthday_opens_256_sockets_with_low_ttl_then_round_robin() {
        let now = Instant::now();
        let mut p = Puncher::new(true, DHT, Firewall::RANDOM);
        p.update_remote(
            true,
            Firewall::CONSISTENT,
            &[a("1.2.3.4:5")],
            "1.2.3.4".parse().ok(),
        );
        let mut out = VecDeque::new();
        let mut n = 0;
        assert!(p.punch(now, &mut out, || {
            n += 1;
            n
        }));
        assert!(matches!(out.front(), Some(PunchCommand::Open { ids, .. }) if ids.len() == 256));
        let first = sends(&out);
        assert_eq!(first.len(), 256);
        assert!(first.iter().all(|x| x.2 == LOW_TTL));
        out.clear();
        let mut rng = StdRng::seed_from_u64(3);
        let mut t = now + Duration::from_millis(100);
        for _ in 0..300 {
            p.handle_timeout(t, &mut rng, &mut out);
            t += RANDOM_GAP;
        }
        let s = sends(&out);
        assert_eq!(s.len(), 300);
        assert!(s[..256].iter().all(|x| x.2 == LOW_TTL));
        assert!(s[256..].iter().all(|x| x.2 == DEFAULT_TTL));
        assert_eq!(p.stop(Some(PunchSocket::Extra(7))).len(), 255);
    }

    #[test]
    fn responder_echoes_and_initiator_connects_once() {
        let mut out = VecDeque::new();
        let mut r = Puncher::new(false, DHT, Firewall::CONSISTENT);
        assert!(!r.on_punch(DHT, a("1.2.3.4:5"), &mut out));
        assert_eq!(sends(&out), vec![(DHT, a("1.2.3.4:5"), DEFAULT_TTL)]);
        let mut i = Puncher::new(true, DHT, Firewall::CONSISTENT);
        assert!(i.on_punch(PunchSocket::Extra(3), a("1.2.3.4:5"), &mut out));
        assert!(!i.on_punch(DHT, a("1.2.3.4:6"), &mut out));
        assert_eq!(i.connected, Some((PunchSocket::Extra(3), a("1.2.3.4:5"))));
    }
}
