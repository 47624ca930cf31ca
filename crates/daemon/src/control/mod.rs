//! The local control socket (`protocol/control.md`): how a command such as `peerhost post`,
//! `import` or `feed` works on a store while a daemon (`serve`, `mirror`, `follow`) holds its
//! lock. The daemon listens on `<storage>/control.sock` (mode 0600); a command that finds the
//! store locked opens its logs through it instead ([`Logs`], [`Log::Remote`]), reads blocks and appends
//! them there, and the daemon's peers hear of every append at once.
//!
//! Frames are a varint length (at most [`MAX_FRAME`]) and one protobuf message
//! (`protocol/control.proto`); a connection carries one request, then its response, in turn.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use peerhost_feed::{AppendBlocks, Blocks};
use peerhost_ids::Key;
use peerhost_store::{Core, CoreError, Report, Store, Verification};
use prost::Message;

pub(crate) mod server;

/// The prost types of `protocol/control.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/peerhost.control.v1.rs"));
}

use proto::{request, response};

/// The socket's file name in the storage directory.
pub const SOCKET: &str = "control.sock";
/// The largest frame either side accepts (a request or a response).
pub const MAX_FRAME: usize = 16 << 20;
/// The largest block a log of ours takes (15 MiB). Hypercore sets no limit, but a block must
/// travel in one replication `data` message, and that in one secret-stream message of at most
/// 2^24 − 1 − 17 bytes (`protocol/log.md`, "How large a block can be"): a larger block could
/// be written but never served. The margin holds the proof, the framing and a batch.
pub const MAX_BLOCK: usize = 15 << 20;
/// Block bytes sent in one append request (one signed batch each); larger appends are split.
const APPEND_BYTES: usize = 8 << 20;
/// How long a command waits for the daemon's answer to one request.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// A verification reports its progress at most this often (one `progress` frame each).
pub const VERIFY_PROGRESS: Duration = Duration::from_millis(100);
/// Block bytes one step of a verification reads while it holds the log (the daemon lets its
/// peers and appends in between steps).
pub const VERIFY_STEP_BYTES: u64 = 1 << 20;

/// The control socket of the store in `storage`.
pub fn socket_path(storage: &Path) -> PathBuf {
    storage.join(SOCKET)
}

/// What can go wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No daemon answers on the socket.
    #[error(
        "cannot reach the daemon through {}: {source} (is `peerhost serve` still running?)",
        path.display()
    )]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The connection failed mid-request.
    #[error("the daemon's control socket failed: {0}")]
    Io(#[from] io::Error),
    /// The daemon answered with an error.
    #[error("{0}")]
    Refused(String),
    /// The daemon's answer made no sense (a different peerhost version?).
    #[error(
        "the daemon sent an unexpected answer ({0}): are `peerhost` and the daemon the same version?"
    )]
    Protocol(&'static str),
}

/// Write one frame: varint length, message.
pub(crate) fn encode_frame(msg: &impl Message) -> Vec<u8> {
    msg.encode_length_delimited_to_vec()
}

/// Decode a varint frame length from `first` bytes; `None` if more bytes are needed.
/// Errors on a length over [`MAX_FRAME`] or an over-long varint.
pub(crate) fn frame_len(prefix: &[u8]) -> io::Result<Option<usize>> {
    let mut n: u64 = 0;
    for (i, b) in prefix.iter().enumerate() {
        if i >= 4 {
            // 4 varint bytes hold 2^28 > MAX_FRAME: a fifth is always too long.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "control frame too long",
            ));
        }
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let len = usize::try_from(n).unwrap_or(usize::MAX);
            if len > MAX_FRAME {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("control frame of {len} bytes, over the {MAX_FRAME}-byte limit"),
                ));
            }
            return Ok(Some(len));
        }
    }
    Ok(None)
}

