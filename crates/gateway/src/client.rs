//! A minimal HTTP/1.1 client for the few calls gateways make to each other: an instance
//! checking a registered peer (`GET …/blocks`), a mirror registering and reporting to its
//! instance (`POST /v1/peers`, `POST /v1/report`).
//!
//! Only `http://HOST:PORT` URLs (or an exact address: [`get_at`]), and with the `tls` feature
//! `https://HOST[:PORT]` (rustls; the Mozilla roots of `webpki-roots` plus any given to
//! [`add_root_certificates`]), one request per connection (`Connection: close`), bodies with
//! a `Content-Length` (what axum sends for whole bodies), chunked, or read to the end, at most
//! [`MAX_RESPONSE`] bytes, everything within one timeout. Anything else is an error: these
//! calls are between peerhost nodes, not a general client. (TLS-fronted gateways are reached
//! by their instance through a plain-HTTP URL on a private network, or not checked.)

use std::time::Duration;

use tokio::net::TcpStream;

/// The largest response read (a range response is at most ~4 MiB of blocks plus proof).
pub const MAX_RESPONSE: usize = 5 << 20;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not `http://HOST:PORT[/path]`.
    #[error("unsupported URL {0:?} (only http://HOST:PORT)")]
    Url(String),
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No answer within the timeout.
    #[error("timed out")]
    Timeout,
    /// The address is in a range the caller's policy refuses (nothing was sent).
    #[error("refused to connect to a {} address", .0.code())]
    Refused(crate::address::Refusal),
    /// The answer is not HTTP/1.x we understand, or too large.
    #[error("bad response: {0}")]
    BadResponse(&'static str),
}

/// A response: status and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// Split `http://host:port/path?q` into (`host:port`, `/path?q`).
pub(crate) fn split_url(url: &str) -> Result<(&str, &str), ClientError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::Url(url.to_owned()))?;
    split_rest(url, rest)
}

/// Whether `url` is `https://` (which needs the `tls` feature).
fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
}

/// Split an `http://` or (with the `tls` feature) `https://` URL: (origin, authority, path).
/// The origin is what a signed request covers ([`crate::auth`]).
fn split_any(url: &str) -> Result<(String, &str, &str), ClientError> {
    if is_https(url) {
        if !cfg!(feature = "tls") {
            return Err(ClientError::Url(format!(
                "{url} (https needs the gateway's `tls` feature)"
            )));
        }
        let (authority, path) = split_rest(url, &url[8..])?;
        return Ok((format!("https://{authority}"), authority, path));
    }
    let (authority, path) = split_url(url)?;
    Ok((format!("http://{authority}"), authority, path))
}

fn split_rest<'a>(url: &str, rest: &'a str) -> Result<(&'a str, &'a str), ClientError> {
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty()
        || !authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    {
        return Err(ClientError::Url(url.to_owned()));
    }
    Ok((authority, path))
}

/// `GET url`.
pub async fn get(url: &str, timeout: Duration) -> Result<Response, ClientError> {
    let (_, authority, path) = split_any(url)?;
    let call = Call::new("GET", authority, path);
    send(target(url, authority), call, timeout).await
}

/// Where `url` (already split) connects: its authority, with TLS for `https://`.
fn target<'a>(url: &str, authority: &'a str) -> Target<'a> {
    if is_https(url) {
        Target::Tls(authority)
    } else {
        Target::Name(authority)
    }
}

/// `POST url` with a JSON body.
pub async fn post_json(
    url: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let bytes = serde_json::to_vec(body).map_err(|_| ClientError::BadResponse("json"))?;
    let (_, authority, path) = split_any(url)?;
    let mut call = Call::new("POST", authority, path);
    call.body = Some(("application/json", &bytes));
    send(target(url, authority), call, timeout).await
}

