//! Hostile inputs, end to end over real QUIC (issue 6, "Prove it holds"):
//! one table of protocol, envelope, CAP XML, area and policy attacks, each
//! with the stable rejection code it must get, and proof that none of them
//! changed anything (the journal holds exactly the intentionally valid
//! alerts and the partner received exactly those envelopes). Rows the
//! `IngestClient` cannot produce (truncated, reset, trickled, unfinished or
//! oversized streams) are written with `quinn` directly. A second table
//! feeds hostile configuration to `Settings::from_toml`.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use coset::{iana, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use quinn::crypto::rustls::QuicClientConfig;
use support::*;
use tocsin::alert::envelope::{sign1, sign_many, CAP_CONTENT_TYPE};
use tocsin::config::Settings;
use tocsin::daemon::{Daemon, Extras};
use tocsin::ingest::protocol::MAX_RECEIPT_BYTES;
use tocsin::ingest::Receipt;

/// The server's per-stream read timeout in this test.
const READ_TIMEOUT_MS: u64 = 3_000;
/// `ingest.max_envelope_bytes` in this test (room for "thousands of geocodes").
const MAX_ENVELOPE: usize = 256 * 1024;
/// What a row expects when the server drops the stream without a receipt.
const NO_RECEIPT: &str = "(no receipt)";

/// How a row's bytes go on the wire.
enum Wire {
    /// Write everything and finish the stream (what a client does).
    Whole(Vec<u8>),
    /// Write these bytes, then reset the stream instead of finishing it.
    Reset(Vec<u8>),
    /// Write `chunk` bytes every `gap`, never finishing (slowloris); a valid
    /// alert is submitted on another connection meanwhile and must be accepted.
    Trickle { chunk: usize, gap: Duration },
    /// Write this many bytes without ever finishing the stream.
    Unfinished(usize),
}

/// One hostile input: its name, its bytes and the code it must get
/// (`"accepted"` / `"duplicate"` for the few valid rows).
struct Row {
    name: &'static str,
    wire: Wire,
    want: &'static str,
}

fn row(name: &'static str, want: &'static str, env: Vec<u8>) -> Row {
    Row {
        name,
        wire: Wire::Whole(env),
        want,
    }
}

fn gz(xml: &str) -> Vec<u8> {
    sign(xml, "gz-1", &key(1))
}

fn gz_bytes(xml: &[u8]) -> Vec<u8> {
    sign1(xml, "gz-1", &key(1)).expect("sign")
}

const CIRCLE: &str = "<circle>23.1291,113.2644 100</circle>";

/// The alert `ident` with its circle replaced by `area` (in both info blocks).
fn with_area(ident: &str, area: &str) -> String {
    alert_xml(ident).replace(CIRCLE, area)
}

/// The alert `ident` with the first info block's circle replaced by `area`.
fn with_first_area(ident: &str, area: &str) -> String {
    alert_xml(ident).replacen(CIRCLE, area, 1)
}

/// A COSE_Sign1 with custom headers (signature by gz-1 over the real structure).
fn cose1(
    alg: Option<iana::Algorithm>,
    kid: &[u8],
    content_type: &str,
    payload: Option<&[u8]>,
) -> Vec<u8> {
    use ed25519_dalek::Signer as _;
    let mut h = HeaderBuilder::new().content_type(content_type.to_string());
    if let Some(a) = alg {
        h = h.algorithm(a);
    }
    if !kid.is_empty() {
        h = h.key_id(kid.to_vec());
    }
    let k = key(1);
    let b = CoseSign1Builder::new().protected(h.build());
    let b = match payload {
        Some(p) => b
            .payload(p.to_vec())
            .create_signature(b"", |d| k.sign(d).to_bytes().to_vec()),
        None => b.create_detached_signature(b"", b"", |d| k.sign(d).to_bytes().to_vec()),
    };
    b.build().to_tagged_vec().expect("encode")
}

