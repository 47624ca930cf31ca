//! Whole-protocol tests: many sans-IO nodes on a simulated network (see `sim/mod.rs`).

mod sim;

use std::net::SocketAddrV4;
use std::time::Duration;

use peerhost_dht_rpc::messages::{INVALID_TOKEN, Message, Request, UNKNOWN_COMMAND};
use peerhost_dht_rpc::{
    Commit, Config, Event, NodeId, QueryParams, RequestError, RequestOptions, RequestParams,
};
use sim::{SERVER, Sim};

const MINUTE: Duration = Duration::from_secs(60);

fn xor_closest(ids: &[(NodeId, SocketAddrV4)], target: &[u8; 32], k: usize) -> Vec<SocketAddrV4> {
    let mut v = ids.to_vec();
    v.sort_by_key(|(id, _)| {
        let mut d = [0u8; 32];
        for i in 0..32 {
            d[i] = id.0[i] ^ target[i];
        }
        d
    });
    v.into_iter().take(k).map(|(_, a)| a).collect()
}

fn testnet(seed: u64, size: usize) -> Sim {
    let mut sim = Sim::new(seed);
    sim.add_bootstrapper();
    for _ in 1..size {
        let i = sim.add_persistent();
        assert!(
            sim.run_until(MINUTE, |s| s.nodes[i].node.is_bootstrapped()),
            "node {i} bootstrapped"
        );
    }
    sim
}

#[test]
fn bootstrapper_is_persistent_with_address_id() {
    let mut sim = Sim::new(1);
    sim.add_bootstrapper();
    assert!(sim.run_until(MINUTE, |s| s.nodes[0].node.is_bootstrapped()));
    let n = &sim.nodes[0].node;
    assert_eq!(n.id(), Some(NodeId::from_addr(Sim::addr(0))));
    assert!(!n.is_firewalled());
    assert_eq!(n.remote_address(), Some(Sim::addr(0)));
}

#[test]
fn persistent_nodes_join_and_find_the_true_closest() {
    let mut sim = testnet(2, 30);
    for (i, n) in sim.nodes.iter().enumerate() {
        assert_eq!(
            n.node.id(),
            Some(NodeId::from_addr(Sim::addr(i))),
            "node {i}"
        );
        assert!(!n.node.is_firewalled());
        assert!(
            n.node.table().len() >= 5,
            "node {i} knows {}",
            n.node.table().len()
        );
    }
    // Let maintenance run a while: nothing breaks, tables fill.
    sim.run_for(10 * MINUTE);
    let ids: Vec<_> = (0..30)
        .map(|i| (NodeId::from_addr(Sim::addr(i)), Sim::addr(i)))
        .collect();
    for t in 0..5u8 {
        let target = [t.wrapping_mul(51); 32];
        let q = sim.nodes[7].node.find_node(sim.now, target).unwrap();
        assert!(sim.run_until(MINUTE, |s| s.nodes[7].queries.contains_key(&q)));
        let r = sim.nodes[7].query_result(q).expect("query ok");
        let got: Vec<_> = r.closest_replies.iter().map(|r| r.from).collect();
        // The querying node itself is never in its own results.
        let mut want = xor_closest(&ids, &target, 21);
        want.retain(|a| *a != Sim::addr(7));
        want.truncate(20);
        // Kademlia walks are heuristic (JS stops reading a closer-node list at the first node
        // that is not closer, and `table.closest` is row-based): the closest are exact, the
        // tail nearly so.
        assert_eq!(got.len(), 20);
        assert_eq!(got[..10], want[..10], "target {t}");
        let overlap = got.iter().filter(|a| want.contains(a)).count();
        assert!(overlap >= 18, "target {t}: {got:?} vs {want:?}");
    }
}

