//! Stores written by earlier versions open, and a store of format 1 is converted to format 2,
//! crash-safely: the snapshots in `tests/fixtures/format-<N>/` were written by the code of
//! format N (`examples/format_fixture.rs` lists what they hold); each test opens a copy and
//! checks every log, head, block and name.

use std::fs;
use std::path::Path;

use peerhost_ids::{Key, KeyPair};
use peerhost_log::Manifest;
use peerhost_store::{Durability, Error, Options, Store};

/// The block contents `examples/format_fixture.rs` wrote.
fn block(log: &str, i: u64) -> Vec<u8> {
    format!("{log} block {i}; ")
        .repeat((i % 7) as usize)
        .into_bytes()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn fixture(format: u32) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("format-{format}"));
    copy_dir(&src, &root);
    (dir, root)
}

fn options() -> Options {
    Options::default().durability(Durability::Process)
}

fn key_of(seed: u8) -> Key {
    Key(Manifest::default_signer(KeyPair::from_seed(&[seed; 32]).public_key()).hash())
}

/// Everything the fixture's logs must hold, through the public API.
fn check(store: &Store) {
    // posts: a v11 log we write, 40 blocks, truncated to 30 (fork 1), 5 more, 3..6 cleared.
    let mut posts = store.open_core("posts").unwrap();
    assert_eq!(posts.key(), key_of(1));
    assert_eq!((posts.length(), posts.fork()), (35, 1));
    assert!(posts.writable() && posts.signature_verifies());
    for i in 0..35 {
        let want = match i {
            3..6 => None,
            30.. => Some(block("posts-fork1", i)),
            _ => Some(block("posts", i)),
        };
        assert_eq!(posts.get(i).unwrap(), want, "posts block {i}");
    }
    assert_eq!(posts.verify().unwrap().blocks, 32);

    // old: a compat log we write.
    let mut old = store.open_core("old").unwrap();
    assert_eq!(old.key(), Key(KeyPair::from_seed(&[2; 32]).public_key()));
    let info = old.info().unwrap();
    assert!(info.compat && info.writable && info.signature_verifies);
    assert_eq!(info.length, 5);
    for i in 0..5 {
        assert_eq!(old.get(i).unwrap(), Some(block("old", i)));
    }

    // mirror: a sparse replica of 100 blocks holding 0, 7, 50..60, 99.
    let mut mirror = store.open_core("mirror").unwrap();
    assert_eq!(mirror.key(), key_of(3));
    let info = mirror.info().unwrap();
    assert!(!info.writable && info.manifest_known && info.signature_verifies);
    assert_eq!((info.length, info.contiguous_length), (100, 1));
    for i in 0..100 {
        let held = i == 0 || i == 7 || i == 99 || (50..60).contains(&i);
        let want = held.then(|| block("mirror", i));
        assert_eq!(mirror.get(i).unwrap(), want, "mirror block {i}");
    }
    assert_eq!(mirror.verify().unwrap().blocks, 13);

    // An empty replica whose manifest is not known yet, and a name for a log not held.
    let empty = store.open_core(&key_of(4).to_hex()).unwrap();
    assert_eq!(empty.length(), 0);
    assert!(empty.verifier().is_none());
    assert_eq!(store.name_key("dangling").unwrap(), Some(Key([0xdd; 32])));
    assert!(!store.contains(&Key([0xdd; 32])));
    let mut keys = vec![key_of(1), key_of(3), key_of(4), old.key()];
    keys.sort();
    assert_eq!(store.keys().unwrap(), keys);
}

/// The files of a format-2 store holding the fixture: a metadata file per log, a data file
/// per log that held a block, a key file per log we write; no directory per log.
fn check_files(root: &Path) {
    assert_eq!(
        fs::read_to_string(root.join("VERSION")).unwrap(),
        "peerhost-store 2\n"
    );
    assert!(!root.join("cores").exists());
    let mut names: Vec<String> = fs::read_dir(root.join("logs"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            assert!(e.file_type().unwrap().is_file());
            let n = e.file_name().into_string().unwrap();
            n.split_once('.').unwrap().1.to_owned()
        })
        .collect();
    names.sort();
    let key = names.iter().filter(|n| *n == "key").count();
    let meta = names.iter().filter(|n| *n == "meta").count();
    assert_eq!((meta, key), (4, 2), "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| ["key", "meta", "data"].contains(&n.as_str()))
    );
    assert!(fs::read_dir(root.join("tmp")).unwrap().next().is_none());
}

#[test]
fn a_format_1_store_is_converted_and_holds_everything() {
    let (_dir, root) = fixture(1);
    let store = Store::open_with(&root, options()).unwrap();
    check_files(&root);
    check(&store);
    // The converted logs change and reopen like any other.
    let mut posts = store.open_core("posts").unwrap();
    posts.append(&[b"after".as_slice()]).unwrap();
    drop(posts);
    drop(store);
    let store = Store::open_with(&root, options()).unwrap();
    let mut posts = store.open_core("posts").unwrap();
    assert_eq!(posts.get(35).unwrap().as_deref(), Some(&b"after"[..]));
    posts.truncate(34).unwrap();
    drop(posts);
    let mut old = store.open_core("old").unwrap();
    old.verify().unwrap();
}

#[test]
fn a_conversion_stopped_at_any_step_is_finished_by_the_next_open() {
    let mut step = 1;
    loop {
        let (_dir, root) = fixture(1);
        peerhost_store::testing::fail_conversion_at(Some(step));
        let first = Store::open_with(&root, options());
        peerhost_store::testing::fail_conversion_at(None);
        let done = match first {
            Ok(store) => {
                // The conversion ran to its end before reaching this step.
                drop(store);
                true
            }
            Err(e) => {
                assert!(e.to_string().contains("injected failure"), "{e}");
                // A stopped conversion has marked the store: an older version refuses it.
                assert_eq!(
                    fs::read_to_string(root.join("VERSION")).unwrap(),
                    "peerhost-store 2\n"
                );
                false
            }
        };
        let store = Store::open_with(&root, options()).unwrap();
        check_files(&root);
        check(&store);
        if done {
            assert!(step > 10, "the conversion has a few steps per log");
            break;
        }
        step += 1;
    }
}

#[test]
fn a_damaged_format_1_log_stops_the_conversion_with_a_clear_error() {
    let (_dir, root) = fixture(1);
    let cores = root.join("cores");
    let victim = fs::read_dir(&cores)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    fs::write(victim.join("header"), [0x42; 8192]).unwrap();
    let e = Store::open_with(&root, options()).unwrap_err();
    assert!(e.is_corruption(), "{e}");
    assert!(e.to_string().contains("no valid slot"), "{e}");
    // The logs converted before it are in place; the damaged one is still there to restore.
    assert!(victim.join("header").exists());
    assert!(matches!(
        Store::open_with(&root, options()),
        Err(Error::CorruptFile { .. })
    ));
}
