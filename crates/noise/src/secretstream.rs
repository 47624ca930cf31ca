//! libsodium's `crypto_secretstream_xchacha20poly1305`, as sodium-secretstream (`Push`,
//! `Pull`) drives it inside @hyperswarm/secret-stream.
//!
//! The construction, from libsodium's `crypto_secretstream/xchacha20poly1305/secretstream_
//! xchacha20poly1305.c`:
//! - state = `k(32) ‖ counter(4, LE, starts at 1) ‖ inonce(8)`; `init` derives
//!   `k = HChaCha20(key, header[0..16])` and `inonce = header[16..24]`;
//! - each message uses the ChaCha20-IETF nonce `counter ‖ inonce`: block 0 keys Poly1305, block
//!   1 encrypts a 64-byte block whose first byte is the tag (only that byte is sent), blocks 2…
//!   encrypt the message;
//! - the MAC covers `ad ‖ pad(ad) ‖ block(64) ‖ c ‖ zeros(mlen mod 16) ‖ le64(adlen) ‖
//!   le64(64 + mlen)` — note libsodium pads with `(0x10 - 64 + mlen) & 0xf` = `mlen mod 16`
//!   zero bytes, not to a 16-byte boundary; we copy that exactly;
//! - afterwards `inonce ^= mac[0..8]`, `counter += 1`, and on `TAG_REKEY` (or `TAG_FINAL`,
//!   which includes its bit) or a counter that wrapped to 0 the state rekeys.
//!
//! secret-stream never passes associated data, so `ad` is always empty here.

use chacha20::ChaCha20;
use chacha20::cipher::consts::U10;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::hchacha;
use poly1305::Poly1305;
use poly1305::universal_hash::{KeyInit, UniversalHash};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::DecryptError;

/// The header's length: 16 bytes of HChaCha20 input and an 8-byte nonce.
pub const HEADERBYTES: usize = 24;
/// The key length.
pub const KEYBYTES: usize = 32;
/// Bytes a message grows by: one encrypted tag byte and a 16-byte MAC.
pub const ABYTES: usize = 17;
/// An ordinary message (the only tag secret-stream sends).
pub const TAG_MESSAGE: u8 = 0;
/// End of a set of messages.
pub const TAG_PUSH: u8 = 1;
/// Rekey after this message.
pub const TAG_REKEY: u8 = 2;
/// End of the stream (`TAG_PUSH | TAG_REKEY`).
pub const TAG_FINAL: u8 = 3;

const MACBYTES: usize = 16;

/// The per-direction state.
struct State {
    k: [u8; 32],
    counter: u32,
    inonce: [u8; 8],
}

impl Drop for State {
    fn drop(&mut self) {
        self.k.zeroize();
        self.inonce.zeroize();
        self.counter = 0;
    }
}

impl State {
    fn init(key: &[u8; KEYBYTES], header: &[u8; HEADERBYTES]) -> Self {
        let mut input = [0u8; 16];
        input.copy_from_slice(&header[..16]);
        let sub = hchacha::<U10>(key.into(), &input.into());
        let mut k = [0u8; 32];
        k.copy_from_slice(&sub);
        let mut inonce = [0u8; 8];
        inonce.copy_from_slice(&header[16..]);
        Self {
            k,
            counter: 1,
            inonce,
        }
    }

