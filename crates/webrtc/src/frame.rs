//! The frames of the `peerhost/1` data channel (`protocol/webrtc.md` §3): one frame per
//! data-channel message, a type byte first, integers little-endian.
//!
//! ```text
//! HELLO    00 ‖ u8 version ‖ u32 max_message ‖ u16 max_inflight ‖ u16 max_request   peer → browser
//! REQUEST  01 ‖ u32 id ‖ path (UTF-8, 1..=1024 bytes)                             browser → peer
//! RESPONSE 02 ‖ u32 id ‖ u16 status ‖ u8 type ‖ u32 body_len ‖ first body bytes    peer → browser
//! DATA     03 ‖ u32 id ‖ body bytes (at least 1)                                   peer → browser
//! CANCEL   04 ‖ u32 id                                                             browser → peer
//! GOAWAY   05 ‖ u16 code ‖ reason (UTF-8, at most 200 bytes)                       either way
//! ```

/// The protocol version HELLO announces.
pub const VERSION: u8 = 1;
/// The data channel's `protocol` (subprotocol) string.
pub const SUBPROTOCOL: &str = "peerhost/1";
/// The longest path a REQUEST may carry.
pub const MAX_PATH: usize = 1024;
/// The longest GOAWAY reason.
pub const MAX_REASON: usize = 200;
/// The largest body a RESPONSE may announce (16 MiB; the peer's caps keep bodies far lower).
pub const MAX_BODY: u32 = 16 << 20;
/// RESPONSE header bytes before the body.
pub const RESPONSE_HEADER: usize = 1 + 4 + 2 + 1 + 4;
/// DATA header bytes before the body.
pub const DATA_HEADER: usize = 1 + 4;

/// Frame types.
mod kind {
    pub(super) const HELLO: u8 = 0x00;
    pub(super) const REQUEST: u8 = 0x01;
    pub(super) const RESPONSE: u8 = 0x02;
    pub(super) const DATA: u8 = 0x03;
    pub(super) const CANCEL: u8 = 0x04;
    pub(super) const GOAWAY: u8 = 0x05;
}

/// The media type of a body, one byte on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ContentType {
    /// `application/json`: heads, log lists, errors.
    Json = 0,
    /// `application/vnd.peerhost.range-proof`: a PHR1 body.
    RangeProof = 1,
    /// Anything else (not sent by this version).
    Other = 0xFF,
}

impl ContentType {
    /// From the HTTP media type.
    pub fn of_media_type(t: &str) -> Self {
        match t {
            "application/json" => Self::Json,
            "application/vnd.peerhost.range-proof" => Self::RangeProof,
            _ => Self::Other,
        }
    }

    fn from_byte(b: u8) -> Self {
        match b {
            0 => Self::Json,
            1 => Self::RangeProof,
            _ => Self::Other,
        }
    }
}

/// GOAWAY codes: why a side closes the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
#[non_exhaustive]
pub enum GoAwayCode {
    /// A normal close (the other side is done).
    Normal = 0,
    /// A malformed or unexpected frame, a duplicate request id, a text message.
    Protocol = 1,
    /// Too many requests refused for being over the in-flight limit.
    Flood = 2,
    /// A message over the receiver's size limit.
    TooLarge = 3,
    /// Nothing asked for too long.
    Idle = 4,
    /// Over a limit of the peer connection (channels per connection, connections per node).
    Limit = 5,
    /// The node is shutting down.
    Shutdown = 6,
    /// A code this version does not know.
    Unknown = 0xFFFF,
}

impl GoAwayCode {
    fn from_u16(v: u16) -> Self {
        match v {
            0 => Self::Normal,
            1 => Self::Protocol,
            2 => Self::Flood,
            3 => Self::TooLarge,
            4 => Self::Idle,
            5 => Self::Limit,
            6 => Self::Shutdown,
            _ => Self::Unknown,
        }
    }
}

/// One frame, borrowing the message it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The peer's limits, its first message on a channel.
    Hello {
        /// Protocol version ([`VERSION`]).
        version: u8,
        /// The largest message the peer sends.
        max_message: u32,
        /// Requests the peer accepts in flight on this channel.
        max_inflight: u16,
        /// The largest message the peer accepts.
        max_request: u16,
    },
    /// A request: a gateway path with its query.
    Request {
        /// Chosen by the client, unique among its requests in flight.
        id: u32,
        /// `/v1/logs/{key}/head`, `/v1/logs/{key}/blocks?start=…`, `/v1/logs`.
        path: &'a str,
    },
    /// The start of an answer.
    Response {
        /// The request answered.
        id: u32,
        /// HTTP status code.
        status: u16,
        /// The body's media type.
        content_type: ContentType,
        /// The whole body's length; `DATA` frames follow until it is complete.
        body_len: u32,
        /// The first bytes of the body.
        body: &'a [u8],
    },
    /// More of an answer's body.
    Data {
        /// The request answered.
        id: u32,
        /// The next bytes.
        body: &'a [u8],
    },
    /// The client no longer wants an answer.
    Cancel {
        /// The request.
        id: u32,
    },
    /// The sender closes the channel.
    GoAway {
        /// Why.
        code: GoAwayCode,
        /// For people.
        reason: &'a str,
    },
}

