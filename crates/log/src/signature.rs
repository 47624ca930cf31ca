//! What a tree signature signs, and how signatures travel (hypercore lib/caps.js,
//! lib/multisig.js, lib/messages.js `multiSignature`).
//!
//! - v11 cores sign `TREE_ns ‖ manifestHash ‖ treeHash ‖ u64le(length) ‖ u64le(fork)`
//!   (112 bytes, [`signable`]); a v0 manifest puts the signer's namespace where the manifest
//!   hash goes.
//! - compat cores (key = Ed25519 key) sign `TREE_ns ‖ treeHash ‖ u64le(length) ‖ u64le(fork)`
//!   (80 bytes, [`signable_compat`]) and store the raw 64-byte signature.
//! - v1+ manifests wrap signatures in a [`MultiSignature`]:
//!   `array({uint signer, fixed64 signature, uint patch}) ‖ array(node) patch`, which is
//!   68 bytes for one signer: `01 00 <64-byte signature> 00 00`.
//! - v0 manifests with several signers use [`MultiSignatureV0`], whose proofs carry their own
//!   patch description (`uint flags ‖ uint signer ‖ fixed64 ‖ [uint start ‖ uint length ‖
//!   array(uint) nodes]`).

use peerhost_encoding::{CompactEncoding, DecodeError, Reader, Sizer, Writer};
use peerhost_ids::ns::hypercore::TREE;

use crate::Node;
use crate::codec;
use crate::proof::{NODE_LEN, decode_nodes, encode_nodes, nodes_len};

/// The bytes a v11 signer signs (`caps.treeSignable`). `context` is the manifest hash, or the
/// signer's namespace for a v0 manifest.
pub fn signable(context: &[u8; 32], tree_hash: &[u8; 32], length: u64, fork: u64) -> [u8; 112] {
    let mut out = [0; 112];
    out[..32].copy_from_slice(&TREE);
    out[32..64].copy_from_slice(context);
    out[64..96].copy_from_slice(tree_hash);
    out[96..104].copy_from_slice(&length.to_le_bytes());
    out[104..].copy_from_slice(&fork.to_le_bytes());
    out
}

/// The bytes a compat signer signs (`caps.treeSignableCompat` with `noHeader = false`).
pub fn signable_compat(tree_hash: &[u8; 32], length: u64, fork: u64) -> [u8; 80] {
    let mut out = [0; 80];
    out[..32].copy_from_slice(&TREE);
    out[32..64].copy_from_slice(tree_hash);
    out[64..72].copy_from_slice(&length.to_le_bytes());
    out[72..].copy_from_slice(&fork.to_le_bytes());
    out
}

/// One signer's part of a [`MultiSignature`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignerProof {
    /// Index of the signer in the manifest.
    pub signer: u64,
    /// Ed25519 signature.
    pub signature: [u8; 64],
    /// How many blocks past the verified length this signer signed (0 = exactly that head);
    /// the nodes to reach it are in [`MultiSignature::patch`].
    pub patch: u64,
}

/// `messages.multiSignature`: the signature format of v1+ manifests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MultiSignature {
    /// One entry per signer that signed.
    pub proofs: Vec<SignerProof>,
    /// Tree nodes shared by the proofs' patches.
    pub patch: Vec<Node>,
}

impl MultiSignature {
    /// The usual form: one signer (index 0), no patch.
    pub fn single(signature: [u8; 64]) -> Self {
        Self {
            proofs: vec![SignerProof {
                signer: 0,
                signature,
                patch: 0,
            }],
            patch: vec![],
        }
    }
}

/// Smallest encoding of a [`SignerProof`].
const PROOF_LEN: usize = 66;

impl CompactEncoding for MultiSignature {
    fn preencode(&self, st: &mut Sizer) {
        st.uint(self.proofs.len() as u64);
        for p in &self.proofs {
            st.uint(p.signer);
            st.add(64);
            st.uint(p.patch);
        }
        nodes_len(st, &self.patch);
    }
    fn encode(&self, st: &mut Writer<'_>) {
        st.uint(self.proofs.len() as u64);
        for p in &self.proofs {
            st.uint(p.signer);
            st.raw(&p.signature);
            st.uint(p.patch);
        }
        encode_nodes(st, &self.patch);
    }
    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let proofs = codec::array(st, PROOF_LEN, |r| {
            Ok(SignerProof {
                signer: r.uint()?,
                signature: r.fixed()?,
                patch: r.uint()?,
            })
        })?;
        Ok(Self {
            proofs,
            patch: decode_nodes(st)?,
        })
    }
}

/// The patch description of a v0 signer proof (`patchEncodingv0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PatchV0 {
    /// First block of the patch.
    pub start: u64,
    /// Blocks in the patch.
    pub length: u64,
    /// Positions in [`MultiSignatureV0::patch`] of the patch's nodes.
    pub nodes: Vec<u64>,
}

/// One signer's part of a [`MultiSignatureV0`] (`multisigInputv0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignerProofV0 {
    /// Index of the signer in the manifest.
    pub signer: u64,
    /// Ed25519 signature.
    pub signature: [u8; 64],
    /// The signer's patch, if it signed a longer tree.
    pub patch: Option<PatchV0>,
}

/// `messages.multiSignaturev0`: the signature format of v0 manifests with several signers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MultiSignatureV0 {
    /// One entry per signer that signed.
    pub proofs: Vec<SignerProofV0>,
    /// Tree nodes shared by the proofs' patches.
    pub patch: Vec<Node>,
}

