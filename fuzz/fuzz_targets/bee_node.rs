//! Hyperbee blocks on arbitrary bytes: a node block, its index and a header decode to a typed
//! error or a value that re-encodes to itself; a log of arbitrary node blocks under a valid
//! header gives lookups, walks and a batch that end in an answer or an error, never a panic or
//! an endless loop (cycles and forward pointers are refused).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    peerhost_bee::fuzz::node(data);
    peerhost_bee::fuzz::tree(data);
});
