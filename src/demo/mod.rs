//! `tocsin demo`: the whole flow on one machine with nothing installed. It
//! starts the real daemon in-process (embedded store under `var/demo`), a
//! deterministic synthetic audience, local partner receivers that verify
//! what they get, signs the sample missing-child alert (zh + en, circle) with
//! the dev authority key, submits it over QUIC, shows a progress bar per
//! channel and prints a report. Channels that have not landed yet (APNs, FCM,
//! SMS, e-mail) are stood in by in-process sinks, and the report says so.

pub mod receiver;
pub mod sample;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::alert::envelope::{key_id_for, sign1};
use crate::channel::SubscriberKind;
use crate::config::{AreaSettings, CircleSettings, PartnerSettings, Settings};
use crate::daemon::{Daemon, Extras};
use crate::dispatch::{AlertProgress, JobProgress};
use crate::ingest::Receipt;
use crate::subscribers::{Audience, AudienceLoader};
pub use sample::SAMPLE_ALERT;
use sample::{cap_time, set_elements};

/// Demo failures.
#[derive(Debug, thiserror::Error)]
#[error("demo: {0}")]
pub struct DemoError(pub String);

fn err(e: impl std::fmt::Display) -> DemoError {
    DemoError(e.to_string())
}

/// Options of `tocsin demo`.
#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    pub exit: bool,
    pub subscribers: u32,
    /// Simulated clock speed of the widening radius.
    pub speed: f64,
}

const EMBEDDED_CONFIG: &str = include_str!("../../config/tocsin.toml");

/// Set `<sent>` to `now` and every `<expires>` to `now + 48 h` (for `send --now`).
pub fn refresh_times(xml: &[u8], now: DateTime<Utc>) -> Result<Vec<u8>, DemoError> {
    let text = std::str::from_utf8(xml).map_err(|_| DemoError("CAP file is not UTF-8".into()))?;
    let t = set_elements(text, "sent", &cap_time(now));
    let t = set_elements(&t, "expires", &cap_time(now + chrono::Duration::hours(48)));
    Ok(t.into_bytes())
}

/// Channel mix of the synthetic audience (per mille): apns, fcm, sms, email.
const MIX: [(SubscriberKind, u32); 4] = [
    (SubscriberKind::Apns, 300),
    (SubscriberKind::Fcm, 450),
    (SubscriberKind::Sms, 150),
    (SubscriberKind::Email, 100),
];

/// Build a deterministic synthetic audience of `n` subscribers.
pub fn synthetic_audience(n: u32, seed: u64) -> Audience {
    let points = crate::target::synthetic::synthetic_points(n as usize, seed);
    let mut l = AudienceLoader::with_capacity(n as usize);
    let mut addr = String::with_capacity(32);
    for (i, (lat, lon)) in points.into_iter().enumerate() {
        let id = i as u32;
        let h = id.wrapping_mul(2_654_435_761) % 1000;
        let mut acc = 0;
        let mut kind = SubscriberKind::Fcm;
        for (k, share) in MIX {
            acc += share;
            if h < acc {
                kind = k;
                break;
            }
        }
        addr.clear();
        use std::fmt::Write;
        // Address shapes the providers accept: APNs tokens are 64 hex digits.
        let x = u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let _ = match kind {
            SubscriberKind::Apns => write!(addr, "{x:016x}{:048x}", id),
            SubscriberKind::Fcm => write!(addr, "demo-fcm:{x:016x}{id:08}"),
            SubscriberKind::Sms => write!(addr, "+86139{id:08}"),
            SubscriberKind::Email => write!(addr, "demo{id}@example.org"),
        };
        let lang = if id % 5 == 0 { "en-US" } else { "zh-CN" };
        l.add(id, kind, &addr, lat, lon, lang);
    }
    l.build()
}

/// The local push servers the demo runs.
struct PushServers {
    apns: crate::testkit::apns_server::ApnsServer,
    fcm: crate::testkit::fcm_server::FcmServer,
}

