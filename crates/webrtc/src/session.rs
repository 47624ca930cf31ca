//! One data channel's requests and answers on the serving side (`protocol/webrtc.md` §3–§4),
//! sans-IO: messages in, requests for the gateway out, answers in, messages out.
//!
//! - [`Session::handle_message`]: a browser's message (REQUEST, CANCEL, GOAWAY); a request
//!   over the in-flight limit is answered `429` at once, and the `max_refused`-th such
//!   refusal closes the channel (a flood); anything malformed closes it.
//! - [`Session::poll_request`]: the next request to hand the gateway, while fewer than
//!   `max_dispatch` are being answered and the answers waiting to be sent hold fewer than
//!   `max_buffered` bytes (the channel's memory stays bounded whatever the browser asks).
//! - [`Session::handle_answer`]: the gateway's answer to a dispatched request.
//! - [`Session::poll_message`]: the next message to write (HELLO first, then RESPONSE and
//!   DATA frames of at most `max_message` bytes, from the answer with the fewest bytes left:
//!   a head is not stuck behind a large range, and of several ranges one finishes after the
//!   other, so the browser verifies the first while the next arrives). The caller writes
//!   while the transport has room (SCTP's buffered amount below its mark).
//! - [`Session::close`] queues a GOAWAY; [`Session::is_closed`] once it was polled.

use std::collections::{HashSet, VecDeque};

use crate::frame::{self, ContentType, Frame, GoAwayCode};

/// A channel's limits (`protocol/webrtc.md` §4).
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest message sent (RESPONSE or DATA, header included).
    pub max_message: usize,
    /// The largest message accepted; a larger one closes the channel.
    pub max_request: usize,
    /// Requests in flight (queued, being answered, or being sent) per channel.
    pub max_inflight: usize,
    /// Requests being answered by the gateway at once per channel.
    pub max_dispatch: usize,
    /// Bytes of answers waiting to be sent, above which no new request is dispatched.
    pub max_buffered: usize,
    /// Requests refused for the in-flight limit before the channel is closed.
    pub max_refused: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // Well under the send window (`peer::Config::window`), so that several messages
            // are in flight and the next is written before the pipe runs dry.
            max_message: 16 << 10,
            max_request: 2048,
            max_inflight: 16,
            max_dispatch: 4,
            max_buffered: 1 << 20,
            max_refused: 64,
        }
    }
}

/// Why the session ended, to close the channel with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The GOAWAY code sent.
    pub code: GoAwayCode,
    /// The reason sent.
    pub reason: String,
}

/// An answer being sent.
#[derive(Debug)]
struct Outgoing {
    id: u32,
    status: u16,
    content_type: ContentType,
    body: Vec<u8>,
    /// Bytes of `body` already framed (`None`: the RESPONSE frame is not out yet).
    sent: Option<usize>,
}

/// Counters of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests received (refused ones included).
    pub requests: u64,
    /// Requests refused for the in-flight limit.
    pub refused: u64,
    /// Answers completely framed.
    pub answered: u64,
    /// Body bytes framed.
    pub body_bytes: u64,
    /// Message bytes framed (headers included).
    pub message_bytes: u64,
}

/// One data channel's request/answer state. See the module docs for the drain contract.
#[derive(Debug)]
pub struct Session {
    limits: Limits,
    hello: bool,
    /// Ids in flight: queued, dispatched or being sent.
    ids: HashSet<u32>,
    queued: VecDeque<(u32, String)>,
    /// Dispatched and not answered yet.
    dispatched: HashSet<u32>,
    /// Cancelled while dispatched: the answer is dropped when it comes.
    cancelled: HashSet<u32>,
    /// Answers ready, refusals included; the one with the fewest bytes left goes first.
    sending: VecDeque<Outgoing>,
    buffered: usize,
    refused_run: u32,
    goaway: Option<Close>,
    closed: bool,
    stats: Stats,
}

/// The JSON body of a `429` on a channel (the gateway's error shape).
const TOO_MANY: &[u8] =
    br#"{"error":"TOO_MANY_REQUESTS","message":"too many requests in flight on this channel"}"#;

impl Session {
    /// A session that greets with HELLO.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            hello: false,
            ids: HashSet::new(),
            queued: VecDeque::new(),
            dispatched: HashSet::new(),
            cancelled: HashSet::new(),
            sending: VecDeque::new(),
            buffered: 0,
            refused_run: 0,
            goaway: None,
            closed: false,
            stats: Stats::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Requests in flight.
    pub fn inflight(&self) -> usize {
        self.ids.len()
    }

