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

    // ------------------------------------------------------------------ receive path

    /// Process one packet addressed to this stream (`process_packet` after the firewall).
    pub(crate) fn handle_packet(&mut self, now: Instant, len: usize, pkt: &Packet<'_>) {
        self.stats.bytes_rx += len as u64;
        self.stats.packets_rx += 1;
        let h = pkt.header;
        let data_or_end = h.flags.intersects(Flags::DATA | Flags::END);

        if self.closed.is_some() {
            // After a graceful close we keep answering retransmitted DATA/END so the peer can
            // finish too; libudx has already forgotten the stream by then (a TIME_WAIT stand-in).
            if data_or_end && self.closed == Some(None) && !self.released {
                self.ack_needed = true;
            }
            return;
        }
        if h.flags.contains(Flags::HEARTBEAT) {
            self.ack_needed = true;
            return;
        }
        let now_us = self.us(now);
        let prior_remote_acked = self.remote_acked;
        let ack_advanced = seq_lt(prior_remote_acked, h.ack);
        let data_inflight = self.remote_acked != self.seq;

        if seq_le(self.ack, h.seq) {
            if data_or_end && !self.ended_remote {
                self.on_data(h.seq, h.flags, pkt.payload);
            }
            if h.flags.contains(Flags::END) {
                self.ending_remote = true;
                self.remote_ended = h.seq;
            }
            if h.flags.contains(Flags::DESTROY) {
                self.close(Some(StreamError::Reset));
                return;
            }
        }
        if data_or_end {
            // Every DATA or END packet is acknowledged, duplicates included (send_ack).
            self.ack_needed = true;
        }
        if h.flags.contains(Flags::MESSAGE) {
            self.events
                .push_back(StreamEvent::Message(pkt.payload.to_vec()));
        }
        self.check_eof();

        // An ack for something we never sent: ignore the rest.
        if seq_lt(self.seq, h.ack) {
            return;
        }
        if seq_le(self.remote_acked, h.ack)
            && (seq_lt(self.send_wl1, h.seq)
                || (self.send_wl1 == h.seq && seq_le(self.send_wl2, h.ack)))
        {
            if h.rwnd > 0 && matches!(self.timer, Some((TimerKind::Zwp, _))) {
                self.timer = None;
            }
            self.send_rwnd = h.rwnd;
            self.send_wl1 = h.seq;
            self.send_wl2 = h.ack;
        }
        if self.remote_changing && seq_le(self.seq_on_remote_changed, h.ack) {
            self.remote_changing = false;
            self.events.push_back(StreamEvent::RemoteChanged);
        }
        // RACK-TLP 7.4.2: was a loss repaired by the probe?
        if self.tlp_in_flight
            && seq_le(self.tlp_end_seq, h.ack)
            && (!self.tlp_is_retrans || seq_lt(self.tlp_end_seq, h.ack))
        {
            self.tlp_in_flight = false;
        }
        if seq_lt(self.high_seq, h.ack) && self.ca_state != CaState::Open {
            // libudx also sets cwnd = ssthresh here when leaving recovery; with BBR's
            // ssthresh of 0xffff that inflates the window, so we let BBR restore it instead.
            self.ca_state = CaState::Open;
        }

        let delivered_before = self.cc.delivered;
        let lost_before = self.cc.lost;
        let mut rs = RateSample::default();
        let mut p = prior_remote_acked;
        while seq_lt(p, h.ack) {
            if self.ack_packet(p, false, now_us, &mut rs) {
                self.cc.delivered = self.cc.delivered.wrapping_add(1);
            }
            p = p.wrapping_add(1);
        }
        if ack_advanced {
            let n = h.ack.wrapping_sub(prior_remote_acked) as usize;
            for _ in 0..n.min(self.outgoing.len()) {
                self.outgoing.pop_front();
            }
            self.remote_acked = h.ack;
        }

        if self.ending
            && !self.ended
            && !self.end_pending
            && self.write_queue.is_empty()
            && self.remote_acked == self.seq
        {
            // Our END was acknowledged.
            self.ended = true;
            self.events.push_back(StreamEvent::Writable);
            self.idle_timer(now);
            if self.ended_remote {
                self.close(None);
            } else {
                // "send a final state packet to make sure we've acked the end packet"
                self.ack_needed = true;
            }
            return;
        }

        for block in pkt.sack_blocks() {
            if self.sack_is_valid(block) {
                let mut p = block.start;
                while p != block.end {
                    if self.ack_packet(p, true, now_us, &mut rs) {
                        self.cc.delivered = self.cc.delivered.wrapping_add(1);
                    }
                    p = p.wrapping_add(1);
                }
            } else {
                self.stats.dropped_sacks += 1;
            }
        }

        let delivered = self.cc.delivered.wrapping_sub(delivered_before);
        let lost = self.cc.lost.wrapping_sub(lost_before);
        let mut arm_rto_or_tlp = ack_advanced && data_inflight;
        if delivered > 0 {
            if self.remote_acked == self.seq {
                arm_rto_or_tlp = false;
                self.idle_timer(now);
            } else {
                self.next_rto = now + self.rto;
            }
            if self.rack_detect_loss_and_arm(now) {
                arm_rto_or_tlp = false;
            }
        }
        if arm_rto_or_tlp && !self.schedule_loss_probe(now, true) {
            self.rearm_rto(now, true);
        }
        if data_inflight {
            let rtt_min = self.rtt_min_us();
            self.cc.generate(now_us, delivered, lost, rtt_min, &mut rs);
            let ctx = self.ctx(now_us);
            self.cc.on_ack(&rs, &ctx);
        }
    }

    /// Timer to run when nothing is outstanding: zero-window probe, keepalive or none.
    fn idle_timer(&mut self, now: Instant) {
        if self.remote_acked != self.seq {
            return;
        }
        let has_queued = !self.write_queue.is_empty() || self.end_pending;
        if self.send_rwnd == 0 && has_queued {
            self.start_timer(TimerKind::Zwp, now + self.rto);
        } else if let Some(ka) = self.config.keepalive {
            self.start_timer(TimerKind::Keepalive, now + ka);
        } else {
            self.timer = None;
        }
    }

    fn sack_is_valid(&self, b: SackBlock) -> bool {
        // udx_sack_is_valid: remote_acked <= start < end <= seq
        !(seq_diff(b.end, self.seq) > 0
            || seq_diff(b.start, b.end) >= 0
            || seq_diff(b.start, self.seq) >= 0
            || seq_diff(b.start, self.remote_acked) < 0)
    }

    fn on_data(&mut self, seq: u32, flags: Flags, payload: &[u8]) {
        let offset = seq_diff(seq, self.ack) as u64; // >= 0, checked by the caller
        let cap = self.config.recv_window as usize + 16 * MAX_DATAGRAM;
        if self.buffered() + payload.len() > cap {
            // Beyond what we advertised: drop it unacknowledged; it will be retransmitted.
            return;
        }
        if offset == 0 {
            self.deliver(flags, payload.to_vec());
            self.ack = self.ack.wrapping_add(1);
            self.ack_ext += 1;
            self.drain_ooo();
            return;
        }
        let ext = self.ack_ext + offset;
        if offset > MAX_OUT_OF_ORDER || self.ooo.contains_key(&ext) {
            return;
        }
        self.ooo_bytes += payload.len();
        self.ooo.insert(ext, (flags, payload.to_vec()));
        self.insert_sack_range(ext);
    }

    fn deliver(&mut self, flags: Flags, payload: Vec<u8>) {
        if flags.contains(Flags::DATA) && !payload.is_empty() {
            let was_empty = self.readable.is_empty();
            self.readable.push(payload);
            if was_empty {
                self.events.push_back(StreamEvent::Readable);
            }
        }
    }

    fn drain_ooo(&mut self) {
        while let Some(entry) = self.ooo.first_entry() {
            if *entry.key() != self.ack_ext {
                break;
            }
            let (flags, payload) = entry.remove();
            self.ooo_bytes -= payload.len();
            self.deliver(flags, payload);
            self.ack = self.ack.wrapping_add(1);
            self.ack_ext += 1;
        }
        while let Some(entry) = self.sack_ranges.first_entry() {
            if *entry.get() <= self.ack_ext {
                entry.remove();
            } else {
                break;
            }
        }
    }

    fn insert_sack_range(&mut self, x: u64) {
        let mut start = x;
        let mut end = x + 1;
        if let Some((&s, &e)) = self.sack_ranges.range(..=x).next_back() {
            if e >= x {
                start = s;
                end = end.max(e);
                self.sack_ranges.remove(&s);
            }
        }
        if let Some(&e) = self.sack_ranges.get(&end) {
            self.sack_ranges.remove(&end);
            end = e;
        }
        self.sack_ranges.insert(start, end);
    }

    fn check_eof(&mut self) {
        if self.ending_remote && !self.ended_remote && seq_lt(self.remote_ended, self.ack) {
            self.ended_remote = true;
            if self.readable.is_empty() {
                self.events.push_back(StreamEvent::Readable);
            }
            if self.ended {
                self.close(None);
            }
        }
    }

    /// Mark one packet acknowledged (`ack_packet`). Returns whether it was newly delivered.
    fn ack_packet(&mut self, seq: u32, sack: bool, now_us: u64, rs: &mut RateSample) -> bool {
        let idx = seq.wrapping_sub(self.remote_acked) as usize;
        let Some(slot) = self.outgoing.get_mut(idx) else {
            return false;
        };
        let Some(pkt) = slot.take() else {
            if !sack {
                // It was SACKed earlier and is now covered by the cumulative ack.
                self.sacks = self.sacks.saturating_sub(1);
            }
            return false;
        };
        if self.mtu_state == MtuState::Search && self.mtu_probe_count > 0 && pkt.mtu_probe {
            self.mtu_probe_count = 0;
            self.mtu = self.mtu_probe_size;
            if self.mtu_probe_size >= self.mtu_max {
                self.mtu_state = MtuState::Complete;
            } else {
                self.mtu_probe_size = (self.mtu_probe_size + MTU_STEP).min(self.mtu_max);
                self.mtu_probe_wanted = true;
            }
        }
        if self.mtu_state == MtuState::Base {
            self.mtu_state = MtuState::Search;
            self.mtu_probe_wanted = true;
        }
        if sack {
            self.sacks += 1;
        }
        if pkt.lost {
            self.lost_pkts = self.lost_pkts.saturating_sub(1);
        } else if pkt.in_flight {
            self.inflight_pkts = self.inflight_pkts.saturating_sub(1);
        }
        self.outstanding_bytes = self.outstanding_bytes.saturating_sub(pkt.payload.len());
        self.cc
            .on_delivered(&pkt.stamp, pkt.time_sent_us, seq, pkt.retransmitted, rs);

        let rtt = self.clamp_rtt(now_us.saturating_sub(pkt.time_sent_us));
        let next = seq.wrapping_add(1);
        if !pkt.retransmitted {
            self.rtt_min.apply(300_000_000, now_us, rtt as f64);
            match self.srtt_us {
                None => {
                    self.srtt_us = Some(rtt);
                    self.rttvar_us = rtt / 2;
                }
                Some(srtt) => {
                    let delta = srtt.abs_diff(rtt);
                    self.rttvar_us = (3 * self.rttvar_us + delta) / 4;
                    self.srtt_us = Some((7 * srtt + rtt) / 8);
                }
            }
            self.tlp_permitted = true;
            // RFC 6298 (2.3): RTO = SRTT + 4 RTTVAR, at least 1 s (libudx), at most 30 s. A
            // fresh sample also ends any exponential backoff.
            let rto = Duration::from_micros(self.srtt_us.unwrap_or(0) + 4 * self.rttvar_us);
            self.rto = rto.clamp(MIN_RTO, MAX_RTO);
        }
        if !pkt.retransmitted || self.rtt_min_us().is_none_or(|m| rtt >= m) {
            self.rack_rtt_us = rtt;
            rs.rtt_us = Some(rtt);
            if bbr::rack_sent_after(
                pkt.time_sent_us,
                next,
                self.rack_time_sent_us,
                self.rack_next_seq,
            ) {
                self.rack_time_sent_us = pkt.time_sent_us;
                self.rack_next_seq = next;
            }
        }
        if seq_lt(self.rack_fack, next) {
            self.rack_fack = next;
        } else if seq_lt(next, self.rack_fack) && !pkt.retransmitted {
            self.reordering_seen = true;
        }
        true
    }

    fn rtt_min_us(&self) -> Option<u64> {
        let v = self.rtt_min.get();
        v.is_finite().then_some(v as u64)
    }

    fn clamp_rtt(&self, rtt: u64) -> u64 {
        // clamp_rtt: samples after a suspend can be huge; clamp outliers over 5 s.
        match self.srtt_us {
            None => rtt.min(MAX_RTT_US),
            Some(srtt) => {
                let threshold = srtt + 5 * self.rttvar_us;
                if rtt > threshold && rtt > 5_000_000 {
                    threshold.min(MAX_RTT_US)
                } else {
                    rtt
                }
            }
        }
    }

    // ------------------------------------------------------------------ loss detection

    fn rack_reo_wnd(&self) -> u64 {
        // rack_update_reo_wnd (RFC 8985 6.2.4)
        if !self.reordering_seen && (self.ca_state != CaState::Open || self.sacks >= 3) {
            return 0;
        }
        let r = self.rtt_min_us().unwrap_or(0) / 4;
        r.min(self.srtt_us.unwrap_or(0))
    }

    fn packet_mut(&mut self, seq: u32) -> Option<&mut SentPacket> {
        let idx = seq.wrapping_sub(self.remote_acked) as usize;
        self.outgoing.get_mut(idx).and_then(Option::as_mut)
    }

    fn packet(&self, seq: u32) -> Option<&SentPacket> {
        let idx = seq.wrapping_sub(self.remote_acked) as usize;
        self.outgoing.get(idx).and_then(Option::as_ref)
    }

    /// RACK loss detection (`rack_detect_loss`); returns the reorder timeout still pending.
    fn rack_detect_loss(&mut self, now_us: u64) -> u64 {
        let reo_wnd = self.rack_reo_wnd();
        let mut timeout = 0u64;
        let mut resending = 0u32;
        let mut probes_lost = 0u32;
        // Drop stale entries at the front first.
        while let Some(&(seq, generation)) = self.order.front() {
            match self.packet(seq) {
                Some(p) if p.in_flight && p.send_gen == generation => break,
                _ => {
                    self.order.pop_front();
                }
            }
        }
        let mut i = 0;
        while i < self.order.len() {
            let (seq, generation) = self.order[i];
            i += 1;
            let rack_time = self.rack_time_sent_us;
            let rack_next = self.rack_next_seq;
            let rack_rtt = self.rack_rtt_us;
            let Some(pkt) = self.packet_mut(seq) else {
                continue;
            };
            if !pkt.in_flight || pkt.send_gen != generation {
                continue;
            }
            if pkt.time_sent_us > rack_time {
                break;
            }
            if !bbr::rack_sent_after(rack_time, rack_next, pkt.time_sent_us, seq.wrapping_add(1)) {
                continue;
            }
            let deadline = pkt.time_sent_us + rack_rtt + reo_wnd;
            if deadline <= now_us {
                pkt.lost = true;
                pkt.in_flight = false;
                let probe = pkt.mtu_probe;
                if probe {
                    pkt.mtu_probe = false;
                    pkt.padding = 0;
                }
                self.cc.lost = self.cc.lost.wrapping_add(1);
                self.inflight_pkts = self.inflight_pkts.saturating_sub(1);
                self.lost_pkts += 1;
                self.retransmit_queue.push_back(seq);
                if probe {
                    self.probe_failed();
                    probes_lost += 1;
                }
                resending += 1;
            } else {
                timeout = timeout.max(deadline - now_us);
            }
        }
        if resending > probes_lost && self.ca_state == CaState::Open {
            self.stats.fast_recoveries += 1;
            self.cc.save_cwnd(self.ca_state);
            self.ca_state = CaState::Recovery;
            self.high_seq = self.seq;
            self.tlp_in_flight = false;
            self.tlp_is_retrans = false;
        }
        self.compact_order();
        timeout
    }

    fn compact_order(&mut self) {
        if self.order.len() > 2 * self.inflight_pkts as usize + 1024 {
            let mut order = std::mem::take(&mut self.order);
            order.retain(|&(seq, generation)| {
                self.packet(seq)
                    .is_some_and(|p| p.in_flight && p.send_gen == generation)
            });
            self.order = order;
        }
    }

    fn rack_detect_loss_and_arm(&mut self, now: Instant) -> bool {
        let timeout = self.rack_detect_loss(self.us(now));
        if timeout > 0 {
            self.start_timer(TimerKind::RackReo, now + Duration::from_micros(timeout));
            return true;
        }
        false
    }

    /// A lost MTU probe (`mtu_unprobeify_packet`).
    fn probe_failed(&mut self) {
        if self.mtu_state == MtuState::Search {
            if self.mtu_probe_count >= MTU_MAX_PROBES {
                self.mtu_state = MtuState::Complete;
            } else {
                self.mtu_probe_wanted = true;
            }
        }
    }

    fn start_timer(&mut self, kind: TimerKind, at: Instant) {
        if kind == TimerKind::Rto {
            self.next_rto = at;
        }
        self.timer = Some((kind, at));
    }

    fn rearm_rto(&mut self, now: Instant, from_now: bool) {
        if self.seq == self.remote_acked {
            self.timer = None;
            return;
        }
        let at = if from_now {
            now + self.rto
        } else {
            self.next_rto.max(now + Duration::from_millis(1))
        };
        self.start_timer(TimerKind::Rto, at);
    }

    /// Schedule a tail-loss probe (`schedule_loss_probe`, RFC 8985 7.2).
    fn schedule_loss_probe(&mut self, now: Instant, advancing_rto: bool) -> bool {
        if self.seq == self.remote_acked || self.ca_state != CaState::Open || self.sacks > 0 {
            return false;
        }
        let mut pto = match self.srtt_us {
            Some(srtt) => {
                let mut t = 2 * srtt;
                if self.inflight_pkts + self.lost_pkts == 1 {
                    t += TLP_MAX_ACK_DELAY_US;
                }
                t.max(TLP_MIN_US)
            }
            None => 1_000_000,
        };
        let rto_left = if advancing_rto {
            self.rto
        } else {
            self.next_rto
                .saturating_duration_since(now)
                .max(Duration::from_millis(1))
        };
        pto = pto.min(rto_left.as_micros() as u64);
        self.timer = Some((TimerKind::Tlp, now + Duration::from_micros(pto)));
        true
    }

    /// Arm RTO/TLP after (re)transmitting data (`arm_stream_timers`).
    fn arm_timers(&mut self, now: Instant, arm_tlp: bool) {
        if matches!(
            self.timer,
            None | Some((TimerKind::Zwp | TimerKind::Keepalive, _))
        ) {
            self.start_timer(TimerKind::Rto, now + self.rto);
        }
        if arm_tlp && self.ca_state == CaState::Open && self.sacks == 0 {
            self.schedule_loss_probe(now, false);
        }
    }

    // ------------------------------------------------------------------ timers

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.timer.map(|(_, at)| at);
        if let Some(linger) = self.linger_until {
            t = Some(t.map_or(linger, |x| x.min(linger)));
        }
        if self.is_open() && self.tokens <= 0.0 && self.wants_paced_send() {
            let rate = self.cc.pacing_bytes_per_ms.max(1.0);
            let wait_us = ((-self.tokens) / rate * 1000.0) as u64 + 1;
            let at = self.at(self.last_refill_us + wait_us);
            t = Some(t.map_or(at, |x| x.min(at)));
        }
        t
    }

    fn wants_paced_send(&self) -> bool {
        if self.remote.is_none() {
            return false;
        }
        if !self.retransmit_queue.is_empty() && self.inflight_pkts < self.cc.cwnd {
            return true;
        }
        (!self.write_queue.is_empty() || self.end_pending) && self.window_open()
    }

    fn window_open(&self) -> bool {
        let rwnd_pkts = if self.send_rwnd == 0 {
            0
        } else {
            (self.send_rwnd / self.max_payload() as u32).max(1)
        };
        self.inflight_pkts < self.cc.cwnd.min(rwnd_pkts)
            && self.seq.wrapping_sub(self.remote_acked) < MAX_OUTSTANDING
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if let Some(linger) = self.linger_until {
            if now >= linger {
                self.linger_until = None;
                self.destroy();
            }
        }
        let Some((kind, at)) = self.timer else {
            return;
        };
        if now < at || !self.is_open() {
            return;
        }
        self.timer = None;
        match kind {
            TimerKind::Rto => self.on_rto(now),
            TimerKind::RackReo => {
                // udx_rack_reo_timeout
                self.rack_detect_loss(self.us(now));
                if !matches!(self.timer, Some((TimerKind::Rto, _))) {
                    self.rearm_rto(now, false);
                }
            }
            TimerKind::Tlp => {
                // udx_tlp_timeout: the probe itself is built by poll_transmit.
                if self.remote_acked == self.seq {
                    return;
                }
                if self.tlp_in_flight || !self.tlp_permitted {
                    self.rearm_rto(now, false);
                    return;
                }
                self.tlp_pending = true;
            }
            TimerKind::Zwp => {
                self.heartbeat_needed = true;
                self.start_timer(TimerKind::Zwp, now + self.rto * 2);
            }
            TimerKind::Keepalive => {
                if self.remote_acked == self.seq {
                    self.heartbeat_needed = true;
                }
                if let Some(ka) = self.config.keepalive {
                    self.start_timer(TimerKind::Keepalive, now + ka);
                }
            }
        }
    }

    /// Retransmission timeout (`udx_rto_timeout`, RFC 8985 6.3).
    fn on_rto(&mut self, now: Instant) {
        if self.remote_acked == self.seq {
            return;
        }
        let ca_before = self.ca_state;
        self.high_seq = self.seq;
        self.stats.rto_count += 1;
        self.ca_state = CaState::Loss;
        self.tlp_in_flight = false;
        self.tlp_is_retrans = false;
        // RFC 6298 (5.5): back off the timer. libudx re-arms at 2 x rto without compounding.
        self.rto = (self.rto * 2).min(MAX_RTO);
        self.start_timer(TimerKind::Rto, now + self.rto);

        let now_us = self.us(now);
        let reo_wnd = self.rack_reo_wnd();
        let rack_rtt = self.rack_rtt_us;
        self.retransmit_queue.clear();
        let mut failed = false;
        let mut probe_losses = 0;
        let mut seq = self.remote_acked;
        let mut first = true;
        while seq != self.seq {
            let this = seq;
            seq = seq.wrapping_add(1);
            let is_first = std::mem::replace(&mut first, false);
            let Some(pkt) = self.packet_mut(this) else {
                continue;
            };
            if pkt.lost {
                self.retransmit_queue.push_back(this);
                continue;
            }
            let expired = pkt.time_sent_us + rack_rtt + reo_wnd < now_us;
            if !(is_first || expired) {
                continue;
            }
            if pkt.rto_timeouts >= MAX_RTO_TIMEOUTS {
                failed = true;
                break;
            }
            pkt.rto_timeouts += 1;
            pkt.lost = true;
            pkt.in_flight = false;
            if pkt.mtu_probe {
                pkt.mtu_probe = false;
                pkt.padding = 0;
                probe_losses += 1;
            }
            self.cc.lost = self.cc.lost.wrapping_add(1);
            self.inflight_pkts = self.inflight_pkts.saturating_sub(1);
            self.lost_pkts += 1;
            self.retransmit_queue.push_back(this);
        }
        if failed {
            self.close(Some(StreamError::TimedOut));
            return;
        }
        for _ in 0..probe_losses {
            self.probe_failed();
        }
        self.cc.on_rto(ca_before, self.inflight_pkts);
    }

    // ------------------------------------------------------------------ send path

    fn refill(&mut self, now_us: u64) {
        if now_us > self.last_refill_us {
            let elapsed_ms = (now_us - self.last_refill_us) as f64 / 1000.0;
            let rate = self.cc.pacing_bytes_per_ms;
            let cap = (rate * 2.0).max(4.0 * MAX_DATAGRAM as f64);
            self.tokens = (self.tokens + rate * elapsed_ms).min(cap.max(self.tokens));
            self.last_refill_us = now_us;
        }
    }

    /// Produce the next datagram of this stream, if any.
    pub(crate) fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let remote = self.remote?;
        if let Some(bytes) = self.destroy_pending.take() {
            return Some(self.emit(remote, bytes));
        }
        if self.ack_needed {
            self.ack_needed = false;
            let h = self.header(Flags::ACK);
            let blocks: Vec<SackBlock> = self
                .sack_ranges
                .iter()
                .take(packet::MAX_SACKS)
                .map(|(&s, &e)| SackBlock {
                    start: s as u32,
                    end: e as u32,
                })
                .collect();
            let bytes = packet::encode_ack(h, &blocks);
            return Some(self.emit(remote, bytes));
        }
        if !self.is_open() {
            return None;
        }
        if self.heartbeat_needed {
            self.heartbeat_needed = false;
            let h = self.header(Flags::HEARTBEAT);
            return Some(self.emit(remote, packet::encode_packet(h, 0, &[])));
        }
        if let Some(msg) = self.messages.pop_front() {
            let h = self.header(Flags::MESSAGE);
            return Some(self.emit(remote, packet::encode_packet(h, 0, &msg)));
        }
        let now_us = self.us(now);
        if self.tlp_pending {
            self.tlp_pending = false;
            if let Some(t) = self.send_tlp(now) {
                return Some(t);
            }
        }
        self.refill(now_us);
        if self.tokens > 0.0 {
            while let Some(&seq) = self.retransmit_queue.front() {
                if self.packet(seq).is_none_or(|p| !p.lost) {
                    self.retransmit_queue.pop_front();
                    continue;
                }
                if self.inflight_pkts >= self.cc.cwnd {
                    break;
                }
                self.retransmit_queue.pop_front();
                self.stats.retransmits += 1;
                let t = self.transmit(seq, now, true);
                self.arm_timers(now, false);
                return t;
            }
            if self.window_open() {
                if let Some(t) = self.send_new(now, false) {
                    return Some(t);
                }
            }
        }
        None
    }

    fn send_tlp(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(t) = self.send_new(now, true) {
            self.rearm_rto(now, true);
            return Some(t);
        }
        let last = self.seq.wrapping_sub(1);
        let usable = self.packet(last).is_some_and(|p| !p.lost && p.in_flight);
        if !usable {
            self.rearm_rto(now, false);
            return None;
        }
        self.stats.retransmits += 1;
        let t = self.transmit(last, now, true);
        self.tlp_is_retrans = true;
        self.tlp_in_flight = true;
        self.tlp_end_seq = last;
        self.tlp_permitted = false;
        self.rearm_rto(now, true);
        t
    }

    /// Packetize queued data into a new packet (`send_new_packet` / `_send_new_packet`).
    fn send_new(&mut self, now: Instant, tlp: bool) -> Option<Transmit> {
        if self.write_queue.is_empty() && !self.end_pending {
            return None;
        }
        let remote = self.remote?;
        let payload = self.write_queue.take(self.max_payload());
        let mut flags = Flags::ACK;
        if !payload.is_empty() {
            flags |= Flags::DATA;
        }
        if self.write_queue.is_empty() && self.end_pending {
            flags |= Flags::END;
            self.end_pending = false;
        }
        if self.write_blocked && self.writable_room() * 2 >= self.config.send_buffer {
            self.write_blocked = false;
            self.events.push_back(StreamEvent::Writable);
        }
        let seq = self.seq;
        let mut pkt = SentPacket {
            flags,
            payload,
            dest: remote,
            remote_id: self.remote_id,
            time_sent_us: 0,
            transmits: 0,
            retransmitted: false,
            lost: false,
            in_flight: false,
            rto_timeouts: 0,
            mtu_probe: false,
            padding: 0,
            stamp: SendStamp::default(),
            send_gen: 0,
        };
        let mut probe = false;
        if self.mtu_probe_wanted && !tlp && !self.remote_changing && flags.contains(Flags::DATA) {
            // mtu_probeify_packet: pad a full DATA packet up to the probe size.
            let overhead = if self.is_v4() {
                IPV4_OVERHEAD
            } else {
                IPV6_OVERHEAD
            } as i64
                - HEADER_SIZE as i64;
            let padding = i64::from(self.mtu_probe_size) - (pkt.size() as i64 + overhead);
            if (0..=255).contains(&padding) {
                pkt.mtu_probe = true;
                pkt.padding = padding as u8;
                probe = true;
            }
        }
        self.outstanding_bytes += pkt.payload.len();
        self.outgoing.push_back(Some(pkt));
        let t = self.transmit(seq, now, false);
        self.seq = self.seq.wrapping_add(1);
        if probe {
            self.mtu_probe_count += 1;
            self.mtu_probe_wanted = false;
        }
        if tlp {
            self.tlp_is_retrans = false;
            self.tlp_in_flight = true;
            self.tlp_end_seq = seq;
            self.tlp_permitted = false;
        }
        self.arm_timers(now, !tlp);
        t
    }

    /// Send (or resend) packet `seq` (`_send_packet`).
    fn transmit(&mut self, seq: u32, now: Instant, retransmit: bool) -> Option<Transmit> {
        let now_us = self.us(now);
        let queued = self.unacked();
        let mss = self.max_payload() as u32;
        let retransmits = self.retransmit_queue.len();
        self.cc
            .check_app_limited(queued, mss, self.inflight_pkts, retransmits);
        let idle = self.seq == self.remote_acked;
        let inflight_was_empty = self.inflight_pkts == 0;
        let stamp = self.cc.on_sent(now_us, idle);
        let rwnd = self.recv_window();
        self.last_rwnd = rwnd;
        let ack = self.ack;
        let pkt = self.packet_mut(seq)?;
        pkt.transmits = pkt.transmits.saturating_add(1);
        if retransmit {
            pkt.retransmitted = true;
        }
        pkt.time_sent_us = now_us;
        pkt.stamp = stamp;
        let was_lost = std::mem::replace(&mut pkt.lost, false);
        let newly_in_flight = !std::mem::replace(&mut pkt.in_flight, true);
        pkt.send_gen = pkt.send_gen.wrapping_add(1);
        let generation = pkt.send_gen;
        let size = pkt.size();
        let dest = pkt.dest;
        // Retransmits keep seq, id and payload but advertise the current rwnd and ack.
        let header = Header {
            flags: pkt.flags,
            data_offset: 0,
            id: pkt.remote_id,
            rwnd,
            seq,
            ack,
        };
        let bytes = packet::encode_packet(header, pkt.padding, &pkt.payload);
        if was_lost {
            self.lost_pkts = self.lost_pkts.saturating_sub(1);
        }
        if newly_in_flight {
            self.inflight_pkts += 1;
        }
        self.order.push_back((seq, generation));
        self.tokens -= size as f64;
        if inflight_was_empty {
            let ctx = self.ctx(now_us);
            self.cc.on_transmit_start(&ctx);
        }
        Some(self.emit(dest, bytes))
    }

    fn emit(&mut self, dest: SocketAddr, bytes: Vec<u8>) -> Transmit {
        self.stats.packets_tx += 1;
        self.stats.bytes_tx += bytes.len() as u64;
        Transmit {
            dest,
            bytes,
            stream: Some(self.local_id),
        }
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