/// `METHOD url` with `body` (of `content_type`, if any), signed with `key_pair`
/// ([`crate::auth`]: the origin is `http://` (or `https://`) and the URL's authority, as the
/// `Host` header carries it).
pub async fn send_signed(
    method: &str,
    url: &str,
    body: Option<(&str, &[u8])>,
    key_pair: &peerhost_ids::KeyPair,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let (origin, authority, path) = split_any(url)?;
    let req = crate::auth::Request {
        origin: &origin,
        method,
        path,
        body: body.map_or(&[][..], |(_, b)| b),
    };
    let auth = crate::auth::Credentials::sign(key_pair, &req, crate::auth::now_ms()).header_value();
    let mut call = Call::new(method, authority, path);
    call.body = body;
    call.authorization = Some(&auth);
    send(target(url, authority), call, timeout).await
}

/// `POST url` with a JSON body, signed with `key_pair` (see [`send_signed`]).
pub async fn post_json_signed(
    url: &str,
    body: &serde_json::Value,
    key_pair: &peerhost_ids::KeyPair,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let bytes = serde_json::to_vec(body).map_err(|_| ClientError::BadResponse("json"))?;
    send_signed(
        "POST",
        url,
        Some(("application/json", &bytes)),
        key_pair,
        timeout,
    )
    .await
}

/// `GET path` from the gateway at `addr`, exactly that address (no name lookup), and only if
/// `policy` allows it: what an instance uses to reach registered peers, whose addresses were
/// resolved and checked once at registration ([`crate::address`]). The `Host` header is the
/// address's canonical authority.
pub async fn get_at(
    addr: std::net::SocketAddr,
    path: &str,
    policy: crate::address::Policy,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let addr = std::net::SocketAddr::new(crate::address::unmap(addr.ip()), addr.port());
    policy.check(addr.ip()).map_err(ClientError::Refused)?;
    let url = crate::address::canonical_url(addr);
    let authority = url.trim_start_matches("http://").to_owned();
    let call = Call::new("GET", &authority, path);
    send(Target::Addr(addr), call, timeout).await
}

/// Where to connect.
enum Target<'a> {
    /// `host:port`, resolved by the OS (configured URLs: an instance a mirror registers with).
    Name(&'a str),
    /// This address and no other.
    Addr(std::net::SocketAddr),
    /// `host[:port]` (443 by default) over TLS, the host's certificate checked.
    Tls(&'a str),
}

/// One request.
struct Call<'a> {
    method: &'a str,
    authority: &'a str,
    path: &'a str,
    body: Option<(&'a str, &'a [u8])>,
    authorization: Option<&'a str>,
}

impl<'a> Call<'a> {
    fn new(method: &'a str, authority: &'a str, path: &'a str) -> Self {
        Self {
            method,
            authority,
            path,
            body: None,
            authorization: None,
        }
    }
}

async fn send(target: Target<'_>, c: Call<'_>, timeout: Duration) -> Result<Response, ClientError> {
    if let Target::Tls(authority) = target {
        return tokio::time::timeout(timeout, tls::exchange(authority, head_of(&c), c.body))
            .await
            .map_err(|_| ClientError::Timeout)?;
    }
    let call = async {
        let stream = match target {
            Target::Name(authority) => tcp_connect(authority).await?,
            Target::Addr(addr) => tcp_connect(addr).await?,
            Target::Tls(_) => return Err(ClientError::BadResponse("unreachable")),
        };
        exchange_plain(&stream, &head_of(&c), c.body).await
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| ClientError::Timeout)?
}

/// The request's head and body in one buffer, written at once: in two writes, the body
/// waited for the server's delayed acknowledgement of the head (Nagle's algorithm), 40 ms
/// on Linux.
fn request_bytes(head: &str, body: Option<(&str, &[u8])>) -> Vec<u8> {
    let b = body.map_or(&[][..], |(_, b)| b);
    let mut out = Vec::with_capacity(head.len() + b.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(b);
    out
}

/// A TCP connection to `to`, without Nagle's delay (every call writes its request at once
/// and then only reads).
async fn tcp_connect(to: impl tokio::net::ToSocketAddrs) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(to).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One request and its response over a plain connection.
async fn exchange_plain(
    stream: &TcpStream,
    head: &str,
    body: Option<(&str, &[u8])>,
) -> Result<Response, ClientError> {
    write_all(stream, &request_bytes(head, body)).await?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = read(stream, &mut buf).await?;
        if n == 0 {
            break;
        }
        if absorb(&mut raw, &buf[..n])? {
            break;
        }
    }
    parse(&raw)
}

