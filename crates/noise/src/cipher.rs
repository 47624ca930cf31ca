//! Noise's CipherState with ChaCha20-Poly1305 (IETF), as noise-handshake 4.2.0 `cipher.js`.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use zeroize::Zeroizing;

use crate::HandshakeError;

/// The AEAD tag length.
pub(crate) const MACLEN: usize = 16;
/// The largest ciphertext noise-handshake encrypts or decrypts.
///
/// > if (ciphertext.length > 65535) throw new Error(`ciphertext length of ... exceeds maximum
/// > Noise message length of 65535`)  (noise-handshake `cipher.js`)
pub(crate) const MAX_CIPHERTEXT: usize = 65535;

/// A Noise CipherState: an optional key and a message counter.
pub(crate) struct CipherState {
    key: Option<Zeroizing<[u8; 32]>>,
    nonce: u64,
}

impl CipherState {
    pub(crate) fn new() -> Self {
        Self {
            key: None,
            nonce: 0,
        }
    }

    /// `initialiseKey`: a new key resets the counter.
    pub(crate) fn initialise_key(&mut self, key: &[u8]) {
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(&key[..32]);
        self.key = Some(k);
        self.nonce = 0;
    }

    pub(crate) fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// The 12-byte IETF nonce for the current counter.
    ///
    /// > view.setUint32(4, counter, true)  (noise-handshake `cipher.js` `encryptWithAD`)
    ///
    /// Only the low 32 bits of the counter land in bytes 4..8; bytes 0..4 and 8..12 stay zero.
    /// A handshake uses counters 0 and 1 only, so this never wraps in practice.
    fn nonce(&self) -> Nonce {
        let mut n = [0u8; 12];
        n[4..8].copy_from_slice(&(self.nonce as u32).to_le_bytes());
        n.into()
    }

    /// Encrypt with the associated data `ad`, or pass `plaintext` through when there is no key.
    pub(crate) fn encrypt(
        &mut self,
        ad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HandshakeError> {
        let Some(key) = &self.key else {
            return Ok(plaintext.to_vec());
        };
        let aead = ChaCha20Poly1305::new((&**key).into());
        let ct = aead
            .encrypt(
                &self.nonce(),
                Payload {
                    msg: plaintext,
                    aad: ad,
                },
            )
            .map_err(|_| HandshakeError::PayloadTooLarge)?;
        if ct.len() > MAX_CIPHERTEXT {
            return Err(HandshakeError::PayloadTooLarge);
        }
        self.nonce += 1;
        Ok(ct)
    }

    /// Decrypt and authenticate with `ad`, or pass `ciphertext` through when there is no key.
    pub(crate) fn decrypt(
        &mut self,
        ad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, HandshakeError> {
        let Some(key) = &self.key else {
            return Ok(ciphertext.to_vec());
        };
        if ciphertext.len() > MAX_CIPHERTEXT {
            return Err(HandshakeError::PayloadTooLarge);
        }
        if ciphertext.len() < MACLEN {
            return Err(HandshakeError::MessageTooShort);
        }
        let aead = ChaCha20Poly1305::new((&**key).into());
        let pt = aead
            .decrypt(
                &self.nonce(),
                Payload {
                    msg: ciphertext,
                    aad: ad,
                },
            )
            .map_err(|_| HandshakeError::Decrypt)?;
        self.nonce += 1;
        Ok(pt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_key_passes_through() {
        let mut c = CipherState::new();
        assert_eq!(c.encrypt(b"ad", b"plain").unwrap(), b"plain");
        assert_eq!(c.decrypt(b"ad", b"plain").unwrap(), b"plain");
    }

    #[test]
    fn round_trip_and_counter() {
        let mut a = CipherState::new();
        let mut b = CipherState::new();
        a.initialise_key(&[4; 32]);
        b.initialise_key(&[4; 32]);
        let c1 = a.encrypt(b"h", b"one").unwrap();
        let c2 = a.encrypt(b"h", b"one").unwrap();
        assert_ne!(c1, c2, "the counter moves");
        assert_eq!(b.decrypt(b"h", &c1).unwrap(), b"one");
        assert_eq!(b.decrypt(b"x", &c2), Err(HandshakeError::Decrypt));
        assert_eq!(
            b.decrypt(b"h", &[0; 15]),
            Err(HandshakeError::MessageTooShort)
        );
    }

    #[test]
    fn ciphertext_limit_is_65535() {
        let mut a = CipherState::new();
        a.initialise_key(&[4; 32]);
        assert!(a.encrypt(b"", &[0; MAX_CIPHERTEXT - MACLEN]).is_ok());
        assert_eq!(
            a.encrypt(b"", &[0; MAX_CIPHERTEXT - MACLEN + 1]),
            Err(HandshakeError::PayloadTooLarge)
        );
    }
}
