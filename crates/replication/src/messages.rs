//! The ten messages of the `hypercore/alpha` channel and its open handshake, exactly as
//! hypercore 11.39.5 `lib/messages.js` (`wire.*`) encodes them.
//!
//! | type | name | encoding |
//! |---|---|---|
//! | – | handshake (in the protomux open) | `uint flags(1 seeks) ‖ fixed32 capability` |
//! | 0 | sync | `uint flags(1 canUpgrade, 2 uploading, 4 downloading, 8 hasManifest, 16 allowPush) ‖ uint fork ‖ uint length ‖ uint remoteLength` |
//! | 1 | request | [`peerhost_log::Request`] |
//! | 2 | cancel | `uint request` |
//! | 3 | data | [`peerhost_log::Data`] |
//! | 4 | noData | `uint request ‖ [uint flags(1 reason) ‖ [uint reason]]` |
//! | 5 | want | `uint start ‖ uint length ‖ [uint flags(1 any)]` |
//! | 6 | unwant | as want |
//! | 7 | bitfield | `uint start ‖ uint32array bitfield` |
//! | 8 | range | `uint flags(1 drop, 2 length is 1) ‖ uint start ‖ [uint length]` |
//! | 9 | extension | `string name ‖ raw message` |
//!
//! Decoding follows JS acceptance: unknown flag bits are ignored, and bytes after a message are
//! ignored (protomux hands the rest of the frame to `c.decode`-style decoders that do not check
//! the end). Optional trailing fields (`noData` flags, `want` flags) are read only when bytes
//! remain, as JS does with `state.start < state.end`.

use peerhost_encoding::{CompactEncoding, DecodeError, Reader, Sizer, Writer};
use peerhost_ids::Key;
use peerhost_ids::hash::blake2b256_keyed;
use peerhost_ids::ns::hypercore::{REPLICATE_INITIATOR, REPLICATE_RESPONDER};
use peerhost_log::{Data, Request};

/// The protocol name of the channel (`protocol: 'hypercore/alpha'`).
pub const PROTOCOL: &str = "hypercore/alpha";

/// The alias hypercore registers for the channel (`aliases: ['hypercore']`).
pub const ALIAS: &str = "hypercore";

/// The replication capability a side sends in its handshake (lib/caps.js `replicate`):
/// `BLAKE2b-256(REPLICATE_INITIATOR or REPLICATE_RESPONDER ‖ key; key = handshakeHash)`, with
/// the sender's own role. It proves the sender knows the log's key (not only its discovery key)
/// and binds that proof to this connection.
pub fn capability(is_initiator: bool, key: &Key, handshake_hash: &[u8; 64]) -> [u8; 32] {
    let ns = if is_initiator {
        &REPLICATE_INITIATOR
    } else {
        &REPLICATE_RESPONDER
    };
    blake2b256_keyed(handshake_hash, &[ns, &key.0])
}

/// The handshake carried by the channel's protomux open (`wire.handshake`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handshake {
    /// The sender answers seek requests (hypercore 11 always sets it).
    pub seeks: bool,
    /// See [`capability`].
    pub capability: [u8; 32],
}

impl CompactEncoding for Handshake {
    fn preencode(&self, st: &mut Sizer) {
        st.add(1 + 32);
    }
    fn encode(&self, st: &mut Writer<'_>) {
        st.uint(u64::from(self.seeks));
        st.raw(&self.capability);
    }
    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let flags = st.uint()?;
        Ok(Self {
            seeks: flags & 1 != 0,
            capability: st.fixed()?,
        })
    }
}

/// `wire.sync`: a side's head and what it is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Sync {
    /// The sender's fork.
    pub fork: u64,
    /// The sender's length.
    pub length: u64,
    /// The length the sender last heard from us (0 when on another fork): our length "acked".
    pub remote_length: u64,
    /// The sender can prove an upgrade from our length to its own.
    pub can_upgrade: bool,
    /// The sender answers requests.
    pub uploading: bool,
    /// The sender wants blocks.
    pub downloading: bool,
    /// The sender knows the manifest (and the log is not compat).
    pub has_manifest: bool,
    /// The sender accepts unrequested blocks.
    pub allow_push: bool,
}

