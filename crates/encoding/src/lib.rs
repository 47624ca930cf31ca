//! Compact encoding, byte-compatible with the `compact-encoding` npm package (3.5.x).
//!
//! This crate owns the primitive wire encodings every Holepunch message is built from: varints
//! (`uint`), fixed-width little-endian integers, length-prefixed buffers and strings, arrays and
//! typed arrays. It owns no message types: each protocol crate defines its messages on top of
//! [`CompactEncoding`].
//!
//! Encoding follows compact-encoding's three steps: `preencode` sums the size, `encode` writes
//! into a buffer of exactly that size, `decode` reads from a byte slice. Decoding never panics
//! and never allocates more than the input could hold: every length prefix is checked against
//! the bytes that remain before anything is allocated.
//!
//! Acceptance matches JS exactly unless `protocol/encoding.md` says otherwise:
//! - `uint` accepts non-minimal prefixes (`fd 01 00` decodes as 1), as JS does;
//! - 64-bit varints above 2^53 - 1 are rejected, as JS's `validateSafeUint` does.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]

mod reader;
mod writer;

pub use reader::Reader;
pub use writer::{Sizer, Writer};

/// The largest integer JS decodes from a 64-bit varint (`Number.MAX_SAFE_INTEGER`).
pub const MAX_SAFE_UINT: u64 = (1 << 53) - 1;

/// The longest `array(enc)` JS decodes (`Array is too big` above it).
pub const MAX_ARRAY_LEN: usize = 0x10_0000;

/// Why a decode failed. Every variant is caused by the input, never by a bug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the value did.
    #[error("unexpected end of input")]
    UnexpectedEnd,
    /// A 64-bit integer above 2^53 - 1 (JS cannot represent it and rejects it).
    #[error("integer out of the safe range")]
    OutOfRange,
    /// A string that is not valid UTF-8.
    #[error("invalid utf-8 string")]
    InvalidUtf8,
    /// A value that is well-formed bytes but not a valid value of its type.
    #[error("invalid value: {0}")]
    Invalid(&'static str),
    /// Bytes were left over after a value that must fill its input.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
}

/// A value with a compact encoding.
pub trait CompactEncoding: Sized {
    /// Add this value's encoded size to `st`.
    fn preencode(&self, st: &mut Sizer);
    /// Write this value. `st` has room for at least the preencoded size.
    fn encode(&self, st: &mut Writer<'_>);
    /// Read a value from `st`.
    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

/// Encode `value` into a new vector of exactly its encoded size.
pub fn to_vec<T: CompactEncoding>(value: &T) -> Vec<u8> {
    let mut sizer = Sizer::default();
    value.preencode(&mut sizer);
    let mut out = vec![0; sizer.len()];
    let mut w = Writer::new(&mut out);
    value.encode(&mut w);
    debug_assert_eq!(w.position(), out.len(), "preencode and encode disagree");
    out
}

/// Decode a value that must fill `bytes` exactly.
pub fn from_slice<T: CompactEncoding>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut r = Reader::new(bytes);
    let value = T::decode(&mut r)?;
    match r.remaining() {
        0 => Ok(value),
        n => Err(DecodeError::TrailingBytes(n)),
    }
}

/// Decode a value from the start of `bytes`, ignoring what follows (JS `c.decode` semantics).
pub fn from_prefix<T: CompactEncoding>(bytes: &[u8]) -> Result<T, DecodeError> {
    T::decode(&mut Reader::new(bytes))
}

/// Encoded size of a `uint` (varint).
pub const fn uint_len(n: u64) -> usize {
    if n <= 0xfc {
        1
    } else if n <= 0xffff {
        3
    } else if n <= 0xffff_ffff {
        5
    } else {
        9
    }
}

/// Zig-zag encode a signed integer as JS `c.int` does.
pub const fn zigzag_encode(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

/// Zig-zag decode an unsigned integer as JS `c.int` does.
pub const fn zigzag_decode(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

macro_rules! impl_fixed_int {
    ($t:ty, $w:ident, $r:ident, $len:expr) => {
        impl CompactEncoding for $t {
            fn preencode(&self, st: &mut Sizer) {
                st.add($len);
            }
            fn encode(&self, st: &mut Writer<'_>) {
                st.$w(*self);
            }
            fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
                st.$r()
            }
        }
    };
}

impl_fixed_int!(u8, uint8, uint8, 1);
impl_fixed_int!(u16, uint16, uint16, 2);
impl_fixed_int!(u32, uint32, uint32, 4);

/// `u64` encodes as compact-encoding's `uint` (the varint), the common case in messages.
/// Use [`Writer::uint64`] / [`Reader::uint64`] for the fixed 8-byte form.
impl CompactEncoding for u64 {
    fn preencode(&self, st: &mut Sizer) {
        st.uint(*self);
    }
    fn encode(&self, st: &mut Writer<'_>) {
        st.uint(*self);
    }
    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        st.uint()
    }
}

impl CompactEncoding for bool {
    fn preencode(&self, st: &mut Sizer) {
        st.add(1);
    }
    fn encode(&self, st: &mut Writer<'_>) {
        st.uint8(u8::from(*self));
    }
    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        st.bool()
    }
}

