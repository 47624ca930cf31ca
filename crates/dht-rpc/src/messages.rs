//! The two datagrams of dht-rpc: request and response (dht-rpc `lib/io.js`
//! `Request._encodeRequest`, `Request.decode`, `Request._sendReply`, `decodeReply`).
//!
//! ```text
//! request  = 0x03 flags:uint tid:u16 to:ipv4Address [id:32] [token:32] command:uint
//!            [target:32] [value:buffer]
//!            flags: 1 id, 2 token, 4 internal, 8 target, 16 value
//! response = 0x13 flags:uint tid:u16 to:ipv4Address [id:32] [token:32]
//!            [closerNodes:array(ipv4Address)] [error:uint] [value:buffer]
//!            flags: 1 id, 2 token, 4 closerNodes, 8 error, 16 value
//! ```
//!
//! Decoding accepts exactly what JS accepts: `flags` is read as a varint and unknown bits are
//! ignored, trailing bytes after the last field are ignored, a value may be present and empty.
//! Encoding writes what JS writes (`flags` as one byte, an error only when non-zero, closer
//! nodes only when there are some).

use std::net::SocketAddrV4;

use peerhost_encoding::{CompactEncoding, DecodeError, Reader, Sizer, Writer};

use crate::peer::{ID_LEN, NodeId, read_addr, write_addr};

/// First byte of a request: `(0b0000 << 4) | VERSION` with `VERSION = 0b11`.
pub const REQUEST_ID: u8 = 0x03;
/// First byte of a response: `(0b0001 << 4) | VERSION`.
pub const RESPONSE_ID: u8 = 0x13;

/// The largest datagram we send. udx-native (which carries every JS dht-rpc socket) receives
/// into a 2048-byte buffer and truncates anything longer, so larger datagrams cannot reach JS.
pub const MAX_DATAGRAM: usize = 2048;

/// Request flag: the sender's node id follows.
pub const REQ_ID: u64 = 1;
/// Request flag: a token follows.
pub const REQ_TOKEN: u64 = 2;
/// Request flag: the command is a dht-rpc internal command ([`Command`]).
pub const REQ_INTERNAL: u64 = 4;
/// Request flag: a target follows the command.
pub const REQ_TARGET: u64 = 8;
/// Request flag: a value follows.
pub const REQ_VALUE: u64 = 16;

/// Response flag: the responder's node id follows.
pub const RES_ID: u64 = 1;
/// Response flag: a token follows.
pub const RES_TOKEN: u64 = 2;
/// Response flag: closer nodes follow.
pub const RES_CLOSER_NODES: u64 = 4;
/// Response flag: an error code follows.
pub const RES_ERROR: u64 = 8;
/// Response flag: a value follows.
pub const RES_VALUE: u64 = 16;

/// Reply error code: success.
pub const OK: u64 = 0;
/// Reply error code: the command is not handled here (`ERROR_UNKNOWN_COMMAND`).
pub const UNKNOWN_COMMAND: u64 = 1;
/// Reply error code: the request's token is not one we issued to its host recently.
pub const INVALID_TOKEN: u64 = 2;

/// The internal commands (requests with the `internal` flag), dht-rpc `lib/commands.js`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Command {
    /// Keep-alive; empty reply.
    Ping = 0,
    /// "Reply to this port of my host": value is a u16 LE port.
    PingNat = 1,
    /// Closer nodes to the target.
    FindNode = 2,
    /// "This node you told me about is down": value is its 6-byte address.
    DownHint = 3,
    /// Reply after a delay: value is a u32 LE number of milliseconds.
    DelayedPing = 4,
}

impl Command {
    /// The command for a wire number, if it is one.
    pub fn from_u64(n: u64) -> Option<Self> {
        Some(match n {
            0 => Self::Ping,
            1 => Self::PingNat,
            2 => Self::FindNode,
            3 => Self::DownHint,
            4 => Self::DelayedPing,
            _ => return None,
        })
    }
}

