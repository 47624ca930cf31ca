//! Node ids and the 6-byte IPv4 address encoding (dht-rpc `lib/peer.js`).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use peerhost_encoding::{DecodeError, Reader, Writer};

/// Bytes in a node id, a target, a token.
pub const ID_LEN: usize = 32;

/// A 32-byte node id (also the shape of query targets).
///
/// A persistent node's id is bound to its public address: [`NodeId::from_addr`]. Receivers
/// keep an id only if it matches the datagram's real source, so ids cannot be chosen freely.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(pub [u8; ID_LEN]);

impl NodeId {
    /// `peer.id(host, port)`: BLAKE2b-256 of the 6-byte address (4 IP octets, port u16 LE).
    ///
    /// > `sodium.crypto_generichash(out, addr)` with `addr` = `ipv4.encode({host, port})`
    /// > (dht-rpc `lib/peer.js` `id`)
    pub fn from_addr(addr: SocketAddrV4) -> Self {
        Self(peerhost_ids::hash::blake2b256(&[&encode_addr(addr)]))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }
}

impl From<[u8; ID_LEN]> for NodeId {
    fn from(b: [u8; ID_LEN]) -> Self {
        Self(b)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The 6-byte `ipv4Address` encoding: the octets in dotted order, then the port u16 LE.
pub fn encode_addr(addr: SocketAddrV4) -> [u8; 6] {
    let ip = addr.ip().octets();
    let port = addr.port().to_le_bytes();
    [ip[0], ip[1], ip[2], ip[3], port[0], port[1]]
}

/// Read one 6-byte `ipv4Address`.
pub(crate) fn read_addr(r: &mut Reader<'_>) -> Result<SocketAddrV4, DecodeError> {
    let b: [u8; 6] = r.fixed()?;
    Ok(SocketAddrV4::new(
        Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        u16::from_le_bytes([b[4], b[5]]),
    ))
}

/// Write one 6-byte `ipv4Address`.
pub(crate) fn write_addr(w: &mut Writer<'_>, addr: SocketAddrV4) {
    w.raw(&encode_addr(addr));
}

/// Decode a 6-byte address from the start of `bytes` (the DOWN_HINT value).
pub fn decode_addr(bytes: &[u8]) -> Option<SocketAddrV4> {
    read_addr(&mut Reader::new(bytes)).ok()
}

/// The IPv4 form of a socket address: IPv4 as is, IPv4-mapped IPv6 unmapped, other IPv6 none
/// (dht-rpc speaks IPv4 only: every address on the wire is an `ipv4Address`).
pub fn to_v4(addr: SocketAddr) -> Option<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(a) => a
            .ip()
            .to_ipv4_mapped()
            .map(|ip| SocketAddrV4::new(ip, a.port())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn ids_match_js() {
        // From `node interop-tests/dht-rpc/vectors.js` (dht-rpc 6.27.0 `peer.id`).
        for (a, id) in [
            (
                "127.0.0.1:49737",
                "d1dcf835b0d62b9230c41393cb96a34f5f8b9f814f421ca3382dfc1678022e0e",
            ),
            (
                "1.2.3.4:1000",
                "31ddc8e187976134df9309a847249228885c6adfe154dd41e05b3eda8f4349a6",
            ),
            (
                "192.168.0.7:40000",
                "d028be703df5f065e293a3c5ee18afc09069aa05e754d93f0e46a20f537ac71a",
            ),
            (
                "0.0.0.0:0",
                "d24a8e1b3c02966d9333f96ba31248aad7e35f52bb3e5f0b24b10748ce03161f",
            ),
        ] {
            assert_eq!(NodeId::from_addr(addr(a)).to_string(), id, "{a}");
        }
    }

    #[test]
    fn address_layout() {
        // 127.0.0.1:33119 from the PING capture in PROTOCOL-DHT-UDX.md: 7f000001 5f81.
        assert_eq!(
            hex::encode(encode_addr(addr("127.0.0.1:33119"))),
            "7f0000015f81"
        );
        assert_eq!(
            decode_addr(&hex::decode("7f0000015f81ff").unwrap()),
            Some(addr("127.0.0.1:33119"))
        );
        assert_eq!(decode_addr(&[1, 2, 3]), None);
    }

    #[test]
    fn v4_mapped_addresses_are_unmapped() {
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:5".parse().unwrap();
        assert_eq!(to_v4(mapped), Some(addr("10.0.0.1:5")));
        assert_eq!(to_v4("[::1]:5".parse().unwrap()), None);
    }
}