    /// ChaCha20-IETF positioned at block 0 for the current `counter ‖ inonce` nonce.
    fn cipher(&self) -> ChaCha20 {
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&self.counter.to_le_bytes());
        nonce[4..].copy_from_slice(&self.inonce);
        ChaCha20::new((&self.k).into(), (&nonce).into())
    }

    /// Poly1305 keyed from block 0, and the keystream positioned at block 1.
    fn start(&self) -> (Mac, ChaCha20) {
        let mut cipher = self.cipher();
        let mut block0 = Zeroizing::new([0u8; 64]);
        cipher.apply_keystream(&mut block0[..]);
        let mac = Mac::new(&block0[..32]);
        (mac, cipher)
    }

    /// The post-message state update.
    fn advance(&mut self, mac: &[u8; MACBYTES], tag: u8) {
        for (n, m) in self.inonce.iter_mut().zip(mac) {
            *n ^= m;
        }
        self.counter = self.counter.wrapping_add(1);
        if tag & TAG_REKEY != 0 || self.counter == 0 {
            self.rekey();
        }
    }

    /// `crypto_secretstream_xchacha20poly1305_rekey`: encrypt `k ‖ inonce` in place with the
    /// current nonce (block 0), take the result as the new key and inonce, reset the counter.
    fn rekey(&mut self) {
        let mut buf = Zeroizing::new([0u8; 40]);
        buf[..32].copy_from_slice(&self.k);
        buf[32..].copy_from_slice(&self.inonce);
        self.cipher().apply_keystream(&mut buf[..]);
        self.k.copy_from_slice(&buf[..32]);
        self.inonce.copy_from_slice(&buf[32..]);
        self.counter = 1;
    }
}

/// A streaming Poly1305 over arbitrary-length pieces.
struct Mac {
    poly: Poly1305,
    buf: [u8; 16],
    len: usize,
}

impl Mac {
    fn new(key: &[u8]) -> Self {
        Self {
            poly: Poly1305::new(key.into()),
            buf: [0; 16],
            len: 0,
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        if self.len > 0 {
            let n = (16 - self.len).min(data.len());
            self.buf[self.len..self.len + n].copy_from_slice(&data[..n]);
            self.len += n;
            data = &data[n..];
            if self.len < 16 {
                return;
            }
            self.poly.update(&[self.buf.into()]);
            self.len = 0;
        }
        let full = data.len() / 16 * 16;
        // A whole number of blocks: `update_padded` adds no padding to these.
        self.poly.update_padded(&data[..full]);
        let rest = &data[full..];
        self.buf[..rest.len()].copy_from_slice(rest);
        self.len = rest.len();
    }

    fn finalize(self) -> [u8; MACBYTES] {
        let tag = self.poly.compute_unpadded(&self.buf[..self.len]);
        let mut out = [0u8; MACBYTES];
        out.copy_from_slice(&tag);
        out
    }
}

/// The MAC over one message; `block` is the 64-byte tag block as sent (encrypted).
fn mac_message(mut mac: Mac, block: &[u8; 64], c: &[u8]) -> [u8; MACBYTES] {
    // ad is empty, and so is its padding.
    mac.update(block);
    mac.update(c);
    // > crypto_onetimeauth_poly1305_update(&poly1305_state, _pad0,
    // >     (0x10 - (sizeof block) + mlen) & 0xf);
    let pad = (0x10usize.wrapping_sub(64).wrapping_add(c.len())) & 0xf;
    mac.update(&[0u8; 16][..pad]);
    mac.update(&0u64.to_le_bytes());
    mac.update(&(64 + c.len() as u64).to_le_bytes());
    mac.finalize()
}

/// The sending half (`crypto_secretstream_xchacha20poly1305_init_push` / `_push`).
pub struct Push {
    state: State,
    header: [u8; HEADERBYTES],
}

impl std::fmt::Debug for Push {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Push").finish_non_exhaustive()
    }
}