fn rows() -> Vec<Row> {
    let now = Utc::now();
    let base = alert_xml("hostile-base");
    let good = base.as_str();
    let good_env = gz(good);
    let mut v = vec![
        // --- the valid baseline (journaled) and its replays -------------------
        row("baseline alert", "accepted", good_env.clone()),
        row("exact resend", "duplicate", good_env.clone()),
        row(
            "same identifier, different bytes",
            "identifier_reused",
            gz(&good.replace("Li Xiaoming", "Li Xiao-ming")),
        ),
        // bj's own sender, event and area, signed with its own key:
        // everything checks out but whose alert it cancels.
        row(
            "bj cancels gz's alert",
            "reference_foreign",
            sign(
                &follow_up(good, "hostile-foreign", "Cancel")
                    .replace(
                        "<sender>police.gz@example.gov.cn</sender>",
                        "<sender>police.bj@example.gov.cn</sender>",
                    )
                    .replace("<value>CAE</value>", "<value>MCA</value>")
                    .replace(CIRCLE, "<circle>39.9042,116.4074 10</circle>"),
                "bj-1",
                &key(4),
            ),
        ),
    ];

    // --- QUIC stream and CBOR framing -------------------------------------
    v.push(row("empty stream", "envelope_malformed", vec![]));
    v.push(row(
        "truncated envelope (first half)",
        "envelope_malformed",
        good_env[..good_env.len() / 2].to_vec(),
    ));
    v.push(row(
        "truncated envelope (last byte missing)",
        "envelope_malformed",
        good_env[..good_env.len() - 1].to_vec(),
    ));
    v.push(Row {
        name: "stream reset mid-envelope",
        wire: Wire::Reset(good_env[..100].to_vec()),
        want: NO_RECEIPT,
    });
    v.push(row(
        "gigantic CBOR byte-string length prefix (2^64-1)",
        "envelope_malformed",
        [&[0xd2, 0x84, 0x5b][..], &[0xff; 8], b"short"].concat(),
    ));
    v.push(row(
        "gigantic CBOR array length prefix (2^64-1)",
        "envelope_malformed",
        [&[0xd2, 0x9b][..], &[0xff; 8]].concat(),
    ));
    v.push(row(
        "CBOR nested 100 000 arrays deep",
        "envelope_malformed",
        vec![0x81; 100_000],
    ));
    v.push(row(
        "trailing bytes after a valid envelope",
        "envelope_malformed",
        [&good_env[..], b"\x00"].concat(),
    ));
    v.push(row(
        "oversize stream, finished (2 MiB of zeros)",
        "envelope_too_large",
        vec![0; 2 << 20],
    ));
    v.push(Row {
        name: "oversize stream, never finished",
        wire: Wire::Unfinished(MAX_ENVELOPE + 64 * 1024),
        want: "envelope_too_large",
    });
    v.push(Row {
        name: "slowloris (bytes slower than read_timeout_ms)",
        wire: Wire::Trickle {
            chunk: 16,
            gap: Duration::from_millis(150),
        },
        want: "envelope_malformed",
    });

    // --- envelope structure and signatures ----------------------------------
    v.push(row(
        "algorithm ES256 instead of EdDSA",
        "envelope_malformed",
        cose1(
            Some(iana::Algorithm::ES256),
            b"gz-1",
            CAP_CONTENT_TYPE,
            Some(good.as_bytes()),
        ),
    ));
    v.push(row(
        "no kid",
        "envelope_malformed",
        cose1(
            Some(iana::Algorithm::EdDSA),
            b"",
            CAP_CONTENT_TYPE,
            Some(good.as_bytes()),
        ),
    ));
    v.push(row(
        "kid of 65 bytes",
        "envelope_malformed",
        cose1(
            Some(iana::Algorithm::EdDSA),
            &[b'k'; 65],
            CAP_CONTENT_TYPE,
            Some(good.as_bytes()),
        ),
    ));
    v.push(row(
        "content type text/plain",
        "envelope_malformed",
        cose1(
            Some(iana::Algorithm::EdDSA),
            b"gz-1",
            "text/plain",
            Some(good.as_bytes()),
        ),
    ));
    v.push(row(
        "detached payload",
        "envelope_malformed",
        cose1(
            Some(iana::Algorithm::EdDSA),
            b"gz-1",
            CAP_CONTENT_TYPE,
            None,
        ),
    ));
    let five: Vec<_> = (0..5).map(|_| key(1)).collect();
    let five: Vec<(&str, &ed25519_dalek::SigningKey)> = five.iter().map(|k| ("gz-1", k)).collect();
    v.push(row(
        "COSE_Sign with five signatures",
        "envelope_malformed",
        sign_many(good.as_bytes(), &five).expect("sign"),
    ));
    v.push(row(
        "forged kid",
        "key_unknown",
        sign(good, "gz-9", &key(1)),
    ));
    let mut swapped = CoseSign1::from_tagged_slice(&good_env).expect("decode");
    swapped.payload = Some(good.replace("李小明", "王小明").into_bytes());
    v.push(row(
        "signature over a different payload",
        "signature_invalid",
        swapped.to_tagged_vec().expect("encode"),
    ));
    v.push(row(
        "bj's key under gz's kid",
        "signature_invalid",
        sign(good, "gz-1", &key(4)),
    ));
    v.push(row(
        "co-signature by bj-1 made with another key",
        "signature_invalid",
        sign_many(good.as_bytes(), &[("gz-1", &key(1)), ("bj-1", &key(9))]).expect("sign"),
    ));
    v.push(row(
        "bj's own key claiming gz's sender and Guangzhou area",
        "sender_mismatch",
        sign(&alert_xml("hostile-bj"), "bj-1", &key(4)),
    ));
    v.push(row(
        "revoked key",
        "key_revoked",
        sign(good, "gz-revoked", &key(2)),
    ));
    v.push(row(
        "expired key",
        "key_expired",
        sign(good, "gz-expired", &key(3)),
    ));
    v.push(row(
        "signed envelope over max_envelope_bytes",
        "envelope_too_large",
        gz(&good.replace(
            "</description>",
            &format!("{}</description>", "x".repeat(MAX_ENVELOPE)),
        )),
    ));

    // --- CAP XML ------------------------------------------------------------
    let body = |xml: &str| -> String {
        xml.trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
            .to_string()
    };
    let laughs: String = (1..10)
        .map(|i| {
            let prev = format!("&lol{};", i - 1);
            format!("<!ENTITY lol{i} \"{}\">", prev.repeat(10))
        })
        .collect();
    v.push(row(
        "billion laughs",
        "xml_dtd_forbidden",
        gz(&format!(
            "<?xml version=\"1.0\"?><!DOCTYPE alert [<!ENTITY lol0 \"lol\">{laughs}]>{}",
            body(&alert_xml("hostile-lol")).replace("</description>", "&lol9;</description>")
        )),
    ));
    v.push(row(
        "external entity (XXE)",
        "xml_dtd_forbidden",
        gz(&format!(
            "<!DOCTYPE alert [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>{}",
            body(&alert_xml("hostile-xxe")).replace("</description>", "&xxe;</description>")
        )),
    ));
    v.push(row(
        "undeclared entity without a DTD",
        "xml_entity_forbidden",
        gz(&alert_xml("hostile-ent").replace("</description>", "&lol9;</description>")),
    ));
    v.push(row(
        "10 000 nested elements inside an XML-DSig Signature",
        "cap_limit_exceeded",
        gz(&alert_xml("hostile-deep").replace(
            "</alert>",
            &format!(
                "<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\">{}{}</Signature></alert>",
                "<x>".repeat(10_000),
                "</x>".repeat(10_000)
            ),
        )),
    ));
    v.push(row(
        "20 001 elements",
        "cap_limit_exceeded",
        gz(&alert_xml("hostile-wide").replace(
            "</alert>",
            &format!(
                "<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\">{}</Signature></alert>",
                "<x/>".repeat(20_001)
            ),
        )),
    ));
    let attrs: String = (0..17).map(|i| format!(" a{i}=\"\"")).collect();
    v.push(row(
        "17 attributes on <alert>",
        "cap_limit_exceeded",
        gz(&alert_xml("hostile-attr").replacen("<alert xmlns", &format!("<alert{attrs} xmlns"), 1)),
    ));
    v.push(row(
        "element in free text",
        "cap_invalid",
        gz(&alert_xml("hostile-elem").replace("</description>", "<b>x</b></description>")),
    ));
    let utf8 = alert_xml("hostile-utf8");
    let cut = utf8.find("</description>").expect("description");
    let (head, tail) = utf8.as_bytes().split_at(cut);
    v.push(row(
        "invalid UTF-8 (0xFF 0xFE)",
        "xml_malformed",
        gz_bytes(&[head, b"\xff\xfe", tail].concat()),
    ));
    v.push(row(
        "overlong UTF-8 NUL (0xC0 0x80)",
        "xml_malformed",
        gz_bytes(&[head, b"\xc0\x80", tail].concat()),
    ));
    v.push(row(
        "character reference to NUL",
        "xml_malformed",
        gz(&alert_xml("hostile-nul").replace("</description>", "&#0;</description>")),
    ));
    v.push(row(
        "processing instruction",
        "xml_malformed",
        gz(&alert_xml("hostile-pi").replace("<sender>", "<?php system('id'); ?><sender>")),
    ));
    v.push(row(
        "root outside the CAP namespace",
        "cap_invalid",
        gz(&alert_xml("hostile-ns").replace("urn:oasis:names:tc:emergency:cap:1.2", "urn:x")),
    ));

    // --- areas ----------------------------------------------------------------
    v.push(row(
        "NaN circle centre",
        "circle_invalid",
        gz(&with_area("hostile-a1", "<circle>NaN,113.2644 10</circle>")),
    ));
    v.push(row(
        "NaN polygon vertex",
        "polygon_invalid",
        gz(&with_area(
            "hostile-a2",
            "<polygon>23.0,113.0 NaN,113.0 23.2,113.4 23.0,113.0</polygon>",
        )),
    ));
    v.push(row(
        "latitude 91",
        "polygon_invalid",
        gz(&with_area(
            "hostile-a3",
            "<polygon>23.0,113.0 91,113.0 23.2,113.4 23.0,113.0</polygon>",
        )),
    ));
    v.push(row(
        "longitude of 400 digits (infinite as f64)",
        "polygon_invalid",
        gz(&with_area(
            "hostile-a4",
            &format!(
                "<polygon>23.0,113.0 23.2,1{} 23.2,113.4 23.0,113.0</polygon>",
                "0".repeat(400)
            ),
        )),
    ));
    v.push(row(
        "coordinate with an exponent",
        "polygon_invalid",
        gz(&with_area(
            "hostile-a5",
            "<polygon>23.0,113.0 2.32e1,113.0 23.2,113.4 23.0,113.0</polygon>",
        )),
    ));
    v.push(row(
        "self-intersecting polygon (bow-tie)",
        "polygon_invalid",
        gz(&with_area(
            "hostile-a6",
            "<polygon>23.0,113.0 23.0,113.6 23.2,113.0 23.2,113.2 23.0,113.0</polygon>",
        )),
    ));
    v.push(row(
        "polygon crossing the antimeridian",
        "polygon_invalid",
        gz(&with_area(
            "hostile-a7",
            "<polygon>23.0,179.5 23.0,-179.5 23.5,-179.5 23.5,179.5 23.0,179.5</polygon>",
        )),
    ));
    v.push(row(
        "zero-area polygon (collinear)",
        "polygon_invalid",
        gz(&with_area(
            "hostile-a8",
            "<polygon>23.0,113.0 23.1,113.1 23.2,113.2 23.0,113.0</polygon>",
        )),
    ));
    v.push(row(
        "unclosed polygon",
        "polygon_not_closed",
        gz(&with_area(
            "hostile-a9",
            "<polygon>23.0,113.0 23.2,113.0 23.2,113.4 23.0,113.4</polygon>",
        )),
    ));
    let many: String = (0..1001)
        .map(|i| format!("23.{:04},113.2 ", i % 9000))
        .collect();
    v.push(row(
        "polygon of 1002 vertices",
        "polygon_too_many_vertices",
        gz(&with_area(
            "hostile-a10",
            &format!("<polygon>{many}23.0000,113.2</polygon>"),
        )),
    ));
    v.push(row(
        "17 polygons in one area",
        "cap_limit_exceeded",
        gz(&with_area(
            "hostile-a11",
            &"<polygon>23.0,113.0 23.2,113.0 23.2,113.4 23.0,113.0</polygon>".repeat(17),
        )),
    ));
    v.push(row(
        "huge circle (2000 km, the CAP maximum)",
        "outside_jurisdiction",
        gz(&with_area(
            "hostile-a12",
            "<circle>23.1291,113.2644 2000</circle>",
        )),
    ));
    v.push(row(
        "circle radius 1e9 km (written out)",
        "circle_invalid",
        gz(&with_area(
            "hostile-a13",
            "<circle>23.1291,113.2644 1000000000</circle>",
        )),
    ));
    v.push(row(
        "circle radius 0",
        "circle_invalid",
        gz(&with_area(
            "hostile-a14",
            "<circle>23.1291,113.2644 0</circle>",
        )),
    ));
    v.push(row(
        "negative circle radius",
        "circle_invalid",
        gz(&with_area(
            "hostile-a15",
            "<circle>23.1291,113.2644 -5</circle>",
        )),
    ));
    let geocodes =
        "<geocode><valueName>CN-GB2260</valueName><value>440000</value></geocode>".repeat(3000);
    v.push(row(
        "3000 geocodes in one area",
        "cap_limit_exceeded",
        gz(&with_first_area("hostile-a16", &geocodes)),
    ));
    v.push(row(
        "unknown geocode",
        "geocode_unknown",
        gz(&with_area(
            "hostile-a17",
            "<geocode><valueName>CN-GB2260</valueName><value>999999</value></geocode>",
        )),
    ));
    v.push(row(
        "no area at all",
        "area_empty",
        gz(&with_area("hostile-a18", "")),
    ));

    // --- policy ---------------------------------------------------------------
    let sent =
        |ident: &str, t: chrono::DateTime<Utc>| set_all(&alert_xml(ident), "sent", &cap_time(t));
    v.push(row(
        "sent one hour in the future",
        "sent_out_of_window",
        gz(&sent("hostile-p1", now + chrono::Duration::hours(1))),
    ));
    v.push(row(
        "sent two hours ago (replay)",
        "sent_out_of_window",
        gz(&sent("hostile-p2", now - chrono::Duration::hours(2))),
    ));
    v.push(row(
        "sent in the year 9999",
        "sent_out_of_window",
        gz(&set_all(
            &alert_xml("hostile-p3"),
            "sent",
            "9999-12-31T23:59:59+14:00",
        )),
    ));
    v.push(row(
        "status Draft (not allowed)",
        "status_not_allowed",
        gz(&set_all(&alert_xml("hostile-p4"), "status", "Draft")),
    ));
    v.push(row(
        "Update of an alert never accepted",
        "reference_unknown",
        gz(&follow_up(
            &alert_xml("hostile-never"),
            "hostile-p5",
            "Update",
        )),
    ));
    // Last: the server still accepts a valid alert after all of the above.
    v.push(row(
        "valid alert after the attacks",
        "accepted",
        gz(&alert_xml("hostile-after")),
    ));
    v
}

