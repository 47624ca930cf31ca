//! One UDX stream as a sans-IO state machine: the sender (packetizing, retransmission with
//! RACK-TLP and RTO, BBR pacing, MTU probing, zero-window probes) and the receiver (in-order
//! delivery, the bounded out-of-order buffer, SACK generation, END/DESTROY).
//!
//! The logic follows libudx `src/udx.c` (functions named in comments); the deliberate
//! differences are listed in `protocol/udx.md`.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::bbr::{self, CaState, Congestion, Ctx, RateSample, SendStamp};
use crate::bytes::ByteQueue;
use crate::error::{Error, StreamError};
use crate::filter::{Kind, WinFilter};
use crate::packet::{
    self, Flags, HEADER_SIZE, Header, MAX_DATAGRAM, Packet, SackBlock, seq_diff, seq_le, seq_lt,
};
use crate::{Firewall, StreamConfig, StreamInfo, Transmit};

mod recovery;
mod recv;
mod send;

/// Starting path MTU (`UDX_MTU_BASE`).
pub const MTU_BASE: u16 = 1200;
/// Largest MTU probed (`UDX_MTU_MAX`).
pub const MTU_MAX: u16 = 1500;
/// Probe step (`UDX_MTU_STEP`).
pub(crate) const MTU_STEP: u16 = 32;
/// Lost probes before the search stops (`UDX_MTU_MAX_PROBES`).
pub(crate) const MTU_MAX_PROBES: u8 = 3;
/// IPv4 + UDP + UDX header bytes (`UDX_IPV4_HEADER_SIZE`).
const IPV4_OVERHEAD: u16 = 20 + 8 + HEADER_SIZE as u16;
/// IPv6 + UDP + UDX header bytes (`UDX_IPV6_HEADER_SIZE`).
const IPV6_OVERHEAD: u16 = 40 + 8 + HEADER_SIZE as u16;
/// Largest payload of an unreliable message: it must fit a 2048-byte datagram.
pub const MAX_MESSAGE: usize = MAX_DATAGRAM - HEADER_SIZE;

const INITIAL_RTO: Duration = Duration::from_millis(1000);
const MIN_RTO: Duration = Duration::from_millis(1000);
const MAX_RTO: Duration = Duration::from_millis(30_000);
const MAX_RTT_US: u64 = 30_000_000;
/// Retransmission timeouts of one packet before the stream fails (`UDX_MAX_RTO_TIMEOUTS`).
const MAX_RTO_TIMEOUTS: u8 = 6;
/// Extra ack delay allowed for a lone packet's probe (`UDX_TLP_MAX_ACK_DELAY`).
const TLP_MAX_ACK_DELAY_US: u64 = 2_000;
/// Floor for the tail-loss probe timeout (see `protocol/udx.md`).
const TLP_MIN_US: u64 = 10_000;
/// Initial pacing tokens (`UDX_INIT_PACING_RATE`).
const INITIAL_TOKENS: f64 = 25_000.0;
/// Largest span of sequence numbers the sender keeps outstanding.
const MAX_OUTSTANDING: u32 = 16_384;
/// Largest span beyond `ack` the receiver buffers out of order.
const MAX_OUT_OF_ORDER: u64 = 16_384;
/// Queued outgoing messages per stream.
const MAX_QUEUED_MESSAGES: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimerKind {
    Rto,
    RackReo,
    Tlp,
    Zwp,
    Keepalive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MtuState {
    Base,
    Search,
    Complete,
}

/// A packet that was sent and not yet acknowledged (libudx `udx_packet_t`).
#[derive(Debug)]
struct SentPacket {
    flags: Flags,
    payload: Vec<u8>,
    /// Retransmits go where the original went, with the original id (`pkt->remote_addr`).
    dest: SocketAddr,
    remote_id: u32,
    time_sent_us: u64,
    transmits: u8,
    retransmitted: bool,
    lost: bool,
    in_flight: bool,
    rto_timeouts: u8,
    mtu_probe: bool,
    padding: u8,
    stamp: SendStamp,
    /// Generation of the latest entry for this packet in `Stream::order`.
    send_gen: u32,
}

impl SentPacket {
    /// libudx `pkt->size`: header + payload, without probe padding.
    fn size(&self) -> usize {
        HEADER_SIZE + self.payload.len()
    }
}

/// What a stream hands up to its endpoint.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    Readable,
    Writable,
    Message(Vec<u8>),
    RemoteChanged,
    Closed(Option<StreamError>),
}

