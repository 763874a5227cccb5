//! Disk faults against the real daemon binary: its journal file may not grow
//! ("disk full"), ingest answers `store_unavailable` instead of accepting,
//! nothing acknowledged is lost, the failed journal writes are timed in
//! `tocsin_ingest_stage_seconds`, and once space returns the next submission
//! is accepted without a restart.
//!
//! How the disk fills without root: the daemon runs with `SIGXFSZ` ignored
//! (`trap '' XFSZ` before `exec`, inherited across exec) and the test lowers
//! its `RLIMIT_FSIZE` soft limit with `prlimit --pid` (util-linux) to the
//! journal file's current size. Writes past that offset then fail with
//! `EFBIG`, the same I/O-error path through redb as `ENOSPC`, for root and
//! non-root alike (a process may lower and raise its soft limit up to the
//! hard limit; root ignores a read-only `chmod`, and a tmpfs mount needs
//! root). Raising the limit again is "space returns".

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::peers::{debian_exe, free_port};
use support::*;
use tocsin::ingest::Receipt;

/// The daemon under `sh -c 'trap "" XFSZ; exec tocsin …'` (same pid).
fn spawn(config: &std::path::Path) -> Child {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"trap '' XFSZ; exec "$0" serve --config "$1""#)
        .arg(env!("CARGO_BIN_EXE_tocsin"))
        .arg(config)
        .env("TOCSIN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tocsin serve")
}

