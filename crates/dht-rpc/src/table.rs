//! The Kademlia routing table (kademlia-routing-table 1.0.6) plus dht-rpc's time-ordered set
//! of the same nodes (`this.nodes`, a `time-ordered-set`, in dht-rpc `index.js`).
//!
//! - 256 rows; a node goes to the row of the first bit where its id differs from ours.
//! - A row holds at most `k` (20) nodes, sorted by id. A full row refuses new nodes
//!   ([`Added::Full`]); dht-rpc then decides whether to ping an old node and swap.
//! - [`Table::closest`] walks rows from the target's row down to row 0, then upwards, exactly
//!   as JS does (not an exact XOR sort), so our `closerNodes` lists match JS byte for byte.
//! - The time order (least recently seen first) drives maintenance pings and the firewall
//!   check's choice of "most recently seen" nodes.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;

use crate::peer::{ID_LEN, NodeId};

/// Nodes per row (`k`).
pub const K: usize = 20;
const ROWS: usize = ID_LEN * 8;

/// One node in the routing table, with the bookkeeping dht-rpc keeps on it (times in ticks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNode {
    /// Its id, `NodeId::from_addr(addr)`.
    pub id: NodeId,
    /// Its address.
    pub addr: SocketAddrV4,
    /// Our address as it last reported it (a NAT sample), if any.
    pub to: Option<SocketAddrV4>,
    /// Tick of the last NAT sample taken from it (0: never).
    pub sampled: u64,
    /// Tick it was added.
    pub added: u64,
    /// Tick we last pinged it or heard from it.
    pub pinged: u64,
    /// Tick we last heard from it.
    pub seen: u64,
    /// DOWN_HINTs received about it.
    pub down_hints: u32,
    /// Position in the time order (larger = more recent).
    order: u64,
}

impl TableNode {
    /// A fresh node (all ticks 0).
    pub fn new(addr: SocketAddrV4, to: Option<SocketAddrV4>) -> Self {
        Self {
            id: NodeId::from_addr(addr),
            addr,
            to,
            sampled: 0,
            added: 0,
            pinged: 0,
            seen: 0,
            down_hints: 0,
            order: 0,
        }
    }
}

/// The outcome of [`Table::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Added {
    /// A new node.
    New,
    /// The id was there; its entry was replaced.
    Replaced,
    /// Its row is full; nothing changed.
    Full {
        /// The full row.
        row: usize,
    },
}

/// The routing table.
#[derive(Debug, Clone)]
pub struct Table {
    id: NodeId,
    k: usize,
    rows: Vec<Vec<TableNode>>,
    /// order → id, oldest first (the time-ordered set).
    time: BTreeMap<u64, NodeId>,
    next_order: u64,
}

impl Table {
    /// An empty table around `id`.
    pub fn new(id: NodeId) -> Self {
        Self {
            id,
            k: K,
            rows: vec![Vec::new(); ROWS],
            time: BTreeMap::new(),
            next_order: 1,
        }
    }

