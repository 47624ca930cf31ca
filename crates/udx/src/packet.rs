//! The UDX packet: a 20-byte header, optional extension bytes, then a payload or SACK blocks.
//!
//! Layout (libudx `udx_write_header` / `process_packet`, all integers little-endian):
//!
//! ```text
//! off size field
//! 0   1    magic   0xff
//! 1   1    version 0x01
//! 2   1    type    flag bits (Flags)
//! 3   1    data_offset: extension bytes between header and payload (MTU-probe padding)
//! 4   4    id      the receiver's stream id
//! 8   4    rwnd    the sender's receive window in bytes
//! 12  4    seq     packet sequence number (counts packets, not bytes)
//! 16  4    ack     next seq the sender expects (cumulative)
//! ```
//!
//! See `protocol/udx.md` for the full specification.

use std::fmt;

/// Size of the fixed header.
pub const HEADER_SIZE: usize = 20;
/// First byte of every UDX packet (`UDX_MAGIC_BYTE`).
pub const MAGIC: u8 = 0xff;
/// Second byte of every UDX packet (`UDX_VERSION`).
pub const VERSION: u8 = 0x01;
/// Most SACK blocks in one packet (`UDX_MAX_SACKS`).
pub const MAX_SACKS: usize = 50;
/// Size of one SACK block: `u32 start`, `u32 end` (exclusive).
pub const SACK_BLOCK_SIZE: usize = 8;
/// libudx receives into a 2048-byte buffer and truncates anything longer
/// (`UDX_SOCKET_PACKET_BUFFER_SIZE`): no datagram we send may be longer.
pub const MAX_DATAGRAM: usize = 2048;

/// The `type` byte: a set of flag bits. A value of 0 is a pure ACK.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// Carries stream data (`UDX_HEADER_DATA`).
    pub const DATA: Self = Self(0x01);
    /// Last packet of the sender's byte stream (`UDX_HEADER_END`).
    pub const END: Self = Self(0x02);
    /// Carries SACK blocks (`UDX_HEADER_SACK`).
    pub const SACK: Self = Self(0x04);
    /// An unreliable datagram on the stream (`UDX_HEADER_MESSAGE`).
    pub const MESSAGE: Self = Self(0x08);
    /// The sender destroyed the stream (`UDX_HEADER_DESTROY`).
    pub const DESTROY: Self = Self(0x10);
    /// Keepalive / zero-window probe; answered with an ACK (`UDX_HEADER_HEARTBEAT`).
    pub const HEARTBEAT: Self = Self(0x20);
    /// No flag: a pure acknowledgement.
    pub const ACK: Self = Self(0);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    pub fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 6] = ["DATA", "END", "SACK", "MESSAGE", "DESTROY", "HEARTBEAT"];
        if self.0 == 0 {
            return f.write_str("ACK");
        }
        let mut first = true;
        for (bit, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        let unknown = self.0 & !0x3f;
        if unknown != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{unknown:#04x}")?;
        }
        Ok(())
    }
}

/// The fixed 20-byte header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Flag bits.
    pub flags: Flags,
    /// Extension bytes between header and payload (probe padding), or for SACK packets the
    /// length of the SACK area when `0 < data_offset < rest`.
    pub data_offset: u8,
    /// The receiver's stream id.
    pub id: u32,
    /// The sender's receive window in bytes.
    pub rwnd: u32,
    /// Packet sequence number.
    pub seq: u32,
    /// Cumulative acknowledgement: the next seq expected from the peer.
    pub ack: u32,
}

impl Header {
    /// Write the header into the first 20 bytes of `out`.
    pub fn encode(&self, out: &mut [u8; HEADER_SIZE]) {
        out[0] = MAGIC;
        out[1] = VERSION;
        out[2] = self.flags.0;
        out[3] = self.data_offset;
        out[4..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..12].copy_from_slice(&self.rwnd.to_le_bytes());
        out[12..16].copy_from_slice(&self.seq.to_le_bytes());
        out[16..20].copy_from_slice(&self.ack.to_le_bytes());
    }

