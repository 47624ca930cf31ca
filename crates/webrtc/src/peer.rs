//! One browser's peer connection on the answering side, sans-IO: str0m's [`Rtc`] (ICE, DTLS,
//! SCTP) plus one [`Session`] per `peerhost/1` data channel.
//!
//! Drain contract (str0m's single-mutation rule, kept inside this type):
//! 1. mutate with one `handle_*` call ([`Peer::handle_receive`], [`Peer::handle_timeout`],
//!    [`Peer::handle_answer`]); the peer drains str0m and writes what its sessions have
//!    ready while SCTP has room;
//! 2. drain [`Peer::poll_transmit`] (datagrams to send from the socket),
//!    [`Peer::poll_request`] (requests for the gateway, answered later through
//!    [`Peer::handle_answer`]) and [`Peer::poll_event`];
//! 3. sleep until [`Peer::poll_timeout`], or the next datagram or answer.
//!
//! What this type does not do: open sockets, resolve mDNS names (a browser's `.local` host
//! candidates are dropped from the offer: the browser reaches us, and we learn its address
//! as a peer-reflexive candidate from its checks), read the store.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::channel::ChannelId;
use str0m::config::{CryptoProvider, DtlsCert};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event as RtcEvent, IceConnectionState, IceCreds, Input, Output, Rtc};

use crate::frame::{ContentType, GoAwayCode, SUBPROTOCOL};
use crate::session::{Limits, Session};

/// Limits and timing of one peer connection (`protocol/webrtc.md` §4).
#[derive(Debug, Clone)]
pub struct Config {
    /// Each data channel's limits.
    pub session: Limits,
    /// Data channels open at once; more are answered GOAWAY `Limit` and closed.
    pub max_channels: usize,
    /// Without a message from the browser for this long (and nothing in flight), close.
    pub idle_timeout: Duration,
    /// Not connected (ICE and DTLS) this long after the answer: close.
    pub connect_timeout: Duration,
    /// str0m's SCTP send buffer: bytes written and not yet acknowledged, per connection, at
    /// most (a hard cap above [`Config::window`]).
    pub sctp_buffer: usize,
    /// The send window on a path without delay: the channels write while the connection's
    /// bytes written and not yet acknowledged stay within `window + window_rate × RTT`
    /// (always at least one message). A browser's UDP receive buffer holds ~43 datagrams
    /// (Chromium asks for 64 KiB, the kernel allows 128 KiB at ~2.3 KB per datagram and
    /// releases what was read in 32 KiB steps): more in flight, arriving back to back on a
    /// short path while the browser's network thread waits for a core, overflows it, and
    /// SCTP's 1 s minimum retransmission timeout stalls the channel.
    pub window: usize,
    /// Bytes per second added to the window per second of round trip (the path's smallest
    /// ICE round trip seen; none known yet: nothing added), so a long path carries at least
    /// this rate per browser whatever its delay: there, the slowest link spaces the
    /// datagrams out and the receive buffer does not overflow.
    pub window_rate: usize,
    /// First retransmission of an ICE check (doubling after; str0m's default, 250 ms). 100 ms
    /// did not change the ~1 s connect of the lab's symmetric-peer cells.
    pub initial_stun_rto: Duration,
    /// str0m's MTU target (576..=1500): an SCTP packet carries up to `mtu - 88` bytes of
    /// data, and its datagram is at most `mtu - 11` bytes (77 bytes of SCTP and DTLS).
    pub mtu: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            session: Limits::default(),
            max_channels: 4,
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            // str0m's SCTP (sctp-proto 0.10) rescans every chunk in flight for each packet
            // it sends: CPU per byte grows with what is in flight (`tests/pair.rs`
            // throughput), another reason to keep the window small on short paths.
            sctp_buffer: 1 << 20,
            window: 40 << 10,
            window_rate: 4_000_000,
            initial_stun_rto: Duration::from_millis(250),
            // Datagrams of at most 1228 bytes: what Chromium's own data channels send (an SCTP
            // MTU of 1191), so a path that carries a browser's carries ours; within IPv6's
            // 1280. 8% more data per datagram than str0m's 1150, and per slot of the
            // browser's receive buffer.
            mtu: 1239,
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The local address to send from (the socket's).
    pub source: SocketAddr,
    /// Where to.
    pub destination: SocketAddr,
    /// The bytes.
    pub contents: Vec<u8>,
}

/// What a peer connection reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// ICE and DTLS are up.
    Connected {
        /// The browser's address in use (often peer-reflexive).
        remote: Option<SocketAddr>,
    },
    /// A `peerhost/1` channel opened.
    ChannelOpen,
    /// A channel was closed by us with this GOAWAY.
    ChannelRefused {
        /// The code sent.
        code: GoAwayCode,
        /// The reason sent.
        reason: String,
    },
    /// The connection ended (see [`Peer::close_reason`]).
    Closed,
}

