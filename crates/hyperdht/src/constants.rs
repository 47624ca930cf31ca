//! Wire constants of hyperdht 6.34.0 (`lib/constants.js`, `lib/router.js`): command numbers,
//! handshake modes, firewall kinds, error codes and the domain-separation namespaces.
//!
//! Modes, firewall kinds and error codes are open sets on the wire (JS decodes any `uint`), so
//! they are newtypes over `u64` with named constants rather than closed enums.

use std::fmt;

/// The HyperDHT commands, sent with dht-rpc's `internal` flag clear (`COMMANDS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Command {
    /// Noise IK handshake routed to a server (`PEER_HANDSHAKE`).
    PeerHandshake = 0,
    /// Encrypted holepunch coordination routed to a server (`PEER_HOLEPUNCH`).
    PeerHolepunch = 1,
    /// Ask for the announce record of a public key's hash (`FIND_PEER`).
    FindPeer = 2,
    /// Ask for the records announced under a topic (`LOOKUP`).
    Lookup = 3,
    /// Store a signed record (`ANNOUNCE`).
    Announce = 4,
    /// Remove a signed record (`UNANNOUNCE`).
    Unannounce = 5,
    /// Store a signed mutable value (`MUTABLE_PUT`).
    MutablePut = 6,
    /// Fetch a mutable value (`MUTABLE_GET`).
    MutableGet = 7,
    /// Store a value under its hash (`IMMUTABLE_PUT`).
    ImmutablePut = 8,
    /// Fetch a value by its hash (`IMMUTABLE_GET`).
    ImmutableGet = 9,
    /// A plugin request (`PLUGIN`); we host no plugins.
    Plugin = 10,
}

impl Command {
    /// The command for a wire number.
    pub fn from_u64(n: u64) -> Option<Self> {
        Some(match n {
            0 => Self::PeerHandshake,
            1 => Self::PeerHolepunch,
            2 => Self::FindPeer,
            3 => Self::Lookup,
            4 => Self::Announce,
            5 => Self::Unannounce,
            6 => Self::MutablePut,
            7 => Self::MutableGet,
            8 => Self::ImmutablePut,
            9 => Self::ImmutableGet,
            10 => Self::Plugin,
            _ => return None,
        })
    }

    /// The wire number.
    pub fn as_u64(self) -> u64 {
        self as u64
    }
}

macro_rules! open_set {
    ($(#[$doc:meta])* $name:ident { $($(#[$cdoc:meta])* $c:ident = $v:expr),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub u64);

        impl $name {
            $($(#[$cdoc])* pub const $c: Self = Self($v);)*
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0 {
                    $($v => f.write_str(stringify!($c)),)*
                    n => write!(f, "{}({n})", stringify!($name)),
                }
            }
        }
    };
}

open_set! {
    /// Who sent a `PEER_HANDSHAKE` / `PEER_HOLEPUNCH` message (`lib/router.js`).
    Mode {
        /// Client → node.
        FROM_CLIENT = 0,
        /// Server → the relay node that forwarded to it.
        FROM_SERVER = 1,
        /// Relay node → server.
        FROM_RELAY = 2,
        /// Relay node → the node that holds the server's route (handshake only).
        FROM_SECOND_RELAY = 3,
        /// Node → client: the answer.
        REPLY = 4,
    }
}

open_set! {
    /// What a peer knows about its own reachability (`FIREWALL`).
    Firewall {
        /// Not known yet.
        UNKNOWN = 0,
        /// Reachable unsolicited at a stable address.
        OPEN = 1,
        /// Behind a NAT that keeps the same mapping for every destination.
        CONSISTENT = 2,
        /// Behind a NAT that picks a new port per destination.
        RANDOM = 3,
    }
}

open_set! {
    /// Error codes: in a Noise or holepunch payload (0–3) or a dht-rpc reply (16, 17)
    /// (`ERROR`).
    ErrorCode {
        /// No error.
        NONE = 0,
        /// The connection attempt was aborted.
        ABORTED = 1,
        /// The peer speaks another `noisePayload` version.
        VERSION_MISMATCH = 2,
        /// The server is rate limiting random-NAT punches; retry later.
        TRY_LATER = 3,
        /// A mutable put reused a sequence number with a different value.
        SEQ_REUSED = 16,
        /// A mutable put had a lower sequence number than the stored one.
        SEQ_TOO_LOW = 17,
    }
}

/// The namespaces `crypto.namespace('hyperswarm/dht', [4, 5, 6, 0, 1, 10])` (`NS`), written
/// out in hex; a test derives each again.
pub mod ns {
    const fn h(s: &str) -> [u8; 32] {
        let b = s.as_bytes();
        let mut out = [0u8; 32];
        let mut i = 0;
        while i < 32 {
            out[i] = (nib(b[2 * i]) << 4) | nib(b[2 * i + 1]);
            i += 1;
        }
        out
    }

    const fn nib(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("bad hex digit in a namespace constant"),
        }
    }

    /// Prefix of announce signables.
    pub const ANNOUNCE: [u8; 32] =
        h("36386adddf9f6fd60db83a6f42fc159d1146aa8644037664230aaa1f0179d497");
    /// Prefix of unannounce signables.
    pub const UNANNOUNCE: [u8; 32] =
        h("ded293cd93fb395e756ecf5fff426529e72c36eacc22e5ed944d9099a2561e32");
    /// Prefix of mutable-put signables.
    pub const MUTABLE_PUT: [u8; 32] =
        h("668e823edd5ce7f5338d68bf1161f4a3c28ce437ee2ab49efd30d99366039b1e");
    /// The Noise IK prologue of `PEER_HANDSHAKE`.
    pub const PEER_HANDSHAKE: [u8; 32] =
        h("14d6d4b49214ab1033ed204976caa258bae9e1e8543b9ad1fd996a910b0c4e3a");
    /// Key-derivation input of the holepunch secret.
    pub const PEER_HOLEPUNCH: [u8; 32] =
        h("f1191cd5e67b10b54a507033280ed1ff0e12278268d5679c8f93d417210d168b");
    /// Prefix of plugin signables.
    pub const PLUGIN: [u8; 32] =
        h("6b8a2a8623f28c6c02a1e22abe515ce31cafd9af61d4b69970639aa7eb96a8d5");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_derive_from_their_name() {
        let derived = peerhost_ids::ns::namespace("hyperswarm/dht", &[4, 5, 6, 0, 1, 10]);
        assert_eq!(
            derived,
            vec![
                ns::ANNOUNCE,
                ns::UNANNOUNCE,
                ns::MUTABLE_PUT,
                ns::PEER_HANDSHAKE,
                ns::PEER_HOLEPUNCH,
                ns::PLUGIN
            ]
        );
    }

    #[test]
    fn commands_round_trip() {
        for n in 0..=10 {
            assert_eq!(Command::from_u64(n).map(Command::as_u64), Some(n));
        }
        assert_eq!(Command::from_u64(11), None);
        assert_eq!(format!("{:?}", Mode::REPLY), "REPLY");
        assert_eq!(format!("{:?}", Mode(9)), "Mode(9)");
    }
}
