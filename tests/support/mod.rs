//! Shared helpers for the integration tests: settings for an in-process
//! daemon on ephemeral ports in a temporary state directory, authority keys,
//! CAP documents with fresh times, a QUIC client, and waiting helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::Utc;
use ed25519_dalek::SigningKey;
use tocsin::alert::envelope::sign1;
use tocsin::client::IngestClient;
use tocsin::config::Settings;
use tocsin::demo::receiver::{self, Received};
use tocsin::ingest::Receipt;

pub mod peers;
pub mod process;

#[allow(unused_imports)] // used by some test binaries only
pub use tocsin::demo::SAMPLE_ALERT as SAMPLE;

/// Deterministic test keys: valid, revoked, expired, other-authority.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn b64(k: &SigningKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(k.verifying_key().as_bytes())
}

pub use tocsin::demo::sample::cap_time;
pub use tocsin::demo::sample::remove_elements as remove_all;
pub use tocsin::demo::sample::set_elements as set_all;

/// The sample alert with a unique identifier, fresh times and only its circle.
pub fn alert_xml(ident: &str) -> String {
    tocsin::demo::sample::fresh_alert(ident, Utc::now())
}

/// An Update or Cancel of `xml` (same sender), referencing it.
pub fn follow_up(original: &str, ident: &str, msg_type: &str) -> String {
    let sender = between(original, "<sender>", "</sender>");
    let id = between(original, "<identifier>", "</identifier>");
    let sent = between(original, "<sent>", "</sent>");
    // one second later so `sent` differs
    let later = cap_time(Utc::now() + chrono::Duration::seconds(1));
    let x = remove_all(original, "references");
    let x = set_all(&x, "identifier", ident);
    let x = set_all(&x, "sent", &later);
    let x = set_all(&x, "msgType", msg_type);
    x.replacen(
        "<scope>Public</scope>",
        &format!("<scope>Public</scope>\n  <references>{sender},{id},{sent}</references>"),
        1,
    )
}

pub fn between<'a>(s: &'a str, a: &str, b: &str) -> &'a str {
    let i = s.find(a).expect("start") + a.len();
    let j = s[i..].find(b).expect("end") + i;
    &s[i..j]
}

/// Settings for an in-process daemon in `dir`: ephemeral ports, dev TLS,
/// authority `gz` (Guangdong jurisdiction) with valid key 1, revoked key 2,
/// expired key 3; authority `bj` (Beijing) with key 4; the CAE standard.
pub fn settings(dir: &Path, partners: &[(String, SocketAddr, &str)]) -> Settings {
    let mut toml = format!(
        r#"
[node]
state_dir = "{dir}"
dev_mode = true
[ingest]
listen = "127.0.0.1:0"
max_envelope_bytes = 65536
[admin]
listen = "127.0.0.1:0"
[dispatch]
batch_size = 4
max_in_flight_batches = 2
cursor_commit_ms = 20
retry_base_ms = 50
retry_max_ms = 400
max_attempts = 6
[channels.feed]
concurrency = 8
rate_per_sec = 10000.0
burst = 1000
timeout_ms = 3000

[[standards]]
event_code = "CAE"
require = ["headline", "description", "instruction", "contact", "expires", "area"]
max_expires_hours = 72

[[authorities]]
id = "gz"
name = "Guangzhou police"
senders = ["police.gz@example.gov.cn"]
events = ["CAE"]
jurisdiction = {{ circles = [{{ lat = 23.1291, lon = 113.2644, radius_km = 400.0 }}] }}
[[authorities.keys]]
kid = "gz-1"
public_key = "{k1}"
[[authorities.keys]]
kid = "gz-revoked"
public_key = "{k2}"
revoked = true
[[authorities.keys]]
kid = "gz-expired"
public_key = "{k3}"
not_after = "2020-01-01T00:00:00Z"

[[authorities]]
id = "bj"
name = "Beijing police"
events = ["MCA"]
jurisdiction = {{ circles = [{{ lat = 39.9042, lon = 116.4074, radius_km = 200.0 }}] }}
[[authorities.keys]]
kid = "bj-1"
public_key = "{k4}"
"#,
        dir = dir.display(),
        k1 = b64(&key(1)),
        k2 = b64(&key(2)),
        k3 = b64(&key(3)),
        k4 = b64(&key(4)),
    );
    for (name, addr, secret) in partners {
        toml.push_str(&format!(
            r#"
[[partners]]
name = "{name}"
endpoint = "http://{addr}/alerts"
secret = "{secret}"
coverage = {{ circles = [{{ lat = 23.0, lon = 113.5, radius_km = 300.0 }}] }}
"#
        ));
    }
    Settings::from_toml(&toml).expect("test settings parse")
}

