//! Hypercore keys, discovery keys and their text forms.

use std::fmt;
use std::str::FromStr;

use crate::hash::blake2b256_keyed;
use crate::z32;

/// A hypercore key: 32 bytes naming a log. For a default v11 core it is the hash of the core's
/// manifest; for a compat core it is the writer's Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub [u8; 32]);

/// A discovery key: `BLAKE2b-256("hypercore"; key = core key)`. It names a log on the network
/// without revealing the key itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DiscoveryKey(pub [u8; 32]);

/// A key string that is not one of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid key {input:?}: expected 52 z-base32 characters, 64 hex characters, or pear://<z-base32>"
)]
pub struct ParseKeyError {
    /// The rejected input, cut to 80 characters.
    pub input: String,
}

impl Key {
    /// The discovery key of this key (hypercore-crypto `discoveryKey`).
    pub fn discovery_key(&self) -> DiscoveryKey {
        DiscoveryKey(blake2b256_keyed(&self.0, &[b"hypercore"]))
    }

    /// The key as 52 z-base32 characters (hypercore-id-encoding `encode`).
    pub fn to_z32(&self) -> String {
        z32::encode(&self.0)
    }

    /// The key as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parse a key the way hypercore-id-encoding `decode` does: 52 z-base32 characters, 64 hex
    /// characters (either case), or `pear://<z-base32>[/path]`.
    pub fn parse(s: &str) -> Result<Self, ParseKeyError> {
        let err = || ParseKeyError {
            input: s.chars().take(80).collect(),
        };
        let id = match s.strip_prefix("pear://") {
            Some(rest) => rest.split('/').next().unwrap_or_default(),
            None => s,
        };
        let bytes = match id.len() {
            52 => z32::decode(id).ok_or_else(err)?,
            64 => hex::decode(id).map_err(|_| err())?,
            _ => return Err(err()),
        };
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(Self)
            .map_err(|_| err())
    }
}

impl DiscoveryKey {
    /// The discovery key as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for Key {
    type Err = ParseKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_z32())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.to_hex())
    }
}

impl fmt::Display for DiscoveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for DiscoveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DiscoveryKey({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_accepted_form() {
        let key = Key([7; 32]);
        assert_eq!(Key::parse(&key.to_z32()), Ok(key));
        assert_eq!(Key::parse(&key.to_hex()), Ok(key));
        assert_eq!(Key::parse(&key.to_hex().to_uppercase()), Ok(key));
        assert_eq!(
            Key::parse(&format!("pear://{}/app/index.html", key.to_z32())),
            Ok(key)
        );
    }

    #[test]
    fn rejects_with_a_helpful_line() {
        for bad in ["", "abc", &"0".repeat(63), &"g".repeat(64), &"0".repeat(52)] {
            let e = Key::parse(bad).unwrap_err();
            assert!(
                e.to_string()
                    .contains("52 z-base32 characters, 64 hex characters")
            );
        }
    }
}

#[cfg(test)]
mod js_values {
    use super::*;

    #[test]
    fn matches_hypercore_crypto() {
        // From hypercore-id-encoding 1.3.0 and hypercore-crypto 3.7.0 on the key [7; 32].
        let key = Key([7; 32]);
        assert_eq!(key.to_z32(), JS_Z32);
        assert_eq!(key.discovery_key().to_hex(), JS_DKEY);
    }
    const JS_Z32: &str = "yhdoqba8yhdoqba8yhdoqba8yhdoqba8yhdoqba8yhdoqba8yhdo";
    const JS_DKEY: &str = "756b62ece5e350cafb254c479876815bfa735d12e8a866d09faf87bdec6305d7";
}
