//! Signatures and secrets of hyperdht 6.34.0: announce / unannounce and mutable signables
//! (`lib/persistent.js`), targets (`lib/crypto.js`), and the encrypted holepunch payload
//! (`lib/secure-payload.js`, `lib/noise-wrap.js`).
//!
//! ```text
//! announce signable   = NS.ANNOUNCE   ‖ BLAKE2b-256(target ‖ nodeId ‖ token ‖ peer ‖ refresh?)
//! unannounce signable = NS.UNANNOUNCE ‖ BLAKE2b-256(target ‖ nodeId ‖ token ‖ peer ‖ refresh?)
//! mutable signable    = NS.MUTABLE_PUT ‖ BLAKE2b-256(uint seq ‖ buffer value)
//! mutable target      = BLAKE2b-256(publicKey),   immutable target = BLAKE2b-256(value)
//! holepunch secret    = BLAKE2b-256(NS.PEER_HOLEPUNCH; key = Noise handshake hash)
//! ```
//!
//! The bump of an announce is not signed (JS signs only the fields above).

use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use peerhost_ids::KeyPair;
use peerhost_ids::hash::{blake2b256, blake2b256_keyed};
use rand::RngCore;

use crate::constants::ns;
use crate::messages::{self, HolepunchPayload, PeerRecord};

/// BLAKE2b-256 of `data` (`lib/crypto.js` `hash`): the target of a public key or a value.
pub fn hash(data: &[u8]) -> [u8; 32] {
    blake2b256(&[data])
}

/// The 64 bytes an announce (`namespace` = [`ns::ANNOUNCE`]) or unannounce
/// ([`ns::UNANNOUNCE`]) signs (`annSignable`). `node_id` is the id of the node that stores the
/// record and `token` the token it handed out.
pub fn announce_signable(
    namespace: &[u8; 32],
    target: &[u8; 32],
    node_id: &[u8; 32],
    token: &[u8; 32],
    peer: &PeerRecord,
    refresh: Option<&[u8; 32]>,
) -> [u8; 64] {
    let peer = messages::encode(peer);
    let digest = blake2b256(&[
        target,
        node_id,
        token,
        &peer,
        refresh.map_or(&[][..], |r| &r[..]),
    ]);
    let mut out = [0; 64];
    out[..32].copy_from_slice(namespace);
    out[32..].copy_from_slice(&digest);
    out
}

/// The 64 bytes a mutable value's signature covers (`signMutable` / `verifyMutable`).
pub fn mutable_signable(seq: u64, value: &[u8]) -> [u8; 64] {
    let digest = hash(&messages::mutable_signable(seq, value));
    let mut out = [0; 64];
    out[..32].copy_from_slice(&ns::MUTABLE_PUT);
    out[32..].copy_from_slice(&digest);
    out
}

/// Sign a mutable value (`Persistent.signMutable`).
pub fn sign_mutable(seq: u64, value: &[u8], key_pair: &KeyPair) -> [u8; 64] {
    key_pair.sign(&mutable_signable(seq, value))
}

/// Check a mutable value's signature (`Persistent.verifyMutable`).
pub fn verify_mutable(signature: &[u8; 64], seq: u64, value: &[u8], public_key: &[u8; 32]) -> bool {
    peerhost_ids::verify_signature(public_key, &mutable_signable(seq, value), signature)
}

/// The key of the encrypted holepunch payload (`NoiseWrap.final().holepunchSecret`).
pub fn holepunch_secret(handshake_hash: &[u8; 64]) -> [u8; 32] {
    blake2b256_keyed(handshake_hash, &[&ns::PEER_HOLEPUNCH])
}

/// Encrypts and decrypts [`HolepunchPayload`]s with the connection's holepunch secret, and
/// issues address tokens (`lib/secure-payload.js` `HolepunchPayload`).
///
/// Wire form: `nonce (24 random bytes) ‖ crypto_secretbox_easy(plaintext)`, i.e. XSalsa20
/// with the 16-byte Poly1305 tag first.
pub struct SecurePayload {
    cipher: XSalsa20Poly1305,
    local_secret: [u8; 32],
}

