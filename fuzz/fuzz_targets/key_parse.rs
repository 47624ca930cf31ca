//! Key parsing (z-base32, hex, pear://) on arbitrary text: no panic; what parses round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerhost_ids::Key;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(key) = Key::parse(s) {
            assert_eq!(Key::parse(&key.to_z32()), Ok(key));
            assert_eq!(Key::parse(&key.to_hex()), Ok(key));
        }
    }
});
