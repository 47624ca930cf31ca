//! [`Core`]: a disk-backed hypercore — [`CoreStorage`] plus the `log` crate's [`Tree`].
//!
//! Ownership and flow:
//! - the [`Tree`] in memory is the committed head (length, fork, roots, signature); it always
//!   equals what the header on disk says, and is replaced only after a commit returned;
//! - every other node is read from the [`CoreStorage`] through [`NodeSource`];
//! - a writer ([`Core::append`], [`Core::truncate`]) computes the new head with the tree, signs
//!   it with the stored key pair, and commits nodes + blocks + head in one transaction;
//! - a replica ([`Core::apply`], [`Core::apply_reorg`]) verifies through the tree and the
//!   [`Verifier`] first and persists only what verified.

use peerhost_ids::{DiscoveryKey, Key, KeyPair};
use peerhost_log::{
    Data, Manifest, ManifestError, Node, NodeSource, Reorg, Request, Tree, TreeError, Verifier,
    VerifyError,
};

use crate::storage::Transaction;
use crate::{Changes, Commit, CoreStorage, Error, Head, LogLabel, NewLog, Store};

mod verify;
pub use verify::{VERIFY_STEP_NODES, Verification};

/// A failure of a [`Core`] operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A manifest that cannot be used for this key, or a key pair that is not its signer.
    #[error("log {log}: {source}: the key, manifest and key pair do not belong together")]
    Manifest {
        /// The log.
        log: LogLabel,
        /// What is wrong.
        #[source]
        source: ManifestError,
    },
    /// `append` or `truncate` on a log this store does not hold the secret key of.
    #[error("log {log} is read-only here (no secret key): append on the store that created it")]
    NotWritable {
        /// The log.
        log: LogLabel,
    },
    /// A stored head whose signature does not verify.
    #[error(
        "log {log} head (length {length}, fork {fork}) has an invalid signature: re-sync it \
         from a peer"
    )]
    BadSignature {
        /// The log.
        log: LogLabel,
        /// The head's length.
        length: u64,
        /// The head's fork.
        fork: u64,
    },
    /// A failure of the files.
    #[error(transparent)]
    Store(#[from] Error),
    /// A tree operation failed (a node it needs is missing, an argument is out of range).
    #[error("log {log}: {source} ({code}): run `peerhost log verify`", code = source.code())]
    Tree {
        /// The log.
        log: LogLabel,
        /// What failed.
        #[source]
        source: Box<TreeError<Error>>,
    },
    /// The stored roots do not hash to the stored head's tree hash.
    #[error(
        "log {log} tree roots do not match its head's tree hash: the tree file is damaged, \
         re-sync the log from a peer"
    )]
    TreeHashMismatch {
        /// The log.
        log: LogLabel,
    },
    /// The log was truncated or moved to another fork during a [`Core::verify_step`]
    /// verification: what it began with is gone.
    #[error(
        "log {log} moved from fork {from} to fork {to} (truncated) while it was verified: run \
         the verification again"
    )]
    ForkChanged {
        /// The log.
        log: LogLabel,
        /// The fork the verification began on.
        from: u64,
        /// The fork now.
        to: u64,
    },
    /// A `data` message (or reorg) that did not verify; nothing was stored.
    #[error("log {log}: proof rejected: {source} ({code})", code = source.code())]
    Verify {
        /// The log.
        log: LogLabel,
        /// Why.
        #[source]
        source: Box<VerifyError<Error>>,
    },
}

impl CoreError {
    /// The JS `hypercore-errors` code, where one applies (`INVALID_SIGNATURE`, …).
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::Verify { source, .. } => Some(source.code()),
            Self::Tree { source, .. } => Some(source.code()),
            Self::Manifest { source, .. } => Some(source.code()),
            Self::BadSignature { .. } => Some("INVALID_SIGNATURE"),
            _ => None,
        }
    }
}

/// Options for [`Store::create`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CreateOptions {
    /// Make a compat (hypercore 10 style) log: the key is the Ed25519 public key and heads are
    /// signed with raw 64-byte signatures. Default: a v11 log keyed by its manifest's hash.
    pub compat: bool,
    /// Use this key pair instead of a fresh random one.
    pub key_pair: Option<KeyPair>,
}

impl CreateOptions {
    /// A compat log.
    pub fn compat(mut self, compat: bool) -> Self {
        self.compat = compat;
        self
    }

    /// With this key pair.
    pub fn key_pair(mut self, key_pair: KeyPair) -> Self {
        self.key_pair = Some(key_pair);
        self
    }
}

/// What [`Core::info`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Info {
    /// The key.
    pub key: Key,
    /// The discovery key.
    pub discovery_key: DiscoveryKey,
    /// Blocks in the log.
    pub length: u64,
    /// Blocks `0..contiguous_length` are all stored here.
    pub contiguous_length: u64,
    /// Bytes in the log.
    pub byte_length: u64,
    /// Fork id.
    pub fork: u64,
    /// The tree hash of the head.
    pub tree_hash: [u8; 32],
    /// Whether the head carries a signature that verifies against the manifest.
    pub signature_verifies: bool,
    /// Whether this store holds the secret key (can append).
    pub writable: bool,
    /// Whether the log is compat (key = public key).
    pub compat: bool,
    /// Whether the manifest is known (a replica learns it from its first upgrade).
    pub manifest_known: bool,
}

/// What [`Core::verify`] checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Report {
    /// The log's length.
    pub length: u64,
    /// Stored blocks re-hashed against their leaves.
    pub blocks: u64,
    /// Parent nodes recomputed from their children.
    pub parents: u64,
    /// Whether the head is signed (an empty log, or a replica between two halves of a reorg,
    /// is not).
    pub signed: bool,
}

