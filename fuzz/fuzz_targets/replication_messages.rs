//! Every `hypercore/alpha` channel message decoder (hypercore 11 `wire.*`): arbitrary payloads
//! for each type; what decodes must re-encode to a message that decodes the same.
//!
//! Input: one byte picks the message type (mod 12, so unknown types are covered), the rest is
//! the payload.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&t, payload)) = data.split_first() else {
        return;
    };
    peerhost_replication::fuzz::message(u64::from(t % 12), payload);
});
