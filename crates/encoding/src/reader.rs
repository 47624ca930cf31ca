//! The decode step.

use crate::{DecodeError, MAX_ARRAY_LEN, MAX_SAFE_UINT};

/// Reads encoded values from a byte slice. Never panics, never allocates.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether the input is fully consumed.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Take `n` raw bytes.
    pub fn raw(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::UnexpectedEnd);
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Take everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    /// Take exactly `N` bytes as an array (compact-encoding's `fixed(N)`).
    pub fn fixed<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.raw(N)?);
        Ok(out)
    }

    /// Read one byte.
    pub fn uint8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.raw(1)?[0])
    }

    /// Read a little-endian u16.
    pub fn uint16(&mut self) -> Result<u16, DecodeError> {
        self.fixed().map(u16::from_le_bytes)
    }

    /// Read a little-endian 24-bit integer.
    pub fn uint24(&mut self) -> Result<u32, DecodeError> {
        let b: [u8; 3] = self.fixed()?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }

    /// Read a little-endian u32.
    pub fn uint32(&mut self) -> Result<u32, DecodeError> {
        self.fixed().map(u32::from_le_bytes)
    }

    /// Read a little-endian u64 (8 bytes). Values above 2^53 - 1 are rejected, as in JS.
    pub fn uint64(&mut self) -> Result<u64, DecodeError> {
        let n = self.fixed().map(u64::from_le_bytes)?;
        if n > MAX_SAFE_UINT {
            return Err(DecodeError::OutOfRange);
        }
        Ok(n)
    }

    /// Read a varint (compact-encoding's `uint`). Non-minimal prefixes are accepted, as in JS.
    pub fn uint(&mut self) -> Result<u64, DecodeError> {
        match self.uint8()? {
            0xfd => self.uint16().map(u64::from),
            0xfe => self.uint32().map(u64::from),
            0xff => self.uint64(),
            n => Ok(u64::from(n)),
        }
    }

    /// Read a varint that must fit in `usize` and in what remains of the input when
    /// multiplied by `min_item_len` (used for lengths and counts before allocating).
    pub fn len_prefix(&mut self, min_item_len: usize) -> Result<usize, DecodeError> {
        let n = self.uint()?;
        let n = usize::try_from(n).map_err(|_| DecodeError::UnexpectedEnd)?;
        if n.saturating_mul(min_item_len) > self.remaining() {
            return Err(DecodeError::UnexpectedEnd);
        }
        Ok(n)
    }

    /// Read a bool. As in JS, only the byte 1 is true; every other byte is false.
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.uint8()? == 1)
    }

    /// Read a length-prefixed buffer, borrowed from the input.
    pub fn buffer(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len_prefix(1)?;
        self.raw(n)
    }

    /// Read an optional buffer: a zero length is `None`, as in JS `optionalBuffer`.
    pub fn optional_buffer(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        let b = self.buffer()?;
        Ok(if b.is_empty() { None } else { Some(b) })
    }

    /// Read a length-prefixed UTF-8 string.
    pub fn string(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.buffer()?).map_err(|_| DecodeError::InvalidUtf8)
    }

    /// Read a `uint32array`.
    pub fn uint32_array(&mut self) -> Result<Vec<u32>, DecodeError> {
        let n = self.len_prefix(4)?;
        (0..n).map(|_| self.uint32()).collect()
    }

    /// Read an array of `T` (compact-encoding's `array(enc)`). `min_item_len` is the smallest
    /// encoding of one item; it bounds the count before anything is allocated.
    pub fn array<T>(
        &mut self,
        min_item_len: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let n = self.len_prefix(min_item_len.max(1))?;
        // > if (len > 0x100000) throw new Error('Array is too big')   (compact-encoding `array`)
        if n > MAX_ARRAY_LEN {
            return Err(DecodeError::Invalid("array is too big"));
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(item(self)?);
        }
        Ok(out)
    }
}
