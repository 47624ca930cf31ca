//! Gateway set proofs (`PHS1`, untrusted HTTP and WebRTC bodies) and the `runs=` query: no
//! panic; whatever decodes re-encodes to the same bytes (one spelling per value), and
//! recomputing its roots terminates within the bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerhost_gateway::range::TrustedHead;
use peerhost_gateway::set::{Runs, SetProof};

fuzz_target!(|data: &[u8]| {
    if let Ok(runs) = Runs::decode(data) {
        assert_eq!(runs.encode(), data, "runs have one encoding");
        assert_eq!(Runs::from_query(&runs.to_query()).as_ref(), Ok(&runs));
    }
    if let Ok(q) = std::str::from_utf8(data) {
        if let Ok(runs) = Runs::from_query(q) {
            assert_eq!(runs.to_query(), q, "a runs= query has one spelling");
        }
    }
    if let Ok(p) = SetProof::decode(data) {
        assert_eq!(p.encode(), data, "the format has one encoding per value");
        let head = TrustedHead {
            fork: p.fork,
            length: p.length,
            tree_hash: [0; 32],
        };
        let _ = p.verify(&head, &p.runs);
        if let Ok(r) = p.roots() {
            assert!(r.len() <= 64);
        }
    }
});
