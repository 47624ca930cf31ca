//! @hyperswarm/secret-stream 6.9.2 (`index.js` `NoiseSecretStream`) as a sans-IO state machine.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use peerhost_ids::KeyPair;
use peerhost_ids::hash::blake2b256_keyed;
use peerhost_ids::ns::secret_stream::{INITIATOR, RESPONDER};
use zeroize::Zeroizing;

use crate::frame::{FrameDecoder, MAX_FRAME_LEN, Oversized, len_prefix};
use crate::secretstream::{ABYTES, HEADERBYTES, Pull, Push, TAG_MESSAGE};
use crate::{Error, Handshake, HandshakeResult, Pattern, SendError};

/// The largest plaintext one message may carry: the frame body is `plaintext + 17` bytes and
/// must fit the 24-bit length.
///
/// > if (wrapped.byteLength - 3 > MAX_ATOMIC_WRITE) … 'Message is too large for an atomic write'
///
/// (secret-stream `index.js` `_write`, `MAX_ATOMIC_WRITE = 256 * 256 * 256 - 1`)
pub const MAX_MESSAGE_LEN: usize = MAX_FRAME_LEN - ABYTES;

/// The length of the frame each side sends after the handshake: stream id and header.
pub const ID_HEADER_LEN: usize = 32 + HEADERBYTES;

/// The largest handshake frame accepted: an ephemeral key, an encrypted static key and Noise's
/// largest ciphertext (65535). JS would throw on anything larger while decrypting it.
pub const MAX_HANDSHAKE_FRAME_LEN: usize = 32 + 48 + 65535;

/// Frames are coalesced into one transmit up to this size.
const COALESCE: usize = 64 * 1024;

/// The stream id a side sends after the handshake (`NoiseSecretStream.id(hash, isInitiator)`):
/// `BLAKE2b-256(NS_INITIATOR or NS_RESPONDER; key = handshakeHash)`.
pub fn stream_id(handshake_hash: &[u8; 64], is_initiator: bool) -> [u8; 32] {
    let ns = if is_initiator { &INITIATOR } else { &RESPONDER };
    blake2b256_keyed(handshake_hash, &[ns])
}

/// Knobs of a [`SecretStream`]. `Config::default()` matches a JS stream created without
/// options; Holepunch callers usually set `keep_alive` to 5 s (hypercore's
/// `createProtocolStream`, hyperdht's `connectionKeepAlive`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Send an empty message when nothing was sent for this long (JS `setKeepAlive(ms)`;
    /// default off).
    pub keep_alive: Option<Duration>,
    /// Fail with [`Error::TimedOut`] when nothing was received for this long (JS
    /// `setTimeout(ms)`; default off). Runs from construction, so it also bounds the handshake.
    pub timeout: Option<Duration>,
    /// The largest data frame accepted, at most (and by default) [`MAX_FRAME_LEN`]; the decoder
    /// buffers at most one frame of this size. Lower it to bound memory per connection.
    pub max_frame_len: usize,
    /// The most bytes [`SecretStream::send`] lets wait for [`SecretStream::poll_transmit`]
    /// (32 MiB by default). A message is always accepted into an empty buffer.
    pub max_send_buffer: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            keep_alive: None,
            timeout: None,
            max_frame_len: MAX_FRAME_LEN,
            max_send_buffer: 32 * 1024 * 1024,
        }
    }
}

impl Config {
    /// Set [`Config::keep_alive`].
    pub fn with_keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = Some(interval);
        self
    }

    /// Set [`Config::timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Set [`Config::max_send_buffer`].
    pub fn with_max_send_buffer(mut self, max: usize) -> Self {
        self.max_send_buffer = max;
        self
    }

    /// Set [`Config::max_frame_len`].
    pub fn with_max_frame_len(mut self, max: usize) -> Self {
        self.max_frame_len = max.min(MAX_FRAME_LEN);
        self
    }
}

/// What a [`SecretStream`] reports.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The remote ended its side cleanly (after [`SecretStream::handle_eof`]).
    End,
    /// The keys are set and our id+header frame is queued (JS `'handshake'`, then
    /// `'connect'`). From here on [`SecretStream::send`] encrypts at once.
    Handshake {
        /// The remote's static public key.
        remote_public_key: [u8; 32],
        /// The 64-byte handshake hash.
        handshake_hash: [u8; 64],
    },
    /// An empty message: a keep-alive. JS drops these when keep-alive is on and passes an
    /// empty buffer up otherwise; protomux ignores empty frames either way.
    KeepAlive,
    /// A decrypted message.
    Message(Vec<u8>),
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::End => f.write_str("End"),
            Self::Handshake {
                remote_public_key, ..
            } => f
                .debug_struct("Handshake")
                .field("remote_public_key", &hex(remote_public_key))
                .finish_non_exhaustive(),
            Self::KeepAlive => f.write_str("KeepAlive"),
            Self::Message(m) => write!(f, "Message({} bytes)", m.len()),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