    /// Our id (the table's centre).
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Nodes per row.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.time.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }

    /// Row index of `id`: the first differing bit (`_diff`); our own id maps to the last row.
    pub fn row_of(&self, id: &NodeId) -> usize {
        for (i, (a, b)) in id.0.iter().zip(self.id.0.iter()).enumerate() {
            if a != b {
                return i * 8 + (a ^ b).leading_zeros() as usize;
            }
        }
        ROWS - 1
    }

    fn find(&self, id: &NodeId) -> (usize, Result<usize, usize>) {
        let row = self.row_of(id);
        // Nodes of one row agree with our id up to the row's bit, so comparing whole ids orders
        // them as JS's `Row.compare` (which starts at the row's byte) does.
        (row, self.rows[row].binary_search_by(|n| n.id.cmp(id)))
    }

    /// Add a node, or replace the entry with the same id. A replaced entry keeps its place in
    /// the time order; a new one becomes the most recent.
    pub(crate) fn add(&mut self, mut node: TableNode) -> Added {
        let (row, pos) = self.find(&node.id);
        match pos {
            Ok(i) => {
                node.order = self.rows[row][i].order;
                self.rows[row][i] = node;
                Added::Replaced
            }
            Err(_) if self.rows[row].len() >= self.k => Added::Full { row },
            Err(i) => {
                node.order = self.next_order;
                self.next_order += 1;
                self.time.insert(node.order, node.id);
                self.rows[row].insert(i, node);
                Added::New
            }
        }
    }

    /// Remove a node by id.
    pub(crate) fn remove(&mut self, id: &NodeId) -> Option<TableNode> {
        let (row, pos) = self.find(id);
        let node = self.rows[row].remove(pos.ok()?);
        self.time.remove(&node.order);
        Some(node)
    }

    /// A node by id.
    pub fn get(&self, id: &NodeId) -> Option<&TableNode> {
        let (row, pos) = self.find(id);
        pos.ok().map(|i| &self.rows[row][i])
    }

    pub(crate) fn get_mut(&mut self, id: &NodeId) -> Option<&mut TableNode> {
        let (row, pos) = self.find(id);
        pos.ok().map(move |i| &mut self.rows[row][i])
    }

    /// Whether the table holds `id`.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.get(id).is_some()
    }

    /// Mark a node as the most recently seen (`nodes.add(node)` on the time-ordered set).
    pub(crate) fn touch(&mut self, id: &NodeId) {
        let order = self.next_order;
        if let Some(node) = self.get_mut(id) {
            let old = std::mem::replace(&mut node.order, order);
            self.time.remove(&old);
            self.time.insert(order, *id);
            self.next_order += 1;
        }
    }

    /// The nodes of one row, sorted by id.
    pub fn row(&self, i: usize) -> &[TableNode] {
        self.rows.get(i).map_or(&[], Vec::as_slice)
    }

    /// Up to `k` nodes close to `target`, in JS `closest` order.
    pub fn closest(&self, target: &NodeId, k: usize) -> Vec<&TableNode> {
        let mut out = Vec::with_capacity(k.min(self.len()));
        let d = self.row_of(target);
        let rows = (0..=d).rev().chain(d + 1..ROWS);
        for i in rows {
            if out.len() >= k {
                break;
            }
            let missing = (k - out.len()).min(self.rows[i].len());
            out.extend(self.rows[i][..missing].iter());
        }
        out
    }

    /// The node at `index` in row-major order (for `random()` with an index drawn outside).
    pub(crate) fn nth(&self, mut index: usize) -> Option<&TableNode> {
        for row in &self.rows {
            if index < row.len() {
                return Some(&row[index]);
            }
            index -= row.len();
        }
        None
    }

    /// Nodes from the least to the most recently seen.
    pub fn oldest_first(&self) -> impl DoubleEndedIterator<Item = &TableNode> + '_ {
        self.time.values().filter_map(|id| self.get(id))
    }

    /// Every node, in table (row) order.
    pub fn iter(&self) -> impl Iterator<Item = &TableNode> + '_ {
        self.rows.iter().flatten()
    }

    /// A new table around `id` with our nodes re-added (dht-rpc `_updateNetworkState` when our
    /// id changes). Nodes that no longer fit are dropped; the time order is kept.
    pub(crate) fn rebuild(&self, id: NodeId) -> Self {
        let mut next = Self::new(id);
        for node in self.oldest_first() {
            if node.id == id {
                continue;
            }
            let _ = next.add(node.clone());
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn closest_matches_js_order() {
        // vectors.js `reply_find_node`: table id 0xaa.., nodes 1.2.3.4:1000, 5.6.7.8:2000,
        // 9.9.9.9:49737, target 0x11.. → JS answers 1.2.3.4:1000, 9.9.9.9:49737, 5.6.7.8:2000.
        let mut t = Table::new(NodeId([0xaa; 32]));
        for a in ["1.2.3.4:1000", "5.6.7.8:2000", "9.9.9.9:49737"] {
            assert_eq!(t.add(TableNode::new(addr(a), None)), Added::New);
        }
        let got: Vec<_> = t
            .closest(&NodeId([0x11; 32]), K)
            .iter()
            .map(|n| n.addr.to_string())
            .collect();
        assert_eq!(got, ["1.2.3.4:1000", "9.9.9.9:49737", "5.6.7.8:2000"]);
    }

    #[test]
    fn rows_fill_up_and_time_order_tracks_touches() {
        let mut t = Table::new(NodeId([0; 32]));
        let mut row0 = Vec::new();
        // Row 0 holds ids whose first bit is 1: about half of all addresses.
        for port in 1..=2000u16 {
            let n = TableNode::new(SocketAddrV4::new([10, 0, 0, 1].into(), port), None);
            if t.row_of(&n.id) == 0 {
                let added = t.add(n.clone());
                if row0.len() < K {
                    assert_eq!(added, Added::New);
                    row0.push(n.id);
                } else {
                    assert_eq!(added, Added::Full { row: 0 });
                }
            }
        }
        assert_eq!(t.row(0).len(), K);
        assert!(t.row(0).windows(2).all(|w| w[0].id < w[1].id));
        let oldest = t.oldest_first().next().unwrap().id;
        assert_eq!(oldest, row0[0]);
        t.touch(&row0[0]);
        assert_eq!(t.oldest_first().next_back().unwrap().id, row0[0]);
        assert_eq!(t.oldest_first().next().unwrap().id, row0[1]);
        assert!(t.remove(&row0[1]).is_some());
        assert!(t.remove(&row0[1]).is_none());
        assert_eq!(t.len(), t.iter().count());
        assert_eq!(t.len(), t.oldest_first().count());
    }

    #[test]
    fn own_id_is_last_row_and_rebuild_drops_it() {
        let a = addr("1.1.1.1:1");
        let mut t = Table::new(NodeId([7; 32]));
        t.add(TableNode::new(a, None));
        t.add(TableNode::new(addr("2.2.2.2:2"), None));
        let own = NodeId::from_addr(a);
        let t2 = t.rebuild(own);
        assert_eq!(t2.row_of(&own), ROWS - 1);
        assert_eq!(t2.len(), 1);
        assert!(!t2.contains(&own));
    }
}
