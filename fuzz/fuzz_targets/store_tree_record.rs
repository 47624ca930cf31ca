//! One 64-byte tree record at an arbitrary index: no panic; damage is never read as a node.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (index, record) = data.split_at(8);
    let index = u64::from_le_bytes(index.try_into().expect("8 bytes"));
    let _ = peerhost_store::fuzz::tree_record(index, record);
});
