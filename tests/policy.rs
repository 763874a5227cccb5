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

/// Flip one bit in the signature of signer `index` of a COSE_Sign envelope.
fn corrupt_signature(env: &[u8], index: usize) -> Vec<u8> {
    use coset::TaggedCborSerializable;
    let mut s = coset::CoseSign::from_tagged_slice(env).unwrap();
    s.signatures[index].signature[7] ^= 0x01;
    s.to_tagged_vec().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_listed_cosigner_with_a_valid_signature_lifts_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), &[]);
    s.authorities[0].cosigners = vec!["bj".into()];
    s.authorities[0].max_area_km2 = Some(10_000.0);
    // Foshan: a valid authority with a valid key, but not one gz lists.
    let mut fs = s.authorities[1].clone();
    fs.id = "fs".into();
    fs.keys[0].kid = "fs-1".into();
    fs.keys[0].public_key = Some(b64(&key(11)));
    s.authorities.push(fs);
    let d = Daemon::start(s, Extras::default()).await.unwrap();
    let c = client(dir.path(), d.ingest_addr).await;
    let (k1, k4, k11) = (key(1), key(4), key(11));
    let big = alert_xml("cos-1");
    let far = alert_xml("cos-2").replace("23.1291,113.2644 100", "39.9042,116.4074 20");

    // A valid co-signature by an authority gz does not list changes nothing.
    let env = sign_many(big.as_bytes(), &[("gz-1", &k1), ("fs-1", &k11)]).unwrap();
    assert_eq!(code(&c.submit(&env).await.unwrap()), "cosign_required");
    let env = sign_many(far.as_bytes(), &[("gz-1", &k1), ("fs-1", &k11)]).unwrap();
    assert_eq!(code(&c.submit(&env).await.unwrap()), "outside_jurisdiction");
    // Nor does gz co-signing itself.
    let env = sign_many(big.as_bytes(), &[("gz-1", &k1), ("gz-1", &k1)]).unwrap();
    assert_eq!(code(&c.submit(&env).await.unwrap()), "cosign_required");
    // A listed co-signer whose signature bytes were altered in transit.
    let good = sign_many(big.as_bytes(), &[("gz-1", &k1), ("bj-1", &k4)]).unwrap();
    let r = c.submit(&corrupt_signature(&good, 1)).await.unwrap();
    assert_eq!(code(&r), "signature_invalid");
    let r = c.submit(&corrupt_signature(&good, 0)).await.unwrap();
    assert_eq!(code(&r), "signature_invalid");
    // A revoked key cannot co-sign either.
    let env = sign_many(big.as_bytes(), &[("gz-1", &k1), ("gz-revoked", &key(2))]).unwrap();
    assert_eq!(code(&c.submit(&env).await.unwrap()), "key_revoked");
    assert_eq!(d.pipeline.journal().alert_count().unwrap(), 0);
    // The intact envelope is accepted.
    let r = c.submit(&good).await.unwrap();
    assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");
    c.close().await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_ingest_limit_spans_authorities() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), &[]);
    // 2 per second over everyone (burst 2); gz alone may send 1 per minute.
    s.ingest.max_alerts_per_sec = Some(2.0);
    s.authorities[0].rate_per_minute = 1;
    s.authorities[1].rate_per_minute = 600;
    s.authorities[1].events = vec!["CAE".into()];
    s.authorities[1].jurisdiction = s.authorities[0].jurisdiction.clone();
    s.authorities[1].senders = vec!["police.bj@example.gov.cn".into()];
    let d = Daemon::start(s, Extras::default()).await.unwrap();
    let c = client(dir.path(), d.ingest_addr).await;
    let small = |id: &str| alert_xml(id).replace("23.1291,113.2644 100", "23.1291,113.2644 20");
    let bj_small =
        |id: &str| small(id).replace("police.gz@example.gov.cn", "police.bj@example.gov.cn");
    let (k1, k4) = (key(1), key(4));
    let message = |r: &Receipt| match r {
        Receipt::Rejected { message, .. } => message.clone(),
        other => format!("{other:?}"),
    };

    let r = c.submit(&sign(&small("g-1"), "gz-1", &k1)).await.unwrap();
    assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");
    // gz over its own rate: refused by its bucket, which spends no global token.
    let r = c.submit(&sign(&small("g-2"), "gz-1", &k1)).await.unwrap();
    assert_eq!(code(&r), "rate_limited");
    assert!(message(&r).contains("authority gz"), "{}", message(&r));
    let r = c
        .submit(&sign(&bj_small("g-3"), "bj-1", &k4))
        .await
        .unwrap();
    assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");
    // The global bucket is empty now: bj is refused although its own rate allows it.
    let r = c
        .submit(&sign(&bj_small("g-4"), "bj-1", &k4))
        .await
        .unwrap();
    assert_eq!(code(&r), "rate_limited");
    assert!(message(&r).contains("global"), "{}", message(&r));
    // Unauthenticated traffic never spends it: an unknown key is refused first.
    let r = c
        .submit(&sign(&small("g-5"), "nobody", &key(9)))
        .await
        .unwrap();
    assert_eq!(code(&r), "key_unknown");
    // It refills at 2 per second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = c
        .submit(&sign(&bj_small("g-6"), "bj-1", &k4))
        .await
        .unwrap();
    assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");
    assert_eq!(d.pipeline.journal().alert_count().unwrap(), 3);
    // Counted under the same result label as per-authority refusals.
    let text = d.metrics.encode();
    assert!(
        text.contains("tocsin_alerts_total{result=\"rate_limited\"} 2"),
        "{text}"
    );
    c.close().await;
    d.shutdown().await;
}
