//! Noise handshakes XX and IK over Ed25519, byte for byte as noise-handshake 4.2.0 with the
//! noise-curve-ed 2.1.0 curve runs them (`noise.js`, `symmetric-state.js`).
//!
//! Protocol name `Noise_<XX|IK>_Ed25519_ChaChaPoly_BLAKE2b`; hash BLAKE2b-512 (`HASHLEN` 64),
//! HKDF over HMAC-BLAKE2b, cipher ChaCha20-Poly1305 IETF, DH on Ed25519 keys ([`crate::dh`]).
//! Handshake payloads are passed through: secret-stream sends empty ones, HyperDHT sends a
//! compact-encoded `noisePayload` that its own crate encodes.

use std::fmt;

use peerhost_ids::KeyPair;
use peerhost_ids::hash::blake2b512;
use zeroize::{Zeroize, Zeroizing};

use crate::HandshakeError;
use crate::cipher::{CipherState, MACLEN};
use crate::dh::{DHLEN, dh};
use crate::kdf::{HASHLEN, hkdf2};

/// A handshake pattern. Only the two the Holepunch stack uses are implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pattern {
    /// `IK`: the initiator knows the responder's static key; HyperDHT's `PEER_HANDSHAKE`
    /// (hyperdht `lib/noise-wrap.js`, prologue `NS.PEER_HANDSHAKE`). Two messages.
    IK,
    /// `XX`: both static keys travel encrypted; @hyperswarm/secret-stream's default (empty
    /// prologue). Three messages.
    XX,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    E,
    S,
    EE,
    ES,
    SE,
    SS,
}

use Token::{E, EE, ES, S, SE, SS};

/// > `XX: [[TOK_E], [TOK_E, TOK_EE, TOK_S, TOK_ES], [TOK_S, TOK_SE]]`
const XX: &[&[Token]] = &[&[E], &[E, EE, S, ES], &[S, SE]];
/// > `IK: [PRESHARE_RS, [TOK_E, TOK_ES, TOK_S, TOK_SS], [TOK_E, TOK_EE, TOK_SE]]`
const IK: &[&[Token]] = &[&[E, ES, S, SS], &[E, EE, SE]];

impl Pattern {
    /// The handshake name as it enters the protocol name.
    pub fn name(self) -> &'static str {
        match self {
            Self::IK => "IK",
            Self::XX => "XX",
        }
    }

    /// The Noise protocol name, e.g. `Noise_XX_Ed25519_ChaChaPoly_BLAKE2b`.
    pub fn protocol_name(self) -> String {
        format!("Noise_{}_Ed25519_ChaChaPoly_BLAKE2b", self.name())
    }

    fn messages(self) -> &'static [&'static [Token]] {
        match self {
            Self::IK => IK,
            Self::XX => XX,
        }
    }

    /// Whether the responder's static key is pre-shared (`PRESHARE_RS`).
    fn preshares_rs(self) -> bool {
        matches!(self, Self::IK)
    }
}

/// What a completed handshake hands on: the transport keys, the handshake hash and both static
/// public keys. JS: `noise.tx`, `noise.rx`, `noise.hash`, `noise.rs` (noise-handshake) or
/// `NoiseWrap.final()` (hyperdht). The keys are wiped when this is dropped.
#[derive(Clone)]
pub struct HandshakeResult {
    is_initiator: bool,
    public_key: [u8; 32],
    remote_public_key: [u8; 32],
    tx: [u8; 32],
    rx: [u8; 32],
    hash: [u8; 64],
}

impl HandshakeResult {
    /// Assemble a result from its parts, e.g. from a handshake run by another implementation.
    pub fn new(
        is_initiator: bool,
        public_key: [u8; 32],
        remote_public_key: [u8; 32],
        tx: [u8; 32],
        rx: [u8; 32],
        hash: [u8; 64],
    ) -> Self {
        Self {
            is_initiator,
            public_key,
            remote_public_key,
            tx,
            rx,
            hash,
        }
    }

    /// Whether we initiated the handshake.
    pub fn is_initiator(&self) -> bool {
        self.is_initiator
    }

