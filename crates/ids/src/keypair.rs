//! Ed25519 key pairs in libsodium's layout.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// An Ed25519 key pair. The secret key's 64-byte form is libsodium's: `seed ‖ public key`.
#[derive(Clone)]
pub struct KeyPair {
    signing: SigningKey,
}

impl KeyPair {
    /// The key pair for a 32-byte seed (`crypto_sign_seed_keypair`).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// A fresh random key pair.
    pub fn generate() -> Self {
        Self {
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// A key pair from libsodium's 64-byte secret key, checking that its public half matches.
    pub fn from_secret_key(secret: &[u8; 64]) -> Option<Self> {
        let mut seed = [0; 32];
        seed.copy_from_slice(&secret[..32]);
        let kp = Self::from_seed(&seed);
        (kp.public_key() == secret[32..]).then_some(kp)
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The 32-byte seed.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// libsodium's 64-byte secret key: `seed ‖ public key`.
    pub fn secret_key(&self) -> [u8; 64] {
        self.signing.to_keypair_bytes()
    }

    /// Sign `message` (`crypto_sign_detached`).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public_key", &hex::encode(self.public_key()))
            .finish_non_exhaustive()
    }
}

/// Verify an Ed25519 signature (`crypto_sign_verify_detached`). Malformed keys fail.
pub fn verify_signature(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(vk) = VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    vk.verify(message, &Signature::from_bytes(signature))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let kp = KeyPair::from_seed(&[1; 32]);
        let sig = kp.sign(b"hello");
        assert!(verify_signature(&kp.public_key(), b"hello", &sig));
        assert!(!verify_signature(&kp.public_key(), b"hellO", &sig));
        let again = KeyPair::from_secret_key(&kp.secret_key()).unwrap();
        assert_eq!(again.public_key(), kp.public_key());
        let mut bad = kp.secret_key();
        bad[40] ^= 1;
        assert!(KeyPair::from_secret_key(&bad).is_none());
    }
}

#[cfg(test)]
mod js_values {
    #[test]
    fn seed_keypair_matches_libsodium() {
        // hypercore-crypto 3.7.0: keyPair(Buffer.alloc(32, 1)).publicKey
        let kp = super::KeyPair::from_seed(&[1; 32]);
        assert_eq!(
            hex::encode(kp.public_key()),
            "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
        );
    }
}
