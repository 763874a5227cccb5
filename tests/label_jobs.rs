//! Print jobs end to end: the daemon sends the rendered ZPL of a signed alert to a
//! label partner's raw print port (a local TCP listener standing in for a printer's
//! port 9100) and to another partner's HTTPS-style print service, each in the
//! partner's language; a feed-only partner gets no label and a label-only partner no
//! feed; a Cancel ("child found") sends the withdrawal label to both.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use parking_lot::Mutex;
use support::*;
use tocsin::channel::feed::verify_signature_header;
use tocsin::config::{
    AreaSettings, CircleSettings, LabelPartnerSettings, LabelTransportKind, PartnerSettings,
};
use tocsin::daemon::{Daemon, Extras};
use tocsin::ingest::Receipt;
use tocsin::testkit::printer::RawPrinter;

const SECRET: &str = "print-secret";

type Posts = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A print service taking POSTed ZPL.
async fn print_service() -> (SocketAddr, Posts) {
    let posts: Posts = Arc::new(Mutex::new(Vec::new()));
    let p = posts.clone();
    let app = axum::Router::new().route(
        "/jobs",
        post(move |h: HeaderMap, body: Bytes| {
            let p = p.clone();
            async move {
                p.lock().push((h, body.to_vec()));
                axum::http::StatusCode::ACCEPTED
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (addr, posts)
}

fn label_partner(
    name: &str,
    transport: LabelTransportKind,
    address: String,
    lang: &str,
) -> PartnerSettings {
    PartnerSettings {
        name: name.into(),
        endpoint: String::new(),
        feed: false,
        label: Some(LabelPartnerSettings {
            transport,
            address,
            language: lang.into(),
        }),
        secret: Some(SECRET.into()),
        secret_file: None,
        coverage: AreaSettings {
            circles: vec![CircleSettings {
                lat: 23.0,
                lon: 113.5,
                radius_km: 300.0,
            }],
            ..Default::default()
        },
        tests: false,
    }
}

fn assert_zpl(job: &[u8], want_text_fields: usize) {
    let zpl = std::str::from_utf8(job).expect("ZPL is ASCII");
    assert!(zpl.starts_with("^XA"), "{}", &zpl[..40.min(zpl.len())]);
    assert!(zpl.trim_end().ends_with("^XZ"));
    assert!(zpl.contains("^PW812") && zpl.contains("^LL1218"));
    assert!(
        zpl.matches("^GFA,").count() >= want_text_fields,
        "graphic fields"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_reach_printers_and_a_cancel_withdraws_them() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let (feed_addr, feed) = partner("feed-secret").await;
    let printer = RawPrinter::start().await.unwrap();
    let printer_addr = printer.addr();
    let (service_addr, posts) = print_service().await;
    let mut s = settings(p, &[("news".to_string(), feed_addr, "feed-secret")]);
    s.partners.push(label_partner(
        "parcels-raw",
        LabelTransportKind::Raw,
        printer_addr.to_string(),
        "zh-CN",
    ));
    s.partners.push(label_partner(
        "parcels-https",
        LabelTransportKind::Https,
        format!("http://{service_addr}/jobs"),
        "en-US",
    ));
    let daemon = Daemon::start(s, Extras::default()).await.unwrap();
    let send = |xml: String| {
        let addr = daemon.ingest_addr;
        let dir = p.to_path_buf();
        async move {
            let c = client(&dir, addr).await;
            let r = c.submit(&sign(&xml, "gz-1", &key(1))).await.unwrap();
            c.close().await;
            r
        }
    };
    let original = alert_xml("label-1");
    let r = send(original.clone()).await;
    assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");
    assert!(wait_for(20, || printer.jobs().len() == 1 && posts.lock().len() == 1).await);
    assert_zpl(&printer.jobs()[0], 4);
    {
        let posts = posts.lock();
        let (h, body) = &posts[0];
        assert_zpl(body, 4);
        assert_eq!(h["content-type"], "application/vnd.zebra.zpl");
        assert_eq!(h["tocsin-job"], "print");
        let sig = h["tocsin-signature"].to_str().unwrap();
        assert!(verify_signature_header(SECRET.as_bytes(), sig, body));
        assert!(h.contains_key("idempotency-key"));
    }
    // The two languages give different labels; the feed partner got the envelope only.
    assert_ne!(printer.jobs()[0], posts.lock()[0].1);
    assert!(wait_for(10, || feed.distinct() == 1).await);

    // The child is found: a Cancel withdraws the notice at both partners.
    let cancel = follow_up(&original, "label-2", "Cancel");
    let r = send(cancel).await;
    assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");
    assert!(wait_for(20, || printer.jobs().len() == 2 && posts.lock().len() == 2).await);
    assert_zpl(&printer.jobs()[1], 2);
    {
        let posts = posts.lock();
        assert_eq!(posts[1].0["tocsin-job"], "withdraw");
        assert_ne!(
            posts[1].0["idempotency-key"], posts[0].0["idempotency-key"],
            "a withdrawal is a new job"
        );
    }
    let m = daemon.metrics.encode();
    assert!(
        m.contains("tocsin_deliveries_total{channel=\"label\",outcome=\"delivered\"} 4"),
        "{m}"
    );
    daemon.shutdown().await;
}

/// With `fetch_photos`, a photo the alert only links (`<uri>`) is fetched and printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_photos_are_fetched_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let printer = RawPrinter::start().await.unwrap();
    // A photo server: a 200×260 gradient JPEG, counting fetches.
    let mut jpeg = Vec::new();
    let img = image::GrayImage::from_fn(200, 260, |x, y| image::Luma([((x + y) % 256) as u8]));
    img.write_to(
        &mut std::io::Cursor::new(&mut jpeg),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    let fetched = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let f = fetched.clone();
    let app = axum::Router::new().route(
        "/photo.jpg",
        axum::routing::get(move || {
            let (f, jpeg) = (f.clone(), jpeg.clone());
            async move {
                f.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                ([("content-type", "image/jpeg")], jpeg)
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let photo_addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });

    let mut s = settings(p, &[]);
    s.channels.label.fetch_photos = true;
    s.partners.push(label_partner(
        "parcels-raw",
        LabelTransportKind::Raw,
        printer.addr().to_string(),
        "zh-CN",
    ));
    let daemon = Daemon::start(s, Extras::default()).await.unwrap();
    let xml = alert_xml("label-photo").replace(
        "https://police.example.gov.cn/alerts/GZPSB-CA-2026-1129-0001/photo.jpg",
        &format!("http://{photo_addr}/photo.jpg"),
    );
    let c = client(p, daemon.ingest_addr).await;
    let r = c.submit(&sign(&xml, "gz-1", &key(1))).await.unwrap();
    c.close().await;
    assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");
    assert!(wait_for(20, || printer.jobs().len() == 1).await);
    assert!(
        fetched.load(std::sync::atomic::Ordering::Relaxed) >= 1,
        "photo fetched"
    );
    let with_photo = printer.jobs()[0].clone();
    assert_zpl(&printer.jobs()[0], 4);
    // The same alert whose photo link is dead (404) prints without it ("NO PHOTO").
    let xml2 = alert_xml("label-nophoto").replace(
        "https://police.example.gov.cn/alerts/GZPSB-CA-2026-1129-0001/photo.jpg",
        &format!("http://{photo_addr}/missing.jpg"),
    );
    let c = client(p, daemon.ingest_addr).await;
    let r = c.submit(&sign(&xml2, "gz-1", &key(1))).await.unwrap();
    c.close().await;
    assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");
    assert!(wait_for(20, || printer.jobs().len() == 2).await);
    // Same size (every element is a full raster of its box), different dots.
    assert_eq!(with_photo.len(), printer.jobs()[1].len());
    assert_ne!(
        with_photo,
        printer.jobs()[1],
        "the photo's dots are printed"
    );
    daemon.shutdown().await;
}