    /// Our static public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// The remote's static public key (authenticated by the handshake).
    pub fn remote_public_key(&self) -> &[u8; 32] {
        &self.remote_public_key
    }

    /// The key we encrypt with: the first 32 bytes of split's first output for the initiator,
    /// of the second for the responder.
    pub fn tx(&self) -> &[u8; 32] {
        &self.tx
    }

    /// The key we decrypt with (the remote's `tx`).
    pub fn rx(&self) -> &[u8; 32] {
        &self.rx
    }

    /// The handshake hash: the final 64-byte `h`, equal on both sides.
    pub fn hash(&self) -> &[u8; 64] {
        &self.hash
    }
}

impl Drop for HandshakeResult {
    fn drop(&mut self) {
        self.tx.zeroize();
        self.rx.zeroize();
        self.hash.zeroize();
    }
}

impl fmt::Debug for HandshakeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeResult")
            .field("is_initiator", &self.is_initiator)
            .field("remote_public_key", &hex(&self.remote_public_key))
            .field("hash", &hex(&self.hash))
            .finish_non_exhaustive()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One side of a Noise handshake.
///
/// Drive it by alternating [`Handshake::write_message`] and [`Handshake::read_message`] as
/// [`Handshake::is_my_turn`] says (the initiator writes first). After the last message
/// [`Handshake::result`] holds the keys. The first error poisons the handshake: every later call
/// fails with [`HandshakeError::Failed`], as a JS handshake that threw is dropped.
pub struct Handshake {
    pattern: Pattern,
    is_initiator: bool,
    s: KeyPair,
    e: Option<KeyPair>,
    rs: Option<[u8; 32]>,
    re: Option<[u8; 32]>,
    /// The handshake hash `h` (noise-handshake's `digest`).
    h: [u8; HASHLEN],
    ck: Zeroizing<[u8; HASHLEN]>,
    cipher: CipherState,
    step: usize,
    failed: bool,
    result: Option<HandshakeResult>,
}

impl Drop for Handshake {
    fn drop(&mut self) {
        // `ck`, the cipher key and the key pairs wipe themselves.
        self.h.zeroize();
    }
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("pattern", &self.pattern)
            .field("is_initiator", &self.is_initiator)
            .field("step", &self.step)
            .field("failed", &self.failed)
            .field("complete", &self.result.is_some())
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// Start a handshake (`new Noise(pattern, initiator, s, { curve })` + `initialise(prologue,
    /// remoteStatic)`).
    ///
    /// `remote_static` is required for an IK initiator (the responder's key) and ignored
    /// otherwise, as in JS.
    pub fn new(
        pattern: Pattern,
        is_initiator: bool,
        static_key: KeyPair,
        prologue: &[u8],
        remote_static: Option<[u8; 32]>,
    ) -> Result<Self, HandshakeError> {
        let mut hs = Self {
            pattern,
            is_initiator,
            s: static_key,
            e: None,
            rs: None,
            re: None,
            h: [0; HASHLEN],
            ck: Zeroizing::new([0; HASHLEN]),
            cipher: CipherState::new(),
            step: 0,
            failed: false,
            result: None,
        };
        // > if (this.protocol.byteLength <= HASHLEN) this.digest.set(this.protocol)
        // > else this.mixHash(this.protocol)
        let name = pattern.protocol_name();
        if name.len() <= HASHLEN {
            hs.h[..name.len()].copy_from_slice(name.as_bytes());
        } else {
            hs.mix_hash(name.as_bytes());
        }
        hs.ck.copy_from_slice(&hs.h);
        hs.mix_hash(prologue);
        if pattern.preshares_rs() {
            // > const key = takeRemoteKey ? this.rs : this.s.publicKey
            let key = if is_initiator {
                let rs = remote_static.ok_or(HandshakeError::MissingRemoteStatic)?;
                hs.rs = Some(rs);
                rs
            } else {
                hs.s.public_key()
            };
            hs.mix_hash(&key);
        }
        Ok(hs)
    }

