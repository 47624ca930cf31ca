//! hyperdht: every HyperDHT message decoder (peer records, announce, lookup replies, handshake,
//! holepunch, noise and holepunch payloads, mutable / immutable, plugin): no panic, and whatever
//! decodes re-encodes to the same value.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    peerhost_hyperdht::fuzz::messages(data);
});
