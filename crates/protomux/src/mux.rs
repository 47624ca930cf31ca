//! The protomux state machine (protomux 3.12.1 `index.js`, class `Protomux` and `Channel`).
//!
//! Tables, as in JS:
//! - `local[i]`: our channel with local id `i + 1` (`_local`); ids are handed out from `free`
//!   first (`_free`, last in first out), else the table grows by one;
//! - `remote[i]`: what the remote's channel id `i + 1` maps to (`_remote`): nothing, an open we
//!   have not answered (with its buffered messages), or our paired channel;
//! - `infos`: per (protocol, id) — and per alias — the opens waiting on each side (`_infos`,
//!   `incoming` / `outgoing`), which is how a local open finds the remote's and vice versa.

use std::collections::{HashMap, HashSet, VecDeque};

use peerhost_encoding::{MAX_SAFE_UINT, Reader};

use crate::frame::{self, BatchDecoder, Control, Frame, Open};
use crate::{BUFFER_OVERHEAD, ChannelHandle, CommandError, Config, Error, Event, MAX_BATCH_DEPTH};

/// A channel name: protocol and id. An empty id is no id, as in JS (`optionalBuffer` encodes
/// both as length 0, and `toKey` maps both to `protocol##`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    protocol: String,
    id: Option<Vec<u8>>,
}

impl Key {
    fn new(protocol: &str, id: Option<&[u8]>) -> Self {
        Self {
            protocol: protocol.to_owned(),
            id: id.filter(|id| !id.is_empty()).map(<[u8]>::to_vec),
        }
    }
}

type InfoId = u64;

/// JS `info`: the opens waiting for a partner under one name.
#[derive(Debug)]
struct Info {
    /// The keys this info is registered under: the protocol first, then its aliases.
    keys: Vec<Key>,
    /// Our channels of this name that are open (JS `info.opened`).
    opened: usize,
    /// Remote ids of remote opens we have not answered (JS `info.incoming`).
    incoming: VecDeque<u64>,
    /// Local ids of our opens the remote has not answered (JS `info.outgoing`), oldest first.
    outgoing: VecDeque<u64>,
}

#[derive(Debug)]
enum LocalSlot {
    /// On the free list (or never used).
    Free,
    /// A live channel.
    Open(Channel),
    /// Closed by us before the remote answered our open: the id stays reserved until the
    /// remote's open or reject arrives ("we need to wait for the ack", JS `_close`).
    Closed { info: InfoId },
}

#[derive(Debug)]
struct Channel {
    serial: u64,
    info: InfoId,
    protocol: String,
    id: Option<Vec<u8>>,
    /// The remote's id for this channel; 0 until the remote opened it.
    remote_id: u64,
}

#[derive(Debug)]
enum RemoteSlot {
    Empty,
    /// A remote open we have not answered.
    Pending(Box<Pending>),
    /// Paired with our channel.
    Paired {
        local_id: u64,
    },
}

#[derive(Debug)]
struct Pending {
    info: InfoId,
    protocol: String,
    id: Option<Vec<u8>>,
    handshake: Vec<u8>,
    /// What this open counts against `max_pending_bytes` (its messages count separately).
    cost: usize,
    /// Messages that arrived before we answered: (type, payload).
    messages: Vec<(u64, Vec<u8>)>,
}

/// What [`Mux::open_with`] opens: a protocol, an id, a handshake, and JS's `createChannel`
/// options that matter on the wire.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions<'a> {
    protocol: &'a str,
    aliases: &'a [&'a str],
    id: Option<&'a [u8]>,
    handshake: &'a [u8],
    unique: bool,
}

impl<'a> OpenOptions<'a> {
    /// Open `protocol` with no id, an empty handshake, no aliases, `unique` (the JS defaults).
    pub fn new(protocol: &'a str) -> Self {
        Self {
            protocol,
            aliases: &[],
            id: None,
            handshake: &[],
            unique: true,
        }
    }

    /// The channel id within the protocol (`None` or empty: no id).
    pub fn id(mut self, id: Option<&'a [u8]>) -> Self {
        self.id = id;
        self
    }

    /// The handshake bytes sent after the id in our open.
    pub fn handshake(mut self, handshake: &'a [u8]) -> Self {
        self.handshake = handshake;
        self
    }

    /// Other protocol names the remote may use to open this channel (hypercore opens
    /// `hypercore/alpha` with the alias `hypercore`). As in JS, aliases are registered only when
    /// the name is first seen.
    pub fn aliases(mut self, aliases: &'a [&'a str]) -> Self {
        self.aliases = aliases;
        self
    }

    /// With `true` (the default), opening fails with [`CommandError::AlreadyOpen`] while a
    /// channel of this name is open (JS `unique`).
    pub fn unique(mut self, unique: bool) -> Self {
        self.unique = unique;
        self
    }
}

/// One protomux connection, sans-IO.
///
/// # Driving it
/// - **Inputs**: [`handle_input`](Self::handle_input) with each message read from the stream
///   (one secret-stream message = one frame); [`handle_stream_closed`](Self::handle_stream_closed)
///   when the stream ends.
/// - **Commands**: [`open`](Self::open), [`send`](Self::send), [`close`](Self::close),
///   [`reject`](Self::reject), [`pair`](Self::pair), [`cork`](Self::cork) /
///   [`uncork`](Self::uncork).
/// - **Outputs**: after every input or command, drain [`poll_transmit`](Self::poll_transmit)
///   (write each frame as one stream message, in order) and [`poll_event`](Self::poll_event).
///
/// The mux never holds more than its [`Config`] allows of what the remote sends, provided the
/// driver drains both queues after each input and stops reading while
/// [`is_paused`](Self::is_paused) (JS pauses the stream there). What one input can add to the
/// queues is bounded by that input's size.
///
/// # Pairing
/// A channel is named by its protocol and optional id. Each side sends its own open; the
/// channel is open when both have (event [`Event::ChannelOpened`]):
/// - if we opened first, the remote's open of the same name pairs with our oldest waiting open;
/// - if the remote opened first and we [`pair`](Self::pair)ed the name, we get
///   [`Event::RemoteOpen`]; our later [`open`](Self::open) of that name answers it, or
///   [`reject`](Self::reject) refuses it;
/// - if the remote opened first and nothing is paired, the open is rejected at once (JS does the
///   same when no `pair` callback is registered).
#[derive(Debug)]
pub struct Mux {
    config: Config,
    local: Vec<LocalSlot>,
    /// Indices into `local` (local id - 1) ready for reuse (JS `_free`).
    free: Vec<usize>,
    remote: Vec<RemoteSlot>,
    infos: HashMap<Key, InfoId>,
    info_store: HashMap<InfoId, Info>,
    next_info: InfoId,
    /// Names the app wants [`Event::RemoteOpen`] for (JS `_notify`).
    pairs: HashSet<Key>,
    corked: usize,
    batch: Option<frame::BatchEncoder>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    /// Unanswered remote opens.
    backlog: usize,
    /// JS `_buffered`: buffered messages, 512 + length each.
    buffered: usize,
    /// `buffered` plus the unanswered opens themselves.
    pending_bytes: usize,
    next_serial: u64,
    closed: bool,
}