/// Result of [`Stream::read`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    Data(usize),
    Eof,
    Blocked,
}

#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) local_id: u32,
    remote_id: u32,
    pub(crate) remote: Option<SocketAddr>,
    pub(crate) firewall: Firewall,
    /// Where the first packet came from while [`Firewall::Accept`] took packets in before
    /// `connect` (ours: [`crate::Endpoint::set_firewall`] may connect there later).
    pub(crate) accepted_from: Option<SocketAddr>,
    config: StreamConfig,
    epoch: Instant,

    // lifecycle
    /// `end()` was called.
    ending: bool,
    /// END is queued but not packetized yet.
    end_pending: bool,
    /// Our END was acknowledged (`UDX_STREAM_ENDED`).
    ended: bool,
    /// The peer sent END at `remote_ended` (`UDX_STREAM_ENDING_REMOTE`).
    ending_remote: bool,
    remote_ended: u32,
    /// EOF reached: every byte before the peer's END was delivered (`UDX_STREAM_ENDED_REMOTE`).
    ended_remote: bool,
    pub(crate) closed: Option<Option<StreamError>>,
    /// Set by the endpoint when the application let go of the stream.
    pub(crate) released: bool,
    destroy_pending: Option<Vec<u8>>,

    // sender
    seq: u32,
    remote_acked: u32,
    write_queue: ByteQueue,
    write_blocked: bool,
    /// Packets `remote_acked..seq`; `None` once SACKed.
    outgoing: VecDeque<Option<SentPacket>>,
    outstanding_bytes: usize,
    /// Send order of in-flight packets as `(seq, generation)`; stale entries are skipped lazily.
    order: VecDeque<(u32, u32)>,
    inflight_pkts: u32,
    retransmit_queue: VecDeque<u32>,
    lost_pkts: u32,
    sacks: u32,
    send_rwnd: u32,
    send_wl1: u32,
    send_wl2: u32,
    messages: VecDeque<Vec<u8>>,
    heartbeat_needed: bool,
    tlp_pending: bool,

    // rtt / timers
    srtt_us: Option<u64>,
    rttvar_us: u64,
    rto: Duration,
    rtt_min: WinFilter,
    timer: Option<(TimerKind, Instant)>,
    next_rto: Instant,
    linger_until: Option<Instant>,

    // RACK-TLP
    ca_state: CaState,
    high_seq: u32,
    rack_rtt_us: u64,
    rack_time_sent_us: u64,
    rack_next_seq: u32,
    rack_fack: u32,
    reordering_seen: bool,
    tlp_in_flight: bool,
    tlp_is_retrans: bool,
    tlp_permitted: bool,
    tlp_end_seq: u32,

    // congestion control and pacing
    cc: Congestion,
    tokens: f64,
    last_refill_us: u64,

    // MTU
    mtu: u16,
    mtu_state: MtuState,
    mtu_probe_wanted: bool,
    mtu_probe_count: u8,
    mtu_probe_size: u16,
    mtu_max: u16,
    remote_changing: bool,
    seq_on_remote_changed: u32,

    // receiver
    ack: u32,
    ack_ext: u64,
    readable: ByteQueue,
    ooo: BTreeMap<u64, (Flags, Vec<u8>)>,
    ooo_bytes: usize,
    sack_ranges: BTreeMap<u64, u64>,
    ack_needed: bool,
    last_rwnd: u32,

    // counters
    stats: Counters,
    pub(crate) events: VecDeque<StreamEvent>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    bytes_tx: u64,
    packets_tx: u64,
    bytes_rx: u64,
    packets_rx: u64,
    retransmits: u64,
    rto_count: u64,
    fast_recoveries: u64,
    dropped_sacks: u64,
}

