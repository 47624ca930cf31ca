//! Signed HTTP requests and key challenges (`protocol/gateway.md` §7.1): how a node proves, over
//! plain HTTP, that a request comes from the holder of an Ed25519 key (its node key, the
//! daemon's Noise identity), and that a gateway URL is served by the holder of a key.
//!
//! Two primitives, each with its own domain-separation context so that a signature made for one
//! can never be taken for the other (nor for anything hypercore or HyperDHT signs: their signed
//! messages are 32-byte hashes or start with a 32-byte namespace, ours with an ASCII context):
//!
//! - **Signed requests** ([`Credentials`], [`Verifier`]): the client signs
//!   `CONTEXT ‖ 0 ‖ origin ‖ 0 ‖ method ‖ 0 ‖ path ‖ 0 ‖ u64le(timestamp ms) ‖ nonce[16] ‖
//!   BLAKE2b-256(body)` and sends `Authorization: Peerhost-Ed25519 key=…, ts=…, nonce=…, sig=…`.
//!   The server rebuilds the message from what it received (the origin from its `Host`
//!   header), checks the signature, a clock-skew bound ([`MAX_SKEW`]) and that the `(key,
//!   nonce)` pair was not seen within the window (a bounded replay cache). A request replayed to
//!   another server (other `Host`), for another route or method, or with another body, does not
//!   verify.
//! - **Challenges** ([`answer_challenge`], [`verify_challenge`]): a server asks a gateway
//!   `GET /v1/identity?challenge=<32 random bytes, hex>`; the gateway answers `{"key",
//!   "signature"}` signed over `CHALLENGE_CONTEXT ‖ 0 ‖ origin ‖ 0 ‖ challenge`, where `origin`
//!   is `http://` and the `Host` it was asked under. The asker learns that whoever answers at that
//!   address holds the key.
//!
//! The API is transport-neutral: it takes strings and bytes (origin, method, path, body), not
//! axum types, so other request carriers (a long poll, a data channel) can reuse it.
//!
//! ```
//! use peerhost_gateway::auth::{Credentials, Request, Verifier};
//! use peerhost_ids::KeyPair;
//!
//! let kp = KeyPair::generate();
//! let req = Request { origin: "http://instance.example:8080", method: "POST", path: "/v1/peers",
//!                     body: br#"{"url":"http://203.0.113.7:8081"}"# };
//! let now_ms = 1_700_000_000_000;
//! let header = Credentials::sign(&kp, &req, now_ms).header_value();
//! // The server, from the request it received:
//! let verifier = Verifier::default();
//! let key = verifier.verify(Some(&header), &[req.origin], &req, now_ms).unwrap();
//! assert_eq!(key, kp.public_key());
//! // The same header again is a replay.
//! assert!(verifier.verify(Some(&header), &[req.origin], &req, now_ms).is_err());
//! ```

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peerhost_ids::{KeyPair, hash::blake2b256, verify_signature};
use rand::RngCore;

/// The context string of signed requests (the message's first bytes).
pub const CONTEXT: &str = "peerhost/signed-request/v1";
/// The context string of challenge answers.
pub const CHALLENGE_CONTEXT: &str = "peerhost/gateway-challenge/v1";
/// The `Authorization` scheme.
pub const SCHEME: &str = "Peerhost-Ed25519";
/// How far a request's timestamp may be from the verifier's clock, either way.
pub const MAX_SKEW: Duration = Duration::from_secs(60);
/// Bytes of a request nonce.
pub const NONCE_LEN: usize = 16;
/// Bytes of a challenge.
pub const CHALLENGE_LEN: usize = 32;
/// `(key, nonce)` pairs a [`Verifier`] remembers at most (each for `2 · MAX_SKEW`).
pub const MAX_REMEMBERED: usize = 65_536;
/// Of which one key may hold at most this many.
pub const MAX_REMEMBERED_PER_KEY: usize = 1024;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What a signature covers, besides the timestamp and nonce.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `http://` or `https://` and the authority (host and port) the request is sent to, exactly
    /// as the `Host` header carries it (compared case-insensitively).
    pub origin: &'a str,
    /// The method, uppercase (`POST`).
    pub method: &'a str,
    /// The path and query as in the request line (`/v1/peers`).
    pub path: &'a str,
    /// The body bytes (empty for none).
    pub body: &'a [u8],
}

