//! blind-relay: a relay core with three sessions (two from one client address, under its
//! per-client bounds) and a client, fed arbitrary protomux frames (each input is split into
//! `[target byte, len byte, frame…]` records). No panic, bounds hold, every match the core
//! reports can be confirmed, and no match pairs a session with itself.
#![no_main]

use peerhost_relay::client::Client;
use peerhost_relay::server::{Event, Server};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut server = Server::default();
    let from = std::net::SocketAddr::from(([10, 0, 0, 1], 1000));
    let (Some(a), Some(b)) = (
        server.accept_from(Some(&[1; 32]), from),
        server.accept_from(Some(&[2; 32]), from),
    ) else {
        panic!("two sessions fit any per-client bound");
    };
    let sessions = [a, b, server.accept(None)];
    let mut client = Client::new(Some(&[1; 32]));
    let mut rest = data;
    let mut next_id = 1u32;
    while rest.len() >= 2 {
        let (target, len) = (rest[0], usize::from(rest[1]));
        rest = &rest[2..];
        let frame = &rest[..len.min(rest.len())];
        rest = &rest[frame.len()..];
        match target % 5 {
            3 => {
                let _ = client.handle_input(frame);
            }
            4 => {
                let _ = client.pair(target & 8 != 0, [target; 32], u32::from(target));
            }
            i => {
                let sid = sessions[usize::from(i)];
                if server.handle_input(sid, frame).is_err() {
                    server.close(sid);
                }
            }
        }
        while let Some(ev) = server.poll_event() {
            if let Event::Matched {
                token,
                initiator,
                responder,
            } = ev
            {
                assert_ne!(initiator.session, responder.session);
                server.confirm(token, next_id, next_id + 1);
                next_id += 2;
            }
        }
        for sid in sessions {
            while server.poll_transmit(sid).is_some() {}
        }
        while client.poll_transmit().is_some() {}
        while client.poll_event().is_some() {}
        let stats = server.stats();
        assert!(stats.pending <= 4096);
    }
});