/// A disk-backed hypercore: append and sign as the writer, verify and store as a replica,
/// serve proofs either way.
#[derive(Debug)]
pub struct Core {
    storage: CoreStorage,
    tree: Tree,
    verifier: Option<Verifier>,
    /// What the commit in flight adopts when it succeeds ([`Core::begin_commit`]). Boxed, as
    /// is `settled`: rarely there, and a node holds tens of thousands of logs open.
    pending: Option<Box<Pending>>,
    /// The outcome of a commit a later change had to finish first, for
    /// [`Core::finish_commit`].
    settled: Option<Box<Result<(), CoreError>>>,
}

/// The in-memory half of a commit in flight.
#[derive(Debug)]
struct Pending {
    head: Option<Tree>,
    verifier: Option<Verifier>,
}

fn head_of(tree: &Tree) -> Head {
    Head {
        fork: tree.fork(),
        length: tree.length(),
        byte_length: tree.byte_length(),
        tree_hash: tree.hash(),
        signature: tree.signature().map(<[u8]>::to_vec).unwrap_or_default(),
    }
}

impl Store {
    /// Create a new log this store writes: a fresh key pair (or `options.key_pair`), the
    /// default single-signer manifest, and (unless `options.compat`) the manifest's hash as
    /// its key. `name` is bound to it.
    pub fn create(&self, name: &str, options: CreateOptions) -> Result<Core, CoreError> {
        crate::store::check_name(name)?;
        let key_pair = options.key_pair.unwrap_or_else(KeyPair::generate);
        let verifier = if options.compat {
            Verifier::compat(key_pair.public_key())
        } else {
            Verifier::from_manifest(Manifest::default_signer(key_pair.public_key()))
        };
        let tree = Tree::new();
        let new = NewLog::new(verifier.key())
            .manifest(peerhost_encoding::to_vec(verifier.manifest()))
            .key_pair(key_pair)
            .head(head_of(&tree))
            .name(name);
        let storage = self.create_storage(new)?;
        Core::from_storage(storage)
    }

    /// Create an empty replica of the log `key`, with its manifest if already known (else it
    /// is taken from the first proof that carries one). `name` is bound to it if given.
    pub fn create_replica(
        &self,
        key: Key,
        manifest: Option<&Manifest>,
        name: Option<&str>,
    ) -> Result<Core, CoreError> {
        let mut new = NewLog::new(key).head(head_of(&Tree::new()));
        if let Some(m) = manifest {
            Verifier::new(key, m.clone()).map_err(|source| CoreError::Manifest {
                log: LogLabel::new(key, name),
                source,
            })?;
            new = new.manifest(peerhost_encoding::to_vec(m));
        }
        if let Some(n) = name {
            new = new.name(n);
        }
        Core::from_storage(self.create_storage(new)?)
    }

    /// Open a log by local name or key (z-base32, hex or `pear://`).
    pub fn open_core(&self, query: &str) -> Result<Core, CoreError> {
        let (key, name) = self.resolve(query)?;
        Core::from_storage(self.open_storage(&key, name.as_deref())?)
    }
}

impl Core {
    /// Wrap opened files: decode the manifest, load the roots, check them against the head.
    pub fn from_storage(mut storage: CoreStorage) -> Result<Self, CoreError> {
        let log = storage.label().clone();
        let manifest_error = |reason: String| {
            CoreError::Store(Error::CorruptFile {
                what: "manifest",
                path: storage.path(),
                reason,
            })
        };
        let verifier = match storage.manifest() {
            None => None,
            Some(bytes) => {
                let m: Manifest = peerhost_encoding::from_slice(bytes)
                    .map_err(|e| manifest_error(e.to_string()))?;
                Some(Verifier::new(log.key(), m).map_err(|e| manifest_error(e.to_string()))?)
            }
        };
        let head = storage.head().clone();
        let signature = (!head.signature.is_empty()).then(|| head.signature.clone());
        let mut tree =
            Tree::open(head.length, head.fork, signature, &mut storage).map_err(|source| {
                CoreError::Tree {
                    log: log.clone(),
                    source: Box::new(source),
                }
            })?;
        if tree.hash() != head.tree_hash || tree.byte_length() != head.byte_length {
            return Err(CoreError::TreeHashMismatch { log });
        }
        if let Some(v) = &verifier {
            tree.set_prologue(v.prologue());
        }
        Ok(Self {
            storage,
            tree,
            verifier,
            pending: None,
            settled: None,
        })
    }

    /// How errors name this log.
    pub fn label(&self) -> LogLabel {
        self.storage.label().clone()
    }

    fn tree_error(&self, source: TreeError<Error>) -> CoreError {
        CoreError::Tree {
            log: self.label(),
            source: Box::new(source),
        }
    }

    /// The key.
    pub fn key(&self) -> Key {
        self.storage.key()
    }

    /// The discovery key.
    pub fn discovery_key(&self) -> DiscoveryKey {
        self.storage.discovery_key()
    }

    /// Number of blocks.
    pub fn length(&self) -> u64 {
        self.tree.length()
    }

    /// Bytes in all blocks.
    pub fn byte_length(&self) -> u64 {
        self.tree.byte_length()
    }

    /// Fork id.
    pub fn fork(&self) -> u64 {
        self.tree.fork()
    }

