//! Loss detection (RACK-TLP, RTO) and the stream's timers.

use super::*;

impl Stream {
    pub(super) fn rack_reo_wnd(&self) -> u64 {
        // rack_update_reo_wnd (RFC 8985 6.2.4)
        if !self.reordering_seen && (self.ca_state != CaState::Open || self.sacks >= 3) {
            return 0;
        }
        let r = self.rtt_min_us().unwrap_or(0) / 4;
        r.min(self.srtt_us.unwrap_or(0))
    }

    pub(super) fn packet_mut(&mut self, seq: u32) -> Option<&mut SentPacket> {
        let idx = seq.wrapping_sub(self.remote_acked) as usize;
        self.outgoing.get_mut(idx).and_then(Option::as_mut)
    }

    pub(super) fn packet(&self, seq: u32) -> Option<&SentPacket> {
        let idx = seq.wrapping_sub(self.remote_acked) as usize;
        self.outgoing.get(idx).and_then(Option::as_ref)
    }

    /// RACK loss detection (`rack_detect_loss`); returns the reorder timeout still pending.
    pub(super) fn rack_detect_loss(&mut self, now_us: u64) -> u64 {
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

    pub(super) fn compact_order(&mut self) {
        if self.order.len() > 2 * self.inflight_pkts as usize + 1024 {
            let mut order = std::mem::take(&mut self.order);
            order.retain(|&(seq, generation)| {
                self.packet(seq)
                    .is_some_and(|p| p.in_flight && p.send_gen == generation)
            });
            self.order = order;
        }
    }

    pub(super) fn rack_detect_loss_and_arm(&mut self, now: Instant) -> bool {
        let timeout = self.rack_detect_loss(self.us(now));
        if timeout > 0 {
            self.start_timer(TimerKind::RackReo, now + Duration::from_micros(timeout));
            return true;
        }
        false
    }

    /// A lost MTU probe (`mtu_unprobeify_packet`).
    pub(super) fn probe_failed(&mut self) {
        if self.mtu_state == MtuState::Search {
            if self.mtu_probe_count >= MTU_MAX_PROBES {
                self.mtu_state = MtuState::Complete;
            } else {
                self.mtu_probe_wanted = true;
            }
        }
    }

    pub(super) fn start_timer(&mut self, kind: TimerKind, at: Instant) {
        if kind == TimerKind::Rto {
            self.next_rto = at;
        }
        self.timer = Some((kind, at));
    }

    pub(super) fn rearm_rto(&mut self, now: Instant, from_now: bool) {
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
    pub(super) fn schedule_loss_probe(&mut self, now: Instant, advancing_rto: bool) -> bool {
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
    pub(super) fn arm_timers(&mut self, now: Instant, arm_tlp: bool) {
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

    pub(super) fn wants_paced_send(&self) -> bool {
        if self.remote.is_none() {
            return false;
        }
        if !self.retransmit_queue.is_empty() && self.inflight_pkts < self.cc.cwnd {
            return true;
        }
        (!self.write_queue.is_empty() || self.end_pending) && self.window_open()
    }

    pub(super) fn window_open(&self) -> bool {
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
    pub(super) fn on_rto(&mut self, now: Instant) {
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
}
