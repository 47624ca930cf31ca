//! A blind relay on a HyperDHT node (what `peerhost relay` runs; JS: a hyperdht server whose
//! connections `blind-relay`'s `Server.accept`s, as hyperdht's own relaying test sets it up).
//!
//! Peers connect to the relay's key like to any server, open the `blind-relay` channel named
//! by their own key, and pair; the relay splices their UDX streams on its server socket —
//! the socket their connections to a reachable relay arrive on — and forwards ciphertext it
//! cannot read (see `peerhost_relay` and `peerhost_udx::relay`).

use peerhost_ids::KeyPair;
use peerhost_relay::driver::RelayServer;

use super::Dht;
use super::connection::relay_messages;
use crate::error::Error;

/// A running relay service; dropping it stops accepting (running pairings end with their
/// sessions).
#[derive(Debug)]
pub struct RelayService {
    public_key: [u8; 32],
    relay: RelayServer,
    task: tokio::task::JoinHandle<()>,
}

impl RelayService {
    /// The key peers name in `relayThrough`.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The pairing core's counters.
    pub fn stats(&self) -> peerhost_relay::server::Stats {
        self.relay.stats()
    }

    /// What the relay forwarded.
    pub fn relayed(&self) -> peerhost_udx::relay::RelayStats {
        self.relay.socket().relay_stats()
    }
}

impl Drop for RelayService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Dht {
    /// Serve as a blind relay under `key_pair`: listen (announcing as any server does) and
    /// run a blind-relay session on every connection. Best on a node with a public address
    /// (`Config::dht.firewalled = false`), which is what peers can reach when their own NATs
    /// defeat holepunching.
    pub async fn serve_relay(&self, key_pair: &KeyPair) -> Result<RelayService, Error> {
        let mut server = self.listen(key_pair).await?;
        let relay = RelayServer::new(self.server_socket.clone(), Default::default());
        let sessions = relay.clone();
        let task = tokio::spawn(async move {
            while let Some(conn) = server.accept().await {
                // > relay.accept(socket, { id: socket.remotePublicKey })
                // Ours also pins the session's relay streams to the address of this connection
                // (issue 17: the relay sends only to peers that dialed it), and bounds sessions
                // per client: over the bound the connection is dropped.
                let id = conn.remote_public_key();
                let from = conn.remote_address();
                drop(sessions.accept_from(relay_messages(conn), Some(id), from));
            }
        });
        Ok(RelayService {
            public_key: key_pair.public_key(),
            relay,
            task,
        })
    }
}
