//! HMAC and HKDF over BLAKE2b-512, as noise-handshake 4.2.0 computes them (`hmac.js`,
//! `hkdf.js`).

use peerhost_ids::hash::blake2b512;
use zeroize::{Zeroize, Zeroizing};

/// Output length of the hash (BLAKE2b-512) and of every HKDF block.
pub(crate) const HASHLEN: usize = 64;
/// BLAKE2b's block length, the HMAC key pad width.
const BLOCKLEN: usize = 128;

/// `HMAC-BLAKE2b-512(key, parts[0] ‖ parts[1] ‖ …)`.
///
/// > if (key.byteLength > BLOCKLEN) crypto_generichash(HMACKey.subarray(0, HASHLEN), key)
///
/// (noise-handshake `hmac.js`): long keys are hashed first, as RFC 2104 says. Every key in a
/// handshake is a 64-byte chaining key or PRK, so that branch is only there for completeness.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; HASHLEN] {
    let mut k = Zeroizing::new([0u8; BLOCKLEN]);
    if key.len() > BLOCKLEN {
        let mut hashed = blake2b512(&[key]);
        k[..HASHLEN].copy_from_slice(&hashed);
        hashed.zeroize();
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut ipad = Zeroizing::new([0u8; BLOCKLEN]);
    let mut opad = Zeroizing::new([0u8; BLOCKLEN]);
    for i in 0..BLOCKLEN {
        ipad[i] = 0x36 ^ k[i];
        opad[i] = 0x5c ^ k[i];
    }
    let mut inner_parts: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
    inner_parts.push(&ipad[..]);
    inner_parts.extend_from_slice(parts);
    let mut inner = blake2b512(&inner_parts);
    let out = blake2b512(&[&opad[..], &inner]);
    inner.zeroize();
    out
}

/// HKDF with two output blocks, the only length a non-PSK handshake asks for:
/// `prk = HMAC(salt, ikm)`, `t1 = HMAC(prk, 0x01)`, `t2 = HMAC(prk, t1 ‖ 0x02)`.
///
/// > `prev = hmacDigest(out, key, [prev, infoBuf, pos])`
///
/// (noise-handshake `hkdf.js` `hkdfExpand`, with `prev = infoBuf` before the first block). The
/// info string is always empty in noise-handshake, so the first block hashes `0x01` alone, as
/// RFC 5869 does.
pub(crate) fn hkdf2(
    salt: &[u8],
    ikm: &[u8],
) -> (Zeroizing<[u8; HASHLEN]>, Zeroizing<[u8; HASHLEN]>) {
    let prk = Zeroizing::new(hmac(salt, &[ikm]));
    let t1 = Zeroizing::new(hmac(&prk[..], &[&[1]]));
    let t2 = Zeroizing::new(hmac(&prk[..], &[&t1[..], &[2]]));
    (t1, t2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2104 HMAC, checked against a direct single-buffer computation.
    #[test]
    fn hmac_matches_textbook_definition() {
        let key = [7u8; 64];
        let msg = b"hello noise";
        let mut ipad = [0x36u8; 128];
        let mut opad = [0x5cu8; 128];
        for i in 0..64 {
            ipad[i] ^= key[i];
            opad[i] ^= key[i];
        }
        let inner = blake2b512(&[&ipad, msg]);
        let expected = blake2b512(&[&opad, &inner]);
        assert_eq!(hmac(&key, &[b"hello ", b"noise"]), expected);
    }

    #[test]
    fn long_keys_are_hashed_first() {
        let long = [9u8; 200];
        let hashed = blake2b512(&[&long]);
        assert_eq!(hmac(&long, &[b"x"]), hmac(&hashed, &[b"x"]));
    }

    #[test]
    fn hkdf_blocks_chain() {
        let (t1, t2) = hkdf2(&[1; 64], b"ikm");
        let prk = hmac(&[1; 64], &[b"ikm"]);
        assert_eq!(*t1, hmac(&prk, &[&[1]]));
        assert_eq!(*t2, hmac(&prk, &[&t1[..], &[2]]));
    }
}
