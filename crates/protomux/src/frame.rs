//! The wire: one protomux frame per stream message, and the control messages of channel 0.
//!
//! Source: protomux 3.12.1 `index.js` (`Channel#open`, `Channel#close`, `addMessage().send`,
//! `_rejectSession`, `_pushBatch`, `_sendBatch`, `_decode`, `_oncontrolsession`, `_onbatch`).
//!
//! ```text
//! frame   = uint channel ‖ uint type ‖ payload            channel = the sender's local id
//! channel 0 (control):
//!   type 0  batch   uint channel ‖ (uint len ‖ (uint type ‖ payload))*   len 0 = `uint channel` follows
//!   type 1  open    uint localId ‖ string protocol ‖ optionalBuffer id ‖ handshake (rest)
//!   type 2  reject  uint remoteId
//!   type 3  close   uint localId
//! ```
//!
//! This module is pure codec: it knows nothing of channel tables. [`crate::Mux`] decides what a
//! decoded frame means.

use std::borrow::Cow;

use peerhost_encoding::{DecodeError, Reader, Sizer, Writer, uint_len};

/// Control message types on channel 0, in protomux's order (`_oncontrolsession`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ControlType {
    /// Several messages, possibly for several channels, in one frame.
    Batch = 0,
    /// Open a channel (or answer the remote's open of the same protocol and id).
    Open = 1,
    /// Refuse the remote's open.
    Reject = 2,
    /// Close a channel.
    Close = 3,
}

/// One frame as read off the stream, borrowed from the message it came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The sender's local id of the channel; 0 is the control channel.
    pub channel: u64,
    /// The message type: an index into the channel's message list, or a [`ControlType`].
    pub message_type: u64,
    /// Everything after the type.
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Read `uint channel ‖ uint type ‖ payload`.
    ///
    /// > `_ondata`: `if (buffer.byteLength === 0) return // ignore empty frames...`
    ///
    /// An empty message is not a frame; the caller ignores it before calling this (an empty
    /// input here is [`DecodeError::UnexpectedEnd`], as it would be in JS without that check).
    pub fn decode(msg: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(msg);
        let channel = r.uint()?;
        Self::decode_on(channel, &mut r)
    }

    /// Read `uint type ‖ payload` for a channel whose id is already known (a batch entry).
    /// As in JS `_decode`, the type is read before anything looks at the channel.
    pub fn decode_on(channel: u64, r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let message_type = r.uint()?;
        Ok(Self {
            channel,
            message_type,
            payload: r.rest(),
        })
    }

    /// Encode `uint channel ‖ uint type ‖ payload` (JS `m.send` when not corked).
    pub fn encode(&self) -> Vec<u8> {
        let mut s = Sizer::default();
        s.uint(self.channel);
        s.uint(self.message_type);
        s.add(self.payload.len());
        let mut out = vec![0; s.len()];
        let mut w = Writer::new(&mut out);
        w.uint(self.channel);
        w.uint(self.message_type);
        w.raw(self.payload);
        out
    }
}

/// A decoded control message (the payload of a channel-0 frame).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Control<'a> {
    /// Type 0: a batch. Iterate its entries with [`BatchDecoder`].
    Batch(BatchDecoder<'a>),
    /// Type 1: open.
    Open(Open<'a>),
    /// Type 2: reject; `remote_id` is the id the rejected side chose (its local id).
    Reject {
        /// The rejected open's sender-local id.
        remote_id: u64,
    },
    /// Type 3: close; `local_id` is the closing side's local id.
    Close {
        /// The closer's local id of the channel.
        local_id: u64,
    },
    /// Any other type: JS ignores it (`_oncontrolsession` has no default case).
    Unknown {
        /// The unknown type.
        message_type: u64,
    },
}

impl<'a> Control<'a> {
    /// Decode the payload of a channel-0 frame of type `message_type`, field by field as JS
    /// does: every field JS reads must be there; bytes after the last field are ignored (for
    /// `open` they are the handshake).
    pub fn decode(message_type: u64, payload: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        Ok(match message_type {
            0 => Self::Batch(BatchDecoder::new(payload)?),
            1 => Self::Open(Open::decode(&mut r)?),
            2 => Self::Reject {
                remote_id: r.uint()?,
            },
            3 => Self::Close {
                local_id: r.uint()?,
            },
            message_type => Self::Unknown { message_type },
        })
    }
}

/// The open message: `uint localId ‖ string protocol ‖ optionalBuffer id ‖ handshake`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open<'a> {
    /// The opener's local id (1-based; 0 is invalid).
    pub local_id: u64,
    /// The protocol name.
    pub protocol: Cow<'a, str>,
    /// The channel id within the protocol (`None` for JS `null`; an empty buffer is `None` too).
    pub id: Option<&'a [u8]>,
    /// The handshake: every byte after the id (JS decodes it with the channel's `handshake`
    /// encoding, which we leave to the caller).
    pub handshake: &'a [u8],
}

