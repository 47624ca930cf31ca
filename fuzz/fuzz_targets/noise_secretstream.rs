//! secret-stream / Noise: `peerhost_noise::fuzz::secretstream_pull` on arbitrary bytes must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    peerhost_noise::fuzz::secretstream_pull(data);
});