#[test]
fn default_nodes_prove_reachability_but_stay_ephemeral() {
    let mut sim = testnet(3, 8);
    // A JS-default node: adaptive, firewalled at start.
    let i = sim.add(Config::with_bootstrap(vec![Sim::addr(0)]));
    assert!(sim.run_until(MINUTE, |s| s.nodes[i].node.is_bootstrapped()));
    let n = &sim.nodes[i].node;
    assert!(!n.is_firewalled(), "quick firewall check passed");
    assert!(n.is_ephemeral());
    assert_eq!(n.id(), None);
    // Ephemeral nodes never enter routing tables.
    let its_id = NodeId::from_addr(Sim::addr(i));
    sim.run_for(2 * MINUTE);
    for (j, other) in sim.nodes.iter().enumerate() {
        assert!(!other.node.table().contains(&its_id), "in node {j}'s table");
    }
    // After ~20 minutes of stable uptime it turns persistent (adaptive).
    assert!(sim.run_until(40 * MINUTE, |s| !s.nodes[i].node.is_ephemeral()));
    assert_eq!(sim.nodes[i].node.id(), Some(its_id));
    assert!(
        sim.run_until(10 * MINUTE, |s| s.nodes[1].node.table().contains(&its_id)
            || s.nodes[0].node.table().contains(&its_id))
    );
}

#[test]
fn natted_nodes_stay_firewalled_and_ephemeral() {
    let mut sim = testnet(4, 8);
    let mut c = Config::with_bootstrap(vec![Sim::addr(0)]);
    c.ephemeral = Some(false);
    let i = sim.add(c);
    sim.nodes[i].natted = true;
    assert!(sim.run_until(MINUTE, |s| s.nodes[i].node.is_bootstrapped()));
    let n = &sim.nodes[i].node;
    assert!(n.is_firewalled());
    assert!(n.is_ephemeral());
    // It still uses the DHT.
    let q = sim.nodes[i].node.find_node(sim.now, [9; 32]).unwrap();
    assert!(sim.run_until(MINUTE, |s| s.nodes[i].queries.contains_key(&q)));
    assert!(sim.nodes[i].query_result(q).unwrap().closest_replies.len() >= 7);
}

#[test]
fn forced_persistent_firewalled_node_passes_the_firewall_check() {
    let mut sim = testnet(5, 8);
    let mut c = Config::with_bootstrap(vec![Sim::addr(0)]);
    c.ephemeral = Some(false);
    let i = sim.add(c);
    assert!(sim.run_until(MINUTE, |s| s.nodes[i].node.is_bootstrapped()));
    let n = &sim.nodes[i].node;
    assert!(!n.is_firewalled());
    assert_eq!(n.id(), Some(NodeId::from_addr(Sim::addr(i))));
    assert_eq!(n.remote_address(), Some(Sim::addr(i)));
}

#[test]
fn user_commands_and_errors() {
    let mut sim = testnet(6, 4);
    let now = sim.now;
    let to = Sim::addr(2);
    let echo = sim.nodes[1]
        .node
        .request(
            now,
            to,
            RequestParams {
                command: 42,
                value: Some(b"abc".to_vec()),
                ..Default::default()
            },
            RequestOptions::default(),
        )
        .unwrap();
    let unknown = sim.nodes[1]
        .node
        .request(
            now,
            to,
            RequestParams {
                command: 99,
                target: Some([1; 32]),
                ..Default::default()
            },
            RequestOptions::default(),
        )
        .unwrap();
    let bad_token = sim.nodes[1]
        .node
        .request(
            now,
            to,
            RequestParams {
                command: 42,
                token: Some([0; 32]),
                ..Default::default()
            },
            RequestOptions::default(),
        )
        .unwrap();
    assert!(sim.run_until(MINUTE, |s| s.nodes[1].responses.len() == 3));
    let get = |id| match &sim.nodes[1].responses[&id] {
        Event::Response { result: Ok(r), .. } => r.clone(),
        e => panic!("{e:?}"),
    };
    let r = get(echo);
    assert_eq!(r.value.as_deref(), Some(&b"cba"[..]));
    assert_eq!(r.error, 0);
    assert!(r.token.is_some());
    assert_eq!(r.from_id, Some(NodeId::from_addr(to)));
    let r = get(unknown);
    assert_eq!(r.error, UNKNOWN_COMMAND);
    assert!(
        !r.closer_nodes.is_empty(),
        "unknown command with target has closer nodes"
    );
    let r = get(bad_token);
    assert_eq!(r.error, INVALID_TOKEN);
    assert!(
        r.token.is_some(),
        "INVALID_TOKEN replies carry a fresh token"
    );

    // A dead address: 4 sends, then a timeout.
    let dead = "10.9.9.9:1".parse().unwrap();
    let id = sim.nodes[1]
        .node
        .ping(sim.now, dead, RequestOptions::default())
        .unwrap();
    assert!(sim.run_until(MINUTE, |s| s.nodes[1].responses.contains_key(&id)));
    assert!(matches!(
        sim.nodes[1].responses[&id],
        Event::Response {
            result: Err(RequestError::Timeout),
            ..
        }
    ));
}