impl<'a> Open<'a> {
    /// Read the open fields.
    ///
    /// The protocol is decoded as JS's `c.string` does, which never fails on bad UTF-8: it
    /// substitutes U+FFFD (`b4a.toString(buffer, 'utf-8')`). We do the same with
    /// [`String::from_utf8_lossy`] so that such an open is rejected, as in JS, rather than ending
    /// the connection.
    pub fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let local_id = r.uint()?;
        let protocol = String::from_utf8_lossy(r.buffer()?);
        let id = r.optional_buffer()?;
        Ok(Self {
            local_id,
            protocol,
            id,
            handshake: r.rest(),
        })
    }

    /// The whole frame, `00 01 ‖ fields` (JS `Channel#open`).
    pub fn encode(&self) -> Vec<u8> {
        let mut s = Sizer::default();
        s.add(2);
        s.uint(self.local_id);
        s.string(&self.protocol);
        s.optional_buffer(self.id);
        s.add(self.handshake.len());
        let mut out = vec![0; s.len()];
        let mut w = Writer::new(&mut out);
        w.uint8(0);
        w.uint8(ControlType::Open as u8);
        w.uint(self.local_id);
        w.string(&self.protocol);
        w.optional_buffer(self.id);
        w.raw(self.handshake);
        out
    }
}

/// The reject frame `00 02 ‖ uint remoteId` (JS `_rejectSession`).
pub fn encode_reject(remote_id: u64) -> Vec<u8> {
    control_id(ControlType::Reject, remote_id)
}

/// The close frame `00 03 ‖ uint localId` (JS `Channel#close`).
pub fn encode_close(local_id: u64) -> Vec<u8> {
    control_id(ControlType::Close, local_id)
}

fn control_id(ty: ControlType, id: u64) -> Vec<u8> {
    let mut out = vec![0; 2 + uint_len(id)];
    let mut w = Writer::new(&mut out);
    w.uint8(0);
    w.uint8(ty as u8);
    w.uint(id);
    out
}

/// Reads the entries of a batch: `uint channel ‖ (uint len ‖ entry)*`, where a `len` of 0
/// switches channel (`uint channel` follows).
///
/// Exactly JS `_onbatch`:
/// - the first channel must be present;
/// - a `len` past the end of the frame is cut to the end, not an error
///   (`state.end = Math.min(state.start + len, end)`);
/// - a missing `len` or switch channel is an error.
///
/// Each item is `(channel, entry)`; decode the entry with [`Frame::decode_on`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchDecoder<'a> {
    channel: u64,
    reader: ReaderEq<'a>,
}

impl<'a> BatchDecoder<'a> {
    /// Start reading the batch payload (after `00 00`); reads the first channel id.
    pub fn new(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        let channel = r.uint()?;
        Ok(Self {
            channel,
            reader: ReaderEq(r),
        })
    }

    /// Whether bytes remain after the entries read so far. JS corks the reply when an entry
    /// does not reach the end of the batch (`end !== state.end`).
    pub fn has_more(&self) -> bool {
        !self.reader.0.is_empty()
    }

    /// The next entry, or `None` at the end.
    pub fn next_entry(&mut self) -> Result<Option<(u64, &'a [u8])>, DecodeError> {
        let r = &mut self.reader.0;
        while !r.is_empty() {
            let len = r.uint()?;
            if len == 0 {
                self.channel = r.uint()?;
                continue;
            }
            let take = usize::try_from(len)
                .unwrap_or(usize::MAX)
                .min(r.remaining());
            return Ok(Some((self.channel, r.raw(take)?)));
        }
        Ok(None)
    }
}

