//! Serving: the remote's requests waiting on a connection ([`Answers`]), answered lazily and
//! in order from the log's committed state ([`answer`], lib/replicator.js `_handleRequest` /
//! `_fulfillRequest`), and our answer to a `want` ([`want_reply`], `_onwant`).
//!
//! Only what a log store holds committed is served: a block verified and not committed yet
//! is answered like a block we do not have.

use std::collections::VecDeque;

use peerhost_log::{Data, Request};
use peerhost_protomux::ChannelHandle;
use peerhost_store::CoreError;

use crate::config::Config;
use crate::conn::Conns;
use crate::error::Error;
use crate::event::{Event, Events};
use crate::messages::{Bitfield, Message, NoData, Range, Want, reason};
use crate::peer::PeerRef;
use crate::store::LogStore;

/// An answer below this size makes the next answers go out batched; blocks below it on
/// average are "small" to the scheduler too.
pub(crate) const SMALL_ANSWER: usize = 16 * 1024;

/// Answer bytes batched into one protomux frame.
pub(crate) const ANSWER_BATCH: usize = 64 * 1024;

/// Answers batched into one protomux frame.
pub(crate) const MAX_BATCHED_ANSWERS: usize = 256;

/// The remote's requests on one connection, waiting for our answers, in order.
#[derive(Debug, Default)]
pub(crate) struct Answers {
    pending: VecDeque<(ChannelHandle, Request)>,
    invalid: u32,
    /// Payload bytes of the answers made since [`Answers::start_batch`].
    pub(crate) answered: usize,
    /// The last answer was small: batch the next ones into one protomux frame.
    pub(crate) small: bool,
}

impl Answers {
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Queue a request; past `max` waiting the connection must end.
    pub(crate) fn push(
        &mut self,
        channel: ChannelHandle,
        req: Request,
        max: usize,
    ) -> Result<(), Error> {
        // > if size didnt change -> id overwrite -> old one is deleted
        self.pending
            .retain(|(ch, q)| !(*ch == channel && q.id == req.id && req.id != 0));
        if self.pending.len() >= max {
            return Err(Error::TooManyRequests { max });
        }
        self.pending.push_back((channel, req));
        Ok(())
    }

    /// The remote's `cancel`.
    pub(crate) fn cancel(&mut self, channel: ChannelHandle, id: u64) {
        self.pending
            .retain(|(ch, q)| !(*ch == channel && q.id == id));
    }

    pub(crate) fn drop_channel(&mut self, channel: ChannelHandle) {
        self.pending.retain(|(ch, _)| *ch != channel);
    }

    pub(crate) fn clear(&mut self) {
        self.pending.clear();
    }

    pub(crate) fn pop(&mut self) -> Option<(ChannelHandle, Request)> {
        self.pending.pop_front()
    }

    pub(crate) fn start_batch(&mut self) {
        self.answered = 0;
    }
}

/// Answer `req` from `r` with `store`'s proof, `noData`, or (for a request the tree refuses)
/// `noData {invalid}`; `Err` when that was one invalid request too many and the connection
/// must end.
pub(crate) fn answer<S: LogStore>(
    conns: &mut Conns,
    r: PeerRef,
    store: &mut S,
    req: &Request,
    config: &Config,
    events: &mut Events,
) -> Result<(), Error> {
    let dkey = store.discovery_key();
    let reply = match store.proof(req, config.verify_uploads) {
        Ok(Some(data))
            if data
                .block
                .as_ref()
                .is_some_and(|b| b.value.len() > config.max_block_len) =>
        {
            // One message cannot carry it: sending would fail the connection (and JS's
            // secret stream would refuse it too). The peer hears we do not have it.
            let len = data.block.as_ref().map_or(0, |b| b.value.len());
            tracing::warn!(
                log = %dkey,
                index = req.block.as_ref().map_or(0, |b| b.index),
                bytes = len,
                max = config.max_block_len,
                "a block too large for one replication message: answered noData"
            );
            no_data(req, reason::NOT_AVAILABLE)
        }
        Ok(Some(data)) => {
            if let Some(b) = &data.block {
                events.push_if_room(Event::Uploaded {
                    discovery_key: dkey,
                    index: b.index,
                    bytes: b.value.len() as u64,
                });
            }
            Message::Data(data)
        }
        // > if (req.msg.manifest && this.core.header.manifest) → data with the manifest
        Ok(None) => match store.verifier() {
            Some(v) if req.manifest && !v.is_compat() => Message::Data(Data {
                request: req.id,
                fork: store.fork(),
                manifest: Some(v.manifest().clone()),
                ..Data::default()
            }),
            _ => no_data(req, reason::NOT_AVAILABLE),
        },
        Err(e @ (CoreError::Tree { .. } | CoreError::Verify { .. })) => {
            let Some(c) = conns.get_mut(r.conn) else {
                return Ok(());
            };
            c.answers.invalid += 1;
            tracing::debug!(conn = r.conn, log = %dkey, error = %e, "invalid request");
            if c.answers.invalid >= config.max_invalid_requests {
                let count = c.answers.invalid;
                return Err(Error::TooManyInvalidRequests { count });
            }
            no_data(req, reason::INVALID_REQUEST)
        }
        Err(e) => {
            events.push(Event::StorageError {
                discovery_key: dkey,
                message: e.to_string(),
            });
            conns.send(r, &no_data(req, reason::NOT_AVAILABLE));
            return Ok(());
        }
    };
    let len = conns.send(r, &reply);
    if let Some(c) = conns.get_mut(r.conn) {
        c.answers.answered += len;
        c.answers.small = len < SMALL_ANSWER;
    }
    Ok(())
}

