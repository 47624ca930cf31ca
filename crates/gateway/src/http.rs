//! The HTTP surface (`protocol/gateway.md` §3): routes, CORS, caching headers, per-client
//! limits, JSON errors.
//!
//! Request flow:
//! - `admit` (middleware): CORS preflight answered here; otherwise one permit from the
//!   client's semaphore ([`ClientLimiter`]) for the whole request, or `429`;
//! - the log routes parse the path and query and hand them to [`Api`] (`api.rs`, shared with
//!   the WebRTC data channels), which takes one of `max_inflight` blocking slots and runs the
//!   [`LogSource`] call on tokio's blocking pool;
//! - every `GET`/`HEAD` response gets `Access-Control-Allow-Origin: *`, every one a
//!   `Cache-Control`; `POST` routes (signed, `application/json` only) get no CORS header.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use peerhost_ids::KeyPair;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::api::{Answer, Api, ApiError, Request as ApiRequest};
use crate::cache::Accepts;
use crate::forwarded::TrustedProxies;
use crate::instance::{Counters, Instance, RegisterError};
use crate::limit::{ClientId, ClientLimiter, Refused};
use crate::listener::ClientAddr;
use crate::source::LogSource;
use crate::{address, auth};

/// `Cache-Control` of a range addressed by key, fork, length and range: its bytes never change.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The media type of a range proof body.
pub const RANGE_PROOF_TYPE: &str = "application/vnd.peerhost.range-proof";

/// The most peers `GET /v1/peers` lists.
pub const MAX_PEERS: usize = 64;

/// Limits and caching of the gateway. `Default` is what `peerhost serve --http` uses.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Blocks served per range response at most (the response is then a prefix).
    pub max_blocks: u64,
    /// Bytes of blocks per range response: blocks are added until this is reached (at least
    /// one block is always served).
    pub max_bytes: u64,
    /// Requests in flight per client (an IPv4 address or an IPv6 /64).
    pub per_client: usize,
    /// Clients tracked at once; when all have requests in flight, new clients get `503`.
    pub max_clients: usize,
    /// Blocking store reads in flight across all clients.
    pub max_inflight: usize,
    /// How long a request waits for a blocking slot before `503`.
    pub queue_timeout: Duration,
    /// Keys listed by `GET /v1/logs` at most.
    pub max_logs_listed: usize,
    /// `max-age` of heads and the log list, in seconds.
    pub head_max_age: u32,
    /// Bytes of immutable range answers kept in memory (identity and compressed forms;
    /// `protocol/gateway.md` §4.1). 0 keeps none.
    pub cache_bytes: usize,
    /// Logs whose head answer is kept until the log changes (when the source can tell).
    pub cached_heads: usize,
    /// Whether immutable range answers go br or gzip compressed to clients that accept it
    /// (when that saves enough; `protocol/gateway.md` §4.1).
    pub compress: bool,
    /// Other gateways' base URLs to advertise in `GET /v1/peers` (at most [`MAX_PEERS`]).
    pub peers: Vec<String>,
    /// Counts every response's body bytes (share it to read what this gateway served).
    pub counters: Arc<Counters>,
    /// The instance's routes (bootstrap page and JSON, peer registration, reports,
    /// contributions); without one those answer `404`.
    pub instance: Option<Arc<Instance>>,
    /// The node key this gateway answers challenges with (`GET /v1/identity`), proving to an
    /// instance that it holds the key its registrations are signed with; without one that route
    /// answers `404`.
    pub identity: Option<KeyPair>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (`protocol/gateway.md` §4.2);
    /// none by default: every client is its TCP peer address.
    pub trusted_proxies: TrustedProxies,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_blocks: 1024,
            max_bytes: 4 << 20,
            per_client: 8,
            max_clients: 4096,
            max_inflight: 32,
            queue_timeout: Duration::from_secs(10),
            max_logs_listed: 10_000,
            head_max_age: 5,
            cache_bytes: 64 << 20,
            cached_heads: 4096,
            compress: true,
            peers: Vec::new(),
            counters: Arc::default(),
            instance: None,
            identity: None,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

impl Config {
    /// With these peers advertised (cut to [`MAX_PEERS`]).
    pub fn peers(mut self, peers: Vec<String>) -> Self {
        self.peers = peers;
        self.peers.truncate(MAX_PEERS);
        self
    }