impl std::fmt::Debug for SecurePayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurePayload").finish_non_exhaustive()
    }
}

/// Length of the nonce that starts an encrypted payload.
pub const NONCE_LEN: usize = 24;
/// Length of the Poly1305 tag.
pub const TAG_LEN: usize = 16;

impl SecurePayload {
    /// Keys from the holepunch secret, with a random local token secret.
    pub fn new(holepunch_secret: &[u8; 32]) -> Self {
        let mut local_secret = [0; 32];
        rand::thread_rng().fill_bytes(&mut local_secret);
        Self::with_local_secret(holepunch_secret, local_secret)
    }

    /// Keys with a caller-chosen local token secret (tests).
    pub fn with_local_secret(holepunch_secret: &[u8; 32], local_secret: [u8; 32]) -> Self {
        Self {
            cipher: XSalsa20Poly1305::new(holepunch_secret.into()),
            local_secret,
        }
    }

    /// Encrypt a payload with a random nonce (`encrypt`).
    pub fn encrypt(&self, payload: &HolepunchPayload) -> Vec<u8> {
        let mut nonce = [0; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        self.encrypt_with_nonce(payload, nonce)
    }

    /// Encrypt with a given nonce (tests; a nonce must never repeat under one key).
    pub fn encrypt_with_nonce(
        &self,
        payload: &HolepunchPayload,
        nonce: [u8; NONCE_LEN],
    ) -> Vec<u8> {
        let plain = messages::encode(payload);
        // XSalsa20Poly1305 cannot fail to encrypt a buffer this small; an empty output would
        // simply fail to decrypt on the other side.
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_slice())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypt and decode a payload; `None` if it is too short (≤ 40 bytes), fails
    /// authentication or does not decode (`decrypt`).
    pub fn decrypt(&self, buffer: &[u8]) -> Option<HolepunchPayload> {
        // > if (state.end <= state.start) return null     (end = len - 16, start = 24)
        if buffer.len() <= NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, sealed) = buffer.split_at(NONCE_LEN);
        let plain = self.cipher.decrypt(Nonce::from_slice(nonce), sealed).ok()?;
        messages::decode(&plain).ok()
    }