/// Why a signed request or a challenge answer was refused. [`AuthError::code`] is the string the
/// HTTP error carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header with our scheme.
    #[error("the request is not signed (Authorization: {SCHEME} key=…, ts=…, nonce=…, sig=…)")]
    Missing,
    /// The header does not parse, or a signed field holds a forbidden byte.
    #[error("malformed signature header: {0}")]
    Malformed(&'static str),
    /// The timestamp is too far from our clock.
    #[error(
        "the request's timestamp is {0} ms away from this server's clock (at most {max} s \
         allowed): fix the clock (NTP) on one side",
        max = MAX_SKEW.as_secs()
    )]
    ClockSkew(i128),
    /// This `(key, nonce)` was already accepted.
    #[error("replayed request (this nonce was already used)")]
    Replayed,
    /// The signature does not verify (wrong key, other origin, route, method or body).
    #[error("the signature does not verify for this origin, route and body")]
    BadSignature,
    /// Too many recent requests to remember: refused until older ones expire.
    #[error("too many signed requests in flight, retry later")]
    Busy,
}

impl AuthError {
    /// A short code for HTTP error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "UNSIGNED",
            Self::Malformed(_) => "BAD_SIGNATURE_HEADER",
            Self::ClockSkew(_) => "CLOCK_SKEW",
            Self::Replayed => "REPLAYED",
            Self::BadSignature => "BAD_SIGNATURE",
            Self::Busy => "BUSY",
        }
    }
}

fn clean(s: &str) -> bool {
    !s.is_empty() && s.len() <= 8192 && !s.bytes().any(|b| b == 0 || b.is_ascii_control())
}

/// The exact bytes a request signature covers.
pub fn signable(req: &Request<'_>, timestamp_ms: u64, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    let origin = req.origin.to_ascii_lowercase();
    let mut m = Vec::with_capacity(CONTEXT.len() + origin.len() + req.path.len() + 80);
    for part in [CONTEXT, &origin, req.method, req.path] {
        m.extend_from_slice(part.as_bytes());
        m.push(0);
    }
    m.extend_from_slice(&timestamp_ms.to_le_bytes());
    m.extend_from_slice(nonce);
    m.extend_from_slice(&blake2b256(&[req.body]));
    m
}

/// A request's signature and what it needs to verify: the `Authorization` header's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The signer's Ed25519 public key.
    pub key: [u8; 32],
    /// Milliseconds since the Unix epoch, by the signer's clock.
    pub timestamp_ms: u64,
    /// Random, never reused by the signer.
    pub nonce: [u8; NONCE_LEN],
    /// Ed25519 over [`signable`].
    pub signature: [u8; 64],
}

impl Credentials {
    /// Sign `req` at `now_ms` with a fresh random nonce.
    pub fn sign(key_pair: &KeyPair, req: &Request<'_>, now_ms: u64) -> Self {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        Self::sign_with_nonce(key_pair, req, now_ms, nonce)
    }

    /// Sign `req` with a chosen nonce (tests and fixtures).
    pub fn sign_with_nonce(
        key_pair: &KeyPair,
        req: &Request<'_>,
        timestamp_ms: u64,
        nonce: [u8; NONCE_LEN],
    ) -> Self {
        Self {
            key: key_pair.public_key(),
            timestamp_ms,
            nonce,
            signature: key_pair.sign(&signable(req, timestamp_ms, &nonce)),
        }
    }

    /// The `Authorization` header value:
    /// `Peerhost-Ed25519 key=<64 hex>, ts=<decimal ms>, nonce=<32 hex>, sig=<128 hex>`.
    pub fn header_value(&self) -> String {
        format!(
            "{SCHEME} key={}, ts={}, nonce={}, sig={}",
            hex::encode(self.key),
            self.timestamp_ms,
            hex::encode(self.nonce),
            hex::encode(self.signature)
        )
    }