    /// The committed head as the `log` crate sees it.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// The verifier (`None` for a replica that has not learned the manifest yet).
    pub fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_ref()
    }

    /// The log's nodes, for the `log` crate's operations that read them (a reorg's
    /// `verify_reorg` / `update`, `missing_nodes`, `seek`).
    pub fn nodes(&mut self) -> &mut impl NodeSource<Error = Error> {
        &mut self.storage
    }

    /// How many nodes above flat index `index` this log lacks: the `nodes` to put in a request
    /// for that block or node (lib/merkle-tree.js `missingNodes`).
    pub fn missing_nodes(&mut self, index: u64) -> Result<u64, CoreError> {
        self.tree
            .missing_nodes(index, &mut self.storage)
            .map_err(|e| self.tree_error(e))
    }

    /// Whether this store can append to the log.
    pub fn writable(&self) -> bool {
        self.storage.key_pair().is_some() && self.verifier.is_some()
    }

    fn writer(&self) -> Result<(&Verifier, &KeyPair), CoreError> {
        match (&self.verifier, self.storage.key_pair()) {
            (Some(v), Some(kp)) => Ok((v, kp)),
            _ => Err(CoreError::NotWritable { log: self.label() }),
        }
    }

    /// After a failed commit, re-read the head the header now holds (the write may have
    /// landed even though the call failed).
    fn resync(&mut self) {
        let head = self.storage.head().clone();
        if head_of(&self.tree) == head {
            return;
        }
        let signature = (!head.signature.is_empty()).then(|| head.signature.clone());
        if let Ok(mut tree) = Tree::open(head.length, head.fork, signature, &mut self.storage) {
            tree.set_prologue(self.tree.prologue());
            self.tree = tree;
        }
    }

    /// Append `blocks` as one batch (one header commit), sign the new head; returns the new
    /// length. The blocks are on disk (and, under [`crate::Durability::Sync`], fsynced) when
    /// this returns.
    pub fn append<B: AsRef<[u8]>>(&mut self, blocks: &[B]) -> Result<u64, CoreError> {
        self.settle();
        let (verifier, key_pair) = self.writer()?;
        if blocks.is_empty() {
            return Ok(self.length());
        }
        let mut tree = self.tree.clone();
        let nodes = tree.append(blocks);
        tree.sign(verifier, key_pair)
            .map_err(|source| CoreError::Manifest {
                log: self.label(),
                source,
            })?;
        let result = (|| {
            let mut tx = self.storage.transaction();
            let (mut index, mut offset) = (self.tree.length(), self.tree.byte_length());
            for b in blocks {
                let b = b.as_ref();
                tx.put_block(index, offset, b)?;
                index += 1;
                offset += b.len() as u64;
            }
            for n in nodes {
                tx.put_node(n)?;
            }
            tx.set_head(head_of(&tree));
            tx.commit()
        })();
        match result {
            Ok(()) => {
                self.tree = tree;
                Ok(self.tree.length())
            }
            Err(e) => {
                self.resync();
                Err(e.into())
            }
        }
    }

    /// Block `index`, verified against its leaf; `None` if not stored here.
    pub fn get(&mut self, index: u64) -> Result<Option<Vec<u8>>, CoreError> {
        Ok(self.storage.block(index)?)
    }

    /// Whether block `index` is stored here.
    pub fn has(&mut self, index: u64) -> Result<bool, CoreError> {
        Ok(self.storage.has(index)?)
    }

    /// The first block in `start..end` (clamped to the length) stored here (replication:
    /// which blocks to announce to a peer).
    pub fn next_present(&mut self, start: u64, end: u64) -> Result<Option<u64>, CoreError> {
        Ok(self.storage.next_present(start, end)?)
    }

    /// The first block in `start..end` (clamped to the length) not stored here (replication:
    /// which block to download next).
    pub fn next_missing(&mut self, start: u64, end: u64) -> Result<Option<u64>, CoreError> {
        Ok(self.storage.next_missing(start, end)?)
    }

    /// Blocks `0..n` are all stored here; returns the largest such `n`.
    pub fn contiguous_length(&mut self) -> Result<u64, CoreError> {
        let length = self.length();
        Ok(self.storage.next_missing(0, length)?.unwrap_or(length))
    }

    /// Whether the head's signature verifies against the manifest.
    pub fn signature_verifies(&self) -> bool {
        match (&self.verifier, self.tree.signature()) {
            (Some(v), sig) => v.verify(&self.tree, sig),
            (None, _) => false,
        }
    }

    /// Key, discovery key, length, byte length, fork, tree hash, and whether the signature
    /// verifies.
    pub fn info(&mut self) -> Result<Info, CoreError> {
        Ok(Info {
            key: self.key(),
            discovery_key: self.discovery_key(),
            length: self.length(),
            contiguous_length: self.contiguous_length()?,
            byte_length: self.byte_length(),
            fork: self.fork(),
            tree_hash: self.tree.hash(),
            signature_verifies: self.signature_verifies(),
            writable: self.writable(),
            compat: self.verifier.as_ref().is_some_and(Verifier::is_compat),
            manifest_known: self.verifier.is_some(),
        })
    }

    /// The `data` reply to `request` (lib/replicator.js `_getProof`): `Ok(None)` when a block
    /// was asked for that is not stored here, or the request is for another fork (JS answers
    /// `noData`).
    pub fn proof(&mut self, request: &Request) -> Result<Option<Data>, CoreError> {
        self.proof_with(request, true)
    }

    /// [`Core::proof`], hashing the block read from disk against its leaf only with
    /// `check_block`. Without, a damaged block goes out as it is read and the peer refuses it
    /// (every replica verifies each block against the signed tree), instead of our answering
    /// `noData` and reporting the damage; it saves a BLAKE2b pass over every block served
    /// (about a quarter of a writer's CPU time for 64 KiB blocks).
    pub fn proof_with(
        &mut self,
        request: &Request,
        check_block: bool,
    ) -> Result<Option<Data>, CoreError> {
        if request.fork != self.fork() {
            return Ok(None);
        }
        let value = match request.block {
            Some(b) => {
                let read = if check_block {
                    self.storage.block(b.index)?
                } else {
                    self.storage.block_unhashed(b.index)?
                };
                match read {
                    Some(v) => Some(v),
                    None => return Ok(None),
                }
            }
            None => None,
        };
        let proof = self
            .tree
            .proof(request, &mut self.storage)
            .map_err(|e| self.tree_error(e))?;
        let manifest = match &self.verifier {
            Some(v) if request.manifest && !v.is_compat() => Some(v.manifest().clone()),
            _ => None,
        };
        Ok(proof.into_data(value, manifest))
    }

    /// Verify a `data` message from a peer and store what it proves: its nodes, its block,
    /// and its new signed head if it upgrades us (lib/core.js `verify`). Returns whether the
    /// length grew. A proof for another fork is refused with `ForkMismatch`: drive a reorg with
    /// [`Tree::verify_reorg`] on [`Core::tree`] / [`Core::nodes`] and finish it with
    /// [`Core::apply_reorg`].
    pub fn apply(&mut self, data: &Data) -> Result<bool, CoreError> {
        self.settle();
        let log = self.label();
        let verify_error = |source| CoreError::Verify {
            log: log.clone(),
            source: Box::new(source),
        };
        let verifier = self.verifier_for(data)?;
        let verified = self
            .tree
            .verify_proof(data, &verifier, &mut self.storage)
            .map_err(verify_error)?;
        if self.verifier.is_none() && (data.manifest.is_some() || verified.head.is_some()) {
            // Learned from a proof that verified against it: keep it. Without a manifest in
            // the proof this is the compat manifest of the key, which JS also stores after the
            // first verified upgrade of a compat core.
            self.storage
                .set_manifest(&peerhost_encoding::to_vec(verifier.manifest()))?;
            self.verifier = Some(verifier);
        }
        let new_tree = verified.head.clone();
        let grew = new_tree.is_some();
        // A block we already hold is not rewritten (the bytes are the same; not touching them
        // keeps a power cut from tearing a committed block).
        let block = match &data.block {
            Some(b) if !self.storage.has(b.index)? => Some(b),
            _ => None,
        };
        let result = (|| {
            let head_tree = new_tree.as_ref().unwrap_or(&self.tree);
            let mut tx = self.storage.transaction();
            for n in &verified.nodes {
                tx.put_node(*n)?;
            }
            if let Some(block) = block {
                put_verified_block(&mut tx, head_tree, block.index, &block.value)?;
            }
            if let Some(t) = &new_tree {
                tx.set_head(head_of(t));
            }
            tx.commit().map_err(CoreError::from)
        })();
        if let Err(e) = result {
            self.resync();
            return Err(e);
        }
        if let Some(mut t) = new_tree {
            t.set_prologue(self.tree.prologue());
            self.tree = t;
        }
        Ok(grew)
    }

    /// Whether [`Core::apply_batch`] takes `data` into a run: it is on our fork, carries no
    /// upgrade and no manifest, and the manifest is known (so it cannot change the head or the
    /// verifier).
    pub fn batchable(&self, data: &Data) -> bool {
        self.verifier.is_some()
            && data.fork == self.fork()
            && data.upgrade.is_none()
            && data.manifest.is_none()
    }

    /// [`Core::apply`] for many `data` messages in order, storing with one commit per run of
    /// [`batchable`](Self::batchable) messages instead of one per message (a replica
    /// downloading small blocks spends most of its time in commits otherwise). Each message is
    /// verified against the head and every node stored before it, including those of earlier
    /// messages of the run; one that is not batchable is applied on its own, as by `apply`.
    ///
    /// Stops at the first message that fails: returns how many messages before it were stored
    /// (all of them on success) and the failure, or whether the length grew. What verified
    /// before a failed proof is still stored; a storage failure stores nothing of its run.
    pub fn apply_batch(&mut self, batch: &[&Data]) -> (usize, Result<bool, CoreError>) {
        self.settle();
        let mut done = 0;
        let mut grew = false;
        while done < batch.len() {
            let run = batch[done..]
                .iter()
                .take_while(|d| self.batchable(d))
                .count();
            if run == 0 {
                match self.apply(batch[done]) {
                    Ok(g) => grew |= g,
                    Err(e) => return (done, Err(e)),
                }
                done += 1;
                continue;
            }
            let (stored, result) = self.apply_run(&batch[done..done + run]);
            done += stored;
            if let Err(e) = result {
                return (done, Err(e));
            }
        }
        (done, Ok(grew))
    }

    /// One run of [`Core::apply_batch`]: every message is batchable.
    fn apply_run(&mut self, run: &[&Data]) -> (usize, Result<(), CoreError>) {
        let log = self.label();
        let Some(verifier) = self.verifier.clone() else {
            return (0, Ok(()));
        };
        let tree = &self.tree;
        let mut tx = self.storage.transaction();
        let mut staged = 0;
        let mut rejected = None;
        for data in run {
            let verified = match tree.verify_proof(data, &verifier, &mut tx) {
                Ok(v) => v,
                Err(source) => {
                    rejected = Some(CoreError::Verify {
                        log: log.clone(),
                        source: Box::new(source),
                    });
                    break;
                }
            };
            let stored = (|| {
                for n in &verified.nodes {
                    tx.put_node(*n)?;
                }
                match &data.block {
                    // A block we already hold (or staged earlier in this run) is not rewritten.
                    Some(b) if !tx.has(b.index)? => {
                        put_verified_block(&mut tx, tree, b.index, &b.value)
                    }
                    _ => Ok(()),
                }
            })();
            if let Err(e) = stored {
                // Dropping the transaction undoes the whole run.
                drop(tx);
                self.resync();
                return (0, Err(e));
            }
            staged += 1;
        }
        if let Err(e) = tx.commit() {
            self.resync();
            return (0, Err(e.into()));
        }
        match rejected {
            Some(e) => (staged, Err(e)),
            None => (staged, Ok(())),
        }
    }

    fn verifier_for(&self, data: &Data) -> Result<Verifier, CoreError> {
        match &self.verifier {
            Some(v) => Ok(v.clone()),
            None => Verifier::resolve(self.key(), None, data.manifest.as_ref()).map_err(|e| {
                CoreError::Verify {
                    log: self.label(),
                    source: Box::new(VerifyError::InvalidManifest(e)),
                }
            }),
        }
    }

    /// Begin committing `changes` that the caller verified against this log (see
    /// [`Changes`]): the writes are computed now, and the returned [`Commit`] makes them
    /// durable when run, which may happen on another thread without any lock that guards this
    /// `Core` (the point: a node's replication lock is not held across file writes and
    /// fsyncs). Then call [`Core::finish_commit`].
    ///
    /// Until then the log reads as it was: its head, nodes and blocks are the committed ones,
    /// so nothing of `changes` is served or reported before it is durable (per the store's
    /// [`crate::Durability`]). Any change to the log (another commit, an append, a truncation)
    /// first finishes this one, running the commit itself if need be.
    pub fn begin_commit(&mut self, changes: Changes) -> Result<Commit, CoreError> {
        self.settle();
        let Changes {
            nodes,
            blocks,
            head,
            verifier,
        } = changes;
        let verifier = verifier.filter(|_| self.verifier.is_none());
        let manifest = verifier
            .as_ref()
            .map(|v| peerhost_encoding::to_vec(v.manifest()));
        let commit =
            self.storage
                .begin_commit(nodes, blocks, head.as_ref().map(head_of), manifest)?;
        self.pending = Some(Box::new(Pending { head, verifier }));
        Ok(commit)
    }

    /// Take in the commit begun last, running its [`Commit`] here if nobody did: on success
    /// the log holds its blocks and nodes and has its head; on failure it is as before the
    /// commit (the error says why). `Ok` when nothing is in flight.
    pub fn finish_commit(&mut self) -> Result<(), CoreError> {
        let Some(p) = self.pending.take() else {
            return self.settled.take().map_or(Ok(()), |r| *r);
        };
        if let Err(e) = self.storage.finish_commit() {
            self.resync();
            return Err(e.into());
        }
        if let Some(v) = p.verifier {
            self.verifier = Some(v);
        }
        if let Some(mut t) = p.head {
            if let Some(v) = &self.verifier {
                t.set_prologue(v.prologue());
            }
            self.tree = t;
        }
        Ok(())
    }

    /// Whether a commit was begun and not finished.
    pub fn is_committing(&self) -> bool {
        self.pending.is_some()
    }

    /// Finish a commit in flight before another change, keeping its outcome for
    /// [`Core::finish_commit`].
    fn settle(&mut self) {
        if self.pending.is_some() {
            let result = self.finish_commit();
            if self.settled.as_ref().is_none_or(|r| r.is_ok()) {
                self.settled = Some(Box::new(result));
            }
        }
    }

    /// Start following a peer onto another fork: verify its proof of the new head (an
    /// upgrade from length 0, as JS sends it) with [`Tree::verify_reorg`]. Then feed the
    /// hash proofs [`Reorg::want`] asks for to [`Core::update_reorg`] until
    /// [`Reorg::finished`], and adopt it with [`Core::apply_reorg`]. Nothing is stored before.
    pub fn verify_reorg(&mut self, data: &Data) -> Result<Reorg, CoreError> {
        let verifier = self.verifier_for(data)?;
        self.tree
            .verify_reorg(data, &verifier, &mut self.storage)
            .map_err(|source| CoreError::Verify {
                log: self.storage.label().clone(),
                source: Box::new(source),
            })
    }

    /// Narrow a reorg with a hash proof of the new fork ([`Reorg::update`]); `Ok(true)` once
    /// it is finished.
    pub fn update_reorg(&mut self, reorg: &mut Reorg, data: &Data) -> Result<bool, CoreError> {
        reorg
            .update(data, &mut self.storage)
            .map_err(|source| CoreError::Verify {
                log: self.storage.label().clone(),
                source: Box::new(source),
            })
    }

    /// Adopt a finished reorg (a peer's other fork, verified with [`Tree::verify_reorg`] and
    /// narrowed with [`Reorg::update`]): truncate to the shared blocks, store the new fork's
    /// nodes, adopt its signed head (lib/session-state.js `reorg`).
    ///
    /// Two commits: first the truncation to the shared length on the new fork (unsigned:
    /// that length was never signed), then the new head. A crash between them leaves a valid,
    /// shorter, unsigned log, which the next sync upgrades.
    pub fn apply_reorg(&mut self, reorg: Reorg) -> Result<(), CoreError> {
        self.settle();
        if !reorg.finished() {
            return Err(self.tree_error(TreeError::InvalidOperation("reorg is not finished")));
        }
        let (head, nodes, ancestors) = reorg.into_parts();
        let mut mid = self.tree.clone();
        let shared = ancestors.min(mid.length());
        // The roots of the shared prefix: stored, or among the reorg's verified nodes.
        let mut layered = Layered {
            extra: &nodes,
            storage: &mut self.storage,
        };
        mid.truncate(shared, head.fork(), &mut layered)
            .map_err(|e| self.tree_error(e))?;
        let mut tx = self.storage.transaction();
        for r in mid.roots() {
            tx.put_node(*r)?;
        }
        tx.commit()?;
        if let Err(e) = self.storage.truncate(head_of(&mid)) {
            self.resync();
            return Err(e.into());
        }
        self.tree = mid;
        let result = (|| {
            let mut tx = self.storage.transaction();
            for n in &nodes {
                tx.put_node(*n)?;
            }
            tx.set_head(head_of(&head));
            tx.commit()
        })();
        if let Err(e) = result {
            self.resync();
            return Err(e.into());
        }
        let prologue = self.tree.prologue();
        self.tree = head;
        self.tree.set_prologue(prologue);
        Ok(())
    }

    /// Truncate to `length` blocks on fork `fork + 1` and sign the new head. The header is
    /// committed first; the dropped tail is erased after.
    pub fn truncate(&mut self, length: u64) -> Result<(), CoreError> {
        self.settle();
        self.writer()?;
        if length > self.length() {
            return Err(Error::OutOfRange {
                log: self.label(),
                what: "truncate to length",
                index: length,
                length: self.length(),
            }
            .into());
        }
        let mut tree = self.tree.clone();
        let fork = tree.fork() + 1;
        tree.truncate(length, fork, &mut self.storage)
            .map_err(|source| CoreError::Tree {
                log: self.storage.label().clone(),
                source: Box::new(source),
            })?;
        let (verifier, key_pair) = self.writer()?;
        tree.sign(verifier, key_pair)
            .map_err(|source| CoreError::Manifest {
                log: self.storage.label().clone(),
                source,
            })?;
        if let Err(e) = self.storage.truncate(head_of(&tree)) {
            self.resync();
            return Err(e.into());
        }
        self.tree = tree;
        Ok(())
    }

    /// Drop blocks `start..end` from local storage (the tree keeps their nodes, so proofs of
    /// other blocks still work and the blocks can be fetched again).
    pub fn clear(&mut self, start: u64, end: u64) -> Result<(), CoreError> {
        self.settle();
        Ok(self.storage.clear(start, end)?)
    }
}

