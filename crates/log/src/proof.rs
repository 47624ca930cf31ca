//! The proof messages of the `hypercore/alpha` channel: `request` (type 1) and `data` (type 3),
//! exactly as hypercore 11.39.5 lib/messages.js `wire.request` and `wire.data` encode them.
//!
//! ```text
//! request = uint flags(1 block, 2 hash, 4 seek, 8 upgrade, 16 manifest, 32 priority)
//!         ‖ uint id ‖ uint fork
//!         ‖ [block: uint index ‖ uint nodes] [hash: uint index ‖ uint nodes]
//!         ‖ [seek: uint bytes ‖ uint padding] [upgrade: uint start ‖ uint length]
//!         ‖ [uint priority]
//! data    = uint flags(1 block, 2 hash, 4 seek, 8 upgrade, 16 manifest)
//!         ‖ uint request ‖ uint fork
//!         ‖ [block: uint index ‖ buffer value ‖ array(node) nodes]
//!         ‖ [hash: uint index ‖ array(node) nodes]
//!         ‖ [seek: uint bytes ‖ array(node) nodes]
//!         ‖ [upgrade: uint start ‖ uint length ‖ array(node) nodes
//!                    ‖ array(node) additionalNodes ‖ optionalBuffer signature]
//!         ‖ [manifest]
//! node    = uint index ‖ uint size ‖ fixed32 hash
//! ```
//!
//! Decoding follows JS acceptance: unknown flag bits are ignored, a `priority` flag with a zero
//! priority decodes as 0 (and re-encodes without the flag, as JS does), arrays above 2^20
//! items fail, trailing bytes after the message are ignored by [`peerhost_encoding::from_prefix`]
//! (protomux hands whole frames to `c.decode`, which does not check the end).

use peerhost_encoding::{CompactEncoding, DecodeError, Reader, Sizer, Writer};

use crate::Node;
use crate::codec;
use crate::manifest::Manifest;

const BLOCK: u64 = 1;
const HASH: u64 = 2;
const SEEK: u64 = 4;
const UPGRADE: u64 = 8;
const MANIFEST: u64 = 16;
const PRIORITY: u64 = 32;

/// Smallest encoding of a node: two one-byte varints and the hash.
pub(crate) const NODE_LEN: usize = 34;

impl CompactEncoding for Node {
    fn preencode(&self, st: &mut Sizer) {
        st.uint(self.index);
        st.uint(self.size);
        st.add(32);
    }
    fn encode(&self, st: &mut Writer<'_>) {
        st.uint(self.index);
        st.uint(self.size);
        st.raw(&self.hash);
    }
    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            index: st.uint()?,
            size: st.uint()?,
            hash: st.fixed()?,
        })
    }
}

pub(crate) fn nodes_len(st: &mut Sizer, nodes: &[Node]) {
    st.uint(nodes.len() as u64);
    for n in nodes {
        n.preencode(st);
    }
}

pub(crate) fn encode_nodes(st: &mut Writer<'_>, nodes: &[Node]) {
    st.uint(nodes.len() as u64);
    for n in nodes {
        n.encode(st);
    }
}

pub(crate) fn decode_nodes(st: &mut Reader<'_>) -> Result<Vec<Node>, DecodeError> {
    codec::array(st, NODE_LEN, Node::decode)
}

/// Which block (or tree node) a request wants, and how many of its ancestors the requester
/// lacks (`nodes`, see [`crate::Tree::missing_nodes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RequestBlock {
    /// Block index (for `block`) or flat-tree index (for `hash`).
    pub index: u64,
    /// How many nodes above `index` the requester does not have.
    pub nodes: u64,
}

/// Find the block holding byte `bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RequestSeek {
    /// Byte offset into the log.
    pub bytes: u64,
    /// Per-block padding excluded from the offsets (encrypted cores).
    pub padding: u64,
}

/// Ask for the signed head from `start` to at least `start + length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RequestUpgrade {
    /// The requester's current length.
    pub start: u64,
    /// How many blocks to grow by (at least).
    pub length: u64,
}

/// `wire.request`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Request {
    /// Request id, echoed in the `data` reply.
    pub id: u64,
    /// The fork the requester is on.
    pub fork: u64,
    /// A block and its proof.
    pub block: Option<RequestBlock>,
    /// A tree node and its proof (flat-tree index).
    pub hash: Option<RequestBlock>,
    /// A byte offset to locate.
    pub seek: Option<RequestSeek>,
    /// A newer signed head.
    pub upgrade: Option<RequestUpgrade>,
    /// Whether the reply should carry the manifest.
    pub manifest: bool,
    /// Scheduling priority (0 = none).
    pub priority: u64,
}

