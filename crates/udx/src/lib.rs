//! Reliable, ordered byte streams over UDP, wire-compatible with libudx as shipped in
//! udx-native 1.21 (the transport under HyperDHT and Hyperswarm).
//!
//! This crate owns:
//! - the UDX packet format ([`packet`]): the 20-byte header, flags, SACK blocks, MTU-probe
//!   padding, and the test that tells UDX datagrams from others sharing the socket;
//! - a sans-IO core, [`Endpoint`]: many streams on one socket, each with libudx's sender
//!   (packet sequence numbers, RACK-TLP loss detection, RTO with backoff, BBR congestion control
//!   with pacing, in-band MTU probing, zero-window probes, keepalives) and receiver (in-order
//!   delivery, a bounded out-of-order buffer, SACK generation, END and DESTROY);
//! - a tokio driver, [`driver`] (feature `tokio`, on by default): one `UdpSocket`, many
//!   streams as `AsyncRead + AsyncWrite`, and a channel for non-UDX datagrams so dht-rpc can
//!   share the socket.
//!
//! It does not own: how the two sides agree on stream ids and addresses (HyperDHT's Noise
//! payload carries them), encryption (secret-stream runs on top), holepunching, or libudx's
//! stream relaying is in [`relay`]
//! (`relayTo`, for blind-relay servers; [`driver::Socket::relay_splice`]).
//!
//! The core reads no clock and owns no socket: every input carries `now: Instant`, and
//! output is polled (see the drain contract on [`Endpoint`]). The wire format and our
//! deliberate differences from libudx are specified in `protocol/udx.md`.
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn demo() -> std::io::Result<()> {
//! use peerhost_udx::driver::Socket;
//! use peerhost_udx::StreamConfig;
//! use tokio::io::AsyncWriteExt;
//!
//! let socket = Socket::bind("127.0.0.1:0".parse().unwrap()).await?;
//! let mut stream = socket.create_stream(1, StreamConfig::default())?;
//! stream.connect(2, "127.0.0.1:49737".parse().unwrap())?;
//! stream.write_all(b"hello").await?;
//! stream.shutdown().await?; // END, then wait until it is acknowledged
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]

mod bbr;
mod bytes;
mod endpoint;
mod error;
mod filter;
pub mod packet;
pub mod relay;
mod stream;

#[cfg(feature = "tokio")]
pub mod driver;

use std::net::SocketAddr;
use std::time::Duration;

pub use bbr::BbrMode;
pub use endpoint::{Endpoint, EndpointConfig, Received};
pub use error::{Error, StreamError};
pub use stream::{MAX_MESSAGE, MTU_BASE, MTU_MAX};

/// Default receive window: 4 MiB (`UDX_DEFAULT_RWND_MAX`), what udx-native always advertises.
pub const DEFAULT_RECV_WINDOW: u32 = 4 * 1024 * 1024;
/// Default cap on written-but-unsent bytes: 256 KiB (libudx's `UDX_HIGH_WATERMARK`).
pub const DEFAULT_SEND_BUFFER: usize = 256 * 1024;

/// What to do with packets that reach a stream before it is connected (libudx's firewall
/// hook, which udx-native runs for packets on a socket the stream is not connected on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Firewall {
    /// Drop them (udx-native's default `firewallAll`).
    #[default]
    Drop,
    /// Process them; acknowledgements wait until `connect` (libudx with no firewall hook).
    Accept,
    /// Connect the stream to the first packet's source with this remote id, then process it
    /// (what HyperDHT's firewall callback does); [`Event::Connected`] reports the address.
    Connect {
        /// The peer's stream id, learned out of band.
        remote_id: u32,
    },
}

/// Per-stream settings.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct StreamConfig {
    /// Receive buffer in bytes: the window we advertise is this minus unread bytes.
    pub recv_window: u32,
    /// Most written-but-unsent bytes held; `write` accepts less beyond it.
    pub send_buffer: usize,
    /// Send a HEARTBEAT after this much idle time (udx `setKeepalive`).
    pub keepalive: Option<Duration>,
    /// Packets before `connect`.
    pub firewall: Firewall,
    /// Largest MTU to probe for, 1200..=1500 (1200 disables probing).
    pub mtu_max: u16,
    /// First sequence number we send (udx `opts.seq`; HyperDHT uses 0).
    pub initial_seq: u32,
    /// First sequence number we expect (udx `connect(..., { ack })`).
    pub initial_ack: u32,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            recv_window: DEFAULT_RECV_WINDOW,
            send_buffer: DEFAULT_SEND_BUFFER,
            keepalive: None,
            firewall: Firewall::Drop,
            mtu_max: MTU_MAX,
            initial_seq: 0,
            initial_ack: 0,
        }
    }
}

