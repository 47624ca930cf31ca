//! hyperdht: a persistent HyperDHT node with a listening server, fed the bytes as a raw
//! datagram and as the value of every command (with and without a valid token): no panic,
//! and it still answers afterwards.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    peerhost_hyperdht::fuzz::node_requests(data);
});
