//! The store's two-slot header file on arbitrary bytes: no panic, a typed error for damage.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = peerhost_store::fuzz::header_file(data);
});