    /// Parse an `Authorization` header value (fields in any order, each exactly once).
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        let rest = value
            .trim()
            .strip_prefix(SCHEME)
            .filter(|r| r.starts_with(' '))
            .ok_or(AuthError::Missing)?;
        let (mut key, mut ts, mut nonce, mut sig) = (None, None, None, None);
        for field in rest.split(',') {
            let (name, v) = field
                .trim()
                .split_once('=')
                .ok_or(AuthError::Malformed("a field without '='"))?;
            let slot = match name {
                "key" => &mut key,
                "ts" => &mut ts,
                "nonce" => &mut nonce,
                "sig" => &mut sig,
                _ => return Err(AuthError::Malformed("unknown field")),
            };
            if slot.replace(v).is_some() {
                return Err(AuthError::Malformed("a field given twice"));
            }
        }
        let hex_field = |v: Option<&str>, what: &'static str| -> Result<Vec<u8>, AuthError> {
            hex::decode(v.ok_or(AuthError::Malformed(what))?)
                .map_err(|_| AuthError::Malformed(what))
        };
        let ts = ts.ok_or(AuthError::Malformed("ts"))?;
        if ts.is_empty() || ts.len() > 16 || !ts.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AuthError::Malformed("ts"));
        }
        Ok(Self {
            key: hex_field(key, "key")?
                .try_into()
                .map_err(|_| AuthError::Malformed("key"))?,
            timestamp_ms: ts.parse().map_err(|_| AuthError::Malformed("ts"))?,
            nonce: hex_field(nonce, "nonce")?
                .try_into()
                .map_err(|_| AuthError::Malformed("nonce"))?,
            signature: hex_field(sig, "sig")?
                .try_into()
                .map_err(|_| AuthError::Malformed("sig"))?,
        })
    }
}

/// Limits of a [`Verifier`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct VerifierOptions {
    /// Accepted distance between a timestamp and our clock, either way.
    pub max_skew: Duration,
    /// Nonces remembered at most.
    pub max_remembered: usize,
    /// Nonces remembered per key at most.
    pub max_per_key: usize,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        Self {
            max_skew: MAX_SKEW,
            max_remembered: MAX_REMEMBERED,
            max_per_key: MAX_REMEMBERED_PER_KEY,
        }
    }
}

#[derive(Debug, Default)]
struct Replay {
    /// `(forget at ms, key, nonce)`, in expiry order.
    by_expiry: BTreeSet<(u64, [u8; 32], [u8; NONCE_LEN])>,
    seen: HashSet<([u8; 32], [u8; NONCE_LEN])>,
    per_key: HashMap<[u8; 32], usize>,
}

impl Replay {
    fn prune(&mut self, now_ms: u64) {
        while let Some(&(at, key, nonce)) = self.by_expiry.first() {
            if at > now_ms {
                break;
            }
            self.by_expiry.pop_first();
            self.seen.remove(&(key, nonce));
            if let Some(n) = self.per_key.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.per_key.remove(&key);
                }
            }
        }
    }
}

/// Checks signed requests: signature, clock skew, replays. Share one per server (it holds the
/// replay cache); memory is bounded by [`VerifierOptions`].
#[derive(Debug, Default)]
pub struct Verifier {
    options: VerifierOptions,
    replay: Mutex<Replay>,
}

impl Verifier {
    /// A verifier with these limits.
    pub fn new(options: VerifierOptions) -> Self {
        Self {
            options,
            replay: Mutex::default(),
        }
    }

