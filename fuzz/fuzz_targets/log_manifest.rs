//! Manifest (v0-v3) and multi-signature decoders: no panic; decoded values re-encode and hash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerhost_encoding::{from_prefix, to_vec};
use peerhost_log::Manifest;
use peerhost_log::signature::{MultiSignature, MultiSignatureV0};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = from_prefix::<Manifest>(data) {
        let _ = m.hash();
        let _ = m.validate();
        let _ = from_prefix::<Manifest>(&to_vec(&m));
    }
    if let Ok(s) = from_prefix::<MultiSignature>(data) {
        let _ = to_vec(&s);
    }
    if let Ok(s) = from_prefix::<MultiSignatureV0>(data) {
        let _ = to_vec(&s);
    }
});