/// Why a peer could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The offer is not SDP str0m accepts.
    #[error("bad offer: {0}")]
    BadOffer(String),
    /// The offer has no data channel (an `m=application … webrtc-datachannel` section).
    #[error("the offer has no data channel")]
    NoDataChannel,
    /// str0m refused the offer.
    #[error("offer refused: {0}")]
    Refused(String),
}

/// Counters of one peer connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams received and their bytes.
    pub datagrams_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Requests received over all channels.
    pub requests: u64,
    /// Answers completely written.
    pub answered: u64,
    /// Body bytes written.
    pub body_bytes: u64,
    /// Channels opened.
    pub channels: u64,
}

struct Chan {
    session: Session,
    /// A message taken from the session that SCTP did not accept yet.
    pending: Option<Vec<u8>>,
    /// When the GOAWAY was written: the channel closes once SCTP has it acknowledged, or
    /// [`LINGER`] later.
    closed_at: Option<Instant>,
}

/// Messages up to this size are written whatever the window (what they add in flight is
/// bounded by the requests in flight).
const SMALL: usize = 4096;

/// How long a channel whose GOAWAY is written waits for SCTP to deliver it before closing.
const LINGER: Duration = Duration::from_secs(2);

/// One browser's peer connection. See the module docs for the drain contract.
pub struct Peer {
    rtc: Rtc,
    config: Config,
    ufrag: String,
    channels: HashMap<ChannelId, Chan>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    requests: VecDeque<(ChannelId, u32, String)>,
    rtc_timeout: Instant,
    created: Instant,
    last_heard: Instant,
    connected: Option<Instant>,
    remote: Option<SocketAddr>,
    close_reason: Option<String>,
    /// The smallest ICE round trip seen on the nominated pair.
    min_rtt: Option<Duration>,
    /// The browser's server-reflexive addresses from the offer (and trickled ones).
    public: Vec<SocketAddr>,
    /// The browser's ICE ufrag (its offer's `a=ice-ufrag`): names its trickled candidates.
    remote_ufrag: String,
    /// Trickled candidates taken so far (at most [`MAX_TRICKLED`]).
    trickled: usize,
    /// Close the connection once every session's GOAWAY is written.
    closing: bool,
    stats: Stats,
    /// Stats of sessions already removed.
    done: crate::session::Stats,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("ufrag", &self.ufrag)
            .field("channels", &self.channels.len())
            .field("connected", &self.connected)
            .field("close_reason", &self.close_reason)
            .finish_non_exhaustive()
    }
}

/// Whether an `a=candidate` line names an IP address (not an mDNS `….local` name).
fn candidate_has_ip(line: &str) -> bool {
    // candidate:<foundation> <component> <proto> <priority> <address> <port> typ …
    line.split_whitespace()
        .nth(4)
        .is_some_and(|a| a.parse::<std::net::IpAddr>().is_ok())
}