/// Why a message is not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// An empty message, or one shorter than its type's fixed fields.
    #[error("frame truncated")]
    Truncated,
    /// A type byte this version does not know.
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    /// Bytes after a fixed-size frame.
    #[error("trailing bytes after a frame")]
    Trailing,
    /// A path or reason that is empty, too long or not UTF-8; a DATA frame without bytes; a
    /// body longer than announced or than [`MAX_BODY`].
    #[error("frame field {0} out of bounds")]
    Bounds(&'static str),
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, FrameError> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or(FrameError::Truncated)
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, FrameError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(FrameError::Truncated)
}

impl<'a> Frame<'a> {
    /// Decode one message.
    pub fn decode(msg: &'a [u8]) -> Result<Self, FrameError> {
        let (&t, _) = msg.split_first().ok_or(FrameError::Truncated)?;
        let fixed = |n: usize| -> Result<(), FrameError> {
            match msg.len().cmp(&n) {
                std::cmp::Ordering::Less => Err(FrameError::Truncated),
                std::cmp::Ordering::Greater => Err(FrameError::Trailing),
                std::cmp::Ordering::Equal => Ok(()),
            }
        };
        match t {
            kind::HELLO => {
                fixed(10)?;
                Ok(Self::Hello {
                    version: msg[1],
                    max_message: u32_at(msg, 2)?,
                    max_inflight: u16_at(msg, 6)?,
                    max_request: u16_at(msg, 8)?,
                })
            }
            kind::REQUEST => {
                let id = u32_at(msg, 1)?;
                let path = &msg[5..];
                if path.is_empty() || path.len() > MAX_PATH {
                    return Err(FrameError::Bounds("path"));
                }
                let path = std::str::from_utf8(path).map_err(|_| FrameError::Bounds("path"))?;
                Ok(Self::Request { id, path })
            }
            kind::RESPONSE => {
                let id = u32_at(msg, 1)?;
                let status = u16_at(msg, 5)?;
                let content_type =
                    ContentType::from_byte(*msg.get(7).ok_or(FrameError::Truncated)?);
                let body_len = u32_at(msg, 8)?;
                let body = &msg[RESPONSE_HEADER..];
                if body_len > MAX_BODY || body.len() > body_len as usize {
                    return Err(FrameError::Bounds("body_len"));
                }
                Ok(Self::Response {
                    id,
                    status,
                    content_type,
                    body_len,
                    body,
                })
            }
            kind::DATA => {
                let id = u32_at(msg, 1)?;
                let body = &msg[DATA_HEADER.min(msg.len())..];
                if body.is_empty() {
                    return Err(FrameError::Bounds("data"));
                }
                Ok(Self::Data { id, body })
            }
            kind::CANCEL => {
                fixed(5)?;
                Ok(Self::Cancel {
                    id: u32_at(msg, 1)?,
                })
            }
            kind::GOAWAY => {
                let code = GoAwayCode::from_u16(u16_at(msg, 1)?);
                let reason = &msg[3..];
                if reason.len() > MAX_REASON {
                    return Err(FrameError::Bounds("reason"));
                }
                let reason =
                    std::str::from_utf8(reason).map_err(|_| FrameError::Bounds("reason"))?;
                Ok(Self::GoAway { code, reason })
            }
            other => Err(FrameError::UnknownType(other)),
        }
    }