    /// Bytes of answers held, not yet framed.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Whether nothing is in flight (for the idle timeout).
    pub fn is_idle(&self) -> bool {
        self.ids.is_empty() && self.sending.is_empty()
    }

    /// Whether the GOAWAY went out (or the browser sent one): close the channel.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Queue a GOAWAY; every answer not yet framed is dropped.
    pub fn close(&mut self, code: GoAwayCode, reason: impl Into<String>) {
        if self.goaway.is_some() || self.closed {
            return;
        }
        self.goaway = Some(Close {
            code,
            reason: reason.into(),
        });
        self.queued.clear();
        self.sending.clear();
        self.buffered = 0;
    }

    /// The GOAWAY this session sent or will send.
    pub fn close_reason(&self) -> Option<&Close> {
        self.goaway.as_ref()
    }

    /// A message from the browser. Errors close the session (a GOAWAY is queued).
    pub fn handle_message(&mut self, binary: bool, msg: &[u8]) {
        if self.goaway.is_some() || self.closed {
            return;
        }
        if !binary {
            return self.close(GoAwayCode::Protocol, "text messages are not frames");
        }
        if msg.len() > self.limits.max_request {
            return self.close(GoAwayCode::TooLarge, "message over max_request");
        }
        match Frame::decode(msg) {
            Ok(Frame::Request { id, path }) => self.request(id, path),
            Ok(Frame::Cancel { id }) => self.cancel(id),
            Ok(Frame::GoAway { .. }) => {
                // The browser leaves: nothing more to send.
                self.close(GoAwayCode::Normal, "");
                self.goaway = None;
                self.closed = true;
            }
            Ok(other) => self.close(
                GoAwayCode::Protocol,
                format!("unexpected frame from a client: {}", frame_name(&other)),
            ),
            Err(e) => self.close(GoAwayCode::Protocol, e.to_string()),
        }
    }

    fn request(&mut self, id: u32, path: &str) {
        self.stats.requests += 1;
        if self.ids.contains(&id) || self.cancelled.contains(&id) {
            return self.close(GoAwayCode::Protocol, format!("request id {id} in use"));
        }
        if self.ids.len() + self.cancelled.len() >= self.limits.max_inflight {
            // > 429 at once, without touching the store; a client that keeps going is a flood.
            self.stats.refused += 1;
            self.refused_run += 1;
            if self.refused_run >= self.limits.max_refused {
                return self.close(GoAwayCode::Flood, "too many requests over max_inflight");
            }
            self.push_answer(id, 429, ContentType::Json, TOO_MANY.to_vec());
            return;
        }
        self.refused_run = 0;
        self.ids.insert(id);
        self.queued.push_back((id, path.to_owned()));
    }

    fn cancel(&mut self, id: u32) {
        if let Some(i) = self.queued.iter().position(|(q, _)| *q == id) {
            self.queued.remove(i);
            self.ids.remove(&id);
        } else if self.dispatched.remove(&id) {
            self.ids.remove(&id);
            self.cancelled.insert(id);
        } else if let Some(i) = self.sending.iter().position(|o| o.id == id) {
            if let Some(o) = self.sending.remove(i) {
                self.buffered -= o.body.len() - o.sent.unwrap_or(0);
            }
            self.ids.remove(&id);
        }
        // An unknown id (already answered) is fine: the answer crossed the CANCEL.
    }

    /// The next request to answer: `(id, path)`. Call until `None` after every input.
    pub fn poll_request(&mut self) -> Option<(u32, String)> {
        if self.goaway.is_some()
            || self.dispatched.len() + self.cancelled.len() >= self.limits.max_dispatch
            || self.buffered >= self.limits.max_buffered
        {
            return None;
        }
        let (id, path) = self.queued.pop_front()?;
        self.dispatched.insert(id);
        Some((id, path))
    }

    /// The gateway's answer to a request from [`Session::poll_request`].
    pub fn handle_answer(
        &mut self,
        id: u32,
        status: u16,
        content_type: ContentType,
        body: Vec<u8>,
    ) {
        if self.cancelled.remove(&id) || !self.dispatched.remove(&id) || self.goaway.is_some() {
            return;
        }
        self.push_answer(id, status, content_type, body);
    }