fn no_data(req: &Request, reason: u64) -> Message {
    Message::NoData(NoData {
        request: req.id,
        reason,
    })
}

/// Our answer to a `want` the peer's state accepted (lib/replicator.js `_onwant`): the
/// contiguous prefix when the range falls in it (or we hold everything), the first block held
/// for `any`, else a bitfield of the range clipped to our length. `contiguous` is our cached
/// contiguous length.
pub(crate) fn want_reply<S: LogStore>(store: &mut S, contiguous: u64, w: &Want) -> Option<Message> {
    let end = w.start.saturating_add(w.length);
    let length = store.length();
    let contig = contiguous.min(length);
    if end < contig || length == contig || (w.any && w.start < contig) {
        return Some(Message::Range(Range {
            drop: false,
            start: 0,
            length: contig,
        }));
    }
    if w.start >= length {
        return None;
    }
    let end = end.min(length);
    if w.any {
        let bit = store.next_present(w.start, end).ok()??;
        return Some(Message::Range(Range {
            drop: false,
            start: bit,
            length: 1,
        }));
    }
    let start = w.start - w.start % 32;
    let words = bitfield_words(store, start, end).ok()?;
    Some(Message::Bitfield(Bitfield {
        start,
        bitfield: words,
    }))
}

/// Our bitfield for blocks `start..end` as 32-bit words (`start` a multiple of 32).
fn bitfield_words<S: LogStore>(
    store: &mut S,
    start: u64,
    end: u64,
) -> Result<Vec<u32>, peerhost_store::Error> {
    let n = (end - start).div_ceil(32) as usize;
    let mut words = vec![0u32; n];
    let mut i = start;
    while let Some(s) = store.next_present(i, end)? {
        let e = store.next_missing(s, end)?.unwrap_or(end);
        for b in s..e {
            let off = b - start;
            words[(off / 32) as usize] |= 1 << (off % 32);
        }
        i = e;
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryLog;
    use peerhost_ids::KeyPair;

    #[test]
    fn want_replies_follow_js() {
        let mut log = MemoryLog::writer(KeyPair::from_seed(&[1; 32]), false);
        let blocks: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i]).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        log.append(&refs).unwrap();
        let want = |start, length, any| Want { start, length, any };
        // Everything held: the contiguous prefix.
        assert!(matches!(
            want_reply(&mut log, 100, &want(0, 1 << 21, false)),
            Some(Message::Range(Range {
                start: 0,
                length: 100,
                ..
            }))
        ));
        // Held up to 40 only (as if): a bitfield from the aligned start, clipped to the length.
        match want_reply(&mut log, 40, &want(50, 1000, false)) {
            Some(Message::Bitfield(b)) => {
                assert_eq!(b.start, 32);
                assert_eq!(b.bitfield.len(), 3);
                assert_eq!(b.bitfield[0], u32::MAX);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            want_reply(&mut log, 40, &want(60, 10, true)),
            Some(Message::Range(Range {
                start: 60,
                length: 1,
                ..
            }))
        ));
        assert_eq!(want_reply(&mut log, 40, &want(200, 10, false)), None);
    }

    #[test]
    fn answers_queue_in_order_with_id_overwrite_and_a_bound() {
        let mut a = Answers::default();
        let mut mux = peerhost_protomux::Mux::new(peerhost_protomux::Config::default());
        let ch = mux
            .open_with(peerhost_protomux::OpenOptions::new("test"))
            .unwrap();
        let req = |id| Request {
            id,
            ..Request::default()
        };
        a.push(ch, req(1), 3).unwrap();
        a.push(ch, req(2), 3).unwrap();
        a.push(ch, req(1), 3).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a.pop().map(|(_, r)| r.id), Some(2));
        a.push(ch, req(3), 3).unwrap();
        a.push(ch, req(4), 3).unwrap();
        assert!(matches!(
            a.push(ch, req(5), 3),
            Err(Error::TooManyRequests { max: 3 })
        ));
        a.cancel(ch, 3);
        assert_eq!(a.len(), 2);
    }
}
