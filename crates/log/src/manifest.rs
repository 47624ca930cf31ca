//! Manifests: who may sign a log, and how (hypercore lib/messages.js `manifest`, lib/verifier.js).
//!
//! A v11 core's key is the hash of its manifest ([`Manifest::hash`]). Four versions decode:
//! - v0, the legacy layout: `uint 0 ‖ uint hash ‖ uint type ‖ …` where type 0 is a
//!   prologue-only manifest (`fixed32 prologue hash`), type 1 one signer with quorum 1, type 2
//!   `uint flags(1 allowPatch) ‖ uint quorum ‖ array(signer)`;
//! - v1 to v3 share one layout: `uint version ‖ uint flags ‖ uint hash ‖ uint quorum ‖
//!   array(signer) ‖ [prologue] ‖ [array(fixed32) linked] ‖ [buffer userData]`, with flags
//!   1 allowPatch, 2 prologue, 4 linked, 8 userData.
//!
//! A signer is `uint signature(0 = ed25519) ‖ fixed32 namespace ‖ fixed32 publicKey`.
//! Decoding accepts what JS accepts; encoding writes what JS writes for the decoded value, so a
//! manifest hash computed here equals JS's (`manifestHash` re-encodes the decoded object).

use peerhost_encoding::{CompactEncoding, DecodeError, Reader, Sizer, Writer};
use peerhost_ids::hash::blake2b256;
use peerhost_ids::ns::hypercore::{DEFAULT_NAMESPACE, MANIFEST};

use crate::codec;
use crate::error::ManifestError;

const FLAG_PATCH: u64 = 1;
const FLAG_PROLOGUE: u64 = 2;
const FLAG_LINKED: u64 = 4;
const FLAG_USER_DATA: u64 = 8;

/// The highest manifest version JS decodes.
/// > if (version > 3) throw new Error('Unknown version: ' + version)  (messages.js `manifest`)
pub const MAX_VERSION: u64 = 3;

/// The tree hash function a manifest names. Only BLAKE2b exists (id 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum HashAlgorithm {
    /// BLAKE2b-256, wire id 0.
    #[default]
    Blake2b,
}

/// The signature scheme of a signer. Only Ed25519 exists (id 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SignatureAlgorithm {
    /// Ed25519, wire id 0.
    #[default]
    Ed25519,
}

/// One declared signer of a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signer {
    /// The signature scheme.
    pub signature: SignatureAlgorithm,
    /// Domain separation for this signer; in a v0 manifest it replaces the manifest hash in
    /// the signable.
    pub namespace: [u8; 32],
    /// The signer's Ed25519 public key.
    pub public_key: [u8; 32],
}

impl Signer {
    /// An Ed25519 signer in the default namespace.
    pub fn ed25519(public_key: [u8; 32]) -> Self {
        Self {
            signature: SignatureAlgorithm::Ed25519,
            namespace: DEFAULT_NAMESPACE,
            public_key,
        }
    }
}

/// A fixed first part of the log: its first `length` blocks must hash to `hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prologue {
    /// The tree hash at `length`.
    pub hash: [u8; 32],
    /// The prologue's length in blocks.
    pub length: u64,
}

/// A manifest, as JS's `messages.manifest` decodes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Manifest {
    /// 0 (legacy layout) to 3.
    pub version: u64,
    /// The tree hash function.
    pub hash: HashAlgorithm,
    /// Whether signatures may carry patches (a signer signed a longer tree).
    pub allow_patch: bool,
    /// How many distinct signers must sign.
    pub quorum: u64,
    /// The declared signers.
    pub signers: Vec<Signer>,
    /// An optional fixed prefix of the log.
    pub prologue: Option<Prologue>,
    /// Keys of linked cores (v2+).
    pub linked: Option<Vec<[u8; 32]>>,
    /// Opaque application data (v2+).
    pub user_data: Option<Vec<u8>>,
}