    fn push_answer(&mut self, id: u32, status: u16, content_type: ContentType, mut body: Vec<u8>) {
        if body.len() > frame::MAX_BODY as usize {
            // Never with the gateway's caps; refuse rather than announce what we cannot send.
            body = br#"{"error":"STORAGE","message":"answer too large"}"#.to_vec();
            return self.push_answer(id, 500, ContentType::Json, body);
        }
        self.buffered += body.len();
        self.sending.push_back(Outgoing {
            id,
            status,
            content_type,
            body,
            sent: None,
        });
    }

    /// The next message to write, if any. The caller writes it and calls again while the
    /// transport has room.
    pub fn poll_message(&mut self) -> Option<Vec<u8>> {
        if self.closed {
            return None;
        }
        if !self.hello {
            self.hello = true;
            return Some(
                Frame::Hello {
                    version: frame::VERSION,
                    max_message: self.limits.max_message as u32,
                    max_inflight: self.limits.max_inflight.min(usize::from(u16::MAX)) as u16,
                    max_request: self.limits.max_request.min(usize::from(u16::MAX)) as u16,
                }
                .encode(),
            );
        }
        if let Some(close) = &self.goaway {
            self.closed = true;
            return Some(
                Frame::GoAway {
                    code: close.code,
                    reason: &close.reason,
                }
                .encode(),
            );
        }
        // Shortest remaining first (ties: the oldest). Round robin would finish all the
        // ranges in flight at once, and the browser, which verifies an answer only when it is
        // whole, would leave the channel idle while it verifies them all.
        let next = self
            .sending
            .iter()
            .enumerate()
            .min_by_key(|(i, o)| (o.body.len() - o.sent.unwrap_or(0), *i))
            .map(|(i, _)| i)?;
        let mut o = self.sending.remove(next)?;
        let mut msg = Vec::with_capacity(self.limits.max_message.min(o.body.len() + 16));
        let start = o.sent.unwrap_or(0);
        let room = match o.sent {
            None => self
                .limits
                .max_message
                .saturating_sub(frame::RESPONSE_HEADER),
            Some(_) => self.limits.max_message.saturating_sub(frame::DATA_HEADER),
        }
        .max(1);
        let end = o.body.len().min(start + room);
        let chunk = &o.body[start..end];
        match o.sent {
            None => Frame::Response {
                id: o.id,
                status: o.status,
                content_type: o.content_type,
                body_len: o.body.len() as u32,
                body: chunk,
            },
            Some(_) => Frame::Data {
                id: o.id,
                body: chunk,
            },
        }
        .encode_into(&mut msg);
        self.buffered -= end - start;
        self.stats.body_bytes += (end - start) as u64;
        self.stats.message_bytes += msg.len() as u64;
        if end == o.body.len() {
            self.ids.remove(&o.id);
            self.stats.answered += 1;
        } else {
            o.sent = Some(end);
            self.sending.insert(next, o);
        }
        Some(msg)
    }
}

