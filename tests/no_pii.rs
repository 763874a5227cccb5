//! No personal data in logs or metric labels: the real binary runs the demo
//! (20,000 synthetic subscribers on every channel: APNs, FCM, SMPP, SMTP,
//! partner feeds, labels) with `RUST_LOG=trace`; its whole stdout and stderr
//! and the `/metrics` text scraped during the run must not contain a single
//! recipient address (APNs token, FCM token, phone number with or without
//! `+`, e-mail address). Any hit fails with the offending line. A second
//! test runs `tocsin serve` at trace level with an SMPP password and SMTP
//! AUTH credentials against real peers (the testkit SMSC, aiosmtpd): neither
//! password, in plain text or as the base64 of an AUTH exchange, nor any
//! recipient appears in its output or `/metrics`.

mod support;

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

const SMPP_PASSWORD: &str = "Zq7-smpp";
const SMTP_USER: &str = "tocsin";
const SMTP_PASSWORD: &str = "S3cr3t-smtp-pw-91";

/// Kills the peer process when the test ends.
struct Peer(std::process::Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn secrets() -> Vec<String> {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    vec![
        SMPP_PASSWORD.into(),
        SMTP_PASSWORD.into(),
        // AUTH PLAIN carries base64("\0user\0password"), AUTH LOGIN base64(password).
        b64(&format!("\0{SMTP_USER}\0{SMTP_PASSWORD}")),
        b64(SMTP_PASSWORD),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_at_trace_level_logs_no_credentials() {
    use support::peers::{free_port, peer_python, wait_listening};
    let dir = tempfile::tempdir().unwrap();
    let smsc = tocsin::testkit::smsc::SmscServer::start(false)
        .await
        .unwrap();
    let smtp_port = free_port();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/smtp_server.py");
    let _smtp = Peer(
        std::process::Command::new(peer_python())
            .arg(script)
            .args(["--port", &smtp_port.to_string(), "--out"])
            .arg(dir.path().join("mail"))
            .args(["--auth", &format!("{SMTP_USER}:{SMTP_PASSWORD}")])
            .args(["--flaky-failures", "0", "--slow-ms", "0"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start smtp_server.py"),
    );
    assert!(
        wait_listening(smtp_port, Duration::from_secs(15)),
        "smtp_server.py"
    );

    // 10 phones and 10 mailboxes round Guangzhou, in the journal before start.
    let mut csv = String::from("id,channel,address,lat,lon,language\n");
    let mut addresses = Vec::new();
    for i in 0..10 {
        let phone = format!("+861380013{i:04}");
        let mail = format!("parent{i}@example.net");
        csv.push_str(&format!("{i},sms,{phone},23.13,113.26,zh-CN\n"));
        csv.push_str(&format!("{},email,{mail},23.13,113.26,en-US\n", 100 + i));
        addresses.push(phone[1..].to_string());
        addresses.push(mail);
    }
    {
        let journal = tocsin::journal::Journal::open(dir.path()).unwrap();
        let n = tocsin::subscribers::import_csv(csv.as_bytes(), &journal, |_| {}).unwrap();
        assert_eq!(n, 20);
    }

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
[channels.sms]
enabled = true
transport = "smpp"
[[channels.sms.smsc]]
name = "smsc-a"
host = "127.0.0.1"
port = {smsc_port}
system_id = "tocsin"
password = "{SMPP_PASSWORD}"
[channels.email]
enabled = true
host = "127.0.0.1"
port = {smtp_port}
security = "none"
username = "{SMTP_USER}"
password = "{SMTP_PASSWORD}"
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
        smsc_port = smsc.addr().port(),
        k1 = support::b64(&support::key(1)),
    );
    let cfg_path = dir.path().join("tocsin.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let log_path = dir.path().join("tocsin.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["serve", "--config"])
        .arg(&cfg_path)
        .env("RUST_LOG", "trace")
        .env_remove("TOCSIN_LOG")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start tocsin serve");
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let ingest_addr: SocketAddr = format!("127.0.0.1:{ingest}").parse().unwrap();
    let mut up = false;
    for _ in 0..300 {
        if let Ok(r) = reqwest::get(format!("http://{admin_addr}/readyz")).await {
            if r.status().is_success() {
                up = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        up,
        "daemon not ready:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    let r = support::submit(dir.path(), ingest_addr, &support::alert_xml("pii-1")).await;
    assert!(r.is_ok(), "{r:?}");

    // Both channels finish: 10 SMS at the SMSC, 10 mails stored by aiosmtpd.
    let url = format!("http://{admin_addr}/v1/alerts/1");
    let mut state = serde_json::Value::Null;
    for _ in 0..300 {
        state = reqwest::get(&url).await.unwrap().json().await.unwrap();
        if state["state"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state["state"], "completed", "{state}");
    let metrics = support::scrape(admin_addr).await;
    let _ = child.kill();
    let _ = child.wait();
    let accepted = smsc.state().accepted();
    assert!(accepted >= 10, "SMSC accepted {accepted}");
    assert!(
        metrics.contains("tocsin_deliveries_total{channel=\"email\",outcome=\"delivered\"} 10"),
        "{metrics}"
    );
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("TRACE"), "no trace-level output:\n{text}");
    let mut needles = secrets();
    needles.extend(addresses);
    let bad = hits(&text, &needles);
    assert!(
        bad.is_empty(),
        "secrets or addresses in the logs:\n{}",
        bad.join("\n")
    );
    let bad = hits(&metrics, &needles);
    assert!(
        bad.is_empty(),
        "secrets or addresses in /metrics:\n{}",
        bad.join("\n")
    );
}