impl Manifest {
    /// The default manifest of a single-writer core (verifier.js `defaultSignerManifest`):
    /// version 1, quorum 1, one Ed25519 signer in the default namespace.
    pub fn default_signer(public_key: [u8; 32]) -> Self {
        Self {
            version: 1,
            hash: HashAlgorithm::Blake2b,
            allow_patch: false,
            quorum: 1,
            signers: vec![Signer::ed25519(public_key)],
            prologue: None,
            linked: None,
            user_data: None,
        }
    }

    /// `BLAKE2b-256(MANIFEST_ns ‖ encode(manifest))`: the key of a non-compat core.
    pub fn hash(&self) -> [u8; 32] {
        blake2b256(&[&MANIFEST, &peerhost_encoding::to_vec(self)])
    }

    /// Whether `key` names this manifest in compat mode: exactly one signer whose public key
    /// is `key` (verifier.js `isCompat`).
    pub fn is_compat(&self, key: &[u8; 32]) -> bool {
        self.signers.len() == 1 && self.signers[0].public_key == *key
    }

    /// Check the rules JS applies to manifests built from options (`createManifest`); decoded
    /// manifests are not checked by JS and need not pass this.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.quorum > self.signers.len() as u64 {
            return Err(ManifestError::QuorumTooHigh);
        }
        if self.version < 2 && self.user_data.is_some() {
            return Err(ManifestError::InvalidField("userData"));
        }
        if self.version < 2 && self.linked.as_ref().is_some_and(|l| !l.is_empty()) {
            return Err(ManifestError::InvalidField("linked"));
        }
        Ok(())
    }

    /// Which legacy (v0) layout encodes this manifest.
    fn v0_type(&self) -> u64 {
        if self.prologue.is_some() && self.signers.is_empty() {
            0
        } else if self.quorum == 1 && self.signers.len() == 1 && !self.allow_patch {
            1
        } else {
            2
        }
    }

    fn flags(&self) -> u64 {
        let mut flags = 0;
        if self.allow_patch {
            flags |= FLAG_PATCH;
        }
        if self.prologue.is_some() {
            flags |= FLAG_PROLOGUE;
        }
        if self.linked.is_some() {
            flags |= FLAG_LINKED;
        }
        if self.user_data.is_some() {
            flags |= FLAG_USER_DATA;
        }
        flags
    }
}

fn hash_id(r: &mut Reader<'_>) -> Result<HashAlgorithm, DecodeError> {
    match r.uint()? {
        0 => Ok(HashAlgorithm::Blake2b),
        _ => Err(DecodeError::Invalid("unknown hash id")),
    }
}

fn signature_id(r: &mut Reader<'_>) -> Result<SignatureAlgorithm, DecodeError> {
    match r.uint()? {
        0 => Ok(SignatureAlgorithm::Ed25519),
        _ => Err(DecodeError::Invalid("unknown signature id")),
    }
}

/// Smallest encoding of a signer: a one-byte id and two 32-byte fields.
const SIGNER_LEN: usize = 65;

impl CompactEncoding for Signer {
    fn preencode(&self, st: &mut Sizer) {
        st.add(SIGNER_LEN);
    }
    fn encode(&self, st: &mut Writer<'_>) {
        // Every SignatureAlgorithm is id 0.
        st.uint(0);
        st.raw(&self.namespace);
        st.raw(&self.public_key);
    }
    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            signature: signature_id(st)?,
            namespace: st.fixed()?,
            public_key: st.fixed()?,
        })
    }
}

fn signers_len(st: &mut Sizer, signers: &[Signer]) {
    st.uint(signers.len() as u64);
    st.add(SIGNER_LEN * signers.len());
}

fn encode_signers(st: &mut Writer<'_>, signers: &[Signer]) {
    st.uint(signers.len() as u64);
    for s in signers {
        s.encode(st);
    }
}