impl Request {
    fn flags(&self) -> u64 {
        let mut f = 0;
        if self.block.is_some() {
            f |= BLOCK;
        }
        if self.hash.is_some() {
            f |= HASH;
        }
        if self.seek.is_some() {
            f |= SEEK;
        }
        if self.upgrade.is_some() {
            f |= UPGRADE;
        }
        if self.manifest {
            f |= MANIFEST;
        }
        if self.priority != 0 {
            f |= PRIORITY;
        }
        f
    }
}

fn pair(st: &mut Reader<'_>) -> Result<(u64, u64), DecodeError> {
    Ok((st.uint()?, st.uint()?))
}

impl CompactEncoding for Request {
    fn preencode(&self, st: &mut Sizer) {
        st.uint(self.flags());
        st.uint(self.id);
        st.uint(self.fork);
        for (a, b) in [
            self.block.map(|b| (b.index, b.nodes)),
            self.hash.map(|b| (b.index, b.nodes)),
            self.seek.map(|s| (s.bytes, s.padding)),
            self.upgrade.map(|u| (u.start, u.length)),
        ]
        .into_iter()
        .flatten()
        {
            st.uint(a);
            st.uint(b);
        }
        if self.priority != 0 {
            st.uint(self.priority);
        }
    }

    fn encode(&self, st: &mut Writer<'_>) {
        st.uint(self.flags());
        st.uint(self.id);
        st.uint(self.fork);
        for (a, b) in [
            self.block.map(|b| (b.index, b.nodes)),
            self.hash.map(|b| (b.index, b.nodes)),
            self.seek.map(|s| (s.bytes, s.padding)),
            self.upgrade.map(|u| (u.start, u.length)),
        ]
        .into_iter()
        .flatten()
        {
            st.uint(a);
            st.uint(b);
        }
        if self.priority != 0 {
            st.uint(self.priority);
        }
    }

    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let flags = st.uint()?;
        let id = st.uint()?;
        let fork = st.uint()?;
        let block = if flags & BLOCK != 0 {
            let (index, nodes) = pair(st)?;
            Some(RequestBlock { index, nodes })
        } else {
            None
        };
        let hash = if flags & HASH != 0 {
            let (index, nodes) = pair(st)?;
            Some(RequestBlock { index, nodes })
        } else {
            None
        };
        let seek = if flags & SEEK != 0 {
            let (bytes, padding) = pair(st)?;
            Some(RequestSeek { bytes, padding })
        } else {
            None
        };
        let upgrade = if flags & UPGRADE != 0 {
            let (start, length) = pair(st)?;
            Some(RequestUpgrade { start, length })
        } else {
            None
        };
        let priority = if flags & PRIORITY != 0 { st.uint()? } else { 0 };
        Ok(Self {
            id,
            fork,
            block,
            hash,
            seek,
            upgrade,
            manifest: flags & MANIFEST != 0,
            priority,
        })
    }
}

/// A block with the nodes that prove it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DataBlock {
    /// Block index.
    pub index: u64,
    /// The block's bytes.
    pub value: Vec<u8>,
    /// Sibling (and, with a seek, seek) nodes from the leaf up to a node the requester has.
    pub nodes: Vec<Node>,
}

/// A tree node with the nodes that prove it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DataHash {
    /// Flat-tree index of the proven node.
    pub index: u64,
    /// The node itself, then its proof.
    pub nodes: Vec<Node>,
}

/// The nodes that locate a byte offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DataSeek {
    /// The requested byte offset.
    pub bytes: u64,
    /// A chain from the node holding `bytes` up to a subtree root.
    pub nodes: Vec<Node>,
}

/// A new signed head, given as the nodes that extend the requester's roots.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DataUpgrade {
    /// The requester's length this upgrade starts from.
    pub start: u64,
    /// The requested growth.
    pub length: u64,
    /// Nodes that grow the requester's roots to the roots at `start + length`.
    pub nodes: Vec<Node>,
    /// Roots (or subtrees) from `start + length` to the sender's full length.
    pub additional_nodes: Vec<Node>,
    /// The signature of the sender's head (`None` encodes as an empty buffer).
    pub signature: Option<Vec<u8>>,
}

