//! The gateway's answers, free of any transport: a [`Request`] (parsed from a path such as
//! `/v1/logs/{key}/blocks?start=0&end=64`) goes in, an [`Answer`] (status, content type,
//! cache policy, body) comes out. The HTTP routes (`http.rs`) and the WebRTC data channels
//! (`crates/webrtc`, `protocol/webrtc.md`) both call [`Api::answer`], so a browser gets the
//! same bytes whichever way it asked.
//!
//! What is here: the read-only log routes (`/v1/logs`, `/v1/logs/{key}/head`,
//! `/v1/logs/{key}/blocks`, `/set`) and files by hash (`/v1/blob/{sha256}`), their parsing, their JSON errors (`protocol/gateway.md` §5), the
//! bounded blocking pool they read the store on, and the answers kept ([`crate::cache`]):
//! immutable ranges (with their gzip and br forms, for [`Api::answer_with`]'s callers that
//! take them) and heads until their log changes. A kept answer is served without the blocking
//! pool and without copying its body. What is not: CORS, per-client admission, the instance's
//! routes (those stay HTTP-only, in `http.rs`).

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;

use peerhost_ids::Key;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::blob::{BLOB_TYPE, BlobError, Sha256};
use crate::cache::{Accepts, CachedRange, HeadCache, RangeCache, RangeKey};
use crate::http::{Config, IMMUTABLE, RANGE_PROOF_TYPE};
use crate::range::MAX_LENGTH;
use crate::set::Runs;
use crate::source::{LogSource, RangeError, RangeQuery, SetQuery, SignedHead};

/// The media type of a set proof body (`PHS1`, [`crate::set`]).
pub const SET_PROOF_TYPE: &str = "application/vnd.peerhost.set-proof";

/// The JSON media type of heads, lists and errors.
pub const JSON_TYPE: &str = "application/json";

/// The longest request path [`Request::parse`] reads (a key in its longest spelling plus a
/// full query fits in a quarter of it).
pub const MAX_PATH: usize = 1024;

/// One read-only request of the gateway API (`protocol/gateway.md` §1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// `GET /v1/blob/{sha256}`: a file of an app log held here, by its SHA-256.
    Blob(Sha256),
    /// `GET /v1/logs/{key}/blocks?start=S&end=E[&length=L&fork=F]`.
    Blocks {
        /// The log.
        key: Key,
        /// The query as given.
        params: BlocksParams,
    },
    /// `GET /v1/logs/{key}/head`.
    Head(Key),
    /// `GET /v1/logs`.
    Logs,
    /// `GET /v1/logs/{key}/set?runs=R[&length=L&fork=F]`.
    Set {
        /// The log.
        key: Key,
        /// The query as given.
        params: SetParams,
    },
}

/// The query of a set request: `runs` (base64url compact runs, [`Runs::to_query`]), optional
/// decimal `length`, `fork`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SetParams {
    /// The runs of blocks (required).
    pub runs: Option<Runs>,
    /// Prove against the head of this length.
    pub length: Option<u64>,
    /// The fork that head must be on.
    pub fork: Option<u64>,
}

/// The query of a blocks request: decimal `start`, `end`, optional `length`, `fork`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlocksParams {
    /// First block (required).
    pub start: Option<u64>,
    /// One past the last block (required).
    pub end: Option<u64>,
    /// Prove against the head of this length.
    pub length: Option<u64>,
    /// The fork that head must be on.
    pub fork: Option<u64>,
}

impl Request {
    /// Parse a request path with its query (`/v1/logs/{key}/head`, …): at most [`MAX_PATH`]
    /// bytes, no percent-encoding (keys are hex or z-base32, the query decimal). Anything else
    /// is a `400 BAD_REQUEST` (a known path with a bad key or query) or `404 NOT_FOUND`.
    pub fn parse(path: &str) -> Result<Self, ApiError> {
        if path.len() > MAX_PATH {
            return Err(ApiError::bad_request("request path too long"));
        }
        let (path, query) = path
            .split_once('?')
            .map_or((path, None), |(p, q)| (p, Some(q)));
        let mut parts = path.split('/');
        // A path starts with "/": the first part is empty.
        if parts.next() != Some("") || parts.next() != Some("v1") {
            return Err(ApiError::not_found());
        }
        match parts.next() {
            Some("logs") => {}
            Some("blob") => {
                return match (parts.next(), parts.next()) {
                    (Some(hash), None) => Self::blob(hash),
                    _ => Err(ApiError::not_found()),
                };
            }
            _ => return Err(ApiError::not_found()),
        }
        match (parts.next(), parts.next(), parts.next()) {
            (None | Some(""), None, None) => Ok(Self::Logs),
            (Some(key), Some("head"), None) => Ok(Self::Head(parse_key(key)?)),
            (Some(key), Some("blocks"), None) => Self::blocks(key, query),
            (Some(key), Some("set"), None) => Self::set(key, query),
            _ => Err(ApiError::not_found()),
        }
    }

