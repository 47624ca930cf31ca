//! Keys and ids: the small base types every other peerhost crate names.
//!
//! This crate owns hypercore keys and discovery keys, their text forms (z-base32 and hex, as
//! `hypercore-id-encoding` accepts them), Ed25519 key pairs in libsodium's layout, BLAKE2b as
//! libsodium's `crypto_generichash` computes it, and the domain-separation namespaces of
//! `hypercore-crypto`. It owns no protocol logic and does no I/O.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]

pub mod hash;
mod key;
mod keypair;
pub mod ns;
pub mod z32;

pub use key::{DiscoveryKey, Key, ParseKeyError};
pub use keypair::{KeyPair, verify_signature};
