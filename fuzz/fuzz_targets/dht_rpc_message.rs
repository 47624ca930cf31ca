//! dht-rpc: the datagram decoder (anything it accepts re-encodes to a datagram that decodes
//! and re-encodes to the same bytes: encoding normalises what JS also never writes, an empty
//! closer-node list or a zero error), then the same bytes as a script of datagrams, timeouts and commands
//! fed to a node. No panic; every datagram the node sends decodes and fits 2048 bytes; its
//! queues stay bounded; time can always move on.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use peerhost_dht_rpc::messages::{MAX_DATAGRAM, Message};
use peerhost_dht_rpc::{
    Commit, Config, Event, IncomingRequest, Node, NodeId, QueryParams, ReplyOptions,
    RequestOptions, RequestParams, SocketKind,
};

fn addr(i: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, i & 7), 1000 + u16::from(i >> 6))
}

fn drain(n: &mut Node, incoming: &mut Vec<IncomingRequest>) {
    while let Some(t) = n.poll_transmit() {
        assert!(t.contents.len() <= MAX_DATAGRAM);
        assert!(Message::decode(&t.contents).is_ok());
    }
    while let Some(ev) = n.poll_event() {
        if let Event::Request(r) = ev {
            if incoming.len() < 16 {
                incoming.push(r);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        let bytes = m.encode();
        let again = Message::decode(&bytes).expect("our encoding decodes");
        assert_eq!(again.encode(), bytes);
    }

    let mut now = Instant::now();
    let mut config = if data.first().is_some_and(|b| b & 1 == 0) {
        Config::bootstrapper(addr(200))
    } else {
        Config::with_bootstrap(vec![addr(1), addr(2)])
    };
    config.handle_user_commands = true;
    config.seed = Some([3; 32]);
    let mut n = Node::new(config, 1000, now);
    let mut incoming = Vec::new();
    drain(&mut n, &mut incoming);

    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let a = rest.first().copied().unwrap_or(0);
        match op % 8 {
            0..=3 => {
                // A datagram: length byte, then that many bytes. Ops 0-1 get a valid id for
                // their source when they look like requests, to reach the routing table.
                let len = usize::from(a).min(rest.len().saturating_sub(1));
                let mut dgram = rest.get(1..1 + len).unwrap_or(&[]).to_vec();
                rest = rest.get(1 + len..).unwrap_or(&[]);
                let from = addr(op >> 3);
                if op % 8 < 2 && dgram.len() >= 42 && dgram[0] == 0x03 {
                    dgram[1] |= 1;
                    dgram[10..42].copy_from_slice(&NodeId::from_addr(from).0);
                }
                let socket = if op & 0x40 == 0 {
                    SocketKind::Server
                } else {
                    SocketKind::Client
                };
                n.handle_datagram(now, socket, SocketAddr::V4(from), &dgram);
            }
            4 => {
                rest = rest.get(1..).unwrap_or(&[]);
                now += Duration::from_millis(u64::from(a) * 20);
                n.handle_timeout(now);
            }
            5 => {
                rest = rest.get(1..).unwrap_or(&[]);
                let mut p = QueryParams::new([a; 32], u64::from(a % 4));
                if a & 1 == 1 {
                    p.commit = Commit::Auto;
                }
                let _ = n.query(now, p);
            }
            6 => {
                rest = rest.get(1..).unwrap_or(&[]);
                let _ = n.request(
                    now,
                    addr(a),
                    RequestParams {
                        command: u64::from(a),
                        value: Some(vec![a; usize::from(a) * 8]),
                        ..Default::default()
                    },
                    RequestOptions::default(),
                );
                let _ = n.ping(now, addr(a), RequestOptions::default());
            }
            _ => {
                for r in incoming.drain(..) {
                    let _ = if op & 0x80 == 0 {
                        n.reply(&r, Some(&[op]), ReplyOptions::REPLY)
                    } else {
                        n.reply_error(&r, u64::from(op), ReplyOptions::ERROR)
                    };
                }
            }
        }
        drain(&mut n, &mut incoming);
        assert!(n.inflight() <= 2048);
        assert!(n.queries() <= 128);
    }
    for _ in 0..50 {
        let Some(t) = n.poll_timeout() else { break };
        now = now.max(t);
        n.handle_timeout(now);
        drain(&mut n, &mut incoming);
    }
});
