//! Mutual TLS on the ingest (`ingest.client_ca`): a client whose certificate
//! the configured CA issued connects and submits; a certificate from another
//! CA, and no certificate at all, are refused during the handshake, before
//! any envelope is read (nothing is journaled, no result is counted).

mod support;

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::*;
use tocsin::daemon::{Daemon, Extras};
use tocsin::ingest::Receipt;

/// A CA able to issue client certificates.
fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A client certificate (clientAuth) issued by `issuer`.
fn client_identity(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    name: &str,
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.signed_by(&key, issuer).unwrap();
    (
        vec![cert.der().clone()],
        PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    )
}

/// Connect and submit over quinn directly (so the close reason is visible);
/// Err(reason) when the handshake or the stream fails.
async fn try_submit(
    dir: &std::path::Path,
    addr: std::net::SocketAddr,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    xml: &str,
) -> Result<Receipt, String> {
    let roots = tocsin::tls::load_certs(&dir.join("dev/cert.pem")).unwrap();
    let tls = tocsin::tls::client_config(roots, identity).unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    // QUIC: the client may finish its side of the handshake before the
    // server has checked its certificate; the refusal then closes the
    // connection under the first stream, with the TLS alert as the reason.
    let conn = ep
        .connect(addr, "localhost")
        .unwrap()
        .await
        .map_err(|e| e.to_string())?;
    let env = sign(xml, "gz-1", &key(1));
    let result = async {
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&env).await?;
        send.finish()?;
        Ok::<_, Box<dyn std::error::Error>>(recv.read_to_end(16 * 1024).await?)
    }
    .await;
    let out = match result {
        Ok(line) => Ok(serde_json::from_slice(&line).unwrap()),
        Err(e) => Err(match conn.close_reason() {
            Some(reason) => reason.to_string(),
            None => e.to_string(),
        }),
    };
    conn.close(0u32.into(), b"done");
    ep.wait_idle().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_clients_of_the_configured_ca_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = ca("tocsin authorities CA");
    let other = ca("some other CA");
    let ca_path = dir.path().join("client-ca.pem");
    std::fs::write(&ca_path, trusted.pem()).unwrap();
    let mut s = settings(dir.path(), &[]);
    s.ingest.client_ca = Some(ca_path);
    let d = Daemon::start(s, Extras::default()).await.unwrap();

    let good = client_identity(&trusted, "police.gz");
    let r = try_submit(dir.path(), d.ingest_addr, Some(good), &alert_xml("m-1")).await;
    assert!(matches!(r, Ok(Receipt::Accepted { .. })), "{r:?}");

    let stranger = client_identity(&other, "police.gz");
    let r = try_submit(dir.path(), d.ingest_addr, Some(stranger), &alert_xml("m-2")).await;
    let e = r.expect_err("a certificate from another CA got in");
    // TLS alert 48: unknown_ca.
    assert!(e.contains("handshake failed: error 48"), "{e}");

    let r = try_submit(dir.path(), d.ingest_addr, None, &alert_xml("m-3")).await;
    let e = r.expect_err("a client without a certificate got in");
    // TLS alert 116: certificate_required.
    assert!(e.contains("handshake failed: error 116"), "{e}");

    // Only the first alert reached the pipeline.
    assert_eq!(d.journal().alert_count().unwrap(), 1);
    let text = d.metrics.encode();
    assert!(
        text.contains("tocsin_alerts_total{result=\"accepted\"} 1"),
        "{text}"
    );
    assert_eq!(
        text.matches("tocsin_alerts_total{result=").count(),
        1,
        "{text}"
    );
    d.shutdown().await;
}