impl Sync {
    fn flags(&self) -> u64 {
        u64::from(self.can_upgrade)
            | u64::from(self.uploading) << 1
            | u64::from(self.downloading) << 2
            | u64::from(self.has_manifest) << 3
            | u64::from(self.allow_push) << 4
    }
}

impl CompactEncoding for Sync {
    fn preencode(&self, st: &mut Sizer) {
        st.uint(self.flags());
        st.uint(self.fork);
        st.uint(self.length);
        st.uint(self.remote_length);
    }
    fn encode(&self, st: &mut Writer<'_>) {
        st.uint(self.flags());
        st.uint(self.fork);
        st.uint(self.length);
        st.uint(self.remote_length);
    }
    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let flags = st.uint()?;
        Ok(Self {
            fork: st.uint()?,
            length: st.uint()?,
            remote_length: st.uint()?,
            can_upgrade: flags & 1 != 0,
            uploading: flags & 2 != 0,
            downloading: flags & 4 != 0,
            has_manifest: flags & 8 != 0,
            allow_push: flags & 16 != 0,
        })
    }
}

/// `wire.cancel`: the sender no longer wants the answer to `request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Cancel {
    /// The request id.
    pub request: u64,
}

impl CompactEncoding for Cancel {
    fn preencode(&self, st: &mut Sizer) {
        st.uint(self.request);
    }
    fn encode(&self, st: &mut Writer<'_>) {
        st.uint(self.request);
    }
    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            request: st.uint()?,
        })
    }
}

/// Why a `noData` was sent (lib/replicator.js `NOT_AVAILABLE`, `INVALID_REQUEST`).
pub mod reason {
    /// No reason given (older peers, or a failed verification on our side).
    pub const NONE: u64 = 0;
    /// The sender does not have what was asked for.
    pub const NOT_AVAILABLE: u64 = 1;
    /// The request could not be answered (a bad range, a bad proof request).
    pub const INVALID_REQUEST: u64 = 2;
}

/// `wire.noData`: the sender cannot answer `request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NoData {
    /// The request id.
    pub request: u64,
    /// See [`reason`]; 0 is encoded as no reason.
    pub reason: u64,
}

impl CompactEncoding for NoData {
    fn preencode(&self, st: &mut Sizer) {
        st.uint(self.request);
        st.add(1);
        if self.reason != 0 {
            st.uint(self.reason);
        }
    }
    fn encode(&self, st: &mut Writer<'_>) {
        st.uint(self.request);
        st.uint(u64::from(self.reason != 0));
        if self.reason != 0 {
            st.uint(self.reason);
        }
    }
    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let request = st.uint()?;
        // > const flags = state.start < state.end ? c.uint.decode(state) : 0
        let flags = if st.is_empty() { 0 } else { st.uint()? };
        let reason = if flags & 1 != 0 { st.uint()? } else { 0 };
        Ok(Self { request, reason })
    }
}

/// `wire.want` / `wire.unwant`: the sender would like to know (or no longer needs to know)
/// which blocks of `start..start + length` we have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Want {
    /// First block.
    pub start: u64,
    /// Number of blocks.
    pub length: u64,
    /// Any one block of the range will do (answered with a `range` of one block).
    pub any: bool,
}

impl CompactEncoding for Want {
    fn preencode(&self, st: &mut Sizer) {
        st.uint(self.start);
        st.uint(self.length);
        if self.any {
            st.add(1);
        }
    }
    fn encode(&self, st: &mut Writer<'_>) {
        st.uint(self.start);
        st.uint(self.length);
        if self.any {
            st.uint(1);
        }
    }
    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let start = st.uint()?;
        let length = st.uint()?;
        let flags = if st.is_empty() { 0 } else { st.uint()? };
        Ok(Self {
            start,
            length,
            any: flags & 1 != 0,
        })
    }
}

/// `wire.bitfield`: which blocks from `start` (a multiple of 32) the sender has, one bit per
/// block, 32-bit little-endian words (bit `i` of word `w` is block `start + 32w + i`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Bitfield {
    /// First block covered.
    pub start: u64,
    /// The words.
    pub bitfield: Vec<u32>,
}

impl CompactEncoding for Bitfield {
    fn preencode(&self, st: &mut Sizer) {
        st.uint(self.start);
        st.uint32_array(&self.bitfield);
    }
    fn encode(&self, st: &mut Writer<'_>) {
        st.uint(self.start);
        st.uint32_array(&self.bitfield);
    }
    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            start: st.uint()?,
            bitfield: st.uint32_array()?,
        })
    }
}