/// `Reader` has no `PartialEq`; compare by remaining bytes so `Control` can derive it.
#[derive(Debug, Clone)]
struct ReaderEq<'a>(Reader<'a>);

impl PartialEq for ReaderEq<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.clone().rest() == other.0.clone().rest()
    }
}

impl Eq for ReaderEq<'_> {}

/// Builds batch frames the way JS `_pushBatch` / `_sendBatch` do, including the split at
/// [`crate::MAX_BATCH`] bytes.
#[derive(Debug, Clone)]
pub struct BatchEncoder {
    max_batch: usize,
    entries: Vec<(u64, Vec<u8>)>,
    /// JS `_batchState.end`: the size of the frame so far.
    size: usize,
}

impl BatchEncoder {
    /// An empty batch that flushes once it reaches `max_batch` bytes.
    pub fn new(max_batch: usize) -> Self {
        Self {
            max_batch,
            entries: Vec::new(),
            // > this._batchState = { buffer: null, start: 0, end: 1 }
            size: 1,
        }
    }

    /// Add `entry` (`uint type ‖ payload`) for `channel` (our local id; 0 for control, whose
    /// entry is the control frame without its leading `00`, JS `_write0`).
    ///
    /// > `if (this._batchState.end >= MAX_BATCH) { this._sendBatch(...) ... }`
    ///
    /// As in JS the size check happens before the entry is added, so one batch frame can exceed
    /// the limit by its last entry. Returns the frame that was flushed to make room, if any.
    pub fn push(&mut self, channel: u64, entry: Vec<u8>) -> Option<Vec<u8>> {
        let flushed = if self.size >= self.max_batch {
            let full = std::mem::replace(self, Self::new(self.max_batch));
            full.finish()
        } else {
            None
        };
        if self.entries.last().is_none_or(|(c, _)| *c != channel) {
            self.size += 1 + uint_len(channel);
        }
        self.size += uint_len(entry.len() as u64) + entry.len();
        self.entries.push((channel, entry));
        flushed
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The size of the frame [`finish`](Self::finish) would return.
    pub fn len(&self) -> usize {
        if self.is_empty() { 0 } else { self.size }
    }

    /// The batch frame, or `None` if nothing was pushed (JS sends nothing then).
    pub fn finish(self) -> Option<Vec<u8>> {
        let (first, _) = self.entries.first()?;
        let mut out = vec![0; self.size];
        let mut w = Writer::new(&mut out);
        w.uint8(0);
        w.uint8(ControlType::Batch as u8);
        let mut prev = *first;
        w.uint(prev);
        for (channel, entry) in &self.entries {
            if *channel != prev {
                prev = *channel;
                w.uint8(0);
                w.uint(prev);
            }
            w.buffer(entry);
        }
        debug_assert_eq!(w.position(), out.len(), "batch size accounting");
        Some(out)
    }
}

/// The batch entry for a message: `uint type ‖ payload`.
pub fn encode_entry(message_type: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0; uint_len(message_type) + payload.len()];
    let mut w = Writer::new(&mut out);
    w.uint(message_type);
    w.raw(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(b: &[u8]) -> String {
        hex::encode(b)
    }

    // The expected bytes below were produced by protomux 3.12.1 itself (a Protomux over a
    // stream that records `write`s; `interop-tests/protomux/frames.js`).

    #[test]
    fn open_frame() {
        let id = [0xaa; 32];
        let frame = Open {
            local_id: 1,
            protocol: "hypercore/alpha".into(),
            id: Some(&id),
            handshake: &[0x01, 0x02],
        }
        .encode();
        assert_eq!(
            h(&frame),
            concat!(
                "00", // channel 0 (control)
                "01", // type 1: open
                "01", // localId 1
                "0f",
                "6879706572636f72652f616c706861", // string "hypercore/alpha"
                "20",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", // id
                "0102", // handshake (rest)
            )
        );
        let f = Frame::decode(&frame).unwrap();
        assert_eq!((f.channel, f.message_type), (0, 1));
        let Control::Open(o) = Control::decode(1, f.payload).unwrap() else {
            panic!("not an open")
        };
        assert_eq!(o.local_id, 1);
        assert_eq!(o.protocol, "hypercore/alpha");
        assert_eq!(o.id, Some(&id[..]));
        assert_eq!(o.handshake, &[1, 2]);
    }

    #[test]
    fn open_frame_without_id_and_big_local_id() {
        let frame = Open {
            local_id: 300,
            protocol: "a".into(),
            id: None,
            handshake: &[],
        }
        .encode();
        // 00 01 | fd 2c 01 (300) | 01 61 ("a") | 00 (null id) | no handshake
        assert_eq!(h(&frame), "0001fd2c01016100");
        // An empty id encodes like null, as in JS (`optionalBuffer` writes length 0).
        let empty = Open {
            local_id: 300,
            protocol: "a".into(),
            id: Some(&[]),
            handshake: &[],
        }
        .encode();
        assert_eq!(empty, frame);
    }

    #[test]
    fn reject_and_close_frames() {
        assert_eq!(h(&encode_reject(1)), "000201"); // 00 | 02 reject | remoteId 1
        assert_eq!(h(&encode_close(1)), "000301"); // 00 | 03 close | localId 1
        assert_eq!(h(&encode_close(253)), "0003fdfd00");
        assert_eq!(
            Control::decode(2, &[0x05]).unwrap(),
            Control::Reject { remote_id: 5 }
        );
        assert_eq!(
            Control::decode(3, &[0x05, 0xff]).unwrap(),
            Control::Close { local_id: 5 }
        );
        assert_eq!(
            Control::decode(9, &[]).unwrap(),
            Control::Unknown { message_type: 9 }
        );
        assert_eq!(Control::decode(2, &[]), Err(DecodeError::UnexpectedEnd));
        assert_eq!(Control::decode(3, &[0xfd]), Err(DecodeError::UnexpectedEnd));
    }

    #[test]
    fn message_frame() {
        let f = Frame {
            channel: 1,
            message_type: 2,
            payload: b"hi",
        };
        assert_eq!(h(&f.encode()), "01026869"); // channel 1 | type 2 | "hi"
        assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
    }

    /// JS: `mux.cork(); a.open(); m0.send('x'); b.open(); m1.send('yz') on b; m0.send on a;
    /// mux.uncork()` with a = local 1, b = local 2 (raw handshakes, raw messages).
    #[test]
    fn batch_frame() {
        let mut b = BatchEncoder::new(crate::MAX_BATCH);
        let open_a = Open {
            local_id: 1,
            protocol: "p".into(),
            id: None,
            handshake: &[],
        }
        .encode();
        let open_b = Open {
            local_id: 2,
            protocol: "p".into(),
            id: Some(b"b"),
            handshake: &[],
        }
        .encode();
        assert!(b.push(0, open_a[1..].to_vec()).is_none());
        assert!(b.push(1, encode_entry(0, b"x")).is_none());
        assert!(b.push(0, open_b[1..].to_vec()).is_none());
        assert!(b.push(2, encode_entry(1, b"yz")).is_none());
        assert!(b.push(1, encode_entry(0, b"")).is_none());
        let len = b.len();
        let frame = b.finish().unwrap();
        assert_eq!(frame.len(), len);
        assert_eq!(
            h(&frame),
            concat!(
                "0000", // channel 0, type 0: batch
                "00",   // first entries are for channel 0 (control)
                "05",
                "0101017000", // len 5: open, localId 1, "p", null id
                "0001",       // switch to channel 1
                "02",
                "0078", // len 2: type 0 "x"
                "0000", // switch to channel 0
                "06",
                "010201700162", // len 6: open, localId 2, "p", id "b"
                "0002",         // switch to channel 2
                "03",
                "01797a", // len 3: type 1 "yz"
                "0001",   // switch to channel 1
                "01",
                "00", // len 1: type 0, empty payload
            )
        );

        let mut d = BatchDecoder::new(&frame[2..]).unwrap();
        let mut got = Vec::new();
        while let Some((c, e)) = d.next_entry().unwrap() {
            got.push((c, e.to_vec()));
        }
        assert_eq!(
            got,
            vec![
                (0, open_a[1..].to_vec()),
                (1, vec![0, b'x']),
                (0, open_b[1..].to_vec()),
                (2, vec![1, b'y', b'z']),
                (1, vec![0]),
            ]
        );
    }

    #[test]
    fn batch_decoder_edges() {
        // No first channel: error, as JS `c.uint.decode` throws.
        assert_eq!(BatchDecoder::new(&[]), Err(DecodeError::UnexpectedEnd));
        // A channel and nothing else: no entries.
        let mut d = BatchDecoder::new(&[5]).unwrap();
        assert_eq!(d.next_entry(), Ok(None));
        // A length past the end is cut to the end.
        let mut d = BatchDecoder::new(&[1, 9, 0, 0xaa]).unwrap();
        assert_eq!(d.next_entry(), Ok(Some((1, &[0, 0xaa][..]))));
        assert!(!d.has_more());
        assert_eq!(d.next_entry(), Ok(None));
        // A switch with no channel after it: error.
        let mut d = BatchDecoder::new(&[1, 0]).unwrap();
        assert_eq!(d.next_entry(), Err(DecodeError::UnexpectedEnd));
        // A switch at the very end is fine and yields nothing.
        let mut d = BatchDecoder::new(&[1, 0, 7]).unwrap();
        assert_eq!(d.next_entry(), Ok(None));
        // A huge length (2^53 - 1) is cut too.
        let mut bytes = vec![1, 0xff];
        bytes.extend_from_slice(&peerhost_encoding::MAX_SAFE_UINT.to_le_bytes());
        bytes.push(4);
        let mut d = BatchDecoder::new(&bytes).unwrap();
        assert_eq!(d.next_entry(), Ok(Some((1, &[4][..]))));
    }

    #[test]
    fn batch_splits_at_max_batch_like_js() {
        // With a 10-byte limit: the frame grows past it by its last entry, then flushes.
        let mut b = BatchEncoder::new(10);
        assert!(b.push(1, vec![0; 4]).is_none()); // size 1 + 2 + 5 = 8
        assert!(b.push(1, vec![0; 4]).is_none()); // 8 < 10: added, size 13
        let flushed = b.push(1, vec![7]).expect("flush at >= 10");
        // 00 00 | channel 1 | len 4 ‖ 00000000 | len 4 ‖ 00000000
        assert_eq!(h(&flushed), "00000104000000000400000000");
        assert_eq!(b.finish().map(|f| h(&f)), Some("0000010107".to_owned()));
    }

    fn entry_strategy() -> impl Strategy<Value = (u64, Vec<u8>)> {
        (
            prop_oneof![Just(0u64), 1u64..5, 250u64..70_000],
            proptest::collection::vec(any::<u8>(), 1..300),
        )
    }

    proptest! {
        #[test]
        fn batch_round_trips(entries in proptest::collection::vec(entry_strategy(), 1..40)) {
            let mut b = BatchEncoder::new(crate::MAX_BATCH);
            for (c, e) in &entries {
                prop_assert!(b.push(*c, e.clone()).is_none());
            }
            let len = b.len();
            let frame = b.finish().unwrap();
            prop_assert_eq!(frame.len(), len);
            let f = Frame::decode(&frame).unwrap();
            prop_assert_eq!((f.channel, f.message_type), (0, 0));
            let Control::Batch(mut d) = Control::decode(0, f.payload).unwrap() else {
                panic!("not a batch")
            };
            let mut got = Vec::new();
            while let Some((c, e)) = d.next_entry().unwrap() {
                got.push((c, e.to_vec()));
            }
            prop_assert_eq!(got, entries);
        }

        #[test]
        fn open_round_trips(
            local_id in 1u64..=peerhost_encoding::MAX_SAFE_UINT,
            protocol in ".{0,40}",
            id in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..40)),
            handshake in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let open = Open { local_id, protocol: protocol.as_str().into(), id: id.as_deref(), handshake: &handshake };
            let frame = open.encode();
            let f = Frame::decode(&frame).unwrap();
            prop_assert_eq!(Control::decode(f.message_type, f.payload).unwrap(), Control::Open(open));
        }

        #[test]
        fn message_round_trips(
            channel in 0u64..=peerhost_encoding::MAX_SAFE_UINT,
            message_type in 0u64..=peerhost_encoding::MAX_SAFE_UINT,
            payload in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let f = Frame { channel, message_type, payload: &payload };
            let bytes = f.encode();
            prop_assert_eq!(Frame::decode(&bytes).unwrap(), f);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(f) = Frame::decode(&bytes) {
                if let Ok(Control::Batch(mut d)) = Control::decode(f.message_type, f.payload) {
                    while let Ok(Some(_)) = d.next_entry() {}
                }
            }
        }
    }
}
