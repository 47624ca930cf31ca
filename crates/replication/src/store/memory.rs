//! [`MemoryLog`]: a hypercore log held in memory, behind the same [`LogStore`] contract as the
//! disk store — commits become visible at `finish_commit`, not before — so pair tests, fuzz
//! targets and short-lived logs replicate with no files. Nothing is bounded but by the log:
//! it holds every block and node it is given.

use std::collections::BTreeMap;

use peerhost_ids::{Key, KeyPair};
use peerhost_log::{
    Data, Manifest, ManifestError, Node, NodeSource, Reorg, Request, Tree, TreeError, Verifier,
};
use peerhost_store::{Changes, CoreError};

use super::{CommitJob, LogStore};

/// The commit of a [`MemoryLog`]: nothing to write, the log takes the changes in at
/// `finish_commit`.
#[derive(Debug, Clone, Copy)]
pub struct MemoryCommit;

impl CommitJob for MemoryCommit {
    fn run(&self) {}
}

/// Nodes in a map, failing like the disk store's (never, in practice).
#[derive(Debug, Default, Clone)]
struct MemNodes(BTreeMap<u64, Node>);

impl NodeSource for MemNodes {
    type Error = peerhost_store::Error;
    fn node(&mut self, index: u64) -> Result<Option<Node>, Self::Error> {
        Ok(self.0.get(&index).copied())
    }
}

/// Nodes of a reorg laid over the log's.
struct Layered<'a> {
    extra: &'a [Node],
    nodes: &'a MemNodes,
}

impl NodeSource for Layered<'_> {
    type Error = peerhost_store::Error;
    fn node(&mut self, index: u64) -> Result<Option<Node>, Self::Error> {
        match self.extra.iter().find(|n| n.index == index) {
            Some(n) => Ok(Some(*n)),
            None => Ok(self.nodes.0.get(&index).copied()),
        }
    }
}

/// A hypercore log in memory: a writer (with its key pair) or a replica, with the same
/// signatures, proofs and verification rules as a log on disk.
#[derive(Debug, Clone)]
pub struct MemoryLog {
    key: Key,
    tree: Tree,
    verifier: Option<Verifier>,
    key_pair: Option<KeyPair>,
    nodes: MemNodes,
    blocks: BTreeMap<u64, Vec<u8>>,
    /// A commit begun and not finished.
    pending: Option<Changes>,
}

impl MemoryLog {
    /// A new, empty log we write, keyed by its default single-signer manifest (a v11 log, as
    /// `Store::create` makes), or by the public key itself with `compat`.
    pub fn writer(key_pair: KeyPair, compat: bool) -> Self {
        let verifier = if compat {
            Verifier::compat(key_pair.public_key())
        } else {
            Verifier::from_manifest(Manifest::default_signer(key_pair.public_key()))
        };
        let mut tree = Tree::new();
        tree.set_prologue(verifier.prologue());
        Self {
            key: verifier.key(),
            tree,
            verifier: Some(verifier),
            key_pair: Some(key_pair),
            nodes: MemNodes::default(),
            blocks: BTreeMap::new(),
            pending: None,
        }
    }

    /// An empty replica of the log `key`, with its manifest if known (otherwise it is learned
    /// from the first proof that carries one, or is the compat manifest of the key).
    pub fn replica(key: Key, manifest: Option<Manifest>) -> Result<Self, ManifestError> {
        let verifier = manifest.map(|m| Verifier::new(key, m)).transpose()?;
        let mut tree = Tree::new();
        if let Some(v) = &verifier {
            tree.set_prologue(v.prologue());
        }
        Ok(Self {
            key,
            tree,
            verifier,
            key_pair: None,
            nodes: MemNodes::default(),
            blocks: BTreeMap::new(),
            pending: None,
        })
    }

    /// Block `index`, if held.
    pub fn get(&self, index: u64) -> Option<&[u8]> {
        self.blocks.get(&index).map(Vec::as_slice)
    }

    /// How many blocks are held.
    pub fn held(&self) -> usize {
        self.blocks.len()
    }