enum Phase {
    /// Running the Noise handshake.
    Handshake(Box<Handshake>),
    /// Keys set, our id+header sent; waiting for the remote's id+header.
    Header(Zeroizing<[u8; 32]>),
    /// Both directions encrypted.
    Open(Pull),
    /// Stopped by an error; nothing more goes in or out.
    Failed(Error),
}

/// One end of a secret stream: a Noise handshake (or keys from one run elsewhere), then
/// secretstream-encrypted, length-prefixed messages. It owns no socket and reads no clock.
///
/// # Drain contract
///
/// The driver owns the byte stream (TCP, UDX) and the timer, and loops:
///
/// 1. **Inputs.** Bytes read from the transport go to [`handle_input`](Self::handle_input), in
///    order and in any chunking; the transport's end of stream goes to
///    [`handle_eof`](Self::handle_eof); when the deadline from [`poll_timeout`] passes, call
///    [`handle_timeout`](Self::handle_timeout). Application messages go to
///    [`send`](Self::send). Every call takes the current `now`.
/// 2. **Transmits.** After any input, drain [`poll_transmit`] until it returns `None` and
///    write every buffer, in order, to the transport. Right after construction there is
///    already one (the initiator's first handshake message, or the id+header frame of
///    [`from_handshake`](Self::from_handshake)).
/// 3. **Events.** Drain [`poll_event`](Self::poll_event) until `None`. Events hold decrypted
///    input, so their total size is bounded by the input handed in since the last drain.
/// 4. **Timer.** Re-arm the timer from [`poll_timeout`] (`None`: no timer).
///
/// An `Err` from a `handle_*` call is final: the stream drops its queued transmits, returns the
/// same error from every later `handle_*` call, and `poll_transmit` and `poll_timeout` return
/// `None`; events queued before the error can still be drained. Close the transport then.
/// Never panics on any input.
///
/// [`poll_transmit`]: Self::poll_transmit
/// [`poll_timeout`]: Self::poll_timeout
pub struct SecretStream {
    is_initiator: bool,
    public_key: [u8; 32],
    remote_public_key: Option<[u8; 32]>,
    handshake_hash: Option<[u8; 64]>,
    phase: Phase,
    decoder: FrameDecoder,
    push: Option<Push>,
    /// Plaintexts sent before the keys were set.
    pending: VecDeque<Vec<u8>>,
    transmits: VecDeque<Vec<u8>>,
    /// Bytes in `pending` and `transmits`.
    queued: usize,
    events: VecDeque<Event>,
    remote_ended: bool,
    config: Config,
    recv_deadline: Option<Instant>,
    keep_alive_deadline: Option<Instant>,
}

