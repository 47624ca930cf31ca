//! Checking and making tree signatures for a core's key (hypercore lib/verifier.js).
//!
//! A [`Verifier`] binds a key to a manifest: either the key is the manifest's hash (a v11
//! core), or the manifest has exactly one signer whose public key is the key (a compat core,
//! signing 80-byte signables with raw Ed25519 signatures).
//!
//! Verification follows `Verifier.verify`:
//! - compat, or a v0 manifest: one signer without patches verifies a raw 64-byte signature;
//!   a v0 manifest with several signers inflates a [`MultiSignatureV0`];
//! - v1+: a prologue covers heads up to its length (the head must then equal the prologue);
//!   past it, a [`MultiSignature`] must carry `quorum` proofs from distinct declared signers,
//!   each over the head or, if the manifest allows patches, over a longer head reached from
//!   this one with the patch nodes.

use std::collections::HashMap;
use std::convert::Infallible;

use peerhost_encoding::{CompactEncoding, Reader};
use peerhost_ids::{Key, KeyPair, verify_signature};

use crate::Node;
use crate::error::{ManifestError, TreeError};
use crate::manifest::{Manifest, Prologue};
use crate::proof::DataUpgrade;
use crate::signature::{MultiSignature, MultiSignatureV0, signable, signable_compat};
use crate::tree::{Tree, upgrade_nodes};

/// Verifies (and, with a key pair, makes) signatures of a core's tree heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    key: Key,
    manifest: Manifest,
    manifest_hash: [u8; 32],
    compat: bool,
}

impl Verifier {
    /// Bind `key` to `manifest`: `key` must be the manifest's hash or, for a compat core, the
    /// public key of its single signer (JS `isValidManifest || isCompat`).
    ///
    /// The manifest must also pass [`Manifest::validate`], as JS runs `createManifest` on every
    /// manifest before using it.
    pub fn new(key: Key, manifest: Manifest) -> Result<Self, ManifestError> {
        let manifest_hash = manifest.hash();
        let compat = manifest.is_compat(&key.0);
        // > if (!manifest || !(Verifier.isValidManifest(key, manifest) || Verifier.isCompat(…)))
        // >   throw INVALID_SIGNATURE('Proof contains an invalid manifest')
        if !compat && manifest_hash != key.0 {
            return Err(ManifestError::KeyMismatch);
        }
        manifest.validate()?;
        Ok(Self {
            key,
            manifest,
            manifest_hash,
            compat,
        })
    }

    /// The verifier of a v11 core: its key is the manifest's hash. Unlike [`Verifier::new`]
    /// this does not [`Manifest::validate`] the manifest.
    pub fn from_manifest(manifest: Manifest) -> Self {
        let manifest_hash = manifest.hash();
        Self {
            key: Key(manifest_hash),
            compat: manifest.is_compat(&manifest_hash),
            manifest,
            manifest_hash,
        }
    }

    /// The verifier of a compat core whose key is the Ed25519 `public_key`.
    pub fn compat(public_key: [u8; 32]) -> Self {
        let manifest = Manifest::default_signer(public_key);
        Self {
            key: Key(public_key),
            manifest_hash: manifest.hash(),
            manifest,
            compat: true,
        }
    }

    /// The verifier a replica uses for a proof (hypercore lib/core.js `_verifyBatchUpgrade`):
    /// the stored manifest if there is one, else the manifest that came with the proof, else
    /// the compat manifest of the key itself. Errors map into
    /// [`crate::VerifyError::InvalidManifest`] with `?`.
    pub fn resolve(
        key: Key,
        stored: Option<&Manifest>,
        offered: Option<&Manifest>,
    ) -> Result<Self, ManifestError> {
        match stored.or(offered) {
            Some(m) => Self::new(key, m.clone()),
            // > if (!manifest) manifest = Verifier.defaultSignerManifest(this.header.key)
            None => Ok(Self::compat(key.0)),
        }
    }