    /// Use `e` as the ephemeral key instead of a fresh random one.
    ///
    /// Reusing an ephemeral key across handshakes breaks Noise's security; this exists for test
    /// vectors (noise-handshake lets tests set `noise.e` the same way). It must be called before
    /// the first message that carries `e`, and is ignored after.
    pub fn danger_set_ephemeral(&mut self, e: KeyPair) {
        if self.e.is_none() {
            self.e = Some(e);
        }
    }

    /// The pattern.
    pub fn pattern(&self) -> Pattern {
        self.pattern
    }

    /// Whether this side initiates.
    pub fn is_initiator(&self) -> bool {
        self.is_initiator
    }

    /// Our static public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.s.public_key()
    }

    /// The remote static key, once it is known (pre-shared, or received in an `s` token).
    pub fn remote_public_key(&self) -> Option<[u8; 32]> {
        self.rs
    }

    /// Whether the handshake finished; [`Handshake::result`] then holds the keys.
    pub fn is_complete(&self) -> bool {
        self.result.is_some()
    }

    /// Whether the next step is ours to write (false once complete or failed).
    pub fn is_my_turn(&self) -> bool {
        !self.failed
            && self.result.is_none()
            && self.step < self.pattern.messages().len()
            && (self.step % 2 == 0) == self.is_initiator
    }

    /// The keys of a completed handshake.
    pub fn result(&self) -> Option<&HandshakeResult> {
        self.result.as_ref()
    }

    /// Take the keys of a completed handshake.
    pub fn into_result(mut self) -> Option<HandshakeResult> {
        self.result.take()
    }

    /// Write the next handshake message carrying `payload` (noise-handshake `send(payload)`).
    pub fn write_message(&mut self, payload: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        self.check_turn(true)?;
        let out = self.write_inner(payload);
        self.after_step(out)
    }

    /// Read the next handshake message and return its payload (noise-handshake `recv(buf)`).
    ///
    /// This is a fuzz entry point: it accepts any bytes and never panics.
    pub fn read_message(&mut self, message: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        self.check_turn(false)?;
        let out = self.read_inner(message);
        self.after_step(out)
    }

    fn check_turn(&self, writing: bool) -> Result<(), HandshakeError> {
        if self.failed {
            return Err(HandshakeError::Failed);
        }
        if self.result.is_some() || self.step >= self.pattern.messages().len() {
            return Err(HandshakeError::Complete);
        }
        if self.is_my_turn() != writing {
            return Err(HandshakeError::OutOfTurn);
        }
        Ok(())
    }

    fn after_step(
        &mut self,
        out: Result<Vec<u8>, HandshakeError>,
    ) -> Result<Vec<u8>, HandshakeError> {
        match out {
            Ok(v) => {
                self.step += 1;
                if self.step == self.pattern.messages().len() {
                    self.finish()?;
                }
                Ok(v)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    fn write_inner(&mut self, payload: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        let mut out = Vec::with_capacity(DHLEN + DHLEN + MACLEN + payload.len() + MACLEN);
        for &token in self.pattern.messages()[self.step] {
            match token {
                E => {
                    // > if (this.e === null) this.e = this.curve.generateKeyPair()
                    let e = self.e.get_or_insert_with(KeyPair::generate).public_key();
                    self.mix_hash(&e);
                    out.extend_from_slice(&e);
                }
                S => {
                    let s = self.s.public_key();
                    let ct = self.encrypt_and_hash(&s)?;
                    out.extend_from_slice(&ct);
                }
                dh_token => self.mix_dh(dh_token)?,
            }
        }
        let ct = self.encrypt_and_hash(payload)?;
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn read_inner(&mut self, message: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        let mut rest = message;
        for &token in self.pattern.messages()[self.step] {
            match token {
                E => {
                    let re: [u8; 32] = take(&mut rest, DHLEN)?
                        .try_into()
                        .map_err(|_| HandshakeError::MessageTooShort)?;
                    self.mix_hash(&re);
                    self.re = Some(re);
                }
                S => {
                    // > const klen = this.hasKey ? this.curve.PKLEN + 16 : this.curve.PKLEN
                    let klen = if self.cipher.has_key() {
                        DHLEN + MACLEN
                    } else {
                        DHLEN
                    };
                    let ct = take(&mut rest, klen)?;
                    let rs = self.decrypt_and_hash(ct)?;
                    let rs: [u8; 32] = rs
                        .as_slice()
                        .try_into()
                        .map_err(|_| HandshakeError::MessageTooShort)?;
                    self.rs = Some(rs);
                }
                dh_token => self.mix_dh(dh_token)?,
            }
        }
        self.decrypt_and_hash(rest)
    }

    /// `mixKey(remoteKey, localKey)` for one of `ee`, `es`, `se`, `ss` (noise.js `keyPattern`).
    fn mix_dh(&mut self, token: Token) -> Result<(), HandshakeError> {
        let (local_static, remote_static) = match token {
            EE => (false, false),
            // es: the initiator's e with the responder's s.
            ES => (!self.is_initiator, self.is_initiator),
            // se: the initiator's s with the responder's e.
            SE => (self.is_initiator, !self.is_initiator),
            SS => (true, true),
            E | S => return Ok(()),
        };
        let local = if local_static {
            &self.s
        } else {
            self.e.as_ref().ok_or(HandshakeError::Failed)?
        };
        let remote = if remote_static { self.rs } else { self.re };
        let remote = remote.ok_or(HandshakeError::Failed)?;
        let shared = Zeroizing::new(dh(local, &remote)?);
        let (ck, k) = hkdf2(&self.ck[..], &shared[..]);
        self.ck = ck;
        self.cipher.initialise_key(&k[..32]);
        Ok(())
    }

    /// `h = BLAKE2b-512(h ‖ data)`.
    fn mix_hash(&mut self, data: &[u8]) {
        self.h = blake2b512(&[&self.h, data]);
    }

    fn encrypt_and_hash(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        let ct = self.cipher.encrypt(&self.h, plaintext)?;
        self.mix_hash(&ct);
        Ok(ct)
    }

    fn decrypt_and_hash(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        let pt = self.cipher.decrypt(&self.h, ciphertext)?;
        self.mix_hash(ciphertext);
        Ok(pt)
    }

    /// `final()`: split into transport keys and wipe the ephemeral state.
    fn finish(&mut self) -> Result<(), HandshakeError> {
        let (k1, k2) = hkdf2(&self.ck[..], &[]);
        let (tx, rx) = if self.is_initiator {
            (&k1, &k2)
        } else {
            (&k2, &k1)
        };
        let remote = self.rs.ok_or(HandshakeError::Failed)?;
        let mut result = HandshakeResult::new(
            self.is_initiator,
            self.s.public_key(),
            remote,
            [0; 32],
            [0; 32],
            self.h,
        );
        result.tx.copy_from_slice(&tx[..32]);
        result.rx.copy_from_slice(&rx[..32]);
        self.result = Some(result);
        self.e = None;
        self.re = None;
        self.ck.zeroize();
        self.cipher = CipherState::new();
        Ok(())
    }
}

/// Split `n` bytes off the front of `rest` (noise.js `Reader.shift`, which throws
/// "Insufficient bytes").
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], HandshakeError> {
    if rest.len() < n {
        return Err(HandshakeError::MessageTooShort);
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(pattern: Pattern, prologue: &[u8]) -> (Handshake, Handshake) {
        let a = KeyPair::from_seed(&[1; 32]);
        let b = KeyPair::from_seed(&[2; 32]);
        let b_pub = b.public_key();
        (
            Handshake::new(pattern, true, a, prologue, Some(b_pub)).unwrap(),
            Handshake::new(pattern, false, b, prologue, None).unwrap(),
        )
    }

    fn run(mut i: Handshake, mut r: Handshake) -> (HandshakeResult, HandshakeResult, Vec<usize>) {
        let mut sizes = vec![];
        let (mut from, mut to) = (&mut i, &mut r);
        while !(from.is_complete() && to.is_complete()) {
            let msg = from.write_message(b"").unwrap();
            sizes.push(msg.len());
            assert_eq!(to.read_message(&msg).unwrap(), b"");
            std::mem::swap(&mut from, &mut to);
        }
        (i.into_result().unwrap(), r.into_result().unwrap(), sizes)
    }

    #[test]
    fn xx_completes_with_js_message_sizes() {
        let (i, r) = pair(Pattern::XX, b"");
        let (ri, rr, sizes) = run(i, r);
        assert_eq!(sizes, [32, 96, 64]);
        assert_eq!(ri.tx(), rr.rx());
        assert_eq!(ri.rx(), rr.tx());
        assert_eq!(ri.hash(), rr.hash());
        assert_eq!(ri.remote_public_key(), rr.public_key());
        assert_eq!(rr.remote_public_key(), ri.public_key());
    }

    #[test]
    fn ik_completes() {
        let (i, r) = pair(Pattern::IK, b"prologue");
        let (ri, rr, sizes) = run(i, r);
        assert_eq!(sizes, [96, 48]);
        assert_eq!(ri.tx(), rr.rx());
        assert_eq!(ri.hash(), rr.hash());
        assert_eq!(rr.remote_public_key(), ri.public_key());
    }

    #[test]
    fn ik_prologue_mismatch_fails() {
        let a = KeyPair::from_seed(&[1; 32]);
        let b = KeyPair::from_seed(&[2; 32]);
        let mut i = Handshake::new(Pattern::IK, true, a, b"one", Some(b.public_key())).unwrap();
        let mut r = Handshake::new(Pattern::IK, false, b, b"two", None).unwrap();
        let m = i.write_message(b"hi").unwrap();
        assert_eq!(r.read_message(&m), Err(HandshakeError::Decrypt));
        assert_eq!(r.read_message(&m), Err(HandshakeError::Failed));
    }

    #[test]
    fn ik_initiator_needs_the_remote_key() {
        let a = KeyPair::from_seed(&[1; 32]);
        assert_eq!(
            Handshake::new(Pattern::IK, true, a, b"", None).unwrap_err(),
            HandshakeError::MissingRemoteStatic
        );
    }

    #[test]
    fn payloads_travel() {
        let (mut i, mut r) = pair(Pattern::XX, b"");
        let m1 = i.write_message(b"clear in msg1").unwrap();
        assert_eq!(r.read_message(&m1).unwrap(), b"clear in msg1");
        assert_eq!(&m1[32..], b"clear in msg1", "XX message 1 has no key yet");
        let m2 = r.write_message(b"two").unwrap();
        assert_eq!(i.read_message(&m2).unwrap(), b"two");
        let m3 = i.write_message(b"three").unwrap();
        assert_eq!(r.read_message(&m3).unwrap(), b"three");
        assert!(i.is_complete() && r.is_complete());
    }

    #[test]
    fn out_of_turn_and_after_completion() {
        let (mut i, mut r) = pair(Pattern::IK, b"");
        assert_eq!(r.write_message(b""), Err(HandshakeError::OutOfTurn));
        assert_eq!(i.read_message(b""), Err(HandshakeError::OutOfTurn));
        let m1 = i.write_message(b"").unwrap();
        r.read_message(&m1).unwrap();
        let m2 = r.write_message(b"").unwrap();
        i.read_message(&m2).unwrap();
        assert_eq!(i.write_message(b""), Err(HandshakeError::Complete));
        assert_eq!(r.read_message(&m1), Err(HandshakeError::Complete));
    }

    #[test]
    fn tampering_is_detected() {
        let (mut i, mut r) = pair(Pattern::XX, b"");
        let m1 = i.write_message(b"").unwrap();
        r.read_message(&m1).unwrap();
        let mut m2 = r.write_message(b"").unwrap();
        m2[40] ^= 1;
        assert_eq!(i.read_message(&m2), Err(HandshakeError::Decrypt));
    }

    #[test]
    fn short_messages_fail() {
        let (_, mut r) = pair(Pattern::XX, b"");
        assert_eq!(
            r.read_message(&[0; 31]),
            Err(HandshakeError::MessageTooShort)
        );
        let (mut i, mut r) = pair(Pattern::XX, b"");
        r.read_message(&i.write_message(b"").unwrap()).unwrap();
        let m2 = r.write_message(b"").unwrap();
        assert_eq!(
            i.read_message(&m2[..95]),
            Err(HandshakeError::MessageTooShort)
        );
    }
}