    /// Counting into `counters`.
    pub fn counters(mut self, counters: Arc<Counters>) -> Self {
        self.counters = counters;
        self
    }

    /// Serving `instance`'s routes too.
    pub fn instance(mut self, instance: Arc<Instance>) -> Self {
        self.instance = Some(instance);
        self
    }

    /// Answering challenges with `key_pair` (the node key registrations are signed with).
    pub fn identity(mut self, key_pair: KeyPair) -> Self {
        self.identity = Some(key_pair);
        self
    }

    /// Believing `X-Forwarded-For` from these proxies.
    pub fn trusted_proxies(mut self, trusted: TrustedProxies) -> Self {
        self.trusted_proxies = trusted;
        self
    }

    /// With this many requests in flight per client.
    pub fn per_client(mut self, n: usize) -> Self {
        self.per_client = n;
        self
    }

    /// With these range caps.
    pub fn range_caps(mut self, max_blocks: u64, max_bytes: u64) -> Self {
        self.max_blocks = max_blocks;
        self.max_bytes = max_bytes;
        self
    }

    /// Keeping at most `bytes` of immutable range answers (0: none).
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }
}

struct AppState<S> {
    api: Api<S>,
    config: Config,
    clients: ClientLimiter,
}

type Shared<S> = Arc<AppState<S>>;

/// The gateway's routes over `source`, with `config`'s limits. Serve it with
/// [`crate::serve`] (connection limits, idle timeout, client addresses), or with
/// `axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())`;
/// without connect info all clients share one concurrency bucket.
pub fn router<S: LogSource>(source: S, config: Config) -> Router {
    let state = Arc::new(AppState {
        api: Api::new(source, config.clone()),
        clients: ClientLimiter::new(config.per_client, config.max_clients),
        config,
    });
    Router::new()
        .route("/v1/logs", get(list::<S>))
        .route("/v1/logs/{key}/head", get(head::<S>))
        .route("/v1/logs/{key}/blocks", get(blocks::<S>))
        .route("/v1/logs/{key}/set", get(set::<S>))
        .route("/v1/blob/{hash}", get(blob::<S>))
        .route("/v1/peers", get(peers::<S>).post(register::<S>))
        .route("/v1/report", post(report::<S>))
        .route("/v1/bad-peer", post(bad_peer::<S>))
        .route("/v1/contributions", get(contributions::<S>))
        .route("/v1/bootstrap", get(bootstrap::<S>))
        .route("/v1/identity", get(identity::<S>))
        .route("/v1/signal", post(signal_offer::<S>))
        .route("/v1/signal/candidate", post(signal_candidate::<S>))
        .route("/v1/signal/poll", post(signal_poll::<S>))
        .route("/v1/signal/answer/{id}", post(signal_answer::<S>))
        .route("/", get(site_file::<S>))
        .route("/{file}", get(site_file::<S>))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), admit::<S>))
        .with_state(state)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_answer().into_response()
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        // The body is shared with the cache, never copied.
        let mut res = Response::new(Body::from(self.body));
        *res.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        let control = match self.cache_control {
            std::borrow::Cow::Borrowed(s) => Ok(HeaderValue::from_static(s)),
            std::borrow::Cow::Owned(s) => HeaderValue::try_from(s),
        };
        if let Ok(v) = control {
            h.insert(header::CACHE_CONTROL, v);
        }
        if self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(e) = self.content_encoding {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(e));
        }
        if self.vary_encoding {
            h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        res
    }
}

/// Headers every response carries: CORS for any origin, and no content sniffing.
fn with_cors(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

/// The client of a request: the remote address the server recorded, or — when that is one of
/// `trusted` proxies — the right-most untrusted address of its `X-Forwarded-For`
/// ([`crate::forwarded`]). `None` when the server recorded no address.
fn client_ip(req: &Request, trusted: &TrustedProxies) -> Option<std::net::IpAddr> {
    let ext = req.extensions();
    let peer = ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip())
        .or_else(|| {
            ext.get::<ConnectInfo<ClientAddr>>()
                .map(|ConnectInfo(ClientAddr(a))| a.ip())
        })?;
    if trusted.is_empty() {
        return Some(peer);
    }
    let forwarded = req.headers().get_all(X_FORWARDED_FOR);
    Some(trusted.client(peer, forwarded.iter().map(HeaderValue::as_bytes)))
}

/// The `X-Forwarded-For` header a reverse proxy adds.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