/// Read one frame's body; `Ok(None)` at a clean end of stream before its first byte.
fn read_frame(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut prefix = Vec::with_capacity(4);
    let len = loop {
        let mut b = [0u8; 1];
        if r.read(&mut b)? == 0 {
            if prefix.is_empty() {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        prefix.push(b[0]);
        if let Some(len) = frame_len(&prefix)? {
            break len;
        }
    };
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(Some(body))
}

/// A log the daemon holds, reached through its control socket (one connection per log).
#[derive(Debug)]
pub struct RemoteLog {
    stream: UnixStream,
    key: Key,
    length: u64,
    writable: bool,
}

impl RemoteLog {
    /// Open the log `query` (a local name or a key) of the daemon serving `storage`.
    pub fn open(storage: &Path, query: &str) -> Result<Self, ControlError> {
        let stream = connect(storage)?;
        let mut log = Self {
            stream,
            key: Key([0; 32]),
            length: 0,
            writable: false,
        };
        let response::Result::Log(info) = log.call(request::Op::Open(proto::Open {
            query: query.to_owned(),
        }))?
        else {
            return Err(ControlError::Protocol("no log for open"));
        };
        let key = <[u8; 32]>::try_from(info.key.as_slice())
            .map_err(|_| ControlError::Protocol("a key that is not 32 bytes"))?;
        log.key = Key(key);
        log.length = info.length;
        log.writable = info.writable;
        Ok(log)
    }

    fn call(&mut self, op: request::Op) -> Result<response::Result, ControlError> {
        call(&mut self.stream, op)
    }

    /// What `log info` shows of it, as the daemon holds it.
    pub fn detail(&mut self) -> Result<proto::LogDetail, ControlError> {
        match self.call(request::Op::Info(proto::Info {
            key: self.key.0.to_vec(),
        }))? {
            response::Result::Detail(d) => Ok(d),
            _ => Err(ControlError::Protocol("no detail for info")),
        }
    }
}

/// Connect to the daemon serving `storage`.
fn connect(storage: &Path) -> Result<UnixStream, ControlError> {
    let path = socket_path(storage);
    let stream = UnixStream::connect(&path).map_err(|source| ControlError::Connect {
        path: path.clone(),
        source,
    })?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
    Ok(stream)
}

/// One request and its response.
fn call(stream: &mut UnixStream, op: request::Op) -> Result<response::Result, ControlError> {
    let req = proto::Request { op: Some(op) };
    stream.write_all(&encode_frame(&req))?;
    next_response(stream)
}

/// The daemon's next response on `stream` (a call's answer, or one of a verification's); its
/// refusal is an error.
fn next_response(stream: &mut UnixStream) -> Result<response::Result, ControlError> {
    let Some(body) = read_frame(stream)? else {
        return Err(ControlError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection",
        )));
    };
    let resp = proto::Response::decode(body.as_slice())
        .map_err(|_| ControlError::Protocol("an undecodable response"))?;
    match resp.result {
        Some(response::Result::Error(e)) => Err(ControlError::Refused(e)),
        Some(r) => Ok(r),
        None => Err(ControlError::Protocol("an empty response")),
    }
}

/// What `log info` shows of `core`: its [`Core::info`] and the blocks held.
pub fn detail_of(core: &mut Core) -> Result<proto::LogDetail, CoreError> {
    let info = core.info()?;
    let held = crate::status::held_in(core, 0, info.length);
    Ok(proto::LogDetail {
        key: info.key.0.to_vec(),
        discovery_key: info.discovery_key.0.to_vec(),
        length: info.length,
        contiguous_length: info.contiguous_length,
        held,
        byte_length: info.byte_length,
        fork: info.fork,
        tree_hash: info.tree_hash.to_vec(),
        signature_verifies: info.signature_verifies,
        writable: info.writable,
        compat: info.compat,
        manifest_known: info.manifest_known,
    })
}

/// Re-hash `core` here ([`Core::verify_start`], then steps of [`VERIFY_STEP_BYTES`]), calling
/// `progress` at most every [`VERIFY_PROGRESS`].
pub fn verify_core(
    core: &mut Core,
    mut progress: impl FnMut(&proto::VerifyProgress),
) -> Result<proto::VerifyReport, CoreError> {
    let mut v = core.verify_start()?;
    let mut last = std::time::Instant::now();
    progress(&progress_of(&v));
    while !core.verify_step(&mut v, VERIFY_STEP_BYTES)? {
        if last.elapsed() >= VERIFY_PROGRESS {
            last = std::time::Instant::now();
            progress(&progress_of(&v));
        }
    }
    Ok(report_of(v.report()))
}

/// Where a verification is, as a `progress` frame says it.
pub(crate) fn progress_of(v: &Verification) -> proto::VerifyProgress {
    proto::VerifyProgress {
        position: v.position(),
        length: v.report().length,
        bytes: v.bytes(),
    }
}