/// Set the daemon's RLIMIT_FSIZE soft limit (`None` = unlimited).
fn file_size_limit(prlimit: &std::path::Path, pid: u32, soft: Option<u64>) {
    let soft = soft.map_or("unlimited".to_string(), |n| n.to_string());
    let st = Command::new(prlimit)
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--fsize={soft}:unlimited"),
        ])
        .status()
        .expect("run prlimit");
    assert!(
        st.success(),
        "prlimit --pid {pid} --fsize={soft}:unlimited failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_rejects_with_store_unavailable_and_recovers() {
    let prlimit = debian_exe("/usr/bin/prlimit", "util-linux");
    let dir = tempfile::tempdir().unwrap();
    let (addr, seen) = partner("disk").await;
    let (ingest, admin) = (support::process::free_udp_port(), free_port());
    let cfg = format!(
        r#"
[node]
state_dir = "{dir}"
dev_mode = true
[ingest]
listen = "127.0.0.1:{ingest}"
[admin]
listen = "127.0.0.1:{admin}"
[dispatch]
cursor_commit_ms = 20
retry_base_ms = 50
retry_max_ms = 400
[channels.feed]
rate_per_sec = 10000.0
[[standards]]
event_code = "CAE"
require = ["headline", "contact", "expires", "area"]
[[authorities]]
id = "gz"
name = "Guangzhou police"
events = ["CAE"]
rate_per_minute = 1000000
jurisdiction = {{ everywhere = true }}
[[authorities.keys]]
kid = "gz-1"
public_key = "{k1}"
[[partners]]
name = "disk-partner"
endpoint = "http://{addr}/alerts"
secret = "disk"
coverage = {{ everywhere = true }}
"#,
        dir = dir.path().display(),
        k1 = b64(&key(1)),
    );
    let cfg_path = dir.path().join("tocsin.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let ingest_addr: SocketAddr = format!("127.0.0.1:{ingest}").parse().unwrap();
    let mut child = spawn(&cfg_path);
    let pid = child.id();
    support::process::wait_ready(admin_addr, Some(&mut child), "start").await;
    let c = client(dir.path(), ingest_addr).await;
    let mut accepted: Vec<String> = Vec::new();
    let submit = |n: usize| {
        let xml = alert_xml(&format!("disk-{n}"));
        sign(&xml, "gz-1", &key(1))
    };
    let r = c.submit(&submit(0)).await.unwrap();
    let Receipt::Accepted { id, .. } = r else {
        panic!("{r:?}")
    };
    accepted.push(id);

    // The disk is full: the journal may not grow past its current size.
    let journal_file = dir.path().join("tocsin.redb");
    let size = std::fs::metadata(&journal_file).unwrap().len();
    file_size_limit(&prlimit, pid, Some(size));
    // A cursor or state write may have grown the file between reading its
    // size and the limit taking effect; past the limit nothing can grow it.
    let size = std::fs::metadata(&journal_file).unwrap().len().max(size);
    let mut refused = 0usize;
    let mut n = 1;
    while refused < 5 {
        assert!(
            n < 5000,
            "5,000 alerts never filled a {size}-byte journal limit"
        );
        match c.submit(&submit(n)).await.unwrap() {
            Receipt::Accepted { id, .. } => accepted.push(id),
            r => {
                assert_eq!(
                    r.code(),
                    Some("store_unavailable"),
                    "a full disk must be refused with store_unavailable: {r:?}"
                );
                refused += 1;
            }
        }
        n += 1;
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon died on the full disk"
    );
    assert!(
        std::fs::metadata(&journal_file).unwrap().len() <= size,
        "the journal grew past the limit"
    );
    println!(
        "disk full at {size} bytes: {} accepted before, then {refused} refused with store_unavailable",
        accepted.len()
    );
    // The failed writes are timed like the others: an operator sees a
    // failing disk in the journal's step of the receipt.
    let series = "tocsin_ingest_stage_seconds_count{stage=\"journal_write\"}";
    let timed = tocsin::testkit::prom::sample(&scrape(admin_addr).await, series)
        .unwrap_or_else(|| panic!("no {series} in /metrics"));
    assert!(
        timed >= (accepted.len() + refused) as f64,
        "{timed} journal writes timed, {} accepted and {refused} refused by the journal",
        accepted.len()
    );
    // Still full: still refused, nothing half-accepted.
    let r = c.submit(&submit(n)).await.unwrap();
    n += 1;
    if let Receipt::Accepted { id, .. } = r {
        accepted.push(id); // fitted into free pages inside the file: durable anyway
    } else {
        assert_eq!(r.code(), Some("store_unavailable"));
    }

    // Space returns: the next submission is accepted, same process.
    file_size_limit(&prlimit, pid, None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    let r = c.submit(&submit(n)).await.unwrap();
    let Receipt::Accepted { id, .. } = r else {
        panic!("after space returned the next submission was refused: {r:?}")
    };
    accepted.push(id);
    println!(
        "space returned: next submission accepted in {:.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    for k in 0..5 {
        let r = c.submit(&submit(n + 1 + k)).await.unwrap();
        let Receipt::Accepted { id, .. } = r else {
            panic!("{r:?}")
        };
        accepted.push(id);
    }
    assert_eq!(pid, child.id());
    assert!(child.try_wait().unwrap().is_none());

    // Nothing acknowledged is lost: every accepted alert is in the journal
    // and reaches the partner.
    let want: Vec<String> = accepted
        .iter()
        .map(|id| tocsin::channel::feed::idempotency_key(id, "disk-partner"))
        .collect();
    let delivered = wait_for(60, || {
        let k = seen.by_key.lock();
        want.iter().all(|w| k.contains_key(w))
    })
    .await;
    assert!(delivered, "an accepted alert never reached the partner");
    c.close().await;
    // Crash now (kill -9) and reopen: every acknowledged alert survives.
    child.kill().unwrap();
    child.wait().unwrap();
    let j = tocsin::journal::Journal::open(dir.path()).expect("journal opens after the faults");
    for id in &accepted {
        assert!(
            j.seq_of(id).unwrap().is_some(),
            "acknowledged alert {id} lost"
        );
    }
    assert_eq!(seen.invalid.load(Ordering::Relaxed), 0);
    println!(
        "{} acknowledged alerts, all in the journal after kill -9 and delivered",
        accepted.len()
    );
}