impl Default for Mux {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl Mux {
    /// A mux with the given limits.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            local: Vec::new(),
            free: Vec::new(),
            remote: Vec::new(),
            infos: HashMap::new(),
            info_store: HashMap::new(),
            next_info: 0,
            pairs: HashSet::new(),
            corked: 0,
            batch: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            backlog: 0,
            buffered: 0,
            pending_bytes: 0,
            next_serial: 0,
            closed: false,
        }
    }

    // ----------------------------------------------------------------------------- outputs

    /// The next frame to write to the stream, as one message.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ------------------------------------------------------------------------------ status

    /// Whether the driver should stop reading from the stream: messages buffered for
    /// unanswered remote opens exceed [`Config::max_buffered`] (JS `_pauseMaybe`). Answering
    /// those opens ([`open`](Self::open) / [`reject`](Self::reject)) resumes it.
    pub fn is_paused(&self) -> bool {
        self.buffered > self.config.max_buffered
    }

    /// Whether the mux has shut down (after an input error or
    /// [`handle_stream_closed`](Self::handle_stream_closed)).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether no local id is in use or reserved (JS `isIdle`).
    pub fn is_idle(&self) -> bool {
        self.local.len() == self.free.len()
    }

    /// Whether a channel of this name is open on our side (JS `opened({ protocol, id })`).
    pub fn opened(&self, protocol: &str, id: Option<&[u8]>) -> bool {
        self.infos
            .get(&Key::new(protocol, id))
            .and_then(|i| self.info_store.get(i))
            .is_some_and(|info| info.opened > 0)
    }

    /// Whether `channel` is still open (not closed, rejected or shut down).
    pub fn is_open(&self, channel: ChannelHandle) -> bool {
        self.channel(channel).is_some()
    }

    // ------------------------------------------------------------------------------ inputs

    /// Handle one message read from the stream.
    ///
    /// Empty messages are ignored (JS `_ondata`). An error means the remote broke the protocol
    /// or a bound: the mux has shut down and the connection must end.
    pub fn handle_input(&mut self, msg: &[u8]) -> Result<(), Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        if msg.is_empty() {
            return Ok(());
        }
        let result = Frame::decode(msg)
            .map_err(Error::from)
            .and_then(|f| self.dispatch(f, 0));
        if result.is_err() {
            self.shutdown();
        }
        result
    }

    /// The stream ended or failed: close every channel with `remote: true` (JS `_shutdown`) and
    /// refuse further input and commands.
    pub fn handle_stream_closed(&mut self) {
        self.shutdown();
    }

    /// JS `_decode`: route one frame (or batch entry) by channel.
    fn dispatch(&mut self, f: Frame<'_>, depth: usize) -> Result<(), Error> {
        if f.channel == 0 {
            return self.on_control(f.message_type, f.payload, depth);
        }
        // > if the channel is closed ignore - could just be a pipeline message...
        let Some(slot) = index(f.channel).and_then(|i| self.remote.get_mut(i)) else {
            return Ok(());
        };
        match slot {
            RemoteSlot::Empty => Ok(()),
            RemoteSlot::Paired { local_id } => {
                if let Some(channel) = handle_of(&self.local, *local_id) {
                    self.events.push_back(Event::Message {
                        channel,
                        message_type: f.message_type,
                        payload: f.payload.to_vec(),
                    });
                }
                Ok(())
            }
            RemoteSlot::Pending(p) => {
                // JS `_bufferMessage`: held until we answer the open.
                let cost = BUFFER_OVERHEAD + f.payload.len();
                if self.pending_bytes + cost > self.config.max_pending_bytes {
                    return Err(Error::BufferOverflow);
                }
                p.messages.push((f.message_type, f.payload.to_vec()));
                self.buffered += cost;
                self.pending_bytes += cost;
                Ok(())
            }
        }
    }

    /// JS `_oncontrolsession`.
    fn on_control(&mut self, message_type: u64, payload: &[u8], depth: usize) -> Result<(), Error> {
        match Control::decode(message_type, payload)? {
            Control::Batch(batch) => self.on_batch(batch, depth),
            Control::Open(open) => self.on_open(&open),
            Control::Reject { remote_id } => self.on_reject(remote_id),
            Control::Close { local_id } => {
                self.on_close(local_id);
                Ok(())
            }
            // Unknown control types are ignored, as in JS.
            _ => Ok(()),
        }
    }

    /// JS `_onbatch`.
    fn on_batch(&mut self, mut batch: BatchDecoder<'_>, depth: usize) -> Result<(), Error> {
        if depth >= MAX_BATCH_DEPTH {
            return Err(Error::BatchTooDeep);
        }
        // > if batch contains more than one message, cork it so we reply back with a batch
        // JS uncorks after the handlers' promises settle; our handlers are the events the app
        // reads later, so the replies we make ourselves (rejects) are what gets batched.
        let mut corked = false;
        while let Some((channel, entry)) = batch.next_entry()? {
            if !corked && batch.has_more() {
                self.cork();
                corked = true;
            }
            let f = Frame::decode_on(channel, &mut Reader::new(entry))?;
            self.dispatch(f, depth + 1)?;
        }
        if corked {
            self.uncork();
        }
        Ok(())
    }

    /// JS `_onopensession`.
    fn on_open(&mut self, open: &Open<'_>) -> Result<(), Error> {
        let remote_id = open.local_id;
        // > remote tried to open the control session - auto reject for now
        // JS then throws inside `_rejectSession(0)` (its id argument is missing), which ends
        // the connection. We end it with a clear error.
        if remote_id == 0 {
            return Err(Error::OpenControlChannel);
        }
        // > allow the remote to grow the ids by one
        let invalid = Error::InvalidOpen { remote_id };
        let idx = index(remote_id).ok_or(invalid.clone())?;
        if idx == self.remote.len() {
            if self.remote.len() >= self.config.max_channels {
                return Err(Error::TooManyChannels);
            }
            self.remote.push(RemoteSlot::Empty);
        }
        if !matches!(self.remote.get(idx), Some(RemoteSlot::Empty)) {
            return Err(invalid);
        }

        let key = Key::new(&open.protocol, open.id);
        let info_id = self.info_for(&key, &[]);

        // We opened first: pair with our oldest open of this name.
        let waiting = self
            .info_store
            .get_mut(&info_id)
            .and_then(|info| info.outgoing.pop_front());
        if let Some(local_id) = waiting {
            let Some(LocalSlot::Open(ch)) = index(local_id).and_then(|i| self.local.get_mut(i))
            else {
                // > we already closed the channel - ignore
                // JS frees the id and stops there. The remote now has a live channel that we
                // closed (it may have ignored our close while our open was pending there), and
                // it would refuse our next open under this id ('Invalid open message'). We
                // repeat the close, which it applies now; a remote that already applied it
                // ignores it (its slot for this id is empty). See protocol/protomux.md.
                if let Some(i) = index(local_id) {
                    if let Some(slot) = self.local.get_mut(i) {
                        *slot = LocalSlot::Free;
                    }
                    self.free.push(i);
                }
                self.write0(frame::encode_close(local_id));
                self.gc(info_id);
                return Ok(());
            };
            ch.remote_id = remote_id;
            let event = Event::ChannelOpened {
                channel: ChannelHandle {
                    local_id,
                    serial: ch.serial,
                },
                protocol: ch.protocol.clone(),
                id: ch.id.clone(),
                handshake: open.handshake.to_vec(),
            };
            self.remote[idx] = RemoteSlot::Paired { local_id };
            self.events.push_back(event);
            return Ok(());
        }

        if !self.is_paired(&key) {
            // JS `_requestSession` with no `notify`: rejected before the open handler returns.
            self.write0(frame::encode_reject(remote_id));
            self.gc(info_id);
            return Ok(());
        }

        if self.backlog >= self.config.max_backlog {
            return Err(Error::BacklogExceeded);
        }
        let id_len = open.id.map_or(0, <[u8]>::len);
        let cost = BUFFER_OVERHEAD + open.protocol.len() + id_len + open.handshake.len();
        if self.pending_bytes + cost > self.config.max_pending_bytes {
            return Err(Error::BufferOverflow);
        }
        self.backlog += 1;
        self.pending_bytes += cost;
        if let Some(info) = self.info_store.get_mut(&info_id) {
            info.incoming.push_back(remote_id);
        }
        self.remote[idx] = RemoteSlot::Pending(Box::new(Pending {
            info: info_id,
            protocol: key.protocol.clone(),
            id: key.id.clone(),
            handshake: open.handshake.to_vec(),
            cost,
            messages: Vec::new(),
        }));
        self.events.push_back(Event::RemoteOpen {
            protocol: key.protocol,
            id: key.id,
            handshake: open.handshake.to_vec(),
        });
        Ok(())
    }

    /// JS `_onrejectsession`: the remote refused our open `local_id`.
    fn on_reject(&mut self, local_id: u64) -> Result<(), Error> {
        let invalid = Error::InvalidReject { local_id };
        let i = index(local_id)
            .filter(|i| *i < self.local.len())
            .ok_or(invalid.clone())?;
        // JS looks for the id among every name's waiting opens; an id is there exactly when its
        // slot is a channel not yet paired, or a channel we closed before it was answered.
        let info_id = match &self.local[i] {
            LocalSlot::Open(ch) if ch.remote_id == 0 => ch.info,
            LocalSlot::Closed { info } => *info,
            _ => return Err(invalid),
        };
        if let Some(info) = self.info_store.get_mut(&info_id) {
            info.outgoing.retain(|id| *id != local_id);
        }
        self.free.push(i);
        if let LocalSlot::Open(ch) = std::mem::replace(&mut self.local[i], LocalSlot::Free) {
            if let Some(info) = self.info_store.get_mut(&info_id) {
                info.opened = info.opened.saturating_sub(1);
            }
            self.events.push_back(Event::Rejected {
                channel: ChannelHandle {
                    local_id,
                    serial: ch.serial,
                },
                protocol: ch.protocol,
                id: ch.id,
            });
        }
        self.gc(info_id);
        Ok(())
    }

    /// JS `_onclosesession`: the remote closed its channel `remote_id`.
    fn on_close(&mut self, remote_id: u64) {
        // Id 0, ids out of range and empty slots are ignored, as in JS.
        let Some(slot) = index(remote_id).and_then(|i| self.remote.get(i)) else {
            return;
        };
        match slot {
            RemoteSlot::Empty => {}
            RemoteSlot::Paired { local_id } => {
                let local_id = *local_id;
                self.close_local(local_id, true);
            }
            RemoteSlot::Pending(_) => {
                // JS ignores this close and keeps the open pending; answered later it becomes a
                // channel the remote has closed, and the remote's next open under this id is
                // refused. We withdraw the open and answer it with a reject, which the remote
                // expects (it keeps the id reserved until our open or reject arrives).
                let Some(p) = self.take_pending(remote_id) else {
                    return;
                };
                self.write0(frame::encode_reject(remote_id));
                self.gc(p.info);
                self.events.push_back(Event::RemoteOpenCancelled {
                    protocol: p.protocol,
                    id: p.id,
                });
            }
        }
    }

    // ---------------------------------------------------------------------------- commands

    /// Open a channel: `open_with(OpenOptions::new(protocol).id(id).handshake(handshake))`.
    pub fn open(
        &mut self,
        protocol: &str,
        id: Option<&[u8]>,
        handshake: &[u8],
    ) -> Result<ChannelHandle, CommandError> {
        self.open_with(OpenOptions::new(protocol).id(id).handshake(handshake))
    }

    /// Open a channel (JS `createChannel` + `channel.open(handshake)`).
    ///
    /// If the remote's open of this name is waiting (an [`Event::RemoteOpen`]), this answers
    /// it: [`Event::ChannelOpened`] and the messages that arrived meanwhile are queued before
    /// this returns. Otherwise the channel opens when the remote's open arrives. Messages may be
    /// sent at once either way, as in JS.
    pub fn open_with(&mut self, opts: OpenOptions<'_>) -> Result<ChannelHandle, CommandError> {
        if self.closed {
            return Err(CommandError::Closed);
        }
        let key = Key::new(opts.protocol, opts.id);
        let info_id = self.info_for(&key, opts.aliases);
        let opened = self.info_store.get(&info_id).map_or(0, |i| i.opened);
        if opts.unique && opened > 0 {
            return Err(CommandError::AlreadyOpen);
        }
        // > const id = this._mux._free.length > 0 ? this._mux._free.pop() : this._mux._local.push(null) - 1
        let i = match self.free.pop() {
            Some(i) => i,
            None if self.local.len() < self.config.max_channels => {
                self.local.push(LocalSlot::Free);
                self.local.len() - 1
            }
            None => {
                self.gc(info_id);
                return Err(CommandError::TooManyChannels);
            }
        };
        let local_id = i as u64 + 1;
        let serial = self.next_serial;
        self.next_serial += 1;
        let channel = ChannelHandle { local_id, serial };

        // A waiting remote open of this name, if any (JS `info.incoming.shift()`).
        if let Some(info) = self.info_store.get_mut(&info_id) {
            info.opened += 1;
        }
        let mut pending = None;
        while let Some(remote_id) = self
            .info_store
            .get(&info_id)
            .and_then(|i| i.incoming.front().copied())
        {
            if let Some(p) = self.take_pending(remote_id) {
                pending = Some((remote_id, p));
                break;
            }
            // Not waiting any more (cannot happen: `take_pending` keeps the tables in step).
            if let Some(info) = self.info_store.get_mut(&info_id) {
                info.incoming.pop_front();
            }
        }
        let remote_id = pending.as_ref().map_or(0, |(r, _)| *r);
        match self.info_store.get_mut(&info_id) {
            Some(info) if remote_id == 0 => info.outgoing.push_back(local_id),
            _ => {}
        }
        self.local[i] = LocalSlot::Open(Channel {
            serial,
            info: info_id,
            protocol: key.protocol.clone(),
            id: key.id.clone(),
            remote_id,
        });

        let open = Open {
            local_id,
            protocol: key.protocol.as_str().into(),
            id: key.id.as_deref(),
            handshake: opts.handshake,
        };
        self.write0(open.encode());

        if let Some((remote_id, p)) = pending {
            if let Some(slot) = index(remote_id).and_then(|r| self.remote.get_mut(r)) {
                *slot = RemoteSlot::Paired { local_id };
            }
            self.events.push_back(Event::ChannelOpened {
                channel,
                protocol: key.protocol,
                id: key.id,
                handshake: p.handshake,
            });
            // JS `_drain`: the messages that came before our answer, in order.
            for (message_type, payload) in p.messages {
                self.events.push_back(Event::Message {
                    channel,
                    message_type,
                    payload,
                });
            }
        }
        Ok(channel)
    }

    /// Send a message of `message_type` on `channel` (JS `channel.messages[type].send`). While
    /// corked it joins the batch. Allowed as soon as `open` returned, as in JS.
    pub fn send(
        &mut self,
        channel: ChannelHandle,
        message_type: u64,
        payload: &[u8],
    ) -> Result<(), CommandError> {
        if self.closed {
            return Err(CommandError::Closed);
        }
        if message_type > MAX_SAFE_UINT {
            return Err(CommandError::TypeOutOfRange);
        }
        if self.channel(channel).is_none() {
            return Err(CommandError::UnknownChannel);
        }
        if let Some(batch) = &mut self.batch {
            let entry = frame::encode_entry(message_type, payload);
            if let Some(full) = batch.push(channel.local_id, entry) {
                self.transmits.push_back(full);
            }
        } else {
            let f = Frame {
                channel: channel.local_id,
                message_type,
                payload,
            };
            self.transmits.push_back(f.encode());
        }
        Ok(())
    }

    /// Close `channel` (JS `channel.close()`): send a close and queue
    /// [`Event::ChannelClosed`] `{ remote: false }`. Returns `false` if the channel was not open
    /// (JS ignores a second close too).
    pub fn close(&mut self, channel: ChannelHandle) -> bool {
        if self.closed || self.channel(channel).is_none() {
            return false;
        }
        self.close_local(channel.local_id, false);
        self.write0(frame::encode_close(channel.local_id));
        true
    }

    /// Refuse every waiting remote open of this name (JS rejects them when the `pair` callback
    /// returns without opening). Returns how many were refused.
    pub fn reject(&mut self, protocol: &str, id: Option<&[u8]>) -> usize {
        if self.closed {
            return 0;
        }
        let key = Key::new(protocol, id);
        let mut infos: Vec<InfoId> = self
            .info_store
            .iter()
            .filter(|(_, info)| info.keys.contains(&key))
            .map(|(id, _)| *id)
            .collect();
        infos.sort_unstable();
        let mut n = 0;
        for info_id in infos {
            while let Some(remote_id) = self
                .info_store
                .get(&info_id)
                .and_then(|i| i.incoming.front().copied())
            {
                // `take_pending` also removes the id from `incoming`.
                if self.take_pending(remote_id).is_none() {
                    if let Some(info) = self.info_store.get_mut(&info_id) {
                        info.incoming.pop_front();
                    }
                    continue;
                }
                self.write0(frame::encode_reject(remote_id));
                n += 1;
            }
            self.gc(info_id);
        }
        n
    }

    /// Ask for [`Event::RemoteOpen`] when the remote opens this name first (JS `mux.pair`).
    /// With `id: None` it covers every id of the protocol.
    pub fn pair(&mut self, protocol: &str, id: Option<&[u8]>) {
        self.pairs.insert(Key::new(protocol, id));
    }

    /// Undo [`pair`](Self::pair) (JS `mux.unpair`). Opens already reported stay waiting.
    pub fn unpair(&mut self, protocol: &str, id: Option<&[u8]>) {
        self.pairs.remove(&Key::new(protocol, id));
    }

    /// Start batching (JS `mux.cork()`, counted): until the matching [`uncork`](Self::uncork),
    /// opens, closes, rejects and messages are collected into batch frames.
    pub fn cork(&mut self) {
        if self.closed {
            return;
        }
        self.corked += 1;
        if self.corked == 1 {
            self.batch = Some(frame::BatchEncoder::new(self.config.max_batch));
        }
    }

    /// End one [`cork`](Self::cork); the last one queues the batch frame. An uncork without a
    /// cork does nothing (JS would go negative and stop batching for good).
    pub fn uncork(&mut self) {
        if self.corked == 0 {
            return;
        }
        self.corked -= 1;
        if self.corked == 0 {
            if let Some(frame) = self.batch.take().and_then(frame::BatchEncoder::finish) {
                self.transmits.push_back(frame);
            }
        }
    }

    // ----------------------------------------------------------------------------- helpers

    fn channel(&self, handle: ChannelHandle) -> Option<&Channel> {
        match index(handle.local_id).and_then(|i| self.local.get(i)) {
            Some(LocalSlot::Open(ch)) if ch.serial == handle.serial => Some(ch),
            _ => None,
        }
    }

    /// JS `_write0`: a control frame, or its entry in the batch (without the leading `00`).
    fn write0(&mut self, frame: Vec<u8>) {
        match &mut self.batch {
            Some(batch) => {
                if let Some(full) = batch.push(0, frame[1..].to_vec()) {
                    self.transmits.push_back(full);
                }
            }
            None => self.transmits.push_back(frame),
        }
    }

    /// JS `Channel#_close(isRemote)`.
    fn close_local(&mut self, local_id: u64, remote: bool) {
        let Some(i) = index(local_id).filter(|i| *i < self.local.len()) else {
            return;
        };
        let LocalSlot::Open(ch) = std::mem::replace(&mut self.local[i], LocalSlot::Free) else {
            return;
        };
        if let Some(info) = self.info_store.get_mut(&ch.info) {
            info.opened = info.opened.saturating_sub(1);
        }
        if ch.remote_id > 0 {
            // > If remote has acked, we can reuse the local id now
            if let Some(slot) = index(ch.remote_id).and_then(|r| self.remote.get_mut(r)) {
                *slot = RemoteSlot::Empty;
            }
            self.free.push(i);
        } else {
            // > otherwise, we need to wait for the "ack" to arrive
            self.local[i] = LocalSlot::Closed { info: ch.info };
        }
        self.gc(ch.info);
        self.events.push_back(Event::ChannelClosed {
            channel: ChannelHandle {
                local_id,
                serial: ch.serial,
            },
            remote,
        });
    }

    /// Remove the unanswered remote open `remote_id` from every table and from the counters.
    fn take_pending(&mut self, remote_id: u64) -> Option<Pending> {
        let slot = index(remote_id).and_then(|i| self.remote.get_mut(i))?;
        let RemoteSlot::Pending(p) = std::mem::replace(slot, RemoteSlot::Empty) else {
            return None;
        };
        if let Some(info) = self.info_store.get_mut(&p.info) {
            info.incoming.retain(|r| *r != remote_id);
        }
        let messages: usize = p
            .messages
            .iter()
            .map(|(_, m)| BUFFER_OVERHEAD + m.len())
            .sum();
        self.buffered -= messages;
        self.pending_bytes -= messages + p.cost;
        self.backlog -= 1;
        Some(*p)
    }

    fn is_paired(&self, key: &Key) -> bool {
        self.pairs.contains(key)
            || (key.id.is_some()
                && self.pairs.contains(&Key {
                    protocol: key.protocol.clone(),
                    id: None,
                }))
    }

    /// JS `_get(protocol, id, aliases)`.
    fn info_for(&mut self, key: &Key, aliases: &[&str]) -> InfoId {
        if let Some(id) = self.infos.get(key) {
            return *id;
        }
        let info_id = self.next_info;
        self.next_info += 1;
        let mut keys = vec![key.clone()];
        self.infos.insert(key.clone(), info_id);
        for alias in aliases {
            let k = Key {
                protocol: (*alias).to_owned(),
                id: key.id.clone(),
            };
            self.infos.insert(k.clone(), info_id);
            keys.push(k);
        }
        self.info_store.insert(
            info_id,
            Info {
                keys,
                opened: 0,
                incoming: VecDeque::new(),
                outgoing: VecDeque::new(),
            },
        );
        info_id
    }

    /// JS `_gc(info)`: forget a name nothing waits on.
    fn gc(&mut self, info_id: InfoId) {
        let unused = self
            .info_store
            .get(&info_id)
            .is_some_and(|i| i.opened == 0 && i.incoming.is_empty() && i.outgoing.is_empty());
        if !unused {
            return;
        }
        if let Some(info) = self.info_store.remove(&info_id) {
            for k in info.keys {
                if self.infos.get(&k) == Some(&info_id) {
                    self.infos.remove(&k);
                }
            }
        }
    }

    /// JS `_shutdown`: every open channel closes with `remote: true`; everything is dropped.
    fn shutdown(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        for (i, slot) in self.local.iter().enumerate() {
            if let LocalSlot::Open(ch) = slot {
                self.events.push_back(Event::ChannelClosed {
                    channel: ChannelHandle {
                        local_id: i as u64 + 1,
                        serial: ch.serial,
                    },
                    remote: true,
                });
            }
        }
        self.local = Vec::new();
        self.free = Vec::new();
        self.remote = Vec::new();
        self.infos = HashMap::new();
        self.info_store = HashMap::new();
        self.pairs = HashSet::new();
        self.corked = 0;
        self.batch = None;
        self.transmits = VecDeque::new();
        self.backlog = 0;
        self.buffered = 0;
        self.pending_bytes = 0;
    }
}