/// A raw QUIC connection to the ingest endpoint (for streams the client
/// helper cannot produce).
async fn raw_connection(dir: &Path, addr: SocketAddr) -> (quinn::Endpoint, quinn::Connection) {
    try_raw_connection(dir, addr).await.expect("handshake")
}

async fn try_raw_connection(
    dir: &Path,
    addr: SocketAddr,
) -> Result<(quinn::Endpoint, quinn::Connection), quinn::ConnectionError> {
    let roots = tocsin::tls::load_certs(&dir.join("dev/cert.pem")).expect("dev cert");
    let tls = tocsin::tls::client_config(roots, None).expect("tls");
    let crypto = QuicClientConfig::try_from(tls).expect("quic tls");
    let mut ep = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let conn = ep.connect(addr, "localhost").expect("connect").await?;
    Ok((ep, conn))
}

/// The receipt on `recv`, or `NO_RECEIPT` when the stream ends without one.
async fn receipt(recv: &mut quinn::RecvStream) -> Result<Receipt, String> {
    let line = tokio::time::timeout(Duration::from_secs(10), recv.read_to_end(MAX_RECEIPT_BYTES))
        .await
        .map_err(|_| "no receipt within 10 s".to_string())?
        .map_err(|_| NO_RECEIPT.to_string())?;
    if line.is_empty() {
        return Err(NO_RECEIPT.into());
    }
    serde_json::from_slice(&line).map_err(|e| format!("bad receipt: {e}"))
}

