//! Key lifecycle: two keys of one authority overlap during a rotation and
//! both verify; the old one is `key_expired` after its `not_after`, a new one
//! `key_not_yet_valid` before its `not_before`. A reload swaps keys,
//! revocations and authorities without a restart, keeps rate buckets, and a
//! bad config changes nothing; SIGHUP does the same to a real `tocsin serve`
//! process (same PID, earlier alerts still there).

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::Duration;

use chrono::Utc;
use support::*;
use tocsin::config::KeySettings;
use tocsin::daemon::{Daemon, Extras};
use tocsin::ingest::Receipt;

fn key_settings(kid: &str, seed: u8) -> KeySettings {
    KeySettings {
        kid: kid.into(),
        public_key: Some(b64(&key(seed))),
        public_key_file: None,
        not_before: None,
        not_after: None,
        revoked: false,
    }
}

/// A small alert (20 km circle) inside gz's jurisdiction.
fn small(id: &str) -> String {
    alert_xml(id).replace("23.1291,113.2644 100", "23.1291,113.2644 20")
}

fn accepted(r: &Receipt) -> bool {
    matches!(r, Receipt::Accepted { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_overlap_then_expiry_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), &[]);
    let now = Utc::now();
    let switch = now + chrono::Duration::seconds(3);
    let gz = &mut s.authorities[0];
    gz.rate_per_minute = 600;
    // Old key gz-1 retires at `switch`; new key gz-2 has been valid since a minute ago.
    gz.keys[0].not_after = Some(switch);
    let mut next = key_settings("gz-2", 6);
    next.not_before = Some(now - chrono::Duration::minutes(1));
    gz.keys.push(next);
    // The key after that becomes valid at `switch`.
    let mut later = key_settings("gz-3", 7);
    later.not_before = Some(switch);
    gz.keys.push(later);
    let d = Daemon::start(s, Extras::default()).await.unwrap();
    let c = client(dir.path(), d.ingest_addr).await;

    // Overlap: both the old and the new key verify.
    let r = c
        .submit(&sign(&small("rot-1"), "gz-1", &key(1)))
        .await
        .unwrap();
    assert!(accepted(&r), "old key during the overlap: {r:?}");
    let r = c
        .submit(&sign(&small("rot-2"), "gz-2", &key(6)))
        .await
        .unwrap();
    assert!(accepted(&r), "new key during the overlap: {r:?}");
    let r = c
        .submit(&sign(&small("rot-3"), "gz-3", &key(7)))
        .await
        .unwrap();
    assert_eq!(code(&r), "key_not_yet_valid");

    let wait = (switch - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(300);
    tokio::time::sleep(wait).await;

    let r = c
        .submit(&sign(&small("rot-4"), "gz-1", &key(1)))
        .await
        .unwrap();
    assert_eq!(code(&r), "key_expired");
    let r = c
        .submit(&sign(&small("rot-5"), "gz-2", &key(6)))
        .await
        .unwrap();
    assert!(accepted(&r), "new key after the switch: {r:?}");
    let r = c
        .submit(&sign(&small("rot-6"), "gz-3", &key(7)))
        .await
        .unwrap();
    assert!(accepted(&r), "gz-3 after its not_before: {r:?}");
    assert_eq!(d.journal().alert_count().unwrap(), 4);
    c.close().await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_authorities_keeps_buckets_and_refuses_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), &[]);
    s.authorities[0].rate_per_minute = 4;
    let d = Daemon::start(s.clone(), Extras::default()).await.unwrap();
    let c = client(dir.path(), d.ingest_addr).await;
    for i in 0..3 {
        let r = c
            .submit(&sign(&small(&format!("rl-{i}")), "gz-1", &key(1)))
            .await
            .unwrap();
        assert!(accepted(&r), "{r:?}");
    }

    // New config: gz-1 revoked, gz-new added, bj gone, shz new; gz's rate unchanged.
    let mut next = s.clone();
    next.authorities[0].keys[0].revoked = true;
    next.authorities[0].keys.push(key_settings("gz-new", 8));
    next.authorities.retain(|a| a.id != "bj");
    let mut shz = s.authorities[1].clone();
    shz.id = "shz".into();
    shz.senders = vec!["police.shz@example.gov.cn".into()];
    let shz_small =
        |ident: &str| small(ident).replace("police.gz@example.gov.cn", "police.shz@example.gov.cn");
    shz.events = vec!["CAE".into()];
    shz.keys = vec![key_settings("shz-1", 10)];
    shz.jurisdiction = s.authorities[0].jurisdiction.clone();
    next.authorities.push(shz);
    let report = d.reload(&next).expect("reload");
    // Dev mode (the test settings) adds the `dev` authority with one key.
    assert_eq!(report.authorities, 3);
    assert_eq!(report.keys, 6); // gz-1, gz-revoked, gz-expired, gz-new, shz-1, dev
    assert_eq!(report.revoked, 2);
    assert_eq!(report.added, vec!["shz".to_string()]);
    assert_eq!(report.removed, vec!["bj".to_string()]);
    assert_eq!(report.rates_kept, 2); // gz, dev

    let r = c
        .submit(&sign(&small("rl-a"), "gz-1", &key(1)))
        .await
        .unwrap();
    assert_eq!(code(&r), "key_revoked");
    let r = c
        .submit(&sign(&small("rl-b"), "bj-1", &key(4)))
        .await
        .unwrap();
    assert_eq!(code(&r), "key_unknown");
    let r = c
        .submit(&sign(&shz_small("rl-c"), "shz-1", &key(10)))
        .await
        .unwrap();
    assert!(accepted(&r), "new authority: {r:?}");
    // gz's bucket carried over: 3 of 4 used before the reload, one left.
    let r = c
        .submit(&sign(&small("rl-d"), "gz-new", &key(8)))
        .await
        .unwrap();
    assert!(accepted(&r), "new key: {r:?}");
    let r = c
        .submit(&sign(&small("rl-e"), "gz-new", &key(8)))
        .await
        .unwrap();
    assert_eq!(code(&r), "rate_limited", "the reload refilled gz's bucket");

    // A bad config (a key that is not base64) is refused; nothing changes.
    let mut bad = next.clone();
    bad.authorities[1].keys[0].public_key = Some("not a key!".into());
    bad.authorities[1].keys.push(key_settings("shz-2", 11));
    let e = d.reload(&bad).unwrap_err().to_string();
    assert!(e.contains("shz-1") && e.contains("base64"), "{e}");
    let r = c
        .submit(&sign(&shz_small("rl-f"), "shz-1", &key(10)))
        .await
        .unwrap();
    assert!(
        accepted(&r),
        "old registry stays after a refused reload: {r:?}"
    );
    let r = c
        .submit(&sign(&shz_small("rl-g"), "shz-2", &key(11)))
        .await
        .unwrap();
    assert_eq!(code(&r), "key_unknown");
    // A duplicate authority id fails validation, also without a change.
    let mut dup = next.clone();
    dup.authorities.push(next.authorities[0].clone());
    assert!(d.reload(&dup).is_err());

    // Changing gz's rate starts a fresh bucket at the new rate.
    let mut faster = next.clone();
    faster.authorities[0].rate_per_minute = 2;
    let report = d.reload(&faster).expect("reload");
    assert_eq!(report.rates_kept, 2); // shz, dev
    let r = c
        .submit(&sign(&small("rl-h"), "gz-new", &key(8)))
        .await
        .unwrap();
    assert!(accepted(&r), "{r:?}");
    assert_eq!(d.journal().alert_count().unwrap(), 7);
    c.close().await;
    d.shutdown().await;
}