/// `wire.range`: the sender has (or, with `drop`, no longer has) blocks
/// `start..start + length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Range {
    /// The blocks were removed rather than added.
    pub drop: bool,
    /// First block.
    pub start: u64,
    /// Number of blocks (1 is encoded as a flag).
    pub length: u64,
}

impl CompactEncoding for Range {
    fn preencode(&self, st: &mut Sizer) {
        st.add(1);
        st.uint(self.start);
        if self.length != 1 {
            st.uint(self.length);
        }
    }
    fn encode(&self, st: &mut Writer<'_>) {
        st.uint(u64::from(self.drop) | u64::from(self.length == 1) << 1);
        st.uint(self.start);
        if self.length != 1 {
            st.uint(self.length);
        }
    }
    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let flags = st.uint()?;
        let start = st.uint()?;
        let length = if flags & 2 != 0 { 1 } else { st.uint()? };
        Ok(Self {
            drop: flags & 1 != 0,
            start,
            length,
        })
    }
}

/// `wire.extension`: an application message (an empty name means "the same as last time").
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Extension {
    /// The extension's name.
    pub name: String,
    /// Its payload: the rest of the frame.
    pub message: Vec<u8>,
}

impl CompactEncoding for Extension {
    fn preencode(&self, st: &mut Sizer) {
        st.string(&self.name);
        st.add(self.message.len());
    }
    fn encode(&self, st: &mut Writer<'_>) {
        st.string(&self.name);
        st.raw(&self.message);
    }
    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        // JS decodes strings leniently (invalid UTF-8 becomes U+FFFD); so do we.
        Ok(Self {
            name: String::from_utf8_lossy(st.buffer()?).into_owned(),
            message: st.rest().to_vec(),
        })
    }
}

/// A message of the channel, by its protomux type number (the order of hypercore's
/// `messages: [...]`).
// Data is large; messages are decoded one at a time and consumed at once, so boxing it would
// only add an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// 0
    Sync(Sync),
    /// 1
    Request(Request),
    /// 2
    Cancel(Cancel),
    /// 3
    Data(Data),
    /// 4
    NoData(NoData),
    /// 5
    Want(Want),
    /// 6
    Unwant(Want),
    /// 7
    Bitfield(Bitfield),
    /// 8
    Range(Range),
    /// 9
    Extension(Extension),
}

/// Why a channel message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// A type past the ten hypercore registers (JS protomux ignores these; see
    /// `protocol/replication.md` for what we do).
    #[error("unknown message type {0}")]
    UnknownType(u64),
    /// The payload does not decode as its type.
    #[error("malformed {name} message: {source}")]
    Decode {
        /// The message's name.
        name: &'static str,
        /// What failed.
        #[source]
        source: DecodeError,
    },
}

impl Message {
    /// The protomux message type.
    pub fn message_type(&self) -> u64 {
        match self {
            Self::Sync(_) => 0,
            Self::Request(_) => 1,
            Self::Cancel(_) => 2,
            Self::Data(_) => 3,
            Self::NoData(_) => 4,
            Self::Want(_) => 5,
            Self::Unwant(_) => 6,
            Self::Bitfield(_) => 7,
            Self::Range(_) => 8,
            Self::Extension(_) => 9,
        }
    }

