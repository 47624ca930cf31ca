//! HTTPS for the test instance: a self-signed certificate (`rtc_peer cert`), the gateway's
//! router served over TLS (`rtc_peer instance --tls-cert --tls-key`), and the home peer
//! trusting that certificate (`rtc_peer serve --trust FILE`). A page on `https://` is a secure
//! context (WebCrypto, as on a real instance) and fetches nothing over plain HTTP.
//!
//! Phase 2b gives the daemon `serve --tls-cert/--tls-key`; this is the test binary's own.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;

/// Handshakes in progress at most (each bounded by [`HANDSHAKE_TIMEOUT`]).
const MAX_HANDSHAKES: usize = 256;
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Write a self-signed certificate for `names` (host names or IP addresses) to
/// `DIR/cert.pem` and `DIR/key.pem`.
pub(crate) fn write_cert(dir: &Path, names: Vec<String>) -> Result<(), String> {
    let cert = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem())
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The DER certificates of a PEM file.
pub(crate) fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A TLS acceptor for the certificate and key in these PEM files.
pub(crate) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let chain = certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepted TLS connections, handshakes done off the accept loop (a slow client holds up no
/// one), for `axum::serve`.
pub(crate) struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accept on `listener`, handshake with `acceptor`.
    pub(crate) fn new(listener: TcpListener, acceptor: TlsAcceptor) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok((tcp, addr)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    continue; // too many handshakes at once: drop this one
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                    {
                        let _ = tx.send((tls, addr)).await;
                    }
                });
            }
        });
        Ok(Self { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The client's address of a TLS connection (axum's `ConnectInfo`); [`with_client_addr`]
/// passes it on as the `ConnectInfo<SocketAddr>` the gateway's limits read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TlsClient(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for TlsClient
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// The gateway's router, with each request's client address where the gateway looks for it.
pub(crate) fn with_client_addr(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::map_request(
        |mut req: axum::extract::Request| async move {
            use axum::extract::ConnectInfo;
            let addr = req
                .extensions()
                .get::<ConnectInfo<TlsClient>>()
                .map(|c| c.0.0);
            if let Some(a) = addr {
                req.extensions_mut().insert(ConnectInfo(a));
            }
            req
        },
    ))
}
