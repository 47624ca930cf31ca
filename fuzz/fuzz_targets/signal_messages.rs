//! What an instance and a home peer parse from each other and from browsers on the WebRTC
//! signaling path (`protocol/gateway.md` §7.3, `peerhost_gateway::signal`): poll bodies,
//! poll answers, offer and check answers, browsers' offers, signed answers, all
//! attacker-chosen. No panic; what parses re-encodes to JSON that parses to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerhost_gateway::signal::{
    CandidateRequest, CheckAnswer, OfferAnswer, OfferRequest, PollRequest, PollResponse, SignedAnswer,
    answer_signable, check_signable,
};

fuzz_target!(|data: &[u8]| {
    let json = |v: serde_json::Value| serde_json::to_vec(&v).expect("JSON encodes");
    if let Ok(p) = PollRequest::parse(data) {
        let again = serde_json::to_vec(&p).expect("encodes");
        assert_eq!(PollRequest::parse(&again), Ok(p));
    }
    if let Ok(r) = PollResponse::parse(data) {
        assert!(r.tasks.len() <= peerhost_gateway::signal::TASKS_PER_POLL);
        assert_eq!(PollResponse::parse(&json(r.to_json())), Ok(r));
    }
    if let Ok(a) = OfferAnswer::parse(data) {
        assert_eq!(OfferAnswer::parse(&json(a.to_json())), Ok(a));
    }
    if let Ok(a) = CheckAnswer::parse(data) {
        let _ = check_signable(&[7; 16], &a.results);
        assert_eq!(CheckAnswer::parse(&json(a.to_json())), Ok(a.clone()));
        let _ = a.verify(&[7; 32], &[0; 16]);
    }
    if let Ok(o) = OfferRequest::parse(data) {
        let _ = answer_signable(&o.sdp, &o.sdp);
    }
    if let Ok(c) = CandidateRequest::parse(data) {
        assert!(c.candidate.len() <= peerhost_gateway::signal::MAX_CANDIDATE);
    }
    let _ = SignedAnswer::parse(data);
});