/// A decoded or to-be-encoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Transaction id, echoed by the response.
    pub tid: u16,
    /// The address the sender sent this to (the receiver's address as the sender sees it).
    pub to: SocketAddrV4,
    /// The sender's node id, claimed; valid only if it hashes the sender's real address.
    pub id: Option<NodeId>,
    /// A token the receiver handed out earlier.
    pub token: Option<[u8; ID_LEN]>,
    /// Whether `command` is internal ([`Command`]) or an application command.
    pub internal: bool,
    /// The command number.
    pub command: u64,
    /// The key the request is about.
    pub target: Option<[u8; ID_LEN]>,
    /// The payload; `Some(empty)` and `None` differ on the wire.
    pub value: Option<Vec<u8>>,
}

/// A decoded or to-be-encoded response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The transaction id of the request answered.
    pub tid: u16,
    /// The requester's address as the responder sees it (a NAT sample for the requester).
    pub to: SocketAddrV4,
    /// The responder's node id, claimed.
    pub id: Option<NodeId>,
    /// A token the requester can use in a later request to the responder.
    pub token: Option<[u8; ID_LEN]>,
    /// Nodes closer to the request's target. `None` when the flag is absent.
    pub closer_nodes: Option<Vec<SocketAddrV4>>,
    /// Error code, [`OK`] when absent.
    pub error: u64,
    /// The payload.
    pub value: Option<Vec<u8>>,
}

const UNSPECIFIED: SocketAddrV4 = SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0);

impl Default for Request {
    /// Command 0 (not internal) to 0.0.0.0:0 with tid 0.
    fn default() -> Self {
        Self {
            tid: 0,
            to: UNSPECIFIED,
            id: None,
            token: None,
            internal: false,
            command: 0,
            target: None,
            value: None,
        }
    }
}

impl Default for Response {
    /// An empty OK to 0.0.0.0:0 with tid 0.
    fn default() -> Self {
        Self {
            tid: 0,
            to: UNSPECIFIED,
            id: None,
            token: None,
            closer_nodes: None,
            error: OK,
            value: None,
        }
    }
}

/// Either datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request (first byte [`REQUEST_ID`]).
    Request(Request),
    /// A response (first byte [`RESPONSE_ID`]).
    Response(Response),
}

fn flag(on: bool, bit: u64) -> u64 {
    if on { bit } else { 0 }
}

impl Request {
    fn flags(&self) -> u64 {
        flag(self.id.is_some(), REQ_ID)
            | flag(self.token.is_some(), REQ_TOKEN)
            | flag(self.internal, REQ_INTERNAL)
            | flag(self.target.is_some(), REQ_TARGET)
            | flag(self.value.is_some(), REQ_VALUE)
    }

    /// Decode the body after the type byte.
    fn decode_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        // > const flags = c.uint.decode(state)
        let flags = r.uint()?;
        let tid = r.uint16()?;
        let to = read_addr(r)?;
        let id = opt(flags & REQ_ID != 0, || r.fixed().map(NodeId))?;
        let token = opt(flags & REQ_TOKEN != 0, || r.fixed())?;
        let internal = flags & REQ_INTERNAL != 0;
        let command = r.uint()?;
        let target = opt(flags & REQ_TARGET != 0, || r.fixed())?;
        let value = opt(flags & REQ_VALUE != 0, || r.buffer().map(<[u8]>::to_vec))?;
        Ok(Self {
            tid,
            to,
            id,
            token,
            internal,
            command,
            target,
            value,
        })
    }
}

impl Response {
    fn flags(&self) -> u64 {
        flag(self.id.is_some(), RES_ID)
            | flag(self.token.is_some(), RES_TOKEN)
            | flag(
                self.closer_nodes.as_ref().is_some_and(|n| !n.is_empty()),
                RES_CLOSER_NODES,
            )
            | flag(self.error > 0, RES_ERROR)
            | flag(self.value.is_some(), RES_VALUE)
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let flags = r.uint()?;
        let tid = r.uint16()?;
        let to = read_addr(r)?;
        let id = opt(flags & RES_ID != 0, || r.fixed().map(NodeId))?;
        let token = opt(flags & RES_TOKEN != 0, || r.fixed())?;
        let closer_nodes = opt(flags & RES_CLOSER_NODES != 0, || r.array(6, read_addr))?;
        let error = if flags & RES_ERROR != 0 {
            r.uint()?
        } else {
            OK
        };
        let value = opt(flags & RES_VALUE != 0, || r.buffer().map(<[u8]>::to_vec))?;
        Ok(Self {
            tid,
            to,
            id,
            token,
            closer_nodes,
            error,
            value,
        })
    }

