//! TLS of the KME: rustls server and client configurations with mandatory client
//! certificates, PEM loading (rustls-pki-types), and the peer's identity, the subject common
//! name of its certificate (x509-parser).

use crate::error::{ConfigError, Error, Result};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    ConfigError::Mismatch(format!("{}: {what}: {e}", path.display())).into()
}

/// The certificates of a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(path, "cannot read certificates", e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| pem_err(path, "bad PEM certificate", e))?;
    if certs.is_empty() {
        return Err(pem_err(
            path,
            "no certificate",
            "the file holds no CERTIFICATE block",
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_err(path, "cannot read a private key", e))
}

/// The trust anchors of a PEM file.
pub fn load_roots(path: &Path) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(path)? {
        roots
            .add(c)
            .map_err(|e| pem_err(path, "not a usable CA certificate", e))?;
    }
    Ok(Arc::new(roots))
}

/// The subject common name of a DER certificate.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = c.subject().iter_common_name().next()?.as_str().ok()?;
    Some(cn.to_string())
}

/// A server that requires a client certificate issued by `client_ca`.
pub fn server_config(cert: &Path, key: &Path, client_ca: &Path) -> Result<rustls::ServerConfig> {
    let roots = load_roots(client_ca)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| pem_err(client_ca, "client verifier", e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| pem_err(cert, "TLS versions", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| pem_err(cert, "certificate and key do not make a TLS identity", e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A client presenting `cert` and trusting servers issued by `ca`.
pub fn client_config(cert: &Path, key: &Path, ca: &Path) -> Result<rustls::ClientConfig> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| pem_err(cert, "TLS versions", e))?
        .with_root_certificates(load_roots(ca)?)
        .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| pem_err(cert, "certificate and key do not make a TLS identity", e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The TLS server name of `host` (a DNS name or an IP address).
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| ConfigError::invalid("url", format!("{host}: {e}")).into())
}