/// `wire.data`: the reply to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Data {
    /// The request id this answers (0 = unsolicited).
    pub request: u64,
    /// The sender's fork.
    pub fork: u64,
    /// A block and its proof.
    pub block: Option<DataBlock>,
    /// A tree node and its proof.
    pub hash: Option<DataHash>,
    /// A seek proof.
    pub seek: Option<DataSeek>,
    /// A signed upgrade.
    pub upgrade: Option<DataUpgrade>,
    /// The core's manifest, when asked for and the core is not compat.
    pub manifest: Option<Manifest>,
}

impl Data {
    fn flags(&self) -> u64 {
        let mut f = 0;
        if self.block.is_some() {
            f |= BLOCK;
        }
        if self.hash.is_some() {
            f |= HASH;
        }
        if self.seek.is_some() {
            f |= SEEK;
        }
        if self.upgrade.is_some() {
            f |= UPGRADE;
        }
        if self.manifest.is_some() {
            f |= MANIFEST;
        }
        f
    }
}

impl CompactEncoding for Data {
    fn preencode(&self, st: &mut Sizer) {
        st.uint(self.flags());
        st.uint(self.request);
        st.uint(self.fork);
        if let Some(b) = &self.block {
            st.uint(b.index);
            st.buffer(&b.value);
            nodes_len(st, &b.nodes);
        }
        if let Some(h) = &self.hash {
            st.uint(h.index);
            nodes_len(st, &h.nodes);
        }
        if let Some(s) = &self.seek {
            st.uint(s.bytes);
            nodes_len(st, &s.nodes);
        }
        if let Some(u) = &self.upgrade {
            st.uint(u.start);
            st.uint(u.length);
            nodes_len(st, &u.nodes);
            nodes_len(st, &u.additional_nodes);
            st.optional_buffer(u.signature.as_deref());
        }
        if let Some(m) = &self.manifest {
            m.preencode(st);
        }
    }

    fn encode(&self, st: &mut Writer<'_>) {
        st.uint(self.flags());
        st.uint(self.request);
        st.uint(self.fork);
        if let Some(b) = &self.block {
            st.uint(b.index);
            st.buffer(&b.value);
            encode_nodes(st, &b.nodes);
        }
        if let Some(h) = &self.hash {
            st.uint(h.index);
            encode_nodes(st, &h.nodes);
        }
        if let Some(s) = &self.seek {
            st.uint(s.bytes);
            encode_nodes(st, &s.nodes);
        }
        if let Some(u) = &self.upgrade {
            st.uint(u.start);
            st.uint(u.length);
            encode_nodes(st, &u.nodes);
            encode_nodes(st, &u.additional_nodes);
            st.optional_buffer(u.signature.as_deref());
        }
        if let Some(m) = &self.manifest {
            m.encode(st);
        }
    }