/// Start local APNs and FCM servers and point the settings at them.
fn start_push_servers(settings: &mut Settings) -> Result<PushServers, DemoError> {
    use crate::testkit::apns_server::{ApnsServer, ApnsServerOptions, DEFAULT_TOPIC};
    use crate::testkit::fcm_server::{FcmServer, FcmServerOptions};
    use crate::testkit::keys::{test_service_account, ApnsTestKey};
    let dir = settings.node.state_dir.join("push");
    std::fs::create_dir_all(&dir).map_err(err)?;
    let key = ApnsTestKey::generate().map_err(err)?;
    // Count per token (exactly-once check) without keeping every payload.
    let mut ao = ApnsServerOptions::from_key(&key);
    ao.record = false;
    let apns = ApnsServer::start(ao).map_err(err)?;
    let mut fo = FcmServerOptions::test();
    fo.record = false;
    let fcm = FcmServer::start(fo).map_err(err)?;
    let write = |name: &str, data: &[u8]| -> Result<std::path::PathBuf, DemoError> {
        let p = dir.join(name);
        std::fs::write(&p, data).map_err(err)?;
        Ok(p)
    };
    let a = &mut settings.channels.apns;
    a.enabled = true;
    a.base_url = apns.base_url();
    a.team_id = key.team_id.clone();
    a.key_id = key.key_id.clone();
    a.key_file = Some(write("apns.p8", key.p8_pem.as_bytes())?);
    a.topic = DEFAULT_TOPIC.into();
    a.ca = Some(write("apns-ca.pem", apns.ca_pem())?);
    a.rate_per_sec = 1_000_000.0;
    a.burst = 100_000;
    let f = &mut settings.channels.fcm;
    f.enabled = true;
    f.base_url = fcm.base_url();
    f.project_id = "tocsin-test".into();
    // The key's token_uri names the local server, as a real key names Google's.
    let mut sa: serde_json::Value = serde_json::from_str(test_service_account()).map_err(err)?;
    sa["token_uri"] = serde_json::Value::String(fcm.token_url());
    f.service_account_file = Some(write(
        "fcm-service-account.json",
        sa.to_string().as_bytes(),
    )?);
    f.token_url = Some(fcm.token_url());
    f.ca = Some(write("fcm-ca.pem", fcm.ca_pem())?);
    f.concurrency = 4000;
    f.rate_per_sec = 1_000_000.0;
    f.burst = 100_000;
    Ok(PushServers { apns, fcm })
}

/// Partner receivers the demo runs: name, centre, radius km.
const DEMO_PARTNERS: [(&str, f64, f64, f64); 6] = [
    ("carrier-guangzhou", 23.1291, 113.2644, 150.0),
    ("carrier-shenzhen", 22.5431, 114.0579, 120.0),
    ("news-app-south", 23.0, 113.5, 400.0),
    ("parcel-express-gd", 23.0215, 113.7518, 200.0),
    ("carrier-beijing", 39.9042, 116.4074, 150.0),
    ("carrier-shanghai", 31.2304, 121.4737, 150.0),
];

/// The local SMS centre and mail server the demo runs.
struct TextPeers {
    smsc: crate::testkit::smsc::SmscServer,
    smtp: crate::testkit::smtp_sink::SmtpSink,
}

/// Start a local SMS centre and SMTP server and point the SMS and e-mail channels at them.
async fn start_text_peers(settings: &mut Settings) -> std::io::Result<TextPeers> {
    use crate::config::{SmsTransportKind, SmscSettings, SmtpSecurity};
    let smsc = crate::testkit::smsc::SmscServer::start(false).await?;
    let smtp = crate::testkit::smtp_sink::SmtpSink::start().await?;
    let sms = &mut settings.channels.sms;
    sms.enabled = true;
    sms.transport = SmsTransportKind::Smpp;
    // Loopback peers: the demo's limits are the machine's, not a carrier's.
    (sms.concurrency, sms.rate_per_sec, sms.burst) = (4096, 1_000_000.0, 100_000);
    sms.smsc = vec![SmscSettings {
        name: "demo-smsc".into(),
        host: smsc.addr().ip().to_string(),
        port: smsc.addr().port(),
        system_id: "tocsin".into(),
        binds: 4,
        window: 64,
        rate_per_sec: 1_000_000.0,
        ..SmscSettings::default()
    }];
    let email = &mut settings.channels.email;
    email.enabled = true;
    email.host = smtp.addr().ip().to_string();
    email.port = smtp.addr().port();
    email.security = SmtpSecurity::None;
    (email.connections, email.concurrency) = (32, 1024);
    (email.rate_per_sec, email.burst) = (1_000_000.0, 100_000);
    Ok(TextPeers { smsc, smtp })
}