    /// A blocks request from its key and raw query, as the HTTP route extracts them.
    pub fn blocks(key: &str, query: Option<&str>) -> Result<Self, ApiError> {
        Ok(Self::Blocks {
            key: parse_key(key)?,
            params: parse_blocks_query(query)?,
        })
    }

    /// A set request from its key and raw query, as the HTTP route extracts it.
    pub fn set(key: &str, query: Option<&str>) -> Result<Self, ApiError> {
        Ok(Self::Set {
            key: parse_key(key)?,
            params: parse_set_query(query)?,
        })
    }

    /// A blob request from its hash (64 lowercase hex digits; the query, if any, is ignored),
    /// as the HTTP route extracts it.
    pub fn blob(hash: &str) -> Result<Self, ApiError> {
        Sha256::parse(hash).map(Self::Blob).ok_or_else(|| {
            ApiError::bad_request("a blob is named by its SHA-256: 64 lowercase hex digits")
        })
    }

    /// A head request from its key, as the HTTP route extracts it.
    pub fn head(key: &str) -> Result<Self, ApiError> {
        Ok(Self::Head(parse_key(key)?))
    }
}

fn parse_key(s: &str) -> Result<Key, ApiError> {
    Key::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Parse the query by hand so every mistake is a JSON 400 naming the field. Unknown
/// parameters are ignored; a repeated one is an error; at most 16 parameters are read.
pub(crate) fn parse_blocks_query(raw: Option<&str>) -> Result<BlocksParams, ApiError> {
    let mut p = BlocksParams::default();
    for pair in raw
        .unwrap_or_default()
        .split('&')
        .filter(|s| !s.is_empty())
        .take(16)
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match name {
            "start" => &mut p.start,
            "end" => &mut p.end,
            "length" => &mut p.length,
            "fork" => &mut p.fork,
            _ => continue,
        };
        if slot.is_some() {
            return Err(ApiError::bad_request(format!("{name} given twice")));
        }
        // Decimal digits only: no sign, no spaces, at most 16 digits (below 2^53).
        if value.is_empty() || value.len() > 16 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::bad_request(format!(
                "{name} must be a decimal integer"
            )));
        }
        *slot = value.parse().ok();
    }
    Ok(p)
}

/// Parse a set query: `runs` as [`Runs::from_query`] reads it (one spelling per set), `length`
/// and `fork` as for blocks; others ignored, at most 16 read.
pub(crate) fn parse_set_query(raw: Option<&str>) -> Result<SetParams, ApiError> {
    let b = parse_blocks_query(raw)?;
    let mut runs = None;
    for pair in raw
        .unwrap_or_default()
        .split('&')
        .filter(|s| !s.is_empty())
        .take(16)
    {
        if let Some(v) = pair.strip_prefix("runs=") {
            if runs.is_some() {
                return Err(ApiError::bad_request("runs given twice"));
            }
            let r = Runs::from_query(v).map_err(|e| {
                ApiError::bad_request(format!("runs must be compact runs in base64url: {e}"))
            })?;
            if r.is_empty() {
                return Err(ApiError::bad_request("runs is empty"));
            }
            runs = Some(r);
        }
    }
    Ok(SetParams {
        runs,
        length: b.length,
        fork: b.fork,
    })
}

/// An answer to a [`Request`], whatever carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Answer {
    /// The HTTP status code (the data channel carries the same number).
    pub status: u16,
    /// [`JSON_TYPE`], [`RANGE_PROOF_TYPE`] or [`SET_PROOF_TYPE`].
    pub content_type: &'static str,
    /// The `Cache-Control` value HTTP sends.
    pub cache_control: Cow<'static, str>,
    /// Whether HTTP adds `Retry-After: 1` (`429` and `503`).
    pub retry_after: bool,
    /// The body (shared with the cache when kept: cloning is cheap).
    pub body: Bytes,
    /// The body's content coding (`gzip`, `br`), or `None` for the bytes as they are. Only
    /// [`Api::answer_with`] with codings accepted gives one.
    pub content_encoding: Option<&'static str>,
    /// Whether the answer depends on `Accept-Encoding` (HTTP adds `Vary: Accept-Encoding`):
    /// immutable range answers.
    pub vary_encoding: bool,
}

