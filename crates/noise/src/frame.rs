//! The `uint24le(len) ‖ body` framing every secret-stream message uses, handshake messages
//! included (secret-stream `index.js` `_onrawdata`, `lib/handshake.js` `send`).

/// The largest body a 24-bit length can announce: 16 MiB - 1.
pub const MAX_FRAME_LEN: usize = (1 << 24) - 1;

/// Bytes a [`FrameDecoder`] reserves for a frame before they arrive (a 64 KiB block and its
/// message overhead fit).
pub(crate) const UPFRONT: usize = 128 * 1024;

/// Append `uint24le(body.len()) ‖ body` to `out`; a body above [`MAX_FRAME_LEN`] cannot be
/// framed.
pub fn encode_frame(body: &[u8], out: &mut Vec<u8>) -> Result<(), Oversized> {
    if body.len() > MAX_FRAME_LEN {
        return Err(Oversized {
            len: body.len(),
            max: MAX_FRAME_LEN,
        });
    }
    out.reserve(3 + body.len());
    out.extend_from_slice(&len_prefix(body.len()));
    out.extend_from_slice(body);
    Ok(())
}

/// The 3-byte little-endian length prefix.
pub(crate) fn len_prefix(len: usize) -> [u8; 3] {
    let b = (len as u32).to_le_bytes();
    [b[0], b[1], b[2]]
}

/// A frame length above the limit in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized {
    /// The announced length.
    pub len: usize,
    /// The limit in force.
    pub max: usize,
}