    /// Append the header to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut b = [0u8; HEADER_SIZE];
        self.encode(&mut b);
        out.extend_from_slice(&b);
    }

    /// Parse a header; `None` if `buf` is not a UDX packet (shorter than 20 bytes, or not
    /// starting `ff 01`), exactly the test libudx applies before handing a datagram to the
    /// socket's message callback.
    pub fn decode(buf: &[u8]) -> Option<Self> {
        let h: &[u8; HEADER_SIZE] = buf.get(..HEADER_SIZE)?.try_into().ok()?;
        if h[0] != MAGIC || h[1] != VERSION {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        Some(Self {
            flags: Flags(h[2]),
            data_offset: h[3],
            id: u32_at(4),
            rwnd: u32_at(8),
            seq: u32_at(12),
            ack: u32_at(16),
        })
    }
}

/// The stream id of a datagram if it looks like UDX (`ff 01`, at least 20 bytes).
///
/// Whether it *is* UDX also depends on the id naming a live stream; see
/// [`Endpoint::handle_datagram`](crate::Endpoint::handle_datagram).
pub fn peek_id(buf: &[u8]) -> Option<u32> {
    Header::decode(buf).map(|h| h.id)
}

/// One SACK block: packets `start..end` (end exclusive) were received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SackBlock {
    /// First received seq of the block.
    pub start: u32,
    /// One past the last received seq of the block.
    pub end: u32,
}

/// A parsed packet borrowing from the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The fixed header.
    pub header: Header,
    /// For SACK packets: the raw SACK area (a multiple of 8 bytes is used; a trailing partial
    /// block is ignored, as libudx's integer division does). Empty otherwise.
    sacks: &'a [u8],
    /// The payload after the extension bytes (stream data or message), empty for SACK packets.
    pub payload: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Parse a datagram. `None` if it is not UDX, or (like libudx) if `data_offset` points past
    /// the end of a non-SACK packet.
    pub fn decode(buf: &'a [u8]) -> Option<Self> {
        let header = Header::decode(buf)?;
        let rest = &buf[HEADER_SIZE..];
        let doff = usize::from(header.data_offset);
        if header.flags.contains(Flags::SACK) {
            // > size_t header_len = (data_offset > 0 && data_offset < payload_len)
            // >                     ? data_offset : payload_len;
            // (libudx process_packet). The payload of a SACK packet is never read as data.
            let len = if doff > 0 && doff < rest.len() {
                doff
            } else {
                rest.len()
            };
            return Some(Self {
                header,
                sacks: &rest[..len],
                payload: &[],
            });
        }
        if doff > rest.len() {
            return None;
        }
        Some(Self {
            header,
            sacks: &[],
            payload: &rest[doff..],
        })
    }

    /// The SACK blocks, in wire order (at most 255 fit in a 2048-byte datagram).
    pub fn sack_blocks(&self) -> impl Iterator<Item = SackBlock> + 'a {
        self.sacks.chunks_exact(SACK_BLOCK_SIZE).map(|c| SackBlock {
            start: u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            end: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
    }
}

/// Encode a complete packet: header, `padding` zero bytes (recorded in `data_offset`), then
/// `payload`. Returns the datagram.
pub fn encode_packet(mut header: Header, padding: u8, payload: &[u8]) -> Vec<u8> {
    header.data_offset = padding;
    let mut out = Vec::with_capacity(HEADER_SIZE + usize::from(padding) + payload.len());
    header.write_to(&mut out);
    out.resize(out.len() + usize::from(padding), 0);
    out.extend_from_slice(payload);
    out
}

/// Encode an ACK (type 0) or, when `blocks` is non-empty, a SACK packet (type 0x04) with
/// `data_offset` 0 and the blocks after the header (libudx `send_ack`). At most
/// [`MAX_SACKS`] blocks are written.
pub fn encode_ack(mut header: Header, blocks: &[SackBlock]) -> Vec<u8> {
    let blocks = &blocks[..blocks.len().min(MAX_SACKS)];
    header.flags = if blocks.is_empty() {
        Flags::ACK
    } else {
        Flags::SACK
    };
    header.data_offset = 0;
    let mut out = Vec::with_capacity(HEADER_SIZE + blocks.len() * SACK_BLOCK_SIZE);
    header.write_to(&mut out);
    for b in blocks {
        out.extend_from_slice(&b.start.to_le_bytes());
        out.extend_from_slice(&b.end.to_le_bytes());
    }
    out
}