/// The child is found: the authority cancels. Push replaces every notification with
/// "found, thank you", the parcel partner's printer gets the withdrawal label, SMS goes
/// out as the standard says (`sms_on_cancel`), and the report shows it.
async fn cancel_step(
    daemon: &Daemon,
    original: &str,
    ident: &str,
    key: &ed25519_dalek::SigningKey,
    tls: &rustls::ClientConfig,
    printer: &crate::testkit::printer::RawPrinter,
    push: &PushServers,
) -> Result<(), DemoError> {
    println!("\nchild found: the authority sends a Cancel");
    let cancel = sample::follow_up(original, &format!("{ident}-found"), "Cancel", Utc::now());
    let env = sign1(cancel.as_bytes(), &key_id_for(&key.verifying_key()), key).map_err(err)?;
    let client = crate::client::IngestClient::connect(daemon.ingest_addr, "localhost", tls.clone())
        .await
        .map_err(err)?;
    let sent_at = Instant::now();
    let receipt = client.submit(&env).await.map_err(err)?;
    client.close().await;
    let Receipt::Accepted { receipt: id, .. } = &receipt else {
        return Err(DemoError(format!(
            "the Cancel was not accepted: {receipt:?}"
        )));
    };
    let progress = loop {
        if let Some(p) = daemon
            .dispatcher()
            .all_progress()
            .into_iter()
            .find(|p| &p.receipt == id)
        {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    while !progress.is_done() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for j in progress.jobs() {
        println!(
            "  {:<8} {:>10} delivered {:>8} failed",
            j.channel,
            j.delivered.load(Ordering::Relaxed),
            j.failed.load(Ordering::Relaxed)
        );
    }
    let tokens = push.apns.state().by_token.lock().clone();
    let twice = tokens.values().filter(|&&n| n == 2).count();
    println!(
        "  APNs tokens holding the alert then \"已找到，感谢关注\" / \"Found — thank you\": {twice} of {}",
        tokens.len()
    );
    println!(
        "  label jobs at the parcel printer: {} (the notice, then its withdrawal)",
        printer.jobs().len()
    );
    println!(
        "  Cancel sent → last delivery {:.2} s",
        sent_at.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Deliveries per channel over every stage: (channel, targeted, delivered, failed).
fn channel_totals(progress: &AlertProgress) -> Vec<(&'static str, u64, u64, u64)> {
    let mut out: Vec<(&'static str, u64, u64, u64)> = Vec::new();
    for j in progress.jobs() {
        let (t, d, f) = (
            j.targeted.load(Ordering::Relaxed),
            j.delivered.load(Ordering::Relaxed),
            j.failed.load(Ordering::Relaxed),
        );
        match out.iter_mut().find(|e| e.0 == j.channel) {
            Some(e) => (e.1, e.2, e.3) = (e.1 + t, e.2 + d, e.3 + f),
            None => out.push((j.channel, t, d, f)),
        }
    }
    out
}

/// Run the demo.
pub async fn run(opts: DemoOptions) -> Result<(), DemoError> {
    if !(opts.speed.is_finite() && opts.speed > 0.0) {
        return Err(DemoError("--speed must be a number above 0".into()));
    }
    let started = Instant::now();
    println!("tocsin demo — the whole flow on this machine\n");
    let mut settings = Settings::from_toml(EMBEDDED_CONFIG).map_err(err)?;
    settings.node.state_dir = "var/demo".into();
    let _ = std::fs::remove_file("var/demo/tocsin.redb");
    // Keep the configured ports when free, else take ephemeral ones.
    if std::net::UdpSocket::bind(settings.ingest.listen).is_err() {
        settings.ingest.listen.set_port(0);
    }
    if std::net::TcpListener::bind(settings.admin.listen).is_err() {
        settings.admin.listen.set_port(0);
    }
    let dev = crate::dev::ensure(&settings.node.state_dir).map_err(err)?;
    let key = crate::dev::read_signing_key(&dev.authority_key).map_err(err)?;

    // Partner receivers, verifying the authority's signature themselves; the parcel
    // partner also prints labels on a local raw print port.
    let printer = crate::testkit::printer::RawPrinter::start()
        .await
        .map_err(err)?;
    let mut receivers = Vec::new();
    for (i, (name, lat, lon, r)) in DEMO_PARTNERS.iter().enumerate() {
        let secret = format!("demo-secret-{i}").into_bytes();
        let (addr, seen) = receiver::start(secret.clone(), Some(key.verifying_key()))
            .await
            .map_err(err)?;
        settings.partners.push(PartnerSettings {
            name: (*name).into(),
            endpoint: format!("http://{addr}/alerts"),
            secret: Some(String::from_utf8_lossy(&secret).into_owned()),
            secret_file: None,
            coverage: AreaSettings {
                circles: vec![CircleSettings {
                    lat: *lat,
                    lon: *lon,
                    radius_km: *r,
                }],
                ..Default::default()
            },
            tests: false,
            feed: true,
            label: name
                .starts_with("parcel")
                .then(|| crate::config::LabelPartnerSettings {
                    transport: crate::config::LabelTransportKind::Raw,
                    address: printer.addr().to_string(),
                    language: "zh-CN".into(),
                }),
        });
        receivers.push((*name, seen));
    }

    print!(
        "building {} synthetic subscribers over southern China … ",
        opts.subscribers
    );
    let t = Instant::now();
    let audience = Arc::new(
        tokio::task::spawn_blocking(move || synthetic_audience(opts.subscribers, 0x0070_c51a))
            .await
            .map_err(err)?,
    );
    println!("{:.1} s", t.elapsed().as_secs_f64());

    let push = start_push_servers(&mut settings).map_err(err)?;
    println!(
        "local APNs server {} and FCM server {} (HTTP/2 over TLS, real wire protocols)",
        push.apns.base_url(),
        push.fcm.base_url()
    );
    let peers = start_text_peers(&mut settings).await.map_err(err)?;
    println!(
        "local SMS centre smpp://{} (SMPP 3.4) and SMTP server {} (real wire protocols)",
        peers.smsc.addr(),
        peers.smtp.addr()
    );
    let extras = Extras {
        channels: Vec::new(),
        audience: Some(audience),
    };
    settings.dispatch.clock_speed = opts.speed;
    let widen: Vec<crate::target::expand::Step> = settings
        .standards
        .iter()
        .find(|s| s.event_code == "CAE")
        .map(|s| crate::config::widen_steps(&s.widen))
        .unwrap_or_default();
    let daemon = Daemon::start(settings, extras).await.map_err(err)?;
    println!(
        "daemon up: QUIC ingest {} · admin http://{}\n",
        daemon.ingest_addr, daemon.admin_addr
    );

    // Sign and send the sample alert: fresh times, a per-run identifier, and
    // only its circle (the province geocode dropped).
    let now = Utc::now();
    let ident = format!("demo-{}", now.format("%Y%m%dT%H%M%S%.3f"));
    let xml = sample::fresh_alert(&ident, now);
    let env = sign1(xml.as_bytes(), &key_id_for(&key.verifying_key()), &key).map_err(err)?;
    let roots = crate::tls::load_certs(&dev.cert).map_err(err)?;
    let tls = crate::tls::client_config(roots, None).map_err(err)?;
    let tls_for_cancel = tls.clone();
    let client = crate::client::IngestClient::connect(daemon.ingest_addr, "localhost", tls)
        .await
        .map_err(err)?;
    let sent_at = Instant::now();
    let receipt = client.submit(&env).await.map_err(err)?;
    println!(
        "receipt: {}",
        String::from_utf8_lossy(receipt.to_line().trim_ascii_end())
    );
    let Receipt::Accepted { .. } = &receipt else {
        return Err(DemoError("the sample alert was not accepted".into()));
    };

    // Progress bars per channel until every job is done.
    let progress = loop {
        if let Some(p) = daemon.dispatcher().all_progress().into_iter().next() {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mp = indicatif::MultiProgress::new();
    let style = indicatif::ProgressStyle::with_template(
        "{prefix:>11} [{bar:40}] {pos:>8}/{len:<8} {per_sec:>12}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    let widening = progress.stages_pending.load(Ordering::Acquire);
    if widening {
        println!(
            "widening radius on a simulated clock ×{} (an hour every {:.1} s): each step adds a bar for its new ring",
            opts.speed,
            3600.0 / opts.speed
        );
    }
    let stage0 = progress.jobs();
    let bars: Vec<_> = stage0
        .iter()
        .map(|j| {
            let b = mp.add(indicatif::ProgressBar::new(
                j.targeted.load(Ordering::Relaxed),
            ));
            b.set_style(style.clone());
            b.set_prefix(j.channel);
            b
        })
        .collect();
    // Later stages: one bar per step over all its channels, with when it started and ended.
    let mut steps: Vec<(indicatif::ProgressBar, f64, Option<f64>)> = Vec::new();
    loop {
        for (b, j) in bars.iter().zip(&stage0) {
            b.set_position(j.finished());
        }
        let jobs = progress.jobs();
        let stage_sum = |stage: usize, f: &dyn Fn(&JobProgress) -> u64| -> u64 {
            jobs.iter()
                .filter(|j| j.stage as usize == stage)
                .map(|j| f(j))
                .sum()
        };
        while jobs.iter().any(|j| j.stage as usize == steps.len() + 1) {
            let stage = steps.len() + 1;
            let b = mp.add(indicatif::ProgressBar::new(stage_sum(stage, &|j| {
                j.targeted.load(Ordering::Relaxed)
            })));
            b.set_style(style.clone());
            let step = widen.get(stage);
            b.set_prefix(format!(
                "+{:.0}h {:.0}km",
                step.map_or(0.0, |s| s.after_secs as f64 / 3600.0),
                step.map_or(0.0, |s| s.radius_km)
            ));
            steps.push((b, sent_at.elapsed().as_secs_f64(), None));
        }
        for (i, (b, _, ended)) in steps.iter_mut().enumerate() {
            b.set_position(stage_sum(i + 1, &|j| j.finished()));
            let done = jobs
                .iter()
                .filter(|j| j.stage as usize == i + 1)
                .all(|j| j.done.load(Ordering::Acquire));
            if done && ended.is_none() {
                *ended = Some(sent_at.elapsed().as_secs_f64());
            }
        }
        if progress.is_done() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for b in bars.iter().chain(steps.iter().map(|s| &s.0)) {
        b.finish();
    }
    if widening {
        let first: u64 = stage0
            .iter()
            .map(|j| j.targeted.load(Ordering::Relaxed))
            .sum();
        println!(
            "  step 0: {:>4.0} km round the last-seen point, as accepted: {first:>7} recipients",
            widen.first().map_or(0.0, |s| s.radius_km)
        );
        for (i, (b, started, ended)) in steps.iter().enumerate() {
            let step = widen.get(i + 1);
            println!(
                "  step {}: {:>4.0} km at +{:.0} h (simulated): a ring of {:>7} more, out {:.1}–{:.1} s after the alert",
                i + 1,
                step.map_or(0.0, |s| s.radius_km),
                step.map_or(0.0, |s| s.after_secs as f64 / 3600.0),
                b.length().unwrap_or(0),
                started,
                ended.unwrap_or(0.0)
            );
        }
    }
    let total = sent_at.elapsed();
    client.close().await;

    // Report.
    println!("\nreport");
    println!(
        "  {:<8} {:>10} {:>10} {:>8} {:>12}  note",
        "channel", "targeted", "delivered", "failed", "exactly-once"
    );
    let (mut targeted, mut delivered, mut failed) = (0, 0, 0);
    for (channel, t, d, f) in channel_totals(&progress) {
        targeted += t;
        delivered += d;
        failed += f;
        let exactly_once = |counts: &std::collections::HashMap<String, u32>| {
            let once = counts.values().filter(|&&n| n == 1).count() as u64;
            once == d && counts.len() as u64 == d
        };
        let (once, note) = match channel {
            "sms" => (
                exactly_once(&peers.smsc.state().messages_by_destination()),
                "SMPP 3.4 to the local SMS centre, GSM-7/UCS-2 with UDH parts",
            ),
            "email" => (
                exactly_once(&peers.smtp.state().by_recipient()),
                "SMTP to the local mail server, text + HTML",
            ),
            "label" => (
                printer.jobs().len() as u64 == d,
                "ZPL over raw TCP to the parcel partner's local printer port",
            ),
            "apns" => {
                let counts = push.apns.state().by_token.lock().clone();
                let once = counts.values().filter(|&&n| n == 1).count() as u64;
                (
                    once == d && counts.len() as u64 == d,
                    "HTTP/2 + TLS to the local APNs server, JWT checked",
                )
            }
            "fcm" => {
                let counts = push.fcm.state().by_token.lock().clone();
                let once = counts.values().filter(|&&n| n == 1).count() as u64;
                (
                    once == d && counts.len() as u64 == d,
                    "HTTP/2 + TLS to the local FCM server, OAuth checked",
                )
            }
            _ => {
                let hits: u64 = receivers
                    .iter()
                    .map(|(_, r)| r.valid.load(Ordering::Relaxed))
                    .sum();
                let distinct: u64 = receivers.iter().map(|(_, r)| r.distinct() as u64).sum();
                (
                    hits == d && distinct == d,
                    "HTTP POST to local partner receivers, signatures verified",
                )
            }
        };
        println!(
            "  {:<8} {:>10} {:>10} {:>8} {:>12}  {}",
            channel,
            t,
            d,
            f,
            if once { "yes" } else { "NO" },
            note
        );
    }
    let first = progress.first_delivery.get().map_or("-".to_string(), |d| {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    });
    println!("\n  targeted {targeted} · delivered {delivered} · failed {failed}");
    println!(
        "  time to first delivery {first} · total {:.2} s (alert sent → last delivery)",
        total.as_secs_f64()
    );
    println!(
        "  partners reached: {}",
        receivers
            .iter()
            .filter(|(_, r)| r.valid.load(Ordering::Relaxed) > 0)
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  metrics: http://{}/metrics · alerts: http://{}/v1/alerts · feed: http://{}/feeds/alerts.atom", daemon.admin_addr, daemon.admin_addr, daemon.admin_addr);
    println!("  demo wall time {:.1} s", started.elapsed().as_secs_f64());
    if failed > 0 || delivered != targeted {
        daemon.shutdown().await;
        return Err(DemoError(format!(
            "{} of {targeted} deliveries did not succeed",
            targeted - delivered
        )));
    }
    cancel_step(
        &daemon,
        &xml,
        &ident,
        &key,
        &tls_for_cancel,
        &printer,
        &push,
    )
    .await?;
    if !opts.exit {
        println!("\nserving until Ctrl-C …");
        let _ = tokio::signal::ctrl_c().await;
    }
    daemon.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_replaces_every_time() {
        let x = b"<alert><sent>2020-01-01T00:00:00-00:00</sent><info><expires>x</expires></info><info><expires>y</expires></info></alert>";
        let now = DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let out = String::from_utf8(refresh_times(x, now).unwrap()).unwrap();
        assert!(out.contains("<sent>2026-11-29T10:00:00-00:00</sent>"));
        assert_eq!(
            out.matches("<expires>2026-12-01T10:00:00-00:00</expires>")
                .count(),
            2
        );
    }
}
