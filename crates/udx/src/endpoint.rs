//! The socket-level core: many streams on one UDP socket, demultiplexed by stream id, with
//! non-UDX datagrams handed back to the caller.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::packet::{Header, Packet};
use crate::stream::{ReadOutcome, Stream, StreamEvent};
use crate::{Event, Firewall, StreamConfig, StreamInfo, Transmit};

/// Limits of an [`Endpoint`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// Most streams at once.
    pub max_streams: usize,
    /// Most queued events; further [`Event::Message`]s are dropped (they are unreliable anyway).
    pub max_events: usize,
    /// How long a stream released while ending may keep running to finish its close.
    pub linger: Duration,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            max_streams: 65_536,
            max_events: 4_096,
            linger: Duration::from_secs(30),
        }
    }
}

/// What [`Endpoint::handle_datagram`] did with a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// A UDX packet for one of our streams; it was consumed (processed, or dropped by the
    /// stream's [`Firewall`]).
    Udx(u32),
    /// Not for us: not UDX (`len < 20` or not `ff 01`), or an unknown or dead stream id. This
    /// is what udx-native emits as `socket.on('message')`; hand it to the application (dht-rpc
    /// shares the socket).
    NotUdx,
}

/// Many UDX streams sharing one UDP socket, as a sans-IO state machine.
///
/// The endpoint owns no socket and reads no clock. Drive it like this:
///
/// 1. Feed every received datagram to [`handle_datagram`](Self::handle_datagram); datagrams it
///    returns as [`Received::NotUdx`] belong to the application.
/// 2. When the deadline from [`poll_timeout`](Self::poll_timeout) passes, call
///    [`handle_timeout`](Self::handle_timeout).
/// 3. After any input or application call (`write`, `end`, `read`, …), drain
///    [`poll_transmit`](Self::poll_transmit) until `None` and send each datagram, then drain
///    [`poll_event`](Self::poll_event), then re-read [`poll_timeout`](Self::poll_timeout).
///
/// Several datagrams may be fed before draining: acknowledgements are then coalesced.
/// `poll_transmit` also paces: it returns `None` while the pacing budget is spent, and
/// `poll_timeout` says when to try again.
#[derive(Debug, Default)]
pub struct Endpoint {
    config: EndpointConfig,
    streams: HashMap<u32, Stream>,
    /// Round-robin order for transmissions.
    ids: Vec<u32>,
    cursor: usize,
    events: VecDeque<Event>,
}