    /// Encode this frame as one message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Append this frame's bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Self::Hello {
                version,
                max_message,
                max_inflight,
                max_request,
            } => {
                out.push(kind::HELLO);
                out.push(*version);
                out.extend_from_slice(&max_message.to_le_bytes());
                out.extend_from_slice(&max_inflight.to_le_bytes());
                out.extend_from_slice(&max_request.to_le_bytes());
            }
            Self::Request { id, path } => {
                out.push(kind::REQUEST);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(path.as_bytes());
            }
            Self::Response {
                id,
                status,
                content_type,
                body_len,
                body,
            } => {
                out.push(kind::RESPONSE);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&status.to_le_bytes());
                out.push(*content_type as u8);
                out.extend_from_slice(&body_len.to_le_bytes());
                out.extend_from_slice(body);
            }
            Self::Data { id, body } => {
                out.push(kind::DATA);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(body);
            }
            Self::Cancel { id } => {
                out.push(kind::CANCEL);
                out.extend_from_slice(&id.to_le_bytes());
            }
            Self::GoAway { code, reason } => {
                out.push(kind::GOAWAY);
                out.extend_from_slice(&(*code as u16).to_le_bytes());
                let mut end = reason.len().min(MAX_REASON);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                out.extend_from_slice(&reason.as_bytes()[..end]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Byte layouts, annotated (the same vectors are in `web/test/transport-rtc.test.mjs`).
    #[test]
    fn hex_snapshots() {
        let cases: [(Frame<'_>, &str); 6] = [
            (
                Frame::Hello {
                    version: 1,
                    max_message: 65_536,
                    max_inflight: 16,
                    max_request: 2048,
                },
                // 00 HELLO | 01 version | 00000100 max_message | 1000 | 0008
                "0001000001001000 0008",
            ),
            (
                Frame::Request {
                    id: 7,
                    path: "/v1/logs",
                },
                // 01 REQUEST | 07000000 id | "/v1/logs"
                "0107000000 2f76312f6c6f6773",
            ),
            (
                Frame::Response {
                    id: 7,
                    status: 200,
                    content_type: ContentType::RangeProof,
                    body_len: 5,
                    body: b"PH",
                },
                // 02 | id 7 | c800 status 200 | 01 range proof | 05000000 | "PH"
                "0207000000 c800 01 05000000 5048",
            ),
            (
                Frame::Data {
                    id: 7,
                    body: b"R1!",
                },
                "0307000000 523121",
            ),
            (Frame::Cancel { id: 0x0102_0304 }, "0404030201"),
            (
                Frame::GoAway {
                    code: GoAwayCode::Flood,
                    reason: "flood",
                },
                "050200 666c6f6f64",
            ),
        ];
        for (frame, hex_str) in cases {
            let bytes = hex::decode(hex_str.replace(' ', "")).unwrap();
            assert_eq!(frame.encode(), bytes, "{frame:?}");
            assert_eq!(Frame::decode(&bytes).unwrap(), frame);
        }
    }

    #[test]
    fn rejects_malformed() {
        for (bytes, err) in [
            (&b""[..], FrameError::Truncated),
            (&[0x09][..], FrameError::UnknownType(9)),
            (&[0x01, 1, 0, 0, 0][..], FrameError::Bounds("path")),
            (&[0x01, 1, 0, 0, 0, 0xff][..], FrameError::Bounds("path")),
            (&[0x01, 1, 0, 0][..], FrameError::Truncated),
            (&[0x03, 1, 0, 0, 0][..], FrameError::Bounds("data")),
            (&[0x04, 1, 0, 0, 0, 0][..], FrameError::Trailing),
            (&[0x00, 1, 0, 0][..], FrameError::Truncated),
            // body_len 1, two body bytes
            (
                &[0x02, 1, 0, 0, 0, 200, 0, 0, 1, 0, 0, 0, 9, 9][..],
                FrameError::Bounds("body_len"),
            ),
            // body_len over MAX_BODY
            (
                &[0x02, 1, 0, 0, 0, 200, 0, 0, 0, 0, 0, 2][..],
                FrameError::Bounds("body_len"),
            ),
        ] {
            assert_eq!(Frame::decode(bytes), Err(err), "{bytes:?}");
        }
        let long = [&[0x01, 1, 0, 0, 0][..], &[b'a'; MAX_PATH + 1]].concat();
        assert_eq!(Frame::decode(&long), Err(FrameError::Bounds("path")));
    }

    fn frame_strategy() -> impl Strategy<Value = (u8, u32, u16, String, Vec<u8>)> {
        (
            0u8..6,
            any::<u32>(),
            any::<u16>(),
            "[a-z0-9/?=&]{1,100}",
            proptest::collection::vec(any::<u8>(), 1..300),
        )
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Frame::decode(&bytes);
        }

        #[test]
        fn encode_decode_roundtrip((t, id, n, text, body) in frame_strategy()) {
            let frame = match t {
                0 => Frame::Hello { version: 1, max_message: id, max_inflight: n, max_request: n },
                1 => Frame::Request { id, path: &text },
                2 => Frame::Response {
                    id, status: n, content_type: ContentType::Json,
                    body_len: body.len() as u32 + u32::from(n % 7), body: &body,
                },
                3 => Frame::Data { id, body: &body },
                4 => Frame::Cancel { id },
                _ => Frame::GoAway { code: GoAwayCode::Idle, reason: &text },
            };
            let bytes = frame.encode();
            prop_assert_eq!(Frame::decode(&bytes).unwrap(), frame);
        }
    }
}