impl Answer {
    fn json(value: &impl Serialize, cache_control: Cow<'static, str>) -> Self {
        // Serializing our own plain structs cannot fail.
        Self::ok(
            JSON_TYPE,
            cache_control,
            serde_json::to_vec(value).unwrap_or_default().into(),
        )
    }

    fn ok(content_type: &'static str, cache_control: Cow<'static, str>, body: Bytes) -> Self {
        Self {
            status: 200,
            content_type,
            cache_control,
            retry_after: false,
            body,
            content_encoding: None,
            vary_encoding: false,
        }
    }
}

/// An error answer: a status and a JSON body `{error, message, …}`, never cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The `error` field (`BAD_REQUEST`, `UNKNOWN_LOG`, …).
    pub code: &'static str,
    /// The `message` field, for people.
    pub message: String,
    /// One extra numeric field (`fork`, `length`, `block`, `node`).
    pub extra: Option<(&'static str, u64)>,
}

impl ApiError {
    /// An error with this status (a `u16` or an `http::StatusCode`), code and message.
    pub fn new(status: impl Into<u16>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: status.into(),
            code,
            message: message.into(),
            extra: None,
        }
    }

    /// `400 BAD_REQUEST`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400u16, "BAD_REQUEST", message)
    }

    /// `404 NOT_FOUND`: no such endpoint.
    pub fn not_found() -> Self {
        Self::new(404u16, "NOT_FOUND", "no such endpoint")
    }

    /// `429 TOO_MANY_REQUESTS`: a client's limit of requests in flight.
    pub fn too_many_requests() -> Self {
        Self::new(
            429u16,
            "TOO_MANY_REQUESTS",
            "too many requests in flight from this client",
        )
    }

    /// `503 BUSY`: the gateway is full.
    pub fn busy() -> Self {
        Self::new(503u16, "BUSY", "gateway busy, retry later")
    }

    /// `500 STORAGE`, logged.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::warn!("gateway storage error: {e}");
        Self::new(500u16, "STORAGE", "storage error")
    }

    /// The answer carrying this error.
    pub fn into_answer(self) -> Answer {
        let mut body = serde_json::json!({ "error": self.code, "message": self.message });
        if let (Some((k, v)), Some(obj)) = (self.extra, body.as_object_mut()) {
            obj.insert(k.to_owned(), v.into());
        }
        Answer {
            status: self.status,
            content_type: JSON_TYPE,
            cache_control: Cow::Borrowed("no-store"),
            retry_after: matches!(self.status, 429 | 503),
            body: serde_json::to_vec(&body).unwrap_or_default().into(),
            content_encoding: None,
            vary_encoding: false,
        }
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        let code = e.code();
        let message = e.to_string();
        let extra = match &e {
            BlobError::TooLarge { size } => Some(("size", *size)),
            BlobError::Source(e) => return Self::internal(e),
            _ => None,
        };
        Self {
            status: 404,
            code,
            message,
            extra,
        }
    }
}

impl From<RangeError> for ApiError {
    fn from(e: RangeError) -> Self {
        let code = e.code();
        let message = e.to_string();
        let (status, extra) = match &e {
            RangeError::UnknownLog => (404, None),
            RangeError::BadRange(_) => (400, None),
            RangeError::ForkMismatch { fork } => (409, Some(("fork", *fork))),
            RangeError::LengthUnavailable { length } => (416, Some(("length", *length))),
            RangeError::BlockUnavailable { index } => (404, Some(("block", *index))),
            RangeError::NodeUnavailable { index } => (404, Some(("node", *index))),
            RangeError::Unsupported => (404, None),
            RangeError::Source(e) => return Self::internal(e),
        };
        Self {
            status,
            code,
            message,
            extra,
        }
    }
}

#[derive(Serialize)]
struct ListJson {
    logs: Vec<String>,
    truncated: bool,
}

/// A node as JSON: `{index, size, hash}`.
#[derive(Serialize)]
struct NodeJson {
    index: u64,
    size: u64,
    hash: String,
}

