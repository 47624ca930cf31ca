//! Entry points for fuzz targets: each takes arbitrary bytes, drives one decoder with fixed
//! keys, and ignores the outcome. None of them may panic.
//!
//! - [`frames`]: [`FrameDecoder`] with a small limit and the full one;
//! - [`handshake_read`]: [`Handshake::read_message`] at every step a remote message can arrive
//!   (XX messages 1–3, IK messages 1–2);
//! - [`secretstream_pull`]: [`Pull::pull`] on a sequence of length-prefixed ciphertexts;
//! - [`stream_input`]: a responder [`SecretStream`] fed the bytes in chunks whose sizes come
//!   from the input itself.

use std::time::Instant;

use peerhost_ids::KeyPair;

use crate::{Config, FrameDecoder, Handshake, Pattern, Pull, SecretStream};

/// Run the frame decoder over `data` (limits 64 bytes and 16 MiB - 1).
pub fn frames(data: &[u8]) {
    for max in [64, crate::MAX_FRAME_LEN] {
        let mut dec = FrameDecoder::new(max);
        let mut rest = data;
        while !rest.is_empty() {
            match dec.decode(rest) {
                Ok((n, _)) => rest = &rest[n..],
                Err(_) => break,
            }
        }
    }
}

/// Feed `data` as the remote's message at each step of XX and IK.
pub fn handshake_read(data: &[u8]) {
    let a = KeyPair::from_seed(&[1; 32]);
    let b = KeyPair::from_seed(&[2; 32]);
    let prologue = b"fuzz";
    // XX responder reading message 1; IK responder reading message 1.
    for pattern in [Pattern::XX, Pattern::IK] {
        if let Ok(mut r) = Handshake::new(pattern, false, b.clone(), prologue, None) {
            let _ = r.read_message(data);
            let _ = r.write_message(b"");
        }
    }
    // XX initiator reading message 2; IK initiator reading message 2.
    for pattern in [Pattern::XX, Pattern::IK] {
        if let Ok(mut i) = Handshake::new(pattern, true, a.clone(), prologue, Some(b.public_key()))
        {
            if i.write_message(b"").is_ok() {
                let _ = i.read_message(data);
                let _ = i.write_message(b"");
            }
        }
    }
    // XX responder reading message 3.
    let (Ok(mut i), Ok(mut r)) = (
        Handshake::new(Pattern::XX, true, a, prologue, None),
        Handshake::new(Pattern::XX, false, b, prologue, None),
    ) else {
        return;
    };
    let Ok(m1) = i.write_message(b"") else { return };
    if r.read_message(&m1).is_ok() && r.write_message(b"").is_ok() {
        let _ = r.read_message(data);
    }
}

/// Pull ciphertexts from `data`: each is a 1-byte length followed by that many bytes.
pub fn secretstream_pull(data: &[u8]) {
    let mut pull = Pull::new(&[7; 32], &[9; 24]);
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n).min(tail.len());
        let _ = pull.pull(&tail[..n]);
        rest = &tail[n..];
    }
}

/// Feed `data` to a responder secret stream; the first byte picks the chunk size.
pub fn stream_input(data: &[u8]) {
    let now = Instant::now();
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let config = Config::default().with_max_frame_len(4096);
    let mut s = SecretStream::new(false, KeyPair::from_seed(&[2; 32]), config, now);
    for c in data.chunks(chunk) {
        if s.handle_input(now, c).is_err() {
            break;
        }
        while s.poll_transmit().is_some() {}
        while s.poll_event().is_some() {}
    }
    let _ = s.handle_eof();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn entry_points_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            frames(&data);
            handshake_read(&data);
            secretstream_pull(&data);
            stream_input(&data);
        }
    }
}