fn decode_signers(st: &mut Reader<'_>) -> Result<Vec<Signer>, DecodeError> {
    codec::array(st, SIGNER_LEN, Signer::decode)
}

impl CompactEncoding for Manifest {
    fn preencode(&self, st: &mut Sizer) {
        st.uint(self.version);
        if self.version == 0 {
            st.add(1); // hash id
            match self.v0_type() {
                0 => st.add(1 + 32),
                1 => st.add(1 + SIGNER_LEN),
                _ => {
                    st.add(1);
                    st.uint(u64::from(self.allow_patch));
                    st.uint(self.quorum);
                    signers_len(st, &self.signers);
                }
            }
            return;
        }
        st.uint(self.flags());
        st.add(1); // hash id
        st.uint(self.quorum);
        signers_len(st, &self.signers);
        if let Some(p) = &self.prologue {
            st.add(32);
            st.uint(p.length);
        }
        if let Some(linked) = &self.linked {
            st.uint(linked.len() as u64);
            st.add(32 * linked.len());
        }
        if let Some(d) = &self.user_data {
            st.buffer(d);
        }
    }

    fn encode(&self, st: &mut Writer<'_>) {
        st.uint(self.version);
        if self.version == 0 {
            st.uint(0); // blake2b
            let ty = self.v0_type();
            st.uint(ty);
            match (ty, &self.prologue, self.signers.first()) {
                // > if (m.prologue && m.signers.length === 0) { … c.fixed32.encode(state,
                // > m.prologue.hash) }  (messages.js `manifestv0`): the length is dropped.
                (0, Some(p), _) => st.raw(&p.hash),
                (1, _, Some(s)) => s.encode(st),
                _ => {
                    st.uint(u64::from(self.allow_patch));
                    st.uint(self.quorum);
                    encode_signers(st, &self.signers);
                }
            }
            return;
        }
        st.uint(self.flags());
        st.uint(0); // blake2b
        st.uint(self.quorum);
        encode_signers(st, &self.signers);
        if let Some(p) = &self.prologue {
            st.raw(&p.hash);
            st.uint(p.length);
        }
        if let Some(linked) = &self.linked {
            st.uint(linked.len() as u64);
            for k in linked {
                st.raw(k);
            }
        }
        if let Some(d) = &self.user_data {
            st.buffer(d);
        }
    }

    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = st.uint()?;
        if version == 0 {
            return decode_v0(st);
        }
        if version > MAX_VERSION {
            return Err(DecodeError::Invalid("unknown manifest version"));
        }
        // > const flags = c.uint.decode(state)  (messages.js `manifest`): unknown bits are
        // > ignored, so such a manifest decodes but re-encodes (and hashes) without them.
        let flags = st.uint()?;
        let hash = hash_id(st)?;
        let quorum = st.uint()?;
        let signers = decode_signers(st)?;
        let prologue = if flags & FLAG_PROLOGUE != 0 {
            Some(Prologue {
                hash: st.fixed()?,
                length: st.uint()?,
            })
        } else {
            None
        };
        let linked = if flags & FLAG_LINKED != 0 {
            Some(codec::array(st, 32, |r| r.fixed::<32>())?)
        } else {
            None
        };
        let user_data = if flags & FLAG_USER_DATA != 0 {
            Some(st.buffer()?.to_vec())
        } else {
            None
        };
        Ok(Self {
            version,
            hash,
            allow_patch: flags & FLAG_PATCH != 0,
            quorum,
            signers,
            prologue,
            linked,
            user_data,
        })
    }
}