/// A connection opened ahead of a request (TCP, and TLS for `https://`): an urgent call
/// made on it skips the handshakes (a home peer posting a browser's answer, which the browser
/// waits for). One request per connection, as every call here; the server closes a
/// connection idle for long (the gateway's listener: 30 s), so [`Warm::age`] says when to
/// open a fresh one.
#[derive(Debug)]
pub struct Warm {
    origin: String,
    at: std::time::Instant,
    stream: WarmStream,
}

#[derive(Debug)]
enum WarmStream {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tls::Stream>),
}

impl Warm {
    /// Open a connection to the origin of `url` (`http://HOST:PORT` or `https://HOST[:PORT]`),
    /// within `timeout`.
    pub async fn open(url: &str, timeout: Duration) -> Result<Self, ClientError> {
        let (origin, authority, _) = split_any(url)?;
        let connect = async {
            let stream = if is_https(url) {
                #[cfg(feature = "tls")]
                {
                    WarmStream::Tls(Box::new(tls::connect(authority).await?))
                }
                #[cfg(not(feature = "tls"))]
                {
                    return Err(ClientError::Url(url.to_owned()));
                }
            } else {
                WarmStream::Plain(tcp_connect(authority).await?)
            };
            Ok::<_, ClientError>(stream)
        };
        let stream = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| ClientError::Timeout)??;
        Ok(Self {
            origin,
            at: std::time::Instant::now(),
            stream,
        })
    }

    /// How long ago it was opened.
    pub fn age(&self) -> Duration {
        self.at.elapsed()
    }

    /// `POST url` with a JSON body on this connection; `url` must have the origin it was
    /// opened to (else [`ClientError::Url`], nothing sent).
    pub async fn post_json(
        self,
        url: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|_| ClientError::BadResponse("json"))?;
        let (origin, authority, path) = split_any(url)?;
        if origin != self.origin {
            return Err(ClientError::Url(url.to_owned()));
        }
        let mut call = Call::new("POST", authority, path);
        call.body = Some(("application/json", &bytes));
        let head = head_of(&call);
        let exchange = async {
            match self.stream {
                WarmStream::Plain(s) => exchange_plain(&s, &head, call.body).await,
                #[cfg(feature = "tls")]
                WarmStream::Tls(mut s) => tls::exchange_on(&mut s, head, call.body).await,
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout)?
    }
}