    /// The name hypercore uses for the message type (for logs).
    pub fn type_name(message_type: u64) -> &'static str {
        match message_type {
            0 => "sync",
            1 => "request",
            2 => "cancel",
            3 => "data",
            4 => "noData",
            5 => "want",
            6 => "unwant",
            7 => "bitfield",
            8 => "range",
            9 => "extension",
            _ => "unknown",
        }
    }

    /// Encode the payload (without the protomux channel and type).
    pub fn encode(&self) -> Vec<u8> {
        use peerhost_encoding::to_vec;
        match self {
            Self::Sync(m) => to_vec(m),
            Self::Request(m) => to_vec(m),
            Self::Cancel(m) => to_vec(m),
            Self::Data(m) => to_vec(m),
            Self::NoData(m) => to_vec(m),
            Self::Want(m) | Self::Unwant(m) => to_vec(m),
            Self::Bitfield(m) => to_vec(m),
            Self::Range(m) => to_vec(m),
            Self::Extension(m) => to_vec(m),
        }
    }

    /// Decode a payload of `message_type`. Never panics; trailing bytes are ignored (JS).
    pub fn decode(message_type: u64, payload: &[u8]) -> Result<Self, MessageError> {
        use peerhost_encoding::from_prefix;
        let name = Self::type_name(message_type);
        let wrap = |source| MessageError::Decode { name, source };
        Ok(match message_type {
            0 => Self::Sync(from_prefix(payload).map_err(wrap)?),
            1 => Self::Request(from_prefix(payload).map_err(wrap)?),
            2 => Self::Cancel(from_prefix(payload).map_err(wrap)?),
            3 => Self::Data(from_prefix(payload).map_err(wrap)?),
            4 => Self::NoData(from_prefix(payload).map_err(wrap)?),
            5 => Self::Want(from_prefix(payload).map_err(wrap)?),
            6 => Self::Unwant(from_prefix(payload).map_err(wrap)?),
            7 => Self::Bitfield(from_prefix(payload).map_err(wrap)?),
            8 => Self::Range(from_prefix(payload).map_err(wrap)?),
            9 => Self::Extension(from_prefix(payload).map_err(wrap)?),
            t => return Err(MessageError::UnknownType(t)),
        })
    }
}

#[cfg(test)]
mod tests {
    use peerhost_encoding::{from_slice, to_vec};
    use proptest::prelude::*;

    use super::*;