fn client_of(req: &Request, trusted: &TrustedProxies) -> ClientId {
    client_ip(req, trusted).map_or_else(ClientId::unknown, ClientId::of)
}

/// CORS and per-client admission, around every route.
async fn admit<S: LogSource>(State(state): State<Shared<S>>, req: Request, next: Next) -> Response {
    if req.method() == Method::OPTIONS {
        let mut res = StatusCode::NO_CONTENT.into_response();
        let h = res.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("*"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        return with_cors(res);
    }
    // Signaling (§7.3) waits by design (a poll up to 25 s, an offer for its answer) and has
    // its own bounds (offers per client, one poll per key, answers only to pending task
    // ids): it takes no slot of the per-client limit, so a home peer behind the same address
    // as its readers, or a page waiting for answers, never starves the other.
    if req.uri().path().starts_with("/v1/signal") {
        // POST only, same origin: no CORS headers.
        let mut res = next.run(req).await;
        res.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        return res;
    }
    let permit = match state
        .clients
        .try_acquire(client_of(&req, &state.config.trusted_proxies))
    {
        Ok(p) => p,
        Err(Refused::Client) => {
            return with_cors(
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOO_MANY_REQUESTS",
                    "too many requests in flight from this client",
                )
                .into_response(),
            );
        }
        Err(Refused::Full) => return with_cors(ApiError::busy().into_response()),
    };
    let post = req.method() == Method::POST;
    let res = next.run(req).await;
    drop(permit);
    let bytes = axum::body::HttpBody::size_hint(res.body())
        .exact()
        .unwrap_or(0);
    state.config.counters.add(bytes);
    // POST routes are for nodes, never for pages of other origins: no CORS headers, so a
    // cross-origin script can neither read their answers nor get a preflight through.
    if post {
        let mut res = res;
        res.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        return res;
    }
    with_cors(res)
}

fn cache(res: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        res.headers_mut().insert(header::CACHE_CONTROL, v);
    }
}

fn short_cache(config: &Config) -> String {
    format!("public, max-age={}", config.head_max_age)
}

async fn list<S: LogSource>(State(state): State<Shared<S>>) -> Response {
    state.api.answer(ApiRequest::Logs).await.into_response()
}

async fn head<S: LogSource>(
    State(state): State<Shared<S>>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    Ok(state
        .api
        .answer(ApiRequest::head(&key)?)
        .await
        .into_response())
}

async fn blocks<S: LogSource>(
    State(state): State<Shared<S>>,
    Path(key): Path<String>,
    RawQuery(raw): RawQuery,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let req = ApiRequest::blocks(&key, raw.as_deref())?;
    let accepts = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map_or(Accepts::NONE, Accepts::parse);
    Ok(state.api.answer_with(req, accepts).await.into_response())
}

async fn set<S: LogSource>(
    State(state): State<Shared<S>>,
    Path(key): Path<String>,
    RawQuery(raw): RawQuery,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let req = ApiRequest::set(&key, raw.as_deref())?;
    let accepts = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map_or(Accepts::NONE, Accepts::parse);
    Ok(state.api.answer_with(req, accepts).await.into_response())
}

async fn blob<S: LogSource>(
    State(state): State<Shared<S>>,
    Path(hash): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let req = ApiRequest::blob(&hash)?;
    let accepts = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map_or(Accepts::NONE, Accepts::parse);
    Ok(state.api.answer_with(req, accepts).await.into_response())
}

#[derive(Serialize)]
struct PeersJson<'a> {
    peers: &'a [String],
}

/// The peers to hand readers: the configured ones, then a random sample of the instance's
/// proven, healthy ones.
fn listed_peers<S>(state: &Shared<S>) -> Vec<String> {
    let mut peers = state.config.peers.clone();
    if let Some(i) = &state.config.instance {
        for p in i.healthy_peers(MAX_PEERS) {
            if !peers.contains(&p) {
                peers.push(p);
            }
        }
    }
    peers.truncate(MAX_PEERS);
    peers
}

async fn peers<S: LogSource>(State(state): State<Shared<S>>) -> Response {
    let peers = listed_peers(&state);
    let mut res = axum::Json(PeersJson { peers: &peers }).into_response();
    cache(&mut res, &short_cache(&state.config));
    res
}

fn instance_of<S>(state: &Shared<S>) -> Result<&Arc<Instance>, ApiError> {
    state
        .config
        .instance
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "not an instance"))
}