impl Push {
    /// Start a stream with a fresh random header.
    pub fn new(key: &[u8; KEYBYTES]) -> Self {
        let mut header = [0u8; HEADERBYTES];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut header);
        Self::with_header(key, header)
    }

    /// Start a stream with the given header. libsodium always draws it at random; a fixed
    /// header is for test vectors, and must never repeat under one key.
    pub fn with_header(key: &[u8; KEYBYTES], header: [u8; HEADERBYTES]) -> Self {
        Self {
            state: State::init(key, &header),
            header,
        }
    }

    /// The header the receiver needs to start its [`Pull`].
    pub fn header(&self) -> &[u8; HEADERBYTES] {
        &self.header
    }

    /// Encrypt `message` with `tag`, appending `message.len() + ABYTES` bytes to `out`.
    pub fn push_to(&mut self, message: &[u8], tag: u8, out: &mut Vec<u8>) {
        let (mac, mut cipher) = self.state.start();
        let mut block = [0u8; 64];
        block[0] = tag;
        cipher.apply_keystream(&mut block);
        out.reserve(message.len() + ABYTES);
        out.push(block[0]);
        let start = out.len();
        out.extend_from_slice(message);
        cipher.apply_keystream(&mut out[start..]);
        let tag_mac = mac_message(mac, &block, &out[start..]);
        out.extend_from_slice(&tag_mac);
        block.zeroize();
        self.state.advance(&tag_mac, tag);
    }

    /// Encrypt `message` with `tag` into a new buffer.
    pub fn push(&mut self, message: &[u8], tag: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(message.len() + ABYTES);
        self.push_to(message, tag, &mut out);
        out
    }

    /// Overwrite the 32-bit message counter, e.g. to `u32::MAX` to exercise the wrap-around
    /// rekey in tests. A counter that repeats under one key breaks the cipher.
    pub fn danger_set_counter(&mut self, counter: u32) {
        self.state.counter = counter;
    }
}

/// The receiving half (`crypto_secretstream_xchacha20poly1305_init_pull` / `_pull`).
pub struct Pull {
    state: State,
}

impl std::fmt::Debug for Pull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pull").finish_non_exhaustive()
    }
}

impl Pull {
    /// Start receiving the stream whose sender wrote `header`.
    pub fn new(key: &[u8; KEYBYTES], header: &[u8; HEADERBYTES]) -> Self {
        Self {
            state: State::init(key, header),
        }
    }

    /// Authenticate and decrypt one message; returns the plaintext and its tag.
    ///
    /// Any tag byte is accepted, as libsodium does (the caller decides what a tag means;
    /// secret-stream ignores it). A failure leaves the state unchanged. This is a fuzz entry
    /// point: it accepts any bytes and never panics.
    pub fn pull(&mut self, ciphertext: &[u8]) -> Result<(Vec<u8>, u8), DecryptError> {
        let (cipher, expected, tag) = self.authenticate(ciphertext)?;
        let mlen = ciphertext.len() - ABYTES;
        let mut plain = ciphertext[1..1 + mlen].to_vec();
        self.finish(cipher, &expected, tag, &mut plain);
        Ok((plain, tag))
    }

    /// [`Pull::pull`] reusing the ciphertext's buffer for the plaintext (no allocation): on
    /// success `message` holds the plaintext; on failure it is unchanged, and so is the state.
    pub fn pull_in_place(&mut self, message: &mut Vec<u8>) -> Result<u8, DecryptError> {
        let (cipher, expected, tag) = self.authenticate(message)?;
        let mlen = message.len() - ABYTES;
        message.truncate(1 + mlen);
        message.remove(0);
        self.finish(cipher, &expected, tag, message);
        Ok(tag)
    }

    /// Check the MAC of `ciphertext`: the keystream positioned at the message, the MAC, the
    /// tag. The state is not advanced yet.
    fn authenticate(
        &self,
        ciphertext: &[u8],
    ) -> Result<(ChaCha20, [u8; MACBYTES], u8), DecryptError> {
        if ciphertext.len() < ABYTES {
            return Err(DecryptError::TooShort);
        }
        let mlen = ciphertext.len() - ABYTES;
        let (mac, mut cipher) = self.state.start();
        let mut block = [0u8; 64];
        block[0] = ciphertext[0];
        cipher.apply_keystream(&mut block);
        let tag = block[0];
        block[0] = ciphertext[0];
        let c = &ciphertext[1..1 + mlen];
        let expected = mac_message(mac, &block, c);
        block.zeroize();
        let stored = &ciphertext[1 + mlen..];
        if !bool::from(expected.ct_eq(stored)) {
            return Err(DecryptError::Authentication);
        }
        Ok((cipher, expected, tag))
    }