pub fn sign(xml: &str, kid: &str, k: &SigningKey) -> Vec<u8> {
    sign1(xml.as_bytes(), kid, k).expect("sign")
}

/// A QUIC client trusting the dev certificate under `dir`.
pub async fn client(dir: &Path, addr: SocketAddr) -> IngestClient {
    let roots = tocsin::tls::load_certs(&dir.join("dev/cert.pem")).expect("dev cert");
    let tls = tocsin::tls::client_config(roots, None).expect("tls");
    IngestClient::connect(addr, "localhost", tls)
        .await
        .expect("connect")
}

/// Start a partner receiver trusting the `gz-1` key.
pub async fn partner(secret: &str) -> (SocketAddr, Arc<Received>) {
    receiver::start(secret.as_bytes().to_vec(), Some(key(1).verifying_key()))
        .await
        .expect("receiver")
}

/// Wait until `f` holds or `secs` pass.
pub async fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// The daemon's `/metrics` text from its admin listener at `admin`.
pub async fn scrape(admin: SocketAddr) -> String {
    reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub fn code(r: &Receipt) -> &str {
    r.code().unwrap_or("(accepted)")
}

/// Start an in-process daemon on `settings` with a prepared audience.
pub async fn start_with(
    settings: Settings,
    audience: Arc<tocsin::subscribers::Audience>,
) -> tocsin::daemon::Daemon {
    let extras = tocsin::daemon::Extras {
        channels: vec![],
        audience: Some(audience),
    };
    tocsin::daemon::Daemon::start(settings, extras)
        .await
        .expect("daemon starts")
}

/// Sign `xml` with the Guangzhou authority's key `gz-1` and submit it over QUIC.
pub async fn submit(dir: &Path, addr: SocketAddr, xml: &str) -> Receipt {
    let c = client(dir, addr).await;
    let r = c.submit(&sign(xml, "gz-1", &key(1))).await.expect("submit");
    c.close().await;
    r
}

/// A counting sink per subscriber kind (in `SubscriberKind::ALL` order), for
/// `capacity` subscriber ids.
pub fn subscriber_sinks(capacity: usize) -> Vec<Arc<tocsin::channel::sink::SinkChannel>> {
    use tocsin::channel::{sink::SinkChannel, Reach, SubscriberKind};
    SubscriberKind::ALL
        .iter()
        .map(|k| {
            Arc::new(SinkChannel::new(
                k.as_str(),
                Reach::Subscribers(*k),
                capacity,
            ))
        })
        .collect()
}

/// Daemon extras: `channels` as unthrottled in-process channels over `audience`.
pub fn sink_extras(
    channels: impl IntoIterator<Item = Arc<dyn tocsin::channel::Channel>>,
    audience: &Arc<tocsin::subscribers::Audience>,
) -> tocsin::daemon::Extras {
    let limits = tocsin::dispatch::ChannelLimits {
        concurrency: 4096,
        rate_per_sec: 1e7,
        burst: 100_000,
    };
    tocsin::daemon::Extras {
        channels: channels.into_iter().map(|c| (c, limits)).collect(),
        audience: Some(audience.clone()),
    }
}