impl Stream {
    pub(crate) fn new(local_id: u32, config: StreamConfig, now: Instant) -> Self {
        let mss = u32::from(MTU_BASE - IPV4_OVERHEAD);
        let mut s = Self {
            local_id,
            remote_id: 0,
            remote: None,
            firewall: config.firewall,
            accepted_from: None,
            epoch: now,
            ending: false,
            end_pending: false,
            ended: false,
            ending_remote: false,
            remote_ended: 0,
            ended_remote: false,
            closed: None,
            released: false,
            destroy_pending: None,
            seq: 0,
            remote_acked: 0,
            write_queue: ByteQueue::default(),
            write_blocked: false,
            outgoing: VecDeque::new(),
            outstanding_bytes: 0,
            order: VecDeque::new(),
            inflight_pkts: 0,
            retransmit_queue: VecDeque::new(),
            lost_pkts: 0,
            sacks: 0,
            send_rwnd: crate::DEFAULT_RECV_WINDOW,
            send_wl1: 0,
            send_wl2: 0,
            messages: VecDeque::new(),
            heartbeat_needed: false,
            tlp_pending: false,
            srtt_us: None,
            rttvar_us: 0,
            rto: INITIAL_RTO,
            rtt_min: WinFilter::new(Kind::Min, 0, f64::INFINITY),
            timer: None,
            next_rto: now,
            linger_until: None,
            ca_state: CaState::Open,
            high_seq: 0,
            rack_rtt_us: 0,
            rack_time_sent_us: 0,
            rack_next_seq: 0,
            rack_fack: 0,
            reordering_seen: false,
            tlp_in_flight: false,
            tlp_is_retrans: false,
            tlp_permitted: false,
            tlp_end_seq: 0,
            cc: Congestion::new(mss),
            tokens: INITIAL_TOKENS,
            last_refill_us: 0,
            mtu: MTU_BASE,
            mtu_state: MtuState::Base,
            mtu_probe_wanted: false,
            mtu_probe_count: 0,
            mtu_probe_size: MTU_BASE,
            mtu_max: config.mtu_max.clamp(MTU_BASE, MTU_MAX),
            remote_changing: false,
            seq_on_remote_changed: 0,
            ack: 0,
            ack_ext: 0,
            readable: ByteQueue::default(),
            ooo: BTreeMap::new(),
            ooo_bytes: 0,
            sack_ranges: BTreeMap::new(),
            ack_needed: false,
            last_rwnd: config.recv_window,
            stats: Counters::default(),
            events: VecDeque::new(),
            config,
        };
        s.set_seq(config.initial_seq);
        s.set_ack(config.initial_ack);
        s
    }

    fn set_seq(&mut self, seq: u32) {
        // udx_stream_set_seq
        self.seq = seq;
        self.remote_acked = seq;
        self.send_wl2 = seq;
        self.high_seq = seq;
        self.rack_fack = seq;
        self.rack_next_seq = seq;
    }

    fn set_ack(&mut self, ack: u32) {
        // udx_stream_set_ack
        self.ack = ack;
        self.ack_ext = u64::from(ack);
        self.send_wl1 = ack;
    }

    fn us(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_micros() as u64
    }

    fn at(&self, us: u64) -> Instant {
        self.epoch + Duration::from_micros(us)
    }

    fn is_v4(&self) -> bool {
        !matches!(self.remote, Some(SocketAddr::V6(_)))
    }

    /// Payload bytes per full packet (`udx__max_payload`).
    fn max_payload(&self) -> usize {
        let overhead = if self.is_v4() {
            IPV4_OVERHEAD
        } else {
            IPV6_OVERHEAD
        };
        usize::from(self.mtu - overhead)
    }

    fn ctx(&self, now_us: u64) -> Ctx {
        Ctx {
            now_us,
            inflight: self.inflight_pkts,
            ca_state: self.ca_state,
            srtt_us: self.srtt_us,
            mss: self.max_payload() as u32,
        }
    }

    fn is_open(&self) -> bool {
        self.closed.is_none()
    }

    // ------------------------------------------------------------------ application calls

    pub(crate) fn connect(
        &mut self,
        remote_id: u32,
        remote: SocketAddr,
        now: Instant,
    ) -> Result<(), Error> {
        if !self.is_open() {
            return Err(Error::Closed);
        }
        if self.remote.is_some() {
            return Err(Error::AlreadyConnected);
        }
        if remote.port() == 0 {
            return Err(Error::InvalidAddress);
        }
        self.remote_id = remote_id;
        self.remote = Some(remote);
        self.reset_mtu();
        if self.mtu_max <= MTU_BASE {
            self.mtu_state = MtuState::Complete;
        }
        // udx_stream_connect: a deferred ack (data arrived before connect) goes out now.
        if let Some(ka) = self.config.keepalive {
            self.start_timer(TimerKind::Keepalive, now + ka);
        }
        Ok(())
    }