/// A 1-based wire id as a table index; `None` for 0 or an id beyond `usize`.
fn index(id: u64) -> Option<usize> {
    id.checked_sub(1).and_then(|i| usize::try_from(i).ok())
}

fn handle_of(local: &[LocalSlot], local_id: u64) -> Option<ChannelHandle> {
    match index(local_id).and_then(|i| local.get(i)) {
        Some(LocalSlot::Open(ch)) => Some(ChannelHandle {
            local_id,
            serial: ch.serial,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(m: &mut Mux) -> Vec<String> {
        std::iter::from_fn(|| m.poll_transmit())
            .map(hex::encode)
            .collect()
    }

    fn events(m: &mut Mux) -> Vec<Event> {
        std::iter::from_fn(|| m.poll_event()).collect()
    }

    fn input(m: &mut Mux, h: &str) -> Result<(), Error> {
        m.handle_input(&hex::decode(h).unwrap())
    }

    /// Move frames both ways until both are quiet.
    fn link(a: &mut Mux, b: &mut Mux) {
        loop {
            let mut moved = false;
            while let Some(f) = a.poll_transmit() {
                b.handle_input(&f).unwrap();
                moved = true;
            }
            while let Some(f) = b.poll_transmit() {
                a.handle_input(&f).unwrap();
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    fn opened(e: &Event) -> Option<(ChannelHandle, Vec<u8>)> {
        match e {
            Event::ChannelOpened {
                channel, handshake, ..
            } => Some((*channel, handshake.clone())),
            _ => None,
        }
    }

    // The expected frames in the next tests are what protomux 3.12.1 writes in the same
    // situation (interop-tests/protomux/frames.js; the interop test replays all of them).

    #[test]
    fn open_close_and_message_frames_match_js() {
        let mut m = Mux::default();
        let a = m.open("p", None, b"").unwrap();
        m.send(a, 2, b"hi").unwrap();
        assert!(m.close(a));
        assert!(!m.close(a), "a second close does nothing");
        assert_eq!(out(&mut m), ["000101017000", "01026869", "000301"]);
        assert_eq!(
            events(&mut m),
            [Event::ChannelClosed {
                channel: a,
                remote: false
            }]
        );
        assert_eq!(m.send(a, 0, b""), Err(CommandError::UnknownChannel));
    }

    #[test]
    fn unpaired_remote_open_is_rejected_at_once() {
        let mut m = Mux::default();
        input(&mut m, "000101017000").unwrap(); // open from remote 1, "p", no id
        assert_eq!(out(&mut m), ["000201"]);
        assert!(events(&mut m).is_empty());
        // The id is free again: the remote may reuse it.
        input(&mut m, "000101017000").unwrap();
        assert_eq!(out(&mut m), ["000201"]);
    }

    #[test]
    fn batch_reply_is_one_batch_like_js() {
        let mut m = Mux::default();
        input(&mut m, "000000050101017000050102017100").unwrap();
        assert_eq!(out(&mut m), ["000000020201020202"]);
    }

    #[test]
    fn corked_frames_match_js() {
        let mut m = Mux::default();
        m.cork();
        let a = m.open("p", None, b"").unwrap();
        m.send(a, 0, b"x").unwrap();
        let b = m.open("p", Some(b"b"), b"").unwrap();
        m.send(b, 1, b"yz").unwrap();
        m.send(a, 0, b"").unwrap();
        assert!(out(&mut m).is_empty());
        m.uncork();
        assert_eq!(
            out(&mut m),
            ["000000050101017000000102007800000601020170016200020301797a00010100"]
        );
    }

    #[test]
    fn nested_corks_count() {
        let mut m = Mux::default();
        m.uncork(); // no cork: nothing happens
        m.cork();
        m.cork();
        let a = m.open("p", None, b"").unwrap();
        m.uncork();
        m.send(a, 0, b"").unwrap();
        assert!(out(&mut m).is_empty());
        m.uncork();
        assert_eq!(
            out(&mut m),
            ["000000050101017000000101 00".replace(' ', "")]
        );
        m.uncork();
        m.send(a, 0, b"").unwrap();
        assert_eq!(out(&mut m), ["0100"], "not corked any more");
    }

    #[test]
    fn we_open_first() {
        let (mut a, mut b) = (Mux::default(), Mux::default());
        b.pair("chat", Some(b"room"));
        let ca = a.open("chat", Some(b"room"), b"hello").unwrap();
        a.send(ca, 3, b"early").unwrap();
        link(&mut a, &mut b);
        let ev = events(&mut b);
        assert_eq!(
            ev,
            [Event::RemoteOpen {
                protocol: "chat".into(),
                id: Some(b"room".to_vec()),
                handshake: b"hello".to_vec()
            }]
        );
        // The early message waits for our answer.
        let cb = b.open("chat", Some(b"room"), b"hi back").unwrap();
        let ev = events(&mut b);
        assert_eq!(opened(&ev[0]), Some((cb, b"hello".to_vec())));
        assert_eq!(
            ev[1],
            Event::Message {
                channel: cb,
                message_type: 3,
                payload: b"early".to_vec()
            }
        );
        link(&mut a, &mut b);
        assert_eq!(opened(&events(&mut a)[0]), Some((ca, b"hi back".to_vec())));
        assert!(a.opened("chat", Some(b"room")));
        assert_eq!(
            a.open("chat", Some(b"room"), b""),
            Err(CommandError::AlreadyOpen)
        );

        b.close(cb);
        link(&mut a, &mut b);
        assert_eq!(
            events(&mut a),
            [Event::ChannelClosed {
                channel: ca,
                remote: true
            }]
        );
        assert!(a.is_idle() && b.is_idle());
        assert!(a.infos.is_empty() && b.infos.is_empty() && a.info_store.is_empty());
    }

    #[test]
    fn crossing_opens_pair() {
        let (mut a, mut b) = (Mux::default(), Mux::default());
        let ca = a.open("x", None, b"A").unwrap();
        let cb = b.open("x", None, b"B").unwrap();
        link(&mut a, &mut b);
        assert_eq!(opened(&events(&mut a)[0]), Some((ca, b"B".to_vec())));
        assert_eq!(opened(&events(&mut b)[0]), Some((cb, b"A".to_vec())));
    }

    #[test]
    fn aliases_pair_like_hypercore() {
        let (mut a, mut b) = (Mux::default(), Mux::default());
        let dk = [9u8; 32];
        let ca = a
            .open_with(
                OpenOptions::new("hypercore/alpha")
                    .aliases(&["hypercore"])
                    .id(Some(&dk)),
            )
            .unwrap();
        // A peer that opens with the alias and accepts the new name as its alias.
        b.open_with(
            OpenOptions::new("hypercore")
                .aliases(&["hypercore/alpha"])
                .id(Some(&dk)),
        )
        .unwrap();
        link(&mut a, &mut b);
        let ev = events(&mut a);
        assert!(
            matches!(&ev[0], Event::ChannelOpened { channel, protocol, .. }
            if *channel == ca && protocol == "hypercore/alpha")
        );
    }

    #[test]
    fn remote_rejects_our_open() {
        let (mut a, mut b) = (Mux::default(), Mux::default());
        let ca = a.open("nobody", None, b"").unwrap();
        link(&mut a, &mut b);
        assert_eq!(
            events(&mut a),
            [Event::Rejected {
                channel: ca,
                protocol: "nobody".into(),
                id: None
            }]
        );
        assert!(!a.is_open(ca) && a.is_idle());
        // The id is reused, and the old handle does not reach the new channel.
        let c2 = a.open("nobody", None, b"").unwrap();
        assert_eq!(c2.local_id(), ca.local_id());
        assert_eq!(a.send(ca, 0, b""), Err(CommandError::UnknownChannel));
        assert!(a.is_open(c2));
    }

    #[test]
    fn explicit_reject_of_a_paired_name() {
        let (mut a, mut b) = (Mux::default(), Mux::default());
        b.pair("maybe", None);
        let ca = a.open("maybe", Some(b"1"), b"").unwrap();
        a.send(ca, 0, &[0; 100]).unwrap();
        link(&mut a, &mut b);
        assert!(matches!(events(&mut b)[0], Event::RemoteOpen { .. }));
        assert_eq!(
            b.pending_bytes,
            2 * BUFFER_OVERHEAD + "maybe".len() + 1 + 100
        );
        assert_eq!(b.reject("maybe", Some(b"1")), 1);
        assert_eq!((b.pending_bytes, b.buffered, b.backlog), (0, 0, 0));
        assert_eq!(b.reject("maybe", Some(b"1")), 0);
        link(&mut a, &mut b);
        assert!(matches!(events(&mut a)[0], Event::Rejected { .. }));
    }

    #[test]
    fn local_close_before_the_answer_keeps_the_id_until_it_comes() {
        // Remote rejects after our close: the id is freed then, with no event.
        let mut m = Mux::default();
        let a = m.open("p", None, b"").unwrap();
        m.close(a);
        events(&mut m);
        assert!(!m.is_idle());
        input(&mut m, "000201").unwrap();
        assert!(m.is_idle());
        assert!(events(&mut m).is_empty());
        // A second reject for it is now invalid, as in JS.
        assert_eq!(
            input(&mut m, "000201"),
            Err(Error::InvalidReject { local_id: 1 })
        );
    }

    #[test]
    fn remote_open_after_our_close_gets_the_close_again() {
        let mut m = Mux::default();
        let a = m.open("p", None, b"").unwrap();
        m.close(a);
        out(&mut m);
        events(&mut m);
        input(&mut m, "000101017000").unwrap(); // the remote's answer: open, remote id 1
        assert_eq!(
            out(&mut m),
            ["000301"],
            "close repeated (deliberate difference)"
        );
        assert!(m.is_idle());
        // Its messages are ignored; its close is ignored.
        input(&mut m, "0100aa").unwrap();
        input(&mut m, "000301").unwrap();
        assert!(events(&mut m).is_empty());
    }

    #[test]
    fn remote_close_of_an_unanswered_open_withdraws_it() {
        let mut m = Mux::default();
        m.pair("p", None);
        input(&mut m, "000101017000").unwrap();
        input(&mut m, "0100aa").unwrap();
        assert!(matches!(events(&mut m)[0], Event::RemoteOpen { .. }));
        input(&mut m, "000301").unwrap();
        assert_eq!(out(&mut m), ["000201"]);
        assert_eq!(
            events(&mut m),
            [Event::RemoteOpenCancelled {
                protocol: "p".into(),
                id: None
            }]
        );
        assert_eq!((m.pending_bytes, m.buffered, m.backlog), (0, 0, 0));
        // Opening now starts a fresh open.
        m.open("p", None, b"").unwrap();
        assert_eq!(out(&mut m), ["000101017000"]);
        assert!(events(&mut m).is_empty());
    }

    #[test]
    fn hostile_frames_that_end_the_connection() {
        let cases: &[(&str, Error)] = &[
            ("0001000170 00", Error::OpenControlChannel),
            ("0001020170 00", Error::InvalidOpen { remote_id: 2 }),
            ("000202", Error::InvalidReject { local_id: 2 }),
            ("000200", Error::InvalidReject { local_id: 0 }),
            (
                "0002",
                Error::Decode(peerhost_encoding::DecodeError::UnexpectedEnd),
            ),
            (
                "00",
                Error::Decode(peerhost_encoding::DecodeError::UnexpectedEnd),
            ),
            (
                "0000",
                Error::Decode(peerhost_encoding::DecodeError::UnexpectedEnd),
            ),
            (
                "00000100",
                Error::Decode(peerhost_encoding::DecodeError::UnexpectedEnd),
            ),
            (
                "000101",
                Error::Decode(peerhost_encoding::DecodeError::UnexpectedEnd),
            ),
            (
                "00010105",
                Error::Decode(peerhost_encoding::DecodeError::UnexpectedEnd),
            ),
            (
                "01fd00",
                Error::Decode(peerhost_encoding::DecodeError::UnexpectedEnd),
            ),
            (
                "ffffffffffffffffff",
                Error::Decode(peerhost_encoding::DecodeError::OutOfRange),
            ),
        ];
        for (frame, err) in cases {
            let mut m = Mux::default();
            let a = m.open("p", Some(b"x"), b"").unwrap();
            out(&mut m);
            events(&mut m);
            assert_eq!(
                input(&mut m, &frame.replace(' ', "")).as_ref(),
                Err(err),
                "{frame}"
            );
            assert!(m.is_closed());
            assert_eq!(
                events(&mut m),
                [Event::ChannelClosed {
                    channel: a,
                    remote: true
                }]
            );
            assert_eq!(input(&mut m, "00"), Err(Error::Closed));
            assert_eq!(m.open("p", None, b""), Err(CommandError::Closed));
            assert!(m.poll_transmit().is_none());
        }
    }

    #[test]
    fn hostile_frames_that_are_ignored() {
        let mut m = Mux::default();
        for frame in [
            "",                       // empty frame
            "0007",                   // unknown control type
            "0009ffff",               // unknown control type with payload
            "000300",                 // close of id 0
            "000305",                 // close of an id never opened
            "05 00 aa",               // message for a channel that does not exist
            "ff ffffffffffff1f00 00", // message for channel 2^53 - 1
            "0000 05",                // batch with a channel and no entries
            "0000 01 09 00aa",        // batch entry longer than the frame: cut, channel 1 unknown
            "0000 00 0007",           // batch: switch channel to 7, nothing more
        ] {
            input(&mut m, &frame.replace(' ', "")).unwrap();
        }
        assert!(out(&mut m).is_empty());
        assert!(events(&mut m).is_empty());
        assert!(!m.is_closed());
    }

    #[test]
    fn control_frames_inside_a_batch() {
        let (mut a, mut b) = (Mux::default(), Mux::default());
        b.pair("p", None);
        a.cork();
        let ca = a.open("p", None, b"hs").unwrap();
        a.send(ca, 1, b"m1").unwrap();
        a.send(ca, 2, b"m2").unwrap();
        a.close(ca);
        a.uncork();
        let frames: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
        assert_eq!(frames.len(), 1);
        b.handle_input(&frames[0]).unwrap();
        let ev = events(&mut b);
        assert!(matches!(ev[0], Event::RemoteOpen { .. }));
        // The close came in the same batch: the open is withdrawn and answered with a reject.
        assert!(matches!(ev[1], Event::RemoteOpenCancelled { .. }));
        link(&mut a, &mut b);
        assert!(a.is_idle());
    }

    #[test]
    fn nested_batches_are_read_up_to_the_depth_limit() {
        // A message to remote channel 1, wrapped in `depth` batches.
        fn nest(depth: usize) -> Vec<u8> {
            let mut entry = vec![0x00, 0xaa]; // type 0, payload aa (channel 1 in the batch)
            let mut channel = 1u8;
            for _ in 0..depth {
                let mut batch = vec![0x00, channel, entry.len() as u8];
                batch.extend_from_slice(&entry);
                // As an entry of channel 0 in the enclosing batch: `type 0 ‖ batch payload`.
                entry = batch[1..].to_vec();
                entry.insert(0, 0x00);
                channel = 0;
            }
            let mut frame = vec![0x00];
            frame.extend_from_slice(&entry);
            frame
        }
        let mut m = Mux::default();
        m.pair("p", None);
        m.handle_input(&hex::decode("000101017000").unwrap())
            .unwrap();
        let c = m.open("p", None, b"").unwrap();
        events(&mut m);
        m.handle_input(&nest(MAX_BATCH_DEPTH)).unwrap();
        assert_eq!(
            events(&mut m),
            [Event::Message {
                channel: c,
                message_type: 0,
                payload: vec![0xaa]
            }]
        );
        assert_eq!(
            m.handle_input(&nest(MAX_BATCH_DEPTH + 1)),
            Err(Error::BatchTooDeep)
        );
    }

    #[test]
    fn buffered_messages_pause_then_overflow() {
        let config = Config {
            max_pending_bytes: 64 * 1024,
            ..Config::default()
        };
        let mut m = Mux::new(config);
        m.pair("p", None);
        input(&mut m, "000101017000").unwrap();
        let msg = [vec![0x01, 0x00], vec![7; 1000]].concat();
        let mut n = 0;
        while !m.is_paused() {
            m.handle_input(&msg).unwrap();
            n += 1;
        }
        // JS pauses once more than 32768 bytes (512 + length each) are buffered.
        assert_eq!(n, 32_768 / (512 + 1000) + 1);
        // A driver that keeps feeding hits the hard bound.
        let err = loop {
            if let Err(e) = m.handle_input(&msg) {
                break e;
            }
        };
        assert_eq!(err, Error::BufferOverflow);
    }

    #[test]
    fn answering_resumes() {
        let mut m = Mux::default();
        m.pair("p", None);
        input(&mut m, "000101017000").unwrap();
        let msg = [vec![0x01, 0x05], vec![7; 4000]].concat();
        for _ in 0..8 {
            m.handle_input(&msg).unwrap();
        }
        assert!(m.is_paused());
        let c = m.open("p", None, b"").unwrap();
        assert!(!m.is_paused());
        let ev = events(&mut m);
        assert_eq!(ev.len(), 1 + 1 + 8);
        assert_eq!(
            ev[9],
            Event::Message {
                channel: c,
                message_type: 5,
                payload: vec![7; 4000]
            }
        );
    }

    #[test]
    fn backlog_and_channel_bounds() {
        let config = Config {
            max_backlog: 3,
            ..Config::default()
        };
        let mut m = Mux::new(config);
        m.pair("p", None);
        for id in 1..=3u8 {
            m.handle_input(&[0, 1, id, 1, b'p', 0]).unwrap();
        }
        assert_eq!(
            m.handle_input(&[0, 1, 4, 1, b'p', 0]),
            Err(Error::BacklogExceeded)
        );

        let config = Config {
            max_channels: 2,
            ..Config::default()
        };
        let mut m = Mux::new(config.clone());
        for id in 1..=2u8 {
            m.handle_input(&[0, 1, id, 1, b'q', 0]).unwrap(); // rejected, slot stays
        }
        assert_eq!(
            m.handle_input(&[0, 1, 3, 1, b'q', 0]),
            Err(Error::TooManyChannels)
        );
        let mut m = Mux::new(config);
        m.open("a", None, b"").unwrap();
        m.open("b", None, b"").unwrap();
        assert_eq!(m.open("c", None, b""), Err(CommandError::TooManyChannels));
        assert!(m.infos.len() == 2 && m.info_store.len() == 2);
    }

    #[test]
    fn stream_close_closes_every_channel() {
        let (mut a, mut b) = (Mux::default(), Mux::default());
        let c1 = a.open("x", None, b"").unwrap();
        let c2 = a.open("y", None, b"").unwrap();
        b.open("x", None, b"").unwrap();
        b.open("y", None, b"").unwrap();
        link(&mut a, &mut b);
        events(&mut a);
        a.handle_stream_closed();
        assert_eq!(
            events(&mut a),
            [
                Event::ChannelClosed {
                    channel: c1,
                    remote: true
                },
                Event::ChannelClosed {
                    channel: c2,
                    remote: true
                }
            ]
        );
        assert!(!a.close(c1));
    }

    #[test]
    fn invalid_utf8_protocol_is_rejected_like_js() {
        let mut m = Mux::default();
        input(&mut m, "00010101ff00").unwrap();
        assert_eq!(out(&mut m), ["000201"]);
    }

    #[test]
    fn send_type_range() {
        let mut m = Mux::default();
        let a = m.open("p", None, b"").unwrap();
        assert_eq!(
            m.send(a, MAX_SAFE_UINT + 1, b""),
            Err(CommandError::TypeOutOfRange)
        );
        m.send(a, MAX_SAFE_UINT, b"").unwrap();
    }
}