/// The request line and headers.
fn head_of(c: &Call<'_>) -> String {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         User-Agent: peerhost\r\nAccept: */*\r\n",
        c.method, c.path, c.authority
    );
    if let Some(a) = c.authorization {
        head.push_str(&format!("Authorization: {a}\r\n"));
    }
    if let Some((ty, b)) = c.body {
        head.push_str(&format!(
            "Content-Type: {ty}\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    head
}

/// Trust these certificates (DER) too, besides the Mozilla roots, for `https://` calls from
/// now on (a private CA, a test's): call before the first call. Without the `tls` feature it
/// does nothing.
pub fn add_root_certificates(der: &[Vec<u8>]) {
    tls::add_roots(der);
}

#[cfg(not(feature = "tls"))]
mod tls {
    use super::{ClientError, Response};

    pub(super) fn add_roots(_der: &[Vec<u8>]) {}

    pub(super) async fn exchange(
        authority: &str,
        _head: String,
        _body: Option<(&str, &[u8])>,
    ) -> Result<Response, ClientError> {
        Err(ClientError::Url(format!(
            "https://{authority} (https needs the gateway's `tls` feature)"
        )))
    }
}

#[cfg(feature = "tls")]
mod tls {
    use std::sync::{Arc, Mutex, OnceLock};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    use super::{ClientError, Response, parse};

    static EXTRA: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();

    pub(super) fn add_roots(der: &[Vec<u8>]) {
        if let Ok(mut e) = EXTRA.lock() {
            e.extend(der.iter().cloned());
        }
    }

    fn config() -> Arc<ClientConfig> {
        CONFIG
            .get_or_init(|| {
                let mut roots = RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                if let Ok(extra) = EXTRA.lock() {
                    for der in extra.iter() {
                        if let Err(e) = roots.add(CertificateDer::from(der.clone())) {
                            tracing::warn!("a root certificate was not added: {e}");
                        }
                    }
                }
                let provider =
                    Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
                let config = ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map(|b| b.with_root_certificates(roots).with_no_client_auth());
                match config {
                    Ok(c) => Arc::new(c),
                    Err(e) => {
                        // The default provider supports the default versions.
                        tracing::warn!("TLS configuration: {e}");
                        Arc::new(
                            ClientConfig::builder()
                                .with_root_certificates(RootCertStore::empty())
                                .with_no_client_auth(),
                        )
                    }
                }
            })
            .clone()
    }

    /// `host` and the port (443 by default) of an authority.
    fn host_port(authority: &str) -> (&str, u16) {
        if let Some(rest) = authority.strip_prefix('[') {
            // [v6]:port
            if let Some((h, p)) = rest.split_once(']') {
                let port = p
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(443);
                return (h, port);
            }
        }
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, p.parse().unwrap_or(443)),
            _ => (authority, 443),
        }
    }

    /// A TLS connection to a server.
    pub(super) type Stream = tokio_rustls::client::TlsStream<TcpStream>;

    /// Connect to `authority` (`host[:port]`, 443 by default) and finish the TLS handshake.
    pub(super) async fn connect(authority: &str) -> Result<Stream, ClientError> {
        let (host, port) = host_port(authority);
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| ClientError::Url(format!("https://{authority}")))?;
        let tcp = super::tcp_connect((host, port)).await?;
        Ok(TlsConnector::from(config()).connect(name, tcp).await?)
    }

    pub(super) async fn exchange(
        authority: &str,
        head: String,
        body: Option<(&str, &[u8])>,
    ) -> Result<Response, ClientError> {
        let mut tls = connect(authority).await?;
        exchange_on(&mut tls, head, body).await
    }

    /// One request and its response over a TLS connection.
    pub(super) async fn exchange_on(
        tls: &mut Stream,
        head: String,
        body: Option<(&str, &[u8])>,
    ) -> Result<Response, ClientError> {
        tls.write_all(&super::request_bytes(&head, body)).await?;
        tls.flush().await?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match tls.read(&mut buf).await {
                Ok(n) => n,
                // A server that closes without close_notify: what we have is the answer.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                break;
            }
            if super::absorb(&mut raw, &buf[..n])? {
                break;
            }
        }
        parse(&raw)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn authorities() {
            assert_eq!(super::host_port("a.example"), ("a.example", 443));
            assert_eq!(super::host_port("a.example:8443"), ("a.example", 8443));
            assert_eq!(super::host_port("[::1]:9"), ("::1", 9));
            assert_eq!(super::host_port("[::1]"), ("::1", 443));
        }
    }
}