    /// The closer nodes, empty when absent.
    pub fn closer_nodes(&self) -> &[SocketAddrV4] {
        self.closer_nodes.as_deref().unwrap_or_default()
    }
}

fn opt<T>(
    present: bool,
    f: impl FnOnce() -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    if present { f().map(Some) } else { Ok(None) }
}

fn type_byte(r: &mut Reader<'_>, want: u8) -> Result<(), DecodeError> {
    if r.uint8()? == want {
        Ok(())
    } else {
        Err(DecodeError::Invalid("not a dht-rpc message of this type"))
    }
}

impl CompactEncoding for Request {
    fn preencode(&self, st: &mut Sizer) {
        // type, flags (one byte: JS writes it raw), tid, to
        st.add(1 + 1 + 2 + 6);
        if self.id.is_some() {
            st.add(ID_LEN);
        }
        if self.token.is_some() {
            st.add(ID_LEN);
        }
        st.uint(self.command);
        if self.target.is_some() {
            st.add(ID_LEN);
        }
        if let Some(v) = &self.value {
            st.buffer(v);
        }
    }

    fn encode(&self, w: &mut Writer<'_>) {
        w.uint8(REQUEST_ID);
        // Every flag fits in 5 bits: JS writes `state.buffer[state.start++] = flags`.
        w.uint8(self.flags() as u8);
        w.uint16(self.tid);
        write_addr(w, self.to);
        if let Some(id) = &self.id {
            w.raw(&id.0);
        }
        if let Some(t) = &self.token {
            w.raw(t);
        }
        w.uint(self.command);
        if let Some(t) = &self.target {
            w.raw(t);
        }
        if let Some(v) = &self.value {
            w.buffer(v);
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        type_byte(r, REQUEST_ID)?;
        Self::decode_body(r)
    }
}

impl CompactEncoding for Response {
    fn preencode(&self, st: &mut Sizer) {
        st.add(1 + 1 + 2 + 6);
        if self.id.is_some() {
            st.add(ID_LEN);
        }
        if self.token.is_some() {
            st.add(ID_LEN);
        }
        if let Some(nodes) = self.closer_nodes.as_ref().filter(|n| !n.is_empty()) {
            st.uint(nodes.len() as u64);
            st.add(6 * nodes.len());
        }
        if self.error > 0 {
            st.uint(self.error);
        }
        if let Some(v) = &self.value {
            st.buffer(v);
        }
    }

    fn encode(&self, w: &mut Writer<'_>) {
        w.uint8(RESPONSE_ID);
        w.uint8(self.flags() as u8);
        w.uint16(self.tid);
        write_addr(w, self.to);
        if let Some(id) = &self.id {
            w.raw(&id.0);
        }
        if let Some(t) = &self.token {
            w.raw(t);
        }
        if let Some(nodes) = self.closer_nodes.as_ref().filter(|n| !n.is_empty()) {
            w.uint(nodes.len() as u64);
            for n in nodes {
                write_addr(w, *n);
            }
        }
        if self.error > 0 {
            w.uint(self.error);
        }
        if let Some(v) = &self.value {
            w.buffer(v);
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        type_byte(r, RESPONSE_ID)?;
        Self::decode_body(r)
    }
}

impl Message {
    /// Decode a datagram as `IO#onmessage` does: at least 2 bytes, first byte [`REQUEST_ID`] or
    /// [`RESPONSE_ID`], trailing bytes ignored.
    pub fn decode(datagram: &[u8]) -> Result<Self, DecodeError> {
        // > if (buffer.byteLength < 2 || ...) return
        if datagram.len() < 2 {
            return Err(DecodeError::UnexpectedEnd);
        }
        let mut r = Reader::new(datagram);
        match r.uint8()? {
            REQUEST_ID => Request::decode_body(&mut r).map(Self::Request),
            RESPONSE_ID => Response::decode_body(&mut r).map(Self::Response),
            _ => Err(DecodeError::Invalid("not a dht-rpc message")),
        }
    }

    /// Encode as a new datagram.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Request(r) => peerhost_encoding::to_vec(r),
            Self::Response(r) => peerhost_encoding::to_vec(r),
        }
    }
}

