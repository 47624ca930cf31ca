//! Checking a stored log end to end: all at once ([`Core::verify`]) or in steps
//! ([`Core::verify_start`], [`Core::verify_step`]) for a caller that must not hold the log
//! for the whole re-hash.

use super::*;

impl Core {
    /// Check everything: the roots against the head's tree hash and its signature, then in
    /// flat-tree order every stored block against its leaf and every stored parent against its
    /// stored children. Returns the first problem, naming the log and the index; memory stays
    /// bounded (one node and one block at a time). [`Core::verify_start`] and
    /// [`Core::verify_step`] do the same in steps, for a caller that must not hold the log for
    /// the whole re-hash.
    pub fn verify(&mut self) -> Result<Report, CoreError> {
        let mut v = self.verify_start()?;
        while !self.verify_step(&mut v, u64::MAX)? {}
        Ok(v.report)
    }

    /// Begin a verification of the log as it is now: the stored roots against the head's tree
    /// hash, and the head's signature. The blocks and parents of that length are then checked
    /// by [`Core::verify_step`]; appends in between do not change them (a flat tree's nodes
    /// below a length never change), a truncation or reorg does, and ends the verification.
    pub fn verify_start(&mut self) -> Result<Verification, CoreError> {
        let head = self.storage.head().clone();
        let roots = self.storage.roots()?;
        if peerhost_log::hash::tree(&roots) != head.tree_hash {
            return Err(CoreError::TreeHashMismatch { log: self.label() });
        }
        let signed = !head.signature.is_empty();
        if signed && !self.signature_verifies() {
            return Err(CoreError::BadSignature {
                log: self.label(),
                length: head.length,
                fork: head.fork,
            });
        }
        Ok(Verification {
            report: Report {
                length: head.length,
                signed,
                ..Report::default()
            },
            fork: head.fork,
            next: 0,
            bytes: 0,
        })
    }

    /// Continue `v`: check the next stored blocks and parents, in flat-tree order, until about
    /// `max_bytes` of blocks (and at most [`VERIFY_STEP_NODES`] tree positions) were read.
    /// Returns whether the verification is complete; the first problem is an error naming the
    /// log and the index.
    pub fn verify_step(&mut self, v: &mut Verification, max_bytes: u64) -> Result<bool, CoreError> {
        if self.storage.head().fork != v.fork {
            return Err(CoreError::ForkChanged {
                log: self.label(),
                from: v.fork,
                to: self.storage.head().fork,
            });
        }
        let end = v.report.length.saturating_mul(2);
        let (mut read, mut nodes) = (0u64, 0u64);
        while v.next < end && read < max_bytes && nodes < VERIFY_STEP_NODES {
            let i = v.next;
            v.next += 1;
            nodes += 1;
            if i % 2 == 0 {
                if let Some(block) = self.storage.block(i / 2)? {
                    v.report.blocks += 1;
                    read += block.len() as u64;
                    v.bytes += block.len() as u64;
                }
                continue;
            }
            let Some(parent) = self.storage.node(i)? else {
                continue;
            };
            let half = 1u64 << ((!i).trailing_zeros() - 1);
            let (l, r) = (self.storage.node(i - half)?, self.storage.node(i + half)?);
            if let (Some(l), Some(r)) = (l, r) {
                if Node::parent(i, &l, &r) != parent {
                    return Err(Error::CorruptNode {
                        log: self.label(),
                        index: i,
                        reason: "parent does not hash from its children",
                    }
                    .into());
                }
                v.report.parents += 1;
            }
        }
        Ok(v.next >= end)
    }
}

/// The most tree positions (blocks and parents) one [`Core::verify_step`] visits.
pub const VERIFY_STEP_NODES: u64 = 4096;

/// A verification in steps ([`Core::verify_start`], [`Core::verify_step`]).
#[derive(Debug, Clone)]
pub struct Verification {
    report: Report,
    fork: u64,
    /// The next flat-tree index to check.
    next: u64,
    /// Block bytes re-hashed so far.
    bytes: u64,
}

impl Verification {
    /// What was checked so far (all of it once the last step returned `true`).
    pub fn report(&self) -> Report {
        self.report
    }

    /// Blocks `0..position` were checked (those stored).
    pub fn position(&self) -> u64 {
        self.next / 2
    }

    /// Block bytes re-hashed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}
