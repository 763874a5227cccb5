//! Policy rules beyond the basic rejections: co-signing lifts the
//! jurisdiction and area limits only when the co-signer is listed; status,
//! sender, not-yet-valid keys and the per-authority rate limit each refuse
//! with their stable code and journal nothing.

mod support;

use support::*;
use tocsin::alert::envelope::sign_many;
use tocsin::config::KeySettings;
use tocsin::daemon::{Daemon, Extras};
use tocsin::ingest::Receipt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosigning_and_authority_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), &[]);
    let gz = &mut s.authorities[0];
    gz.cosigners = vec!["bj".into()];
    gz.max_area_km2 = Some(10_000.0);
    gz.statuses = vec!["Actual".into()];
    gz.rate_per_minute = 6;
    gz.keys.push(KeySettings {
        kid: "gz-future".into(),
        public_key: Some(b64(&key(5))),
        public_key_file: None,
        not_before: Some(chrono::Utc::now() + chrono::Duration::days(30)),
        not_after: None,
        revoked: false,
    });
    let d = Daemon::start(s, Extras::default()).await.unwrap();
    let c = client(dir.path(), d.ingest_addr).await;
    let (k1, k4) = (key(1), key(4));

    // A 100 km circle is ~31,000 km²: over gz's 10,000 km² without a co-signer.
    let big = alert_xml("pol-1");
    let r = c.submit(&sign(&big, "gz-1", &k1)).await.unwrap();
    assert_eq!(code(&r), "cosign_required");
    // Co-signed by bj (listed in gz's cosigners): accepted.
    let env = sign_many(big.as_bytes(), &[("gz-1", &k1), ("bj-1", &k4)]).unwrap();
    let r = c.submit(&env).await.unwrap();
    assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");

    // Outside the jurisdiction (Beijing), small enough: refused alone, accepted co-signed.
    let far = alert_xml("pol-2").replace("23.1291,113.2644 100", "39.9042,116.4074 20");
    let r = c.submit(&sign(&far, "gz-1", &k1)).await.unwrap();
    assert_eq!(code(&r), "outside_jurisdiction");
    let env = sign_many(far.as_bytes(), &[("gz-1", &k1), ("bj-1", &k4)]).unwrap();
    let r = c.submit(&env).await.unwrap();
    assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");

    // A co-signature that does not verify refuses the whole envelope.
    let env = sign_many(far.as_bytes(), &[("gz-1", &k1), ("bj-1", &key(9))]).unwrap();
    assert_eq!(code(&c.submit(&env).await.unwrap()), "signature_invalid");

    let small = |id: &str| alert_xml(id).replace("23.1291,113.2644 100", "23.1291,113.2644 20");
    let test_status = small("pol-3").replace("<status>Actual</status>", "<status>Test</status>");
    assert_eq!(
        code(&c.submit(&sign(&test_status, "gz-1", &k1)).await.unwrap()),
        "status_not_allowed"
    );
    let sender = small("pol-4").replace("police.gz@example.gov.cn", "someone@example.org");
    assert_eq!(
        code(&c.submit(&sign(&sender, "gz-1", &k1)).await.unwrap()),
        "sender_mismatch"
    );
    let r = c
        .submit(&sign(&small("pol-5"), "gz-future", &key(5)))
        .await
        .unwrap();
    assert_eq!(code(&r), "key_not_yet_valid");
    assert_eq!(d.pipeline.journal().alert_count().unwrap(), 2);

    // Rate: 6 per minute for gz, and every authenticated submission counts.
    let r = c.submit(&sign(&small("pol-6"), "gz-1", &k1)).await.unwrap();
    assert_eq!(code(&r), "rate_limited", "{r:?}");
    assert_eq!(d.pipeline.journal().alert_count().unwrap(), 2);
    c.close().await;
    d.shutdown().await;
}
