//! Domain-separation namespaces, derived as `hypercore-crypto`'s `namespace(name, ids)` does:
//! `ns = BLAKE2b-256(name)`, then `id_i = BLAKE2b-256(ns ‖ byte(i))`.
//!
//! The constants below are written out in hex (so a reader can grep for them in a capture) and
//! a test derives each one again.

use crate::hash::blake2b256;

/// Derive the namespace hash for each id in `ids`.
pub fn namespace(name: &str, ids: &[u8]) -> Vec<[u8; 32]> {
    let ns = blake2b256(&[name.as_bytes()]);
    ids.iter().map(|&i| blake2b256(&[&ns, &[i]])).collect()
}

const fn h(s: &str) -> [u8; 32] {
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nib(b[2 * i]) << 4) | nib(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nib(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("bad hex digit in a namespace constant"),
    }
}

/// `namespace('hypercore', 6)` from hypercore/lib/caps.js.
pub mod hypercore {
    use super::h;
    /// Tree signatures (`caps.treeSignable`).
    pub const TREE: [u8; 32] =
        h("9fac70b50ca14efc4e91c833b204e75b8b5aad8b5881bfc0adb5ef38a3275b9c");
    /// Replication capability sent by the initiator.
    pub const REPLICATE_INITIATOR: [u8; 32] =
        h("51812a2a359b50369536775df89e18e47740f3db72ac0ae70b29594c194dc316");
    /// Replication capability sent by the responder.
    pub const REPLICATE_RESPONDER: [u8; 32] =
        h("0438492d02970cc13528ac0262bca0074e0926260256865accc0bf15bd79127d");
    /// Manifest hashing (`manifestHash`).
    pub const MANIFEST: [u8; 32] =
        h("e64b7108eacce47cfc61ac850568f55f8b15b82ec5ed78c4ec597b036e2a1498");
    /// The namespace of the default signer in a manifest.
    pub const DEFAULT_NAMESPACE: [u8; 32] =
        h("4144eea531e483d54e0c14f4ca68e0644f355343ff6fcb0f005200e12cd747cb");
    /// Default block encryption.
    pub const DEFAULT_ENCRYPTION: [u8; 32] =
        h("9aedb6f1dea8487cc1e1698f97eb2f063f6db4c649695622e7b675e2ceafa6e9");
}

/// `namespace('hyperswarm/secret-stream', 3)` from @hyperswarm/secret-stream.
pub mod secret_stream {
    use super::h;
    /// Stream id of the initiator.
    pub const INITIATOR: [u8; 32] =
        h("a931a0155b5c09e6d28628236af83c4b8a6af9af60986edeede9dc5d63192bf7");
    /// Stream id of the responder.
    pub const RESPONDER: [u8; 32] =
        h("742c9d833d430af4c48a8705e91631eecf295442bbca18996e597097723b1061");
    /// Unslabbed `send` messages.
    pub const SEND: [u8; 32] =
        h("aab97d097471f56651b0460ffc8aaa7d3342f7377597d60b925a1dac689adcbf");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_derive_from_their_names() {
        let hc = namespace("hypercore", &[0, 1, 2, 3, 4, 5]);
        assert_eq!(
            hc,
            vec![
                hypercore::TREE,
                hypercore::REPLICATE_INITIATOR,
                hypercore::REPLICATE_RESPONDER,
                hypercore::MANIFEST,
                hypercore::DEFAULT_NAMESPACE,
                hypercore::DEFAULT_ENCRYPTION,
            ]
        );
        let ss = namespace("hyperswarm/secret-stream", &[0, 1, 2]);
        assert_eq!(
            ss,
            vec![
                secret_stream::INITIATOR,
                secret_stream::RESPONDER,
                secret_stream::SEND
            ]
        );
    }
}
