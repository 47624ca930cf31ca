//! Proof verification on arbitrary `data` messages against a real signed 37-block tree, as a
//! replica holding half of it: never panics, and never accepts what the writer did not sign.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use peerhost_encoding::from_prefix;
use peerhost_ids::KeyPair;
use peerhost_log::{Data, Manifest, Node, Tree, Verifier};

struct Fixture {
    verifier: Verifier,
    writer: Tree,
    replica: Tree,
    replica_nodes: BTreeMap<u64, Node>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let kp = KeyPair::from_seed(&[5; 32]);
        let verifier = Verifier::from_manifest(Manifest::default_signer(kp.public_key()));
        let blocks: Vec<Vec<u8>> = (0..37u32).map(|i| i.to_le_bytes().repeat(i as usize)).collect();
        let mut replica = Tree::new();
        let mut replica_nodes = BTreeMap::new();
        for n in replica.append(&blocks[..18]) {
            replica_nodes.insert(n.index, n);
        }
        replica.sign(&verifier, &kp).expect("default signer signs");
        let mut writer = replica.clone();
        writer.append(&blocks[18..]);
        writer.sign(&verifier, &kp).expect("default signer signs");
        Fixture { verifier, writer, replica, replica_nodes }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(d) = from_prefix::<Data>(data) else { return };
    let f = fixture();
    let mut nodes = f.replica_nodes.clone();
    if let Ok(verified) = f.replica.verify(&d, &f.verifier, &mut nodes) {
        if let Some(head) = verified.head {
            // A verified upgrade can only be a head the writer signed.
            assert_eq!(head.hash(), f.writer.hash(), "accepted an unsigned head");
        }
    }
});