/// `GET /v1/logs/{key}/head`, field for field (`protocol/gateway.md` §2).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HeadJson {
    key: String,
    length: u64,
    fork: u64,
    byte_length: u64,
    tree_hash: String,
    signature: Option<String>,
    manifest: Option<String>,
    roots: Vec<NodeJson>,
}

impl From<SignedHead> for HeadJson {
    fn from(h: SignedHead) -> Self {
        Self {
            key: h.key.to_hex(),
            length: h.length,
            fork: h.fork,
            byte_length: h.byte_length,
            tree_hash: hex::encode(h.tree_hash),
            signature: h.signature.map(hex::encode),
            manifest: h.manifest.map(hex::encode),
            roots: h
                .roots
                .iter()
                .map(|n| NodeJson {
                    index: n.index,
                    size: n.size,
                    hash: hex::encode(n.hash),
                })
                .collect(),
        }
    }
}

/// The log routes over a [`LogSource`], with [`Config`]'s caps, a bounded pool of blocking
/// store reads and the answer caches. Cloning shares the source, the pool and the caches.
pub struct Api<S> {
    source: Arc<S>,
    config: Config,
    inflight: Arc<Semaphore>,
    ranges: Arc<RangeCache>,
    heads: Arc<HeadCache>,
    short_cache: Cow<'static, str>,
    /// Keys the hash of a set's runs in its cache address ([`RangeKey::set`]).
    set_hasher: std::hash::RandomState,
}

impl<S> Clone for Api<S> {
    fn clone(&self) -> Self {
        Self {
            source: self.source.clone(),
            config: self.config.clone(),
            inflight: self.inflight.clone(),
            ranges: self.ranges.clone(),
            heads: self.heads.clone(),
            short_cache: self.short_cache.clone(),
            set_hasher: self.set_hasher.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Api<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("config", &self.config)
            .field("free_slots", &self.inflight.available_permits())
            .field("ranges", &self.ranges)
            .field("heads", &self.heads.len())
            .finish_non_exhaustive()
    }
}

impl<S: LogSource> Api<S> {
    /// The API over `source`, with `config`'s caps ([`Config::max_inflight`] store reads at
    /// once across every caller of this value and its clones).
    pub fn new(source: S, config: Config) -> Self {
        Self::shared(Arc::new(source), config)
    }

    /// The API over a shared `source`.
    pub fn shared(source: Arc<S>, config: Config) -> Self {
        Self {
            inflight: Arc::new(Semaphore::new(config.max_inflight.max(1))),
            ranges: Arc::new(RangeCache::new(config.cache_bytes)),
            heads: Arc::new(HeadCache::new(config.cached_heads)),
            short_cache: Cow::Owned(format!("public, max-age={}", config.head_max_age)),
            set_hasher: std::hash::RandomState::new(),
            source,
            config,
        }
    }

    /// Immutable range answers kept, and their bytes.
    pub fn cached_ranges(&self) -> (usize, usize) {
        self.ranges.usage()
    }

    /// The caps this API applies.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The source read.
    pub fn source(&self) -> &Arc<S> {
        &self.source
    }

    /// Parse `path` ([`Request::parse`]) and answer it, uncompressed.
    pub async fn get(&self, path: &str) -> Answer {
        match Request::parse(path) {
            Ok(req) => self.answer(req).await,
            Err(e) => e.into_answer(),
        }
    }

    /// Answer `req` uncompressed: a `200` with its body, or an error with its JSON body.
    pub async fn answer(&self, req: Request) -> Answer {
        self.answer_with(req, Accepts::NONE).await
    }

    /// Answer `req`, with an immutable range's body in the best coding `accepts` allows when
    /// that [pays](crate::cache::pays) ([`Answer::content_encoding`] says which).
    pub async fn answer_with(&self, req: Request, accepts: Accepts) -> Answer {
        let accepts = if self.config.compress {
            accepts
        } else {
            Accepts::NONE
        };
        let out = match req {
            Request::Logs => self.list().await,
            Request::Head(key) => self.head(key).await,
            Request::Blocks { key, params } => self.blocks(key, params, accepts).await,
            Request::Set { key, params } => self.set(key, params, accepts).await,
            Request::Blob(sha) => self.blob(sha, accepts).await,
        };
        out.unwrap_or_else(ApiError::into_answer)
    }