    fn decode(st: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let flags = st.uint()?;
        let request = st.uint()?;
        let fork = st.uint()?;
        let block = if flags & BLOCK != 0 {
            Some(DataBlock {
                index: st.uint()?,
                value: st.buffer()?.to_vec(),
                nodes: decode_nodes(st)?,
            })
        } else {
            None
        };
        let hash = if flags & HASH != 0 {
            Some(DataHash {
                index: st.uint()?,
                nodes: decode_nodes(st)?,
            })
        } else {
            None
        };
        let seek = if flags & SEEK != 0 {
            Some(DataSeek {
                bytes: st.uint()?,
                nodes: decode_nodes(st)?,
            })
        } else {
            None
        };
        let upgrade = if flags & UPGRADE != 0 {
            Some(DataUpgrade {
                start: st.uint()?,
                length: st.uint()?,
                nodes: decode_nodes(st)?,
                additional_nodes: decode_nodes(st)?,
                signature: st.optional_buffer()?.map(<[u8]>::to_vec),
            })
        } else {
            None
        };
        let manifest = if flags & MANIFEST != 0 {
            Some(Manifest::decode(st)?)
        } else {
            None
        };
        Ok(Self {
            request,
            fork,
            block,
            hash,
            seek,
            upgrade,
            manifest,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use peerhost_encoding::{from_prefix, from_slice, to_vec};
    use proptest::prelude::*;

    fn n(index: u64, size: u64, fill: u8) -> Node {
        Node {
            index,
            size,
            hash: [fill; 32],
        }
    }

    #[test]
    fn request_snapshots() {
        // Every hex string in these snapshots is what hypercore 11.39.5's
        // `c.encode(messages.wire.request | wire.data, …)` returns for the same value.
        // From the tapped JS replication in PROTOCOL-NOTES 5.7:
        // request{id:1, upgrade{start:0, length:3}, manifest:true}
        let up = Request {
            id: 1,
            upgrade: Some(RequestUpgrade {
                start: 0,
                length: 3,
            }),
            manifest: true,
            ..Request::default()
        };
        // flags 8|16 = 0x18, id 1, fork 0, start 0, length 3
        assert_eq!(
            hex::encode(to_vec(&up)),
            "18" /* flags */
                .to_owned()
                + "01"
                + "00"
                + "00"
                + "03"
        );
        // request{id:1, block{index:1, nodes:1}, priority:1}
        let block = Request {
            id: 1,
            block: Some(RequestBlock { index: 1, nodes: 1 }),
            priority: 1,
            ..Request::default()
        };
        // flags 1|32 = 0x21, id 1, fork 0, index 1, nodes 1, priority 1
        assert_eq!(hex::encode(to_vec(&block)), "210100010101");
        let all = Request {
            id: 300,
            fork: 2,
            block: Some(RequestBlock { index: 7, nodes: 2 }),
            hash: Some(RequestBlock { index: 9, nodes: 0 }),
            seek: Some(RequestSeek {
                bytes: 70000,
                padding: 16,
            }),
            upgrade: Some(RequestUpgrade {
                start: 4,
                length: 5,
            }),
            manifest: true,
            priority: 0,
        };
        // flags 31, id fd2c01, fork 02, block 07 02, hash 09 00, seek fe70110100 10,
        // upgrade 04 05
        assert_eq!(
            hex::encode(to_vec(&all)),
            "1f".to_owned() + "fd2c01" + "02" + "0702" + "0900" + "fe70110100" + "10" + "0405"
        );
        assert_eq!(from_slice::<Request>(&to_vec(&all)).unwrap(), all);
    }

    #[test]
    fn request_decoding_follows_js() {
        // Unknown flag bits are ignored; a priority flag with priority 0 decodes as 0.
        let r = from_slice::<Request>(&[0x40 | 0x20, 5, 0, 0]).unwrap();
        assert_eq!(r.id, 5);
        assert_eq!(r.priority, 0);
        assert_eq!(to_vec(&r), [0, 5, 0]);
        // Trailing bytes are ignored by from_prefix.
        assert_eq!(from_prefix::<Request>(&[0, 1, 0, 9]).unwrap().id, 1);
        assert_eq!(
            from_prefix::<Request>(&[1, 1, 0, 2]),
            Err(DecodeError::UnexpectedEnd)
        );
    }

    #[test]
    fn data_snapshots() {
        // Hex from `c.encode(messages.wire.data, …)` (hypercore 11.39.5).
        let block = Data {
            request: 1,
            fork: 0,
            block: Some(DataBlock {
                index: 1,
                value: b"hi".to_vec(),
                nodes: vec![n(0, 3, 0xaa)],
            }),
            ..Data::default()
        };
        // flags 1, request 1, fork 0, index 1, value 02 6869, 1 node: index 0 size 3 hash
        assert_eq!(
            hex::encode(to_vec(&block)),
            format!("01010001026869010003{}", "aa".repeat(32))
        );
        let upgrade = Data {
            request: 2,
            fork: 1,
            upgrade: Some(DataUpgrade {
                start: 0,
                length: 3,
                nodes: vec![n(1, 6, 0xbb), n(4, 2, 0xcc)],
                additional_nodes: vec![],
                signature: Some(vec![0x55; 68]),
            }),
            manifest: Some(Manifest::default_signer([7; 32])),
            ..Data::default()
        };
        let bytes = to_vec(&upgrade);
        // flags 8|16, request 2, fork 1, start 0, length 3, 2 nodes, 0 additional,
        // signature 44 <68 bytes>, manifest
        let expected = format!(
            "18020100030201 06{} 0402{} 00 44{} {}",
            "bb".repeat(32),
            "cc".repeat(32),
            "55".repeat(68),
            hex::encode(to_vec(&Manifest::default_signer([7; 32])))
        )
        .replace(' ', "");
        assert_eq!(hex::encode(&bytes), expected);
        assert_eq!(from_slice::<Data>(&bytes).unwrap(), upgrade);
        // An empty signature buffer decodes as None.
        let mut none = upgrade.clone();
        none.upgrade.as_mut().unwrap().signature = Some(vec![]);
        let back = from_slice::<Data>(&to_vec(&none)).unwrap();
        assert_eq!(back.upgrade.unwrap().signature, None);
    }

    #[test]
    fn node_counts_are_checked_before_allocating() {
        // data{hash{index 0, nodes: count 2^20}} with nothing after it.
        let bytes = [2, 0, 0, 0, 0xfe, 0x00, 0x00, 0x10, 0x00];
        assert_eq!(from_prefix::<Data>(&bytes), Err(DecodeError::UnexpectedEnd));
        let bytes = [2, 0, 0, 0, 0xfe, 0x01, 0x00, 0x10, 0x00];
        assert_eq!(
            from_prefix::<Data>(&bytes),
            Err(DecodeError::Invalid("array is too big"))
        );
    }

    pub(crate) fn arb_node() -> impl Strategy<Value = Node> {
        (0u64..1 << 40, any::<u64>(), any::<[u8; 32]>()).prop_map(|(index, size, hash)| Node {
            index,
            size: size & peerhost_encoding::MAX_SAFE_UINT,
            hash,
        })
    }

    fn nodes() -> impl Strategy<Value = Vec<Node>> {
        proptest::collection::vec(arb_node(), 0..5)
    }

    fn uint() -> impl Strategy<Value = u64> + Clone {
        prop_oneof![0u64..300, 0..=peerhost_encoding::MAX_SAFE_UINT]
    }

    pub(crate) fn arb_request() -> impl Strategy<Value = Request> {
        let pair = || (uint(), uint());
        (
            (uint(), uint()),
            proptest::option::of(pair()),
            proptest::option::of(pair()),
            proptest::option::of(pair()),
            proptest::option::of(pair()),
            any::<bool>(),
            uint(),
        )
            .prop_map(|((id, fork), b, h, s, u, manifest, priority)| Request {
                id,
                fork,
                block: b.map(|(index, nodes)| RequestBlock { index, nodes }),
                hash: h.map(|(index, nodes)| RequestBlock { index, nodes }),
                seek: s.map(|(bytes, padding)| RequestSeek { bytes, padding }),
                upgrade: u.map(|(start, length)| RequestUpgrade { start, length }),
                manifest,
                priority,
            })
    }

    pub(crate) fn arb_data() -> impl Strategy<Value = Data> {
        let block = (
            uint(),
            proptest::collection::vec(any::<u8>(), 0..40),
            nodes(),
        )
            .prop_map(|(index, value, nodes)| DataBlock {
                index,
                value,
                nodes,
            });
        let hash = (uint(), nodes()).prop_map(|(index, nodes)| DataHash { index, nodes });
        let seek = (uint(), nodes()).prop_map(|(bytes, nodes)| DataSeek { bytes, nodes });
        let upgrade = (
            uint(),
            uint(),
            nodes(),
            nodes(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 1..80)),
        )
            .prop_map(
                |(start, length, nodes, additional_nodes, signature)| DataUpgrade {
                    start,
                    length,
                    nodes,
                    additional_nodes,
                    signature,
                },
            );
        (
            (uint(), uint()),
            proptest::option::of(block),
            proptest::option::of(hash),
            proptest::option::of(seek),
            proptest::option::of(upgrade),
            proptest::option::of(crate::manifest::tests::arb_manifest()),
        )
            .prop_map(
                |((request, fork), block, hash, seek, upgrade, manifest)| Data {
                    request,
                    fork,
                    block,
                    hash,
                    seek,
                    upgrade,
                    manifest,
                },
            )
    }

    proptest! {
        #[test]
        fn request_round_trips(r in arb_request()) {
            let bytes = to_vec(&r);
            let mut sizer = Sizer::default();
            r.preencode(&mut sizer);
            prop_assert_eq!(sizer.len(), bytes.len());
            prop_assert_eq!(from_slice::<Request>(&bytes).unwrap(), r);
        }

        #[test]
        fn data_round_trips(d in arb_data()) {
            let bytes = to_vec(&d);
            let mut sizer = Sizer::default();
            d.preencode(&mut sizer);
            prop_assert_eq!(sizer.len(), bytes.len());
            prop_assert_eq!(from_slice::<Data>(&bytes).unwrap(), d);
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = from_prefix::<Request>(&b);
            if let Ok(d) = from_prefix::<Data>(&b) {
                // Whatever decodes re-encodes without panicking.
                let _ = to_vec(&d);
            }
        }
    }
}
