//! BLAKE2b as libsodium's `crypto_generichash` computes it, keyed or not.

use blake2::digest::consts::{U32, U64};
use blake2::digest::{Digest, Mac};
use blake2::{Blake2b, Blake2bMac};

/// BLAKE2b-256 of the concatenation of `parts`.
pub fn blake2b256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2b::<U32>::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// BLAKE2b-512 of the concatenation of `parts`.
pub fn blake2b512(parts: &[&[u8]]) -> [u8; 64] {
    let mut h = Blake2b::<U64>::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Keyed BLAKE2b-256 of the concatenation of `parts` (`crypto_generichash(out, msg, key)`).
/// `key` must be 1 to 64 bytes long, as libsodium requires.
pub fn blake2b256_keyed(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    debug_assert!(!key.is_empty() && key.len() <= 64);
    // Blake2bMac only fails on keys longer than 64 bytes; every caller passes 32 or 64.
    #[allow(clippy::expect_used)]
    let mut h = Blake2bMac::<U32>::new_from_slice(key).expect("blake2b key of at most 64 bytes");
    for p in parts {
        h.update(p);
    }
    h.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_matches_reference() {
        // BLAKE2b-256("") from the BLAKE2 reference implementation.
        assert_eq!(
            hex::encode(blake2b256(&[])),
            "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"
        );
    }

    #[test]
    fn parts_are_concatenated() {
        assert_eq!(blake2b256(&[b"ab", b"c"]), blake2b256(&[b"abc"]));
        assert_eq!(
            blake2b256_keyed(b"k", &[b"a", b"bc"]),
            blake2b256_keyed(b"k", &[b"abc"])
        );
    }
}
