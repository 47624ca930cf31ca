//! Iterative queries (dht-rpc `lib/query.js`): the state of one walk towards a target and the
//! pure parts of its algorithm. The node drives it (`node.rs`, `read_more` and friends),
//! because visiting a node means sending through the node's requests layer.
//!
//! Lifecycle: **walk** (visit the closest known nodes, `concurrency` at a time, learning closer
//! ones from each reply) → **commit** (optional: one request to each of the k closest nodes
//! that replied, with the token each handed out) → **done** (one `QueryDone` event).
//!
//! - Candidates wait on a stack (`pending`); a candidate is taken only while it is closer than
//!   the k-th closest reply so far (`is_closer`).
//! - `closest` keeps the k closest successful replies that carried a valid node id, sorted by
//!   XOR distance to the target.
//! - A request's first timeout marks it slow and lets one more request go out; the walk ends
//!   when nothing is pending and nothing is in flight, or when every request in flight is slow
//!   and k replies are in.
//! - A node that finally times out is reported with DOWN_HINT to the nodes that told us
//!   about it.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddrV4;

use crate::peer::NodeId;
use crate::table::K;
use crate::{Reply, RequestError};

/// Seen-node entries one query keeps before it stops learning new candidates (ours; JS has no
/// bound).
pub(crate) const MAX_SEEN: usize = 4096;
/// Referrers remembered per candidate, for DOWN_HINTs (ours).
const MAX_REFS: usize = K;

/// Builds one commit request from a closest node's reply ([`Commit::Custom`]).
pub type CommitFn = Box<dyn FnMut(&Reply) -> Option<CommitRequest> + Send>;

/// What to send each of the closest nodes once the walk is over.
pub enum Commit {
    /// No commit step: the query ends after the walk.
    None,
    /// dht-rpc's `commit: true` (`autoCommit`): the query's own command, target and value, with
    /// the token the node handed out. A reply without a token counts as a failed commit.
    Auto,
    /// Build each commit request from the node's reply; `None` counts as a failed commit.
    /// The request goes to the reply's sender with the query's target.
    Custom(CommitFn),
}

impl fmt::Debug for Commit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Auto => f.write_str("Auto"),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// A commit request built by [`Commit::Custom`] (always an application command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    /// The command.
    pub command: u64,
    /// The token to present (normally the reply's).
    pub token: Option<[u8; 32]>,
    /// The payload.
    pub value: Option<Vec<u8>>,
}

/// A query to start with [`crate::Node::query`].
#[derive(Debug)]
pub struct QueryParams {
    /// The key to walk towards.
    pub target: [u8; 32],
    /// The command sent to every visited node (an application command).
    pub command: u64,
    /// The value sent with it.
    pub value: Option<Vec<u8>>,
    /// The commit step.
    pub commit: Commit,
    /// Requests in flight at once (default: the node's, 10).
    pub concurrency: Option<usize>,
    /// Start from these nodes instead of the routing table (`opts.nodes`).
    pub nodes: Vec<SocketAddrV4>,
    /// Retries per visited node (default 5).
    pub retries: Option<u32>,
}

impl QueryParams {
    /// A query for `command` towards `target`, everything else default.
    pub fn new(target: [u8; 32], command: u64) -> Self {
        Self {
            target,
            command,
            value: None,
            commit: Commit::None,
            concurrency: None,
            nodes: Vec::new(),
            retries: None,
        }
    }
}

/// What a finished query found.
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    /// The k closest successful replies with a valid node id, closest first.
    pub closest_replies: Vec<Reply>,
    /// Replies with error 0.
    pub successes: usize,
    /// Replies with an error, plus failed requests.
    pub errors: usize,
    /// Responses to the commit requests (any error code counts as a response, as in JS).
    pub commits: Vec<Reply>,
}

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The walk found no node to commit to (JS: "Too few nodes responded").
    #[error("too few nodes responded")]
    TooFewNodes,
    /// Every commit failed; the last failure.
    #[error("every commit failed: {0}")]
    Commit(CommitError),
    /// The node has too many queries or requests already.
    #[error("too many queries or requests in flight")]
    Overloaded,
    /// Cancelled with `Node::cancel_query`.
    #[error("query cancelled")]
    Cancelled,
}