/// Peers named in the bootstrap JSON at most.
pub const BOOTSTRAP_PEERS: usize = 8;

/// The largest registration or report body read.
const MAX_POST: usize = 4096;

fn auth_error(e: &auth::AuthError) -> ApiError {
    let status = match e {
        auth::AuthError::Malformed(_) => StatusCode::BAD_REQUEST,
        auth::AuthError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNAUTHORIZED,
    };
    ApiError::new(status, e.code(), e.to_string())
}

/// The body of a signed JSON POST, and the key that signed it: only `application/json` (a
/// cross-origin form cannot send it without a preflight, which we never grant), at most
/// [`MAX_POST`] bytes, signed for this `Host`, method, path and body ([`auth`]).
async fn signed_json(
    instance: &Instance,
    req: Request,
) -> Result<([u8; 32], serde_json::Value), ApiError> {
    let (parts, body) = req.into_parts();
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "the body must be application/json",
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_POST)
        .await
        .map_err(|_| ApiError::bad_request("body too large"))?;
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (http, https) = (format!("http://{host}"), format!("https://{host}"));
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |p| p.as_str());
    let signed = auth::Request {
        origin: &http,
        method: parts.method.as_str(),
        path,
        body: &bytes,
    };
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let key = instance
        .verifier()
        .verify(header, &[&http, &https], &signed, auth::now_ms())
        .map_err(|e| auth_error(&e))?;
    let value =
        serde_json::from_slice(&bytes).map_err(|_| ApiError::bad_request("body must be JSON"))?;
    Ok((key, value))
}

fn registration_error(e: RegisterError) -> ApiError {
    let status = match e {
        RegisterError::Full => StatusCode::SERVICE_UNAVAILABLE,
        RegisterError::AddressCap => StatusCode::FORBIDDEN,
        RegisterError::Taken | RegisterError::NotProven => StatusCode::CONFLICT,
        RegisterError::Unknown => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, e.code(), e.to_string())
}

fn no_store(mut res: Response) -> Response {
    cache(&mut res, "no-store");
    res
}

/// `POST /v1/peers {"url"}`, signed by the peer's node key: registers its gateway, listed once
/// it answered a challenge with that key and passes its checks (`protocol/gateway.md` §7).
async fn register<S: LogSource>(
    State(state): State<Shared<S>>,
    req: Request,
) -> Result<Response, ApiError> {
    let instance = instance_of(&state)?.clone();
    let (key, v) = signed_json(&instance, req).await?;
    let url = v["url"].as_str().unwrap_or_default();
    // Resolved once, here; the instance then only ever connects to this address.
    let addr = address::resolve(url, instance.options().policy())
        .await
        .map_err(|e| registration_error(RegisterError::BadUrl(e)))?;
    let r = instance.register(key, addr).map_err(registration_error)?;
    Ok(no_store(
        axum::Json(serde_json::json!({
            "url": r.url,
            "key": hex::encode(key),
            "proven": r.proven,
        }))
        .into_response(),
    ))
}

/// `POST /v1/report {"bytes", "requests", "startedMs"}`, signed by the key that registered:
/// what its gateway served.
async fn report<S: LogSource>(
    State(state): State<Shared<S>>,
    req: Request,
) -> Result<Response, ApiError> {
    let instance = instance_of(&state)?.clone();
    let (key, v) = signed_json(&instance, req).await?;
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    instance
        .report(key, n("bytes"), n("requests"), n("startedMs"))
        .map_err(registration_error)?;
    Ok(no_store(
        axum::Json(serde_json::json!({ "ok": true })).into_response(),
    ))
}

/// `GET /v1/identity?challenge=<64 hex>`: prove this gateway holds its node key, for the
/// origin it is asked at (`http://` + `Host`).
async fn identity<S: LogSource>(
    State(state): State<Shared<S>>,
    RawQuery(raw): RawQuery,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let kp =
        state.config.identity.as_ref().ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, "NO_IDENTITY", "no node key here")
        })?;
    let challenge: [u8; auth::CHALLENGE_LEN] = raw
        .as_deref()
        .and_then(|q| q.strip_prefix("challenge="))
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::bad_request("challenge must be 64 hex characters"))?;
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::bad_request("no Host header"))?;
    let signature = auth::answer_challenge(kp, &format!("http://{host}"), &challenge);
    Ok(no_store(
        axum::Json(serde_json::json!({
            "key": hex::encode(kp.public_key()),
            "signature": hex::encode(signature),
        }))
        .into_response(),
    ))
}