    /// Verify the `Authorization` header of `req` at `now_ms`. `origins` are the origins this
    /// server accepts for it (typically `http://HOST` and `https://HOST` for the request's `Host`
    /// header); `req.origin` is ignored. Returns the signer's key; a verified request is
    /// remembered, so the same header is refused the second time.
    pub fn verify(
        &self,
        header: Option<&str>,
        origins: &[&str],
        req: &Request<'_>,
        now_ms: u64,
    ) -> Result<[u8; 32], AuthError> {
        let creds = Credentials::parse(header.ok_or(AuthError::Missing)?)?;
        if !clean(req.method) || !clean(req.path) {
            return Err(AuthError::Malformed("method or path"));
        }
        let skew = i128::from(creds.timestamp_ms) - i128::from(now_ms);
        let max = i128::try_from(self.options.max_skew.as_millis()).unwrap_or(i128::MAX);
        if skew.abs() > max {
            return Err(AuthError::ClockSkew(skew));
        }
        let verified = origins.iter().filter(|o| clean(o)).any(|origin| {
            let r = Request { origin, ..*req };
            verify_signature(
                &creds.key,
                &signable(&r, creds.timestamp_ms, &creds.nonce),
                &creds.signature,
            )
        });
        if !verified {
            return Err(AuthError::BadSignature);
        }
        let mut replay = self
            .replay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        replay.prune(now_ms);
        let id = (creds.key, creds.nonce);
        if replay.seen.contains(&id) {
            return Err(AuthError::Replayed);
        }
        let of_key = replay.per_key.get(&creds.key).copied().unwrap_or(0);
        if replay.seen.len() >= self.options.max_remembered || of_key >= self.options.max_per_key {
            return Err(AuthError::Busy);
        }
        // Past this instant the timestamp check refuses the request anyway.
        let forget = creds
            .timestamp_ms
            .saturating_add(u64::try_from(max).unwrap_or(u64::MAX));
        replay.by_expiry.insert((forget, creds.key, creds.nonce));
        replay.seen.insert(id);
        *replay.per_key.entry(creds.key).or_insert(0) += 1;
        Ok(creds.key)
    }

    /// `(key, nonce)` pairs remembered now.
    pub fn remembered(&self) -> usize {
        self.replay.lock().map_or(0, |r| r.seen.len())
    }
}

/// The bytes a challenge answer signs.
pub fn challenge_signable(origin: &str, challenge: &[u8; CHALLENGE_LEN]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHALLENGE_CONTEXT.len() + origin.len() + 34);
    m.extend_from_slice(CHALLENGE_CONTEXT.as_bytes());
    m.push(0);
    m.extend_from_slice(origin.to_ascii_lowercase().as_bytes());
    m.push(0);
    m.extend_from_slice(challenge);
    m
}

/// A gateway's answer to `challenge`, asked at `origin` (`http://` + its `Host`).
pub fn answer_challenge(
    key_pair: &KeyPair,
    origin: &str,
    challenge: &[u8; CHALLENGE_LEN],
) -> [u8; 64] {
    key_pair.sign(&challenge_signable(origin, challenge))
}

/// Whether `signature` answers `challenge` at `origin` for `key`.
pub fn verify_challenge(
    key: &[u8; 32],
    origin: &str,
    challenge: &[u8; CHALLENGE_LEN],
    signature: &[u8; 64],
) -> bool {
    clean(origin) && verify_signature(key, &challenge_signable(origin, challenge), signature)
}

