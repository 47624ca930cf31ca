//! Diffie-Hellman on Ed25519 keys, as noise-curve-ed 2.1.0 does it (`index.js` `dh`).
//!
//! > sodium.crypto_hash_sha512(sk, secretKey.subarray(0, 32))
//! > `sk[0] &= 248; sk[31] &= 127; sk[31] |= 64`
//! > sodium.crypto_scalarmult_ed25519_noclamp(output, scalar, publicKey)
//!
//! The scalar is the clamped first half of SHA-512(seed) (the Ed25519 signing scalar), the peer
//! key is an Ed25519 public key (a compressed Edwards point), and the shared secret is the
//! compressed Edwards point `scalar · peer`. No conversion to X25519 happens anywhere.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::traits::IsIdentity;
use peerhost_ids::KeyPair;
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use crate::HandshakeError;

/// Length of a public key and of a DH output.
pub(crate) const DHLEN: usize = 32;

/// `crypto_scalarmult_ed25519_noclamp(clamp(SHA-512(seed)[..32]), remote)`.
///
/// libsodium (`crypto_scalarmult/ed25519/ref10/scalarmult_ed25519_ref10.c`) refuses a peer
/// point that is not canonically encoded, has small order, does not decode, or lies outside the
/// prime-order subgroup, and refuses an all-identity result; sodium-native turns the `-1` into a
/// thrown error, which fails the JS handshake. We refuse exactly the same inputs:
/// - a point that decodes and re-encodes to the same bytes is canonical (this also rejects
///   `x = 0` with the sign bit set, which only the small-order points `y = ±1` could have);
/// - a torsion-free point other than the identity has prime order `L`, so it is neither of
///   small order nor outside the main subgroup.
pub(crate) fn dh(local: &KeyPair, remote: &[u8; DHLEN]) -> Result<[u8; DHLEN], HandshakeError> {
    let point = decode_point(remote).ok_or(HandshakeError::InvalidPublicKey)?;
    let scalar = scalar_of(local);
    // `mul_clamped` clamps again (idempotent on an already clamped scalar) and multiplies by the
    // unreduced 255-bit integer, like libsodium's `ge25519_scalarmult`; on a point of order L the
    // result is the same as for the reduced scalar.
    let shared = point.mul_clamped(*scalar);
    if shared.is_identity() {
        return Err(HandshakeError::InvalidPublicKey);
    }
    Ok(shared.compress().to_bytes())
}

/// The clamped Ed25519 scalar of a key pair: `SHA-512(seed)[0..32]` with bits 0–2 and 255
/// cleared and bit 254 set.
fn scalar_of(kp: &KeyPair) -> Zeroizing<[u8; 32]> {
    let seed = Zeroizing::new(kp.seed());
    let mut hash = Zeroizing::new([0u8; 64]);
    hash.copy_from_slice(&Sha512::digest(&seed[..]));
    let mut s = Zeroizing::new([0u8; 32]);
    s.copy_from_slice(&hash[..32]);
    s[0] &= 248;
    s[31] &= 127;
    s[31] |= 64;
    s
}

/// Decode a peer public key with libsodium's `crypto_scalarmult_ed25519` acceptance rules.
fn decode_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    let compressed = CompressedEdwardsY(*bytes);
    let point = compressed.decompress()?;
    if point.compress() != compressed {
        return None;
    }
    if point.is_identity() || !point.is_torsion_free() {
        return None;
    }
    Some(point)
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};

    #[test]
    fn dh_is_symmetric() {
        let a = KeyPair::from_seed(&[1; 32]);
        let b = KeyPair::from_seed(&[2; 32]);
        assert_eq!(
            dh(&a, &b.public_key()).unwrap(),
            dh(&b, &a.public_key()).unwrap()
        );
    }

    /// The public key is the scalar times the base point, so `dh` with the base point as the
    /// "peer" gives back our own public key.
    #[test]
    fn scalar_matches_the_ed25519_public_key() {
        let a = KeyPair::from_seed(&[3; 32]);
        let base = ED25519_BASEPOINT_POINT.compress().to_bytes();
        assert_eq!(dh(&a, &base).unwrap(), a.public_key());
    }

    #[test]
    fn rejects_small_order_and_torsion_points() {
        let a = KeyPair::from_seed(&[1; 32]);
        for t in EIGHT_TORSION {
            assert_eq!(
                dh(&a, &t.compress().to_bytes()),
                Err(HandshakeError::InvalidPublicKey)
            );
            // A valid point plus a torsion component is outside the prime-order subgroup.
            let mixed = KeyPair::from_seed(&[5; 32]).public_key();
            let p = CompressedEdwardsY(mixed).decompress().unwrap() + t;
            if !t.is_identity() {
                assert_eq!(
                    dh(&a, &p.compress().to_bytes()),
                    Err(HandshakeError::InvalidPublicKey)
                );
            }
        }
    }

    #[test]
    fn rejects_non_canonical_encodings() {
        let a = KeyPair::from_seed(&[1; 32]);
        // y = p + 1 ≡ 1 (the identity, non-canonically encoded).
        let mut p_plus_1 = [0xffu8; 32];
        p_plus_1[0] = 0xee;
        p_plus_1[31] = 0x7f;
        assert_eq!(dh(&a, &p_plus_1), Err(HandshakeError::InvalidPublicKey));
        // Not on the curve at all: y = 2 has no square root for x.
        let mut two = [0u8; 32];
        two[0] = 2;
        assert_eq!(dh(&a, &two), Err(HandshakeError::InvalidPublicKey));
    }
}
