//! blind-relay: the `pair` and `unpair` decoders: no panic, and whatever decodes re-encodes to
//! bytes that decode to the same value.
#![no_main]

use peerhost_encoding::{from_prefix, to_vec};
use peerhost_relay::messages::{Pair, Unpair};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(p) = from_prefix::<Pair>(data) {
        assert_eq!(from_prefix::<Pair>(&to_vec(&p)).ok(), Some(p));
    }
    if let Ok(u) = from_prefix::<Unpair>(data) {
        assert_eq!(from_prefix::<Unpair>(&to_vec(&u)).ok(), Some(u));
    }
});