/// Why one commit failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// The node gave no token, or the custom commit declined it
    /// (JS: "No token received for closest node").
    #[error("no token received for closest node")]
    NoToken,
    /// The commit request failed.
    #[error("{0}")]
    Request(RequestError),
}

/// Who started a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// The application: events go out.
    User,
    /// A bootstrap walk for our own id (round 0 or 1).
    Bootstrap {
        /// Which round of `_bootstrap`'s loop.
        round: u8,
    },
    /// A background refresh.
    Refresh,
}

/// A candidate to visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) id: NodeId,
    pub(crate) addr: SocketAddrV4,
}

/// What we know about an address during one query.
#[derive(Debug, Clone)]
pub(crate) enum Seen {
    /// Queued or in flight; who told us about it.
    Refs(Vec<Candidate>),
    /// Answered.
    Done,
    /// Timed out.
    Down,
}

/// One query's state.
pub(crate) struct Query {
    pub(crate) purpose: Purpose,
    pub(crate) target: NodeId,
    pub(crate) internal: bool,
    pub(crate) command: u64,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) k: usize,
    pub(crate) concurrency: usize,
    pub(crate) retries: u32,
    pub(crate) commit: Commit,

    pub(crate) closest: Vec<Reply>,
    pub(crate) pending: Vec<Candidate>,
    pub(crate) seen: HashMap<SocketAddrV4, Seen>,
    pub(crate) inflight: usize,
    pub(crate) slow: usize,
    pub(crate) slowdown: bool,
    pub(crate) from_table: bool,
    pub(crate) successes: usize,
    pub(crate) errors: usize,

    pub(crate) committing: bool,
    pub(crate) commit_pending: usize,
    pub(crate) commits: Vec<Reply>,
    pub(crate) commit_error: Option<CommitError>,
    /// Requests to cancel when the query ends (JS: the query's session).
    pub(crate) session: HashSet<u16>,
    /// Set when the query is over; the node then removes it and reports.
    pub(crate) done: Option<Result<(), QueryError>>,
}

impl fmt::Debug for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query")
            .field("purpose", &self.purpose)
            .field("target", &self.target)
            .field("command", &self.command)
            .field("inflight", &self.inflight)
            .field("pending", &self.pending.len())
            .field("closest", &self.closest.len())
            .field("committing", &self.committing)
            .finish_non_exhaustive()
    }
}

