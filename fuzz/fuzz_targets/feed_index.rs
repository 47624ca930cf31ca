//! A community index log (a Hyperbee) on arbitrary bytes, over small valid posts and comments
//! logs: pages, a thread and a catch-up end in an answer or a typed error, never a panic; an
//! index value that decodes re-encodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    peerhost_feed::fuzz::index(data);
});
