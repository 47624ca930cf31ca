//! BLAKE2b as libsodium's `crypto_generichash` computes it, keyed or not.
//!
//! `blake2b_simd` picks AVX2 at run time where the CPU has it: every block is hashed on both
//! sides of a replication, so this is on the hot path (about twice the portable `blake2`).

use blake2b_simd::{Params, State};

fn state(out_len: usize, key: &[u8]) -> State {
    let mut p = Params::new();
    p.hash_length(out_len);
    if !key.is_empty() {
        p.key(key);
    }
    p.to_state()
}

fn hash_into<const N: usize>(key: &[u8], parts: &[&[u8]]) -> [u8; N] {
    let mut h = state(N, key);
    for p in parts {
        h.update(p);
    }
    let mut out = [0u8; N];
    out.copy_from_slice(h.finalize().as_bytes());
    out
}

/// BLAKE2b-256 of the concatenation of `parts`.
pub fn blake2b256(parts: &[&[u8]]) -> [u8; 32] {
    hash_into(&[], parts)
}

/// BLAKE2b-512 of the concatenation of `parts`.
pub fn blake2b512(parts: &[&[u8]]) -> [u8; 64] {
    hash_into(&[], parts)
}

/// Keyed BLAKE2b-256 of the concatenation of `parts` (`crypto_generichash(out, msg, key)`).
/// `key` must be 1 to 64 bytes long, as libsodium requires.
pub fn blake2b256_keyed(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    assert!(
        !key.is_empty() && key.len() <= 64,
        "blake2b key of 1 to 64 bytes"
    );
    hash_into(key, parts)
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