#[test]
fn query_with_commit_stores_on_the_closest_nodes() {
    let mut sim = testnet(7, 25);
    let target = [0x5a; 32];
    let mut p = QueryParams::new(target, 43);
    p.value = Some(b"stored".to_vec());
    p.commit = Commit::Auto;
    let q = sim.nodes[3].node.query(sim.now, p).unwrap();
    assert!(sim.run_until(MINUTE, |s| s.nodes[3].queries.contains_key(&q)));
    let r = sim.nodes[3].query_result(q).expect("commit ok").clone();
    assert_eq!(r.closest_replies.len(), 20);
    assert_eq!(r.commits.len(), 20);
    assert!(r.commits.iter().all(|c| c.error == 0));
    let holders: Vec<_> = sim
        .nodes
        .iter()
        .filter(|n| n.store.get(&target).is_some_and(|v| v == b"stored"))
        .map(|n| n.server_addr())
        .collect();
    let mut want: Vec<_> = r.closest_replies.iter().map(|r| r.from).collect();
    want.sort();
    let mut got = holders;
    got.sort();
    assert_eq!(got, want);
    assert!(sim.nodes[3].query_replies[&q] >= 20);
}

#[test]
fn commit_without_any_node_fails() {
    let mut sim = Sim::new(8);
    let i = sim.add(Config::default());
    assert!(sim.run_until(MINUTE, |s| s.nodes[i].node.is_bootstrapped()));
    let mut p = QueryParams::new([1; 32], 43);
    p.commit = Commit::Auto;
    let q = sim.nodes[i].node.query(sim.now, p).unwrap();
    assert!(sim.run_until(MINUTE, |s| s.nodes[i].queries.contains_key(&q)));
    assert!(matches!(
        &sim.nodes[i].queries[&q],
        Event::QueryDone {
            result: Err(peerhost_dht_rpc::QueryError::TooFewNodes),
            ..
        }
    ));
}

#[test]
fn dead_nodes_are_dropped_and_queries_route_around_them() {
    let mut sim = testnet(9, 20);
    sim.run_for(MINUTE);
    for i in 10..15 {
        sim.nodes[i].alive = false;
    }
    let dead: Vec<_> = (10..15).map(|i| NodeId::from_addr(Sim::addr(i))).collect();
    // Queries still finish and never report dead nodes.
    let q = sim.nodes[2].node.find_node(sim.now, [3; 32]).unwrap();
    assert!(sim.run_until(5 * MINUTE, |s| s.nodes[2].queries.contains_key(&q)));
    let r = sim.nodes[2].query_result(q).unwrap();
    assert!(
        r.closest_replies
            .iter()
            .all(|r| !dead.contains(&r.from_id.unwrap()))
    );
    // Maintenance pings remove them everywhere.
    assert!(sim.run_until(60 * MINUTE, |s| {
        s.nodes
            .iter()
            .filter(|n| n.alive)
            .all(|n| dead.iter().all(|d| !n.node.table().contains(d)))
    }));
}