/// What a verification checked, as a `verified` frame says it.
pub(crate) fn report_of(r: Report) -> proto::VerifyReport {
    proto::VerifyReport {
        length: r.length,
        blocks: r.blocks,
        parents: r.parents,
        signed: r.signed,
    }
}

/// Every log of `store`: named ones (by name), then the others (by key), with `length` and
/// `writable` as `meta` says (`None`: not open anywhere, skipped).
pub(crate) fn list_of(
    store: &Store,
    mut meta: impl FnMut(&Key) -> Option<(u64, bool)>,
) -> Result<Vec<proto::ListedLog>, peerhost_store::Error> {
    let names = store.names()?;
    let named: std::collections::HashSet<Key> = names.iter().map(|(_, k)| *k).collect();
    let mut unnamed: Vec<Key> = store
        .keys()?
        .into_iter()
        .filter(|k| !named.contains(k))
        .collect();
    unnamed.sort_by_key(Key::to_z32);
    let rows = names
        .into_iter()
        .map(|(n, k)| (k, Some(n)))
        .chain(unnamed.into_iter().map(|k| (k, None)));
    Ok(rows
        .filter_map(|(key, name)| {
            let (length, writable) = meta(&key)?;
            Some(proto::ListedLog {
                key: key.0.to_vec(),
                name,
                length,
                writable,
            })
        })
        .collect())
}

impl RemoteLog {
    /// The log's key.
    pub fn key(&self) -> Key {
        self.key
    }

    /// Its length when opened, or after our last append.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// Whether the daemon can append to it.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Block `index`, `None` if the daemon does not hold it.
    pub fn get(&mut self, index: u64) -> Result<Option<Vec<u8>>, ControlError> {
        match self.call(request::Op::Get(proto::Get {
            key: self.key.0.to_vec(),
            index,
        }))? {
            response::Result::Block(b) => Ok(b.data),
            _ => Err(ControlError::Protocol("no block for get")),
        }
    }

    /// Have the daemon re-hash the log against its signed head, in steps that leave the log
    /// to its peers and appends in between; `progress` hears of it as the daemon reports.
    pub fn verify(
        &mut self,
        mut progress: impl FnMut(&proto::VerifyProgress),
    ) -> Result<proto::VerifyReport, ControlError> {
        let mut next = self.call(request::Op::Verify(proto::Verify {
            key: self.key.0.to_vec(),
        }))?;
        loop {
            match next {
                response::Result::Progress(p) => progress(&p),
                response::Result::Verified(r) => return Ok(r),
                _ => return Err(ControlError::Protocol("no report for verify")),
            }
            next = next_response(&mut self.stream)?;
        }
    }

    /// Append `blocks`: one signed batch per [`APPEND_BYTES`]; returns the new length.
    pub fn append(&mut self, blocks: &[Vec<u8>]) -> Result<u64, ControlError> {
        let mut rest = blocks;
        while !rest.is_empty() {
            let mut n = 0;
            let mut bytes = 0;
            while n < rest.len() && (n == 0 || bytes + rest[n].len() <= APPEND_BYTES) {
                bytes += rest[n].len();
                n += 1;
            }
            let (batch, tail) = rest.split_at(n);
            rest = tail;
            match self.call(request::Op::Append(proto::Append {
                key: self.key.0.to_vec(),
                blocks: batch.to_vec(),
            }))? {
                response::Result::Length(l) => self.length = l,
                _ => return Err(ControlError::Protocol("no length for append")),
            }
        }
        Ok(self.length)
    }
}

/// Why reading or appending to a [`Log`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A block above [`MAX_BLOCK`]: nothing of the batch was appended.
    #[error(
        "block {index} of the batch is {len} bytes, larger than the {} MiB a block may be (one \
         replication message carries it): split it; nothing of this batch was appended",
        MAX_BLOCK >> 20
    )]
    BlockTooLarge {
        /// Its position in the batch.
        index: usize,
        /// Its size.
        len: usize,
    },
    /// The local log.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The daemon's.
    #[error(transparent)]
    Control(#[from] ControlError),
}

/// A log opened in this process, or held by the daemon that has the store.
#[derive(Debug)]
pub enum Log {
    /// Opened from the store here (boxed: a core is large beside a socket).
    Local(Box<Core>),
    /// Reached through the daemon's control socket.
    Remote(RemoteLog),
}

impl Log {
    /// The log's key.
    pub fn key(&self) -> Key {
        match self {
            Self::Local(c) => c.key(),
            Self::Remote(r) => r.key(),
        }
    }

