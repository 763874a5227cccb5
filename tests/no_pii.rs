//! No personal data in logs or metric labels: the real binary runs the demo
//! (20,000 synthetic subscribers on every channel: APNs, FCM, SMPP, SMTP,
//! partner feeds, labels) with `RUST_LOG=trace`; its whole stdout and stderr
//! and the `/metrics` text scraped during the run must not contain a single
//! recipient address (APNs token, FCM token, phone number with or without
//! `+`, e-mail address). Any hit fails with the offending line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

/// The seed `tocsin demo` builds its audience with (src/demo/mod.rs).
const DEMO_SEED: u64 = 0x0070_c51a;
const SUBSCRIBERS: u32 = 20_000;

/// Every form an address of the synthetic audience could appear in.
fn needles() -> Vec<String> {
    let a = tocsin::demo::synthetic_audience(SUBSCRIBERS, DEMO_SEED);
    let mut out = Vec::with_capacity(a.len() * 2);
    for id in 0..a.len() as u32 {
        let addr = a.address(id).to_string();
        // A phone number as an SMPP destination_addr has no '+'; an FCM
        // token may be logged without its prefix.
        if let Some(digits) = addr.strip_prefix('+') {
            out.push(digits.to_string());
        } else if let Some((_, token)) = addr.split_once(':') {
            out.push(token.to_string());
        } else {
            out.push(addr);
        }
    }
    out
}

/// Lines of `text` containing any needle (first 5).
fn hits(text: &str, needles: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for n in needles {
        if let Some(i) = text.find(n.as_str()) {
            let start = text[..i].rfind('\n').map_or(0, |j| j + 1);
            let end = text[i..].find('\n').map_or(text.len(), |j| i + j);
            let line: String = text[start..end].chars().take(400).collect();
            found.push(format!("{n:?} in: {line}"));
            if found.len() == 5 {
                break;
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_at_trace_level_logs_and_labels_no_address() {
    let cwd = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["demo", "--exit", "--subscribers", &SUBSCRIBERS.to_string()])
        .args(["--speed", "3600"])
        .current_dir(cwd.path())
        .env("RUST_LOG", "trace")
        .env_remove("TOCSIN_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start tocsin demo");
    let mut stderr = child.stderr.take().unwrap();
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = String::new();
    let metrics = Arc::new(Mutex::new(String::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let run = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split_once("admin http://").map(|(_, r)| r) {
                let addr: Option<SocketAddr> =
                    rest.split_whitespace().next().and_then(|a| a.parse().ok());
                if let (Some(addr), true) = (addr, metrics.lock().is_empty()) {
                    let (m, s) = (metrics.clone(), stop.clone());
                    tokio::spawn(async move {
                        let url = format!("http://{addr}/metrics");
                        while !s.is_cancelled() {
                            if let Ok(r) = reqwest::get(&url).await {
                                if let Ok(t) = r.text().await {
                                    if t.contains("tocsin_deliveries_total") {
                                        *m.lock() = t;
                                    }
                                }
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    });
                }
            }
            out.push_str(&line);
            out.push('\n');
        }
        child.wait().await
    };
    let status = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the demo finished within 3 minutes")
        .unwrap();
    stop.cancel();
    let err = err_task.await.unwrap();
    assert!(status.success(), "demo failed: {status}\n{out}\n{err}");
    let text = format!("{out}{err}");
    assert!(text.contains("delivered"), "no report:\n{text}");
    // RUST_LOG was honoured: there are trace events to look through.
    assert!(text.contains("TRACE"), "no trace-level output:\n{text}");
    let metrics = metrics.lock().clone();
    assert!(
        metrics.contains("tocsin_deliveries_total{channel=\"sms\""),
        "no /metrics scraped after the fan-out"
    );

    let needles = needles();
    assert_eq!(needles.len(), SUBSCRIBERS as usize);
    let bad = hits(&text, &needles);
    assert!(bad.is_empty(), "addresses in the logs:\n{}", bad.join("\n"));
    let bad = hits(&metrics, &needles);
    assert!(bad.is_empty(), "addresses in /metrics:\n{}", bad.join("\n"));
}