/// An incremental frame decoder that holds at most one frame.
///
/// Bytes may arrive in any chunking. A frame announcing more than the limit is refused as soon
/// as its 3-byte prefix is complete, before any of its body is buffered, and the buffer grows
/// with the bytes that actually arrive (never past the announced length): up to 128 KiB are
/// reserved at once (a frame of that size arriving in two reads is not copied twice), beyond
/// that the buffer doubles as bytes come, so a peer announcing 16 MiB and sending three bytes
/// costs at most 128 KiB.
#[derive(Debug)]
pub struct FrameDecoder {
    max_len: usize,
    prefix: [u8; 3],
    prefix_len: usize,
    /// The body length once the prefix is complete.
    body_len: Option<usize>,
    body: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder refusing frames longer than `max_len` (clamped to [`MAX_FRAME_LEN`]).
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len: max_len.min(MAX_FRAME_LEN),
            prefix: [0; 3],
            prefix_len: 0,
            body_len: None,
            body: Vec::new(),
        }
    }

    /// Change the limit for frames whose prefix has not been read yet.
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len.min(MAX_FRAME_LEN);
    }

    /// The limit in force.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Whether the decoder sits between frames (no partial prefix or body buffered).
    pub fn is_idle(&self) -> bool {
        self.prefix_len == 0 && self.body_len.is_none()
    }

    /// Bytes currently buffered.
    pub fn buffered(&self) -> usize {
        self.prefix_len + self.body.len()
    }

    /// Consume bytes from the front of `input` until one frame completes or `input` runs out.
    ///
    /// Returns how many bytes were consumed and the completed frame, if any. Call again with
    /// the rest of the input. After an error the decoder must not be used again. This is a
    /// fuzz entry point: it accepts any bytes and never panics.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Vec<u8>>), Oversized> {
        let mut used = 0;
        let len = match self.body_len {
            Some(len) => len,
            None => {
                while self.prefix_len < 3 && used < input.len() {
                    self.prefix[self.prefix_len] = input[used];
                    self.prefix_len += 1;
                    used += 1;
                }
                if self.prefix_len < 3 {
                    return Ok((used, None));
                }
                let len = usize::from(self.prefix[0])
                    | usize::from(self.prefix[1]) << 8
                    | usize::from(self.prefix[2]) << 16;
                if len > self.max_len {
                    return Err(Oversized {
                        len,
                        max: self.max_len,
                    });
                }
                self.body_len = Some(len);
                len
            }
        };
        let rest = &input[used..];
        let missing = len - self.body.len();
        let take = missing.min(rest.len());
        if self.body.is_empty() && take == len {
            // The whole frame is in this chunk: one exact allocation.
            used += take;
            self.reset();
            return Ok((used, Some(rest[..take].to_vec())));
        }
        let needed = self.body.len() + take;
        if self.body.capacity() < needed {
            // Grow geometrically for many small chunks, but never past the announced length.
            let target = needed.max(self.body.capacity() * 2).max(UPFRONT).min(len);
            self.body.reserve_exact(target - self.body.len());
        }
        self.body.extend_from_slice(&rest[..take]);
        used += take;
        if self.body.len() == len {
            let body = std::mem::take(&mut self.body);
            self.reset();
            return Ok((used, Some(body)));
        }
        Ok((used, None))
    }

    fn reset(&mut self) {
        self.prefix_len = 0;
        self.body_len = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(dec: &mut FrameDecoder, mut input: &[u8]) -> Result<Vec<Vec<u8>>, Oversized> {
        let mut out = vec![];
        while !input.is_empty() {
            let (n, frame) = dec.decode(input)?;
            input = &input[n..];
            out.extend(frame);
        }
        Ok(out)
    }

    #[test]
    fn hex_layout() {
        let mut out = vec![];
        encode_frame(&[0xaa; 0x20], &mut out).unwrap();
        // uint24le(32) then the body
        assert_eq!(hex::encode(&out[..4]), "200000aa");
        let mut out = vec![];
        encode_frame(&[], &mut out).unwrap();
        assert_eq!(out, [0, 0, 0]);
        assert_eq!(len_prefix(MAX_FRAME_LEN), [0xff, 0xff, 0xff]);
        assert_eq!(len_prefix(0x01_02_03), [0x03, 0x02, 0x01]);
        assert!(encode_frame(&vec![0; MAX_FRAME_LEN + 1], &mut out).is_err());
    }

    #[test]
    fn refuses_oversized_before_buffering() {
        let mut dec = FrameDecoder::new(100);
        assert_eq!(
            dec.decode(&[101, 0, 0, 1, 2, 3]),
            Err(Oversized { len: 101, max: 100 })
        );
        let dec = FrameDecoder::new(usize::MAX);
        assert_eq!(dec.max_len(), MAX_FRAME_LEN);
    }

    #[test]
    fn a_16_mib_announcement_buffers_only_what_arrives() {
        let mut dec = FrameDecoder::new(MAX_FRAME_LEN);
        let (n, f) = dec.decode(&[0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
        assert_eq!((n, f), (6, None));
        assert!(dec.body.capacity() <= UPFRONT);
        assert_eq!(dec.buffered(), 6);
    }

    #[test]
    fn empty_frames() {
        let mut dec = FrameDecoder::new(10);
        assert_eq!(
            decode_all(&mut dec, &[0, 0, 0, 0, 0, 0]).unwrap(),
            vec![vec![], vec![]]
        );
        assert!(dec.is_idle());
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_frames(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            cuts in proptest::collection::vec(0usize..2000, 0..10),
        ) {
            let mut wire = vec![];
            for b in &bodies {
                encode_frame(b, &mut wire).unwrap();
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(wire.len())).collect();
            cuts.push(0);
            cuts.push(wire.len());
            cuts.sort_unstable();
            let mut dec = FrameDecoder::new(300);
            let mut got = vec![];
            for w in cuts.windows(2) {
                got.extend(decode_all(&mut dec, &wire[w[0]..w[1]]).unwrap());
            }
            prop_assert_eq!(got, bodies);
            prop_assert!(dec.is_idle());
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2000), max in 0usize..500) {
            let mut dec = FrameDecoder::new(max);
            if let Ok(frames) = decode_all(&mut dec, &data) {
                for f in frames {
                    prop_assert!(f.len() <= max);
                }
            }
        }
    }
}
