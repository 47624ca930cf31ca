//! Why the TCP peers we dial are not connected: the last failure of each `--peer`, kept so that
//! a wait that ends with nothing can say "connection refused at ADDR" instead of "no peer has
//! it" (issue 16), and so that the first failure is logged as a warning naming the cause.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Mutex;

use peerhost_node::ConnectionError;

/// The last failure of each dialled address, cleared when a connection to it comes up.
#[derive(Debug, Default)]
pub(crate) struct Dials {
    failed: Mutex<BTreeMap<SocketAddr, String>>,
}

impl Dials {
    /// Record that dialling `addr` failed with `error`; true when it was not failing before
    /// (so the caller logs it once, not at every retry).
    pub(crate) fn failed(&self, addr: SocketAddr, error: &ConnectionError) -> bool {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        failed.insert(addr, cause(error)).is_none()
    }

    /// A connection to `addr` came up (or ended cleanly after one).
    pub(crate) fn connected(&self, addr: SocketAddr) {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        failed.remove(&addr);
    }

    /// `tcp://ADDR: cause` for each address failing now, joined with `; `; `None` if none is.
    pub(crate) fn describe(&self) -> Option<String> {
        let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if failed.is_empty() {
            return None;
        }
        let all: Vec<String> = failed
            .iter()
            .map(|(addr, cause)| format!("tcp://{addr}: {cause}"))
            .collect();
        Some(all.join("; "))
    }
}

/// The cause in a few words a person knows: "connection refused", "timed out", …
pub(crate) fn cause(error: &ConnectionError) -> String {
    match error {
        ConnectionError::Io(e) => match e.kind() {
            ErrorKind::ConnectionRefused => "connection refused (nothing listens there)".into(),
            ErrorKind::TimedOut => "timed out (a firewall, or no host there?)".into(),
            ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
                "unreachable (no route to that address)".into()
            }
            ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof => {
                "the connection was closed during the handshake (not a peerhost or hypercore \
                 peer?)"
                    .into()
            }
            _ => e.to_string(),
        },
        ConnectionError::SecretStream(e) => {
            format!("the handshake failed ({e}): not a peerhost or hypercore peer?")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_new_once_and_cleared_by_a_connection() {
        let d = Dials::default();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let refused = || ConnectionError::Io(std::io::Error::from(ErrorKind::ConnectionRefused));
        assert!(d.failed(addr, &refused()));
        assert!(!d.failed(addr, &refused()));
        assert_eq!(
            d.describe().as_deref(),
            Some("tcp://127.0.0.1:1: connection refused (nothing listens there)")
        );
        d.connected(addr);
        assert_eq!(d.describe(), None);
        assert!(d.failed(addr, &refused()));
    }
}
