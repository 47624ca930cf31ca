//! Every vector of `hyperdht/vectors.js`, re-run live against the real hyperdht 6.34.0
//! encoders and signers and checked with `peerhost-hyperdht`:
//! - `encoded`: the Rust decoder reads JS's bytes and the Rust encoder writes them back
//!   identically (the crate's snapshot tests also build each value from scratch);
//! - `decoded`: what JS accepts or rejects, and what it reads, the Rust decoder does too;
//! - `signed`: Rust signs the same inputs to the same announce, unannounce and mutable
//!   signatures (Ed25519 is deterministic) and derives the same targets;
//! - `secure`: Rust opens the holepunch payloads JS sealed.
//!
//! Run: `cargo test -p peerhost-interop-tests --test hyperdht_vectors`.

use std::net::SocketAddrV4;

use peerhost_encoding::{CompactEncoding, DecodeError};
use peerhost_hyperdht::constants::ns;
use peerhost_hyperdht::crypto::{self, SecurePayload, announce_signable};
use peerhost_hyperdht::messages::{
    self, Announce, Handshake, Holepunch, HolepunchPayload, LookupReply, MutableGetResponse,
    MutablePutRequest, NoisePayload, PeerRecord, PluginRequest,
};
use peerhost_ids::KeyPair;
use peerhost_interop_tests::{describe, node};
use serde_json::{Value, json};

fn vectors() -> Value {
    let out = node("hyperdht/vectors.js", &[]);
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).expect("vectors.js prints one JSON object")
}

fn round_trip<T: CompactEncoding>(hex_in: &str) -> String {
    let bytes = hex::decode(hex_in).unwrap();
    let v: T = messages::decode(&bytes).unwrap_or_else(|e| panic!("{hex_in}: {e}"));
    hex::encode(messages::encode(&v))
}

fn a4(a: &SocketAddrV4) -> Value {
    json!({"host": a.ip().to_string(), "port": a.port()})
}

fn peer_json(p: &PeerRecord) -> Value {
    json!({"publicKey": hex::encode(p.public_key),
        "relayAddresses": p.relay_addresses.iter().map(a4).collect::<Vec<_>>()})
}

/// The decoded value in the shape `vectors.js` prints (`plain()` of the JS object).
fn decoded_json(name: &str, bytes: &[u8]) -> Result<Value, DecodeError> {
    let kind = name.split('/').next().unwrap_or_default();
    Ok(match kind {
        "noise-payload" => {
            let p: NoisePayload = messages::decode(bytes)?;
            json!({
                "version": p.version, "error": p.error.0, "firewall": p.firewall.0,
                "holepunch": p.holepunch.map(|h| json!({"id": h.id, "relays": h.relays.iter()
                    .map(|r| json!({"relayAddress": a4(&r.relay_address), "peerAddress": a4(&r.peer_address)}))
                    .collect::<Vec<_>>()})),
                "addresses4": p.addresses4.iter().map(a4).collect::<Vec<_>>(),
                "addresses6": p.addresses6.iter().map(|a| json!({"host": a.ip().to_string(), "port": a.port()})).collect::<Vec<_>>(),
                "udx": p.udx.map(|u| json!({"version": u.version, "reusableSocket": u.reusable_socket, "id": u.id, "seq": u.seq})),
                "secretStream": p.secret_stream.map(|s| json!({"version": s.version})),
                "relayThrough": p.relay_through.map(|r| json!({"version": r.version,
                    "publicKey": hex::encode(r.public_key), "token": hex::encode(r.token)})),
                "relayAddresses": p.relay_addresses.map(|r| r.iter().map(a4).collect::<Vec<_>>()),
            })
        }
        "lookup" => {
            let l: LookupReply = messages::decode(bytes)?;
            json!({"peers": l.peers.iter().map(peer_json).collect::<Vec<_>>(), "bump": l.bump})
        }
        "handshake" => {
            let h: Handshake = messages::decode(bytes)?;
            json!({"mode": h.mode.0, "noise": hex::encode(&h.noise),
                "peerAddress": h.peer_address.as_ref().map(a4), "relayAddress": h.relay_address.as_ref().map(a4)})
        }
        "announce" => {
            let a: Announce = messages::decode(bytes)?;
            json!({"peer": a.peer.as_ref().map(peer_json), "refresh": a.refresh.map(hex::encode),
                "signature": a.signature.map(hex::encode), "bump": a.bump})
        }
        "peer" => peer_json(&messages::decode::<PeerRecord>(bytes)?),
        "mutable" => {
            let m: MutableGetResponse = messages::decode(bytes)?;
            json!({"seq": m.seq, "value": hex::encode(&m.value), "signature": hex::encode(m.signature)})
        }
        "holepunch-payload" => {
            let p: HolepunchPayload = messages::decode(bytes)?;
            json!({"error": p.error.0, "firewall": p.firewall.0, "round": p.round,
                "connected": p.connected, "punching": p.punching,
                "addresses": p.addresses.map(|a| a.iter().map(a4).collect::<Vec<_>>()),
                "remoteAddress": p.remote_address.as_ref().map(a4),
                "token": p.token.map(hex::encode), "remoteToken": p.remote_token.map(hex::encode)})
        }
        other => panic!("no decoder for {other}"),
    })
}

