//! UDX: the packet decoder, then the same bytes as a script of datagrams, timeouts and
//! application calls fed to an endpoint with streams in several states. No panic, every
//! datagram we emit decodes and fits 2048 bytes, and time can always move on.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use peerhost_udx::packet::{MAX_DATAGRAM, Packet};
use peerhost_udx::{Endpoint, Firewall, StreamConfig};

fn drain(ep: &mut Endpoint, now: Instant) {
    for _ in 0..100_000 {
        let Some(t) = ep.poll_transmit(now) else {
            break;
        };
        assert!(t.bytes.len() <= MAX_DATAGRAM);
        assert!(Packet::decode(&t.bytes).is_some());
    }
    while ep.poll_event().is_some() {}
}

fuzz_target!(|data: &[u8]| {
    if let Some(p) = Packet::decode(data) {
        let _ = p.sack_blocks().count();
    }

    let mut now = Instant::now();
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut ep = Endpoint::new();
    let _ = ep.create_stream(1, StreamConfig::default(), now);
    let _ = ep.connect(1, 11, peer, now);
    let _ = ep.create_stream(2, StreamConfig::default().firewall(Firewall::Accept), now);
    let _ = ep.create_stream(
        3,
        StreamConfig::default()
            .firewall(Firewall::Connect { remote_id: 33 })
            .recv_window(4096),
        now,
    );
    let _ = ep.create_stream(4, StreamConfig::default().send_buffer(3000), now);
    let _ = ep.connect(4, 44, peer, now);
    let _ = ep.write(4, &[7u8; 5000], now);

    let mut buf = [0u8; 4096];
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op % 8 {
            0..=3 => {
                let len = rest.first().map_or(0, |&b| usize::from(b) * 8);
                rest = rest.get(1..).unwrap_or(&[]);
                let len = len.min(rest.len());
                let mut dgram = rest[..len].to_vec();
                rest = &rest[len..];
                // Aim most datagrams at a live stream.
                if dgram.len() >= 20 && op % 8 < 3 {
                    dgram[0] = 0xff;
                    dgram[1] = 0x01;
                    dgram[4..8].copy_from_slice(&u32::from(op % 8 + 1).to_le_bytes());
                }
                ep.handle_datagram(now, peer, &dgram);
            }
            4 => {
                let ms = rest.first().copied().unwrap_or(0);
                rest = rest.get(1..).unwrap_or(&[]);
                now += Duration::from_millis(u64::from(ms) * 10);
                ep.handle_timeout(now);
            }
            5 => {
                let _ = ep.write(1, &[1u8; 3000], now);
                let _ = ep.send_message(1, b"m");
            }
            6 => {
                for id in 1..=4 {
                    let _ = ep.read(id, &mut buf);
                }
            }
            _ => {
                let _ = if op & 0x80 == 0 {
                    ep.end(1, now)
                } else {
                    ep.destroy(2)
                };
            }
        }
        drain(&mut ep, now);
    }
    for _ in 0..50 {
        let Some(t) = ep.poll_timeout() else { break };
        now = now.max(t);
        ep.handle_timeout(now);
        drain(&mut ep, now);
    }
});