fn unmap(addr: SocketAddr) -> SocketAddr {
    // libudx converts IPv4-mapped IPv6 sources to IPv4 before its firewall and message hooks.
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

impl Endpoint {
    /// An endpoint with default limits.
    pub fn new() -> Self {
        Self::with_config(EndpointConfig::default())
    }

    /// An endpoint with the given limits.
    pub fn with_config(config: EndpointConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Register a stream under `local_id` (udx `createStream(id)`). The peer addresses its
    /// packets to this id.
    pub fn create_stream(
        &mut self,
        local_id: u32,
        config: StreamConfig,
        now: Instant,
    ) -> Result<(), Error> {
        if self.streams.contains_key(&local_id) {
            return Err(Error::IdInUse);
        }
        if self.streams.len() >= self.config.max_streams {
            return Err(Error::TooManyStreams);
        }
        self.streams
            .insert(local_id, Stream::new(local_id, config, now));
        self.ids.push(local_id);
        Ok(())
    }

    /// Whether `local_id` is registered (closed streams count until released).
    pub fn contains(&self, local_id: u32) -> bool {
        self.streams.contains_key(&local_id)
    }

    /// Number of registered streams.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether no stream is registered.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    fn stream(&mut self, id: u32) -> Result<&mut Stream, Error> {
        self.streams.get_mut(&id).ok_or(Error::UnknownStream)
    }

    /// Set the peer: its stream id and address (udx `stream.connect(socket, remoteId, port,
    /// host)`). No packet is exchanged; an acknowledgement deferred because data arrived
    /// before `connect` goes out on the next `poll_transmit`.
    pub fn connect(
        &mut self,
        id: u32,
        remote_id: u32,
        remote: SocketAddr,
        now: Instant,
    ) -> Result<(), Error> {
        let r = self.stream(id)?.connect(remote_id, remote, now);
        self.collect(id);
        r
    }

    /// Change how an unconnected stream treats packets (ours). A stream that took packets in
    /// under [`Firewall::Accept`] and is given [`Firewall::Connect`] connects at once to where
    /// the first of them came from (as it would have, had it had that firewall then), with
    /// [`Event::Connected`]; a stream already connected only records the setting.
    pub fn set_firewall(&mut self, id: u32, firewall: Firewall, now: Instant) -> Result<(), Error> {
        let s = self.stream(id)?;
        s.firewall = firewall;
        if let (None, Firewall::Connect { remote_id }, Some(from)) =
            (s.remote, firewall, s.accepted_from)
        {
            s.connect(remote_id, from, now)?;
            self.events.push_back(Event::Connected { id, remote: from });
        }
        self.collect(id);
        Ok(())
    }

    /// Move the stream to a new peer id and address (udx `changeRemote`). Packets already in
    /// flight still go to the old address. Returns `true` if the change completed at once;
    /// otherwise [`Event::RemoteChanged`] follows once everything sent before it is acked.
    pub fn change_remote(
        &mut self,
        id: u32,
        remote_id: u32,
        remote: SocketAddr,
    ) -> Result<bool, Error> {
        let r = self.stream(id)?.change_remote(remote_id, remote);
        self.collect(id);
        r
    }

    /// Queue bytes for reliable, ordered delivery. Returns how many were accepted (the send
    /// buffer is bounded by [`StreamConfig::send_buffer`]); after a short write,
    /// [`Event::Writable`] says when to retry.
    pub fn write(&mut self, id: u32, data: &[u8], now: Instant) -> Result<usize, Error> {
        self.stream(id)?.write(data, now)
    }

    /// Finish the byte stream: an END follows the queued data (udx `stream.end()`).
    pub fn end(&mut self, id: u32, now: Instant) -> Result<(), Error> {
        self.stream(id)?.end(now)
    }

    /// Send an unreliable datagram on the stream (udx `stream.send()`/`trySend()`, a MESSAGE
    /// packet). At most [`MAX_MESSAGE`](crate::MAX_MESSAGE) bytes.
    pub fn send_message(&mut self, id: u32, data: &[u8]) -> Result<(), Error> {
        self.stream(id)?.send_message(data)
    }

    /// Read received bytes in order. `Ok(Some(n))` with `n > 0` is data, `Ok(Some(0))` is the
    /// end of the stream, `Ok(None)` means nothing yet (wait for [`Event::Readable`]).
    pub fn read(&mut self, id: u32, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        let r = self.stream(id)?.read(buf);
        self.collect(id);
        match r? {
            ReadOutcome::Data(n) => Ok(Some(n)),
            ReadOutcome::Eof => Ok(Some(0)),
            ReadOutcome::Blocked => Ok(None),
        }
    }

    /// Abort the stream: send one DESTROY (if connected) and close without error locally
    /// (udx `stream.destroy()`). The peer sees [`StreamError::Reset`](crate::StreamError).
    pub fn destroy(&mut self, id: u32) -> Result<(), Error> {
        self.stream(id)?.destroy();
        self.collect(id);
        Ok(())
    }

    /// The application is done with the stream. A closed stream is forgotten (its id is free
    /// again) once its last packets were polled; an open stream that is ending may finish its
    /// close for up to [`EndpointConfig::linger`]; any other open stream is destroyed.
    pub fn release(&mut self, id: u32, now: Instant) -> Result<(), Error> {
        let linger = self.config.linger;
        self.stream(id)?.linger(now, linger);
        self.collect(id);
        Ok(())
    }

    /// Whether our END was acknowledged (everything we wrote was delivered).
    pub fn is_end_acked(&self, id: u32) -> Result<bool, Error> {
        Ok(self
            .streams
            .get(&id)
            .ok_or(Error::UnknownStream)?
            .is_end_acked())
    }

    /// Bytes written but not yet acknowledged (queued or in flight).
    pub fn unacked(&self, id: u32) -> Result<usize, Error> {
        Ok(self.streams.get(&id).ok_or(Error::UnknownStream)?.unacked())
    }

    /// The stream's closing state: `None` while open, `Some(None)` after a graceful close,
    /// `Some(Some(e))` after an error.
    pub fn close_reason(&self, id: u32) -> Result<Option<Option<crate::StreamError>>, Error> {
        Ok(self.streams.get(&id).ok_or(Error::UnknownStream)?.closed)
    }

    /// Counters and congestion state of a stream.
    pub fn stream_info(&self, id: u32) -> Option<StreamInfo> {
        self.streams.get(&id).map(Stream::info)
    }

    /// Process one received datagram from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Received {
        let Some(header) = Header::decode(data) else {
            return Received::NotUdx;
        };
        let id = header.id;
        let from = unmap(from);
        let Some(stream) = self.streams.get_mut(&id) else {
            return Received::NotUdx;
        };
        match stream.closed {
            // libudx forgets a closed stream; we keep answering a gracefully closed one until
            // it is released (see Stream::handle_packet), and give the rest to the app.
            Some(Some(_)) => return Received::NotUdx,
            Some(None) if stream.released => return Received::NotUdx,
            _ => {}
        }
        if stream.remote.is_none() && stream.closed.is_none() {
            // The firewall hook (libudx process_packet -> on_firewall), which udx-native runs
            // for packets reaching a stream that is not connected on this socket.
            match stream.firewall {
                Firewall::Drop => return Received::Udx(id),
                Firewall::Accept => {
                    stream.accepted_from.get_or_insert(from);
                }
                Firewall::Connect { remote_id } => {
                    if from.port() == 0 || stream.connect(remote_id, from, now).is_err() {
                        return Received::Udx(id);
                    }
                    self.events.push_back(Event::Connected { id, remote: from });
                }
            }
        }
        if let Some(pkt) = Packet::decode(data) {
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.handle_packet(now, data.len(), &pkt);
            }
        }
        self.collect(id);
        Received::Udx(id)
    }

    /// Run expired timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ids: Vec<u32> = self.ids.clone();
        for id in ids {
            if let Some(s) = self.streams.get_mut(&id) {
                s.handle_timeout(now);
            }
            self.collect(id);
        }
    }

    /// The next datagram to send, if any. Streams take turns, one datagram each.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let n = self.ids.len();
        for i in 0..n {
            let idx = (self.cursor + i) % n;
            let id = self.ids[idx];
            let t = self.streams.get_mut(&id).and_then(|s| s.poll_transmit(now));
            self.collect(id);
            if t.is_some() {
                self.cursor = idx + 1;
                return t;
            }
        }
        None
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) (or, when pacing,
    /// [`poll_transmit`](Self::poll_transmit)) has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.streams.values().filter_map(Stream::poll_timeout).min()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Move a stream's events to the endpoint queue; forget it if released and drained.
    fn collect(&mut self, id: u32) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        while let Some(ev) = s.events.pop_front() {
            let ev = match ev {
                StreamEvent::Readable => Event::Readable { id },
                StreamEvent::Writable => Event::Writable { id },
                StreamEvent::RemoteChanged => Event::RemoteChanged { id },
                StreamEvent::Closed(error) => Event::Closed { id, error },
                StreamEvent::Message(data) => {
                    if self.events.len() >= self.config.max_events {
                        continue;
                    }
                    Event::Message { id, data }
                }
            };
            self.events.push_back(ev);
        }
        if s.released && s.is_drained() {
            self.streams.remove(&id);
            if let Some(pos) = self.ids.iter().position(|&x| x == id) {
                self.ids.remove(pos);
                if self.cursor > pos {
                    self.cursor -= 1;
                }
            }
        }
    }
}