// The socket's readiness API (tokio's `net` feature) rather than `AsyncReadExt` /
// `AsyncWriteExt` (`io-util`): the fuzz workspace pins tokio without `io-util`.
async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn read(stream: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        stream.readable().await?;
        match stream.try_read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// Where the head ends (after `\r\n\r\n`).
fn head_end(raw: &[u8]) -> Option<usize> {
    raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

/// With a `Content-Length`, the total length of the response once all of it is in.
/// Add `chunk` to the response read so far: true once it is complete (cut to its end), an
/// error once it is larger than [`MAX_RESPONSE`].
fn absorb(raw: &mut Vec<u8>, chunk: &[u8]) -> Result<bool, ClientError> {
    raw.extend_from_slice(chunk);
    if raw.len() > MAX_RESPONSE {
        return Err(ClientError::BadResponse("response too large"));
    }
    Ok(complete(raw).map(|done| raw.truncate(done)).is_some())
}

fn complete(raw: &[u8]) -> Option<usize> {
    let end = head_end(raw)?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let len = content_length(head)?;
    (raw.len() >= end + len).then_some(end + len)
}

fn parse(raw: &[u8]) -> Result<Response, ClientError> {
    let end = head_end(raw).ok_or(ClientError::BadResponse("no end of head"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| ClientError::BadResponse("head"))?;
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(ClientError::BadResponse("not HTTP/1.x"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(ClientError::BadResponse("status"))?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(n, v)| {
            n.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    if chunked {
        return Ok(Response {
            status,
            body: dechunk(&raw[end..])?,
        });
    }
    let mut body = raw[end..].to_vec();
    if let Some(len) = content_length(head) {
        if body.len() < len {
            return Err(ClientError::BadResponse("body cut short"));
        }
        body.truncate(len);
    }
    Ok(Response { status, body })
}

/// A `Transfer-Encoding: chunked` body (read to the end of the connection): the chunks
/// joined; extensions and trailers ignored.
fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, ClientError> {
    let bad = ClientError::BadResponse("bad chunked body");
    let mut out = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(ClientError::BadResponse("bad chunked body"))?;
        let line = std::str::from_utf8(&raw[..line_end])
            .map_err(|_| ClientError::BadResponse("bad chunked body"))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| ClientError::BadResponse("bad chunked body"))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len() < size + 2 || out.len() + size > MAX_RESPONSE {
            return Err(bad);
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://127.0.0.1:80/v1/peers").unwrap(),
            ("127.0.0.1:80", "/v1/peers")
        );
        assert_eq!(split_url("http://h:1").unwrap(), ("h:1", "/"));
        for bad in [
            "https://h:1",
            "http://",
            "http://a b/",
            "ftp://x",
            "http://a@b/",
        ] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses() {
        let r = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hi"[..]));
        assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhi").is_err());
        assert!(parse(b"garbage").is_err());
        let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n1;x\r\n!\r\n0\r\n\r\n")
            .unwrap();
        assert_eq!(r.body, b"hi!");
        assert!(
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nhi\r\n").is_err()
        );
        assert_eq!(
            complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi!"),
            Some(40)
        );
    }

    /// A server that accepts one connection, reads one request, answers it with `200 {}`,
    /// and returns what it read.
    async fn one_request_server() -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = read(&stream, &mut buf).await.unwrap();
                raw.extend_from_slice(&buf[..n]);
                let Some(end) = head_end(&raw) else { continue };
                let head = std::str::from_utf8(&raw[..end]).unwrap();
                if raw.len() >= end + content_length(head).unwrap_or(0) || n == 0 {
                    break;
                }
            }
            write_all(
                &stream,
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
            )
            .await
            .unwrap();
            raw
        });
        (url, task)
    }

    #[tokio::test]
    async fn a_warm_connection_carries_one_post() {
        let (url, server) = one_request_server().await;
        let warm = Warm::open(&url, Duration::from_secs(5)).await.unwrap();
        assert!(warm.age() < Duration::from_secs(5));
        let body = serde_json::json!({ "sdp": "v=0" });
        let r = warm
            .post_json(
                &format!("{url}/v1/signal/answer/ab"),
                &body,
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        let raw = String::from_utf8(server.await.unwrap()).unwrap();
        assert!(
            raw.starts_with("POST /v1/signal/answer/ab HTTP/1.1\r\n"),
            "{raw}"
        );
        assert!(raw.ends_with(r#"{"sdp":"v=0"}"#), "{raw}");

        // A warm connection is for its origin only: nothing is sent elsewhere.
        let (url, _server) = one_request_server().await;
        let warm = Warm::open(&url, Duration::from_secs(5)).await.unwrap();
        let other = warm
            .post_json("http://127.0.0.1:1/x", &body, Duration::from_secs(5))
            .await;
        assert!(matches!(other, Err(ClientError::Url(_))), "{other:?}");
    }
}
