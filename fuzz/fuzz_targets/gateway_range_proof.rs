//! Gateway range proofs (`PHR1`, untrusted HTTP bodies): no panic; whatever decodes re-encodes
//! to the same bytes, and recomputing its roots terminates within the bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerhost_gateway::range::{RangeProof, TrustedHead};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = RangeProof::decode(data) {
        assert_eq!(p.encode(), data, "the format has one encoding per value");
        let roots = p.roots();
        let head = TrustedHead {
            fork: p.fork,
            length: p.length,
            tree_hash: [0; 32],
        };
        let _ = p.verify(&head, p.start..p.end());
        if let Ok(r) = roots {
            assert!(r.len() <= 64);
        }
    }
});