/// `GET /v1/contributions`: the per-peer table.
async fn contributions<S: LogSource>(State(state): State<Shared<S>>) -> Result<Response, ApiError> {
    let instance = instance_of(&state)?;
    let body = serde_json::json!({
        "instance": {
            "bytes": state.config.counters.bytes(),
            "requests": state.config.counters.requests(),
        },
        "reports": {
            "admitted": instance.reports().admitted(),
            "scheduled": instance.reports().scheduled(),
        },
        "peers": instance.public_contributions(),
    });
    Ok(no_store(axum::Json(body).into_response()))
}

/// The peers a reader starts with: at most BOOTSTRAP_PEERS, a different random sample each
/// time (load spreads over every healthy peer; the page stays small).
fn bootstrap_peers<S>(state: &Shared<S>) -> Vec<String> {
    let mut peers = listed_peers(state);
    peers.shuffle(&mut rand::thread_rng());
    peers.truncate(BOOTSTRAP_PEERS);
    peers
}

/// `GET /v1/bootstrap`: the communities and the peers to read them from.
async fn bootstrap<S: LogSource>(State(state): State<Shared<S>>) -> Result<Response, ApiError> {
    let instance = instance_of(&state)?;
    let body = serde_json::json!({
        "communities": instance.communities(),
        "peers": bootstrap_peers(&state),
        "rtcPeers": instance.signal().listed(BOOTSTRAP_PEERS),
        "iceServers": instance.signal().ice_servers(),
    });
    Ok(no_store(axum::Json(body).into_response()))
}

/// The bootstrap document's data block: the community key (the first the instance
/// publishes) and the peers a reader starts with (the same window as `GET /v1/bootstrap`).
fn page_data<S>(state: &Shared<S>, instance: &Instance, rtc_peers: Vec<String>) -> String {
    let community = instance.communities().into_iter().next();
    crate::site::script_json(&serde_json::json!({
        "community": community.as_ref().map(|c| c.key.clone()),
        "title": community.as_ref().map(|c| c.title.clone()),
        "peers": bootstrap_peers(state),
        "rtcPeers": rtc_peers,
        "iceServers": instance.signal().ice_servers(),
    }))
}

/// `GET /` and `GET /{file}`: the bootstrap page, precompressed when the client takes it.
async fn site_file<S: LogSource>(
    State(state): State<Shared<S>>,
    file: Option<Path<String>>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let name = file.map_or_else(|| "index.html".to_owned(), |Path(f)| f);
    let missing = || ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint");
    let instance = state.config.instance.as_ref().ok_or_else(missing)?;
    let site = instance.site().ok_or_else(missing)?;
    // Without a WebRTC peer listed at this moment, the document without the WebRTC client
    // (when the build made it: §7).
    let rtc_peers = instance.signal().listed(BOOTSTRAP_PEERS);
    let rtc = !rtc_peers.is_empty();
    let f = site
        .file(&name, rtc, || page_data(&state, instance, rtc_peers))
        .ok_or_else(missing)?;
    let accept = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let takes = |coding: &str| {
        accept.split(',').any(|part| {
            let mut it = part.split(';');
            let name_ok = it.next().is_some_and(|n| n.trim() == coding);
            let q_zero = it.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            name_ok && !q_zero
        })
    };
    let (bytes, encoding) = match (&f.br, &f.gzip) {
        (Some(b), _) if takes("br") => (b.clone(), Some("br")),
        (_, Some(g)) if takes("gzip") => (g.clone(), Some("gzip")),
        _ => (f.identity.clone(), None),
    };
    let mut res = Response::new(Body::from(bytes.to_vec()));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(f.content_type),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Some(e) = encoding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(e));
    }
    if let Some(v) = site
        .csp(&name, rtc)
        .and_then(|p| HeaderValue::from_str(&p).ok())
    {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    // The document is revalidated (a returning reader's Service Worker serves its own copy);
    // the Service Worker script is checked for updates at most daily; the rest may be cached
    // for a while.
    let control = if name.ends_with(".html") {
        "no-cache"
    } else if name == "sw.js" {
        "public, max-age=86400"
    } else {
        "public, max-age=300"
    };
    cache(&mut res, control);
    Ok(res)
}