fn config_text(dir: &std::path::Path, ingest: u16, admin: u16, keys: &str) -> String {
    format!(
        r#"
[node]
state_dir = "{dir}"
dev_mode = true
[ingest]
listen = "127.0.0.1:{ingest}"
[admin]
listen = "127.0.0.1:{admin}"
[[standards]]
event_code = "CAE"
require = ["headline", "contact", "expires", "area"]
[[authorities]]
id = "gz"
name = "Guangzhou police"
events = ["CAE"]
jurisdiction = {{ everywhere = true }}
{keys}
"#,
        dir = dir.display(),
    )
}

fn key_toml(kid: &str, seed: u8, revoked: bool) -> String {
    format!(
        "[[authorities.keys]]\nkid = \"{kid}\"\npublic_key = \"{}\"\nrevoked = {revoked}\n",
        b64(&key(seed))
    )
}

fn hup(child: &Child) {
    let st = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(st.success());
}

/// Submit until the receipt's code is `want` (the reload is asynchronous to the signal).
async fn until_code(dir: &std::path::Path, addr: SocketAddr, env: &[u8], want: &str) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        let c = client(dir, addr).await;
        let r = c.submit(env).await.unwrap();
        c.close().await;
        last = code(&r).to_string();
        if last == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_keys_in_the_running_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, admin) = (
        support::process::free_udp_port(),
        support::peers::free_port(),
    );
    let cfg = dir.path().join("tocsin.toml");
    std::fs::write(
        &cfg,
        config_text(dir.path(), ingest, admin, &key_toml("gz-a", 1, false)),
    )
    .unwrap();
    // tracing's fmt layer writes to stdout.
    let log = std::fs::File::create(dir.path().join("tocsin.log")).unwrap();
    let log2 = log.try_clone().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("TOCSIN_LOG", "info")
        .stdout(log)
        .stderr(log2)
        .spawn()
        .expect("start tocsin serve");
    let pid = child.id();
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let ingest_addr: SocketAddr = format!("127.0.0.1:{ingest}").parse().unwrap();
    support::process::wait_ready(admin_addr, Some(&mut child), "start").await;

    let first = sign(&small("hup-1"), "gz-a", &key(1));
    let c = client(dir.path(), ingest_addr).await;
    let r = c.submit(&first).await.unwrap();
    assert!(accepted(&r), "{r:?}");
    c.close().await;

    // Revoke A, add B, SIGHUP.
    let keys = key_toml("gz-a", 1, true) + &key_toml("gz-b", 12, false);
    std::fs::write(&cfg, config_text(dir.path(), ingest, admin, &keys)).unwrap();
    hup(&child);
    let with_b = sign(&small("hup-2"), "gz-b", &key(12));
    let got = until_code(dir.path(), ingest_addr, &with_b, "(accepted)").await;
    assert_eq!(got, "(accepted)", "B after SIGHUP");
    let with_a = sign(&small("hup-3"), "gz-a", &key(1));
    let got = until_code(dir.path(), ingest_addr, &with_a, "key_revoked").await;
    assert_eq!(got, "key_revoked", "A after SIGHUP");

    // A broken config is refused and logged; B still works.
    std::fs::write(&cfg, "[[authorities]]\nid = \"gz\"\nthis is not toml\n").unwrap();
    hup(&child);
    let log_path = dir.path().join("tocsin.log");
    assert!(
        wait_for(10, || std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("reload refused"))
        .await,
        "no 'reload refused' line in the log:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    let c = client(dir.path(), ingest_addr).await;
    let r = c
        .submit(&sign(&small("hup-4"), "gz-b", &key(12)))
        .await
        .unwrap();
    assert!(accepted(&r), "B after a refused reload: {r:?}");
    c.close().await;

    // Same process throughout, and the first alert is still listed.
    assert!(child.try_wait().unwrap().is_none(), "the daemon exited");
    assert_eq!(child.id(), pid);
    let v: serde_json::Value = reqwest::get(format!("http://{admin_addr}/v1/alerts"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = v.to_string();
    assert!(text.contains("hup-1"), "first alert missing: {text}");
    assert!(text.contains("hup-2") && text.contains("hup-4"), "{text}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("reload: authorities swapped in"), "{log}");
    assert!(!log.contains(&b64(&key(12))), "a public key was logged");
    assert_eq!(log.matches("tocsin ready").count(), 1, "restarted: {log}");

    let _ = child.kill();
    let _ = child.wait();
}