    /// Check what is held: every block against its leaf, every parent against its children,
    /// the roots against the head, and the head's signature. Returns the blocks checked.
    pub fn verify(&self) -> Result<u64, String> {
        let mut checked = 0;
        for (&i, value) in &self.blocks {
            let leaf = self
                .nodes
                .0
                .get(&(2 * i))
                .ok_or(format!("block {i}: no leaf"))?;
            if Node::leaf(i, value) != *leaf {
                return Err(format!("block {i} does not hash to its leaf"));
            }
            checked += 1;
        }
        for (&i, n) in &self.nodes.0 {
            if i % 2 == 0 {
                continue;
            }
            let half = 1u64 << ((!i).trailing_zeros() - 1);
            if let (Some(l), Some(r)) =
                (self.nodes.0.get(&(i - half)), self.nodes.0.get(&(i + half)))
            {
                if Node::parent(i, l, r) != *n {
                    return Err(format!("node {i} does not hash from its children"));
                }
            }
        }
        let mut nodes = self.nodes.clone();
        let reopened = Tree::open(self.tree.length(), self.tree.fork(), None, &mut nodes)
            .map_err(|e| format!("roots: {e}"))?;
        if reopened.hash() != self.tree.hash() {
            return Err("roots do not hash to the head".into());
        }
        let signed = self.tree.signature().is_some();
        if signed
            && !self
                .verifier
                .as_ref()
                .is_some_and(|v| v.verify(&self.tree, self.tree.signature()))
        {
            return Err("the head's signature does not verify".into());
        }
        Ok(checked)
    }

    fn tree_error(&self, source: TreeError<peerhost_store::Error>) -> CoreError {
        CoreError::Tree {
            log: self.label(),
            source: Box::new(source),
        }
    }

    fn writer_parts(&self) -> Result<(&Verifier, &KeyPair), CoreError> {
        match (&self.verifier, &self.key_pair) {
            (Some(v), Some(kp)) => Ok((v, kp)),
            _ => Err(CoreError::NotWritable { log: self.label() }),
        }
    }

    /// Drop the nodes and blocks a truncation to `length` left dead.
    fn drop_tail(&mut self, t: &peerhost_log::Truncation, length: u64) {
        self.nodes
            .0
            .retain(|i, _| !t.nodes.contains(i) && !t.parents.contains(i));
        self.blocks.retain(|&i, _| i < length);
    }
}

impl LogStore for MemoryLog {
    type Commit = MemoryCommit;

    fn key(&self) -> Key {
        self.key
    }

    fn tree(&self) -> &Tree {
        &self.tree
    }

    fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_ref()
    }

    fn writable(&self) -> bool {
        self.key_pair.is_some() && self.verifier.is_some()
    }

    fn node(&mut self, index: u64) -> Result<Option<Node>, peerhost_store::Error> {
        // Masked by the committed length, as on disk.
        if !within(index, self.tree.length()) {
            return Ok(None);
        }
        Ok(self.nodes.0.get(&index).copied())
    }

    fn has(&mut self, index: u64) -> Result<bool, peerhost_store::Error> {
        Ok(index < self.tree.length() && self.blocks.contains_key(&index))
    }

    fn next_present(&mut self, start: u64, end: u64) -> Result<Option<u64>, peerhost_store::Error> {
        let end = end.min(self.tree.length());
        if start >= end {
            return Ok(None);
        }
        Ok(self.blocks.range(start..end).next().map(|(&i, _)| i))
    }

    fn next_missing(&mut self, start: u64, end: u64) -> Result<Option<u64>, peerhost_store::Error> {
        let end = end.min(self.tree.length());
        let mut i = start;
        if i >= end {
            return Ok(None);
        }
        for (&k, _) in self.blocks.range(start..end) {
            if k != i {
                break;
            }
            i += 1;
        }
        Ok((i < end).then_some(i))
    }

    fn proof(&mut self, request: &Request, _check_block: bool) -> Result<Option<Data>, CoreError> {
        if request.fork != self.tree.fork() {
            return Ok(None);
        }
        let value = match request.block {
            Some(b) => match self.blocks.get(&b.index) {
                Some(v) if b.index < self.tree.length() => Some(v.clone()),
                _ => return Ok(None),
            },
            None => None,
        };
        let proof = self
            .tree
            .proof(request, &mut self.nodes)
            .map_err(|e| self.tree_error(e))?;
        let manifest = match &self.verifier {
            Some(v) if request.manifest && !v.is_compat() => Some(v.manifest().clone()),
            _ => None,
        };
        Ok(proof.into_data(value, manifest))
    }

    fn append(&mut self, blocks: &[&[u8]]) -> Result<u64, CoreError> {
        self.finish_commit()?;
        let (verifier, key_pair) = self.writer_parts()?;
        if blocks.is_empty() {
            return Ok(self.tree.length());
        }
        let mut tree = self.tree.clone();
        let nodes = tree.append(blocks);
        tree.sign(verifier, key_pair)
            .map_err(|source| CoreError::Manifest {
                log: self.label(),
                source,
            })?;
        let start = self.tree.length();
        for (i, b) in blocks.iter().enumerate() {
            self.blocks.insert(start + i as u64, b.to_vec());
        }
        self.nodes.0.extend(nodes.into_iter().map(|n| (n.index, n)));
        self.tree = tree;
        Ok(self.tree.length())
    }

    fn truncate(&mut self, length: u64) -> Result<(), CoreError> {
        self.finish_commit()?;
        self.writer_parts()?;
        let mut tree = self.tree.clone();
        let fork = tree.fork() + 1;
        let t = tree
            .truncate(length, fork, &mut self.nodes)
            .map_err(|e| self.tree_error(e))?;
        let (verifier, key_pair) = self.writer_parts()?;
        tree.sign(verifier, key_pair)
            .map_err(|source| CoreError::Manifest {
                log: self.label(),
                source,
            })?;
        self.drop_tail(&t, length);
        self.tree = tree;
        Ok(())
    }

    fn apply_reorg(&mut self, reorg: Reorg) -> Result<(), CoreError> {
        self.finish_commit()?;
        if !reorg.finished() {
            return Err(self.tree_error(TreeError::InvalidOperation("reorg is not finished")));
        }
        let (head, nodes, ancestors) = reorg.into_parts();
        let mut mid = self.tree.clone();
        let shared = ancestors.min(mid.length());
        let mut layered = Layered {
            extra: &nodes,
            nodes: &self.nodes,
        };
        let t = mid
            .truncate(shared, head.fork(), &mut layered)
            .map_err(|e| self.tree_error(e))?;
        let roots: Vec<Node> = mid.roots().to_vec();
        self.drop_tail(&t, shared);
        self.nodes
            .0
            .extend(roots.iter().chain(&nodes).map(|n| (n.index, *n)));
        let prologue = self.tree.prologue();
        self.tree = head;
        self.tree.set_prologue(prologue);
        Ok(())
    }

    fn begin_commit(&mut self, changes: Changes) -> Result<MemoryCommit, CoreError> {
        self.finish_commit()?;
        self.pending = Some(changes);
        Ok(MemoryCommit)
    }

    fn finish_commit(&mut self) -> Result<(), CoreError> {
        let Some(c) = self.pending.take() else {
            return Ok(());
        };
        if self.verifier.is_none() {
            self.verifier = c.verifier;
        }
        self.nodes.0.extend(c.nodes.iter().map(|n| (n.index, *n)));
        for b in c.blocks {
            self.blocks.entry(b.index).or_insert(b.value);
        }
        if let Some(mut head) = c.head {
            if let Some(v) = &self.verifier {
                head.set_prologue(v.prologue());
            }
            self.tree = head;
        }
        Ok(())
    }
}

/// Whether flat index `i` is a node of a tree of `length` blocks (its right-most leaf is
/// below `length`), with checked arithmetic: any index may be asked for.
fn within(i: u64, length: u64) -> bool {
    let depth = (!i).trailing_zeros();
    if depth >= 63 {
        return false;
    }
    let offset = i >> (depth + 1);
    offset
        .checked_add(1)
        .and_then(|o| o.checked_mul(1u64 << depth))
        .and_then(|x| x.checked_sub(1))
        .is_some_and(|r| r < length)
}
