//! The peer side, sans-IO (blind-relay 1.6.1 `BlindRelayClient`, `BlindRelayRequest`).
//!
//! A [`Client`] lives on a connection to a relay: it opens the `blind-relay` channel (hyperdht
//! uses our own public key as the id, and the relay opens the same), sends
//! `pair{isInitiator, token, id: our UDX stream id}` per [`Client::pair`], and reports the
//! relay's answer as [`Event::Paired`] with the relay stream id our stream must connect to (at
//! the relay connection's address). Answers whose token or role match no request are ignored,
//! as in JS.
//!
//! Drain contract: after any call, drain [`Client::poll_transmit`] (write each message on the
//! connection) and [`Client::poll_event`].

use std::collections::{HashMap, VecDeque};

use peerhost_encoding::{from_prefix, to_vec};
use peerhost_protomux::{ChannelHandle, Event as MuxEvent, Mux};

use crate::PROTOCOL;
use crate::error::{Error, PairError};
use crate::messages::{PAIR, Pair, UNPAIR, Unpair};

/// Requests one client may have waiting.
pub const MAX_REQUESTS: usize = 64;

/// What the relay told us.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The relay paired our request: connect our stream to `relay_id` at the relay.
    Paired {
        /// The token of the request.
        token: [u8; 32],
        /// Our role in the request.
        is_initiator: bool,
        /// The relay-side stream id to send to.
        relay_id: u32,
    },
    /// The channel opened (the relay speaks blind-relay).
    Opened,
    /// The channel closed (or was rejected): every waiting request failed.
    Closed,
}

/// Our side of one relay connection. See the module docs.
#[derive(Debug)]
pub struct Client {
    mux: Mux,
    channel: Option<ChannelHandle>,
    /// token → isInitiator of the waiting request.
    requests: HashMap<[u8; 32], bool>,
    events: VecDeque<Event>,
}

impl Client {
    /// Open the `blind-relay` channel with `id` (hyperdht: our public key).
    pub fn new(id: Option<&[u8]>) -> Self {
        let mut mux = Mux::default();
        let channel = mux.open(PROTOCOL, id, &[]).ok();
        Self {
            mux,
            channel,
            requests: HashMap::new(),
            events: VecDeque::new(),
        }
    }

    /// Ask the relay to pair our UDX stream `stream_id` with the peer holding `token` (the
    /// other peer asks with the opposite `is_initiator`).
    pub fn pair(
        &mut self,
        is_initiator: bool,
        token: [u8; 32],
        stream_id: u32,
    ) -> Result<(), PairError> {
        let ch = self.channel.ok_or(PairError::Closed)?;
        if self.requests.contains_key(&token) {
            return Err(PairError::AlreadyPairing);
        }
        if self.requests.len() >= MAX_REQUESTS {
            return Err(PairError::TooManyRequests);
        }
        let msg = Pair {
            is_initiator,
            token,
            id: stream_id,
            seq: 0,
        };
        self.mux
            .send(ch, PAIR, &to_vec(&msg))
            .map_err(|_| PairError::Closed)?;
        self.requests.insert(token, is_initiator);
        Ok(())
    }

    /// Cancel a request, or end an active pairing (JS sends `unpair` either way).
    pub fn unpair(&mut self, token: [u8; 32]) {
        self.requests.remove(&token);
        if let Some(ch) = self.channel {
            let _ = self.mux.send(ch, UNPAIR, &to_vec(&Unpair { token }));
        }
    }

    /// Whether a request with `token` is waiting.
    pub fn is_pairing(&self, token: &[u8; 32]) -> bool {
        self.requests.contains_key(token)
    }

    /// One message from the relay connection. An error means the connection must end.
    pub fn handle_input(&mut self, msg: &[u8]) -> Result<(), Error> {
        self.mux.handle_input(msg)?;
        self.process()
    }

    /// The relay connection ended.
    pub fn handle_stream_closed(&mut self) {
        self.mux.handle_stream_closed();
        let _ = self.process();
    }

    /// Close the channel (JS `client.destroy()`).
    pub fn close(&mut self) {
        if let Some(ch) = self.channel {
            self.mux.close(ch);
        }
        let _ = self.process();
    }

    /// The next message to write on the relay connection.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.mux.poll_transmit()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn process(&mut self) -> Result<(), Error> {
        while let Some(ev) = self.mux.poll_event() {
            match ev {
                MuxEvent::ChannelOpened { channel, .. } if Some(channel) == self.channel => {
                    self.events.push_back(Event::Opened);
                }
                MuxEvent::Message {
                    channel,
                    message_type: PAIR,
                    payload,
                } if Some(channel) == self.channel => {
                    let pair: Pair = from_prefix(&payload)?;
                    if self.requests.get(&pair.token) == Some(&pair.is_initiator) {
                        self.requests.remove(&pair.token);
                        self.events.push_back(Event::Paired {
                            token: pair.token,
                            is_initiator: pair.is_initiator,
                            relay_id: pair.id,
                        });
                    }
                }
                MuxEvent::ChannelClosed { channel, .. } | MuxEvent::Rejected { channel, .. }
                    if Some(channel) == self.channel =>
                {
                    self.channel = None;
                    self.requests.clear();
                    self.events.push_back(Event::Closed);
                }
                _ => {}
            }
        }
        Ok(())
    }
}