    /// Blocks in the log.
    pub fn length(&self) -> u64 {
        match self {
            Self::Local(c) => c.length(),
            Self::Remote(r) => r.length(),
        }
    }

    /// Whether we (or the daemon) can append.
    pub fn writable(&self) -> bool {
        match self {
            Self::Local(c) => c.writable(),
            Self::Remote(r) => r.writable(),
        }
    }

    /// What `log info` shows of it.
    pub fn detail(&mut self) -> Result<proto::LogDetail, LogError> {
        match self {
            Self::Local(c) => Ok(detail_of(c)?),
            Self::Remote(r) => Ok(r.detail()?),
        }
    }

    /// Re-hash the log against its signed head, here or through the daemon (in steps that
    /// leave the log to its peers and appends in between); `progress` hears how far it is.
    pub fn verify(
        &mut self,
        progress: impl FnMut(&proto::VerifyProgress),
    ) -> Result<proto::VerifyReport, LogError> {
        match self {
            Self::Local(c) => Ok(verify_core(c, progress)?),
            Self::Remote(r) => Ok(r.verify(progress)?),
        }
    }

    /// Append `blocks`; returns the new length. A block above [`MAX_BLOCK`] is refused before
    /// any of them is written.
    pub fn append(&mut self, blocks: &[Vec<u8>]) -> Result<u64, LogError> {
        check_blocks(blocks)?;
        match self {
            Self::Local(c) => Ok(c.append(blocks)?),
            Self::Remote(r) => Ok(r.append(blocks)?),
        }
    }
}

/// Every block at most [`MAX_BLOCK`] bytes.
pub(crate) fn check_blocks(blocks: &[Vec<u8>]) -> Result<(), LogError> {
    match blocks.iter().position(|b| b.len() > MAX_BLOCK) {
        Some(index) => Err(LogError::BlockTooLarge {
            index,
            len: blocks[index].len(),
        }),
        None => Ok(()),
    }
}

impl Blocks for Log {
    type Error = LogError;

    fn length(&self) -> u64 {
        Self::length(self)
    }

    fn block(&mut self, index: u64) -> Result<Option<Vec<u8>>, LogError> {
        match self {
            Self::Local(c) => Ok(c.get(index)?),
            Self::Remote(r) => Ok(r.get(index)?),
        }
    }
}

impl AppendBlocks for Log {
    fn append_blocks(&mut self, blocks: &[Vec<u8>]) -> Result<u64, LogError> {
        self.append(blocks)
    }
}

/// Where a command finds its logs: the store itself, or — when a daemon holds the store's
/// lock — that daemon, through its control socket. `peerhost log`, `post`, `import`, `feed`
/// and `community` all open their logs through this.
#[derive(Debug)]
pub enum Logs {
    /// The store, opened by this process.
    Local(Store),
    /// The daemon running on this storage directory.
    Daemon(PathBuf),
}

impl Logs {
    /// Open the store in `storage`, or reach the daemon that holds it.
    pub fn open(storage: &Path) -> Result<Self, peerhost_store::Error> {
        match Store::open(storage) {
            Ok(store) => Ok(Self::Local(store)),
            // A daemon holds the lock: work through it (protocol/control.md).
            Err(peerhost_store::Error::Locked { .. })
                if UnixStream::connect(socket_path(storage)).is_ok() =>
            {
                Ok(Self::Daemon(storage.to_path_buf()))
            }
            Err(e) => Err(e),
        }
    }

    /// The log named or keyed `query`, which must be in the store.
    pub fn log(&self, query: &str) -> Result<Log, LogError> {
        match self {
            Self::Local(store) => Ok(Log::Local(Box::new(store.open_core(query)?))),
            Self::Daemon(dir) => Ok(Log::Remote(RemoteLog::open(dir, query)?)),
        }
    }

    /// Whether the log `key` is in the store.
    pub fn contains(&self, key: &Key) -> Result<bool, ControlError> {
        match self {
            Self::Local(store) => Ok(store.contains(key)),
            Self::Daemon(dir) => match RemoteLog::open(dir, &key.to_hex()) {
                Ok(_) => Ok(true),
                Err(ControlError::Refused(_)) => Ok(false),
                Err(e) => Err(e),
            },
        }
    }

