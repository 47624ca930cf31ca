//! hypercore `wire.request` and `wire.data` decoders: no panic, bounded allocation, and what
//! decodes re-encodes to bytes that decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerhost_encoding::{from_prefix, to_vec};
use peerhost_log::{Data, Request};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = from_prefix::<Request>(data) {
        assert_eq!(from_prefix::<Request>(&to_vec(&req)), Ok(req));
    }
    if let Ok(d) = from_prefix::<Data>(data) {
        assert_eq!(from_prefix::<Data>(&to_vec(&d)).ok(), Some(d));
    }
});
