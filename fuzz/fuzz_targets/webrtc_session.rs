//! One data channel's session fed arbitrary browser messages, answers and sends: no panic,
//! the in-flight and buffered bounds hold, every message sent decodes and fits the limit.
//!
//! Input: records. `0x00 len bytes…` a browser message (binary), `0x01 len bytes…` a text
//! message, `0x02 n` answer the next dispatched request with n·97 bytes, `0x03 n` write up to
//! n messages, `0x04` close.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerhost_webrtc::frame::{ContentType, Frame, GoAwayCode};
use peerhost_webrtc::session::{Limits, Session};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_message: 300,
        max_buffered: 4000,
        ..Limits::default()
    };
    let mut s = Session::new(limits.clone());
    let mut dispatched = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let op = data[i];
        let arg = data.get(i + 1).copied().unwrap_or(0) as usize;
        i += 2;
        match op % 5 {
            0 | 1 => {
                let start = i.min(data.len());
                let end = (start + arg).min(data.len());
                s.handle_message(op % 5 == 0, &data[start..end]);
                i = end;
            }
            2 => {
                if !dispatched.is_empty() {
                    let id = dispatched.remove(0);
                    s.handle_answer(id, 200, ContentType::RangeProof, vec![7; arg * 97]);
                }
            }
            3 => {
                for _ in 0..arg {
                    let Some(m) = s.poll_message() else { break };
                    assert!(m.len() <= limits.max_message);
                    Frame::decode(&m).expect("the session sends valid frames");
                }
            }
            _ => s.close(GoAwayCode::Shutdown, "fuzz"),
        }
        while let Some((id, path)) = s.poll_request() {
            assert!(path.len() <= 1024);
            dispatched.push(id);
        }
        assert!(s.inflight() <= limits.max_inflight);
        assert!(dispatched.len() <= limits.max_inflight);
    }
    while s.poll_message().is_some() {}
});
