//! Files of the app logs we hold, by SHA-256 (`GET /v1/blob/{sha256}`, `protocol/gateway.md`
//! §3.4): the actor keeps a [`BlobIndex`] current, [`crate::NodeSource`] reads from it.
//!
//! - which logs: every log the daemon knows as a community's `assets` part (a mirrored or
//!   written community's app log);
//! - when: whenever such a log's head or blocks change (the actor's node events), when it is
//!   tagged as an app log, and at start; a log indexed at its current (fork, length) is not
//!   read again;
//! - what: its current asset index, the last valid one among its last [`SCAN`] blocks (as the
//!   browser's runtime finds it); without one there (a publish in progress, blocks not here
//!   yet) the files indexed before stay, and the next change tries again;
//! - serving: the file's chunks read from our verified blocks, size and SHA-256 checked
//!   (`peerhost_feed::assets::read_content`) before a byte is answered.

use peerhost_feed::{Asset, Blocks, Entry, Kind};
use peerhost_gateway::blob::{BlobError, BlobIndex, Sha256};
use peerhost_ids::Key;
use peerhost_node::Node;
use peerhost_store::Core;

/// Blocks looked at from the end of an app log for its asset index (the runtime's `app()`
/// looks at as many).
pub(crate) const SCAN: u64 = 16;

/// The current asset index of `core`: the last one among its last [`SCAN`] blocks whose
/// files all lie before it. `None` when there is none there, or its block is not held.
fn current_index(core: &mut Core) -> Option<Vec<Asset>> {
    let length = Blocks::length(core);
    for index in (length.saturating_sub(SCAN)..length).rev() {
        let Ok(Some(block)) = core.block(index) else {
            continue;
        };
        let Ok(entry) = Entry::decode(&block) else {
            continue;
        };
        if let Some(Kind::AssetIndex(i)) = entry.into_kind() {
            if i.files
                .iter()
                .all(|a| a.start.saturating_add(a.blocks) <= index)
            {
                return Some(i.files);
            }
        }
    }
    None
}

/// Index the files of the app log `key` in `blobs`, unless it is indexed at its current
/// version already. Returns the files indexed (`None`: nothing read, or no index found).
pub(crate) fn index_app(node: &Node, blobs: &BlobIndex, key: Key) -> Option<usize> {
    let dkey = key.discovery_key();
    let (version, files) = node.with(|r| {
        let core = r.core_mut(&dkey)?;
        let version = (core.fork(), core.length());
        if blobs.version(&key) == Some(version) {
            return None;
        }
        Some((version, current_index(core)?))
    })?;
    let got = blobs.update(
        key,
        version,
        files.iter().filter_map(|a| {
            let sha: [u8; 32] = a.sha256.as_slice().try_into().ok()?;
            Some((Sha256(sha), a.start, a.blocks, a.size))
        }),
    );
    if got.dropped > 0 {
        tracing::warn!(
            log = %key.to_z32(),
            dropped = got.dropped,
            "the index of files by hash is full: some files of this app log are not served by \
             hash (readers fetch them as ranges)"
        );
    }
    Some(got.files)
}

