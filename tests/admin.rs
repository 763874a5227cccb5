//! The admin HTTP surface after a real submission: health, readiness,
//! Prometheus metrics with the DESIGN §9 names, alert progress JSON and the
//! Atom pull feed with the CAP document inline. Also: mutual TLS on the ingest.

mod support;

use std::sync::atomic::Ordering;

use support::*;
use tocsin::daemon::{Daemon, Extras};
use tocsin::ingest::Receipt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_progress_and_atom_feed() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, seen) = partner("s").await;
    let d = Daemon::start(
        settings(dir.path(), &[("p1".into(), addr, "s")]),
        Extras::default(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", d.admin_addr);
    let get = |p: &str| reqwest::get(format!("{base}{p}"));
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);

    let c = client(dir.path(), d.ingest_addr).await;
    let r = c
        .submit(&sign(&alert_xml("admin-1"), "gz-1", &key(1)))
        .await
        .unwrap();
    let Receipt::Accepted { receipt, .. } = r else {
        panic!("{r:?}")
    };
    assert!(wait_for(10, || seen.valid.load(Ordering::Relaxed) == 1).await);
    assert!(
        wait_for(10, || d
            .dispatcher()
            .progress(1)
            .is_some_and(|p| p.is_done()))
        .await
    );

    let m = get("/metrics").await.unwrap().text().await.unwrap();
    for name in [
        "tocsin_alerts_total{result=\"accepted\"} 1",
        "tocsin_deliveries_total{channel=\"feed\",outcome=\"delivered\"} 1",
        "tocsin_targeted_recipients_total{channel=\"feed\"} 1",
        "tocsin_ingest_seconds_count 1",
        "tocsin_delivery_seconds_count{channel=\"feed\"} 1",
        "tocsin_target_seconds_count",
        "tocsin_queue_depth{channel=\"feed\"} 0",
        "tocsin_inflight{channel=\"feed\"} 0",
        "tocsin_channel_up{channel=\"feed\"} 1",
    ] {
        assert!(m.contains(name), "missing {name} in\n{m}");
    }

    let v: serde_json::Value = get(&format!("/v1/alerts/{receipt}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["receipt"], receipt.as_str());
    assert_eq!(v["channels"][0]["channel"], "feed");
    assert_eq!(v["channels"][0]["delivered"], 1);
    let list: serde_json::Value = get("/v1/alerts").await.unwrap().json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(get("/v1/alerts/nope").await.unwrap().status(), 404);

    let atom = get("/feeds/alerts.atom").await.unwrap();
    assert_eq!(
        atom.headers()["content-type"].to_str().unwrap(),
        "application/atom+xml; charset=utf-8"
    );
    let atom = atom.text().await.unwrap();
    assert!(atom.contains("<feed xmlns=\"http://www.w3.org/2005/Atom\">"));
    assert!(atom.contains("<identifier>admin-1</identifier>"), "{atom}");
    assert!(atom.contains("urn:oasis:names:tc:emergency:cap:1.2"));
    // the inline CAP document parses back
    let start = atom.find("<alert").unwrap();
    let end = atom.find("</alert>").unwrap() + "</alert>".len();
    tocsin::alert::cap::parse(&atom.as_bytes()[start..end], &Default::default()).unwrap();
    c.close().await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    // A CA for authorities, and one client certificate it issued.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(vec![]).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cl_key = rcgen::KeyPair::generate().unwrap();
    let cl = rcgen::CertificateParams::new(vec!["gz-police".into()])
        .unwrap()
        .signed_by(&cl_key, &issuer)
        .unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let mut s = settings(dir.path(), &[]);
    s.ingest.client_ca = Some(ca_path);
    let d = Daemon::start(s, Extras::default()).await.unwrap();
    let env = sign(&alert_xml("mtls-1"), "gz-1", &key(1));

    // Without a certificate: the handshake "succeeds" but the stream fails.
    let roots = tocsin::tls::load_certs(&dir.path().join("dev/cert.pem")).unwrap();
    let tls = tocsin::tls::client_config(roots.clone(), None).unwrap();
    let refused = match tocsin::client::IngestClient::connect(d.ingest_addr, "localhost", tls).await
    {
        Err(_) => true,
        Ok(c) => c.submit(&env).await.is_err(),
    };
    assert!(refused, "a client without certificate must not submit");
    assert_eq!(d.pipeline.journal().alert_count().unwrap(), 0);

    // With the certificate: accepted.
    let ident = (
        vec![cl.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(cl_key.serialize_der()).unwrap(),
    );
    let tls = tocsin::tls::client_config(roots, Some(ident)).unwrap();
    let c = tocsin::client::IngestClient::connect(d.ingest_addr, "localhost", tls)
        .await
        .unwrap();
    let r = c.submit(&env).await.unwrap();
    assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");
    c.close().await;
    d.shutdown().await;
}
