//! Sender-side congestion control: delivery-rate sampling and BBR (v1), after libudx
//! `udx_rate.c` and `udx_bbr.c` (themselves after Linux `tcp_rate.c` / `tcp_bbr.c` and the IETF
//! BBR draft). Nothing here is visible on the wire; only the sender's pacing and window change.
//!
//! Units: time is microseconds since the stream was created (`u64`), bandwidth is packets per
//! millisecond (`f64`), windows are packets. libudx keeps time in whole milliseconds; we keep
//! microseconds but floor the BBR min-RTT at 1 ms, as libudx's clock effectively does, so the
//! bandwidth-delay product stays sensible on loopback (see `protocol/udx.md`).

use crate::filter::{Kind, WinFilter};

const CYCLE_LEN: usize = 8;
const BW_FILTER_ROUNDS: u64 = CYCLE_LEN as u64 + 2;
const MIN_RTT_WINDOW_US: u64 = 10_000_000;
const PROBE_RTT_MODE_US: u64 = 200_000;
const MIN_RTT_FLOOR_US: u64 = 1_000;
const PACING_MARGIN: f64 = 0.99;
const HIGH_GAIN: f64 = 2.885_39;
const DRAIN_GAIN: f64 = 1.0 / 2.885_39;
const CWND_GAIN: f64 = 2.0;
const PACING_GAINS: [f64; CYCLE_LEN] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
const CWND_MIN_TARGET: u32 = 4;
const FULL_BW_THRESH: f64 = 1.25;
const FULL_BW_COUNT: u8 = 3;
const EXTRA_ACKED_WIN_RTTS: u8 = 5;
const EXTRA_ACKED_MAX_MS: f64 = 100.0;
/// Initial congestion window in packets (`udx_stream_init`).
pub(crate) const INITIAL_CWND: u32 = 10;

/// Loss-recovery state of the sender (libudx `UDX_CA_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CaState {
    Open = 1,
    Recovery = 2,
    Loss = 3,
}

/// BBR mode (libudx `UDX_BBR_STATE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BbrMode {
    /// Exponential search for the bottleneck bandwidth.
    Startup,
    /// Draining the queue built during startup.
    Drain,
    /// Steady state: cycling the pacing gain around the estimated bandwidth.
    ProbeBw,
    /// Briefly cutting the window to re-measure the minimum RTT.
    ProbeRtt,
}

/// Delivery state stamped on a packet when it is (re)sent, to build a rate sample when it is
/// acknowledged (`udx__rate_pkt_sent`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SendStamp {
    first_sent_us: u64,
    delivered_us: u64,
    delivered: u32,
    app_limited: bool,
}

/// One rate sample, built while processing one acknowledgement.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RateSample {
    prior: Option<(u32, u64)>, // (prior_delivered, prior_timestamp)
    prior_seq: u32,
    delivered: i64,
    interval_us: i64,
    /// RTT of the most recently sent acked packet, if usable.
    pub(crate) rtt_us: Option<u64>,
    losses: u32,
    acked_sacked: u32,
    app_limited: bool,
    is_retrans: bool,
}

impl Default for RateSample {
    fn default() -> Self {
        Self {
            prior: None,
            prior_seq: 0,
            delivered: -1,
            interval_us: -1,
            rtt_us: None,
            losses: 0,
            acked_sacked: 0,
            app_limited: false,
            is_retrans: false,
        }
    }
}

/// What the congestion controller needs to know about the stream on each call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx {
    pub(crate) now_us: u64,
    pub(crate) inflight: u32,
    pub(crate) ca_state: CaState,
    pub(crate) srtt_us: Option<u64>,
    pub(crate) mss: u32,
}

/// Congestion window, pacing rate, rate sampler and BBR model of one stream.
#[derive(Clone, Debug)]
pub(crate) struct Congestion {
    /// Congestion window in packets.
    pub(crate) cwnd: u32,
    pub(crate) ssthresh: u32,
    /// Pacing rate in bytes per millisecond.
    pub(crate) pacing_bytes_per_ms: f64,

    // rate sampler (libudx stream fields)
    /// Packets delivered so far, retransmits included.
    pub(crate) delivered: u32,
    /// Packets marked lost so far.
    pub(crate) lost: u32,
    app_limited: u32,
    first_sent_us: u64,
    delivered_us: u64,
    rate_delivered: i64,
    rate_interval_us: i64,