/// Whether a request's body is declared `application/json` (POST routes take nothing else:
/// a cross-origin form cannot send it without a preflight, which is never granted).
fn is_json(parts: &axum::http::request::Parts) -> bool {
    parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// The body of an unsigned JSON POST, at most `max` bytes.
async fn json_body(req: Request, max: usize) -> Result<axum::body::Bytes, ApiError> {
    let (parts, body) = req.into_parts();
    if !is_json(&parts) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "the body must be application/json",
        ));
    }
    axum::body::to_bytes(body, max).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "TOO_LARGE",
            format!("the body is larger than {max} bytes"),
        )
    })
}

/// `POST /v1/signal {"peer": KEY, "sdp": OFFER}` (a browser, same origin): the WebRTC peer's
/// signed answer, relayed through its poll (§7.3).
async fn signal_offer<S: LogSource>(
    State(state): State<Shared<S>>,
    req: Request,
) -> Result<Response, ApiError> {
    let instance = instance_of(&state)?.clone();
    let ip = client_ip(&req, &state.config.trusted_proxies);
    let body = json_body(req, crate::signal::MAX_OFFER_POST).await?;
    let v = crate::signal::offer_answer(instance.signal(), ip, &body).await?;
    Ok(no_store(axum::Json(v).into_response()))
}

/// `POST /v1/signal/candidate {"peer": KEY, "ufrag", "candidate"}` (a browser, same origin): a
/// trickled ICE candidate, queued for the peer's poll (§7.3); answers at once.
async fn signal_candidate<S: LogSource>(
    State(state): State<Shared<S>>,
    req: Request,
) -> Result<Response, ApiError> {
    let instance = instance_of(&state)?.clone();
    let ip = client_ip(&req, &state.config.trusted_proxies);
    let body = json_body(req, crate::signal::MAX_CANDIDATE_POST).await?;
    let v = crate::signal::candidate_answer(instance.signal(), ip, &body)?;
    Ok(no_store(axum::Json(v).into_response()))
}

/// `POST /v1/signal/poll`, signed by a WebRTC peer's node key: its tasks (offers, checks),
/// after a wait of up to 25 s for one.
async fn signal_poll<S: LogSource>(
    State(state): State<Shared<S>>,
    req: Request,
) -> Result<Response, ApiError> {
    let instance = instance_of(&state)?.clone();
    let ip = client_ip(&req, &state.config.trusted_proxies)
        .unwrap_or(std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
    let (key, v) = signed_json(&instance, req).await?;
    let body = serde_json::to_vec(&v).unwrap_or_default();
    let v = crate::signal::poll_answer(instance.signal(), key, ip, &body).await?;
    Ok(no_store(axum::Json(v).into_response()))
}

/// `POST /v1/signal/answer/{id}`: a WebRTC peer's answer to a task (an SDP answer or check
/// results), authenticated by the node key's signature inside it.
async fn signal_answer<S: LogSource>(
    State(state): State<Shared<S>>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let instance = instance_of(&state)?.clone();
    let id = crate::signal::task_id(&id)?;
    // An unknown task is refused before its body is read.
    let max = instance.signal().answer_limit(&id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "UNKNOWN_TASK",
            "no such task waits here",
        )
    })?;
    let body = json_body(req, max).await?;
    instance.signal().answer(&id, &body)?;
    Ok(no_store(
        axum::Json(serde_json::json!({ "ok": true })).into_response(),
    ))
}

/// `POST /v1/bad-peer {"peer", "log", "start", "end", "code"}` (a browser, same origin, no
/// credentials): a reader caught `peer` serving data that does not verify; the instance checks
/// it itself at once, within the reporter's and the peer's budgets (§7.4).
async fn bad_peer<S: LogSource>(
    State(state): State<Shared<S>>,
    req: Request,
) -> Result<Response, ApiError> {
    let instance = instance_of(&state)?.clone();
    let ip = client_ip(&req, &state.config.trusted_proxies);
    let body = json_body(req, crate::report::MAX_REPORT_BODY).await?;
    match instance.report_bad_peer(ip, &body) {
        Ok(outcome) => {
            let v = serde_json::json!({ "check": outcome.as_str() });
            Ok(no_store(
                (StatusCode::ACCEPTED, axum::Json(v)).into_response(),
            ))
        }
        Err(e) => {
            let (status, code) = e.status();
            Err(ApiError::new(status, code, e.to_string()))
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint")
}