impl Query {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        purpose: Purpose,
        target: NodeId,
        internal: bool,
        command: u64,
        value: Option<Vec<u8>>,
        concurrency: usize,
        retries: u32,
        commit: Commit,
    ) -> Self {
        Self {
            purpose,
            target,
            internal,
            command,
            value,
            k: K,
            concurrency: concurrency.max(1),
            retries,
            commit,
            closest: Vec::new(),
            pending: Vec::new(),
            seen: HashMap::new(),
            inflight: 0,
            slow: 0,
            slowdown: false,
            from_table: false,
            successes: 0,
            errors: 0,
            committing: false,
            commit_pending: 0,
            commits: Vec::new(),
            commit_error: None,
            session: HashSet::new(),
            done: None,
        }
    }

    /// XOR-distance order of `a` and `b` to the target (`_compare`).
    pub(crate) fn compare(&self, a: &NodeId, b: &NodeId) -> std::cmp::Ordering {
        for ((x, y), t) in a.0.iter().zip(b.0.iter()).zip(self.target.0.iter()) {
            if x != y {
                return (t ^ x).cmp(&(t ^ y));
            }
        }
        std::cmp::Ordering::Equal
    }

    /// Whether `id` would make the k closest (`_isCloser`).
    pub(crate) fn is_closer(&self, id: &NodeId) -> bool {
        match self.closest.last() {
            Some(last) if self.closest.len() >= self.k => last
                .from_id
                .is_none_or(|l| self.compare(id, &l) == std::cmp::Ordering::Less),
            _ => true,
        }
    }

    /// Offer a candidate learned from `referrer` (or from the table / bootstrap list when
    /// `None`). Returns whether it is closer (JS `_addPending`; the caller stops reading a
    /// closer-node list at the first `false`) and the referrer to DOWN_HINT when the candidate
    /// is already known to be down.
    pub(crate) fn add_pending(
        &mut self,
        node: Candidate,
        referrer: Option<Candidate>,
    ) -> (bool, Option<Candidate>) {
        let is_closer = self.is_closer(&node.id);
        match self.seen.get_mut(&node.addr) {
            Some(Seen::Done) => (is_closer, None),
            Some(Seen::Down) => (is_closer, referrer),
            Some(Seen::Refs(refs)) => {
                if let Some(r) = referrer {
                    if refs.len() < MAX_REFS {
                        refs.push(r);
                    }
                }
                (is_closer, None)
            }
            None => {
                if !is_closer || self.seen.len() >= MAX_SEEN {
                    return (false, None);
                }
                self.seen
                    .insert(node.addr, Seen::Refs(referrer.into_iter().collect()));
                self.pending.push(node);
                (true, None)
            }
        }
    }

    /// Insert a successful reply into the sorted closest list (`_pushClosest`).
    pub(crate) fn push_closest(&mut self, reply: Reply) {
        let Some(id) = reply.from_id else { return };
        let pos = self.closest.partition_point(|r| {
            r.from_id
                .is_some_and(|x| self.compare(&x, &id) == std::cmp::Ordering::Less)
        });
        if self.closest.get(pos).is_some_and(|r| r.from_id == Some(id)) {
            // A duplicate: JS keeps the earlier entry.
            return;
        }
        self.closest.insert(pos, reply);
        self.closest.truncate(self.k);
    }

    /// End the commit step once every commit request is answered: success if any was.
    pub(crate) fn settle_commit(&mut self) {
        if self.commit_pending > 0 || self.done.is_some() {
            return;
        }
        self.done = Some(if self.commits.is_empty() {
            Err(QueryError::Commit(
                self.commit_error.clone().unwrap_or(CommitError::NoToken),
            ))
        } else {
            Ok(())
        });
    }

    /// The result as it stands.
    pub(crate) fn result(&mut self) -> QueryResult {
        QueryResult {
            closest_replies: std::mem::take(&mut self.closest),
            successes: self.successes,
            errors: self.errors,
            commits: std::mem::take(&mut self.commits),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn reply(id: NodeId) -> Reply {
        Reply {
            from: "1.1.1.1:1".parse().unwrap(),
            from_id: Some(id),
            to: "2.2.2.2:2".parse().unwrap(),
            token: None,
            closer_nodes: Vec::new(),
            error: 0,
            value: None,
            rtt: Duration::ZERO,
        }
    }

    fn q() -> Query {
        Query::new(
            Purpose::User,
            NodeId([0; 32]),
            false,
            1,
            None,
            10,
            5,
            Commit::None,
        )
    }

    #[test]
    fn closest_is_sorted_bounded_and_deduplicated() {
        let mut q = q();
        for i in (0..30u8).rev() {
            let mut id = [0xff; 32];
            id[0] = i;
            q.push_closest(reply(NodeId(id)));
        }
        assert_eq!(q.closest.len(), K);
        let firsts: Vec<u8> = q.closest.iter().map(|r| r.from_id.unwrap().0[0]).collect();
        assert_eq!(firsts, (0..20).collect::<Vec<_>>());
        q.push_closest(reply(q.closest[3].from_id.unwrap()));
        assert_eq!(q.closest.len(), K);
        // Full: only closer ids are closer.
        let mut far = [0xff; 32];
        far[0] = 25;
        assert!(!q.is_closer(&NodeId(far)));
        assert!(q.is_closer(&NodeId([0; 32])));
    }

    #[test]
    fn pending_tracks_seen_and_down_nodes() {
        let mut q = q();
        let a = Candidate {
            id: NodeId([1; 32]),
            addr: "1.1.1.1:1".parse().unwrap(),
        };
        let r = Candidate {
            id: NodeId([2; 32]),
            addr: "2.2.2.2:2".parse().unwrap(),
        };
        assert_eq!(q.add_pending(a, None), (true, None));
        assert_eq!(q.add_pending(a, Some(r)), (true, None));
        assert_eq!(q.pending.len(), 1);
        q.seen.insert(a.addr, Seen::Down);
        assert_eq!(q.add_pending(a, Some(r)), (true, Some(r)));
    }
}
