//! udx relay splices (what a blind relay forwards): arbitrary datagrams from a few addresses,
//! with time passing, into a relay table with a learned splice and a pinned one under tight
//! bounds. No panic; forwarded datagrams keep their length and everything but the destination
//! id; a pinned end only ever sends to its pinned address; bounds end splices, and each ended
//! splice is reported once.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use peerhost_udx::relay::{Relay, Relayed, SpliceLimits};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut now = start;
    let mut relay = Relay::new(2);
    let mut limits = SpliceLimits::default();
    limits.max_bytes = 4096;
    limits.rate = 2000;
    limits.burst = 1000;
    limits.idle = Duration::from_secs(2);
    limits.lifetime = Duration::from_secs(30);
    relay.set_limits(limits);
    let addr = |i: u8| SocketAddr::from(([10, 0, 0, i % 4], 1000));
    relay.splice(now, 1, 10, 2, 20);
    relay.splice_pinned(now, (3, 30, Some(addr(1))), (4, 40, Some(addr(2))));
    relay.start_capture(4096);
    let mut ended = Vec::new();
    let mut rest = data;
    while rest.len() >= 3 {
        let (from, len, wait) = (rest[0], usize::from(rest[1]), rest[2]);
        rest = &rest[3..];
        let dgram = &rest[..len.min(rest.len())];
        rest = &rest[dgram.len()..];
        now += Duration::from_millis(u64::from(wait) * 10);
        if let Relayed::Forward(t) = relay.handle_datagram(now, addr(from), dgram) {
            assert_eq!(t.bytes.len(), dgram.len());
            assert_eq!(&t.bytes[..4], &dgram[..4]);
            assert_eq!(&t.bytes[8..], &dgram[8..]);
            let id = u32::from_le_bytes([dgram[4], dgram[5], dgram[6], dgram[7]]);
            if id == 3 {
                assert_eq!(t.dest, addr(2), "a pinned end sends only to its pin");
            }
            if id == 4 {
                assert_eq!(t.dest, addr(1), "a pinned end sends only to its pin");
            }
        }
        relay.expire(now);
        ended.extend(relay.take_ended());
    }
    ended.sort_unstable();
    let before = ended.len();
    ended.dedup();
    assert_eq!(before, ended.len(), "a splice reported twice");
    assert!(relay.take_capture().len() <= 4096);
});
