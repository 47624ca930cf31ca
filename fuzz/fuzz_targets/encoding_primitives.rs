//! Every compact-encoding primitive decoder on arbitrary bytes: no panic, no unbounded allocation,
//! and whatever decodes re-encodes to a prefix-consistent value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerhost_encoding::{Reader, from_prefix, to_vec};

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    while !r.is_empty() {
        let before = r.position();
        let _ = r.uint();
        let _ = r.buffer();
        let _ = r.string();
        let _ = r.uint32_array();
        let _ = r.array(1, |r| r.uint());
        if r.position() == before {
            break;
        }
    }
    if let Ok(n) = from_prefix::<u64>(data) {
        assert_eq!(from_prefix::<u64>(&to_vec(&n)), Ok(n));
    }
    if let Ok(b) = from_prefix::<Vec<u8>>(data) {
        assert_eq!(to_vec(&b).len(), peerhost_encoding::uint_len(b.len() as u64) + b.len());
    }
});