fn decode_v0(st: &mut Reader<'_>) -> Result<Manifest, DecodeError> {
    let hash = hash_id(st)?;
    let ty = st.uint()?;
    let legacy = |quorum, allow_patch, signers, prologue| Manifest {
        version: 0,
        hash,
        allow_patch,
        quorum,
        signers,
        prologue,
        linked: None,
        user_data: None,
    };
    match ty {
        0 => {
            let hash = st.fixed()?;
            Ok(legacy(0, false, vec![], Some(Prologue { hash, length: 0 })))
        }
        1 => Ok(legacy(1, false, vec![Signer::decode(st)?], None)),
        2 => {
            let flags = st.uint()?;
            let quorum = st.uint()?;
            let signers = decode_signers(st)?;
            Ok(legacy(quorum, flags & 1 != 0, signers, None))
        }
        _ => Err(DecodeError::Invalid("unknown legacy manifest type")),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use peerhost_encoding::{from_prefix, to_vec};
    use proptest::prelude::*;

    fn pk() -> [u8; 32] {
        peerhost_ids::KeyPair::from_seed(&[1; 32]).public_key()
    }

    #[test]
    fn default_signer_matches_js() {
        // hypercore 11.39.5: c.encode(m.manifest, Verifier.defaultSignerManifest(pk)) for
        // keyPair(Buffer.alloc(32, 1)), and Verifier.manifestHash of it.
        let m = Manifest::default_signer(pk());
        let bytes = to_vec(&m);
        assert_eq!(bytes.len(), 70);
        assert_eq!(
            hex::encode(&bytes),
            format!(
                "01 00 00 01 01 00 {} {}",
                hex::encode(DEFAULT_NAMESPACE),
                hex::encode(pk())
            )
            .replace(' ', "")
        );
        assert_eq!(hex::encode(m.hash()), JS_DEFAULT_HASH);
        assert_eq!(from_prefix::<Manifest>(&bytes).unwrap(), m);
        assert!(m.is_compat(&pk()));
        assert!(!m.is_compat(&m.hash()));
    }
    const JS_DEFAULT_HASH: &str =
        "d8c3a0597903b28d751c6e0b7107775e388ec5a3cf669bdd1e7ec41b8b8f6e72";

    #[test]
    fn legacy_layouts() {
        let s = Signer::ed25519(pk());
        // v0 type 1: version 0, hash 0, type 1, signer.
        let one = to_vec(&Manifest {
            version: 0,
            ..Manifest::default_signer(pk())
        });
        assert_eq!(&one[..4], &[0, 0, 1, 0]);
        assert_eq!(one.len(), 3 + 65);
        // v0 type 2: quorum 2 of 2, with allowPatch.
        let two = Manifest {
            version: 0,
            allow_patch: true,
            quorum: 2,
            signers: vec![s, s],
            ..Manifest::default_signer(pk())
        };
        let bytes = to_vec(&two);
        assert_eq!(&bytes[..6], &[0, 0, 2, 1, 2, 2]);
        assert_eq!(from_prefix::<Manifest>(&bytes).unwrap(), two);
        // v0 type 0: prologue only, its length is not encoded and decodes as 0.
        let zero = Manifest {
            version: 0,
            quorum: 0,
            signers: vec![],
            prologue: Some(Prologue {
                hash: [9; 32],
                length: 0,
            }),
            ..Manifest::default_signer(pk())
        };
        let bytes = to_vec(&zero);
        assert_eq!(bytes, [&[0u8, 0, 0][..], &[9; 32]].concat());
        assert_eq!(from_prefix::<Manifest>(&bytes).unwrap(), zero);
        // A type 2 with quorum 1 and one signer decodes, and re-encodes as type 1 (as JS).
        let mut long = vec![0, 0, 2, 0, 1, 1];
        long.extend_from_slice(&to_vec(&s));
        let m = from_prefix::<Manifest>(&long).unwrap();
        assert_eq!(to_vec(&m), one);
    }

    #[test]
    fn rejects_what_js_rejects() {
        let bad = |b: &[u8]| from_prefix::<Manifest>(b).unwrap_err();
        assert_eq!(bad(&[4]), DecodeError::Invalid("unknown manifest version"));
        assert_eq!(bad(&[1, 0, 1]), DecodeError::Invalid("unknown hash id"));
        assert_eq!(bad(&[0, 1]), DecodeError::Invalid("unknown hash id"));
        assert_eq!(
            bad(&[0, 0, 3]),
            DecodeError::Invalid("unknown legacy manifest type")
        );
        let mut sig = vec![1, 0, 0, 1, 1, 1];
        sig.extend_from_slice(&[0; 64]);
        assert_eq!(bad(&sig), DecodeError::Invalid("unknown signature id"));
        assert_eq!(bad(&[1, 0, 0, 1, 1]), DecodeError::UnexpectedEnd);
        // Trailing bytes are ignored, as c.decode ignores them.
        let mut extra = to_vec(&Manifest::default_signer(pk()));
        extra.push(7);
        assert!(from_prefix::<Manifest>(&extra).is_ok());
    }

    #[test]
    fn v2_fields() {
        let m = Manifest {
            version: 2,
            prologue: Some(Prologue {
                hash: [3; 32],
                length: 300,
            }),
            linked: Some(vec![[4; 32]]),
            user_data: Some(b"hi".to_vec()),
            ..Manifest::default_signer(pk())
        };
        let bytes = to_vec(&m);
        // version 2, flags prologue|linked|userData = 14, blake2b, quorum 1, 1 signer.
        assert_eq!(&bytes[..5], &[2, 14, 0, 1, 1]);
        assert_eq!(
            hex::encode(&bytes[5 + 65..]),
            format!(
                "{}fd2c0101{}026869",
                hex::encode([3; 32]),
                hex::encode([4; 32])
            )
        );
        assert_eq!(from_prefix::<Manifest>(&bytes).unwrap(), m);
        assert_eq!(m.validate(), Ok(()));
        let bad = Manifest {
            version: 1,
            ..m.clone()
        };
        assert_eq!(bad.validate(), Err(ManifestError::InvalidField("userData")));
        let bad = Manifest { quorum: 2, ..m };
        assert_eq!(bad.validate(), Err(ManifestError::QuorumTooHigh));
    }

    pub(crate) fn arb_manifest() -> impl Strategy<Value = Manifest> {
        let signer =
            (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(namespace, public_key)| Signer {
                signature: SignatureAlgorithm::Ed25519,
                namespace,
                public_key,
            });
        let prologue = (any::<[u8; 32]>(), any::<u64>()).prop_map(|(hash, length)| Prologue {
            hash,
            length: length & peerhost_encoding::MAX_SAFE_UINT,
        });
        (
            0u64..=3,
            any::<bool>(),
            0u64..300,
            proptest::collection::vec(signer, 0..4),
            proptest::option::of(prologue),
            proptest::option::of(proptest::collection::vec(any::<[u8; 32]>(), 0..3)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        )
            .prop_map(
                |(version, allow_patch, quorum, signers, prologue, linked, user_data)| {
                    let mut m = Manifest {
                        version,
                        hash: HashAlgorithm::Blake2b,
                        allow_patch,
                        quorum,
                        signers,
                        prologue,
                        linked,
                        user_data,
                    };
                    if version == 0 {
                        // Only the values a legacy layout can carry.
                        m.linked = None;
                        m.user_data = None;
                        if !m.signers.is_empty() {
                            m.prologue = None;
                        } else if let Some(p) = &mut m.prologue {
                            p.length = 0;
                            m.quorum = 0;
                            m.allow_patch = false;
                        }
                    }
                    m
                },
            )
    }

    proptest! {
        #[test]
        fn round_trips(m in arb_manifest()) {
            let bytes = to_vec(&m);
            let mut sizer = Sizer::default();
            m.preencode(&mut sizer);
            prop_assert_eq!(sizer.len(), bytes.len());
            prop_assert_eq!(peerhost_encoding::from_slice::<Manifest>(&bytes).unwrap(), m);
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(m) = from_prefix::<Manifest>(&b) {
                let _ = m.hash();
            }
        }
    }
}
