//! Download progress for a person at a terminal (issue 16 item 6): blocks, bytes and rate while
//! `follow` waits, drawn by indicatif on stderr only when stderr is a terminal (indicatif hides
//! the bar otherwise), and not at all under `-q` or `--stats`.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use peerhost_daemon::Daemon;

/// How often the bar reads the node's counters.
const TICK: Duration = Duration::from_millis(200);

/// A bar on stderr if `show` (it draws only on a terminal), else none.
pub(crate) fn bar(show: bool) -> Option<ProgressBar> {
    if !show {
        return None;
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}  {bytes} at {bytes_per_sec}, {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message("finding peers…");
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}

/// Keep `bar` up to date with what the daemon downloaded (every log: a community's parts
/// count too) and the peers it has; never returns (select it against the work).
pub(crate) async fn watch(daemon: &Daemon, bar: Option<&ProgressBar>) {
    let Some(bar) = bar else {
        return std::future::pending().await;
    };
    loop {
        let (blocks, bytes) = daemon
            .node()
            .log_stats()
            .values()
            .fold((0, 0), |(b, n), s| {
                (b + s.downloaded_blocks, n + s.downloaded_bytes)
            });
        let peers = daemon.node().peers().len();
        bar.set_position(bytes);
        if peers == 0 && blocks == 0 {
            bar.set_message("finding peers…");
        } else {
            bar.set_message(format!(
                "{blocks} blocks from {peers} peer{}",
                if peers == 1 { "" } else { "s" }
            ));
        }
        tokio::time::sleep(TICK).await;
    }
}