/// Signed distance `a - b` in the wrapping u32 sequence space (libudx `seq_diff`).
pub(crate) fn seq_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// `a < b` in sequence space.
pub(crate) fn seq_lt(a: u32, b: u32) -> bool {
    seq_diff(a, b) < 0
}

/// `a <= b` in sequence space.
pub(crate) fn seq_le(a: u32, b: u32) -> bool {
    seq_diff(a, b) <= 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hdr(flags: Flags, id: u32, seq: u32, ack: u32) -> Header {
        Header {
            flags,
            data_offset: 0,
            id,
            rwnd: 4_194_304,
            seq,
            ack,
        }
    }

    #[test]
    fn data_packet_snapshot() {
        // The first packet of udx_tap.out: write("hello") on a stream whose remote id is 2.
        let bytes = encode_packet(hdr(Flags::DATA, 2, 0, 0), 0, b"hello");
        assert_eq!(
            hex::encode(&bytes),
            concat!(
                "ff",       // magic
                "01",       // version
                "01",       // type DATA
                "00",       // data_offset
                "02000000", // id = 2 (receiver's id)
                "00004000", // rwnd = 4194304
                "00000000", // seq = 0
                "00000000", // ack = 0
                "68656c6c6f"
            )
        );
        assert_eq!(bytes.len(), 25);
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.header, hdr(Flags::DATA, 2, 0, 0));
        assert_eq!(p.payload, b"hello");
    }

    #[test]
    fn ack_snapshot() {
        // "answered by ACK id=1 seq=0 ack=1" (udx_tap.out).
        let bytes = encode_ack(hdr(Flags::ACK, 1, 0, 1), &[]);
        assert_eq!(
            hex::encode(&bytes),
            "ff01000001000000000040000000000001000000"
        );
    }

    #[test]
    fn sack_snapshot() {
        let blocks = [
            SackBlock { start: 5, end: 7 },
            SackBlock {
                start: 0x0102_0304,
                end: 0x0102_0306,
            },
        ];
        let bytes = encode_ack(hdr(Flags::ACK, 9, 3, 4), &blocks);
        assert_eq!(
            hex::encode(&bytes),
            concat!(
                "ff01", "04", "00", // SACK, data_offset 0
                "09000000", "00004000", "03000000", "04000000", // id, rwnd, seq, ack
                "05000000", "07000000", // [5, 7)
                "04030201", "06030201", // [0x01020304, 0x01020306)
            )
        );
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.sack_blocks().collect::<Vec<_>>(), blocks);
        assert!(p.payload.is_empty());
    }

    #[test]
    fn end_heartbeat_destroy_message_snapshots() {
        // END alone: 20 bytes, no DATA flag (udx_tap.out "END seq=251").
        let end = encode_packet(hdr(Flags::END, 2, 251, 7), 0, &[]);
        assert_eq!(
            hex::encode(&end),
            concat!(
                "ff01", "02", "00", "02000000", "00004000", "fb000000", "07000000"
            )
        );
        let hb = encode_packet(hdr(Flags::HEARTBEAT, 2, 251, 7), 0, &[]);
        assert_eq!(&hex::encode(&hb)[..8], "ff012000");
        let d = encode_packet(hdr(Flags::DESTROY, 2, 1, 0), 0, &[]);
        assert_eq!(&hex::encode(&d)[..8], "ff011000");
        let m = encode_packet(hdr(Flags::MESSAGE, 2, 1, 0), 0, b"dgram");
        assert_eq!(&hex::encode(&m)[..8], "ff010800");
        assert_eq!(Packet::decode(&m).unwrap().payload, b"dgram");
    }

    #[test]
    fn probe_padding_is_skipped() {
        // An MTU probe: DATA with data_offset = 32 and 32 zero bytes before the payload.
        let bytes = encode_packet(hdr(Flags::DATA, 1, 10, 0), 32, b"xyz");
        assert_eq!(bytes[3], 32);
        assert!(bytes[20..52].iter().all(|&b| b == 0));
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.header.data_offset, 32);
        assert_eq!(p.payload, b"xyz");
    }

    #[test]
    fn data_offset_past_end_is_dropped() {
        let mut bytes = encode_packet(hdr(Flags::DATA, 1, 0, 0), 0, b"ab");
        bytes[3] = 3;
        assert_eq!(Packet::decode(&bytes), None);
        bytes[3] = 2; // exactly the rest: empty payload
        assert_eq!(Packet::decode(&bytes).unwrap().payload, b"");
    }

    #[test]
    fn sack_area_from_data_offset() {
        let mut bytes = encode_ack(hdr(Flags::ACK, 1, 0, 0), &[SackBlock { start: 1, end: 2 }]);
        bytes.extend_from_slice(&[0xaa; 8]); // trailing bytes beyond the SACK area
        bytes[3] = 8;
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(
            p.sack_blocks().collect::<Vec<_>>(),
            [SackBlock { start: 1, end: 2 }]
        );
        // data_offset >= rest: the whole rest is the SACK area; a partial block is ignored.
        bytes[3] = 200;
        bytes.push(1);
        assert_eq!(Packet::decode(&bytes).unwrap().sack_blocks().count(), 2);
    }

    #[test]
    fn not_udx() {
        assert_eq!(Header::decode(&[0xff, 0x01]), None);
        assert_eq!(Header::decode(&[0x13; 20]), None);
        let mut b = [0u8; 20];
        b[0] = 0xff;
        b[1] = 0x02;
        assert_eq!(Header::decode(&b), None);
        b[1] = 0x01;
        assert!(Header::decode(&b).is_some());
        assert_eq!(peek_id(&[0x03, 0x00]), None);
    }

    #[test]
    fn flags_debug() {
        assert_eq!(format!("{:?}", Flags::ACK), "ACK");
        assert_eq!(format!("{:?}", Flags::DATA | Flags::END), "DATA|END");
        assert_eq!(format!("{:?}", Flags(0xc1)), "DATA|0xc0");
    }

    #[test]
    fn seq_compare_wraps() {
        assert!(seq_lt(u32::MAX, 0));
        assert!(seq_lt(0, 1));
        assert!(!seq_lt(1, u32::MAX));
        assert!(seq_le(5, 5));
        assert_eq!(seq_diff(2, u32::MAX), 3);
    }

    proptest! {
        #[test]
        fn header_roundtrip(flags: u8, doff: u8, id: u32, rwnd: u32, seq: u32, ack: u32) {
            let h = Header { flags: Flags(flags), data_offset: doff, id, rwnd, seq, ack };
            let mut b = [0u8; HEADER_SIZE];
            h.encode(&mut b);
            prop_assert_eq!(Header::decode(&b), Some(h));
        }

        #[test]
        fn packet_roundtrip(flags in 0u8..0x40, pad: u8, id: u32, seq: u32, ack: u32,
                            payload in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let flags = Flags(flags & !Flags::SACK.0);
            let h = Header { flags, data_offset: 0, id, rwnd: 1, seq, ack };
            let bytes = encode_packet(h, pad, &payload);
            prop_assert_eq!(bytes.len(), HEADER_SIZE + usize::from(pad) + payload.len());
            let p = Packet::decode(&bytes).unwrap();
            prop_assert_eq!(p.header.data_offset, pad);
            prop_assert_eq!(p.payload, &payload[..]);
        }

        #[test]
        fn sack_roundtrip(blocks in proptest::collection::vec((any::<u32>(), any::<u32>()), 0..60)) {
            let blocks: Vec<SackBlock> =
                blocks.into_iter().map(|(start, end)| SackBlock { start, end }).collect();
            let bytes = encode_ack(hdr(Flags::ACK, 1, 2, 3), &blocks);
            let n = blocks.len().min(MAX_SACKS);
            prop_assert_eq!(bytes.len(), HEADER_SIZE + n * SACK_BLOCK_SIZE);
            let p = Packet::decode(&bytes).unwrap();
            prop_assert_eq!(p.header.flags, if n == 0 { Flags::ACK } else { Flags::SACK });
            prop_assert_eq!(p.sack_blocks().collect::<Vec<_>>(), &blocks[..n]);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            if let Some(p) = Packet::decode(&bytes) {
                let _ = p.sack_blocks().count();
            }
        }
    }
}
