//! The send path of a stream: pacing tokens, new data, retransmissions, tail loss probes.

use super::*;

impl Stream {
    pub(super) fn refill(&mut self, now_us: u64) {
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

    pub(super) fn send_tlp(&mut self, now: Instant) -> Option<Transmit> {
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
    pub(super) fn send_new(&mut self, now: Instant, tlp: bool) -> Option<Transmit> {
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
    pub(super) fn transmit(
        &mut self,
        seq: u32,
        now: Instant,
        retransmit: bool,
    ) -> Option<Transmit> {
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

    pub(super) fn emit(&mut self, dest: SocketAddr, bytes: Vec<u8>) -> Transmit {
        self.stats.packets_tx += 1;
        self.stats.bytes_tx += bytes.len() as u64;
        Transmit {
            dest,
            bytes,
            stream: Some(self.local_id),
        }
    }
}