/// The addresses of the offer's server-reflexive candidates (the browser's public side, as
/// its STUN server saw it), at most 8: where a birthday search probes.
pub fn offer_public_addresses(sdp: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in sdp.lines() {
        let Some(c) = line.trim_end().strip_prefix("a=candidate:") else {
            continue;
        };
        let f: Vec<&str> = c.split_whitespace().collect();
        if f.len() >= 8 && f[6] == "typ" && f[7] == "srflx" {
            if let (Ok(ip), Ok(port)) = (f[4].parse::<std::net::IpAddr>(), f[5].parse::<u16>()) {
                let a = SocketAddr::new(ip, port);
                if !out.contains(&a) && out.len() < 8 {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// The offer with the candidates we cannot use removed: mDNS host names (Chromium's default
/// for host candidates) and TCP candidates. Returns the SDP and how many were removed.
pub fn sanitize_offer(sdp: &str) -> (String, usize) {
    let mut out = String::with_capacity(sdp.len());
    let mut removed = 0;
    for line in sdp.split_inclusive('\n') {
        let t = line.trim_end();
        if let Some(c) = t.strip_prefix("a=candidate:") {
            let proto_udp = c
                .split_whitespace()
                .nth(2)
                .is_some_and(|p| p.eq_ignore_ascii_case("udp"));
            if !proto_udp || !candidate_has_ip(t) {
                removed += 1;
                continue;
            }
        }
        out.push_str(line);
    }
    (out, removed)
}

/// Trickled candidates one connection takes at most (a browser has one srflx candidate per
/// STUN server and interface; the rest are spent on nothing).
pub const MAX_TRICKLED: usize = 8;

/// The offer's ICE ufrag (`a=ice-ufrag:…`, the first one: a data channel offer has one media
/// section), if any.
pub fn offer_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
        .filter(|u| !u.is_empty() && u.len() <= 256)
}

/// A random ICE string of `n` characters from the ice-char set.
fn ice_string(n: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";
    (0..n)
        .map(|_| char::from(CHARS[rand::random::<usize>() % CHARS.len()]))
        .collect()
}

impl Peer {
    /// Answer a browser's `offer` (SDP): a peer connection with our `candidates` (a host
    /// candidate for the socket, a server-reflexive one per STUN-learned address, with the
    /// socket as base), and the answer SDP to send back. `cert` is the node's DTLS certificate
    /// (its fingerprint is in the answer).
    pub fn accept(
        offer: &str,
        candidates: &[Candidate],
        crypto: Arc<CryptoProvider>,
        cert: Option<DtlsCert>,
        config: Config,
        now: Instant,
    ) -> Result<(Self, String), PeerError> {
        let public = offer_public_addresses(offer);
        let remote_ufrag = offer_ufrag(offer).unwrap_or_default().to_owned();
        let (sdp, _) = sanitize_offer(offer);
        if !sdp.contains("webrtc-datachannel") {
            return Err(PeerError::NoDataChannel);
        }
        let offer =
            SdpOffer::from_sdp_string(&sdp).map_err(|e| PeerError::BadOffer(e.to_string()))?;
        let ufrag = ice_string(8);
        let mtu = config.mtu.clamp(
            str0m::DATAGRAM_MTU_TARGET_MIN,
            str0m::DATAGRAM_MTU_TARGET_MAX,
        );
        let mut builder = Rtc::builder()
            .set_crypto_provider(crypto)
            .set_local_ice_credentials(IceCreds {
                ufrag: ufrag.clone(),
                pass: ice_string(24),
            })
            .set_sctp_max_buffered_amount(config.sctp_buffer)
            // For the nominated pair's ICE round trip (`Event::PeerStats`), which sizes the
            // send window.
            .set_stats_interval(Some(Duration::from_secs(1)))
            .set_mtu(mtu..=mtu.max(str0m::DATAGRAM_MTU_WARN))
            .clear_codecs();
        if let Some(cert) = cert {
            builder = builder.set_dtls_cert(cert);
        }
        builder.set_initial_stun_rto(config.initial_stun_rto);
        let mut rtc = builder.build(now);
        for c in candidates {
            rtc.add_local_candidate(c.clone());
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| PeerError::Refused(e.to_string()))?;
        let mut peer = Self {
            rtc,
            config,
            ufrag,
            channels: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            requests: VecDeque::new(),
            rtc_timeout: now,
            created: now,
            last_heard: now,
            connected: None,
            remote: None,
            close_reason: None,
            min_rtt: None,
            public,
            remote_ufrag,
            trickled: 0,
            closing: false,
            stats: Stats::default(),
            done: Default::default(),
        };
        peer.drain(now);
        Ok((peer, answer.to_sdp_string()))
    }

    /// The browser's server-reflexive addresses named in its offer.
    pub fn remote_public(&self) -> &[SocketAddr] {
        &self.public
    }

    /// The browser's ICE ufrag, from its offer (empty if it had none).
    pub fn remote_ufrag(&self) -> &str {
        &self.remote_ufrag
    }

    /// A candidate the browser trickled after its offer (`candidate:…`, as
    /// `RTCIceCandidate.candidate`): taken if it is UDP with an IP address (not an mDNS name),
    /// at most [`MAX_TRICKLED`] per connection. Returns its address when it is a new
    /// server-reflexive one (where a birthday search would probe), and whether it was taken.
    pub fn add_remote_candidate(&mut self, line: &str, now: Instant) -> (bool, Option<SocketAddr>) {
        if self.trickled >= MAX_TRICKLED || self.closing || !self.is_alive() {
            return (false, None);
        }
        let line = line.trim();
        let line = line.strip_prefix("a=").unwrap_or(line);
        let proto_udp = line
            .split_whitespace()
            .nth(2)
            .is_some_and(|p| p.eq_ignore_ascii_case("udp"));
        if !proto_udp || !candidate_has_ip(line) {
            return (false, None);
        }
        let Ok(c) = Candidate::from_sdp_string(line) else {
            return (false, None);
        };
        self.trickled += 1;
        let mut public = None;
        if c.kind() == str0m::CandidateKind::ServerReflexive
            && !self.public.contains(&c.addr())
            && self.public.len() < 8
        {
            self.public.push(c.addr());
            public = Some(c.addr());
        }
        self.rtc.add_remote_candidate(c);
        // Its pairs' checks start at once, not at str0m's next timeout.
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            self.fail(format!("connection error: {e}"));
        }
        self.drain(now);
        (true, public)
    }

    /// The browser's address in use, once connected.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// Our ICE ufrag: a browser's checks name it first in USERNAME (`ours:theirs`).
    pub fn ufrag(&self) -> &str {
        &self.ufrag
    }

    /// Whether `source` is an address this connection has heard from or sends to (a datagram
    /// from it belongs here).
    pub fn accepts(
        &self,
        now: Instant,
        source: SocketAddr,
        local: SocketAddr,
        bytes: &[u8],
    ) -> bool {
        let Ok(contents) = bytes.try_into() else {
            return false;
        };
        self.rtc.accepts(&Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: local,
                contents,
            },
        ))
    }

    /// A datagram from `source` arrived on our socket at `local`.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        local: SocketAddr,
        bytes: &[u8],
    ) {
        if !self.is_alive() {
            return;
        }
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        // RFC 7983: 20..=63 is DTLS; the address it comes from is the browser's in use.
        if bytes.first().is_some_and(|b| (20..64).contains(b)) {
            self.remote = Some(source);
        }
        let Ok(contents) = bytes.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: local,
                contents,
            },
        );
        if let Err(e) = self.rtc.handle_input(input) {
            tracing::debug!("webrtc: {} input error: {e}", self.ufrag);
            self.fail(format!("connection error: {e}"));
        }
        self.drain(now);
        self.pump(now);
    }

    /// Time passed: timers of ICE, DTLS, SCTP, and our idle and connect limits.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.is_alive() {
            return;
        }
        if self.connected.is_none() && now >= self.created + self.config.connect_timeout {
            self.fail("not connected in time".into());
            return;
        }
        if self.connected.is_some()
            && !self.closing
            && now >= self.last_heard + self.config.idle_timeout
        {
            if self.channels.values().all(|c| c.session.is_idle()) {
                for c in self.channels.values_mut() {
                    c.session.close(GoAwayCode::Idle, "idle");
                }
                self.closing = true;
                self.close_reason.get_or_insert_with(|| "idle".into());
            } else {
                // Answers still in flight: that is activity.
                self.last_heard = now;
            }
        }
        if now >= self.rtc_timeout {
            if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
                self.fail(format!("connection error: {e}"));
            }
            self.drain(now);
        }
        self.pump(now);
    }

    /// The gateway's answer to a request from [`Peer::poll_request`].
    pub fn handle_answer(
        &mut self,
        now: Instant,
        channel: ChannelId,
        id: u32,
        status: u16,
        content_type: ContentType,
        body: Vec<u8>,
    ) {
        if let Some(c) = self.channels.get_mut(&channel) {
            c.session.handle_answer(id, status, content_type, body);
        }
        self.pump(now);
    }

    /// Close the connection (e.g. the node shuts down): GOAWAY on every channel, then DTLS
    /// close.
    pub fn close(&mut self, now: Instant, code: GoAwayCode, reason: &str) {
        for c in self.channels.values_mut() {
            c.session.close(code, reason);
        }
        self.closing = true;
        self.close_reason.get_or_insert_with(|| reason.to_owned());
        self.pump(now);
    }

    fn fail(&mut self, reason: String) {
        self.close_reason.get_or_insert(reason);
        self.rtc.disconnect();
        self.channels.clear();
        self.events.push_back(Event::Closed);
    }

    /// Drain str0m's output until its next timeout.
    fn drain(&mut self, now: Instant) {
        loop {
            if !self.rtc.is_alive() {
                if self.close_reason.is_none() {
                    self.close_reason = Some("closed".into());
                    self.events.push_back(Event::Closed);
                }
                return;
            }
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.rtc_timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    let contents: Vec<u8> = t.contents.into();
                    self.stats.datagrams_out += 1;
                    self.stats.bytes_out += contents.len() as u64;
                    self.transmits.push_back(Transmit {
                        source: t.source,
                        destination: t.destination,
                        contents,
                    });
                }
                Ok(Output::Event(e)) => self.handle_rtc_event(now, e),
                Err(e) => {
                    tracing::debug!("webrtc: {} poll error: {e}", self.ufrag);
                    self.fail(format!("connection error: {e}"));
                    return;
                }
            }
        }
    }

    fn handle_rtc_event(&mut self, now: Instant, e: RtcEvent) {
        match e {
            RtcEvent::Connected => {
                self.connected = Some(now);
                self.last_heard = now;
                self.events.push_back(Event::Connected {
                    remote: self.remote,
                });
            }
            RtcEvent::IceConnectionStateChange(s) => {
                tracing::debug!("webrtc: {} ICE {s:?}", self.ufrag);
                if s == IceConnectionState::Disconnected {
                    self.fail("ICE disconnected".into());
                }
            }
            RtcEvent::ChannelOpen(id, _label) => {
                let protocol_ok = self
                    .rtc
                    .channel(id)
                    .and_then(|c| c.config().map(|c| c.protocol == SUBPROTOCOL))
                    .unwrap_or(false);
                let mut session = Session::new(self.config.session.clone());
                if !protocol_ok {
                    session.close(GoAwayCode::Protocol, "channel protocol must be peerhost/1");
                } else if self.channels.len() >= self.config.max_channels {
                    session.close(GoAwayCode::Limit, "too many channels on this connection");
                } else {
                    self.stats.channels += 1;
                    self.events.push_back(Event::ChannelOpen);
                }
                if let Some(c) = session.close_reason() {
                    self.events.push_back(Event::ChannelRefused {
                        code: c.code,
                        reason: c.reason.clone(),
                    });
                }
                self.channels.insert(
                    id,
                    Chan {
                        session,
                        pending: None,
                        closed_at: None,
                    },
                );
                self.last_heard = now;
            }
            RtcEvent::ChannelData(d) => {
                self.last_heard = now;
                if let Some(c) = self.channels.get_mut(&d.id) {
                    c.session.handle_message(d.binary, &d.data);
                    if let Some(close) = c.session.close_reason() {
                        // A browser that breaks the protocol or floods loses the whole
                        // connection once its GOAWAY is out.
                        if matches!(
                            close.code,
                            GoAwayCode::Protocol | GoAwayCode::Flood | GoAwayCode::TooLarge
                        ) {
                            self.closing = true;
                            self.close_reason.get_or_insert_with(|| {
                                format!("{:?}: {}", close.code, close.reason)
                            });
                        }
                    }
                    while let Some((rid, path)) = c.session.poll_request() {
                        self.requests.push_back((d.id, rid, path));
                    }
                }
            }
            RtcEvent::ChannelClose(id) => {
                if let Some(c) = self.channels.remove(&id) {
                    self.add_done(c.session.stats());
                }
            }
            RtcEvent::PeerStats(s) => {
                let rtt = s
                    .selected_candidate_pair
                    .and_then(|p| p.current_round_trip_time);
                if let Some(rtt) = rtt {
                    self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
                }
            }
            RtcEvent::ChannelBufferedAmountLow(_) => {}
            _ => {}
        }
    }

    fn add_done(&mut self, s: crate::session::Stats) {
        self.done.requests += s.requests;
        self.done.answered += s.answered;
        self.done.body_bytes += s.body_bytes;
    }

    /// The send window now: bytes written and not yet acknowledged, over all channels.
    pub fn window(&self) -> usize {
        let rtt = self.min_rtt.unwrap_or_default();
        let extra = (self.config.window_rate as f64 * rtt.as_secs_f64()) as usize;
        self.config
            .window
            .saturating_add(extra)
            .min(self.config.sctp_buffer)
    }

    /// Write what the sessions have while the window has room; dispatch what they allow;
    /// close finished channels.
    fn pump(&mut self, now: Instant) {
        let ids: Vec<ChannelId> = self.channels.keys().copied().collect();
        let window = self.window();
        // Nothing acknowledges while we write: what is unacknowledged only grows here.
        let mut unacked: usize = ids
            .iter()
            .map(|id| self.rtc.channel(*id).map_or(0, |mut c| c.buffered_amount()))
            .sum();
        for id in ids {
            loop {
                if !self.rtc.is_alive() {
                    return;
                }
                let Some(chan) = self.channels.get_mut(&id) else {
                    break;
                };
                let Some(msg) = chan.pending.take().or_else(|| chan.session.poll_message()) else {
                    break;
                };
                // At least one message in flight whatever the window, and small ones (a
                // head, a refusal, a GOAWAY) are not held behind a large answer's bytes.
                let fits = unacked == 0 || msg.len() <= SMALL || unacked + msg.len() <= window;
                let accepted = fits
                    && match self.rtc.channel(id) {
                        Some(mut c) => c.write(true, &msg).unwrap_or(false),
                        None => false,
                    };
                if !accepted {
                    if let Some(chan) = self.channels.get_mut(&id) {
                        chan.pending = Some(msg);
                    }
                    break;
                }
                unacked += msg.len();
                self.drain(now);
            }
            let Some(chan) = self.channels.get_mut(&id) else {
                continue;
            };
            while let Some((rid, path)) = chan.session.poll_request() {
                self.requests.push_back((id, rid, path));
            }
            if chan.session.is_closed() && chan.pending.is_none() {
                // Let SCTP deliver the GOAWAY (and what was before it) first: a stream reset
                // or a DTLS close would drop it.
                let since = *chan.closed_at.get_or_insert(now);
                let unacked = self.rtc.channel(id).map_or(0, |mut c| c.buffered_amount());
                if unacked > 0 && now < since + LINGER {
                    continue;
                }
                let Some(chan) = self.channels.get_mut(&id) else {
                    continue;
                };
                let stats = chan.session.stats();
                self.channels.remove(&id);
                self.add_done(stats);
                if self.rtc.is_alive() {
                    self.rtc.direct_api().close_data_channel(id);
                    self.drain(now);
                }
            }
        }
        if self.closing && self.channels.is_empty() && self.rtc.is_alive() {
            if let Err(e) = self.rtc.close() {
                tracing::debug!("webrtc: {} close: {e}", self.ufrag);
            }
            self.drain(now);
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next request for the gateway: `(channel, request id, path)`.
    pub fn poll_request(&mut self) -> Option<(ChannelId, u32, String)> {
        self.requests.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`Peer::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.rtc_timeout;
        for c in self.channels.values() {
            if let Some(at) = c.closed_at {
                t = t.min(at + LINGER);
            }
        }
        if self.connected.is_none() {
            t = t.min(self.created + self.config.connect_timeout);
        } else if !self.closing {
            t = t.min(self.last_heard + self.config.idle_timeout);
        }
        t
    }

    /// Whether the connection is still up (or being set up).
    pub fn is_alive(&self) -> bool {
        self.rtc.is_alive()
    }

    /// When ICE and DTLS came up.
    pub fn connected_at(&self) -> Option<Instant> {
        self.connected
    }

    /// When the offer was accepted.
    pub fn created_at(&self) -> Instant {
        self.created
    }

    /// Why the connection ended (or is ending).
    pub fn close_reason(&self) -> Option<&str> {
        self.close_reason.as_deref()
    }

    /// Data channels open.
    pub fn channels(&self) -> usize {
        self.channels.len()
    }

    /// Requests in flight over all channels.
    pub fn inflight(&self) -> usize {
        self.channels.values().map(|c| c.session.inflight()).sum()
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.requests = self.done.requests;
        s.answered = self.done.answered;
        s.body_bytes = self.done.body_bytes;
        for c in self.channels.values() {
            let x = c.session.stats();
            s.requests += x.requests;
            s.answered += x.answered;
            s.body_bytes += x.body_bytes;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Chromium 14x offer's candidate section (addresses from the lab's ranges).
    const OFFER_TAIL: &str = "a=candidate:1 1 udp 2113937151 3c1e8e5b-1d3f-4c6e-9f0b-7a3b1a2c4d5e.local 54321 typ host generation 0 network-cost 999\r\n\
a=candidate:2 1 udp 1677729535 203.0.113.12 40001 typ srflx raddr 0.0.0.0 rport 0 generation 0 network-cost 999\r\n\
a=candidate:3 1 tcp 1518280447 10.2.0.2 9 typ host tcptype active generation 0\r\n\
a=end-of-candidates\r\n";

    #[test]
    fn public_addresses_come_from_srflx_candidates() {
        assert_eq!(
            offer_public_addresses(OFFER_TAIL),
            vec!["203.0.113.12:40001".parse().unwrap()]
        );
    }

    #[test]
    fn offers_lose_mdns_and_tcp_candidates() {
        let (sdp, removed) = sanitize_offer(OFFER_TAIL);
        assert_eq!(removed, 2);
        assert!(sdp.contains("203.0.113.12 40001 typ srflx"));
        assert!(!sdp.contains(".local"));
        assert!(!sdp.contains("tcp"));
        assert!(sdp.ends_with("a=end-of-candidates\r\n"));
    }
}