impl MultiSignatureV0 {
    /// The v1 view JS verifies (`proofToVersion1`): a patch counts its length in blocks.
    pub fn to_v1(&self) -> MultiSignature {
        MultiSignature {
            proofs: self
                .proofs
                .iter()
                .map(|p| SignerProof {
                    signer: p.signer,
                    signature: p.signature,
                    patch: p.patch.as_ref().map_or(0, |p| p.length),
                })
                .collect(),
            patch: self.patch.clone(),
        }
    }
}

impl CompactEncoding for MultiSignatureV0 {
    fn preencode(&self, st: &mut Sizer) {
        st.uint(self.proofs.len() as u64);
        for p in &self.proofs {
            st.add(1); // flags
            st.uint(p.signer);
            st.add(64);
            if let Some(patch) = &p.patch {
                st.uint(patch.start);
                st.uint(patch.length);
                st.uint(patch.nodes.len() as u64);
                for n in &patch.nodes {
                    st.uint(*n);
                }
            }
        }
        nodes_len(st, &self.patch);
    }
    fn encode(&self, st: &mut Writer<'_>) {
        st.uint(self.proofs.len() as u64);
        for p in &self.proofs {
            st.uint(u64::from(p.patch.is_some()));
            st.uint(p.signer);
            st.raw(&p.signature);
            if let Some(patch) = &p.patch {
                st.uint(patch.start);
                st.uint(patch.length);
                st.uint(patch.nodes.len() as u64);
                for n in &patch.nodes {
                    st.uint(*n);
                }
            }
        }
        encode_nodes(st, &self.patch);
    }
    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let proofs = codec::array(st, PROOF_LEN, |r| {
            // > patch: flags & 1 ? patchEncodingv0.decode(state) : null  (messages.js
            // > `multisigInputv0`): other flag bits are ignored.
            let flags = r.uint()?;
            let signer = r.uint()?;
            let signature = r.fixed()?;
            let patch = if flags & 1 != 0 {
                Some(PatchV0 {
                    start: r.uint()?,
                    length: r.uint()?,
                    nodes: codec::array(r, 1, Reader::uint)?,
                })
            } else {
                None
            };
            Ok(SignerProofV0 {
                signer,
                signature,
                patch,
            })
        })?;
        Ok(Self {
            proofs,
            patch: codec::array(st, NODE_LEN, Node::decode)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerhost_encoding::{from_slice, to_vec};
    use proptest::prelude::*;

    #[test]
    fn signables_have_the_js_layout() {
        let s = signable(&[1; 32], &[2; 32], 3, 4);
        assert_eq!(&s[..32], &TREE);
        assert_eq!(&s[32..64], &[1; 32]);
        assert_eq!(&s[64..96], &[2; 32]);
        assert_eq!(&s[96..], &[3, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0]);
        let c = signable_compat(&[2; 32], 3, 4);
        assert_eq!(&c[..32], &TREE);
        assert_eq!(&c[32..64], &[2; 32]);
        assert_eq!(&c[64..], &s[96..]);
    }

    #[test]
    fn single_signer_is_68_bytes() {
        let bytes = to_vec(&MultiSignature::single([0xab; 64]));
        assert_eq!(hex::encode(&bytes), format!("0100{}0000", "ab".repeat(64)));
        assert_eq!(
            from_slice::<MultiSignature>(&bytes).unwrap(),
            MultiSignature::single([0xab; 64])
        );
    }

    #[test]
    fn v0_snapshot() {
        // Hex from `c.encode(messages.multiSignaturev0, …)` (hypercore 11.39.5).
        let m = MultiSignatureV0 {
            proofs: vec![
                SignerProofV0 {
                    signer: 1,
                    signature: [1; 64],
                    patch: Some(PatchV0 {
                        start: 4,
                        length: 2,
                        nodes: vec![0],
                    }),
                },
                SignerProofV0 {
                    signer: 0,
                    signature: [2; 64],
                    patch: None,
                },
            ],
            patch: vec![Node {
                index: 9,
                size: 5,
                hash: [3; 32],
            }],
        };
        let bytes = to_vec(&m);
        let expected = format!(
            "02 0101{} 04020100 0000{} 01 0905{}",
            "01".repeat(64),
            "02".repeat(64),
            "03".repeat(32)
        )
        .replace(' ', "");
        assert_eq!(hex::encode(&bytes), expected);
        assert_eq!(from_slice::<MultiSignatureV0>(&bytes).unwrap(), m);
        assert_eq!(m.to_v1().proofs[0].patch, 2);
    }

    proptest! {
        #[test]
        fn multisig_round_trips(
            proofs in proptest::collection::vec((0u64..1000, any::<u8>(), 0u64..70000), 0..4),
            patch in proptest::collection::vec(crate::proof::tests::arb_node(), 0..4),
        ) {
            let m = MultiSignature {
                proofs: proofs.into_iter().map(|(signer, b, patch)| SignerProof {
                    signer, signature: [b; 64], patch,
                }).collect(),
                patch,
            };
            let bytes = to_vec(&m);
            let mut sizer = Sizer::default();
            m.preencode(&mut sizer);
            prop_assert_eq!(sizer.len(), bytes.len());
            prop_assert_eq!(from_slice::<MultiSignature>(&bytes).unwrap(), m);
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = peerhost_encoding::from_prefix::<MultiSignature>(&b);
            let _ = peerhost_encoding::from_prefix::<MultiSignatureV0>(&b);
        }
    }
}
