//! WebRTC data channels for browsers, answering side (`protocol/webrtc.md`): a browser behind
//! any NAT reads a node's logs over a data channel, with the same requests and bodies as the
//! HTTP gateway, and no certificate, domain or open port on the node.
//!
//! What this crate owns:
//! - [`frame`]: the `peerhost/1` channel frames (HELLO, REQUEST, RESPONSE, DATA, CANCEL,
//!   GOAWAY);
//! - [`session`]: one channel's requests and answers, sans-IO (limits, 429s and floods,
//!   chunking, shortest answer first, cancel);
//! - [`peer`]: one browser's peer connection, sans-IO: str0m's `Rtc` (ICE, DTLS, SCTP) plus a
//!   session per channel, offers without mDNS candidates, idle and connect timeouts;
//! - [`stun`]: STUN binding (RFC 8489), sans-IO: codec, a server's answer, a client's
//!   transaction, a per-source rate limit;
//! - with the `tokio` feature, `driver` (one UDP socket for every browser, answers from the
//!   gateway's `peerhost_gateway::api::Api`, STUN-learned public address, birthday search),
//!   `home` (a home peer: the signed long-poll to its instance, offers answered and signed,
//!   health checks answered) and `stun_server` (what `serve --stun` runs).
//!
//! What it does not own: the answers themselves (`peerhost-gateway`'s `api`), the instance's
//! side of signaling and the message formats (`peerhost-gateway`'s `signal`), the browser side
//! (`web/boot/transport-rtc.js`).
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn run(offer_sdp: String) -> Result<(), Box<dyn std::error::Error>> {
//! use peerhost_gateway::{Config, Cores, api::Api};
//! use peerhost_webrtc::driver::{Config as RtcConfig, Server};
//!
//! let api = Api::new(Cores::new(), Config::default()); // the node's logs
//! let config = RtcConfig {
//!     stun_servers: vec!["198.51.100.30:3478".parse()?], // the instance's `serve --stun`
//!     ..RtcConfig::default()
//! };
//! let server = Server::bind("10.1.0.2:0".parse()?, api, config).await?;
//! let answered = server.answer(offer_sdp).await?; // a browser's offer, from signaling
//! println!("answer for the browser: {}", answered.sdp);
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "tokio")]
pub mod driver;
pub mod frame;
#[cfg(feature = "tokio")]
pub mod home;
pub mod peer;
pub mod session;
pub mod stun;
#[cfg(feature = "tokio")]
pub mod stun_server;
