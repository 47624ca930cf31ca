//! The disk quota (`quota` in peerhost.toml, `protocol/node.md`): the store is measured on
//! disk now and then, and the node gets the rest of the quota as its download budget; when it
//! is spent, every download stops (serving goes on).

use std::path::Path;

/// The quota's bookkeeping, owned by the actor.
#[derive(Debug, Default)]
pub(crate) struct Quota {
    pub(crate) limit: Option<u64>,
    /// Bytes on disk when last measured…
    pub(crate) measured: u64,
    /// …and the node's downloaded bytes at that moment.
    pub(crate) downloaded_at_measure: u64,
    pub(crate) full: bool,
}

impl Quota {
    /// Bytes used now: on disk when measured, plus what was downloaded since.
    pub(crate) fn used(&self, downloaded_now: u64) -> u64 {
        self.measured + downloaded_now.saturating_sub(self.downloaded_at_measure)
    }
}

/// Bytes the files under `dir` take on disk (allocated blocks on Unix, so sparse files count
/// what they hold).
pub fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.filter_map(Result::ok) {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::MetadataExt;
                    total += m.blocks() * 512;
                }
                #[cfg(not(unix))]
                {
                    total += m.len();
                }
            }
        }
    }
    total
}
