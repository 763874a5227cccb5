//! `kill -9` of a real daemon process in the middle of a fan-out: after a
//! restart on the same state directory the alert finishes, no partner is
//! missed, and repeats stay within the cursor window.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;
use tocsin::ingest::Receipt;

const PARTNERS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_mid_fanout_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, seen) = partner("k9").await;
    seen.delay_ms.store(40, Ordering::Relaxed);
    let (ingest, admin) = (
        support::process::free_udp_port(),
        support::peers::free_port(),
    );
    let mut cfg = format!(
        r#"
[node]
state_dir = "{dir}"
dev_mode = true
[ingest]
listen = "127.0.0.1:{ingest}"
[admin]
listen = "127.0.0.1:{admin}"
[dispatch]
batch_size = 2
max_in_flight_batches = 1
cursor_commit_ms = 10
[channels.feed]
concurrency = 2
rate_per_sec = 10000.0
[[standards]]
event_code = "CAE"
require = ["headline", "contact", "expires", "area"]
[[authorities]]
id = "gz"
name = "Guangzhou police"
events = ["CAE"]
jurisdiction = {{ everywhere = true }}
[[authorities.keys]]
kid = "gz-1"
public_key = "{k1}"
"#,
        dir = dir.path().display(),
        k1 = b64(&key(1)),
    );
    for i in 0..PARTNERS {
        cfg.push_str(&format!(
            "[[partners]]\nname = \"p{i:02}\"\nendpoint = \"http://{addr}/alerts\"\nsecret = \"k9\"\ncoverage = {{ everywhere = true }}\n"
        ));
    }
    let cfg_path = dir.path().join("tocsin.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let ingest_addr: SocketAddr = format!("127.0.0.1:{ingest}").parse().unwrap();

    let mut child = support::process::spawn_serve(&cfg_path);
    support::process::wait_ready(admin_addr, Some(&mut child), "start").await;
    let c = client(dir.path(), ingest_addr).await;
    let r = c
        .submit(&sign(&alert_xml("k9-1"), "gz-1", &key(1)))
        .await
        .unwrap();
    let Receipt::Accepted { targeted, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(targeted as usize, PARTNERS);
    // Let part of the fan-out happen, then kill -9.
    assert!(wait_for(20, || seen.valid.load(Ordering::Relaxed) >= 8).await);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = seen.distinct();
    assert!(
        before < PARTNERS,
        "killed too late to prove anything ({before})"
    );

    let mut child = support::process::spawn_serve(&cfg_path);
    support::process::wait_ready(admin_addr, Some(&mut child), "start").await;
    assert!(
        wait_for(30, || seen.distinct() == PARTNERS).await,
        "after restart only {} of {PARTNERS} partners were reached",
        seen.distinct()
    );
    // Repeats: at most the batches in flight when killed (2 batches × 2).
    let repeats: u32 = seen.by_key.lock().values().map(|n| n - 1).sum();
    assert!(repeats <= 4, "{repeats} repeated deliveries");
    // The alert is completed in the journal view.
    let url = format!("http://{admin_addr}/v1/alerts/1");
    let mut state = String::new();
    for _ in 0..100 {
        let v: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        state = v["state"].as_str().unwrap_or_default().to_string();
        if state == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "completed");
    child.kill().unwrap();
    child.wait().unwrap();
}
