//! The gateway's signed requests and key challenges (`protocol/gateway.md` §7.1) across two
//! implementations: `lib/peerhost-auth.js` was written in plain Node from the spec (node:crypto
//! Ed25519, sodium-universal BLAKE2b). Rust verifies what JS signs (and refuses it altered), and
//! JS verifies Rust's challenge answers. The browser end-to-end test registers a JS gateway with
//! the real instance the same way.

use std::process::Command;

use peerhost_gateway::auth::{self, AuthError, Request, Verifier};
use peerhost_ids::KeyPair;
use serde_json::Value;

fn node(script: &str) -> Value {
    let out = Command::new("node")
        .arg("-e")
        .arg(script)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "node: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from node")
}

#[test]
fn js_signs_rust_verifies_and_rust_answers_js_verifies() {
    let v = node(
        r#"
        const a = require('./lib/peerhost-auth.js')
        const kp = a.keyPair()
        const body = Buffer.from('{"url":"http://203.0.113.7:8081"}')
        const header = a.authorization(kp, 'http://Instance.example:8080', 'POST', '/v1/peers', body)
        process.stdout.write(JSON.stringify({ header, key: kp.publicKey.toString('hex') }))
        "#,
    );
    let header = v["header"].as_str().unwrap();
    let key = hex::decode(v["key"].as_str().unwrap()).unwrap();
    let req = Request {
        origin: "ignored",
        method: "POST",
        path: "/v1/peers",
        body: br#"{"url":"http://203.0.113.7:8081"}"#,
    };
    let origins = ["http://instance.example:8080"];
    // Altered, it does not verify (checked first: a verified header is then spent).
    let other = Request {
        body: br#"{"url":"http://203.0.113.8:8081"}"#,
        ..req
    };
    assert_eq!(
        Verifier::default().verify(Some(header), &origins, &other, auth::now_ms()),
        Err(AuthError::BadSignature)
    );
    let verifier = Verifier::default();
    let got = verifier
        .verify(Some(header), &origins, &req, auth::now_ms())
        .expect("the JS signature verifies");
    assert_eq!(got.to_vec(), key);
    assert_eq!(
        verifier.verify(Some(header), &origins, &req, auth::now_ms()),
        Err(AuthError::Replayed)
    );

    // Rust answers a challenge; JS checks it with the spec's message.
    let kp = KeyPair::generate();
    let challenge = auth::new_challenge();
    let sig = auth::answer_challenge(&kp, "http://203.0.113.7:8081", &challenge);
    let v = node(&format!(
        r#"
        const crypto = require('crypto')
        const key = crypto.createPublicKey({{
          key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from('{key}', 'hex')]),
          format: 'der', type: 'spki' }})
        const msg = Buffer.concat([Buffer.from('peerhost/gateway-challenge/v1\0http://203.0.113.7:8081\0'),
          Buffer.from('{challenge}', 'hex')])
        const ok = crypto.verify(null, msg, key, Buffer.from('{sig}', 'hex'))
        process.stdout.write(JSON.stringify({{ ok }}))
        "#,
        key = hex::encode(kp.public_key()),
        challenge = hex::encode(challenge),
        sig = hex::encode(sig),
    ));
    assert_eq!(v["ok"], true);
}
