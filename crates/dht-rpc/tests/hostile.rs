//! Hostile input against one node: random and crafted datagrams, spoofed responses, timeouts
//! and commands in any order. The node never panics, only sends datagrams that decode and fit
//! [`MAX_DATAGRAM`], and keeps every queue and table within its limits.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use peerhost_dht_rpc::messages::{MAX_DATAGRAM, Message, Request, Response};
use peerhost_dht_rpc::{
    Commit, Config, Event, Node, NodeId, QueryParams, ReplyOptions, RequestOptions, RequestParams,
    SocketKind,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Raw(u8, Vec<u8>),
    Req(u8, Request),
    Res(u8, Response),
    Time(u16),
    Query([u8; 32], bool),
    Ping(u8),
    User(u8, u64, Option<Vec<u8>>),
    AnswerAll,
}

fn addr(i: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, i % 8, i), 1000 + u16::from(i % 3))
}

fn any_addr() -> impl Strategy<Value = SocketAddrV4> {
    any::<u8>().prop_map(addr)
}

fn any_request() -> impl Strategy<Value = Request> {
    (
        any::<u16>(),
        any_addr(),
        any::<bool>(),
        prop::option::of(any::<[u8; 32]>()),
        any::<bool>(),
        0u64..8,
        prop::option::of(any::<[u8; 32]>()),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..12)),
    )
        .prop_map(
            |(tid, to, with_id, token, internal, command, target, value)| Request {
                tid,
                to,
                // A valid id for the sender we will use, sometimes.
                id: with_id.then(|| NodeId::from_addr(addr(tid as u8))),
                token,
                internal,
                command,
                target,
                value,
            },
        )
}

fn any_response() -> impl Strategy<Value = Response> {
    (
        any::<u16>(),
        any_addr(),
        any::<bool>(),
        prop::option::of(any::<[u8; 32]>()),
        prop::option::of(prop::collection::vec(any_addr(), 0..25)),
        0u64..4,
    )
        .prop_map(|(tid, to, with_id, token, closer_nodes, error)| Response {
            tid,
            to,
            id: with_id.then(|| NodeId::from_addr(addr(tid as u8))),
            token,
            closer_nodes,
            error,
            value: None,
        })
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(a, b)| Op::Raw(a, b)),
        (any::<u8>(), any_request()).prop_map(|(a, r)| Op::Req(a, r)),
        (any::<u8>(), any_response()).prop_map(|(a, r)| Op::Res(a, r)),
        any::<u16>().prop_map(Op::Time),
        (any::<[u8; 32]>(), any::<bool>()).prop_map(|(t, c)| Op::Query(t, c)),
        any::<u8>().prop_map(Op::Ping),
        (
            any::<u8>(),
            0u64..4,
            prop::option::of(prop::collection::vec(any::<u8>(), 0..3000))
        )
            .prop_map(|(a, c, v)| Op::User(a, c, v)),
        Just(Op::AnswerAll),
    ]
}

fn node(now: Instant, persistent: bool) -> Node {
    let mut c = if persistent {
        Config::bootstrapper(addr(200))
    } else {
        Config::with_bootstrap(vec![addr(1), addr(2)])
    };
    c.handle_user_commands = true;
    c.seed = Some([7; 32]);
    let mut limits = c.limits;
    limits.max_inflight = 64;
    limits.max_queries = 4;
    limits.max_events = 32;
    limits.max_transmits = 128;
    limits.rate.max_ips = 16;
    c.limits = limits;
    Node::new(c, 1000, now)
}

fn drain(n: &mut Node, incoming: &mut Vec<peerhost_dht_rpc::IncomingRequest>) {
    let mut sent = 0;
    while let Some(t) = n.poll_transmit() {
        sent += 1;
        assert!(t.contents.len() <= MAX_DATAGRAM);
        assert!(Message::decode(&t.contents).is_ok(), "we sent garbage");
    }
    assert!(sent <= 128 + 64, "transmit queue bounded");
    let mut events = 0;
    while let Some(ev) = n.poll_event() {
        events += 1;
        if let Event::Request(r) = ev {
            incoming.push(r);
        }
    }
    // Completion events are not capped by `max_events`, but by requests and queries.
    assert!(events <= 32 + 64 + 4 + 8, "event queue bounded: {events}");
}

