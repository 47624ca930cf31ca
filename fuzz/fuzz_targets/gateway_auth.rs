//! What an instance parses from strangers before anything else (`protocol/gateway.md` §7): the
//! `Authorization` header of a signed request, peer URLs, and a signed request's verification
//! with everything attacker-chosen. No panic; a parsed header re-encodes to a header that
//! parses to the same credentials; a parsed URL's canonical form parses to the same address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerhost_gateway::address::{self, Host};
use peerhost_gateway::auth::{Credentials, Request, Verifier};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Credentials::parse(text) {
        assert_eq!(Credentials::parse(&c.header_value()), Ok(c));
    }
    if let Ok((Host::Ip(ip), port)) = address::parse_peer_url(text) {
        let canonical = address::canonical_url(std::net::SocketAddr::new(ip, port));
        let (again, p2) = address::parse_peer_url(&canonical).expect("canonical parses");
        assert_eq!((again, p2), (Host::Ip(address::unmap(ip)), port));
        let _ = address::classify(ip);
    }
    let mut mid = text.len() / 2;
    while !text.is_char_boundary(mid) {
        mid -= 1;
    }
    let (head, rest) = text.split_at(mid);
    let req = Request {
        origin: rest,
        method: "POST",
        path: rest,
        body: rest.as_bytes(),
    };
    let _ = Verifier::default().verify(Some(head), &[rest], &req, 1_700_000_000_000);
});
