//! Hostile input never panics the core: random and mutated datagrams, fed to an endpoint whose
//! streams are in every state, interleaved with timeouts and application calls.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use peerhost_udx::packet::{self, Flags, Header, SackBlock};
use peerhost_udx::{Endpoint, Firewall, StreamConfig};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Raw(Vec<u8>),
    Packet {
        flags: u8,
        doff: u8,
        id: u32,
        rwnd: u32,
        seq: i16,
        ack: i16,
        payload: Vec<u8>,
        sacks: Vec<(i16, i16)>,
    },
    Advance(u16),
    Write(u16),
    Read,
    End,
    Destroy(u32),
    Message(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Op::Raw),
        (
            any::<u8>(),
            prop_oneof![Just(0u8), any::<u8>()],
            prop_oneof![1u32..=4, any::<u32>()],
            any::<u32>(),
            any::<i16>(),
            any::<i16>(),
            proptest::collection::vec(any::<u8>(), 0..1500),
            proptest::collection::vec((any::<i16>(), any::<i16>()), 0..60),
        )
            .prop_map(
                |(flags, doff, id, rwnd, seq, ack, payload, sacks)| Op::Packet {
                    flags,
                    doff,
                    id,
                    rwnd,
                    seq,
                    ack,
                    payload,
                    sacks,
                }
            ),
        any::<u16>().prop_map(Op::Advance),
        any::<u16>().prop_map(Op::Write),
        Just(Op::Read),
        Just(Op::End),
        (1u32..=4).prop_map(Op::Destroy),
        (0u16..3000).prop_map(Op::Message),
    ]
}

fn drain(ep: &mut Endpoint, now: Instant) {
    let mut n = 0;
    while let Some(t) = ep.poll_transmit(now) {
        assert!(t.bytes.len() <= packet::MAX_DATAGRAM);
        assert!(packet::Packet::decode(&t.bytes).is_some());
        n += 1;
        assert!(n < 100_000, "poll_transmit never ends");
    }
    while ep.poll_event().is_some() {}
    if let Some(t) = ep.poll_timeout() {
        // A deadline in the past must make progress when handled, not spin.
        let _ = t;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_input_never_panics(ops in proptest::collection::vec(op(), 1..80)) {
        let mut now = Instant::now();
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut ep = Endpoint::new();
        ep.create_stream(1, StreamConfig::default(), now).unwrap();
        ep.connect(1, 11, peer, now).unwrap();
        ep.create_stream(2, StreamConfig::default().firewall(Firewall::Accept), now).unwrap();
        ep.create_stream(
            3,
            StreamConfig::default().firewall(Firewall::Connect { remote_id: 33 }).recv_window(4096),
            now,
        )
        .unwrap();
        ep.create_stream(4, StreamConfig::default().send_buffer(3000), now).unwrap();
        ep.connect(4, 44, peer, now).unwrap();
        ep.write(4, &[7u8; 5000], now).unwrap();
        let mut buf = vec![0u8; 4096];
        for op in ops {
            match op {
                Op::Raw(b) => {
                    ep.handle_datagram(now, peer, &b);
                }
                Op::Packet { flags, doff, id, rwnd, seq, ack, payload, sacks } => {
                    let info = ep.stream_info(id);
                    let (base_seq, base_ack) =
                        info.map(|i| (i.ack, i.seq)).unwrap_or((0, 0));
                    let h = Header {
                        flags: Flags(flags),
                        data_offset: 0,
                        id,
                        rwnd,
                        seq: base_seq.wrapping_add(seq as i32 as u32),
                        ack: base_ack.wrapping_add(ack as i32 as u32),
                    };
                    let mut bytes = if flags & Flags::SACK.0 != 0 {
                        let blocks: Vec<SackBlock> = sacks
                            .iter()
                            .map(|&(s, e)| SackBlock {
                                start: base_ack.wrapping_add(s as i32 as u32),
                                end: base_ack.wrapping_add(e as i32 as u32),
                            })
                            .collect();
                        packet::encode_ack(h, &blocks)
                    } else {
                        packet::encode_packet(h, 0, &payload)
                    };
                    bytes[2] = flags;
                    bytes[3] = doff;
                    ep.handle_datagram(now, peer, &bytes);
                }
                Op::Advance(ms) => {
                    now += Duration::from_millis(u64::from(ms));
                    ep.handle_timeout(now);
                }
                Op::Write(n) => {
                    let _ = ep.write(1, &vec![1u8; usize::from(n)], now);
                }
                Op::Read => {
                    for id in 1..=4 {
                        let _ = ep.read(id, &mut buf);
                    }
                }
                Op::End => {
                    let _ = ep.end(1, now);
                }
                Op::Destroy(id) => {
                    let _ = ep.destroy(id);
                }
                Op::Message(n) => {
                    let _ = ep.send_message(1, &vec![2u8; usize::from(n)]);
                }
            }
            drain(&mut ep, now);
            for id in 1..=4 {
                if let Some(info) = ep.stream_info(id) {
                    // Receive buffering stays within the window plus slack.
                    prop_assert!(info.buffered <= 4 * 1024 * 1024 + 16 * 2048);
                    prop_assert!(info.unacked <= 1 << 24);
                }
            }
        }
        // Time can always move on: timers fire and nothing spins.
        for _ in 0..50 {
            let Some(t) = ep.poll_timeout() else { break };
            now = now.max(t);
            ep.handle_timeout(now);
            drain(&mut ep, now);
        }
    }
}
