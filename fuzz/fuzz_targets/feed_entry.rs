//! A community log block on arbitrary bytes: a typed error or an entry, never a panic; an entry
//! that decodes re-encodes (unknown fields included) and decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    peerhost_feed::fuzz::entry(data);
});
