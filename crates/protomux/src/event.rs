//! What the mux tells its owner, and how channels are named.

/// A local channel, as returned by [`Mux::open`](crate::Mux::open).
///
/// Local ids are reused after a channel ends (JS's free list), so a handle also carries a serial
/// number: a stale handle never reaches the channel that later got the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelHandle {
    pub(crate) local_id: u64,
    pub(crate) serial: u64,
}

impl ChannelHandle {
    /// The id this channel has on the wire in frames we send (1-based).
    pub fn local_id(&self) -> u64 {
        self.local_id
    }
}

/// Something that happened, drained with [`Mux::poll_event`](crate::Mux::poll_event).
///
/// Every handle returned by `open` ends with exactly one of [`Event::ChannelClosed`] or
/// [`Event::Rejected`]. [`Event::ChannelOpened`] comes before any [`Event::Message`] of its
/// channel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The channel ended (JS `onclose(isRemote)`): closed by us (`remote: false`, from
    /// [`Mux::close`](crate::Mux::close)), by the remote's close frame, or because the stream
    /// ended (`remote: true`). No message of this channel follows.
    ChannelClosed {
        /// The channel.
        channel: ChannelHandle,
        /// Whether the remote (or the end of the stream) closed it.
        remote: bool,
    },
    /// Both sides have opened the channel (JS `onopen(handshake)`). Messages may flow.
    ChannelOpened {
        /// The channel.
        channel: ChannelHandle,
        /// Our protocol name (a remote open may have used one of its aliases).
        protocol: String,
        /// The channel id within the protocol.
        id: Option<Vec<u8>>,
        /// The remote's handshake bytes (everything after the id in its open).
        handshake: Vec<u8>,
    },
    /// A message on an opened channel (JS `onmessage`). Protomux delivers every type; the
    /// caller ignores types it does not know, as JS does for types past its message list.
    Message {
        /// The channel.
        channel: ChannelHandle,
        /// The message type (the index in the protocol's message list).
        message_type: u64,
        /// Everything after the type.
        payload: Vec<u8>,
    },
    /// The remote refused our open (JS: the channel closes with `onclose(true)` without ever
    /// opening). The handle is dead.
    Rejected {
        /// The channel.
        channel: ChannelHandle,
        /// Its protocol.
        protocol: String,
        /// Its id.
        id: Option<Vec<u8>>,
    },
    /// The remote opened a channel we have not opened, for a protocol and id we
    /// [`pair`](crate::Mux::pair)ed (JS: the `notify` callback of `mux.pair`).
    ///
    /// Answer it with [`Mux::open`](crate::Mux::open) (same protocol and id: the channel opens
    /// at once) or [`Mux::reject`](crate::Mux::reject). Until then it counts against the
    /// backlog, and its messages are buffered.
    RemoteOpen {
        /// The protocol the remote named.
        protocol: String,
        /// The channel id.
        id: Option<Vec<u8>>,
        /// The remote's handshake bytes.
        handshake: Vec<u8>,
    },
    /// The remote closed a channel whose [`Event::RemoteOpen`] we had not answered yet; the
    /// open is gone (we answered it with a reject, see `protocol/protomux.md`). Not in JS,
    /// which keeps such an open pending.
    RemoteOpenCancelled {
        /// The protocol.
        protocol: String,
        /// The channel id.
        id: Option<Vec<u8>>,
    },
}