    /// The token for an address's host (`token(addr)`): `BLAKE2b-256(host; key = local
    /// secret)`. The port is not covered.
    pub fn token(&self, host: &std::net::Ipv4Addr) -> [u8; 32] {
        blake2b256_keyed(&self.local_secret, &[host.to_string().as_bytes()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::Firewall;

    fn kp() -> KeyPair {
        KeyPair::from_seed(&[1; 32])
    }

    // Vectors printed by `node interop-tests/hyperdht/vectors.js` (hyperdht 6.34.0
    // `Persistent.signAnnounce` / `signUnannounce` / `signMutable`, key pair from seed 01×32).

    #[test]
    fn announce_signatures_match_js() {
        let kp = kp();
        let peer = PeerRecord {
            public_key: kp.public_key(),
            relay_addresses: vec![],
        };
        let sign = |ns, refresh| {
            hex::encode(kp.sign(&announce_signable(
                ns, &[1; 32], &[2; 32], &[3; 32], &peer, refresh,
            )))
        };
        assert_eq!(
            sign(&ns::ANNOUNCE, None),
            "dbba739eebed276bd54e26624de18e631347a852869a9f6d2b183466d78339c063fd034367786cad\
             04ccb83e2bcb395071d42ffdb2bd84724c674bc6e21a1b08"
        );
        assert_eq!(
            sign(&ns::ANNOUNCE, Some(&[0xdd; 32])),
            "c44e422bc81392ac05369f67737cec04ab810b20e6a8bb87da4768931ab5476229db0e89440b11c5\
             5a1fa16bcbcf91fceaf73ff1c6462ff11fe3c746381f1500"
        );
        // The shared notes' vector: pk = aa…, no relays, no refresh.
        let aa = PeerRecord {
            public_key: [0xaa; 32],
            relay_addresses: vec![],
        };
        let s = announce_signable(&ns::ANNOUNCE, &[1; 32], &[2; 32], &[3; 32], &aa, None);
        assert_eq!(
            hex::encode(&s[32..]),
            "bb5eda7d5edb6009b6ca1c64b2e87953d1a638e365961c9331d079bebc9e30c3"
        );
    }

    #[test]
    fn mutable_signatures_match_js() {
        let kp = kp();
        let sig = sign_mutable(0, b"hello world", &kp);
        assert_eq!(
            hex::encode(sig),
            "7fda36daa4cef4d06abbc33d86047a5d90fc8a96aa23364c603992eb27a2a972ca1decde07290628\
             26aaf6ac04049782d5d0796beef0a81572cf5e0deacdd305"
        );
        assert!(verify_mutable(&sig, 0, b"hello world", &kp.public_key()));
        assert!(!verify_mutable(&sig, 1, b"hello world", &kp.public_key()));
        assert_eq!(
            hex::encode(sign_mutable(7, b"", &kp)),
            "a8df1849f40ec8e97be0b55a4c939145f9400d5f920845def7a950432bc09d38948388c207568af1\
             03b06d5ebe9625f288750a68b6634eb988be53c6bbd92c08"
        );
        assert_eq!(
            hex::encode(hash(&kp.public_key())),
            "c5e21ab1c9f6022d81c3b25e3436cb7f1df77f9652ae3e1310c28e621dd87b4c"
        );
        assert_eq!(
            hex::encode(hash(b"hello")),
            "324dcf027dd4a30a932c441f365a25e86b173defa4b8e58948253471b81b72cf"
        );
    }

    #[test]
    fn secure_payload_opens_js_boxes() {
        let secret = holepunch_secret(&[0x77; 64]);
        assert_eq!(
            hex::encode(secret),
            "21da73f13909442eb4895b5e5dec2ea736cc8284d6c40179a32c0392fac2d756"
        );
        let sp = SecurePayload::new(&secret);
        // JS `SecurePayload.encrypt` of the empty payload (random nonce).
        let js = hex::decode(
            "a666760b618d7a5cc47f1bb831e34ce19084abe3356cd7756baccb0ed853e5409616e201b4ef352c92cf789e",
        )
        .unwrap();
        assert_eq!(sp.decrypt(&js), Some(HolepunchPayload::default()));
        let js = hex::decode(
            "06cc5dad1e4c430f11cf28d797c13e83b6f0ec7e095d15a043e5a5ed6f1e50a91591f50c5a3568a6fabec4d\
             cb32710def413f42c0e3fc60578815da6bb327425705376534a04ff25d9c33ab2a94ad57bad5e3c",
        )
        .unwrap();
        let p = sp.decrypt(&js).unwrap();
        assert_eq!(p.firewall, Firewall::CONSISTENT);
        assert_eq!(p.token, Some([0xbb; 32]));

        // Our boxes open, tampering and short inputs do not.
        let mine = sp.encrypt(&p);
        assert_eq!(sp.decrypt(&mine), Some(p));
        let mut bad = mine.clone();
        bad[30] ^= 1;
        assert_eq!(sp.decrypt(&bad), None);
        assert_eq!(sp.decrypt(&mine[..40]), None);
        assert_eq!(SecurePayload::new(&[9; 32]).decrypt(&mine), None);
    }

    #[test]
    fn tokens_cover_the_host_only() {
        let sp = SecurePayload::with_local_secret(&[1; 32], [2; 32]);
        let a = sp.token(&"10.0.0.1".parse().unwrap());
        assert_eq!(a, blake2b256_keyed(&[2; 32], &[b"10.0.0.1"]));
        assert_ne!(a, sp.token(&"10.0.0.2".parse().unwrap()));
    }
}
