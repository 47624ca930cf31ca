//! Channel pairing, the way corestore does it: we open a log's channel on a connection when we
//! download the log (or to answer the remote's open of a log we hold); a remote open of a log
//! we do not hold — or of anything that is not a discovery key — is rejected without a word,
//! so a peer learns nothing about logs it did not name. Both opens in, the remote's capability
//! must prove it knows the log's key on this connection (lib/caps.js `replicate`).

use peerhost_ids::{DiscoveryKey, Key};
use peerhost_protomux::{ChannelHandle, OpenOptions};

use crate::ConnId;
use crate::conn::Conns;
use crate::error::Error;
use crate::messages::{ALIAS, Handshake, PROTOCOL, capability};
use crate::peer::Peer;

/// Open our channel for the log (`key`, `dkey`) on `conn`, unless it is open or the
/// connection failed. Whether a channel exists now.
pub(crate) fn open(
    conns: &mut Conns,
    conn: ConnId,
    dkey: DiscoveryKey,
    key: &Key,
    max_runs: usize,
) -> bool {
    let Some(c) = conns.get_mut(conn) else {
        return false;
    };
    if c.error.is_some() {
        return false;
    }
    if c.channels.contains_key(&dkey) {
        return true;
    }
    let hs = Handshake {
        seeks: true,
        capability: capability(c.info.is_initiator, key, &c.info.handshake_hash),
    };
    let hs = peerhost_encoding::to_vec(&hs);
    let opts = OpenOptions::new(PROTOCOL)
        .aliases(&[ALIAS])
        .id(Some(&dkey.0))
        .handshake(&hs);
    match c.mux.open_with(opts) {
        Ok(ch) => {
            c.channels.insert(dkey, ch);
            c.peers.insert(ch, Peer::new(dkey, max_runs));
            conns.wake(conn);
            true
        }
        Err(e) => {
            tracing::debug!(conn, log = %dkey, error = %e, "cannot open channel");
            false
        }
    }
}

/// The remote opened a channel with this `id`: answer with our open if `key_of` knows the log
/// (the mux then reports the channel opened), else reject it.
pub(crate) fn on_remote_open(
    conns: &mut Conns,
    conn: ConnId,
    protocol: &str,
    id: Option<&[u8]>,
    key_of: impl Fn(&DiscoveryKey) -> Option<Key>,
    max_runs: usize,
) {
    let dkey = id
        .and_then(|id| <[u8; 32]>::try_from(id).ok())
        .map(DiscoveryKey);
    let known = dkey.and_then(|d| Some((d, key_of(&d)?)));
    let opened = match known {
        Some((dkey, key)) => open(conns, conn, dkey, &key, max_runs),
        None => {
            // Unknown log (or not a discovery key): refuse without saying more.
            tracing::debug!(conn, "rejecting a channel for a log we do not have");
            false
        }
    };
    if !opened {
        if let Some(c) = conns.get_mut(conn) {
            c.mux.reject(protocol, id);
        }
    }
}

/// Both opens of `channel` are in: check the remote's handshake and capability
/// (`caps.replicate(this.stream.isInitiator === false, this.core.key, …)`). The log's
/// discovery key when the channel is now open; `Err` when the connection must end.
pub(crate) fn on_open(
    conns: &mut Conns,
    conn: ConnId,
    channel: ChannelHandle,
    handshake: &[u8],
    key_of: impl Fn(&DiscoveryKey) -> Option<Key>,
) -> Result<Option<DiscoveryKey>, Error> {
    let Some(c) = conns.get_mut(conn) else {
        return Ok(None);
    };
    let Some(peer) = c.peers.get_mut(&channel) else {
        return Ok(None);
    };
    let dkey = peer.dkey;
    let Some(key) = key_of(&dkey) else {
        return Ok(None);
    };
    let Ok(hs) = peerhost_encoding::from_prefix::<Handshake>(handshake) else {
        return Err(Error::InvalidHandshake {
            discovery_key: dkey,
        });
    };
    let expected = capability(!c.info.is_initiator, &key, &c.info.handshake_hash);
    if hs.capability != expected {
        return Err(Error::InvalidCapability {
            discovery_key: dkey,
        });
    }
    peer.opened = true;
    Ok(Some(dkey))
}