/// The bytes of the file `sha` from the first app log that holds it whole, at most
/// `max_bytes`.
pub(crate) fn read_blob(
    node: &Node,
    blobs: &BlobIndex,
    sha: &Sha256,
    max_bytes: u64,
) -> Result<Vec<u8>, BlobError> {
    let mut err = BlobError::Unknown;
    for at in blobs.find(sha) {
        if at.size > max_bytes {
            err = BlobError::TooLarge { size: at.size };
            continue;
        }
        let asset = Asset {
            size: at.size,
            sha256: sha.0.to_vec(),
            start: at.start,
            blocks: at.blocks,
            ..Asset::default()
        };
        let dkey = at.log.discovery_key();
        let read = node.with(|r| {
            let core = r.core_mut(&dkey)?;
            // `size` is at most `max_bytes`: bounded.
            let mut out = Vec::with_capacity(usize::try_from(at.size).unwrap_or(0));
            Some(peerhost_feed::assets::read_content(core, &asset, &mut out).map(|_| out))
        });
        match read {
            Some(Ok(bytes)) => return Ok(bytes),
            Some(Err(peerhost_feed::assets::AssetError::Log(e))) => {
                err = BlobError::Source(Box::new(e));
            }
            Some(Err(e)) => {
                // Blocks not here yet, or an index that lies about its files: another copy.
                tracing::debug!(log = %at.log.to_z32(), sha = %sha.to_hex(), "blob: {e}");
                if !matches!(err, BlobError::Source(_) | BlobError::TooLarge { .. }) {
                    err = BlobError::Unavailable;
                }
            }
            None => {}
        }
    }
    Err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerhost_feed::assets::{append_content, index_entry};
    use peerhost_ids::KeyPair;
    use peerhost_node::Config as NodeConfig;
    use peerhost_store::{CreateOptions, Durability, Options, Store};

    /// An app log grows (a new index): the index follows; content is checked against its hash
    /// before it is served; a file too large, unknown, or whose blocks lie is not served.
    #[tokio::test]
    async fn the_index_follows_the_app_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(
            dir.path(),
            Options::default().durability(Durability::Process),
        )
        .unwrap();
        let mut core = store.create("app", CreateOptions::default()).unwrap();
        let a = append_content(&mut core, &b"runtime v1"[..], |_| {}).unwrap();
        let i1 = index_entry(vec![a.asset("peerhost-runtime.js", "text/javascript")], 1);
        core.append(&[i1.encode().unwrap()]).unwrap();
        let key = core.key();
        let node = Node::new(KeyPair::generate(), NodeConfig::default());
        let dkey = node.with(|r| r.add_core(core, false, std::time::Instant::now()));
        let blobs = BlobIndex::default();

        assert_eq!(index_app(&node, &blobs, key), Some(1));
        // The same version is not read again.
        assert_eq!(index_app(&node, &blobs, key), None);
        let h1 = Sha256(peerhost_feed::assets::hash(&b"runtime v1"[..]).unwrap().0);
        assert_eq!(
            read_blob(&node, &blobs, &h1, 1 << 20).unwrap(),
            b"runtime v1"
        );
        assert!(matches!(
            read_blob(&node, &blobs, &h1, 4),
            Err(BlobError::TooLarge { size: 10 })
        ));
        assert!(matches!(
            read_blob(&node, &blobs, &Sha256([1; 32]), 1 << 20),
            Err(BlobError::Unknown)
        ));

        // A new version of the app: chunks, then an index. Mid-publish (chunks only) the
        // current index is still the old one (within the last blocks): its files stay.
        let b = node.with(|r| {
            let core = r.core_mut(&dkey).unwrap();
            append_content(core, &b"runtime v2"[..], |_| {}).unwrap()
        });
        assert_eq!(index_app(&node, &blobs, key), Some(1));
        assert_eq!(blobs.version(&key), Some((0, 3)));
        assert!(read_blob(&node, &blobs, &h1, 1 << 20).is_ok());
        // An index that claims a hash its content does not have: listed, never served.
        let mut lying = b.asset("evil.js", "text/javascript");
        lying.sha256 = vec![9; 32];
        node.with(|r| {
            let core = r.core_mut(&dkey).unwrap();
            let i2 = index_entry(
                vec![b.asset("peerhost-runtime.js", "text/javascript"), lying],
                2,
            );
            core.append(&[i2.encode().unwrap()]).unwrap();
        });
        assert_eq!(index_app(&node, &blobs, key), Some(2));
        let h2 = Sha256(peerhost_feed::assets::hash(&b"runtime v2"[..]).unwrap().0);
        assert_eq!(
            read_blob(&node, &blobs, &h2, 1 << 20).unwrap(),
            b"runtime v2"
        );
        assert!(matches!(
            read_blob(&node, &blobs, &h1, 1 << 20),
            Err(BlobError::Unknown)
        ));
        assert!(matches!(
            read_blob(&node, &blobs, &Sha256([9; 32]), 1 << 20),
            Err(BlobError::Unavailable)
        ));
    }
}
