//! Tokens: proof that a requester can receive at the address it claims (dht-rpc `IO#token`,
//! `IO#_drain`).
//!
//! > `sodium.crypto_generichash(token, b4a.from(addr.host), this._secrets[i])`
//!
//! A token is keyed BLAKE2b-256 of the requester's host **string** (dotted IPv4, no port)
//! under one of two 32-byte secrets. Replies carry the token under secret 1; requests are
//! accepted with either. Every 10th drain (10 × 750 ms) the secrets rotate:
//! `secrets[0] ← secrets[1]`, `secrets[1] ← BLAKE2b-256(old secrets[0])`, so a token stays
//! valid for 7.5 to 15 seconds.

use std::net::Ipv4Addr;

use peerhost_ids::hash::{blake2b256, blake2b256_keyed};

use crate::peer::ID_LEN;

/// Drains between rotations.
const ROTATE_EVERY: u32 = 10;

/// The two rotating secrets.
#[derive(Clone)]
pub(crate) struct Tokens {
    secrets: [[u8; ID_LEN]; 2],
    until_rotate: u32,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").finish_non_exhaustive()
    }
}

impl Tokens {
    pub(crate) fn new(secrets: [[u8; ID_LEN]; 2]) -> Self {
        Self {
            secrets,
            until_rotate: ROTATE_EVERY,
        }
    }

    /// The token for `host` under secret `i` (0 or 1).
    pub(crate) fn token(&self, host: Ipv4Addr, i: usize) -> [u8; ID_LEN] {
        let host = host.to_string();
        blake2b256_keyed(&self.secrets[i & 1], &[host.as_bytes()])
    }

    /// The token replies carry.
    pub(crate) fn current(&self, host: Ipv4Addr) -> [u8; ID_LEN] {
        self.token(host, 1)
    }

    /// Whether `token` is one we issued to `host` under either secret.
    pub(crate) fn verify(&self, host: Ipv4Addr, token: &[u8; ID_LEN]) -> bool {
        // Not secret-dependent timing worth hiding: tokens are handed out in the clear.
        *token == self.token(host, 1) || *token == self.token(host, 0)
    }

    /// One 750 ms drain: rotate on every 10th.
    pub(crate) fn on_drain(&mut self) {
        self.until_rotate -= 1;
        if self.until_rotate == 0 {
            self.until_rotate = ROTATE_EVERY;
            let old0 = self.secrets[0];
            self.secrets[0] = self.secrets[1];
            self.secrets[1] = blake2b256(&[&old0]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_js() {
        // vectors.js: secrets [0x01.., 0x02..].
        let mut t = Tokens::new([[1; 32], [2; 32]]);
        let h = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        for (host, i, tok) in [
            (
                "127.0.0.1",
                0,
                "ed9291f718dd75a0390cf8fd4828a9fedc3fcf919ff1f9724f33b187ecd9b461",
            ),
            (
                "127.0.0.1",
                1,
                "4afe340b2ee2790612f061108c4a3f00033b14ccc89e10288446347da5bd8368",
            ),
            (
                "192.168.0.7",
                1,
                "294412c6d2d9f2b94f6594d5369e62a0dcf518465fc542a823114f027ece2b73",
            ),
            (
                "10.1.2.3",
                0,
                "915f62270c55edbaadcce39c3f67304f7f40618fe3b40af578f032fb738b279f",
            ),
        ] {
            assert_eq!(hex::encode(t.token(h(host), i)), tok, "{host} {i}");
        }
        let before = t.current(h("127.0.0.1"));
        for _ in 0..9 {
            t.on_drain();
        }
        assert_eq!(t.current(h("127.0.0.1")), before);
        t.on_drain();
        // After a rotation the old current token is still accepted (as secret 0)...
        assert_eq!(t.token(h("127.0.0.1"), 0), before);
        assert!(t.verify(h("127.0.0.1"), &before));
        assert_eq!(
            hex::encode(t.current(h("127.0.0.1"))),
            "c0d9137efa0bee588a64a754c56d5b9ffd31b84f1a2db44fe6548c5e01151e3f"
        );
        // ...and dropped after the next one.
        for _ in 0..10 {
            t.on_drain();
        }
        assert!(!t.verify(h("127.0.0.1"), &before));
        assert!(!t.verify(h("127.0.0.2"), &t.current(h("127.0.0.1"))));
    }
}
