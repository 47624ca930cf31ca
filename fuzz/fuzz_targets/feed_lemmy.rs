//! Lemmy API JSON on arbitrary bytes: parse and map, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    peerhost_feed::fuzz::lemmy(data);
});