    // BBR
    mode: BbrMode,
    min_rtt_us: Option<u64>,
    min_rtt_stamp: u64,
    probe_rtt_done: Option<u64>,
    bw: WinFilter,
    rtt_count: u64,
    next_rtt_delivered: u32,
    cycle_stamp: u64,
    prev_ca_state: CaState,
    packet_conservation: bool,
    round_start: bool,
    idle_restart: bool,
    probe_rtt_round_done: bool,
    pacing_gain: f64,
    cwnd_gain: f64,
    full_bw_reached: bool,
    full_bw_count: u8,
    cycle_index: usize,
    has_seen_rtt: bool,
    prior_cwnd: u32,
    full_bw: f64,
    ack_epoch_start: u64,
    extra_acked: [u32; 2],
    ack_epoch_acked: u32,
    extra_acked_win_rtts: u8,
    extra_acked_win_index: usize,
}

fn seq_ge(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

impl Congestion {
    pub(crate) fn new(mss: u32) -> Self {
        let mut c = Self {
            cwnd: INITIAL_CWND,
            ssthresh: 0xffff,
            pacing_bytes_per_ms: 0.0,
            delivered: 0,
            lost: 0,
            // Initially application limited: no network limit has been found yet.
            app_limited: u32::MAX,
            first_sent_us: 0,
            delivered_us: 0,
            rate_delivered: 0,
            rate_interval_us: 0,
            mode: BbrMode::Startup,
            min_rtt_us: None,
            min_rtt_stamp: 0,
            probe_rtt_done: None,
            bw: WinFilter::new(Kind::Max, 0, 0.0),
            rtt_count: 0,
            next_rtt_delivered: 0,
            cycle_stamp: 0,
            prev_ca_state: CaState::Open,
            packet_conservation: false,
            round_start: false,
            idle_restart: false,
            probe_rtt_round_done: false,
            pacing_gain: HIGH_GAIN,
            cwnd_gain: HIGH_GAIN,
            full_bw_reached: false,
            full_bw_count: 0,
            cycle_index: 0,
            has_seen_rtt: false,
            prior_cwnd: 0,
            full_bw: 0.0,
            ack_epoch_start: 0,
            extra_acked: [0; 2],
            ack_epoch_acked: 0,
            extra_acked_win_rtts: 0,
            extra_acked_win_index: 0,
        };
        c.init_pacing_rate_from_rtt(None, mss);
        c
    }

    /// Current BBR mode.
    pub(crate) fn mode(&self) -> BbrMode {
        self.mode
    }

    /// Estimated bottleneck bandwidth in packets per millisecond.
    pub(crate) fn bandwidth(&self) -> f64 {
        self.bw.get()
    }

    // ------------------------------------------------------------------ rate sampling

    /// Stamp a packet about to be sent (`udx__rate_pkt_sent`). `idle` is true when nothing was
    /// outstanding, which restarts the sampling interval.
    pub(crate) fn on_sent(&mut self, now_us: u64, idle: bool) -> SendStamp {
        if idle {
            self.first_sent_us = now_us;
            self.delivered_us = now_us;
        }
        SendStamp {
            first_sent_us: self.first_sent_us,
            delivered_us: self.delivered_us,
            delivered: self.delivered,
            app_limited: self.app_limited != 0,
        }
    }

    /// Mark the stream application-limited when it has less than a packet to send and window
    /// to spare (`udx__rate_check_app_limited`).
    pub(crate) fn check_app_limited(
        &mut self,
        queued_bytes: usize,
        mss: u32,
        inflight: u32,
        retransmits: usize,
    ) {
        if queued_bytes < mss as usize && inflight < self.cwnd && retransmits == 0 {
            self.app_limited = self.delivered.wrapping_add(inflight).max(1);
        }
    }

    /// Feed one newly acknowledged packet into the sample (`udx__rate_pkt_delivered`).
    pub(crate) fn on_delivered(
        &mut self,
        stamp: &SendStamp,
        time_sent_us: u64,
        seq: u32,
        retransmitted: bool,
        rs: &mut RateSample,
    ) {
        let newer = match rs.prior {
            None => true,
            Some(_) => rack_sent_after(time_sent_us, seq, self.first_sent_us, rs.prior_seq),
        };
        if newer {
            rs.prior = Some((stamp.delivered, stamp.delivered_us));
            rs.app_limited = stamp.app_limited;
            rs.is_retrans = retransmitted;
            rs.prior_seq = seq;
            self.first_sent_us = time_sent_us;
            rs.interval_us = time_sent_us.saturating_sub(stamp.first_sent_us) as i64;
        }
    }

    /// Finish the sample after all acknowledgements in a packet were processed
    /// (`udx__rate_gen`).
    pub(crate) fn generate(
        &mut self,
        now_us: u64,
        delivered: u32,
        lost: u32,
        rtt_min_us: Option<u64>,
        rs: &mut RateSample,
    ) {
        if self.app_limited != 0 && (self.delivered.wrapping_sub(self.app_limited) as i32) > 0 {
            self.app_limited = 0;
        }
        if delivered > 0 {
            self.delivered_us = now_us;
        }
        rs.acked_sacked = delivered;
        rs.losses = lost;
        let Some((prior_delivered, prior_ts)) = rs.prior else {
            rs.delivered = -1;
            rs.interval_us = -1;
            return;
        };
        rs.delivered = i64::from(self.delivered.wrapping_sub(prior_delivered));
        let snd = rs.interval_us.max(0);
        let ack = now_us.saturating_sub(prior_ts) as i64;
        rs.interval_us = snd.max(ack);
        if let Some(min) = rtt_min_us {
            if (rs.interval_us as u64) < min {
                rs.interval_us = -1;
                return;
            }
        }
        if !rs.app_limited
            || rs.delivered * self.rate_interval_us >= self.rate_delivered * rs.interval_us
        {
            self.rate_delivered = rs.delivered;
            self.rate_interval_us = rs.interval_us;
        }
    }

    // ------------------------------------------------------------------ BBR

    fn min_rtt_ms(&self) -> Option<f64> {
        self.min_rtt_us.map(|us| us as f64 / 1000.0)
    }

    fn bdp(&self, bw: f64, gain: f64) -> u32 {
        match self.min_rtt_ms() {
            None => INITIAL_CWND,
            Some(rtt) => (bw * rtt * gain) as u32,
        }
    }

    fn pacing_rate(bw: f64, gain: f64, mss: u32) -> f64 {
        (bw * f64::from(mss) * gain * PACING_MARGIN).max(1.0)
    }

    fn init_pacing_rate_from_rtt(&mut self, srtt_us: Option<u64>, mss: u32) {
        let srtt_ms = match srtt_us {
            Some(us) => {
                self.has_seen_rtt = true;
                (us as f64 / 1000.0).max(1.0)
            }
            None => 1.0,
        };
        let bw = f64::from(self.cwnd) / srtt_ms;
        self.pacing_bytes_per_ms = Self::pacing_rate(bw, HIGH_GAIN, mss);
    }

    fn set_pacing_rate(&mut self, bw: f64, gain: f64, ctx: &Ctx) {
        let rate = Self::pacing_rate(bw, gain, ctx.mss);
        if !self.has_seen_rtt && ctx.srtt_us.is_some() {
            self.init_pacing_rate_from_rtt(ctx.srtt_us, ctx.mss);
        }
        if self.full_bw_reached || rate > self.pacing_bytes_per_ms {
            self.pacing_bytes_per_ms = rate;
        }
    }

    /// Remember the window before a loss episode or PROBE_RTT, to restore it afterwards.
    pub(crate) fn save_cwnd(&mut self, ca_state: CaState) {
        if self.prev_ca_state < CaState::Recovery
            && ca_state < CaState::Recovery
            && self.mode != BbrMode::ProbeRtt
        {
            self.prior_cwnd = self.cwnd;
        } else {
            self.prior_cwnd = self.prior_cwnd.max(self.cwnd);
        }
    }

    /// Transmission restarts after the flight drained (`bbr_on_transmit_start`).
    pub(crate) fn on_transmit_start(&mut self, ctx: &Ctx) {
        if self.app_limited != 0 {
            self.idle_restart = true;
            self.ack_epoch_start = ctx.now_us;
            self.ack_epoch_acked = 0;
            match self.mode {
                BbrMode::ProbeBw => self.set_pacing_rate(self.bw.get(), 1.0, ctx),
                BbrMode::ProbeRtt => self.check_probe_rtt_done(ctx.now_us),
                _ => {}
            }
        }
    }

    /// A retransmission timeout fired (`bbr_on_rto`). libudx leaves the window alone; we
    /// collapse it to the flight plus one packet as TCP does, and BBR restores the saved window
    /// when recovery ends (a deliberate difference, see `protocol/udx.md`).
    pub(crate) fn on_rto(&mut self, ca_state_before: CaState, inflight: u32) {
        self.save_cwnd(ca_state_before);
        self.prev_ca_state = CaState::Loss;
        self.full_bw = 0.0;
        self.round_start = true;
        self.cwnd = inflight + 1;
    }

    fn extra_acked(&self) -> u32 {
        self.extra_acked[0].max(self.extra_acked[1])
    }

    fn ack_aggregation_cwnd(&self) -> u32 {
        if !self.full_bw_reached {
            return 0;
        }
        let max_aggr = (self.bw.get() * EXTRA_ACKED_MAX_MS) as u32;
        self.extra_acked().min(max_aggr)
    }

    fn set_cwnd_to_recover_or_restore(
        &mut self,
        rs: &RateSample,
        acked: u32,
        ctx: &Ctx,
    ) -> (bool, u32) {
        let prev = self.prev_ca_state;
        let state = ctx.ca_state;
        let mut cwnd = self.cwnd;
        // An ack for p packets should release at most 2p packets: first take off the losses,
        // then slow-start back up towards the target in `set_cwnd`.
        if rs.losses > 0 {
            cwnd = cwnd.saturating_sub(rs.losses).max(1);
        }
        if state == CaState::Recovery && prev != CaState::Recovery {
            self.packet_conservation = true;
            self.next_rtt_delivered = self.delivered;
            cwnd = ctx.inflight + acked;
        } else if prev >= CaState::Recovery && state == CaState::Open {
            cwnd = cwnd.max(self.prior_cwnd);
            self.packet_conservation = false;
        }
        self.prev_ca_state = state;
        if self.packet_conservation {
            return (true, cwnd.max(ctx.inflight + acked));
        }
        (false, cwnd)
    }

    fn set_cwnd(&mut self, rs: &RateSample, acked: u32, bw: f64, gain: f64, ctx: &Ctx) {
        let mut cwnd = self.cwnd;
        if acked > 0 {
            let (conserving, c) = self.set_cwnd_to_recover_or_restore(rs, acked, ctx);
            cwnd = c;
            if !conserving {
                let target = self.bdp(bw, gain) + self.ack_aggregation_cwnd();
                if self.full_bw_reached {
                    cwnd = (cwnd + acked).min(target);
                } else if cwnd < target || self.delivered < INITIAL_CWND {
                    cwnd += acked;
                }
                cwnd = cwnd.max(CWND_MIN_TARGET);
            }
        }
        self.cwnd = cwnd;
        if self.mode == BbrMode::ProbeRtt {
            self.cwnd = self.cwnd.min(CWND_MIN_TARGET);
        }
    }

    fn is_next_cycle_phase(&self, rs: &RateSample, ctx: &Ctx) -> bool {
        let min_rtt = self.min_rtt_us.unwrap_or(0);
        let full_length = self.delivered_us.saturating_sub(self.cycle_stamp) > min_rtt;
        if self.pacing_gain == 1.0 {
            return full_length;
        }
        let bw = self.bw.get();
        if self.pacing_gain > 1.0 {
            return full_length && (rs.losses > 0 || ctx.inflight > self.bdp(bw, self.pacing_gain));
        }
        full_length || ctx.inflight <= self.bdp(bw, 1.0)
    }

    fn advance_cycle_phase(&mut self) {
        self.cycle_index = (self.cycle_index + 1) % CYCLE_LEN;
        self.cycle_stamp = self.delivered_us;
    }

    fn reset_probe_bw_mode(&mut self) {
        self.mode = BbrMode::ProbeBw;
        // libudx: "should be randomly chosen"; a fixed phase keeps us deterministic.
        self.cycle_index = 3;
        self.advance_cycle_phase();
    }

    fn reset_mode(&mut self) {
        if self.full_bw_reached {
            self.reset_probe_bw_mode();
        } else {
            self.mode = BbrMode::Startup;
        }
    }

    fn update_bw(&mut self, rs: &RateSample) {
        self.round_start = false;
        if rs.delivered <= 0 || rs.interval_us <= 0 {
            return;
        }
        let Some((prior_delivered, _)) = rs.prior else {
            return;
        };
        if seq_ge(prior_delivered, self.next_rtt_delivered) {
            self.next_rtt_delivered = self.delivered;
            self.rtt_count += 1;
            self.round_start = true;
            self.packet_conservation = false;
        }
        let bw = rs.delivered as f64 / (rs.interval_us as f64 / 1000.0);
        if !rs.app_limited || bw >= self.bw.get() {
            self.bw.apply(BW_FILTER_ROUNDS, self.rtt_count, bw);
        }
    }

    fn update_ack_aggregation(&mut self, rs: &RateSample) {
        if rs.acked_sacked == 0 || rs.delivered < 0 || rs.interval_us <= 0 {
            return;
        }
        if self.round_start {
            self.extra_acked_win_rtts = self.extra_acked_win_rtts.saturating_add(1);
            if self.extra_acked_win_rtts >= EXTRA_ACKED_WIN_RTTS {
                self.extra_acked_win_rtts = 0;
                self.extra_acked_win_index ^= 1;
                self.extra_acked[self.extra_acked_win_index] = 0;
            }
        }
        let epoch_ms = self.delivered_us.saturating_sub(self.ack_epoch_start) as f64 / 1000.0;
        let mut expected = (self.bw.get() * epoch_ms) as u32;
        if self.ack_epoch_acked <= expected
            || u64::from(self.ack_epoch_acked) + u64::from(rs.acked_sacked) >= u64::from(u32::MAX)
        {
            self.ack_epoch_acked = 0;
            self.ack_epoch_start = self.delivered_us;
            expected = 0;
        }
        self.ack_epoch_acked += rs.acked_sacked;
        let extra = self.ack_epoch_acked.saturating_sub(expected).min(self.cwnd);
        let slot = &mut self.extra_acked[self.extra_acked_win_index];
        if extra > *slot {
            *slot = extra;
        }
    }

    fn check_full_bw_reached(&mut self, rs: &RateSample) {
        if self.full_bw_reached || !self.round_start || rs.app_limited {
            return;
        }
        let bw = self.bw.get();
        if bw >= self.full_bw * FULL_BW_THRESH {
            self.full_bw = bw;
            self.full_bw_count = 0;
            return;
        }
        self.full_bw_count += 1;
        self.full_bw_reached = self.full_bw_count >= FULL_BW_COUNT;
    }

    fn check_drain(&mut self, ctx: &Ctx) {
        if self.mode == BbrMode::Startup && self.full_bw_reached {
            self.mode = BbrMode::Drain;
            self.ssthresh = self.bdp(self.bw.get(), 1.0);
        }
        if self.mode == BbrMode::Drain && ctx.inflight <= self.bdp(self.bw.get(), 1.0) {
            self.reset_probe_bw_mode();
        }
    }

    fn check_probe_rtt_done(&mut self, now_us: u64) {
        match self.probe_rtt_done {
            Some(done) if now_us > done => {}
            _ => return,
        }
        self.min_rtt_stamp = now_us;
        self.cwnd = self.cwnd.max(self.prior_cwnd);
        self.reset_mode();
    }

    fn update_min_rtt(&mut self, rs: &RateSample, ctx: &Ctx) {
        let now = ctx.now_us;
        let expired = now > self.min_rtt_stamp + MIN_RTT_WINDOW_US;
        if let Some(rtt) = rs.rtt_us {
            if self.min_rtt_us.is_none_or(|m| rtt < m) || expired {
                self.min_rtt_us = Some(rtt.max(MIN_RTT_FLOOR_US));
                self.min_rtt_stamp = now;
            }
        }
        if expired && !self.idle_restart && self.mode != BbrMode::ProbeRtt {
            self.mode = BbrMode::ProbeRtt;
            self.save_cwnd(ctx.ca_state);
            self.probe_rtt_done = None;
        }
        if self.mode == BbrMode::ProbeRtt {
            self.app_limited = self.delivered.wrapping_add(ctx.inflight).max(1);
            if self.probe_rtt_done.is_none() && ctx.inflight <= CWND_MIN_TARGET {
                self.probe_rtt_done = Some(now + PROBE_RTT_MODE_US);
                self.probe_rtt_round_done = false;
                self.next_rtt_delivered = self.delivered;
            } else if self.probe_rtt_done.is_some() {
                if self.round_start {
                    self.probe_rtt_round_done = true;
                }
                if self.probe_rtt_round_done {
                    self.check_probe_rtt_done(now);
                }
            }
        }
        if rs.delivered > 0 {
            self.idle_restart = false;
        }
    }

    fn update_gains(&mut self) {
        (self.pacing_gain, self.cwnd_gain) = match self.mode {
            BbrMode::Startup => (HIGH_GAIN, HIGH_GAIN),
            BbrMode::Drain => (DRAIN_GAIN, HIGH_GAIN),
            BbrMode::ProbeBw => (PACING_GAINS[self.cycle_index], CWND_GAIN),
            BbrMode::ProbeRtt => (1.0, 1.0),
        };
    }

    /// Run BBR on one rate sample (`bbr_main`).
    pub(crate) fn on_ack(&mut self, rs: &RateSample, ctx: &Ctx) {
        self.update_bw(rs);
        self.update_ack_aggregation(rs);
        if self.mode == BbrMode::ProbeBw && self.is_next_cycle_phase(rs, ctx) {
            self.advance_cycle_phase();
        }
        self.check_full_bw_reached(rs);
        self.check_drain(ctx);
        self.update_min_rtt(rs, ctx);
        self.update_gains();
        let bw = self.bw.get();
        self.set_pacing_rate(bw, self.pacing_gain, ctx);
        self.set_cwnd(rs, rs.acked_sacked, bw, self.cwnd_gain, ctx);
    }
}

/// RACK's "sent after" order: later send time, or the same time and a higher sequence.
pub(crate) fn rack_sent_after(t1: u64, seq1: u32, t2: u64, seq2: u32) -> bool {
    t1 > t2 || (t1 == t2 && (seq2.wrapping_sub(seq1) as i32) < 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(now_us: u64, inflight: u32) -> Ctx {
        Ctx {
            now_us,
            inflight,
            ca_state: CaState::Open,
            srtt_us: Some(10_000),
            mss: 1152,
        }
    }

    #[test]
    fn initial_pacing_matches_libudx() {
        // cwnd 10 over a 1 ms stand-in RTT, high gain, 99 % margin, 1152-byte payloads.
        let c = Congestion::new(1152);
        let want = 10.0 * 1152.0 * HIGH_GAIN * PACING_MARGIN;
        assert!((c.pacing_bytes_per_ms - want).abs() < 1e-6);
        assert_eq!(c.cwnd, INITIAL_CWND);
        assert_eq!(c.mode(), BbrMode::Startup);
    }

    #[test]
    fn startup_grows_window_then_leaves() {
        // A steady 10 packets per ms pipe with a 10 ms RTT: the window grows during startup,
        // then BBR finds the bandwidth plateau and settles near 2 * BDP.
        let mut c = Congestion::new(1152);
        let mut now = 0u64;
        let mut seq = 0u32;
        let mut stamps = std::collections::VecDeque::new();
        for _ in 0..4000 {
            // send what the window allows
            while stamps.len() < c.cwnd as usize {
                let idle = stamps.is_empty();
                let st = c.on_sent(now, idle);
                stamps.push_back((seq, now, st));
                seq += 1;
            }
            // deliver one packet every 100 us once it is 10 ms old
            now += 100;
            if let Some(&(s, t, st)) = stamps.front() {
                if now >= t + 10_000 {
                    stamps.pop_front();
                    let mut rs = RateSample {
                        rtt_us: Some(now - t),
                        ..RateSample::default()
                    };
                    c.on_delivered(&st, t, s, false, &mut rs);
                    c.delivered += 1;
                    c.generate(now, 1, 0, Some(10_000), &mut rs);
                    c.on_ack(&rs, &ctx(now, stamps.len() as u32));
                }
            }
        }
        assert!(c.full_bw_reached, "mode {:?} bw {}", c.mode, c.bandwidth());
        assert!((c.bandwidth() - 10.0).abs() < 2.0, "bw {}", c.bandwidth());
        assert!(c.cwnd >= 150 && c.cwnd <= 400, "cwnd {}", c.cwnd);
    }

    #[test]
    fn rack_order() {
        assert!(rack_sent_after(2, 0, 1, 5));
        assert!(rack_sent_after(1, 6, 1, 5));
        assert!(!rack_sent_after(1, 5, 1, 5));
        assert!(rack_sent_after(1, 0, 1, u32::MAX));
    }
}
