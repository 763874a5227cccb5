//! Throwaway TLS identity for the local provider servers: one self-signed
//! certificate for `localhost` and `127.0.0.1` (rcgen), a rustls server
//! config on the ring provider with the ALPN list the caller asks for, and
//! the PEM clients trust. It never touches the platform's roots and never
//! uses rustls' process-default provider (aws-lc-rs is not compiled in).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A self-signed certificate and its key, both PEM.
#[derive(Clone, Debug)]
pub struct TestTls {
    /// The certificate (also the trust anchor clients load).
    pub cert_pem: String,
    /// The PKCS#8 private key.
    pub key_pem: String,
}

impl TestTls {
    /// A fresh self-signed certificate valid for `localhost` and `127.0.0.1`.
    pub fn localhost() -> std::io::Result<TestTls> {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let ck = rcgen::generate_simple_self_signed(names).map_err(std::io::Error::other)?;
        Ok(TestTls {
            cert_pem: ck.cert.pem(),
            key_pem: ck.signing_key.serialize_pem(),
        })
    }

    /// A rustls server config (ring provider) presenting this certificate
    /// and offering the given ALPN protocols in order.
    pub fn server_config(&self, alpn: &[&[u8]]) -> std::io::Result<rustls::ServerConfig> {
        fn other(e: impl std::fmt::Display) -> std::io::Error {
            std::io::Error::other(e.to_string())
        }
        let cert = CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).map_err(other)?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(other)?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(other)?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(other)?;
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(cfg)
    }

    /// The PEM a client adds to its roots to trust this server.
    pub fn ca_pem(&self) -> &[u8] {
        self.cert_pem.as_bytes()
    }

    /// A rustls client config (ring provider) trusting only this
    /// certificate, offering the given ALPN protocols.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, rustls::Error> {
        client_config(self.ca_pem(), alpn)
    }
}

/// A rustls client config (ring provider) trusting the certificates in
/// `ca_pem`, offering the given ALPN protocols. For tests and benches.
pub fn client_config(ca_pem: &[u8], alpn: &[&[u8]]) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| rustls::Error::General(format!("CA PEM: {e}")))?;
        roots.add(cert)?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}
