//! The receive path of a stream: packets in, data and SACK ranges, in-order delivery.

use super::*;

impl Stream {
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
    pub(super) fn idle_timer(&mut self, now: Instant) {
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

    pub(super) fn sack_is_valid(&self, b: SackBlock) -> bool {
        // udx_sack_is_valid: remote_acked <= start < end <= seq
        !(seq_diff(b.end, self.seq) > 0
            || seq_diff(b.start, b.end) >= 0
            || seq_diff(b.start, self.seq) >= 0
            || seq_diff(b.start, self.remote_acked) < 0)
    }

    pub(super) fn on_data(&mut self, seq: u32, flags: Flags, payload: &[u8]) {
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

    pub(super) fn deliver(&mut self, flags: Flags, payload: Vec<u8>) {
        if flags.contains(Flags::DATA) && !payload.is_empty() {
            let was_empty = self.readable.is_empty();
            self.readable.push(payload);
            if was_empty {
                self.events.push_back(StreamEvent::Readable);
            }
        }
    }

    pub(super) fn drain_ooo(&mut self) {
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

    pub(super) fn insert_sack_range(&mut self, x: u64) {
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

    pub(super) fn check_eof(&mut self) {
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
    pub(super) fn ack_packet(
        &mut self,
        seq: u32,
        sack: bool,
        now_us: u64,
        rs: &mut RateSample,
    ) -> bool {
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

    pub(super) fn rtt_min_us(&self) -> Option<u64> {
        let v = self.rtt_min.get();
        v.is_finite().then_some(v as u64)
    }

    pub(super) fn clamp_rtt(&self, rtt: u64) -> u64 {
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
}