    /// The core's key.
    pub fn key(&self) -> Key {
        self.key
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest's hash (the key, unless compat).
    pub fn manifest_hash(&self) -> [u8; 32] {
        self.manifest_hash
    }

    /// Whether this is a compat core (key = Ed25519 key, raw signatures over 80 bytes).
    pub fn is_compat(&self) -> bool {
        self.compat
    }

    /// The prologue heads must honour (never for compat cores).
    pub fn prologue(&self) -> Option<Prologue> {
        if self.compat {
            None
        } else {
            self.manifest.prologue
        }
    }

    /// The version rules apply by: compat cores behave as version 0.
    fn version(&self) -> u64 {
        if self.compat {
            0
        } else {
            self.manifest.version
        }
    }

    fn quorum(&self) -> u64 {
        if self.compat { 1 } else { self.manifest.quorum }
    }

    fn allow_patch(&self) -> bool {
        !self.compat && self.manifest.allow_patch
    }

    /// The bytes signer `signer` signs for `tree`.
    fn signable_for(&self, tree: &Tree, signer: usize) -> Vec<u8> {
        if self.compat {
            return signable_compat(&tree.hash(), tree.length(), tree.fork()).to_vec();
        }
        // > _ctx() { return this.version === 0 ? this.namespace : this.manifestHash }
        let ctx = match self.manifest.signers.get(signer) {
            Some(s) if self.version() == 0 => s.namespace,
            _ => self.manifest_hash,
        };
        signable(&ctx, &tree.hash(), tree.length(), tree.fork()).to_vec()
    }

    fn signer_verifies(&self, tree: &Tree, signer: usize, signature: &[u8]) -> bool {
        let (Some(s), Ok(sig)) = (
            self.manifest.signers.get(signer),
            <&[u8; 64]>::try_from(signature),
        ) else {
            return false;
        };
        verify_signature(&s.public_key, &self.signable_for(tree, signer), sig)
    }

    /// Whether `signature` is a valid signature of `tree`'s head under this manifest.
    pub fn verify(&self, tree: &Tree, signature: Option<&[u8]>) -> bool {
        if self.version() == 0 {
            let Some(signature) = signature else {
                return false;
            };
            // > if (this.compat || (!this.allowPatch && this.signers.length === 1))
            // >   return !!signature && this.signers[0].verify(batch, signature)
            if self.compat || (!self.allow_patch() && self.manifest.signers.len() == 1) {
                return self.signer_verifies(tree, 0, signature);
            }
            return self.verify_multi(tree, signature);
        }
        // > if (this.prologue !== null && batch.length <= this.prologue.length)
        // >   return batch.length === this.prologue.length && b4a.equals(batch.hash(), …)
        if let Some(p) = self.prologue() {
            if tree.length() <= p.length {
                return tree.length() == p.length && tree.hash() == p.hash;
            }
        }
        signature.is_some_and(|s| self.verify_multi(tree, s))
    }

    fn inflate(&self, signature: &[u8]) -> Option<MultiSignature> {
        let mut r = Reader::new(signature);
        if self.version() >= 1 {
            MultiSignature::decode(&mut r).ok()
        } else {
            MultiSignatureV0::decode(&mut r).ok().map(|m| m.to_v1())
        }
    }

    fn verify_multi(&self, tree: &Tree, signature: &[u8]) -> bool {
        let quorum = self.quorum();
        if quorum == 0 {
            return false;
        }
        // JS throws out of `verify` on an undecodable signature; we answer "invalid".
        let Some(multi) = self.inflate(signature) else {
            return false;
        };
        if (multi.proofs.len() as u64) < quorum {
            return false;
        }
        let patch: HashMap<u64, Node> = if self.allow_patch() {
            multi.patch.iter().map(|n| (n.index, *n)).collect()
        } else {
            HashMap::new()
        };
        let mut tried = vec![false; self.manifest.signers.len()];
        // quorum <= proofs.len(), so this indexes only decoded proofs.
        for inp in multi.proofs.iter().take(quorum as usize) {
            let patched;
            let mut head = tree;
            if inp.patch != 0 && self.allow_patch() {
                match patched_tree(tree, &patch, inp.patch) {
                    Some(t) => patched = t,
                    None => return false,
                }
                head = &patched;
            }
            let Ok(signer) = usize::try_from(inp.signer) else {
                return false;
            };
            if signer >= tried.len() || tried[signer] {
                return false;
            }
            tried[signer] = true;
            if !self.signer_verifies(head, signer, &inp.signature) {
                return false;
            }
        }
        true
    }

    /// Sign `tree`'s head with `key_pair`, which must be a declared signer. Returns what JS
    /// `Verifier.sign` returns: a 68-byte [`MultiSignature`] for a single-signer v1+ manifest,
    /// the raw 64-byte signature otherwise (compat, v0, or one part of a multi-signer head).
    pub fn sign(&self, tree: &Tree, key_pair: &KeyPair) -> Result<Vec<u8>, ManifestError> {
        let public_key = key_pair.public_key();
        let signer = self
            .manifest
            .signers
            .iter()
            .position(|s| s.public_key == public_key)
            .ok_or(ManifestError::NotASigner)?;
        let signature = key_pair.sign(&self.signable_for(tree, signer));
        if self.manifest.signers.len() != 1 || self.version() == 0 {
            return Ok(signature.to_vec());
        }
        Ok(peerhost_encoding::to_vec(&MultiSignature::single(
            signature,
        )))
    }
}

/// `tree` grown by `length` blocks with nodes from a signature's patch (verifier.js
/// `generateUpgrade` then `verifyUpgrade`), or `None` if the patch does not fit.
fn patched_tree(tree: &Tree, patch: &HashMap<u64, Node>, length: u64) -> Option<Tree> {
    let from = tree.length().checked_mul(2)?;
    let to = from.checked_add(length.checked_mul(2)?)?;
    if to > 2 * peerhost_encoding::MAX_SAFE_UINT {
        return None;
    }
    let nodes = upgrade_nodes::<Infallible>(from, to, &mut |i| {
        patch
            .get(&i)
            .copied()
            .ok_or(TreeError::MissingNode { index: i })
    })
    .ok()?;
    let upgrade = DataUpgrade {
        start: tree.length(),
        length,
        nodes,
        additional_nodes: vec![],
        signature: None,
    };
    let mut out = tree.clone();
    out.apply_upgrade::<Infallible>(tree.fork(), &upgrade, None, None, &mut Vec::new())
        .ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeSource;
    use crate::manifest::Signer;
    use crate::signature::SignerProof;

    fn tree(n: usize) -> Tree {
        let mut t = Tree::new();
        let blocks: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; i + 1]).collect();
        t.append(&blocks);
        t
    }

    #[test]
    fn default_signer_signs_68_bytes_and_verifies() {
        let kp = KeyPair::from_seed(&[1; 32]);
        let v = Verifier::from_manifest(Manifest::default_signer(kp.public_key()));
        assert!(!v.is_compat());
        let t = tree(3);
        let sig = v.sign(&t, &kp).unwrap();
        assert_eq!(sig.len(), 68);
        assert_eq!(&sig[..2], &[1, 0]);
        assert_eq!(&sig[66..], &[0, 0]);
        assert!(v.verify(&t, Some(&sig)));
        assert!(!v.verify(&tree(4), Some(&sig)));
        assert!(!v.verify(&t, Some(&sig[..67])));
        assert!(!v.verify(&t, None));
        // The raw signature is over the 112-byte signable with the manifest hash.
        let raw: [u8; 64] = sig[2..66].try_into().unwrap();
        let msg = signable(&v.manifest_hash(), &t.hash(), 3, 0);
        assert!(verify_signature(&kp.public_key(), &msg, &raw));
        let other = KeyPair::from_seed(&[2; 32]);
        assert_eq!(v.sign(&t, &other), Err(ManifestError::NotASigner));
    }

    #[test]
    fn compat_signs_raw_80_byte_signables() {
        let kp = KeyPair::from_seed(&[2; 32]);
        let v = Verifier::compat(kp.public_key());
        assert!(v.is_compat());
        assert_eq!(v.key().0, kp.public_key());
        let t = tree(5);
        let sig = v.sign(&t, &kp).unwrap();
        assert_eq!(sig.len(), 64);
        let msg = signable_compat(&t.hash(), 5, 0);
        assert!(verify_signature(
            &kp.public_key(),
            &msg,
            sig[..].try_into().unwrap()
        ));
        assert!(v.verify(&t, Some(&sig)));
        // A compat core never takes the multisig form.
        assert!(!v.verify(
            &t,
            Some(&peerhost_encoding::to_vec(&MultiSignature::single(
                sig[..].try_into().unwrap()
            )))
        ));
    }

    #[test]
    fn key_must_match() {
        let kp = KeyPair::from_seed(&[1; 32]);
        let m = Manifest::default_signer(kp.public_key());
        assert!(Verifier::new(Key(m.hash()), m.clone()).is_ok());
        assert!(
            Verifier::new(Key(kp.public_key()), m.clone())
                .unwrap()
                .is_compat()
        );
        assert_eq!(
            Verifier::new(Key([0; 32]), m.clone()),
            Err(ManifestError::KeyMismatch)
        );
        // A replica with only a v11 key and no manifest falls back to compat, whose
        // signatures then fail, as in JS.
        let v = Verifier::resolve(Key(m.hash()), None, None).unwrap();
        assert!(v.is_compat());
        let v = Verifier::resolve(Key(m.hash()), None, Some(&m)).unwrap();
        assert!(!v.is_compat());
        // An offered manifest that hashes to the key but that createManifest refuses.
        let bad = Manifest {
            quorum: 2,
            ..m.clone()
        };
        let e = Verifier::resolve(Key(bad.hash()), None, Some(&bad)).unwrap_err();
        assert_eq!(e, ManifestError::QuorumTooHigh);
        let e: crate::VerifyError<Infallible> = e.into();
        assert_eq!(e.code(), "BAD_ARGUMENT");
        let e: crate::VerifyError<Infallible> = ManifestError::KeyMismatch.into();
        assert_eq!(e.code(), "INVALID_SIGNATURE");
    }

    fn multi(quorum: u64, allow_patch: bool, version: u64) -> (Verifier, Vec<KeyPair>) {
        let kps: Vec<KeyPair> = (1..=3).map(|i| KeyPair::from_seed(&[i; 32])).collect();
        let m = Manifest {
            version,
            allow_patch,
            quorum,
            signers: kps
                .iter()
                .map(|k| Signer::ed25519(k.public_key()))
                .collect(),
            ..Manifest::default_signer([0; 32])
        };
        (Verifier::from_manifest(m), kps)
    }

    fn proof(signer: u64, signature: &[u8], patch: u64) -> SignerProof {
        SignerProof {
            signer,
            signature: signature.try_into().unwrap(),
            patch,
        }
    }

    #[test]
    fn quorum_of_distinct_signers() {
        let (v, kps) = multi(2, false, 1);
        let t = tree(4);
        let s: Vec<Vec<u8>> = kps.iter().map(|k| v.sign(&t, k).unwrap()).collect();
        // Several signers: `sign` returns the raw part.
        assert!(s.iter().all(|s| s.len() == 64));
        let enc = |proofs| {
            peerhost_encoding::to_vec(&MultiSignature {
                proofs,
                patch: vec![],
            })
        };
        assert!(v.verify(&t, Some(&enc(vec![proof(0, &s[0], 0), proof(2, &s[2], 0)]))));
        // Below quorum, repeated signer, wrong index, out-of-range signer.
        assert!(!v.verify(&t, Some(&enc(vec![proof(0, &s[0], 0)]))));
        assert!(!v.verify(&t, Some(&enc(vec![proof(0, &s[0], 0), proof(0, &s[0], 0)]))));
        assert!(!v.verify(&t, Some(&enc(vec![proof(1, &s[0], 0), proof(2, &s[2], 0)]))));
        assert!(!v.verify(&t, Some(&enc(vec![proof(0, &s[0], 0), proof(9, &s[2], 0)]))));
        // Quorum 0 never verifies.
        let (v0, _) = multi(0, false, 1);
        assert!(!v0.verify(&t, Some(&enc(vec![]))));
    }

    #[test]
    fn patched_signatures() {
        let (v, kps) = multi(2, true, 1);
        let short = tree(3);
        let long = tree(6);
        // Signer 0 signed the head at 3, signer 1 a head at 6 containing it.
        let s0 = v.sign(&short, &kps[0]).unwrap();
        let s1 = v.sign(&long, &kps[1]).unwrap();
        // The patch: the nodes growing the roots at 3 to the roots at 6.
        let mut src = crate::tree::tests::MemSource::default();
        let mut t = Tree::new();
        let blocks: Vec<Vec<u8>> = (0..6).map(|i| vec![i as u8; i + 1]).collect();
        src.put(&t.append(&blocks));
        let patch = upgrade_nodes(6, 12, &mut |i| crate::error::need(i, src.node(i))).unwrap();
        let sig = peerhost_encoding::to_vec(&MultiSignature {
            proofs: vec![proof(0, &s0, 0), proof(1, &s1, 3)],
            patch: patch.clone(),
        });
        assert!(v.verify(&short, Some(&sig)));
        // Without allowPatch the patched proof is checked against the short head and fails.
        let (strict, _) = multi(2, false, 1);
        let s0s = strict.sign(&short, &kps[0]).unwrap();
        let s1s = strict.sign(&long, &kps[1]).unwrap();
        let sig = peerhost_encoding::to_vec(&MultiSignature {
            proofs: vec![proof(0, &s0s, 0), proof(1, &s1s, 3)],
            patch: patch.clone(),
        });
        assert!(!strict.verify(&short, Some(&sig)));
        // A patch missing a node fails.
        let sig = peerhost_encoding::to_vec(&MultiSignature {
            proofs: vec![proof(0, &s0, 0), proof(1, &s1, 3)],
            patch: patch[1..].to_vec(),
        });
        assert!(!v.verify(&short, Some(&sig)));
    }

    #[test]
    fn v0_manifests_use_the_namespace() {
        let kp = KeyPair::from_seed(&[1; 32]);
        let mut m = Manifest::default_signer(kp.public_key());
        m.version = 0;
        m.signers[0].namespace = [5; 32];
        let v = Verifier::from_manifest(m);
        let t = tree(2);
        let sig = v.sign(&t, &kp).unwrap();
        assert_eq!(sig.len(), 64);
        let msg = signable(&[5; 32], &t.hash(), 2, 0);
        assert!(verify_signature(
            &kp.public_key(),
            &msg,
            sig[..].try_into().unwrap()
        ));
        assert!(v.verify(&t, Some(&sig)));
        // v0 with several signers: a MultiSignatureV0.
        let (v, kps) = multi(2, false, 0);
        let s: Vec<Vec<u8>> = kps.iter().map(|k| v.sign(&t, k).unwrap()).collect();
        let enc = peerhost_encoding::to_vec(&MultiSignatureV0 {
            proofs: vec![
                crate::signature::SignerProofV0 {
                    signer: 1,
                    signature: s[1][..].try_into().unwrap(),
                    patch: None,
                },
                crate::signature::SignerProofV0 {
                    signer: 2,
                    signature: s[2][..].try_into().unwrap(),
                    patch: None,
                },
            ],
            patch: vec![],
        });
        assert!(v.verify(&t, Some(&enc)));
    }

    #[test]
    fn prologue_heads() {
        let t = tree(3);
        let kp = KeyPair::from_seed(&[1; 32]);
        let mut m = Manifest::default_signer(kp.public_key());
        m.prologue = Some(Prologue {
            hash: t.hash(),
            length: 3,
        });
        let v = Verifier::from_manifest(m);
        // At the prologue length the head needs no signature at all, only the hash.
        assert!(v.verify(&t, None));
        assert!(!v.verify(&tree(2), None));
        let longer = tree(4);
        let sig = v.sign(&longer, &kp).unwrap();
        assert!(v.verify(&longer, Some(&sig)));
    }
}