impl<const N: usize> CompactEncoding for [u8; N] {
    fn preencode(&self, st: &mut Sizer) {
        st.add(N);
    }
    fn encode(&self, st: &mut Writer<'_>) {
        st.raw(self);
    }
    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        st.fixed::<N>()
    }
}

/// `Vec<u8>` encodes as compact-encoding's `buffer` (length-prefixed bytes).
impl CompactEncoding for Vec<u8> {
    fn preencode(&self, st: &mut Sizer) {
        st.buffer(self);
    }
    fn encode(&self, st: &mut Writer<'_>) {
        st.buffer(self);
    }
    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        st.buffer().map(<[u8]>::to_vec)
    }
}

impl CompactEncoding for String {
    fn preencode(&self, st: &mut Sizer) {
        st.string(self);
    }
    fn encode(&self, st: &mut Writer<'_>) {
        st.string(self);
    }
    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        st.string().map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_of<T: CompactEncoding>(v: &T) -> String {
        hex::encode(to_vec(v))
    }

    #[test]
    fn uint_matches_js() {
        // Values from compact-encoding 3.5.2 (`c.encode(c.uint, n)`).
        assert_eq!(hex_of(&0u64), "00");
        assert_eq!(hex_of(&252u64), "fc");
        assert_eq!(hex_of(&253u64), "fdfd00");
        assert_eq!(hex_of(&65536u64), "fe00000100");
        assert_eq!(hex_of(&(1u64 << 32)), "ff0000000001000000");
    }

    #[test]
    fn uint_accepts_non_minimal_and_rejects_unsafe() {
        assert_eq!(from_slice::<u64>(&hex::decode("fd0100").unwrap()), Ok(1));
        assert_eq!(
            from_slice::<u64>(&hex::decode("fe01000000").unwrap()),
            Ok(1)
        );
        let max = hex::decode("ffffffffffffff1f00").unwrap();
        assert_eq!(from_slice::<u64>(&max), Ok(MAX_SAFE_UINT));
        let over = hex::decode("ff0000000000002000").unwrap();
        assert_eq!(from_slice::<u64>(&over), Err(DecodeError::OutOfRange));
        assert_eq!(
            from_slice::<u64>(&[0xfd, 0x01]),
            Err(DecodeError::UnexpectedEnd)
        );
        assert_eq!(from_slice::<u64>(&[]), Err(DecodeError::UnexpectedEnd));
    }

    #[test]
    fn buffers_and_strings() {
        assert_eq!(hex_of(&b"hi".to_vec()), "026869");
        assert_eq!(hex_of(&"hi".to_owned()), "026869");
        assert_eq!(
            from_slice::<String>(&[1, 0xff]),
            Err(DecodeError::InvalidUtf8)
        );
        // A length prefix larger than the input fails before allocating.
        assert_eq!(
            from_slice::<Vec<u8>>(&hex::decode("fe00000010").unwrap()),
            Err(DecodeError::UnexpectedEnd)
        );
        assert_eq!(
            from_slice::<Vec<u8>>(&[0, 1]),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn zigzag() {
        for (n, z) in [(0i64, 0u64), (-1, 1), (1, 2), (-2, 3), (i64::MIN, u64::MAX)] {
            assert_eq!(zigzag_encode(n), z);
            assert_eq!(zigzag_decode(z), n);
        }
    }

    proptest::proptest! {
        #[test]
        fn uint_round_trips(n in 0..=MAX_SAFE_UINT) {
            let bytes = to_vec(&n);
            proptest::prop_assert_eq!(bytes.len(), uint_len(n));
            proptest::prop_assert_eq!(from_slice::<u64>(&bytes), Ok(n));
        }

        #[test]
        fn buffer_round_trips(b in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            proptest::prop_assert_eq!(from_slice::<Vec<u8>>(&to_vec(&b)), Ok(b));
        }

        #[test]
        fn decoding_garbage_never_panics(b in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let mut r = Reader::new(&b);
            let _ = r.uint();
            let _ = r.buffer();
            let _ = r.string();
            let _ = r.uint32_array();
        }
    }
}