    pub(crate) fn change_remote(
        &mut self,
        remote_id: u32,
        remote: SocketAddr,
    ) -> Result<bool, Error> {
        if !self.is_open() {
            return Err(Error::Closed);
        }
        if self.remote.is_none() {
            return Err(Error::NotConnected);
        }
        if remote.port() == 0 {
            return Err(Error::InvalidAddress);
        }
        if self.remote_changing {
            return Err(Error::RemoteChanging);
        }
        self.remote_id = remote_id;
        self.remote = Some(remote);
        // udx_stream_change_remote: defer completion until everything sent so far is acked.
        let deferred = self.seq != self.remote_acked;
        if deferred {
            self.remote_changing = true;
            self.seq_on_remote_changed = self.seq;
        } else {
            self.events.push_back(StreamEvent::RemoteChanged);
        }
        self.reset_mtu();
        Ok(!deferred)
    }

    fn reset_mtu(&mut self) {
        // reset_mtu_state_machine
        self.mtu = MTU_BASE;
        self.mtu_state = MtuState::Base;
        self.mtu_probe_count = 0;
        self.mtu_probe_size = MTU_BASE;
        self.mtu_probe_wanted = false;
        if self.mtu_max <= MTU_BASE {
            self.mtu_state = MtuState::Complete;
        }
    }

    pub(crate) fn write(&mut self, data: &[u8], now: Instant) -> Result<usize, Error> {
        self.check_writable()?;
        let room = self
            .config
            .send_buffer
            .saturating_sub(self.write_queue.len());
        let n = room.min(data.len());
        if n < data.len() {
            self.write_blocked = true;
        }
        if n == 0 {
            return Ok(0);
        }
        let was_idle = self.write_queue.is_empty() && self.outstanding_bytes == 0;
        self.write_queue.push_slice(&data[..n]);
        self.on_queued(was_idle, now);
        Ok(n)
    }

    fn check_writable(&self) -> Result<(), Error> {
        if let Some(reason) = &self.closed {
            return Err(match reason {
                Some(e) => Error::Stream(*e),
                None => Error::Closed,
            });
        }
        if self.remote.is_none() {
            return Err(Error::NotConnected);
        }
        if self.ending {
            return Err(Error::Ended);
        }
        Ok(())
    }

    fn on_queued(&mut self, was_idle: bool, now: Instant) {
        // _udx_stream_write: an idle stream facing a zero window probes at once.
        if was_idle && self.send_rwnd == 0 {
            self.heartbeat_needed = true;
            self.start_timer(TimerKind::Zwp, now + self.rto);
        }
    }

    pub(crate) fn end(&mut self, now: Instant) -> Result<(), Error> {
        self.check_writable()?;
        self.ending = true;
        self.end_pending = true;
        let was_idle = self.write_queue.is_empty() && self.outstanding_bytes == 0;
        self.on_queued(was_idle, now);
        Ok(())
    }

    pub(crate) fn send_message(&mut self, data: &[u8]) -> Result<(), Error> {
        if let Some(reason) = &self.closed {
            return Err(match reason {
                Some(e) => Error::Stream(*e),
                None => Error::Closed,
            });
        }
        if self.remote.is_none() {
            return Err(Error::NotConnected);
        }
        if data.len() > MAX_MESSAGE {
            return Err(Error::MessageTooLarge);
        }
        if self.messages.len() >= MAX_QUEUED_MESSAGES {
            return Err(Error::QueueFull);
        }
        self.messages.push_back(data.to_vec());
        Ok(())
    }

    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Result<ReadOutcome, Error> {
        if let Some(Some(e)) = self.closed {
            return Err(Error::Stream(e));
        }
        if !self.readable.is_empty() {
            let n = self.readable.read(buf);
            self.maybe_window_update();
            return Ok(ReadOutcome::Data(n));
        }
        if self.ended_remote {
            return Ok(ReadOutcome::Eof);
        }
        if self.closed.is_some() {
            // Closed by destroy() before the peer ended.
            return Ok(ReadOutcome::Eof);
        }
        Ok(ReadOutcome::Blocked)
    }