#[test]
fn lossy_network_still_works() {
    let mut sim = Sim::new(10);
    sim.loss = 0.2;
    sim.add_bootstrapper();
    for _ in 1..15 {
        let i = sim.add_persistent();
        assert!(sim.run_until(5 * MINUTE, |s| s.nodes[i].node.is_bootstrapped()));
    }
    sim.run_for(5 * MINUTE);
    let q = sim.nodes[4].node.find_node(sim.now, [1; 32]).unwrap();
    assert!(sim.run_until(5 * MINUTE, |s| s.nodes[4].queries.contains_key(&q)));
    assert!(sim.nodes[4].query_result(q).unwrap().closest_replies.len() >= 10);
}

#[test]
fn malformed_and_unknown_floods_leave_the_node_serving() {
    let mut sim = testnet(11, 5);
    let victim = 1;
    let flooder: SocketAddrV4 = "10.66.0.1:666".parse().unwrap();
    let unknown = Message::Request(Request {
        tid: 1,
        to: Sim::addr(victim),
        internal: true,
        command: 77,
        target: Some([5; 32]),
        ..Default::default()
    })
    .encode();
    let good_before = sim.nodes[victim].node.stats().requests;
    for round in 0..200u32 {
        for j in 0..100u32 {
            let x = round * 100 + j;
            match x % 4 {
                0 => sim.inject(flooder, victim, &unknown),
                1 => sim.inject(flooder, victim, &[0x03, 0xff, 0xff]),
                2 => sim.inject(flooder, victim, &x.to_le_bytes()),
                _ => {
                    let from = SocketAddrV4::new((0x0b00_0000 + x).into(), 1000);
                    sim.inject(from, victim, &unknown)
                }
            }
        }
        // Meanwhile node 2 keeps pinging it.
        let id = sim.nodes[2]
            .node
            .ping(sim.now, Sim::addr(victim), RequestOptions::default())
            .unwrap();
        assert!(sim.run_until(MINUTE, |s| s.nodes[2].responses.contains_key(&id)));
        assert!(matches!(
            sim.nodes[2].responses[&id],
            Event::Response { result: Ok(_), .. }
        ));
        sim.run_for(Duration::from_millis(10));
    }
    let st = sim.nodes[victim].node.stats();
    assert!(st.rate_limited > 0, "{st:?}");
    assert!(st.malformed + st.rate_limited >= 10_000, "{st:?}");
    assert!(st.requests > good_before);
    let n = &sim.nodes[victim].node;
    assert!(n.rate_limited_ips() <= 4096);
    assert!(n.inflight() < 100);
    // Our own port is unaffected by the noise: it is still answering.
    assert_eq!(Sim::addr(victim).port(), SERVER);
}

#[test]
fn down_hints_about_live_nodes_evict_nothing() {
    let mut sim = testnet(12, 10);
    sim.run_for(MINUTE);
    let victim = 1;
    let attacker: SocketAddrV4 = "10.66.0.2:666".parse().unwrap();
    let known: Vec<_> = sim.nodes[victim]
        .node
        .table()
        .iter()
        .map(|n| n.addr)
        .collect();
    assert!(known.len() >= 5);
    // Make every known node "seen this tick", then hint that each one is down.
    let q = sim.nodes[victim].node.find_node(sim.now, [0; 32]).unwrap();
    assert!(sim.run_until(MINUTE, |s| s.nodes[victim].queries.contains_key(&q)));
    for (i, a) in known.iter().enumerate() {
        let hint = Message::Request(Request {
            tid: i as u16,
            to: Sim::addr(victim),
            internal: true,
            command: 3,
            value: Some(peerhost_dht_rpc::encode_addr(*a).to_vec()),
            ..Default::default()
        })
        .encode();
        sim.inject(attacker, victim, &hint);
    }
    sim.run_for(Duration::from_secs(10));
    for a in &known {
        assert!(
            sim.nodes[victim]
                .node
                .table()
                .contains(&NodeId::from_addr(*a)),
            "{a} evicted"
        );
    }
    // A hint about a node that really is down does remove it.
    let dead = known[0];
    let i = sim
        .nodes
        .iter()
        .position(|n| n.server_addr() == dead)
        .unwrap();
    sim.nodes[i].alive = false;
    let hint = Message::Request(Request {
        tid: 999,
        to: Sim::addr(victim),
        internal: true,
        command: 3,
        value: Some(peerhost_dht_rpc::encode_addr(dead).to_vec()),
        ..Default::default()
    })
    .encode();
    sim.inject(attacker, victim, &hint);
    sim.run_for(Duration::from_secs(10));
    assert!(
        !sim.nodes[victim]
            .node
            .table()
            .contains(&NodeId::from_addr(dead))
    );
}