fn run(persistent: bool, ops: Vec<Op>) {
    let mut now = Instant::now();
    let mut n = node(now, persistent);
    let mut incoming = Vec::new();
    drain(&mut n, &mut incoming);
    for op in ops {
        match op {
            Op::Raw(a, b) => {
                let socket = if a & 1 == 0 {
                    SocketKind::Server
                } else {
                    SocketKind::Client
                };
                n.handle_datagram(now, socket, SocketAddr::V4(addr(a)), &b);
            }
            Op::Req(a, r) => {
                let from = addr(r.tid as u8);
                let _ = a;
                n.handle_datagram(
                    now,
                    SocketKind::Server,
                    SocketAddr::V4(from),
                    &Message::Request(r).encode(),
                );
            }
            Op::Res(a, r) => {
                let from = addr(r.tid as u8);
                let socket = if a & 1 == 0 {
                    SocketKind::Server
                } else {
                    SocketKind::Client
                };
                n.handle_datagram(
                    now,
                    socket,
                    SocketAddr::V4(from),
                    &Message::Response(r).encode(),
                );
            }
            Op::Time(ms) => {
                now += Duration::from_millis(u64::from(ms) * 8);
                n.handle_timeout(now);
            }
            Op::Query(t, commit) => {
                let mut p = QueryParams::new(t, 3);
                if commit {
                    p.commit = Commit::Auto;
                }
                let _ = n.query(now, p);
                let _ = n.find_node(now, t);
            }
            Op::Ping(a) => {
                let _ = n.ping(now, addr(a), RequestOptions::default());
            }
            Op::User(a, command, value) => {
                let _ = n.request(
                    now,
                    addr(a),
                    RequestParams {
                        command,
                        value,
                        ..Default::default()
                    },
                    RequestOptions::default(),
                );
            }
            Op::AnswerAll => {
                for r in incoming.drain(..) {
                    let _ = n.reply(&r, Some(&[1, 2, 3]), ReplyOptions::REPLY);
                    let _ = n.reply(&r, Some(&[0; 4000]), ReplyOptions::REPLY);
                    let _ = n.reply_error(&r, 5, ReplyOptions::ERROR);
                    let _ = n.relay(&r, None, addr(9), None);
                }
            }
        }
        drain(&mut n, &mut incoming);
        incoming.truncate(64);
        assert!(n.inflight() <= 64);
        assert!(n.queries() <= 4);
        assert!(n.rate_limited_ips() <= 16);
        assert!(n.table().len() <= 256 * 20);
    }
    // Time can always move on, and everything drains.
    for _ in 0..200 {
        let Some(t) = n.poll_timeout() else { break };
        now = now.max(t);
        n.handle_timeout(now);
        drain(&mut n, &mut incoming);
    }
    // Every request ends; only maintenance (pings, refreshes towards the silent bootstrap
    // nodes) keeps a few going.
    assert!(
        n.inflight() <= 10,
        "{} requests still in flight",
        n.inflight()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn persistent_node_survives_anything(ops in prop::collection::vec(any_op(), 0..120)) {
        run(true, ops);
    }

    #[test]
    fn joining_node_survives_anything(ops in prop::collection::vec(any_op(), 0..120)) {
        run(false, ops);
    }
}

#[test]
fn oversized_values_are_refused_not_sent() {
    let now = Instant::now();
    let mut n = node(now, true);
    let r = n.request(
        now,
        addr(1),
        RequestParams {
            command: 1,
            value: Some(vec![0; MAX_DATAGRAM]),
            ..Default::default()
        },
        RequestOptions::default(),
    );
    assert_eq!(r, Err(peerhost_dht_rpc::RequestError::TooLarge));
}
