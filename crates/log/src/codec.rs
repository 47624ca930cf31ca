//! Small decoding helpers shared by the wire types of this crate.

use peerhost_encoding::{DecodeError, Reader};

/// compact-encoding's `array` refuses more items than this before reading any.
/// > if (len > 0x100000) throw new Error('Array is too big')  (compact-encoding index.js `array`)
pub(crate) const MAX_ARRAY_LEN: u64 = 0x10_0000;

/// Read `array(item)` exactly as JS accepts it: a count above 2^20 fails, and (ours, before
/// allocating) so does a count whose items could not fit in what remains.
pub(crate) fn array<'a, T>(
    r: &mut Reader<'a>,
    min_item_len: usize,
    mut item: impl FnMut(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let n = r.uint()?;
    if n > MAX_ARRAY_LEN {
        return Err(DecodeError::Invalid("array is too big"));
    }
    // n <= 2^20, so the cast and the product cannot overflow.
    let n = n as usize;
    if n * min_item_len.max(1) > r.remaining() {
        return Err(DecodeError::UnexpectedEnd);
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(item(r)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_huge_and_short_arrays() {
        // 2^20 + 1 items.
        let big = [0xfe, 0x01, 0x00, 0x10, 0x00];
        assert_eq!(
            array(&mut Reader::new(&big), 1, |r| r.uint8()),
            Err(DecodeError::Invalid("array is too big"))
        );
        assert_eq!(
            array(&mut Reader::new(&[3, 1, 2]), 1, |r| r.uint8()),
            Err(DecodeError::UnexpectedEnd)
        );
        assert_eq!(
            array(&mut Reader::new(&[2, 1, 2]), 1, |r| r.uint8()),
            Ok(vec![1, 2])
        );
    }
}