fn outcome(r: &Result<Receipt, String>) -> String {
    match r {
        Ok(Receipt::Accepted { .. }) => "accepted".into(),
        Ok(Receipt::Duplicate { .. }) => "duplicate".into(),
        Ok(Receipt::Rejected { code, .. }) => code.clone(),
        Err(e) => e.clone(),
    }
}

/// Send one row on a fresh stream of `conn` and return what came back.
async fn run(conn: &quinn::Connection, wire: &Wire) -> Result<Receipt, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    match wire {
        Wire::Whole(bytes) => {
            // The server may stop reading early (oversize); the receipt still comes.
            let _ = send.write_all(bytes).await;
            let _ = send.finish();
        }
        Wire::Reset(bytes) => {
            let _ = send.write_all(bytes).await;
            let _ = send.reset(7u32.into());
        }
        Wire::Unfinished(n) => {
            // Stops with an error once the server stops the stream.
            let _ = send.write_all(&vec![0xa5; *n]).await;
        }
        Wire::Trickle { chunk, gap } => {
            let bytes = gz(&alert_xml("hostile-slow"));
            let writer = async {
                for piece in bytes.chunks(*chunk) {
                    if send.write_all(piece).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(*gap).await;
                }
            };
            // The receipt arrives while we are still trickling.
            let r = tokio::select! {
                r = receipt(&mut recv) => r,
                _ = writer => Err("the whole envelope trickled through".into()),
            };
            return r;
        }
    }
    receipt(&mut recv).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_get_stable_codes_and_change_nothing() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (paddr, seen) = partner("s3cret").await;
    let mut s = settings(dir.path(), &[("carrier-1".into(), paddr, "s3cret")]);
    s.ingest.read_timeout_ms = READ_TIMEOUT_MS;
    s.ingest.max_envelope_bytes = MAX_ENVELOPE;
    let d = Daemon::start(s, Extras::default()).await.unwrap();
    let (ep, conn) = raw_connection(dir.path(), d.ingest_addr).await;

    let table = rows();
    assert!(table.len() >= 30, "at least 30 hostile inputs");
    let mut accepted: HashSet<Vec<u8>> = HashSet::new();
    let mut failures = Vec::new();
    for r in &table {
        let got = if let Wire::Trickle { .. } = r.wire {
            // While one stream trickles, the server keeps serving others.
            let probe = gz(&alert_xml("hostile-during-slowloris"));
            let slow = run(&conn, &r.wire);
            let other = async {
                let (_ep2, conn2) = raw_connection(dir.path(), d.ingest_addr).await;
                let start = Instant::now();
                let got = run(&conn2, &Wire::Whole(probe.clone())).await;
                (got, start.elapsed())
            };
            let (slow, (fast, took)) = tokio::join!(slow, other);
            let fast_outcome = outcome(&fast);
            if fast_outcome != "accepted" || took >= Duration::from_millis(READ_TIMEOUT_MS) {
                failures.push(format!(
                    "{}: a valid alert during the slowloris got {fast_outcome} after {took:?}",
                    r.name
                ));
            } else {
                accepted.insert(probe);
            }
            slow
        } else {
            run(&conn, &r.wire).await
        };
        let got = outcome(&got);
        if got != r.want {
            failures.push(format!("{}: want {}, got {got}", r.name, r.want));
        }
        if got == "accepted" {
            if let Wire::Whole(b) = &r.wire {
                accepted.insert(b.clone());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n  {}",
        failures.len(),
        table.len(),
        failures.join("\n  ")
    );

    // Nothing but the intentionally valid alerts was journaled …
    let journaled = d.journal().alert_count().unwrap();
    assert_eq!(
        journaled,
        accepted.len() as u64,
        "journal holds only the valid alerts"
    );
    assert_eq!(
        accepted.len(),
        3,
        "baseline, the alert during the slowloris, the last one"
    );
    // … and the foreign Cancel left gz's baseline alone.
    let baseline = d.journal().alert(1).unwrap().unwrap();
    assert!(
        baseline.replaced_by.is_none() && baseline.state != tocsin::journal::AlertState::Cancelled,
        "{baseline:?}"
    );
    // … and the partner got exactly those envelopes, nothing else.
    assert!(
        wait_for(10, || seen.valid.load(Ordering::Relaxed)
            >= accepted.len() as u64)
        .await,
        "partner deliveries"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bodies: HashSet<Vec<u8>> = seen.bodies.lock().iter().cloned().collect();
    assert_eq!(
        bodies, accepted,
        "partner received exactly the accepted envelopes"
    );
    assert_eq!(seen.invalid.load(Ordering::Relaxed), 0);
    let m = d.metrics.encode();
    assert!(
        m.contains("tocsin_alerts_total{result=\"envelope_malformed\"}"),
        "{m}"
    );

    conn.close(0u32.into(), b"done");
    ep.wait_idle().await;
    d.shutdown().await;
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
}

/// Hostile configuration: each must fail `Settings::from_toml` with a message
/// naming what is wrong.
#[test]
fn hostile_config_fails_with_a_clear_message() {
    let authority = |extra: &str| {
        format!(
            "[[authorities]]\nid = \"a\"\nname = \"A\"\nevents = [\"CAE\"]\nkeys = []\n\
             jurisdiction = {{ everywhere = true }}\n{extra}"
        )
    };
    let rows: Vec<(&str, String, &[&str])> = vec![
        (
            "NaN feed rate",
            "[channels.feed]\nrate_per_sec = nan\n".into(),
            &["channels.feed.rate_per_sec"],
        ),
        (
            "NaN APNs rate",
            "[channels.apns]\nrate_per_sec = nan\n".into(),
            &["channels.apns.rate_per_sec"],
        ),
        (
            "infinite e-mail rate",
            "[channels.email]\nrate_per_sec = inf\n".into(),
            &["channels.email.rate_per_sec"],
        ),
        (
            "negative label rate",
            "[channels.label]\nrate_per_sec = -1.0\n".into(),
            &["channels.label.rate_per_sec"],
        ),
        (
            "unknown key",
            "[ingest]\nmax_envelope_bytez = 1\n".into(),
            &["max_envelope_bytez"],
        ),
        (
            "unknown section",
            "[ingets]\nlisten = \"127.0.0.1:1\"\n".into(),
            &["ingets"],
        ),
        (
            "max_envelope_bytes of 0",
            "[ingest]\nmax_envelope_bytes = 0\n".into(),
            &["max_envelope_bytes"],
        ),
        (
            "widen steps shrinking",
            "[[standards]]\nevent_code = \"CAE\"\nwiden = [{ after_minutes = 0, radius_km = 100.0 }, { after_minutes = 60, radius_km = 50.0 }]\n".into(),
            &["widen", "step 1"],
        ),
        (
            "widen radius NaN",
            "[[standards]]\nevent_code = \"CAE\"\nwiden = [{ after_minutes = 0, radius_km = nan }]\n".into(),
            &["widen"],
        ),
        (
            "replay window of i64::MAX seconds",
            "[policy]\nreplay_window_secs = 9223372036854775807\n".into(),
            &["replay_window_secs"],
        ),
        (
            "negative clock skew",
            "[policy]\nfuture_skew_secs = -1\n".into(),
            &["future_skew_secs"],
        ),
        (
            "max_expires_hours of i64::MAX",
            "[[standards]]\nevent_code = \"CAE\"\nmax_expires_hours = 9223372036854775807\n".into(),
            &["max_expires_hours"],
        ),
        (
            "NaN max_area_km2",
            authority("max_area_km2 = nan\n"),
            &["max_area_km2"],
        ),
        (
            "clock_speed NaN",
            "[dispatch]\nclock_speed = nan\n".into(),
            &["clock_speed"],
        ),
        (
            "authority listed twice",
            format!("{}{}", authority(""), authority("")),
            &["appears twice"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, toml, needles) in &rows {
        match Settings::from_toml(toml) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(e) => {
                let msg = e.to_string();
                if !needles.iter().all(|n| msg.contains(n)) {
                    failures.push(format!("{name}: message {msg:?} does not name {needles:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n  {}", failures.join("\n  "));
}

/// Stalled streams cannot hold more than `ingest.max_buffered_bytes`
/// between them, and connections beyond `ingest.max_connections` are
/// refused. Six streams on three connections each send 60 KiB and stall,
/// against a 256 KiB budget: what the daemon holds never passes the budget,
/// a valid alert is still accepted (within the read timeout, when the
/// stalled streams are let go), a fifth connection is refused, and every
/// stalled stream is answered `envelope_malformed` and gives its bytes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_streams_stay_within_the_read_budget() {
    const KIB: usize = 1024;
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), &[]);
    s.ingest.max_envelope_bytes = 64 * KIB;
    s.ingest.max_buffered_bytes = 256 * KIB;
    s.ingest.read_timeout_ms = READ_TIMEOUT_MS;
    s.ingest.max_connections = 4;
    let d = Daemon::start(s, Extras::default()).await.unwrap();
    let held = || d.metrics.ingest_buffered_bytes.get() as usize;

    let mut conns = Vec::new();
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let (ep, conn) = raw_connection(dir.path(), d.ingest_addr).await;
        for _ in 0..2 {
            let (mut send, recv) = conn.open_bi().await.unwrap();
            send.write_all(&vec![0xa5; 60 * KIB]).await.unwrap();
            stalled.push((send, recv));
        }
        conns.push((ep, conn));
    }
    let t_stall = Instant::now();
    // The daemon reads until the budget is (nearly) spent, and no further.
    assert!(
        wait_for(5, || held() > 192 * KIB).await,
        "held {} bytes",
        held()
    );
    let mut most = 0;
    for _ in 0..20 {
        most = most.max(held());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(most <= 256 * KIB, "held {most} bytes, budget 256 KiB");

    // A fourth connection submits a valid alert: accepted, at the latest
    // once the stalled streams time out and give their budget back.
    let c = client(dir.path(), d.ingest_addr).await;
    let t = Instant::now();
    let r = c.submit(&gz(&alert_xml("budget-ok"))).await.unwrap();
    assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");
    println!(
        "budget: held at most {most} bytes; the valid alert took {:?}",
        t.elapsed()
    );
    assert!(
        t.elapsed() < Duration::from_millis(READ_TIMEOUT_MS + 3_000),
        "{:?}",
        t.elapsed()
    );
    // A fifth is refused while four are open.
    assert!(try_raw_connection(dir.path(), d.ingest_addr).await.is_err());

    for (_, mut recv) in stalled {
        assert_eq!(outcome(&receipt(&mut recv).await), "envelope_malformed");
    }
    assert!(t_stall.elapsed() >= Duration::from_millis(READ_TIMEOUT_MS - 500));
    assert!(wait_for(5, || held() == 0).await, "held {} bytes", held());
    c.close().await;
    for (ep, conn) in conns {
        conn.close(0u32.into(), b"done");
        ep.wait_idle().await;
    }
    d.shutdown().await;
}
