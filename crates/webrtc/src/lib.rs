//! WebRTC for peerhost (work in progress).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]

#[cfg(feature = "tokio")]
pub mod driver;
pub mod frame;
pub mod peer;
pub mod session;
pub mod stun;
#[cfg(feature = "tokio")]
pub mod stun_server;
