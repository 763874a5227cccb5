//! Update and Cancel on every subscriber channel, end to end: push gets both under the
//! alert's collapse id (a Cancel as a short "found, thank you" notification), SMS and
//! e-mail only when the event's standard says so (`sms_on_update`, `email_on_update`,
//! `sms_on_cancel`, `email_on_cancel`). Peers: the local APNs server, the scripted SMS
//! centre and the SMTP sink, all speaking their real protocols.

mod support;

use std::sync::Arc;

use support::*;
use tocsin::channel::sms::text::{decode_gsm7, decode_ucs2, UDH_LEN};
use tocsin::channel::SubscriberKind;
use tocsin::config::{SmscSettings, SmtpSecurity};
use tocsin::ingest::Receipt;
use tocsin::subscribers::AudienceLoader;
use tocsin::testkit::apns_server::{ApnsServer, ApnsServerOptions, DEFAULT_TOPIC};
use tocsin::testkit::keys::ApnsTestKey;
use tocsin::testkit::smsc::{SmscServer, Submit};
use tocsin::testkit::smtp_sink::SmtpSink;

const LANGS: [&str; 2] = ["zh-CN", "en-US"];

/// The text of every single SMS or first part of a concatenated one (where the
/// `UPDATE: ` / `CANCELLED: ` prefix is).
fn first_part_texts(submits: &[Submit]) -> Vec<String> {
    submits
        .iter()
        .filter(|s| s.esm_class & 0x40 == 0 || s.short_message.get(5) == Some(&1))
        .map(|s| {
            let udhi = s.esm_class & 0x40 != 0;
            let body = &s.short_message[if udhi { UDH_LEN } else { 0 }..];
            if s.data_coding == 8 {
                decode_ucs2(body)
            } else {
                decode_gsm7(body)
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_and_cancels_follow_each_channels_policy() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let apns_key = ApnsTestKey::generate().unwrap();
    let apns = ApnsServer::start(ApnsServerOptions::from_key(&apns_key)).unwrap();
    let smsc = SmscServer::start(true).await.unwrap();
    let smtp = SmtpSink::start().await.unwrap();

    let mut s = settings(p, &[]);
    std::fs::write(p.join("apns.p8"), &apns_key.p8_pem).unwrap();
    std::fs::write(p.join("apns-ca.pem"), apns.ca_pem()).unwrap();
    let a = &mut s.channels.apns;
    (a.enabled, a.base_url, a.topic) = (true, apns.base_url(), DEFAULT_TOPIC.into());
    (a.team_id, a.key_id) = (apns_key.team_id.clone(), apns_key.key_id.clone());
    (a.key_file, a.ca) = (Some(p.join("apns.p8")), Some(p.join("apns-ca.pem")));
    let sms = &mut s.channels.sms;
    sms.enabled = true;
    sms.max_parts = 3;
    sms.smsc = vec![SmscSettings {
        port: smsc.addr().port(),
        system_id: "tocsin".into(),
        binds: 1,
        ..SmscSettings::default()
    }];
    let e = &mut s.channels.email;
    (e.enabled, e.port, e.security) = (true, smtp.addr().port(), SmtpSecurity::None);
    // The child-abduction standard: Updates by e-mail, Cancels by SMS.
    let std = &mut s.standards[0];
    (std.sms_on_update, std.email_on_update) = (false, true);
    (std.sms_on_cancel, std.email_on_cancel) = (true, false);

    let mut l = AudienceLoader::with_capacity(6);
    for (i, lang) in LANGS.iter().enumerate() {
        let (lat, lon, id) = (23.10 + i as f64 * 0.01, 113.26, i as u32 * 3);
        l.add(
            id,
            SubscriberKind::Apns,
            &format!("{:064x}", 0xabc0 + i),
            lat,
            lon,
            lang,
        );
        l.add(
            id + 1,
            SubscriberKind::Sms,
            &format!("+8613900000{i:03}"),
            lat,
            lon,
            lang,
        );
        l.add(
            id + 2,
            SubscriberKind::Email,
            &format!("p{i}@example.org"),
            lat,
            lon,
            lang,
        );
    }
    let daemon = start_with(s, Arc::new(l.build())).await;
    let send = |xml: String, seq: u64| {
        let (dir, addr, d) = (p.to_path_buf(), daemon.ingest_addr, &daemon);
        async move {
            let r = submit(&dir, addr, &xml).await;
            assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");
            let done = wait_for(30, || {
                d.dispatcher().progress(seq).is_some_and(|p| p.is_done())
            })
            .await;
            assert!(done, "{:?}", d.dispatcher().progress(seq).map(|p| p.view()));
        }
    };

    let original = alert_xml("follow-1");
    send(original.clone(), 1).await;
    send(follow_up(&original, "follow-2", "Update"), 2).await;
    send(follow_up(&original, "follow-3", "Cancel"), 3).await;

    // Push: Alert, Update and Cancel for every token, one collapse id; the Cancel thanks.
    let pushes = apns.state().received();
    assert_eq!(pushes.len(), 6, "{pushes:?}");
    let collapse = pushes[0].collapse_id.clone();
    assert!(pushes.iter().all(|r| r.collapse_id == collapse));
    let titles: Vec<String> = pushes[4..]
        .iter()
        .map(|r| {
            r.payload["aps"]["alert"]["title"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut titles = titles;
    titles.sort();
    assert_eq!(titles, ["Found — thank you", "已找到，感谢关注"]);
    assert!(pushes[4..]
        .iter()
        .all(|r| r.payload["msg_type"] == "Cancel"));

    // SMS: the Alert and, by the standard, the Cancel; never the Update.
    let by_number = smsc.state().messages_by_destination();
    assert_eq!(by_number.len(), 2);
    assert!(by_number.values().all(|&n| n == 2), "{by_number:?}");
    let texts = first_part_texts(&smsc.state().submits());
    assert_eq!(
        texts
            .iter()
            .filter(|t| t.starts_with("CANCELLED: "))
            .count(),
        2,
        "{texts:?}"
    );
    assert!(!texts.iter().any(|t| t.starts_with("UPDATE: ")));

    // E-mail: the Alert and, by the standard, the Update; never the Cancel.
    let by_address = smtp.state().by_recipient();
    assert_eq!(by_address.len(), 2);
    assert!(by_address.values().all(|&n| n == 2), "{by_address:?}");
    daemon.shutdown().await;
}

/// An Update replaces the pending deliveries of the old content: SMS of the Alert stuck
/// at a stalled SMS centre are abandoned when the Update arrives, and every number gets
/// the Update's text once and never the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_replaces_pending_sms_of_the_old_content() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let smsc = SmscServer::start(true).await.unwrap();
    let st = smsc.state();
    let mut s = settings(p, &[]);
    let sms = &mut s.channels.sms;
    sms.enabled = true;
    sms.max_parts = 3;
    sms.smsc = vec![SmscSettings {
        port: smsc.addr().port(),
        system_id: "tocsin".into(),
        binds: 1,
        response_timeout_ms: 300,
        ..SmscSettings::default()
    }];
    s.standards[0].sms_on_update = true;
    let numbers: Vec<String> = (0..6).map(|i| format!("+8613900001{i:03}")).collect();
    let mut l = AudienceLoader::with_capacity(numbers.len());
    for (i, n) in numbers.iter().enumerate() {
        l.add(
            i as u32,
            SubscriberKind::Sms,
            n,
            23.10 + i as f64 * 0.005,
            113.26,
            LANGS[i % 2],
        );
    }
    let daemon = start_with(s, Arc::new(l.build())).await;
    let accepted = |xml: String| {
        let (dir, addr) = (p.to_path_buf(), daemon.ingest_addr);
        async move {
            let r = submit(&dir, addr, &xml).await;
            assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");
        }
    };

    st.stall(true);
    let original = alert_xml("replace-1");
    accepted(original.clone()).await;
    assert!(
        wait_for(10, || st.received() >= 1).await,
        "the Alert's SMS reached the SMSC"
    );
    accepted(follow_up(&original, "replace-2", "Update")).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    st.stall(false);
    let done = wait_for(30, || {
        daemon.dispatcher().progress(2).is_some_and(|p| p.is_done())
    })
    .await;
    assert!(
        done,
        "{:?}",
        daemon.dispatcher().progress(2).map(|p| p.view())
    );

    let by_number = st.messages_by_destination();
    assert_eq!(by_number.len(), numbers.len(), "{by_number:?}");
    assert!(by_number.values().all(|&n| n == 1), "{by_number:?}");
    for text in first_part_texts(&st.submits()) {
        assert!(text.starts_with("UPDATE: "), "old content went out: {text}");
    }
    daemon.shutdown().await;
}