impl StreamConfig {
    /// Set [`firewall`](Self::firewall).
    pub fn firewall(mut self, firewall: Firewall) -> Self {
        self.firewall = firewall;
        self
    }

    /// Set [`keepalive`](Self::keepalive).
    pub fn keepalive(mut self, every: Option<Duration>) -> Self {
        self.keepalive = every;
        self
    }

    /// Set [`recv_window`](Self::recv_window).
    pub fn recv_window(mut self, bytes: u32) -> Self {
        self.recv_window = bytes;
        self
    }

    /// Set [`send_buffer`](Self::send_buffer).
    pub fn send_buffer(mut self, bytes: usize) -> Self {
        self.send_buffer = bytes.max(1);
        self
    }

    /// Set [`mtu_max`](Self::mtu_max).
    pub fn mtu_max(mut self, mtu: u16) -> Self {
        self.mtu_max = mtu;
        self
    }

    /// Set [`initial_seq`](Self::initial_seq); the peer's `initial_ack` must match.
    pub fn initial_seq(mut self, seq: u32) -> Self {
        self.initial_seq = seq;
        self
    }

    /// Set [`initial_ack`](Self::initial_ack); the peer's `initial_seq` must match.
    pub fn initial_ack(mut self, ack: u32) -> Self {
        self.initial_ack = ack;
        self
    }
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub dest: SocketAddr,
    /// The datagram (never longer than [`packet::MAX_DATAGRAM`]).
    pub bytes: Vec<u8>,
    /// The local id of the stream that produced it.
    pub stream: Option<u32>,
}

/// Something the application should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A [`Firewall::Connect`] stream connected to the source of its first packet.
    Connected {
        /// Local stream id.
        id: u32,
        /// The peer's address.
        remote: SocketAddr,
    },
    /// Data (or the end of the stream) became readable: read until `Ok(None)`.
    Readable {
        /// Local stream id.
        id: u32,
    },
    /// The send buffer has room again, or our END was acknowledged.
    Writable {
        /// Local stream id.
        id: u32,
    },
    /// An unreliable MESSAGE arrived on the stream.
    Message {
        /// Local stream id.
        id: u32,
        /// Its payload.
        data: Vec<u8>,
    },
    /// A deferred [`Endpoint::change_remote`] completed.
    RemoteChanged {
        /// Local stream id.
        id: u32,
    },
    /// The stream closed: gracefully (`None`) or with an error. Unread data stays readable
    /// after a graceful close.
    Closed {
        /// Local stream id.
        id: u32,
        /// Why, if abnormal.
        error: Option<StreamError>,
    },
}

/// A snapshot of one stream's state and counters.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StreamInfo {
    /// Our id.
    pub local_id: u32,
    /// The peer's id.
    pub remote_id: u32,
    /// The peer's address, once connected.
    pub remote: Option<SocketAddr>,
    /// Current path MTU (1200 until probing raises it).
    pub mtu: u16,
    /// Smoothed RTT, once measured.
    pub srtt: Option<Duration>,
    /// Retransmission timeout.
    pub rto: Duration,
    /// Congestion window in packets.
    pub cwnd: u32,
    /// Packets in flight.
    pub inflight: u32,
    /// The peer's advertised window in bytes.
    pub send_rwnd: u32,
    /// The window we advertise.
    pub recv_rwnd: u32,
    /// Next sequence number we send.
    pub seq: u32,
    /// Next sequence number we expect.
    pub ack: u32,
    /// Oldest unacknowledged sequence number.
    pub remote_acked: u32,
    /// BBR mode.
    pub bbr_mode: BbrMode,
    /// BBR bottleneck bandwidth estimate, payload bytes per second.
    pub bandwidth: f64,
    /// Pacing rate, bytes per second.
    pub pacing_rate: f64,
    /// Packets retransmitted.
    pub retransmits: u64,
    /// Retransmission timeouts.
    pub rto_count: u64,
    /// Fast-recovery episodes.
    pub fast_recoveries: u64,
    /// SACK blocks ignored as invalid.
    pub dropped_sacks: u64,
    /// Datagram bytes sent.
    pub bytes_tx: u64,
    /// Datagrams sent.
    pub packets_tx: u64,
    /// Datagram bytes received.
    pub bytes_rx: u64,
    /// Datagrams received.
    pub packets_rx: u64,
    /// Received bytes held for the application (in order or not).
    pub buffered: usize,
    /// Written bytes not yet acknowledged.
    pub unacked: usize,
}