/// Issue 17, item 5: a request whose source is spoofed (the "victim" below, where nothing
/// answers) gets nothing larger than itself sent there: the node holds its answer and sends one
/// probe (a bare PING, smaller than any request), which nobody answers. Real nodes prove their
/// address by answering the probe (or with a token) and get their answers.
#[test]
fn no_answer_larger_than_its_request_to_an_address_that_has_not_proven_it_receives() {
    let mut sim = testnet(12, 5);
    let node = 1;
    let victim: SocketAddrV4 = "10.77.0.1:5555".parse().unwrap();
    let requests = [
        // FIND_NODE: our id and up to 20 closer nodes back for 43 bytes.
        Message::Request(Request {
            tid: 1,
            to: Sim::addr(node),
            internal: true,
            command: 2,
            target: Some([7; 32]),
            ..Default::default()
        }),
        // An application command answered with a token and closer nodes.
        Message::Request(Request {
            tid: 2,
            to: Sim::addr(node),
            command: 43,
            target: Some([8; 32]),
            ..Default::default()
        }),
        // A bad token: INVALID_TOKEN carries a fresh token and closer nodes.
        Message::Request(Request {
            tid: 3,
            to: Sim::addr(node),
            command: 43,
            target: Some([9; 32]),
            token: Some([0xee; 32]),
            ..Default::default()
        }),
        // An unknown internal command: closer nodes.
        Message::Request(Request {
            tid: 4,
            to: Sim::addr(node),
            internal: true,
            command: 77,
            target: Some([5; 32]),
            ..Default::default()
        }),
    ];
    let mut sent = 0;
    for r in &requests {
        let bytes = r.encode();
        let before = sim.strays.len();
        sim.inject(victim, node, &bytes);
        sim.run_for(Duration::from_secs(5));
        sent += bytes.len();
        for (_, to, len) in &sim.strays[before..] {
            assert_eq!(*to, victim);
            assert!(
                *len <= bytes.len(),
                "{len} bytes for a {}-byte request",
                bytes.len()
            );
        }
    }
    let to_victim: usize = sim.strays.iter().map(|(_, _, l)| l).sum();
    assert!(
        to_victim <= sent,
        "{to_victim} bytes to the victim for {sent}"
    );
    let st = sim.nodes[node].node.stats();
    assert!(st.answers_held >= 4 && st.probes >= 1, "{st:?}");
    assert_eq!(
        sim.nodes[node].node.answers_held(),
        0,
        "given up after the probe"
    );
    assert!(!sim.nodes[node].node.is_proven(*victim.ip()));

    // A real node asking for a large answer gets it, after proving itself to the probe.
    let asker = 3;
    let value = vec![0x5a; 1000];
    let id = sim.nodes[asker]
        .node
        .request(
            sim.now,
            Sim::addr(node),
            RequestParams {
                command: 42,
                value: Some(value.clone()),
                target: Some([1; 32]),
                ..Default::default()
            },
            RequestOptions::default(),
        )
        .unwrap();
    assert!(sim.run_until(MINUTE, |s| s.nodes[asker].responses.contains_key(&id)));
    let Event::Response { result: Ok(r), .. } = &sim.nodes[asker].responses[&id] else {
        panic!("no answer: {:?}", sim.nodes[asker].responses[&id]);
    };
    assert_eq!(r.value.as_deref().map(<[u8]>::len), Some(1000));
}
