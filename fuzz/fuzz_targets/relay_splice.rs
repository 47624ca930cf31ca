//! udx relay splices (what a blind relay forwards): arbitrary datagrams from a few addresses
//! into a relay table with two splices. No panic; forwarded datagrams keep their length and
//! everything but the destination id.
#![no_main]

use std::net::SocketAddr;

use peerhost_udx::relay::{Relay, Relayed};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut relay = Relay::new(2);
    relay.splice(1, 10, 2, 20);
    relay.splice(3, 30, 4, 40);
    relay.start_capture(4096);
    let mut rest = data;
    while rest.len() >= 2 {
        let (from, len) = (rest[0], usize::from(rest[1]));
        rest = &rest[2..];
        let dgram = &rest[..len.min(rest.len())];
        rest = &rest[dgram.len()..];
        let addr = SocketAddr::from(([10, 0, 0, from % 4], 1000));
        if let Relayed::Forward(t) = relay.handle_datagram(addr, dgram) {
            assert_eq!(t.bytes.len(), dgram.len());
            assert_eq!(&t.bytes[..4], &dgram[..4]);
            assert_eq!(&t.bytes[8..], &dgram[8..]);
        }
    }
    assert!(relay.take_capture().len() <= 4096);
});