    /// Hex written by `interop-tests/replication/messages.js` (hypercore 11.39.5).
    fn js(name: &str) -> &'static str {
        match name {
            "handshake" => "01abababababababababababababababababababababababababababababababab",
            "handshake-noseek" => {
                "00abababababababababababababababababababababababababababababababab"
            }
            // flags 0f (canUpgrade|uploading|downloading|hasManifest) ‖ fork 0 ‖ length 3 ‖ 0
            "sync" => "0f000300",
            // flags 12 (uploading|allowPush) ‖ fork 2 ‖ fe 70110100 (70000) ‖ fd 2c01 (300)
            "sync-big" => "1202fe70110100fd2c01",
            "cancel" => "fd2c01",
            // request 7 ‖ flags 0
            "noData" => "0700",
            // request 7 ‖ flags 1 ‖ reason 2
            "noData-reason" => "070102",
            // start 2^21 ‖ length 2^21 (no flags byte when not `any`)
            "want" => "fe00002000fe00002000",
            "want-any" => "004001",
            "unwant" => "00fe00002000",
            // start 32 ‖ 2 words
            "bitfield" => "2002ffffffff05000000",
            "range" => "000003",
            // flags 2 (length 1) ‖ start 9
            "range-one" => "0209",
            "range-drop" => "0105fd2c01",
            "extension" => "036578746869",
            "extension-empty-name" => "00",
            "cap-initiator" => "c8c598812712c84947711f02163ec09cd2684bd015eb81e562ac8dd3f9887324",
            "cap-responder" => "604e409f47af3e21acc365105f75ce63581aa9409bf87f2a637bab22a15a87bf",
            _ => unreachable!(),
        }
    }

    fn check<T: CompactEncoding + std::fmt::Debug + PartialEq>(name: &str, v: T) {
        let bytes = to_vec(&v);
        assert_eq!(hex::encode(&bytes), js(name), "{name}");
        assert_eq!(from_slice::<T>(&bytes).unwrap(), v, "{name}");
    }

    #[test]
    fn encodings_match_js() {
        let capability = [0xab; 32];
        check(
            "handshake",
            Handshake {
                seeks: true,
                capability,
            },
        );
        check(
            "handshake-noseek",
            Handshake {
                seeks: false,
                capability,
            },
        );
        check(
            "sync",
            Sync {
                length: 3,
                can_upgrade: true,
                uploading: true,
                downloading: true,
                has_manifest: true,
                ..Sync::default()
            },
        );
        check(
            "sync-big",
            Sync {
                fork: 2,
                length: 70_000,
                remote_length: 300,
                uploading: true,
                allow_push: true,
                ..Sync::default()
            },
        );
        check("cancel", Cancel { request: 300 });
        check(
            "noData",
            NoData {
                request: 7,
                reason: 0,
            },
        );
        check(
            "noData-reason",
            NoData {
                request: 7,
                reason: 2,
            },
        );
        let batch = 2_097_152;
        check(
            "want",
            Want {
                start: batch,
                length: batch,
                any: false,
            },
        );
        check(
            "want-any",
            Want {
                start: 0,
                length: 64,
                any: true,
            },
        );
        check(
            "unwant",
            Want {
                start: 0,
                length: batch,
                any: false,
            },
        );
        check(
            "bitfield",
            Bitfield {
                start: 32,
                bitfield: vec![0xffff_ffff, 5],
            },
        );
        check(
            "range",
            Range {
                drop: false,
                start: 0,
                length: 3,
            },
        );
        check(
            "range-one",
            Range {
                drop: false,
                start: 9,
                length: 1,
            },
        );
        check(
            "range-drop",
            Range {
                drop: true,
                start: 5,
                length: 300,
            },
        );
        check(
            "extension",
            Extension {
                name: "ext".into(),
                message: b"hi".to_vec(),
            },
        );
        check("extension-empty-name", Extension::default());
    }

    #[test]
    fn capability_matches_js() {
        let key = Key([1; 32]);
        let hash = [2; 64];
        assert_eq!(
            hex::encode(capability(true, &key, &hash)),
            js("cap-initiator")
        );
        assert_eq!(
            hex::encode(capability(false, &key, &hash)),
            js("cap-responder")
        );
    }

    #[test]
    fn js_acceptance_quirks() {
        // Optional trailing fields are absent at the end of the payload.
        assert_eq!(
            Message::decode(4, &[7]).unwrap(),
            Message::NoData(NoData {
                request: 7,
                reason: 0
            })
        );
        assert_eq!(
            Message::decode(5, &[1, 2]).unwrap(),
            Message::Want(Want {
                start: 1,
                length: 2,
                any: false
            })
        );
        // Trailing bytes are ignored, unknown flag bits too.
        assert_eq!(
            Message::decode(8, &[0xf2, 9, 0xaa, 0xbb]).unwrap(),
            Message::Range(Range {
                drop: false,
                start: 9,
                length: 1
            })
        );
        assert!(matches!(
            Message::decode(10, &[]),
            Err(MessageError::UnknownType(10))
        ));
        assert!(matches!(
            Message::decode(0, &[1]),
            Err(MessageError::Decode { name: "sync", .. })
        ));
        // A bitfield that claims more words than bytes remain fails before allocating.
        assert!(Message::decode(7, &[0, 0xfe, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        let n = 0..(1u64 << 53);
        prop_oneof![
            (n.clone(), n.clone(), n.clone(), 0u8..32).prop_map(|(fork, length, r, f)| {
                Message::Sync(Sync {
                    fork,
                    length,
                    remote_length: r,
                    can_upgrade: f & 1 != 0,
                    uploading: f & 2 != 0,
                    downloading: f & 4 != 0,
                    has_manifest: f & 8 != 0,
                    allow_push: f & 16 != 0,
                })
            }),
            n.clone()
                .prop_map(|request| Message::Cancel(Cancel { request })),
            (n.clone(), 0u64..4)
                .prop_map(|(request, reason)| { Message::NoData(NoData { request, reason }) }),
            (n.clone(), n.clone(), any::<bool>())
                .prop_map(|(start, length, any)| Message::Want(Want { start, length, any })),
            (n.clone(), n.clone(), any::<bool>())
                .prop_map(|(start, length, any)| Message::Unwant(Want { start, length, any })),
            (n.clone(), proptest::collection::vec(any::<u32>(), 0..8))
                .prop_map(|(start, bitfield)| Message::Bitfield(Bitfield { start, bitfield })),
            (any::<bool>(), n.clone(), n).prop_map(|(drop, start, length)| Message::Range(Range {
                drop,
                start,
                length
            })),
            ("[a-z]{0,8}", proptest::collection::vec(any::<u8>(), 0..16))
                .prop_map(|(name, message)| Message::Extension(Extension { name, message })),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(m in arb_message()) {
            let bytes = m.encode();
            prop_assert_eq!(Message::decode(m.message_type(), &bytes).unwrap(), m);
        }

        #[test]
        fn decode_never_panics(t in 0u64..12, bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Message::decode(t, &bytes);
        }
    }
}
