//! The preencode and encode steps.

/// Accumulates the encoded size of values (the `preencode` step).
#[derive(Debug, Default, Clone, Copy)]
pub struct Sizer {
    len: usize,
}

impl Sizer {
    /// The size so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been sized yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Add `n` bytes.
    pub fn add(&mut self, n: usize) {
        self.len += n;
    }

    /// Size of a varint.
    pub fn uint(&mut self, n: u64) {
        self.len += crate::uint_len(n);
    }

    /// Size of a length-prefixed buffer.
    pub fn buffer(&mut self, b: &[u8]) {
        self.uint(b.len() as u64);
        self.len += b.len();
    }

    /// Size of an optional buffer (`None` is a zero length).
    pub fn optional_buffer(&mut self, b: Option<&[u8]>) {
        self.buffer(b.unwrap_or_default());
    }

    /// Size of a length-prefixed UTF-8 string.
    pub fn string(&mut self, s: &str) {
        self.buffer(s.as_bytes());
    }

    /// Size of a `uint32array`.
    pub fn uint32_array(&mut self, words: &[u32]) {
        self.uint(words.len() as u64);
        self.len += 4 * words.len();
    }
}

/// Writes encoded values into a buffer sized by a [`Sizer`] (the `encode` step).
///
/// Writing past the end of the buffer is a bug in a `preencode` implementation and panics.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes written so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Write raw bytes (no length prefix).
    pub fn raw(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }

    /// Write one byte.
    pub fn uint8(&mut self, n: u8) {
        self.raw(&[n]);
    }

    /// Write a little-endian u16.
    pub fn uint16(&mut self, n: u16) {
        self.raw(&n.to_le_bytes());
    }

    /// Write a little-endian 24-bit integer (the top byte of `n` must be zero).
    pub fn uint24(&mut self, n: u32) {
        debug_assert!(n < 1 << 24);
        self.raw(&n.to_le_bytes()[..3]);
    }

    /// Write a little-endian u32.
    pub fn uint32(&mut self, n: u32) {
        self.raw(&n.to_le_bytes());
    }

    /// Write a little-endian u64 (8 bytes, compact-encoding's `uint64`).
    pub fn uint64(&mut self, n: u64) {
        self.raw(&n.to_le_bytes());
    }

    /// Write a varint (compact-encoding's `uint`).
    pub fn uint(&mut self, n: u64) {
        if n <= 0xfc {
            self.uint8(n as u8);
        } else if n <= 0xffff {
            self.uint8(0xfd);
            self.uint16(n as u16);
        } else if n <= 0xffff_ffff {
            self.uint8(0xfe);
            self.uint32(n as u32);
        } else {
            self.uint8(0xff);
            self.uint64(n);
        }
    }

    /// Write a bool as one byte.
    pub fn bool(&mut self, b: bool) {
        self.uint8(u8::from(b));
    }

    /// Write a length-prefixed buffer.
    pub fn buffer(&mut self, b: &[u8]) {
        self.uint(b.len() as u64);
        self.raw(b);
    }

    /// Write an optional buffer (`None` as a zero length).
    pub fn optional_buffer(&mut self, b: Option<&[u8]>) {
        self.buffer(b.unwrap_or_default());
    }

    /// Write a length-prefixed UTF-8 string.
    pub fn string(&mut self, s: &str) {
        self.buffer(s.as_bytes());
    }

    /// Write a `uint32array`: a varint count, then each word little-endian.
    pub fn uint32_array(&mut self, words: &[u32]) {
        self.uint(words.len() as u64);
        for w in words {
            self.uint32(*w);
        }
    }
}
