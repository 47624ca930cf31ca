//! STUN: decoding arbitrary datagrams never panics; a server answers only binding requests,
//! with an answer no larger than 52 bytes plus a 420's attribute list, that decodes; a client
//! transaction takes nothing but its own answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerhost_webrtc::stun::{self, Binding, Message};

fuzz_target!(|data: &[u8]| {
    let m = Message::decode(data);
    let src = "192.0.2.1:3478".parse().unwrap();
    if let Some(a) = stun::answer(data, src) {
        let req = m.expect("only decodable requests are answered");
        assert_eq!(req.kind, stun::BINDING_REQUEST);
        assert!(a.len() <= 60);
        let resp = Message::decode(&a).expect("answers decode");
        assert_eq!(resp.transaction, req.transaction);
    }
    let _ = stun::local_ufrag(data);
    let mut b = Binding::new(src, std::time::Instant::now());
    if b.handle_response(data).is_some() {
        panic!("a random transaction id matched");
    }
});