#[test]
fn every_js_vector_matches() {
    let v = vectors();
    assert_eq!(v["versions"]["hyperdht"], "6.34.0");

    // Namespaces.
    for (name, ours) in [
        ("ANNOUNCE", ns::ANNOUNCE),
        ("UNANNOUNCE", ns::UNANNOUNCE),
        ("MUTABLE_PUT", ns::MUTABLE_PUT),
        ("PEER_HANDSHAKE", ns::PEER_HANDSHAKE),
        ("PEER_HOLEPUNCH", ns::PEER_HOLEPUNCH),
        ("PLUGIN", ns::PLUGIN),
    ] {
        assert_eq!(v["ns"][name], hex::encode(ours), "NS.{name}");
    }

    // Encoded: decode JS bytes and re-encode them identically.
    let mut n = 0;
    for e in v["encoded"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        let h = e["hex"].as_str().unwrap();
        let again = match name.split('/').next().unwrap() {
            "peer" => round_trip::<PeerRecord>(h),
            "lookup" => round_trip::<LookupReply>(h),
            "announce" => round_trip::<Announce>(h),
            "handshake" => round_trip::<Handshake>(h),
            "holepunch" => round_trip::<Holepunch>(h),
            "holepunch-payload" => round_trip::<HolepunchPayload>(h),
            "noise-payload" => round_trip::<NoisePayload>(h),
            "plugin" => round_trip::<PluginRequest>(h),
            "mutable" => match name {
                "mutable/signable" => {
                    assert_eq!(hex::encode(messages::mutable_signable(5, b"hi")), h);
                    h.to_owned()
                }
                "mutable/put-request" => round_trip::<MutablePutRequest>(h),
                _ => round_trip::<MutableGetResponse>(h),
            },
            other => panic!("unknown vector family {other}"),
        };
        assert_eq!(again, h, "{name}");
        n += 1;
    }
    assert!(n >= 30, "only {n} encoded vectors");

    // Decoded: same acceptance, same reading.
    for d in v["decoded"].as_array().unwrap() {
        let name = d["name"].as_str().unwrap();
        let bytes = hex::decode(d["hex"].as_str().unwrap()).unwrap();
        let js = &d["result"];
        match decoded_json(name, &bytes) {
            Ok(ours) => {
                assert!(
                    js.get("error").is_none() || js["error"].is_number(),
                    "{name}: JS threw {js}, we read {ours}"
                );
                assert_eq!(&ours, js, "{name}");
            }
            Err(e) => assert!(
                js["error"].is_string(),
                "{name}: we failed ({e}) where JS read {js}"
            ),
        }
    }

    // Signatures and targets.
    let kp = KeyPair::from_seed(&[1; 32]);
    for s in v["signed"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        if name.starts_with("announce/") {
            assert_eq!(s["publicKey"], hex::encode(kp.public_key()));
            let fixed = |k: &str| -> [u8; 32] {
                hex::decode(s[k].as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap()
            };
            let peer = PeerRecord {
                public_key: kp.public_key(),
                relay_addresses: s["relayAddresses"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| {
                        SocketAddrV4::new(
                            a["host"].as_str().unwrap().parse().unwrap(),
                            a["port"].as_u64().unwrap() as u16,
                        )
                    })
                    .collect(),
            };
            let refresh: Option<[u8; 32]> = s["refresh"]
                .as_str()
                .map(|r| hex::decode(r).unwrap().try_into().unwrap());
            for (field, namespace) in [("announce", ns::ANNOUNCE), ("unannounce", ns::UNANNOUNCE)] {
                let signable = announce_signable(
                    &namespace,
                    &fixed("target"),
                    &fixed("nodeId"),
                    &fixed("token"),
                    &peer,
                    refresh.as_ref(),
                );
                assert_eq!(s[field], hex::encode(kp.sign(&signable)), "{name} {field}");
            }
        } else if name.starts_with("mutable/") {
            let value = hex::decode(s["value"].as_str().unwrap()).unwrap();
            let seq = s["seq"].as_u64().unwrap();
            let sig = crypto::sign_mutable(seq, &value, &kp);
            assert_eq!(s["signature"], hex::encode(sig), "{name}");
            assert!(crypto::verify_mutable(&sig, seq, &value, &kp.public_key()));
            assert_eq!(s["target"], hex::encode(crypto::hash(&kp.public_key())));
        } else {
            let value = hex::decode(s["value"].as_str().unwrap()).unwrap();
            assert_eq!(s["target"], hex::encode(crypto::hash(&value)), "{name}");
        }
    }

    // Sealed holepunch payloads open, with the same holepunch secret derivation.
    for s in v["secure"].as_array().unwrap() {
        let hash: [u8; 64] = hex::decode(s["handshakeHash"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let secret = crypto::holepunch_secret(&hash);
        assert_eq!(s["secret"], hex::encode(secret));
        let sealed = hex::decode(s["box"].as_str().unwrap()).unwrap();
        let opened = SecurePayload::new(&secret)
            .decrypt(&sealed)
            .expect("JS box opens");
        assert_eq!(s["plain"], hex::encode(messages::encode(&opened)));
    }
}
