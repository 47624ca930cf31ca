//! The two messages of the `blind-relay` protomux channel (blind-relay 1.6.1 `index.js`,
//! `m.pair` / `m.unpair`), in the order JS adds them: `pair` is type 0, `unpair` type 1.
//!
//! ```text
//! pair   = bitfield(7) flags (bit 0: isInitiator) ‖ fixed32 token ‖ uint id ‖ uint seq
//! unpair = bitfield(7) flags (always 0)           ‖ fixed32 token
//! ```
//!
//! `bitfield(7)` (compact-encoding-bitfield) is one byte when written. On reading, JS also
//! accepts a `0xfd` / `0xfe` / `0xff` prefix followed by 2 / 4 / 8 bytes, of which only the
//! first byte's bits matter for a 7-bit field; we accept the same. `id` is the sender's UDX
//! stream id (a u32 in libudx: larger values are rejected), `seq` is always sent as 0 and never
//! read (kept for round trips).

use peerhost_encoding::{CompactEncoding, DecodeError, Reader, Sizer, Writer};

/// Message type of [`Pair`] on the channel.
pub const PAIR: u64 = 0;
/// Message type of [`Unpair`] on the channel.
pub const UNPAIR: u64 = 1;

/// Ask the relay to pair our stream with the peer holding the same token (client → relay), or
/// the relay's answer carrying the relay-side stream id (relay → client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    /// Which side of the pair this is: the two peers send opposite values.
    pub is_initiator: bool,
    /// The pairing token, chosen by one peer and shared with the other out of band.
    pub token: [u8; 32],
    /// Client → relay: the client's UDX stream id. Relay → client: the relay stream id the
    /// client must send to.
    pub id: u32,
    /// Always 0 in JS; never read.
    pub seq: u64,
}

/// Cancel a pending pairing, or tear down an active one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unpair {
    /// The pairing token.
    pub token: [u8; 32],
}

fn read_flags(st: &mut Reader<'_>) -> Result<u8, DecodeError> {
    let first = st.uint8()?;
    let extra = match first {
        0xfd => 2,
        0xfe => 4,
        0xff => 8,
        _ => return Ok(first),
    };
    let bytes = st.raw(extra)?;
    Ok(bytes[0])
}

impl CompactEncoding for Pair {
    fn preencode(&self, st: &mut Sizer) {
        st.add(1 + 32);
        st.uint(u64::from(self.id));
        st.uint(self.seq);
    }

    fn encode(&self, st: &mut Writer<'_>) {
        st.uint8(u8::from(self.is_initiator));
        st.raw(&self.token);
        st.uint(u64::from(self.id));
        st.uint(self.seq);
    }

    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let flags = read_flags(st)?;
        let token = st.fixed::<32>()?;
        let id = u32::try_from(st.uint()?).map_err(|_| DecodeError::Invalid("stream id"))?;
        let seq = st.uint()?;
        Ok(Self {
            is_initiator: flags & 1 == 1,
            token,
            id,
            seq,
        })
    }
}

impl CompactEncoding for Unpair {
    fn preencode(&self, st: &mut Sizer) {
        st.add(1 + 32);
    }

    fn encode(&self, st: &mut Writer<'_>) {
        st.uint8(0);
        st.raw(&self.token);
    }

    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        read_flags(st)?;
        Ok(Self {
            token: st.fixed::<32>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerhost_encoding::{from_prefix, to_vec};
    use proptest::prelude::*;

    #[test]
    fn pair_matches_js_bytes() {
        // blind-relay pair (isInitiator, id 300): 01 bb×32 fd2c01 00
        let p = Pair {
            is_initiator: true,
            token: [0xbb; 32],
            id: 300,
            seq: 0,
        };
        let expected = format!("01{}fd2c0100", "bb".repeat(32));
        assert_eq!(hex::encode(to_vec(&p)), expected);
        // responder, id 5: 00 bb×32 05 00
        let p = Pair {
            is_initiator: false,
            id: 5,
            ..p
        };
        assert_eq!(
            hex::encode(to_vec(&p)),
            format!("00{}0500", "bb".repeat(32))
        );
    }

    #[test]
    fn unpair_matches_js_bytes() {
        let u = Unpair { token: [0xbb; 32] };
        assert_eq!(hex::encode(to_vec(&u)), format!("00{}", "bb".repeat(32)));
    }

    #[test]
    fn wide_bitfields_decode_like_js() {
        let mut bytes = vec![0xfd, 0x01, 0x00];
        bytes.extend_from_slice(&[7; 32]);
        bytes.extend_from_slice(&[5, 0]);
        let p: Pair = from_prefix(&bytes).expect("decodes");
        assert!(p.is_initiator);
        assert_eq!((p.token, p.id), ([7; 32], 5));
        assert!(from_prefix::<Pair>(&[0xff, 1, 2]).is_err());
        // ids beyond u32 are not UDX ids
        let mut big = vec![0x01];
        big.extend_from_slice(&[7; 32]);
        big.extend_from_slice(&[0xff, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert!(from_prefix::<Pair>(&big).is_err());
    }

    proptest! {
        #[test]
        fn pair_round_trips(init: bool, token: [u8; 32], id: u32, seq in 0u64..(1 << 53)) {
            let p = Pair { is_initiator: init, token, id, seq };
            let bytes = to_vec(&p);
            let mut sz = Sizer::default();
            p.preencode(&mut sz);
            prop_assert_eq!(sz.len(), bytes.len());
            prop_assert_eq!(from_prefix::<Pair>(&bytes).expect("decodes"), p);
        }

        #[test]
        fn unpair_round_trips(token: [u8; 32]) {
            let u = Unpair { token };
            prop_assert_eq!(from_prefix::<Unpair>(&to_vec(&u)).expect("decodes"), u);
        }

        #[test]
        fn decoding_never_panics(bytes: Vec<u8>) {
            let _ = from_prefix::<Pair>(&bytes);
            let _ = from_prefix::<Unpair>(&bytes);
        }
    }
}