    /// Run a blocking source call in one of the `max_inflight` slots.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&S) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = tokio::time::timeout(
            self.config.queue_timeout,
            self.inflight.clone().acquire_owned(),
        )
        .await
        .map_err(|_| ApiError::busy())?
        .map_err(|_| ApiError::busy())?;
        let source = self.source.clone();
        tokio::task::spawn_blocking(move || {
            let out = f(&source);
            drop(permit);
            out
        })
        .await
        .map_err(ApiError::internal)
    }

    fn short_cache(&self) -> Cow<'static, str> {
        self.short_cache.clone()
    }

    async fn list(&self) -> Result<Answer, ApiError> {
        let limit = self.config.max_logs_listed;
        let keys = self
            .blocking(move |s| s.keys(limit.saturating_add(1)))
            .await?
            .map_err(ApiError::internal)?;
        let truncated = keys.len() > limit;
        let logs = keys.iter().take(limit).map(Key::to_hex).collect();
        Ok(Answer::json(
            &ListJson { logs, truncated },
            self.short_cache(),
        ))
    }

    async fn head(&self, key: Key) -> Result<Answer, ApiError> {
        // Kept until the source reports another version (a source that cannot tell gets
        // every head read afresh).
        let known = self.source.version(&key);
        if let Some(body) = known.and_then(|v| self.heads.get(&key, v)) {
            return Ok(Answer::ok(JSON_TYPE, self.short_cache(), body));
        }
        let head = self
            .blocking(move |s| s.head(&key))
            .await?
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::new(404u16, "UNKNOWN_LOG", "log not held here"))?;
        let version = head.version();
        let answer = Answer::json(&HeadJson::from(head), self.short_cache());
        if known.is_some() {
            self.heads.insert(key, version, answer.body.clone());
        }
        Ok(answer)
    }

    /// An immutable range answer from the cache or the source.
    async fn immutable(
        &self,
        at: RangeKey,
        content_type: &'static str,
        make: impl FnOnce(&S) -> Result<Vec<u8>, ApiError> + Send + 'static,
        accepts: Accepts,
    ) -> Result<Answer, ApiError> {
        let kept = self.ranges.get(&at).filter(|_| {
            // A log that forked answers 409 for its old fork's URLs (when the source can
            // tell without blocking; otherwise the kept bytes are still a valid proof of the
            // head they name, as a CDN's copy would be).
            match self.source.version(&at.key) {
                Some(v) if v.fork != at.fork => {
                    self.ranges.forget_forks(&at.key, v.fork);
                    false
                }
                _ => true,
            }
        });
        let entry = match kept {
            Some(e) => e,
            None => {
                let first = accepts.preferred().next();
                let made = self
                    .blocking(move |s| {
                        make(s).map(|body| {
                            let e = CachedRange::new(body.into());
                            // Compress while off the runtime anyway.
                            if let Some(c) = first {
                                e.encode(c);
                            }
                            Arc::new(e)
                        })
                    })
                    .await?;
                match made {
                    Ok(e) => self.ranges.insert(at, e),
                    Err(e) => {
                        if let (409, Some(("fork", fork))) = (e.status, e.extra) {
                            self.ranges.forget_forks(&at.key, fork);
                        }
                        return Err(e);
                    }
                }
            }
        };
        let (body, coding) = loop {
            match entry.pick(accepts) {
                Ok(picked) => break picked,
                Err(coding) => {
                    let e = entry.clone();
                    match self.blocking(move |_| e.encode(coding)).await {
                        Ok(added) => self.ranges.grew(&at, added),
                        // No slot for compressing now: the body as it is.
                        Err(_) => break (entry.identity().clone(), None),
                    }
                }
            }
        };
        let mut answer = Answer::ok(content_type, Cow::Borrowed(IMMUTABLE), body);
        answer.content_encoding = coding.map(crate::cache::Coding::name);
        answer.vary_encoding = true;
        Ok(answer)
    }

    async fn blocks(
        &self,
        key: Key,
        p: BlocksParams,
        accepts: Accepts,
    ) -> Result<Answer, ApiError> {
        let (Some(start), Some(end)) = (p.start, p.end) else {
            return Err(ApiError::bad_request("start and end are required"));
        };
        if start >= end || end > MAX_LENGTH || p.length.is_some_and(|l| l > MAX_LENGTH) {
            return Err(ApiError::bad_request(
                "need start < end <= 2^48 and length <= 2^48",
            ));
        }
        let query = RangeQuery {
            start,
            end,
            length: p.length,
            fork: p.fork,
            max_blocks: self.config.max_blocks,
            max_bytes: self.config.max_bytes,
        };
        // Addressed by fork and length, the bytes are fixed forever: kept, and compressed
        // for clients that take it. Otherwise they follow the current head: read each time.
        if let (Some(length), Some(fork)) = (p.length, p.fork) {
            let at = RangeKey {
                key,
                fork,
                length,
                start,
                end,
                set: 0,
            };
            let make = move |s: &S| {
                s.range(&key, &query)
                    .map(|p| p.encode())
                    .map_err(Into::into)
            };
            return self.immutable(at, RANGE_PROOF_TYPE, make, accepts).await;
        }
        let proof = self.blocking(move |s| s.range(&key, &query)).await??;
        Ok(Answer::ok(
            RANGE_PROOF_TYPE,
            Cow::Borrowed("no-cache"),
            proof.encode().into(),
        ))
    }

    /// A file by its hash: immutable (the URL names the bytes), kept and compressed as ranges
    /// are. Kept under an address no range can have (`length` above 2^48).
    async fn blob(&self, sha: Sha256, accepts: Accepts) -> Result<Answer, ApiError> {
        let at = RangeKey {
            key: Key(sha.0),
            fork: u64::MAX,
            length: u64::MAX,
            start: 0,
            end: 0,
            set: 0,
        };
        let max = self.config.max_bytes;
        let make = move |s: &S| s.blob(&sha, max).map_err(Into::into);
        self.immutable(at, BLOB_TYPE, make, accepts).await
    }

    async fn set(&self, key: Key, p: SetParams, accepts: Accepts) -> Result<Answer, ApiError> {
        let Some(runs) = p.runs else {
            return Err(ApiError::bad_request("runs is required"));
        };
        if p.length.is_some_and(|l| l > MAX_LENGTH) {
            return Err(ApiError::bad_request("need length <= 2^48"));
        }
        let query = SetQuery {
            runs,
            length: p.length,
            fork: p.fork,
            max_blocks: self.config.max_blocks,
            max_bytes: self.config.max_bytes,
        };
        if let (Some(length), Some(fork)) = (p.length, p.fork) {
            use std::hash::BuildHasher;
            let at = RangeKey {
                key,
                fork,
                length,
                start: 0,
                end: 0,
                // Never 0 (that marks a range).
                set: self.set_hasher.hash_one(&query.runs) | 1,
            };
            let make = move |s: &S| s.set(&key, &query).map(|p| p.encode()).map_err(Into::into);
            return self.immutable(at, SET_PROOF_TYPE, make, accepts).await;
        }
        let proof = self.blocking(move |s| s.set(&key, &query)).await??;
        Ok(Answer::ok(
            SET_PROOF_TYPE,
            Cow::Borrowed("no-cache"),
            proof.encode().into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "4a73a8ec1ae5a0f0e1f1e1d1c1b1a19181716151413121110f0e0d0c0b0a0908";

    #[test]
    fn blocks_query_parsing() {
        let p = parse_blocks_query(Some("start=1&end=5&length=9&fork=0&x=y")).unwrap();
        assert_eq!(
            p,
            BlocksParams {
                start: Some(1),
                end: Some(5),
                length: Some(9),
                fork: Some(0)
            }
        );
        assert_eq!(parse_blocks_query(None).unwrap(), BlocksParams::default());
        for bad in [
            "start=1&start=2",
            "start=-1",
            "start=+1",
            "start=",
            "start=1e3",
            "end=99999999999999999",
            "fork=0x1",
        ] {
            assert!(parse_blocks_query(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_parse_like_the_http_routes() {
        let key = Key::parse(KEY).unwrap();
        assert_eq!(Request::parse("/v1/logs").unwrap(), Request::Logs);
        assert_eq!(Request::parse("/v1/logs/").unwrap(), Request::Logs);
        assert_eq!(
            Request::parse(&format!("/v1/logs/{KEY}/head")).unwrap(),
            Request::Head(key)
        );
        assert_eq!(
            Request::parse(&format!("/v1/logs/{KEY}/blocks?start=2&end=3&fork=0")).unwrap(),
            Request::Blocks {
                key,
                params: BlocksParams {
                    start: Some(2),
                    end: Some(3),
                    length: None,
                    fork: Some(0)
                }
            }
        );
        for (path, status) in [
            ("", 404),
            ("/", 404),
            ("/v1/peers", 404),
            ("v1/logs", 404),
            ("/v1/logs/abc/head", 400),
            (&format!("/v1/logs/{KEY}/head/x") as &str, 404),
            (&format!("/v1/logs/{KEY}/tail"), 404),
            (&format!("/v1/logs/{KEY}/blocks?start=x"), 400),
            (&"/".repeat(MAX_PATH + 1), 400),
        ] {
            assert_eq!(Request::parse(path).unwrap_err().status, status, "{path}");
        }
    }

    #[test]
    fn blob_paths_parse() {
        let hex = "0f".repeat(32);
        assert_eq!(
            Request::parse(&format!("/v1/blob/{hex}")).unwrap(),
            Request::Blob(Sha256([0x0f; 32]))
        );
        // A query is ignored, as for the other routes' unknown parameters.
        assert_eq!(
            Request::parse(&format!("/v1/blob/{hex}?x=1")).unwrap(),
            Request::Blob(Sha256([0x0f; 32]))
        );
        for (path, status) in [
            ("/v1/blob", 404),
            ("/v1/blob/", 400),
            (&format!("/v1/blob/{hex}/x") as &str, 404),
            (&format!("/v1/blob/{}", "0F".repeat(32)), 400),
            (&format!("/v1/blob/{}", "0f".repeat(31)), 400),
            ("/v1/blobs/00", 404),
        ] {
            assert_eq!(Request::parse(path).unwrap_err().status, status, "{path}");
        }
    }

    proptest::proptest! {
        /// Any path: parsing never panics; a blob path parses exactly when its hash is 64
        /// lowercase hex digits, and then names those bytes.
        #[test]
        fn any_blob_path(tail in "[0-9a-fA-F/?=x]{0,80}", bytes in proptest::array::uniform32(0u8..)) {
            let path = format!("/v1/blob/{tail}");
            let got = Request::parse(&path);
            let hash = tail.split('?').next().unwrap_or_default();
            let ok = hash.len() == 64 && hash.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
            match got {
                Ok(Request::Blob(sha)) => {
                    proptest::prop_assert!(ok);
                    proptest::prop_assert_eq!(sha.to_hex(), hash);
                }
                Ok(other) => proptest::prop_assert!(false, "{other:?}"),
                Err(e) => proptest::prop_assert!(!ok && (e.status == 400 || e.status == 404)),
            }
            let exact = format!("/v1/blob/{}", hex::encode(bytes));
            proptest::prop_assert_eq!(Request::parse(&exact).unwrap(), Request::Blob(Sha256(bytes)));
        }
    }

    #[test]
    fn set_paths_parse() {
        let key = Key::parse(KEY).unwrap();
        let runs = Runs::from_indices([3, 5, 6, 7, 20]).unwrap();
        assert_eq!(
            Request::parse(&format!(
                "/v1/logs/{KEY}/set?runs={}&length=30&fork=0",
                runs.to_query()
            ))
            .unwrap(),
            Request::Set {
                key,
                params: SetParams {
                    runs: Some(runs.clone()),
                    length: Some(30),
                    fork: Some(0)
                }
            }
        );
        for bad in [
            "runs=",
            "runs=BgM=",
            "runs=Bg!",
            "runs=BgMBFg&runs=BgMBFg",
            "runs=BgMBFg&length=x",
        ] {
            let path = format!("/v1/logs/{KEY}/set?{bad}");
            assert_eq!(Request::parse(&path).unwrap_err().status, 400, "{bad}");
        }
        // A few hundred scattered blocks fit in one path.
        let many = Runs::from_indices((0..300).map(|i| 500_000 + 10 * i)).unwrap();
        let path = format!(
            "/v1/logs/{KEY}/set?runs={}&length=1000000&fork=0",
            many.to_query()
        );
        assert!(path.len() <= MAX_PATH, "{}", path.len());
        assert!(Request::parse(&path).is_ok());
    }

    #[test]
    fn errors_are_json_and_not_cached() {
        let a = ApiError::from(RangeError::ForkMismatch { fork: 3 }).into_answer();
        assert_eq!(a.status, 409);
        assert_eq!(a.cache_control, "no-store");
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["error"], "FORK_MISMATCH");
        assert_eq!(v["fork"], 3);
        assert!(ApiError::busy().into_answer().retry_after);
        assert!(!ApiError::not_found().into_answer().retry_after);
    }
}