    /// Whether `query` is a local name (not a key).
    pub fn is_name(&self, query: &str) -> bool {
        match self {
            Self::Local(store) => store.name_key(query).ok().flatten().is_some(),
            // The daemon resolves names and keys alike.
            Self::Daemon(_) => Key::parse(query).is_err(),
        }
    }

    /// Create a writable log named `name`; its key. Through the daemon, which serves it at
    /// once.
    pub fn create(&self, name: &str, compat: bool) -> Result<Key, LogError> {
        match self {
            Self::Local(store) => Ok(store
                .create(
                    name,
                    peerhost_store::CreateOptions::default().compat(compat),
                )?
                .key()),
            Self::Daemon(dir) => {
                let mut stream = connect(dir)?;
                match call(
                    &mut stream,
                    request::Op::Create(proto::Create {
                        name: name.to_owned(),
                        compat,
                    }),
                )? {
                    response::Result::Log(l) => <[u8; 32]>::try_from(l.key.as_slice())
                        .map(Key)
                        .map_err(|_| ControlError::Protocol("a key that is not 32 bytes").into()),
                    _ => Err(ControlError::Protocol("no log for create").into()),
                }
            }
        }
    }

    /// Every log of the store: named ones, then those followed or mirrored (no name).
    pub fn list(&self) -> Result<Vec<proto::ListedLog>, LogError> {
        match self {
            Self::Local(store) => list_of(store, |key| {
                let core = store.open_core(&key.to_hex()).ok()?;
                Some((core.length(), core.writable()))
            })
            .map_err(|e| LogError::Core(e.into())),
            Self::Daemon(dir) => {
                let mut stream = connect(dir)?;
                match call(&mut stream, request::Op::List(proto::List {}))? {
                    response::Result::Logs(l) => Ok(l.logs),
                    _ => Err(ControlError::Protocol("no logs for list").into()),
                }
            }
        }
    }

    /// The store itself, or `None` when a daemon holds it (commands that create logs or
    /// read a log's files need it to themselves).
    pub fn store(&self) -> Option<&Store> {
        match self {
            Self::Local(store) => Some(store),
            Self::Daemon(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lengths_are_bounded() {
        assert_eq!(frame_len(&[]).unwrap(), None);
        assert_eq!(frame_len(&[0x05]).unwrap(), Some(5));
        assert_eq!(frame_len(&[0x80]).unwrap(), None);
        assert_eq!(frame_len(&[0x80, 0x01]).unwrap(), Some(128));
        // 16 MiB is the largest allowed; one more is refused, as is a fifth varint byte.
        assert_eq!(
            frame_len(&[0x80, 0x80, 0x80, 0x08]).unwrap(),
            Some(MAX_FRAME)
        );
        assert!(frame_len(&[0x81, 0x80, 0x80, 0x08]).is_err());
        assert!(frame_len(&[0x80, 0x80, 0x80, 0x80, 0x00]).is_err());
    }

    proptest::proptest! {
        /// Whatever bytes arrive, reading frames and decoding requests ends or errs: no
        /// panic, and no buffer larger than the limit.
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut r = bytes.as_slice();
            while let Ok(Some(body)) = read_frame(&mut r) {
                proptest::prop_assert!(body.len() <= MAX_FRAME);
                let _ = proto::Request::decode(body.as_slice());
                let _ = proto::Response::decode(body.as_slice());
            }
        }

        #[test]
        fn appends_round_trip(key in proptest::collection::vec(proptest::num::u8::ANY, 32), blocks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0..8)) {
            let req = proto::Request { op: Some(request::Op::Append(proto::Append { key, blocks })) };
            let bytes = encode_frame(&req);
            let body = read_frame(&mut bytes.as_slice()).unwrap().unwrap();
            proptest::prop_assert_eq!(proto::Request::decode(body.as_slice()).unwrap(), req);
        }
    }

    #[test]
    fn a_frame_round_trips_and_a_cut_one_is_an_error() {
        let req = proto::Request {
            op: Some(request::Op::Get(proto::Get {
                key: vec![7; 32],
                index: 300,
            })),
        };
        let bytes = encode_frame(&req);
        let body = read_frame(&mut bytes.as_slice()).unwrap().unwrap();
        assert_eq!(proto::Request::decode(body.as_slice()).unwrap(), req);
        assert!(read_frame(&mut &[][..]).unwrap().is_none());
        assert!(read_frame(&mut &bytes[..bytes.len() - 1]).is_err());
    }
}
