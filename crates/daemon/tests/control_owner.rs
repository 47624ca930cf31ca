//! The control socket serves only the store's owner (issue 17, item 8), tested with a second
//! local user: a process running as `nobody` (uid 65534) that reaches the socket — the store and
//! the socket opened to everyone, as an operator's mistake could leave them — is refused on its
//! peer credentials (`SO_PEERCRED`), and the append it asked for does not happen; the owner is
//! served before and after.
//!
//! Running a process as another user needs root. CI runs as root; elsewhere the test says that
//! it did not run. The second user is this test binary itself, started again with `PROBE` set.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;

use peerhost_daemon::control::{RemoteLog, socket_path};
use peerhost_daemon::{Daemon, FileConfig, Options};
use peerhost_store::{CreateOptions, Store};

/// Set in the second user's process: the storage directory to try.
const PROBE: &str = "PEERHOST_TEST_CONTROL_PROBE";
const NOBODY: u32 = 65534;
const TEST: &str = "another_local_user_is_refused_by_the_control_socket";

/// The second user's side: exit 0 when refused after connecting, 2 when it could not even
/// connect (the test's setup failed: the kernel refused, not the daemon), 3 when served.
fn probe(storage: &Path) -> ! {
    let code = match RemoteLog::open(storage, "a") {
        Ok(mut log) => {
            let appended = log.append(&[b"from another user".to_vec()]);
            println!("probe: served, append: {appended:?}");
            3
        }
        Err(peerhost_daemon::control::ControlError::Connect { source, .. }) => {
            println!("probe: could not connect: {source}");
            2
        }
        Err(e) => {
            println!("probe: refused: {e}");
            0
        }
    };
    std::process::exit(code)
}

fn owner_append(storage: &Path, block: &[u8]) -> u64 {
    let mut log = RemoteLog::open(storage, "a").expect("the owner is served");
    log.append(&[block.to_vec()]).expect("the owner appends")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_local_user_is_refused_by_the_control_socket() {
    if let Some(storage) = std::env::var_os(PROBE) {
        probe(Path::new(&storage));
    }
    let dir = tempfile::tempdir().unwrap();
    if std::fs::metadata(dir.path()).unwrap().uid() != 0 {
        eprintln!(
            "{TEST}: not run: running a process as another user needs root (CI runs as root)"
        );
        return;
    }
    Store::open(dir.path())
        .unwrap()
        .create("a", CreateOptions::default())
        .unwrap();
    let daemon = Daemon::start(Options::new(dir.path(), FileConfig::default()))
        .await
        .unwrap();
    let storage = dir.path().to_path_buf();
    // The kernel's guard taken away, so that only the daemon's own check stands.
    std::fs::set_permissions(&storage, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        socket_path(&storage),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();

    let s = storage.clone();
    assert_eq!(
        tokio::task::spawn_blocking(move || owner_append(&s, b"first"))
            .await
            .unwrap(),
        1
    );

    // A copy of this binary the other user can reach wherever the checkout lives.
    let bin = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = bin.path().join("probe");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = storage.clone();
    let out = tokio::task::spawn_blocking(move || {
        let run = |exe: &Path| {
            std::process::Command::new(exe)
                .args(["--exact", TEST, "--nocapture"])
                .env(PROBE, &s)
                .uid(NOBODY)
                .gid(NOBODY)
                .output()
        };
        // Where the temporary directory forbids running programs, the binary where it is.
        run(&exe)
            .or_else(|_| run(&std::env::current_exe().unwrap()))
            .unwrap()
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let said = said
        .lines()
        .find(|l| l.starts_with("probe:"))
        .unwrap_or("")
        .to_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the second user: {said} (stderr: {})",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.starts_with("probe: refused"), "{said}");

    // Nothing was appended for it; the owner is still served.
    let s = storage.clone();
    assert_eq!(
        tokio::task::spawn_blocking(move || owner_append(&s, b"second"))
            .await
            .unwrap(),
        2
    );
    daemon.shutdown(std::time::Duration::from_millis(200)).await;
}