/// A fresh random challenge.
pub fn new_challenge() -> [u8; CHALLENGE_LEN] {
    let mut c = [0u8; CHALLENGE_LEN];
    rand::thread_rng().fill_bytes(&mut c);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "http://127.0.0.1:8080";
    const T: u64 = 1_700_000_000_000;

    fn req(body: &[u8]) -> Request<'_> {
        Request {
            origin: ORIGIN,
            method: "POST",
            path: "/v1/peers",
            body,
        }
    }

    #[test]
    fn signable_layout() {
        let kp = KeyPair::from_seed(&[7; 32]);
        let m = signable(&req(b"{}"), 0x0102, &[0xaa; 16]);
        let mut want =
            b"peerhost/signed-request/v1\0http://127.0.0.1:8080\0POST\0/v1/peers\0".to_vec();
        want.extend_from_slice(&[2, 1, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[0xaa; 16]);
        want.extend_from_slice(&blake2b256(&[b"{}"]));
        assert_eq!(m, want);
        // The origin is compared case-insensitively: it is lowercased before signing.
        let upper = Request {
            origin: "HTTP://127.0.0.1:8080",
            ..req(b"{}")
        };
        assert_eq!(signable(&upper, 0x0102, &[0xaa; 16]), m);
        let c = Credentials::sign_with_nonce(&kp, &req(b"{}"), 0x0102, [0xaa; 16]);
        assert_eq!(Credentials::parse(&c.header_value()).unwrap(), c);
    }

    #[test]
    fn verifies_once_and_binds_everything() {
        let kp = KeyPair::generate();
        let v = Verifier::default();
        let body = br#"{"url":"http://1.2.3.4:5"}"#;
        let h = Credentials::sign(&kp, &req(body), T).header_value();
        assert_eq!(
            v.verify(Some(&h), &["https://x", ORIGIN], &req(body), T + 5),
            Ok(kp.public_key())
        );
        assert_eq!(
            v.verify(Some(&h), &[ORIGIN], &req(body), T),
            Err(AuthError::Replayed)
        );
        // Another body, path, method or origin: the signature does not hold.
        let fresh = || Credentials::sign(&kp, &req(body), T).header_value();
        assert_eq!(
            v.verify(Some(&fresh()), &[ORIGIN], &req(b"{}"), T),
            Err(AuthError::BadSignature)
        );
        let other_path = Request {
            path: "/v1/report",
            ..req(body)
        };
        assert_eq!(
            v.verify(Some(&fresh()), &[ORIGIN], &other_path, T),
            Err(AuthError::BadSignature)
        );
        let other_method = Request {
            method: "PUT",
            ..req(body)
        };
        assert_eq!(
            v.verify(Some(&fresh()), &[ORIGIN], &other_method, T),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            v.verify(Some(&fresh()), &["http://127.0.0.1:9090"], &req(body), T),
            Err(AuthError::BadSignature)
        );
        // Clock skew either way.
        let skew = MAX_SKEW.as_millis() as u64;
        assert!(matches!(
            v.verify(Some(&fresh()), &[ORIGIN], &req(body), T + skew + 1),
            Err(AuthError::ClockSkew(_))
        ));
        assert!(matches!(
            v.verify(Some(&fresh()), &[ORIGIN], &req(body), T - skew - 1),
            Err(AuthError::ClockSkew(_))
        ));
        assert_eq!(
            v.verify(None, &[ORIGIN], &req(body), T),
            Err(AuthError::Missing)
        );
        // Another key's signature with this key named: refused.
        let mut forged = Credentials::sign(&KeyPair::generate(), &req(body), T);
        forged.key = kp.public_key();
        assert_eq!(
            v.verify(Some(&forged.header_value()), &[ORIGIN], &req(body), T),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn the_replay_cache_is_bounded_and_expires() {
        let v = Verifier::new(VerifierOptions {
            max_skew: Duration::from_secs(1),
            max_remembered: 4,
            max_per_key: 2,
        });
        let a = KeyPair::generate();
        let ok = |kp: &KeyPair, at: u64| {
            let h = Credentials::sign(kp, &req(b""), at).header_value();
            v.verify(Some(&h), &[ORIGIN], &req(b""), at)
        };
        assert!(ok(&a, T).is_ok() && ok(&a, T).is_ok());
        assert_eq!(ok(&a, T), Err(AuthError::Busy), "per key");
        let (b, c) = (KeyPair::generate(), KeyPair::generate());
        assert!(ok(&b, T).is_ok() && ok(&b, T).is_ok());
        assert_eq!(ok(&c, T), Err(AuthError::Busy), "in all");
        assert_eq!(v.remembered(), 4);
        // Once the window has passed they are forgotten.
        assert!(ok(&c, T + 1001).is_ok());
        assert_eq!(v.remembered(), 1);
    }

    #[test]
    fn malformed_headers() {
        for bad in [
            "Bearer x",
            "Peerhost-Ed25519",
            "Peerhost-Ed25519 key=00",
            "Peerhost-Ed25519 key=zz, ts=1, nonce=00, sig=00",
            "Peerhost-Ed25519 ts=1, ts=2",
            "Peerhost-Ed25519 what=1",
        ] {
            assert!(Credentials::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn challenges() {
        let kp = KeyPair::generate();
        let c = new_challenge();
        let sig = answer_challenge(&kp, "http://127.0.0.1:8081", &c);
        assert!(verify_challenge(
            &kp.public_key(),
            "HTTP://127.0.0.1:8081",
            &c,
            &sig
        ));
        assert!(!verify_challenge(
            &kp.public_key(),
            "http://127.0.0.1:8082",
            &c,
            &sig
        ));
        assert!(!verify_challenge(
            &kp.public_key(),
            "http://127.0.0.1:8081",
            &new_challenge(),
            &sig
        ));
        // A request signature is never a challenge answer, nor the reverse.
        assert_ne!(
            &challenge_signable(ORIGIN, &[0; 32])[..20],
            &signable(&req(b""), 0, &[0; 16])[..20]
        );
    }
}
