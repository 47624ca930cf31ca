//! Entry points for fuzz targets (`fuzz/fuzz_targets/hyperdht_*.rs`): each takes arbitrary
//! bytes and must never panic, whatever they hold.

use peerhost_encoding::CompactEncoding;

use crate::messages::{
    self, Announce, Handshake, Holepunch, HolepunchPayload, LookupReply, MutableGetResponse,
    MutablePutRequest, NoisePayload, PeerRecord, PluginRequest,
};

fn check<T: CompactEncoding + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(v) = messages::decode::<T>(data) {
        // Whatever decodes re-encodes to something that decodes to the same value (JS encoders
        // normalise a few fields, e.g. the noise payload's versions, so compare values, not
        // bytes).
        let again = messages::decode::<T>(&messages::encode(&v));
        assert_eq!(again.as_ref(), Ok(&v), "re-decoding changed the value");
    }
}

/// Every message decoder on the same input; the first byte picks nothing, all run.
pub fn messages(data: &[u8]) {
    check::<PeerRecord>(data);
    check::<LookupReply>(data);
    check::<Announce>(data);
    check::<Handshake>(data);
    check::<Holepunch>(data);
    check::<HolepunchPayload>(data);
    check::<MutablePutRequest>(data);
    check::<MutableGetResponse>(data);
    check::<PluginRequest>(data);
    // The noise payload encoder always writes version 1 (for the payload, udx, secretStream
    // and relayThrough alike, as JS does): compare with those normalised.
    if let Ok(mut p) = messages::decode::<NoisePayload>(data) {
        if p.version == 1 {
            if let Some(u) = &mut p.udx {
                u.version = 1;
            }
            if let Some(s) = &mut p.secret_stream {
                s.version = 1;
            }
            if let Some(r) = &mut p.relay_through {
                r.version = 1;
            }
            let again = messages::decode::<NoisePayload>(&messages::encode(&p));
            assert_eq!(again.as_ref(), Ok(&p), "re-decoding changed the value");
        }
    }
}

/// The holepunch payload decryptor with a fixed key (authentication fails for almost every
/// input; the point is that no length or content makes it panic).
pub fn secure_payload(data: &[u8]) {
    let sp = crate::crypto::SecurePayload::with_local_secret(&[7; 32], [9; 32]);
    let _ = sp.decrypt(data);
}

/// A persistent node with a listening server, fed `data` as a raw datagram and as the value of
/// every HyperDHT command (with and without a valid token, towards an unknown target and the
/// server's): no input may panic it, and it must answer a good request afterwards.
pub fn node_requests(data: &[u8]) {
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
    use std::time::Instant;

    use peerhost_dht_rpc::SocketKind;
    use peerhost_dht_rpc::messages::{Message, Request};

    const NODE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 49737);
    const PEER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 5000);

    let now = Instant::now();
    let mut dht = peerhost_dht_rpc::Config::bootstrapper(NODE);
    dht.seed = Some([3; 32]);
    let config = crate::Config {
        dht,
        ..crate::Config::default()
    };
    let mut node = crate::Node::new(config, NODE.port(), now, 0);
    let server = peerhost_ids::KeyPair::from_seed(&[4; 32]);
    let server_target = crate::crypto::hash(&server.public_key());
    let _ = node.listen(now, server, Box::new(|_, _, _| false));
    let drain = |node: &mut crate::Node| {
        let mut out = Vec::new();
        while node.poll_event(now).is_some() {}
        while let Some(t) = node.poll_transmit() {
            out.push(t);
        }
        out
    };
    drain(&mut node);

    let send = |node: &mut crate::Node, token, command, target, value: Option<Vec<u8>>| {
        let req = Message::Request(Request {
            tid: 7,
            to: NODE,
            id: None,
            token,
            internal: false,
            command,
            target,
            value,
        });
        node.handle_datagram(now, SocketKind::Server, SocketAddr::V4(PEER), &req.encode());
        drain(node)
    };
    // A valid token for PEER, from any reply.
    let token = send(&mut node, None, 3, Some([0; 32]), None)
        .first()
        .and_then(|t| match Message::decode(&t.contents) {
            Ok(Message::Response(r)) => r.token,
            _ => None,
        });

    node.handle_datagram(now, SocketKind::Server, SocketAddr::V4(PEER), data);
    drain(&mut node);
    for command in 0..=11u64 {
        for target in [Some([9; 32]), Some(server_target), None] {
            for tok in [None, token] {
                send(&mut node, tok, command, target, Some(data.to_vec()));
            }
        }
    }
    node.handle_timeout(now + std::time::Duration::from_secs(30));
    drain(&mut node);
    // Still answering: an unknown command gets its error reply.
    let out = send(&mut node, None, 99, None, None);
    assert_eq!(out.len(), 1, "the node stopped answering");
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn node_survives_any_request(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            super::node_requests(&bytes);
        }

        #[test]
        fn secure_payload_survives_anything(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            super::secure_payload(&bytes);
        }
    }
}