    /// Decrypt the authenticated message in place and advance the state.
    fn finish(&mut self, mut cipher: ChaCha20, mac: &[u8; MACBYTES], tag: u8, c: &mut [u8]) {
        cipher.apply_keystream(c);
        self.state.advance(mac, tag);
    }

    /// Overwrite the 32-bit message counter, e.g. to `u32::MAX` to exercise the wrap-around
    /// rekey in tests. A counter that repeats under one key breaks the cipher.
    pub fn danger_set_counter(&mut self, counter: u32) {
        self.state.counter = counter;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Push, Pull) {
        let key = [7u8; 32];
        let push = Push::with_header(&key, [9; 24]);
        let pull = Pull::new(&key, push.header());
        (push, pull)
    }

    #[test]
    fn round_trips_all_sizes_and_tags() {
        let (mut push, mut pull) = pair();
        for (i, len) in [0usize, 1, 15, 16, 17, 47, 48, 63, 64, 65, 1000, 70_000]
            .into_iter()
            .enumerate()
        {
            let msg: Vec<u8> = (0..len).map(|j| (j * 7 + i) as u8).collect();
            let tag = [TAG_MESSAGE, TAG_PUSH, TAG_REKEY, TAG_MESSAGE][i % 4];
            let ct = push.push(&msg, tag);
            assert_eq!(ct.len(), len + ABYTES);
            assert_eq!(pull.pull(&ct).unwrap(), (msg, tag));
        }
    }

    #[test]
    fn in_place_matches_pull() {
        let (mut push, mut pull) = pair();
        let (_, mut pull2) = pair();
        for len in [0usize, 1, 16, 63, 64, 65, 1000, 70_000] {
            let msg: Vec<u8> = (0..len).map(|j| (j * 13) as u8).collect();
            let ct = push.push(&msg, TAG_MESSAGE);
            let mut bad = ct.clone();
            bad[0] ^= 1;
            assert_eq!(
                pull2.pull_in_place(&mut bad),
                Err(DecryptError::Authentication)
            );
            let mut buf = ct.clone();
            assert_eq!(pull2.pull_in_place(&mut buf), Ok(TAG_MESSAGE));
            assert_eq!(buf, msg);
            assert_eq!(pull.pull(&ct).unwrap().0, msg);
        }
        assert_eq!(
            pull2.pull_in_place(&mut vec![0; 16]),
            Err(DecryptError::TooShort)
        );
    }

    #[test]
    fn mac_failure_leaves_state_alone() {
        let (mut push, mut pull) = pair();
        let ct = push.push(b"hello", TAG_MESSAGE);
        let mut bad = ct.clone();
        bad[3] ^= 1;
        assert_eq!(pull.pull(&bad), Err(DecryptError::Authentication));
        assert_eq!(pull.pull(&ct).unwrap().0, b"hello");
        assert_eq!(
            pull.pull(&ct),
            Err(DecryptError::Authentication),
            "no replays"
        );
        assert_eq!(pull.pull(&[0; 16]), Err(DecryptError::TooShort));
    }

    #[test]
    fn counter_wrap_rekeys_both_sides() {
        let (mut push, mut pull) = pair();
        push.danger_set_counter(u32::MAX);
        pull.danger_set_counter(u32::MAX);
        for m in [&b"a"[..], b"b", b"c"] {
            let ct = push.push(m, TAG_MESSAGE);
            assert_eq!(pull.pull(&ct).unwrap().0, m);
        }
    }

    #[test]
    fn streaming_mac_matches_one_shot() {
        let key = [3u8; 32];
        let data: Vec<u8> = (0..200u8).collect();
        let one = Poly1305::new((&key).into()).compute_unpadded(&data);
        for split in [0, 1, 15, 16, 17, 100, 199, 200] {
            let mut m = Mac::new(&key);
            m.update(&data[..split]);
            m.update(&data[split..]);
            assert_eq!(m.finalize()[..], one[..], "split {split}");
        }
    }
}
