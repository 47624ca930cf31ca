//! HTTPS for the gateway (feature `tls`): a rustls acceptor from a PEM certificate chain and
//! key (`peerhost serve --tls-cert FILE --tls-key FILE`), for [`crate::serve_tls`]. A page on
//! `https://` is a secure context and may fetch nothing over plain HTTP, so an instance that
//! serves its page itself needs this (or a TLS-terminating reverse proxy in front).
//!
//! TLS 1.2 and 1.3 with rustls' safe defaults (aws-lc-rs), ALPN `http/1.1` (the gateway
//! speaks HTTP/1.1 only), no client certificates.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate file cannot be read or holds no PEM certificate.
    #[error("the TLS certificate {path}: {reason}")]
    Cert {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The key file cannot be read or holds no PEM private key.
    #[error("the TLS key {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the pair (the key does not match the certificate, an unsupported key).
    #[error("the TLS certificate and key do not go together: {0}")]
    Config(String),
}

/// The DER certificates of a PEM file (the chain, leaf first).
pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::Cert {
        path: path.display().to_string(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect)
        .map_err(|e| bad(e.to_string()))?;
    if chain.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(chain)
}

/// A TLS acceptor for the certificate chain and key in these PEM files.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let chain = certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