fn frame_name(f: &Frame<'_>) -> &'static str {
    match f {
        Frame::Hello { .. } => "HELLO",
        Frame::Request { .. } => "REQUEST",
        Frame::Response { .. } => "RESPONSE",
        Frame::Data { .. } => "DATA",
        Frame::Cancel { .. } => "CANCEL",
        Frame::GoAway { .. } => "GOAWAY",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn req(id: u32, path: &str) -> Vec<u8> {
        Frame::Request { id, path }.encode()
    }

    /// Reassemble the answers from the messages a session sends, as a client does.
    #[derive(Default)]
    struct Client {
        partial: HashMap<u32, (u16, u32, Vec<u8>)>,
        done: Vec<(u32, u16, Vec<u8>)>,
        hello: bool,
        goaway: Option<GoAwayCode>,
    }

    impl Client {
        fn take(&mut self, msg: &[u8]) {
            match Frame::decode(msg).unwrap() {
                Frame::Hello { .. } => self.hello = true,
                Frame::Response {
                    id,
                    status,
                    body_len,
                    body,
                    ..
                } => {
                    assert!(
                        self.partial
                            .insert(id, (status, body_len, body.to_vec()))
                            .is_none()
                    );
                    self.finish(id);
                }
                Frame::Data { id, body } => {
                    self.partial.get_mut(&id).unwrap().2.extend_from_slice(body);
                    self.finish(id);
                }
                Frame::GoAway { code, .. } => self.goaway = Some(code),
                other => panic!("{other:?}"),
            }
        }
        fn finish(&mut self, id: u32) {
            let (_, len, body) = &self.partial[&id];
            assert!(body.len() <= *len as usize);
            if body.len() == *len as usize {
                let (status, _, body) = self.partial.remove(&id).unwrap();
                self.done.push((id, status, body));
            }
        }
    }

    fn drain(s: &mut Session, c: &mut Client) {
        while let Some(m) = s.poll_message() {
            assert!(m.len() <= s.limits().max_message);
            c.take(&m);
        }
    }

    #[test]
    fn answers_are_chunked_shortest_first_and_reassembled() {
        let limits = Limits {
            max_message: 1000,
            ..Limits::default()
        };
        let mut s = Session::new(limits);
        let mut c = Client::default();
        s.handle_message(true, &req(1, "/v1/logs/a/blocks?start=0&end=9"));
        s.handle_message(true, &req(2, "/v1/logs/a/head"));
        assert_eq!(
            s.poll_request(),
            Some((1, "/v1/logs/a/blocks?start=0&end=9".into()))
        );
        assert_eq!(s.poll_request(), Some((2, "/v1/logs/a/head".into())));
        assert_eq!(s.poll_request(), None);
        let big: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        s.handle_answer(1, 200, ContentType::RangeProof, big.clone());
        s.handle_answer(2, 200, ContentType::Json, b"{}".to_vec());
        assert_eq!(s.buffered(), big.len() + 2);
        // HELLO, then the range's RESPONSE, the head's RESPONSE (complete), then DATA.
        let first: Vec<Vec<u8>> = (0..3).map(|_| s.poll_message().unwrap()).collect();
        for m in &first {
            c.take(m);
        }
        assert!(c.hello);
        assert_eq!(c.done, vec![(2, 200, b"{}".to_vec())]);
        drain(&mut s, &mut c);
        assert_eq!(c.done[1], (1, 200, big));
        assert!(s.is_idle());
        assert_eq!(s.buffered(), 0);
        assert_eq!(s.stats().answered, 2);
    }

    #[test]
    fn ranges_finish_one_after_another_and_small_answers_overtake() {
        let limits = Limits {
            max_message: 1000,
            ..Limits::default()
        };
        let mut s = Session::new(limits);
        let mut c = Client::default();
        for id in 1..=3 {
            s.handle_message(true, &req(id, "/v1/logs/a/blocks?start=0&end=9"));
        }
        while s.poll_request().is_some() {}
        for id in 1..=3 {
            s.handle_answer(id, 200, ContentType::RangeProof, vec![id as u8; 5000]);
        }
        let mut order = Vec::new();
        let mut messages = 0;
        while let Some(m) = s.poll_message() {
            c.take(&m);
            messages += 1;
            if messages == 3 {
                // A head asked for while the ranges are being sent goes out next.
                s.handle_message(true, &req(9, "/v1/logs/a/head"));
                assert_eq!(s.poll_request(), Some((9, "/v1/logs/a/head".into())));
                s.handle_answer(9, 200, ContentType::Json, b"{}".to_vec());
            }
            if c.done.len() > order.len() {
                order.push((c.done[order.len()].0, messages));
            }
        }
        // HELLO, two messages of range 1, the head, the rest of range 1, then 2, then 3.
        assert_eq!(order[0], (9, 4));
        assert_eq!(
            order.iter().map(|o| o.0).collect::<Vec<_>>(),
            vec![9, 1, 2, 3]
        );
        // 5000 bytes take 6 messages of 1000 (headers included); none of range 2 or 3
        // went out before range 1 was whole.
        assert_eq!(order[1].1, 1 + 1 + 6);
        assert_eq!(order[2].1, 1 + 1 + 6 + 6);
    }

    #[test]
    fn over_the_limit_is_refused_then_a_flood_closes() {
        let mut s = Session::new(Limits::default());
        let mut c = Client::default();
        for id in 0..16 {
            s.handle_message(true, &req(id, "/v1/logs"));
        }
        assert_eq!(s.inflight(), 16);
        s.handle_message(true, &req(100, "/v1/logs"));
        drain(&mut s, &mut c);
        assert_eq!(c.done, vec![(100, 429, TOO_MANY.to_vec())]);
        // Dispatch is bounded by max_dispatch.
        let mut got = vec![];
        while let Some((id, _)) = s.poll_request() {
            got.push(id);
        }
        assert_eq!(got, vec![0, 1, 2, 3]);
        for id in 200..263 {
            s.handle_message(true, &req(id, "/v1/logs"));
        }
        drain(&mut s, &mut c);
        assert_eq!(c.goaway, Some(GoAwayCode::Flood));
        assert!(s.is_closed());
        assert_eq!(s.stats().refused, 64);
        // Answers to dispatched requests after the close are dropped.
        s.handle_answer(0, 200, ContentType::Json, vec![1]);
        assert_eq!(s.poll_message(), None);
    }

    #[test]
    fn buffered_answers_hold_back_dispatch() {
        let limits = Limits {
            max_buffered: 5000,
            max_message: 1000,
            ..Limits::default()
        };
        let mut s = Session::new(limits);
        for id in 0..8 {
            s.handle_message(true, &req(id, "/x"));
        }
        let (a, _) = s.poll_request().unwrap();
        s.handle_answer(a, 200, ContentType::RangeProof, vec![0; 6000]);
        assert_eq!(s.poll_request(), None, "over max_buffered");
        // Sending drains the buffer below the mark: dispatch resumes.
        s.poll_message(); // HELLO
        s.poll_message(); // 988 body bytes
        s.poll_message(); // 995 more
        assert!(s.buffered() < 5000);
        assert!(s.poll_request().is_some());
    }

    #[test]
    fn cancel_in_every_state() {
        let mut s = Session::new(Limits {
            max_message: 100,
            max_dispatch: 1,
            ..Limits::default()
        });
        let mut c = Client::default();
        for id in 1..=3 {
            s.handle_message(true, &req(id, "/x"));
        }
        assert_eq!(s.poll_request().map(|r| r.0), Some(1));
        s.handle_message(true, &Frame::Cancel { id: 2 }.encode()); // queued
        s.handle_message(true, &Frame::Cancel { id: 1 }.encode()); // dispatched
        assert_eq!(
            s.poll_request(),
            None,
            "the cancelled call still holds its slot"
        );
        s.handle_answer(1, 200, ContentType::Json, vec![0; 50]);
        assert_eq!(s.poll_request().map(|r| r.0), Some(3));
        s.handle_answer(3, 200, ContentType::Json, vec![0; 500]);
        s.poll_message(); // HELLO
        s.poll_message(); // first chunk of 3
        s.handle_message(true, &Frame::Cancel { id: 3 }.encode()); // being sent
        s.handle_message(true, &Frame::Cancel { id: 99 }.encode()); // unknown: fine
        drain(&mut s, &mut c);
        assert!(c.done.is_empty());
        assert!(s.is_idle());
        assert_eq!(s.buffered(), 0);
        assert!(!s.is_closed());
    }

    #[test]
    fn malformed_input_closes() {
        for (binary, msg, code) in [
            (false, b"hello".to_vec(), GoAwayCode::Protocol),
            (true, vec![0x09], GoAwayCode::Protocol),
            (true, vec![0x01; 3000], GoAwayCode::TooLarge),
            (
                true,
                Frame::Data { id: 1, body: b"x" }.encode(),
                GoAwayCode::Protocol,
            ),
        ] {
            let mut s = Session::new(Limits::default());
            let mut c = Client::default();
            s.handle_message(binary, &msg);
            drain(&mut s, &mut c);
            assert_eq!(c.goaway, Some(code), "{msg:?}");
            assert!(s.is_closed());
        }
        // A duplicate id in flight.
        let mut s = Session::new(Limits::default());
        s.handle_message(true, &req(5, "/x"));
        s.handle_message(true, &req(5, "/y"));
        assert_eq!(s.close_reason().unwrap().code, GoAwayCode::Protocol);
    }

    #[test]
    fn ten_thousand_requests_with_a_window_are_all_answered() {
        let mut s = Session::new(Limits::default());
        let mut c = Client::default();
        let mut next = 0u32;
        let mut answered = 0;
        while answered < 10_000 {
            while s.inflight() < 16 && next < 10_000 {
                s.handle_message(true, &req(next, "/v1/logs"));
                next += 1;
            }
            while let Some((id, _)) = s.poll_request() {
                s.handle_answer(id, 200, ContentType::Json, id.to_le_bytes().to_vec());
            }
            let before = c.done.len();
            drain(&mut s, &mut c);
            answered += c.done.len() - before;
        }
        assert_eq!(s.stats().refused, 0);
        assert!(
            c.done
                .iter()
                .all(|(id, st, b)| *st == 200 && b == &id.to_le_bytes())
        );
    }
}