/// Stored nodes with a few verified ones laid over them.
struct Layered<'a> {
    extra: &'a [Node],
    storage: &'a mut CoreStorage,
}

impl NodeSource for Layered<'_> {
    type Error = Error;
    fn node(&mut self, index: u64) -> Result<Option<Node>, Error> {
        match self.extra.iter().find(|n| n.index == index) {
            Some(n) => Ok(Some(*n)),
            None => self.storage.node(index),
        }
    }
}

/// Store a verified block at its offset in the (possibly new) tree.
fn put_verified_block(
    tx: &mut Transaction<'_>,
    tree: &Tree,
    index: u64,
    value: &[u8],
) -> Result<(), CoreError> {
    let label = tx.label();
    let offset = tree
        .byte_offset(index, tx)
        .map_err(|source| CoreError::Tree {
            log: label,
            source: Box::new(source),
        })?;
    tx.put_block(index, offset, value)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Durability, Options};
    use peerhost_log::proof::{RequestBlock, RequestUpgrade};

    fn store(dir: &std::path::Path) -> Store {
        Store::open_with(dir, Options::default().durability(Durability::Process)).unwrap()
    }

    fn blocks(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
        range.map(|i| format!("block {i}").into_bytes()).collect()
    }

    #[test]
    fn a_new_log_is_v11_keyed_by_its_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let kp = KeyPair::from_seed(&[1; 32]);
        let core = s
            .create("notes", CreateOptions::default().key_pair(kp.clone()))
            .unwrap();
        let manifest = Manifest::default_signer(kp.public_key());
        assert_eq!(core.key(), Key(manifest.hash()));
        assert_ne!(core.key().0, kp.public_key());
        assert!(core.writable());
        let compat = s
            .create(
                "old",
                CreateOptions::default().compat(true).key_pair(kp.clone()),
            )
            .unwrap();
        assert_eq!(compat.key().0, kp.public_key());
        assert!(compat.verifier().unwrap().is_compat());
        let mut compat = compat;
        compat.append(&[b"a", b"b"]).unwrap();
        assert_eq!(compat.append::<&[u8]>(&[]).unwrap(), 2);
        // A compat head is signed with a raw 64-byte signature.
        assert_eq!(compat.tree().signature().unwrap().len(), 64);
        drop(compat);
        let mut compat = s.open_core("old").unwrap();
        assert!(compat.info().unwrap().compat);
        assert!(compat.signature_verifies());
        compat.verify().unwrap();
        // The default v11 head carries the 68-byte multisignature.
        let mut core = core;
        core.append(&[b"a"]).unwrap();
        assert_eq!(core.tree().signature().unwrap().len(), 68);
    }

    #[test]
    fn append_get_info_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let key = {
            let s = store(dir.path());
            let mut core = s.create("notes", CreateOptions::default()).unwrap();
            assert_eq!(core.append(&blocks(0..3)).unwrap(), 3);
            assert_eq!(core.append(&[b"x"]).unwrap(), 4);
            assert_eq!(core.get(3).unwrap().unwrap(), b"x");
            assert_eq!(core.get(4).unwrap(), None);
            let info = core.info().unwrap();
            assert!(info.signature_verifies && info.writable && !info.compat);
            assert_eq!((info.length, info.contiguous_length, info.fork), (4, 4, 0));
            assert_eq!(info.byte_length, 3 * 7 + 1);
            core.key()
        };
        let s = store(dir.path());
        let mut core = s.open_core("notes").unwrap();
        assert_eq!(core.key(), key);
        assert_eq!(core.length(), 4);
        assert_eq!(core.get(1).unwrap().unwrap(), b"block 1");
        assert!(core.signature_verifies());
        let report = core.verify().unwrap();
        assert_eq!((report.blocks, report.parents, report.signed), (4, 3, true));
        drop(core);
        assert_eq!(s.open_core(&key.to_z32()).unwrap().length(), 4);
    }

    #[test]
    fn truncate_bumps_fork_and_resigns() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let mut core = s.create("notes", CreateOptions::default()).unwrap();
        core.append(&blocks(0..10)).unwrap();
        core.truncate(4).unwrap();
        assert_eq!((core.length(), core.fork()), (4, 1));
        assert!(core.signature_verifies());
        assert_eq!(core.get(4).unwrap(), None);
        core.append(&[b"new"]).unwrap();
        assert_eq!(core.get(4).unwrap().unwrap(), b"new");
        assert!(core.truncate(9).is_err());
        drop(core);
        let mut core = s.open_core("notes").unwrap();
        assert_eq!((core.length(), core.fork()), (5, 1));
        core.verify().unwrap();
    }

    #[test]
    fn clear_drops_blocks_and_keeps_proofs() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let mut core = s.create("notes", CreateOptions::default()).unwrap();
        core.append(&blocks(0..8)).unwrap();
        core.clear(2, 5).unwrap();
        assert_eq!(core.get(2).unwrap(), None);
        assert_eq!(core.get(5).unwrap().unwrap(), b"block 5");
        assert_eq!(core.contiguous_length().unwrap(), 2);
        let report = core.verify().unwrap();
        assert_eq!(report.blocks, 5);
        // A proof for a remaining block still builds; one for a cleared block is "no data".
        let req = |index| Request {
            id: 1,
            block: Some(RequestBlock { index, nodes: 0 }),
            ..Request::default()
        };
        assert!(core.proof(&req(6)).unwrap().is_some());
        assert!(core.proof(&req(3)).unwrap().is_none());
    }

    #[test]
    fn a_replica_verifies_and_stores_what_it_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let ws = store(&dir.path().join("writer"));
        let s = store(&dir.path().join("replica"));
        let mut writer = ws.create("w", CreateOptions::default()).unwrap();
        writer.append(&blocks(0..13)).unwrap();
        let mut replica = s.create_replica(writer.key(), None, Some("r")).unwrap();
        assert!(!replica.writable());
        assert!(matches!(
            replica.append(&[b"x"]),
            Err(CoreError::NotWritable { .. })
        ));
        // Upgrade: the signed head and the manifest, no blocks.
        let upgrade = Request {
            id: 1,
            upgrade: Some(RequestUpgrade {
                start: 0,
                length: 13,
            }),
            manifest: true,
            ..Request::default()
        };
        let data = writer.proof(&upgrade).unwrap().unwrap();
        assert!(replica.apply(&data).unwrap());
        assert_eq!(replica.length(), 13);
        assert!(replica.signature_verifies());
        assert_eq!(replica.get(5).unwrap(), None);
        // Blocks, each with the nodes the replica lacks.
        for i in [5u64, 0, 12, 6] {
            let nodes = replica.missing_nodes(2 * i).unwrap();
            let req = Request {
                id: 2,
                block: Some(RequestBlock { index: i, nodes }),
                ..Request::default()
            };
            let data = writer.proof(&req).unwrap().unwrap();
            assert!(!replica.apply(&data).unwrap());
            assert_eq!(replica.get(i).unwrap(), writer.get(i).unwrap());
        }
        let report = replica.verify().unwrap();
        assert_eq!(report.blocks, 4);
        // A tampered block is refused and nothing is stored.
        let req = Request {
            id: 3,
            block: Some(RequestBlock { index: 7, nodes: 0 }),
            ..Request::default()
        };
        let mut data = writer.proof(&req).unwrap().unwrap();
        if let Some(b) = data.block.as_mut() {
            b.value[0] ^= 1;
        }
        let e = replica.apply(&data).unwrap_err();
        assert!(matches!(e, CoreError::Verify { .. }), "{e}");
        assert_eq!(replica.get(7).unwrap(), None);
        // It all survives a reopen, manifest included.
        drop(replica);
        let mut replica = s.open_core("r").unwrap();
        assert!(replica.info().unwrap().manifest_known);
        assert!(replica.signature_verifies());
        assert_eq!(replica.get(12).unwrap(), writer.get(12).unwrap());
    }

    #[test]
    fn apply_batch_stores_runs_with_one_commit_and_stops_at_a_bad_proof() {
        let dir = tempfile::tempdir().unwrap();
        let ws = store(&dir.path().join("writer"));
        let s = store(&dir.path().join("replica"));
        let mut writer = ws.create("w", CreateOptions::default()).unwrap();
        writer.append(&blocks(0..40)).unwrap();
        let mut replica = s.create_replica(writer.key(), None, Some("r")).unwrap();
        let upgrade = Request {
            id: 1,
            upgrade: Some(RequestUpgrade {
                start: 0,
                length: 40,
            }),
            manifest: true,
            ..Request::default()
        };
        let up = writer.proof(&upgrade).unwrap().unwrap();
        assert!(!replica.batchable(&up), "an upgrade is applied on its own");
        let (n, r) = replica.apply_batch(&[&up]);
        assert_eq!((n, r.unwrap()), (1, true));
        // Requests made before any answer came back, as a pipelined download makes them: each
        // proof carries uncles that earlier answers also carry.
        let mut answers = Vec::new();
        for i in (0..20u64).chain([3]) {
            let nodes = replica.missing_nodes(2 * i).unwrap();
            let req = Request {
                id: 2 + i,
                block: Some(RequestBlock { index: i, nodes }),
                ..Request::default()
            };
            answers.push(writer.proof(&req).unwrap().unwrap());
        }
        assert!(answers.iter().all(|d| replica.batchable(d)));
        if let Some(b) = answers[15].block.as_mut() {
            b.value[0] ^= 1;
        }
        let refs: Vec<&Data> = answers.iter().collect();
        let (n, r) = replica.apply_batch(&refs);
        assert_eq!(n, 15);
        assert!(matches!(r, Err(CoreError::Verify { .. })), "{r:?}");
        for i in 0..20 {
            let want = if i < 15 { writer.get(i).unwrap() } else { None };
            assert_eq!(replica.get(i).unwrap(), want, "block {i}");
        }
        // The rest, and a block already held, in one more run.
        let refs: Vec<&Data> = answers[16..].iter().collect();
        let (n, r) = replica.apply_batch(&refs);
        assert_eq!((n, r.unwrap()), (5, false));
        drop(replica);
        let mut replica = s.open_core("r").unwrap();
        assert_eq!(replica.verify().unwrap().blocks, 19);
        assert_eq!(replica.get(15).unwrap(), None);
        assert_eq!(replica.get(19).unwrap(), writer.get(19).unwrap());
    }

    #[test]
    fn verify_in_steps_checks_the_length_it_began_with_while_appends_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let mut core = s.create("notes", CreateOptions::default()).unwrap();
        core.append(&blocks(0..5000)).unwrap();
        let mut v = core.verify_start().unwrap();
        let mut steps = 0;
        // 64 bytes a step: a few blocks each time, appends in between.
        while !core.verify_step(&mut v, 64).unwrap() {
            steps += 1;
            core.append(&blocks(0..3)).unwrap();
            assert!(v.position() <= 5000);
        }
        assert!(steps > 100, "{steps}");
        let r = v.report();
        assert_eq!((r.length, r.blocks, r.signed), (5000, 5000, true));
        assert_eq!(
            v.bytes(),
            blocks(0..5000).iter().map(Vec::len).sum::<usize>() as u64
        );
        assert_eq!(core.verify().unwrap().blocks, 5000 + 3 * steps);
        // A truncation in between ends it: what it began with is gone.
        let mut v = core.verify_start().unwrap();
        assert!(!core.verify_step(&mut v, 64).unwrap());
        core.truncate(10).unwrap();
        let e = core.verify_step(&mut v, 64).unwrap_err();
        assert!(
            matches!(e, CoreError::ForkChanged { from: 0, to: 1, .. }),
            "{e}"
        );
    }

    #[test]
    fn verify_names_the_first_damaged_block() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let mut core = s.create("notes", CreateOptions::default()).unwrap();
        core.append(&blocks(0..6)).unwrap();
        let offset = core.storage.byte_offset(4).unwrap().unwrap();
        let data = std::fs::OpenOptions::new()
            .write(true)
            .open(core.storage.path().with_extension("data"))
            .unwrap();
        data.write_all_at(b"X", offset + 2).unwrap();
        let e = core.verify().unwrap_err();
        assert!(
            matches!(e, CoreError::Store(Error::CorruptBlock { index: 4, .. })),
            "{e}"
        );
        assert!(e.to_string().contains("\"notes\""), "{e}");
        // Serving: checked, the damage is an error (the replicator answers noData); unchecked,
        // the bytes go out as read, and the peer's verification refuses them.
        let req = Request {
            block: Some(RequestBlock { index: 4, nodes: 0 }),
            ..Request::default()
        };
        assert!(matches!(
            core.proof(&req),
            Err(CoreError::Store(Error::CorruptBlock { index: 4, .. }))
        ));
        let sent = core.proof_with(&req, false).unwrap().unwrap();
        let mut damaged = blocks(4..5).remove(0);
        damaged[2] = b'X';
        assert_eq!(sent.block.as_ref().unwrap().value, damaged);
        let mut replica = store(&dir.path().join("r"))
            .create_replica(core.key(), None, None)
            .unwrap();
        let up = Request {
            upgrade: Some(RequestUpgrade {
                start: 0,
                length: 6,
            }),
            manifest: true,
            ..Request::default()
        };
        replica.apply(&core.proof(&up).unwrap().unwrap()).unwrap();
        let req = Request {
            block: Some(RequestBlock {
                index: 4,
                nodes: replica.missing_nodes(8).unwrap(),
            }),
            ..Request::default()
        };
        let sent = core.proof_with(&req, false).unwrap().unwrap();
        assert!(matches!(
            replica.apply(&sent),
            Err(CoreError::Verify { .. })
        ));
        let good = core
            .proof_with(
                &{
                    let mut r = req.clone();
                    r.block = Some(RequestBlock {
                        index: 3,
                        nodes: replica.missing_nodes(6).unwrap(),
                    });
                    r
                },
                false,
            )
            .unwrap()
            .unwrap();
        assert!(!replica.apply(&good).unwrap());
    }
}