impl fmt::Debug for SecretStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match &self.phase {
            Phase::Handshake(_) => "handshake",
            Phase::Header(_) => "header",
            Phase::Open(_) => "open",
            Phase::Failed(_) => "failed",
        };
        f.debug_struct("SecretStream")
            .field("is_initiator", &self.is_initiator)
            .field("phase", &phase)
            .field("queued", &self.queued)
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl SecretStream {
    /// A stream that runs the default XX handshake with `key_pair` as its static key and an
    /// empty prologue (`new NoiseSecretStream(isInitiator, rawStream, { keyPair })`).
    pub fn new(is_initiator: bool, key_pair: KeyPair, config: Config, now: Instant) -> Self {
        match Handshake::new(Pattern::XX, is_initiator, key_pair.clone(), &[], None) {
            Ok(hs) => Self::from_noise(hs, config, now),
            // XX needs no remote key, so this cannot happen; fail the stream rather than panic.
            Err(e) => Self::base(
                is_initiator,
                key_pair.public_key(),
                config,
                now,
                Phase::Failed(e.into()),
            ),
        }
    }

    /// A stream that runs a handshake prepared by the caller, e.g. IK with a known remote key
    /// (JS `opts.pattern` and `opts.remotePublicKey`; secret-stream always uses an empty
    /// prologue). The handshake must not have started.
    pub fn from_noise(handshake: Handshake, config: Config, now: Instant) -> Self {
        let is_initiator = handshake.is_initiator();
        let public_key = handshake.public_key();
        let mut s = Self::base(
            is_initiator,
            public_key,
            config,
            now,
            Phase::Handshake(Box::new(handshake)),
        );
        // > if (this.isInitiator) this._onhandshakert(this._handshake.send())
        if let Err(e) = s.handshake_step(None, now) {
            s.fail(e);
        }
        s
    }

    /// A stream whose handshake ran elsewhere, e.g. HyperDHT's IK inside `PEER_HANDSHAKE`
    /// (JS `opts.handshake = { tx, rx, hash, publicKey, remotePublicKey }`). The id+header frame
    /// is queued at once. The role is the result's [`HandshakeResult::is_initiator`].
    pub fn from_handshake(result: &HandshakeResult, config: Config, now: Instant) -> Self {
        let mut s = Self::base(
            result.is_initiator(),
            *result.public_key(),
            config,
            now,
            Phase::Failed(Error::Ended),
        );
        s.setup(result, now);
        s
    }

    fn base(
        is_initiator: bool,
        public_key: [u8; 32],
        config: Config,
        now: Instant,
        phase: Phase,
    ) -> Self {
        Self {
            is_initiator,
            public_key,
            remote_public_key: None,
            handshake_hash: None,
            phase,
            decoder: FrameDecoder::new(MAX_HANDSHAKE_FRAME_LEN),
            push: None,
            pending: VecDeque::new(),
            transmits: VecDeque::new(),
            queued: 0,
            events: VecDeque::new(),
            remote_ended: false,
            recv_deadline: config.timeout.map(|t| now + t),
            keep_alive_deadline: None,
            config,
        }
    }

    /// Whether we initiated.
    pub fn is_initiator(&self) -> bool {
        self.is_initiator
    }

    /// Our static public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// The remote's static public key, once the handshake is done.
    pub fn remote_public_key(&self) -> Option<&[u8; 32]> {
        self.remote_public_key.as_ref()
    }

    /// The handshake hash, once the handshake is done.
    pub fn handshake_hash(&self) -> Option<&[u8; 64]> {
        self.handshake_hash.as_ref()
    }

    /// Whether our keys are set ([`Event::Handshake`] was queued).
    pub fn is_established(&self) -> bool {
        self.push.is_some()
    }

    /// Whether the remote's id+header arrived, so its messages can be read.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// The error that stopped the stream, if any.
    pub fn error(&self) -> Option<&Error> {
        match &self.phase {
            Phase::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Bytes waiting to be sent (queued plaintexts and encrypted transmits).
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// Feed bytes read from the transport.
    ///
    /// This is a fuzz entry point: any bytes, in any chunking, either progress the stream or
    /// stop it with an error; it never panics and buffers at most one frame.
    pub fn handle_input(&mut self, now: Instant, mut data: &[u8]) -> Result<(), Error> {
        self.check_live()?;
        if self.remote_ended {
            return Err(Error::Ended);
        }
        if data.is_empty() {
            return Ok(());
        }
        // > if (this._timeoutTimer !== null) this._timeoutTimer.refresh()  (any raw data)
        if let Some(t) = self.config.timeout {
            self.recv_deadline = Some(now + t);
        }
        while !data.is_empty() {
            let step = self.decoder.decode(data);
            let (used, frame) = match step {
                Ok(v) => v,
                Err(Oversized { len, max }) => {
                    let e = match self.phase {
                        Phase::Header(_) => Error::InvalidHeaderLength { len },
                        _ => Error::FrameTooLarge { len, max },
                    };
                    return Err(self.fail(e));
                }
            };
            data = &data[used..];
            if let Some(frame) = frame {
                if let Err(e) = self.on_frame(frame, now) {
                    return Err(self.fail(e));
                }
            }
        }
        Ok(())
    }

    /// The transport's end of stream: the remote will send nothing more.
    ///
    /// Clean when it falls between frames after the remote's id+header ([`Event::End`]);
    /// [`Error::UnexpectedEnd`] otherwise. Sending remains possible after a clean end, as JS
    /// keeps its writable side open.
    pub fn handle_eof(&mut self) -> Result<(), Error> {
        self.check_live()?;
        if self.remote_ended {
            return Ok(());
        }
        if !matches!(self.phase, Phase::Open(_)) || !self.decoder.is_idle() {
            return Err(self.fail(Error::UnexpectedEnd));
        }
        self.remote_ended = true;
        self.recv_deadline = None;
        self.events.push_back(Event::End);
        Ok(())
    }

    /// Let timers fire: the receive timeout fails the stream, the keep-alive queues an empty
    /// message. Calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        self.check_live()?;
        if self.recv_deadline.is_some_and(|d| d <= now) {
            return Err(self.fail(Error::TimedOut));
        }
        if self.keep_alive_deadline.is_some_and(|d| d <= now) {
            // > function sendKeepAlive () { const empty = this.alloc(0); this.write(empty) }
            self.encrypt_message(&[], now);
        }
        Ok(())
    }

    /// Queue `message` for sending. Before the handshake completes it waits in plaintext and is
    /// encrypted right after our id+header frame, as JS buffers writes until the stream opens.
    /// An empty message is a keep-alive on the wire.
    pub fn send(&mut self, now: Instant, message: &[u8]) -> Result<(), SendError> {
        if matches!(self.phase, Phase::Failed(_)) {
            return Err(SendError::Closed);
        }
        if message.len() > MAX_MESSAGE_LEN {
            return Err(SendError::TooLarge {
                len: message.len(),
                max: MAX_MESSAGE_LEN,
            });
        }
        let size = 3 + message.len() + ABYTES;
        if self.queued > 0 && self.queued + size > self.config.max_send_buffer {
            return Err(SendError::BufferFull);
        }
        if self.push.is_some() {
            self.encrypt_message(message, now);
        } else {
            self.queued += size;
            self.pending.push_back(message.to_vec());
        }
        Ok(())
    }

    /// The next bytes to write to the transport, in order. Small frames are coalesced.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let mut out = self.transmits.pop_front()?;
        while let Some(next) = self.transmits.front() {
            if out.len() + next.len() > COALESCE {
                break;
            }
            out.extend_from_slice(next);
            self.transmits.pop_front();
        }
        self.queued = self.queued.saturating_sub(out.len());
        Some(out)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`SecretStream::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if matches!(self.phase, Phase::Failed(_)) {
            return None;
        }
        match (self.recv_deadline, self.keep_alive_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn check_live(&self) -> Result<(), Error> {
        match &self.phase {
            Phase::Failed(e) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    fn fail(&mut self, e: Error) -> Error {
        self.phase = Phase::Failed(e.clone());
        self.transmits.clear();
        self.pending.clear();
        self.queued = 0;
        self.push = None;
        self.recv_deadline = None;
        self.keep_alive_deadline = None;
        e
    }

    fn on_frame(&mut self, mut frame: Vec<u8>, now: Instant) -> Result<(), Error> {
        match &mut self.phase {
            Phase::Handshake(_) => self.handshake_step(Some(&frame), now),
            Phase::Header(rx) => {
                // > if (message.byteLength !== IDHEADERBYTES) … 'Invalid header message received'
                if frame.len() != ID_HEADER_LEN {
                    return Err(Error::InvalidHeaderLength { len: frame.len() });
                }
                let hash = self.handshake_hash.ok_or(Error::Ended)?;
                // > const expectedId = streamId(this.handshakeHash, !this.isInitiator)
                if frame[..32] != stream_id(&hash, !self.is_initiator) {
                    return Err(Error::InvalidStreamId);
                }
                let mut header = [0u8; HEADERBYTES];
                header.copy_from_slice(&frame[32..]);
                let pull = Pull::new(rx, &header);
                self.phase = Phase::Open(pull);
                self.decoder.set_max_len(self.config.max_frame_len);
                Ok(())
            }
            Phase::Open(pull) => {
                // > if (message.byteLength < ABYTES) … 'Invalid message received'
                if frame.len() < ABYTES {
                    return Err(Error::MessageTooShort);
                }
                // The tag is ignored, as sodium-secretstream's `Pull.next` does. The frame's
                // buffer becomes the message.
                let _tag = pull.pull_in_place(&mut frame)?;
                self.events.push_back(if frame.is_empty() {
                    Event::KeepAlive
                } else {
                    Event::Message(frame)
                });
                Ok(())
            }
            Phase::Failed(e) => Err(e.clone()),
        }
    }

    /// Read `frame` (if any) into the handshake, then write our next message if it is our
    /// turn; set up the stream once the handshake completes (secret-stream `lib/handshake.js`
    /// `recv`/`send`).
    fn handshake_step(&mut self, frame: Option<&[u8]>, now: Instant) -> Result<(), Error> {
        let Phase::Handshake(hs) = &mut self.phase else {
            return Ok(());
        };
        if let Some(frame) = frame {
            // Handshake payloads are ignored, as secret-stream ignores them.
            hs.read_message(frame)?;
        }
        if hs.is_my_turn() {
            let msg = hs.write_message(&[])?;
            let mut out = Vec::with_capacity(3 + msg.len());
            out.extend_from_slice(&len_prefix(msg.len()));
            out.extend_from_slice(&msg);
            // Not `queue_transmit`: `hs` still borrows the phase.
            self.queued += out.len();
            self.transmits.push_back(out);
        }
        if hs.is_complete() {
            let Phase::Handshake(hs) =
                std::mem::replace(&mut self.phase, Phase::Failed(Error::Ended))
            else {
                return Ok(());
            };
            let result = hs.into_result().ok_or(Error::Ended)?;
            self.setup(&result, now);
        }
        Ok(())
    }

    /// `_setupSecretStream`: start the push side, queue `uint24le(56) ‖ streamId ‖ header`,
    /// flush writes made before the handshake, and wait for the remote's header.
    fn setup(&mut self, result: &HandshakeResult, now: Instant) {
        let push = Push::new(result.tx());
        let mut out = Vec::with_capacity(3 + ID_HEADER_LEN);
        out.extend_from_slice(&len_prefix(ID_HEADER_LEN));
        out.extend_from_slice(&stream_id(result.hash(), self.is_initiator));
        out.extend_from_slice(push.header());
        self.queue_transmit(out);
        self.push = Some(push);
        self.remote_public_key = Some(*result.remote_public_key());
        self.handshake_hash = Some(*result.hash());
        self.phase = Phase::Header(Zeroizing::new(*result.rx()));
        self.decoder.set_max_len(ID_HEADER_LEN);
        self.keep_alive_deadline = self.config.keep_alive.map(|k| now + k);
        self.events.push_back(Event::Handshake {
            remote_public_key: *result.remote_public_key(),
            handshake_hash: *result.hash(),
        });
        while let Some(m) = self.pending.pop_front() {
            self.queued = self.queued.saturating_sub(3 + m.len() + ABYTES);
            self.encrypt_message(&m, now);
        }
    }

    /// Encrypt one message into a frame and queue it; re-arm the keep-alive
    /// (`_keepAliveTimer.refresh()` in `_write`).
    fn encrypt_message(&mut self, message: &[u8], now: Instant) {
        let Some(push) = &mut self.push else {
            return;
        };
        let mut out = Vec::with_capacity(3 + message.len() + ABYTES);
        out.extend_from_slice(&len_prefix(message.len() + ABYTES));
        push.push_to(message, TAG_MESSAGE, &mut out);
        self.queue_transmit(out);
        self.keep_alive_deadline = self.config.keep_alive.map(|k| now + k);
    }

    fn queue_transmit(&mut self, frame: Vec<u8>) {
        self.queued += frame.len();
        self.transmits.push_back(frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secretstream::Push;
    use proptest::prelude::*;

    fn kp(b: u8) -> KeyPair {
        KeyPair::from_seed(&[b; 32])
    }

    /// Two streams wired back to back with a simulated clock (quinn's `Pair`).
    struct Pair {
        a: SecretStream,
        b: SecretStream,
        now: Instant,
        a_events: Vec<Event>,
        b_events: Vec<Event>,
        /// Every transmit a sent, in order.
        a_wire: Vec<Vec<u8>>,
    }

    impl Pair {
        fn new(config: Config) -> Self {
            let now = Instant::now();
            Self {
                a: SecretStream::new(true, kp(1), config.clone(), now),
                b: SecretStream::new(false, kp(2), config, now),
                now,
                a_events: vec![],
                b_events: vec![],
                a_wire: vec![],
            }
        }

        fn drive(&mut self) {
            loop {
                let mut progress = false;
                while let Some(t) = self.a.poll_transmit() {
                    self.a_wire.push(t.clone());
                    self.b.handle_input(self.now, &t).unwrap();
                    progress = true;
                }
                while let Some(t) = self.b.poll_transmit() {
                    self.a.handle_input(self.now, &t).unwrap();
                    progress = true;
                }
                self.a_events
                    .extend(std::iter::from_fn(|| self.a.poll_event()));
                self.b_events
                    .extend(std::iter::from_fn(|| self.b.poll_event()));
                if !progress {
                    break;
                }
            }
        }

        fn advance(&mut self, d: Duration) {
            self.now += d;
            self.a.handle_timeout(self.now).unwrap();
            self.b.handle_timeout(self.now).unwrap();
            self.drive();
        }
    }

    fn messages(events: &[Event]) -> Vec<Vec<u8>> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    fn count(events: &[Event], what: &Event) -> usize {
        events.iter().filter(|e| *e == what).count()
    }

    #[test]
    fn handshake_frames_have_js_sizes() {
        let mut p = Pair::new(Config::default());
        // The initiator's first message is ready at once: uint24le(32) ‖ e.
        let first = p.a.poll_transmit().unwrap();
        assert_eq!(&first[..3], &[32, 0, 0]);
        assert_eq!(first.len(), 35);
        p.b.handle_input(p.now, &first).unwrap();
        let second = p.b.poll_transmit().unwrap();
        assert_eq!(&second[..3], &[96, 0, 0]);
        assert_eq!(second.len(), 99);
        p.a.handle_input(p.now, &second).unwrap();
        // Message 3 and the id+header frame are coalesced into one transmit.
        let third = p.a.poll_transmit().unwrap();
        assert_eq!(&third[..3], &[64, 0, 0]);
        assert_eq!(&third[67..70], &[56, 0, 0]);
        assert_eq!(third.len(), 67 + 59);
        p.b.handle_input(p.now, &third).unwrap();
        let fourth = p.b.poll_transmit().unwrap();
        assert_eq!(fourth.len(), 59);
        p.a.handle_input(p.now, &fourth).unwrap();
        assert!(p.a.is_open() && p.b.is_open());
        assert_eq!(p.a.handshake_hash(), p.b.handshake_hash());
        assert_eq!(p.a.remote_public_key(), Some(&kp(2).public_key()));
        assert_eq!(p.b.remote_public_key(), Some(&kp(1).public_key()));
        let hash = *p.a.handshake_hash().unwrap();
        assert_eq!(&third[70..102], &stream_id(&hash, true));
        assert_eq!(&fourth[3..35], &stream_id(&hash, false));
    }

    #[test]
    fn messages_of_all_sizes_both_ways() {
        let mut p = Pair::new(Config::default());
        // MAX_MESSAGE_LEN is exercised live against JS (interop-tests/tests/secret_stream.rs):
        // ChaCha20 is monomorphised into this unoptimised crate, ~2 s per 16 MiB in debug.
        let sizes = [1usize, 17, 1000, 65_536, 1 << 20];
        let bodies: Vec<Vec<u8>> = sizes
            .iter()
            .map(|&n| {
                let mut v = vec![n as u8; n];
                v[n / 2] = 0xaa;
                v
            })
            .collect();
        // Sent before the handshake: queued, then delivered in order.
        for b in &bodies {
            p.a.send(p.now, b).unwrap();
        }
        p.drive();
        for b in &bodies {
            p.b.send(p.now, b).unwrap();
            p.drive();
        }
        assert_eq!(messages(&p.b_events), bodies);
        assert_eq!(messages(&p.a_events), bodies);
        assert!(matches!(p.a_events[0], Event::Handshake { .. }));
        assert!(matches!(p.b_events[0], Event::Handshake { .. }));
    }

    #[test]
    fn empty_message_is_a_keep_alive() {
        let mut p = Pair::new(Config::default());
        p.drive();
        p.a.send(p.now, b"").unwrap();
        let t = p.a.poll_transmit().unwrap();
        assert_eq!(t.len(), 3 + ABYTES);
        p.b.handle_input(p.now, &t).unwrap();
        assert_eq!(p.b.poll_event(), Some(Event::KeepAlive));
        assert_eq!(
            p.b_events[0],
            Event::Handshake {
                remote_public_key: kp(1).public_key(),
                handshake_hash: *p.a.handshake_hash().unwrap(),
            }
        );
    }

    #[test]
    fn keep_alive_fires_when_idle_and_is_rearmed_by_sends() {
        let ka = Duration::from_millis(5000);
        let mut p = Pair::new(Config::default().with_keep_alive(ka));
        assert_eq!(p.a.poll_timeout(), None, "no keep-alive before the keys");
        p.drive();
        let armed = p.a.poll_timeout().unwrap();
        assert_eq!(armed, p.now + ka);
        p.advance(Duration::from_millis(4999));
        assert_eq!(count(&p.b_events, &Event::KeepAlive), 0);
        p.a.send(p.now, b"x").unwrap();
        p.drive();
        p.advance(Duration::from_millis(4999));
        assert_eq!(
            count(&p.b_events, &Event::KeepAlive),
            0,
            "the send re-armed it"
        );
        p.advance(Duration::from_millis(1));
        assert_eq!(count(&p.b_events, &Event::KeepAlive), 1);
        assert_eq!(count(&p.a_events, &Event::KeepAlive), 1);
        p.advance(ka);
        assert_eq!(count(&p.b_events, &Event::KeepAlive), 2);
    }

    #[test]
    fn timeout_fails_a_silent_stream_and_input_refreshes_it() {
        let t = Duration::from_secs(10);
        let now = Instant::now();
        let mut s = SecretStream::new(false, kp(2), Config::default().with_timeout(t), now);
        assert_eq!(s.poll_timeout(), Some(now + t));
        let mut i = SecretStream::new(true, kp(1), Config::default(), now);
        let first = i.poll_transmit().unwrap();
        s.handle_input(now + Duration::from_secs(9), &first)
            .unwrap();
        assert_eq!(s.handle_timeout(now + Duration::from_secs(18)), Ok(()));
        assert_eq!(
            s.handle_timeout(now + Duration::from_secs(19)),
            Err(Error::TimedOut)
        );
        assert_eq!(s.handle_input(now, b"x"), Err(Error::TimedOut));
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.poll_transmit(), None);
        assert_eq!(s.send(now, b"x"), Err(SendError::Closed));
    }

    #[test]
    fn from_handshake_starts_with_the_id_header_frame() {
        let a = kp(1);
        let b = kp(2);
        let prologue = b"dht";
        let mut hi = Handshake::new(Pattern::IK, true, a, prologue, Some(b.public_key())).unwrap();
        let mut hr = Handshake::new(Pattern::IK, false, b, prologue, None).unwrap();
        hr.read_message(&hi.write_message(b"payload").unwrap())
            .unwrap();
        hi.read_message(&hr.write_message(b"payload").unwrap())
            .unwrap();
        let now = Instant::now();
        let ri = hi.into_result().unwrap();
        let mut a = SecretStream::from_handshake(&ri, Config::default(), now);
        let mut b =
            SecretStream::from_handshake(&hr.into_result().unwrap(), Config::default(), now);
        assert!(matches!(a.poll_event(), Some(Event::Handshake { .. })));
        a.send(now, b"hello").unwrap();
        let t = a.poll_transmit().unwrap();
        assert_eq!(&t[..3], &[56, 0, 0]);
        assert_eq!(&t[3..35], &stream_id(ri.hash(), true));
        b.handle_input(now, &t).unwrap();
        let _ = b.poll_event();
        assert_eq!(b.poll_event(), Some(Event::Message(b"hello".to_vec())));
    }

    #[test]
    fn ik_inside_secret_stream() {
        let now = Instant::now();
        let hi = Handshake::new(Pattern::IK, true, kp(1), &[], Some(kp(2).public_key())).unwrap();
        let hr = Handshake::new(Pattern::IK, false, kp(2), &[], None).unwrap();
        let mut p = Pair::new(Config::default());
        p.a = SecretStream::from_noise(hi, Config::default(), now);
        p.b = SecretStream::from_noise(hr, Config::default(), now);
        p.a.send(now, b"hi").unwrap();
        p.drive();
        assert_eq!(messages(&p.b_events), vec![b"hi".to_vec()]);
        assert_eq!(p.a_wire[0].len(), 3 + 96);
    }

    /// Run a handshake to completion and return a responder that awaits the id+header, plus
    /// the initiator's pending bytes (message 3 ‖ id+header ‖ …).
    fn responder_after_handshake() -> (SecretStream, SecretStream, Vec<u8>, Instant) {
        let now = Instant::now();
        let mut a = SecretStream::new(true, kp(1), Config::default(), now);
        let mut b = SecretStream::new(false, kp(2), Config::default(), now);
        b.handle_input(now, &a.poll_transmit().unwrap()).unwrap();
        a.handle_input(now, &b.poll_transmit().unwrap()).unwrap();
        let t = a.poll_transmit().unwrap();
        (a, b, t, now)
    }

    #[test]
    fn garbage_before_the_handshake_fails_typed() {
        let now = Instant::now();
        let mut r = SecretStream::new(false, kp(2), Config::default(), now);
        // A 32-byte "ephemeral key" that is not a point: the failure shows when r answers.
        let mut bad = vec![32, 0, 0];
        bad.extend_from_slice(&[0xff; 32]);
        assert_eq!(
            r.handle_input(now, &bad),
            Err(Error::Handshake(crate::HandshakeError::InvalidPublicKey))
        );
        let mut r = SecretStream::new(false, kp(2), Config::default(), now);
        assert_eq!(
            r.handle_input(now, b"GET / HTTP/1.1\r\n"),
            // "GET" read as uint24le
            Err(Error::FrameTooLarge {
                len: 0x54_45_47,
                max: MAX_HANDSHAKE_FRAME_LEN
            })
        );
        let mut r = SecretStream::new(false, kp(2), Config::default(), now);
        assert_eq!(
            r.handle_input(now, &[0, 0, 0]),
            Err(Error::Handshake(crate::HandshakeError::MessageTooShort))
        );
        assert_eq!(r.poll_transmit(), None);
    }

    #[test]
    fn bad_header_frames_fail_typed() {
        let (_, mut b, t, now) = responder_after_handshake();
        let mut wrong_id = t.clone();
        wrong_id[70] ^= 1;
        assert_eq!(b.handle_input(now, &wrong_id), Err(Error::InvalidStreamId));

        let (_, mut b, t, now) = responder_after_handshake();
        let mut short = t[..67].to_vec();
        short.extend_from_slice(&[55, 0, 0]);
        short.extend_from_slice(&t[70..125]);
        assert_eq!(
            b.handle_input(now, &short),
            Err(Error::InvalidHeaderLength { len: 55 })
        );

        let (_, mut b, t, now) = responder_after_handshake();
        let mut long = t[..67].to_vec();
        long.extend_from_slice(&[0xff, 0xff, 0xff]);
        assert_eq!(
            b.handle_input(now, &long),
            Err(Error::InvalidHeaderLength { len: MAX_FRAME_LEN })
        );
    }

    #[test]
    fn bad_data_frames_fail_typed() {
        let (mut a, mut b, t, now) = responder_after_handshake();
        b.handle_input(now, &t).unwrap();
        a.send(now, b"hello").unwrap();
        let mut m = a.poll_transmit().unwrap();
        m[5] ^= 1;
        assert_eq!(
            b.handle_input(now, &m),
            Err(Error::Decrypt(crate::DecryptError::Authentication))
        );

        let (_, mut b, t, now) = responder_after_handshake();
        b.handle_input(now, &t).unwrap();
        let mut short = vec![16, 0, 0];
        short.extend_from_slice(&[0; 16]);
        assert_eq!(b.handle_input(now, &short), Err(Error::MessageTooShort));
        assert_eq!(
            b.handle_input(now, b""),
            Err(Error::MessageTooShort),
            "errors stick"
        );
    }

    #[test]
    fn frame_cap_applies_after_the_header() {
        let now = Instant::now();
        let cfg = Config::default().with_max_frame_len(1000);
        let mut a = SecretStream::new(true, kp(1), Config::default(), now);
        let mut b = SecretStream::new(false, kp(2), cfg, now);
        b.handle_input(now, &a.poll_transmit().unwrap()).unwrap();
        a.handle_input(now, &b.poll_transmit().unwrap()).unwrap();
        b.handle_input(now, &a.poll_transmit().unwrap()).unwrap();
        a.send(now, &[1; 1000 - ABYTES]).unwrap();
        b.handle_input(now, &a.poll_transmit().unwrap()).unwrap();
        a.send(now, &[1; 1001 - ABYTES]).unwrap();
        let t = a.poll_transmit().unwrap();
        // Refused on the prefix alone.
        assert_eq!(
            b.handle_input(now, &t[..3]),
            Err(Error::FrameTooLarge {
                len: 1001,
                max: 1000
            })
        );
    }

    #[test]
    fn send_limits() {
        let now = Instant::now();
        let cfg = Config::default().with_max_send_buffer(100);
        let mut a = SecretStream::new(true, kp(1), cfg, now);
        assert_eq!(
            a.send(now, &vec![0; MAX_MESSAGE_LEN + 1]),
            Err(SendError::TooLarge {
                len: MAX_MESSAGE_LEN + 1,
                max: MAX_MESSAGE_LEN
            })
        );
        // 35 bytes of handshake are queued; 45 + 20 fits, 46 + 20 does not.
        a.send(now, &[0; 45]).unwrap();
        assert_eq!(a.send(now, &[0; 1]), Err(SendError::BufferFull));
        while a.poll_transmit().is_some() {}
        assert_eq!(a.queued_bytes(), 65);
    }

    #[test]
    fn eof_between_frames_is_clean() {
        let mut p = Pair::new(Config::default());
        p.drive();
        assert_eq!(p.b.handle_eof(), Ok(()));
        assert_eq!(p.b.poll_event(), Some(Event::End));
        // Our side can still send.
        p.b.send(p.now, b"after").unwrap();
        assert!(p.b.poll_transmit().is_some());
        assert_eq!(p.b.handle_input(p.now, b"x"), Err(Error::Ended));

        let (_, mut b, t, now) = responder_after_handshake();
        b.handle_input(now, &t[..10]).unwrap();
        assert_eq!(b.handle_eof(), Err(Error::UnexpectedEnd));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any chunking of the remote's bytes gives the same events.
        #[test]
        fn chunking_does_not_matter(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..200), 0..5),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let now = Instant::now();
            let mut a = SecretStream::new(true, kp(1), Config::default(), now);
            let mut b = SecretStream::new(false, kp(2), Config::default(), now);
            for m in &bodies {
                a.send(now, m).unwrap();
            }
            // Handshake first (b's answers must reach a), then a's remaining bytes chunked.
            b.handle_input(now, &a.poll_transmit().unwrap()).unwrap();
            a.handle_input(now, &b.poll_transmit().unwrap()).unwrap();
            let mut wire = vec![];
            while let Some(t) = a.poll_transmit() {
                wire.extend(t);
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (wire.len() + 1)).collect();
            cuts.extend([0, wire.len()]);
            cuts.sort_unstable();
            for w in cuts.windows(2) {
                b.handle_input(now, &wire[w[0]..w[1]]).unwrap();
            }
            let got = messages(&std::iter::from_fn(|| b.poll_event()).collect::<Vec<_>>());
            prop_assert_eq!(got, bodies);
        }

        /// Random bytes in random chunks never panic and never get past the handshake.
        #[test]
        fn garbage_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            chunk in 1usize..300,
            initiator in any::<bool>(),
        ) {
            let now = Instant::now();
            let mut s = SecretStream::new(initiator, kp(2), Config::default(), now);
            for c in data.chunks(chunk) {
                if s.handle_input(now, c).is_err() {
                    prop_assert!(s.poll_transmit().is_none());
                    break;
                }
                while s.poll_transmit().is_some() {}
            }
            prop_assert!(!s.is_open());
            let _ = s.handle_eof();
        }

        /// Flipping one byte of a valid transcript never panics and never delivers a message
        /// that was not sent.
        #[test]
        fn mutated_transcript_is_caught(pos in any::<usize>(), bit in 0u8..8) {
            let bodies = vec![b"one".to_vec(), vec![7; 300]];
            let now = Instant::now();
            let mut a = SecretStream::new(true, kp(1), Config::default(), now);
            let mut b = SecretStream::new(false, kp(2), Config::default(), now);
            for m in &bodies {
                a.send(now, m).unwrap();
            }
            b.handle_input(now, &a.poll_transmit().unwrap()).unwrap();
            a.handle_input(now, &b.poll_transmit().unwrap()).unwrap();
            let mut wire = vec![];
            while let Some(t) = a.poll_transmit() {
                wire.extend(t);
            }
            let p = pos % wire.len();
            wire[p] ^= 1 << bit;
            let res = b.handle_input(now, &wire);
            let got = messages(&std::iter::from_fn(|| b.poll_event()).collect::<Vec<_>>());
            for m in &got {
                prop_assert!(bodies.contains(m));
            }
            if res.is_ok() {
                // Only a flip in a length prefix can leave the stream waiting for more bytes.
                prop_assert!(got.len() < bodies.len());
            }
        }
    }

    #[test]
    fn push_header_is_random() {
        assert_ne!(Push::new(&[1; 32]).header(), Push::new(&[1; 32]).header());
    }
}
