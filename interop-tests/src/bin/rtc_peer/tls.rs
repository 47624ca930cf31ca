//! HTTPS for the test instance: a self-signed certificate (`rtc_peer cert`). The instance
//! serves it with the gateway's own HTTPS listener (`peerhost_gateway::serve_tls`, what
//! `peerhost serve --tls-cert/--tls-key` runs), and the home peer trusts it (`rtc_peer serve
//! --trust FILE`, read with `peerhost_gateway::tls::certs`). A page on `https://` is a secure
//! context (WebCrypto, as on a real instance) and fetches nothing over plain HTTP.

use std::path::Path;

/// Write a self-signed certificate for `names` (host names or IP addresses) to
/// `DIR/cert.pem` and `DIR/key.pem`.
pub(crate) fn write_cert(dir: &Path, names: Vec<String>) -> Result<(), String> {
    let cert = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem())
        .map_err(|e| e.to_string())?;
    Ok(())
}
