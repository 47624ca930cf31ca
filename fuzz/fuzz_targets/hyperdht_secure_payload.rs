//! hyperdht: the holepunch payload decryptor (`nonce ‖ secretbox`): no length or content
//! panics it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    peerhost_hyperdht::fuzz::secure_payload(data);
});