/// The transaction id of a response datagram, read without decoding the rest: lets the node
/// drop responses nobody waits for before spending anything on them. `None` if the datagram
/// is too short or its flags are a multi-byte varint (then the full decode decides).
pub(crate) fn peek_response_tid(datagram: &[u8]) -> Option<u16> {
    match datagram {
        [RESPONSE_ID, flags, a, b, ..] if *flags < 0xfd => Some(u16::from_le_bytes([*a, *b])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerhost_encoding::to_vec;
    use proptest::prelude::*;

    fn addr(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    fn req(hexs: &str) -> Request {
        match Message::decode(&hex::decode(hexs).unwrap()).unwrap() {
            Message::Request(r) => r,
            m => panic!("not a request: {m:?}"),
        }
    }

    fn res(hexs: &str) -> Response {
        match Message::decode(&hex::decode(hexs).unwrap()).unwrap() {
            Message::Response(r) => r,
            m => panic!("not a response: {m:?}"),
        }
    }

    const TO: &str = "10.1.2.3:49737";

    // Every snapshot below is printed by `node interop-tests/dht-rpc/vectors.js`, which runs the
    // real dht-rpc 6.27.0 encoder (IO#createRequest + Request#send, Request#reply / #error).

    #[test]
    fn ping_request() {
        let r = Request {
            tid: 0x1234,
            to: addr(TO),
            internal: true,
            command: Command::Ping as u64,
            ..Default::default()
        };
        // 03 type | 04 flags=internal | 3412 tid | 0a010203 49c2 to=10.1.2.3:49737 | 00 PING
        assert_eq!(hex::encode(to_vec(&r)), "030434120a01020349c200");
    }

    #[test]
    fn internal_requests() {
        let base = Request {
            tid: 0x1234,
            to: addr(TO),
            internal: true,
            ..Default::default()
        };
        let ping_nat = Request {
            command: Command::PingNat as u64,
            value: Some(vec![0x49, 0xc2]),
            ..base.clone()
        };
        // flags 0x14 = internal|value; 01 PING_NAT; 02 49c2 value = port 49737 LE
        assert_eq!(
            hex::encode(to_vec(&ping_nat)),
            "031434120a01020349c2010249c2"
        );
        let find_node = Request {
            command: Command::FindNode as u64,
            target: Some([0x11; 32]),
            ..base.clone()
        };
        // flags 0x0c = internal|target; 02 FIND_NODE; then the target
        assert_eq!(
            hex::encode(to_vec(&find_node)),
            format!("030c34120a01020349c202{}", "11".repeat(32))
        );
        let persistent = Request {
            id: Some(NodeId([0xaa; 32])),
            ..find_node
        };
        // flags 0x0d = id|internal|target; the id comes right after `to`
        assert_eq!(
            hex::encode(to_vec(&persistent)),
            format!(
                "030d34120a01020349c2{}02{}",
                "aa".repeat(32),
                "11".repeat(32)
            )
        );
        let down_hint = Request {
            command: Command::DownHint as u64,
            value: Some(hex::decode("010203043930").unwrap()),
            ..base
        };
        assert_eq!(
            hex::encode(to_vec(&down_hint)),
            "031434120a01020349c20306010203043930"
        );
    }

    #[test]
    fn user_requests() {
        let full = Request {
            tid: 0x1234,
            to: addr(TO),
            token: Some([0x22; 32]),
            command: 42,
            target: Some([0x33; 32]),
            value: Some(b"hello".to_vec()),
            ..Default::default()
        };
        // flags 0x1a = token|target|value; token; 2a command 42; target; 05 "hello"
        assert_eq!(
            hex::encode(to_vec(&full)),
            format!(
                "031a34120a01020349c2{}2a{}0568656c6c6f",
                "22".repeat(32),
                "33".repeat(32)
            )
        );
        let empty_value = Request {
            tid: 0x1234,
            to: addr(TO),
            command: 300,
            value: Some(Vec::new()),
            ..Default::default()
        };
        // flags 0x10 = value; fd2c01 command 300; 00 empty value (present, length 0)
        assert_eq!(
            hex::encode(to_vec(&empty_value)),
            "031034120a01020349c2fd2c0100"
        );
        let big = Request {
            tid: 0x1234,
            to: addr(TO),
            command: 70000,
            ..Default::default()
        };
        assert_eq!(hex::encode(to_vec(&big)), "030034120a01020349c2fe70110100");
    }

    #[test]
    fn responses() {
        let from = addr("192.168.0.7:40000");
        let ping = Response {
            tid: 0x1234,
            to: from,
            ..Default::default()
        };
        // 13 type | 00 flags | 3412 tid | c0a80007 409c to=192.168.0.7:40000
        assert_eq!(hex::encode(to_vec(&ping)), "13003412c0a80007409c");

        let nodes = vec![
            addr("1.2.3.4:1000"),
            addr("9.9.9.9:49737"),
            addr("5.6.7.8:2000"),
        ];
        let find_node = Response {
            id: Some(NodeId([0xaa; 32])),
            closer_nodes: Some(nodes.clone()),
            ..ping.clone()
        };
        // flags 0x05 = id|closerNodes; 03 count, 6 bytes each
        assert_eq!(
            hex::encode(to_vec(&find_node)),
            format!(
                "13053412c0a80007409c{}0301020304e8030909090949c205060708d007",
                "aa".repeat(32)
            )
        );

        let token = hex::decode("294412c6d2d9f2b94f6594d5369e62a0dcf518465fc542a823114f027ece2b73")
            .unwrap()
            .try_into()
            .unwrap();
        let value_token = Response {
            token: Some(token),
            value: Some(b"world".to_vec()),
            ..ping.clone()
        };
        assert_eq!(
            hex::encode(to_vec(&value_token)),
            "13123412c0a80007409c294412c6d2d9f2b94f6594d5369e62a0dcf518465fc542a823114f027ece2b7305776f726c64"
        );
        let full = Response {
            id: Some(NodeId([0xaa; 32])),
            closer_nodes: Some(nodes.clone()),
            ..value_token
        };
        // flags 0x17 = id|token|closerNodes|value, in that order on the wire
        assert_eq!(
            hex::encode(to_vec(&full)),
            format!(
                "13173412c0a80007409c{}{}0301020304e8030909090949c205060708d00705776f726c64",
                "aa".repeat(32),
                hex::encode(token)
            )
        );
        let unknown = Response {
            id: Some(NodeId([0xaa; 32])),
            closer_nodes: Some(nodes),
            error: UNKNOWN_COMMAND,
            ..ping.clone()
        };
        // flags 0x0d = id|closerNodes|error; 01 UNKNOWN_COMMAND last
        assert_eq!(
            hex::encode(to_vec(&unknown)),
            format!(
                "130d3412c0a80007409c{}0301020304e8030909090949c205060708d00701",
                "aa".repeat(32)
            )
        );
        let invalid_token = Response {
            token: Some(token),
            error: INVALID_TOKEN,
            ..ping.clone()
        };
        assert_eq!(
            hex::encode(to_vec(&invalid_token)),
            format!("130a3412c0a80007409c{}02", hex::encode(token))
        );
        let big_error = Response {
            error: 1000,
            ..ping
        };
        assert_eq!(
            hex::encode(to_vec(&big_error)),
            "13083412c0a80007409cfde803"
        );
        let to_other = Response {
            tid: 0x1234,
            to: addr("8.8.4.4:53"),
            value: Some(Vec::new()),
            ..Default::default()
        };
        assert_eq!(hex::encode(to_vec(&to_other)), "1310341208080404350000");
        // An empty closer-node list is not written (JS: `closerNodes.length > 0`).
        let no_nodes = Response {
            closer_nodes: Some(Vec::new()),
            ..to_other.clone()
        };
        assert_eq!(to_vec(&no_nodes), to_vec(&to_other));
    }

    #[test]
    fn decoding_matches_js() {
        // The "decoded" section of vectors.js: what JS IO#onmessage accepts and what it reads.
        for bad in [
            "",
            "03",
            "0400341201020304e80300",
            "030434120a0102",
            "030434120a01020349c2",
            "031434120a01020349c22a056869",
            "030034120a01020349c2ff0000000000002000",
            "13043412c0a8000740940301020304e803",
        ] {
            assert!(
                Message::decode(&hex::decode(bad).unwrap()).is_err(),
                "{bad}"
            );
        }
        let ping = req("030434120a01020349c200");
        assert_eq!(ping.tid, 4660);
        assert_eq!(ping.to, addr(TO));
        assert!(ping.internal);
        assert_eq!(ping.command, 0);
        // Trailing garbage, varint flags and unknown flag bits are all accepted.
        assert_eq!(req("030434120a01020349c200ffffff"), ping);
        assert_eq!(req("03fd040034120a01020349c200"), ping);
        assert_eq!(req("03e434120a01020349c200"), ping);
        let v = req("031434120a01020349c22a00");
        assert_eq!((v.command, v.value), (42, Some(Vec::new())));
        let fd = req("030034120a01020349c2fd2a00");
        assert_eq!((fd.internal, fd.command), (false, 42));
        assert_eq!(
            req("030034120a01020349c2ff0100000001000000").command,
            4294967297
        );

        let ok = res("13003412c0a800074094");
        assert_eq!(ok.to, addr("192.168.0.7:37952"));
        assert_eq!(ok.closer_nodes, None);
        let nodes = res("13043412c0a8000740940201020304e80305060708d007");
        assert_eq!(
            nodes.closer_nodes,
            Some(vec![addr("1.2.3.4:1000"), addr("5.6.7.8:2000")])
        );
        assert_eq!(res("13043412c0a80007409400").closer_nodes, Some(Vec::new()));
        assert_eq!(res("13083412c0a80007409400").error, 0);
        let ev = res("13183412c0a8000740940703616263");
        assert_eq!((ev.error, ev.value), (7, Some(b"abc".to_vec())));
    }

    #[test]
    fn response_tid_peek() {
        assert_eq!(
            peek_response_tid(&hex::decode("13003412c0a800074094").unwrap()),
            Some(0x1234)
        );
        assert_eq!(peek_response_tid(&[0x13, 0xfd, 0, 0, 0x34, 0x12]), None);
        assert_eq!(peek_response_tid(&[0x03, 0, 0x34, 0x12]), None);
    }

    fn any_addr() -> impl Strategy<Value = SocketAddrV4> {
        (any::<u32>(), any::<u16>()).prop_map(|(ip, port)| SocketAddrV4::new(ip.into(), port))
    }

    fn any_request() -> impl Strategy<Value = Request> {
        (
            any::<u16>(),
            any_addr(),
            proptest::option::of(any::<[u8; 32]>()),
            proptest::option::of(any::<[u8; 32]>()),
            any::<bool>(),
            0..=peerhost_encoding::MAX_SAFE_UINT,
            proptest::option::of(any::<[u8; 32]>()),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        )
            .prop_map(
                |(tid, to, id, token, internal, command, target, value)| Request {
                    tid,
                    to,
                    id: id.map(NodeId),
                    token,
                    internal,
                    command,
                    target,
                    value,
                },
            )
    }

    fn any_response() -> impl Strategy<Value = Response> {
        (
            any::<u16>(),
            any_addr(),
            proptest::option::of(any::<[u8; 32]>()),
            proptest::option::of(any::<[u8; 32]>()),
            proptest::option::of(proptest::collection::vec(any_addr(), 1..30)),
            0..=peerhost_encoding::MAX_SAFE_UINT,
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        )
            .prop_map(
                |(tid, to, id, token, closer_nodes, error, value)| Response {
                    tid,
                    to,
                    id: id.map(NodeId),
                    token,
                    closer_nodes,
                    error,
                    value,
                },
            )
    }

    proptest! {
        #[test]
        fn requests_round_trip(r in any_request()) {
            let m = Message::Request(r);
            let bytes = m.encode();
            let mut sizer = Sizer::default();
            if let Message::Request(r) = &m { r.preencode(&mut sizer) }
            prop_assert_eq!(sizer.len(), bytes.len());
            prop_assert_eq!(Message::decode(&bytes), Ok(m));
        }

        #[test]
        fn responses_round_trip(r in any_response()) {
            let m = Message::Response(r);
            let bytes = m.encode();
            prop_assert_eq!(Message::decode(&bytes), Ok(m));
            prop_assert_eq!(peek_response_tid(&bytes).is_some(), true);
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Message::decode(&b);
            let _ = peek_response_tid(&b);
        }

        #[test]
        fn truncations_of_valid_messages_never_panic(r in any_request(), cut in 0usize..400) {
            let bytes = to_vec(&r);
            let _ = Message::decode(&bytes[..cut.min(bytes.len())]);
        }
    }
}