    /// After the application read, tell the sender if our window opened up a lot.
    fn maybe_window_update(&mut self) {
        let rwnd = self.recv_window();
        let half = self.config.recv_window / 2;
        if (self.last_rwnd < half && rwnd >= half) || (self.last_rwnd == 0 && rwnd > 0) {
            self.ack_needed = true;
        }
    }

    pub(crate) fn destroy(&mut self) {
        if !self.is_open() {
            return;
        }
        // udx_stream_destroy: one DESTROY, never retransmitted; it consumes a seq.
        if self.remote.is_some() {
            let h = self.header(Flags::DESTROY);
            self.destroy_pending = Some(packet::encode_packet(h, 0, &[]));
            self.seq = self.seq.wrapping_add(1);
        }
        self.close(None);
    }

    /// Unread bytes plus out-of-order bytes held for the application.
    pub(crate) fn buffered(&self) -> usize {
        self.readable.len() + self.ooo_bytes
    }

    /// Receive window to advertise (`get_recv_rwnd`): what is left of the configured window.
    fn recv_window(&self) -> u32 {
        let used = u32::try_from(self.buffered()).unwrap_or(u32::MAX);
        self.config.recv_window.saturating_sub(used)
    }

    pub(crate) fn is_end_acked(&self) -> bool {
        self.ended
    }

    pub(crate) fn unacked(&self) -> usize {
        self.write_queue.len() + self.outstanding_bytes
    }

    pub(crate) fn writable_room(&self) -> usize {
        self.config
            .send_buffer
            .saturating_sub(self.write_queue.len())
    }

    fn header(&mut self, flags: Flags) -> Header {
        let rwnd = self.recv_window();
        self.last_rwnd = rwnd;
        Header {
            flags,
            data_offset: 0,
            id: self.remote_id,
            rwnd,
            seq: self.seq,
            ack: self.ack,
        }
    }

    fn close(&mut self, reason: Option<StreamError>) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some(reason);
        // clear_outgoing_packets / clear_incoming_packets
        self.outgoing.clear();
        self.order.clear();
        self.retransmit_queue.clear();
        self.write_queue.clear();
        self.messages.clear();
        self.outstanding_bytes = 0;
        self.inflight_pkts = 0;
        self.lost_pkts = 0;
        self.ooo.clear();
        self.ooo_bytes = 0;
        self.sack_ranges.clear();
        self.heartbeat_needed = false;
        self.tlp_pending = false;
        self.timer = None;
        if reason.is_some() {
            self.readable.clear();
        }
        self.events.push_back(StreamEvent::Closed(reason));
    }

    /// Whether the stream has nothing left to send or wait for and can be dropped.
    pub(crate) fn is_drained(&self) -> bool {
        self.closed.is_some() && self.destroy_pending.is_none() && !self.ack_needed
    }

    /// Let a released stream finish its graceful close, for at most `linger`.
    pub(crate) fn linger(&mut self, now: Instant, linger: Duration) {
        self.released = true;
        if self.is_open() {
            if self.ending || self.ended {
                self.linger_until = Some(now + linger);
            } else {
                self.destroy();
            }
        }
    }

    pub(crate) fn info(&self) -> StreamInfo {
        StreamInfo {
            local_id: self.local_id,
            remote_id: self.remote_id,
            remote: self.remote,
            mtu: self.mtu,
            srtt: self.srtt_us.map(Duration::from_micros),
            rto: self.rto,
            cwnd: self.cc.cwnd,
            inflight: self.inflight_pkts,
            send_rwnd: self.send_rwnd,
            recv_rwnd: self.recv_window(),
            seq: self.seq,
            ack: self.ack,
            remote_acked: self.remote_acked,
            bbr_mode: self.cc.mode(),
            bandwidth: self.cc.bandwidth() * 1000.0 * self.max_payload() as f64,
            pacing_rate: self.cc.pacing_bytes_per_ms * 1000.0,
            retransmits: self.stats.retransmits,
            rto_count: self.stats.rto_count,
            fast_recoveries: self.stats.fast_recoveries,
            dropped_sacks: self.stats.dropped_sacks,
            bytes_tx: self.stats.bytes_tx,
            packets_tx: self.stats.packets_tx,
            bytes_rx: self.stats.bytes_rx,
            packets_rx: self.stats.packets_rx,
            buffered: self.buffered(),
            unacked: self.unacked(),
        }
    }
}
