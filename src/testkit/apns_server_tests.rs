//! Drives the APNs-protocol server with a bare hyper HTTP/2 client over TLS.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, StatusCode};

use super::*;
use crate::testkit::h2client::connect_h2;

const TOKEN: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
const PAYLOAD: &str = r#"{"aps":{"alert":{"title":"Flood","body":"Leave now"}}}"#;

struct Fixture {
    key: ApnsTestKey,
    server: ApnsServer,
    send: SendRequest<Full<Bytes>>,
    jwt: String,
}

async fn fixture() -> Fixture {
    let key = ApnsTestKey::generate().unwrap();
    let server = ApnsServer::start(ApnsServerOptions::from_key(&key)).unwrap();
    let send = connect_h2(server.addr(), server.ca_pem()).await.unwrap();
    let jwt = key.jwt(unix_secs() as u64);
    Fixture {
        key,
        server,
        send,
        jwt,
    }
}

fn request(jwt: &str, token: &str) -> hyper::http::request::Builder {
    with_headers(jwt, token, &[])
}

/// A valid request, with `overrides` replacing (or, with "", removing)
/// default headers.
fn with_headers(
    jwt: &str,
    token: &str,
    overrides: &[(&str, &str)],
) -> hyper::http::request::Builder {
    let auth = format!("bearer {jwt}");
    let defaults = [
        ("authorization", auth.as_str()),
        ("apns-topic", DEFAULT_TOPIC),
        ("apns-push-type", "alert"),
        ("apns-priority", "10"),
    ];
    let mut b = Request::post(format!("/3/device/{token}"));
    for (k, v) in defaults {
        if !overrides.iter().any(|(o, _)| *o == k) {
            b = b.header(k, v);
        }
    }
    for (k, v) in overrides {
        if !v.is_empty() {
            b = b.header(*k, *v);
        }
    }
    b
}

async fn send(
    s: &mut SendRequest<Full<Bytes>>,
    b: hyper::http::request::Builder,
    payload: &str,
) -> (StatusCode, HeaderMap, serde_json::Value) {
    let req = b
        .uri_ref()
        .map(|u| u.to_string())
        .map(|p| format!("https://localhost{p}"))
        .unwrap();
    let b = b.uri(req);
    s.ready().await.unwrap();
    let resp = s
        .send_request(b.body(Full::new(Bytes::from(payload.to_string()))).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let json = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (status, headers, json)
}

fn reason(j: &serde_json::Value) -> &str {
    j["reason"].as_str().unwrap_or("")
}

#[tokio::test]
async fn valid_request_is_delivered_and_recorded() {
    let mut f = fixture().await;
    let id = "123E4567-E89B-12D3-A456-426614174000";
    let b = request(&f.jwt, TOKEN)
        .header("apns-id", id)
        .header("apns-collapse-id", "alert-1")
        .header("apns-expiration", "1900000000");
    let (st, h, body) = send(&mut f.send, b, PAYLOAD).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(h["apns-id"], id);
    assert!(is_uuid(h["apns-unique-id"].as_bytes()));
    // a generated apns-id when the client sends none
    let (st, h, _) = send(&mut f.send, request(&f.jwt, TOKEN), PAYLOAD).await;
    assert_eq!(st, StatusCode::OK);
    assert!(is_uuid(h["apns-id"].as_bytes()));

    let state = f.server.state();
    assert_eq!(state.delivered(), 2);
    assert_eq!(state.count_for(TOKEN), 2);
    let rec = &state.received()[0];
    assert_eq!(rec.token, TOKEN);
    assert_eq!(rec.apns_id.as_deref(), Some(id));
    assert_eq!(rec.collapse_id.as_deref(), Some("alert-1"));
    assert_eq!(rec.expiration, Some(1_900_000_000));
    assert_eq!(rec.priority, 10);
    assert_eq!(rec.push_type, "alert");
    assert_eq!(rec.topic, DEFAULT_TOPIC);
    assert_eq!(rec.payload["aps"]["alert"]["title"], "Flood");
}

#[tokio::test]
async fn provider_token_is_checked() {
    let mut f = fixture().await;
    let now = unix_secs() as u64;
    // missing
    let b = Request::post("/3/device/".to_string() + TOKEN)
        .header("apns-topic", DEFAULT_TOPIC)
        .header("apns-push-type", "alert");
    let (st, _, body) = send(&mut f.send, b, PAYLOAD).await;
    assert_eq!(
        (st, reason(&body)),
        (StatusCode::FORBIDDEN, "MissingProviderToken")
    );
    // signed by another key
    let other = ApnsTestKey::generate().unwrap().jwt(now);
    let (st, _, body) = send(&mut f.send, request(&other, TOKEN), PAYLOAD).await;
    assert_eq!(
        (st, reason(&body)),
        (StatusCode::FORBIDDEN, "InvalidProviderToken")
    );
    // garbage
    let (st, _, body) = send(&mut f.send, request("abc.def", TOKEN), PAYLOAD).await;
    assert_eq!(
        (st, reason(&body)),
        (StatusCode::FORBIDDEN, "InvalidProviderToken")
    );
    // wrong team
    let mut wrong_team = f.key.clone();
    wrong_team.team_id = "OTHERTEAM1".into();
    let t = wrong_team.jwt(now);
    let (st, _, body) = send(&mut f.send, request(&t, TOKEN), PAYLOAD).await;
    assert_eq!(
        (st, reason(&body)),
        (StatusCode::FORBIDDEN, "InvalidProviderToken")
    );
    // older than an hour
    let old = f.key.jwt(now - 3700);
    let (st, _, body) = send(&mut f.send, request(&old, TOKEN), PAYLOAD).await;
    assert_eq!(
        (st, reason(&body)),
        (StatusCode::FORBIDDEN, "ExpiredProviderToken")
    );
    // from the future
    let future = f.key.jwt(now + 600);
    let (st, _, body) = send(&mut f.send, request(&future, TOKEN), PAYLOAD).await;
    assert_eq!(
        (st, reason(&body)),
        (StatusCode::FORBIDDEN, "InvalidProviderToken")
    );
    // the fault switch, then the same token works again
    f.server.state().expire_next.store(1, Ordering::SeqCst);
    let (st, _, body) = send(&mut f.send, request(&f.jwt, TOKEN), PAYLOAD).await;
    assert_eq!(
        (st, reason(&body)),
        (StatusCode::FORBIDDEN, "ExpiredProviderToken")
    );
    let (st, _, _) = send(&mut f.send, request(&f.jwt, TOKEN), PAYLOAD).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(f.server.state().delivered(), 1);
}

#[tokio::test]
async fn headers_path_and_payload_are_checked() {
    let mut f = fixture().await;
    let j = f.jwt.clone();
    let cases: Vec<(hyper::http::request::Builder, &str, StatusCode, &str)> = vec![
        (
            with_headers(&j, TOKEN, &[("apns-topic", "x")]),
            PAYLOAD,
            StatusCode::BAD_REQUEST,
            "TopicDisallowed",
        ),
        (
            with_headers(&j, TOKEN, &[("apns-priority", "7")]),
            PAYLOAD,
            StatusCode::BAD_REQUEST,
            "BadPriority",
        ),
        (
            request(&j, TOKEN).header("apns-collapse-id", "c".repeat(65)),
            PAYLOAD,
            StatusCode::BAD_REQUEST,
            "BadCollapseId",
        ),
        (
            request(&j, TOKEN).header("apns-id", "not-a-uuid"),
            PAYLOAD,
            StatusCode::BAD_REQUEST,
            "BadMessageId",
        ),
        (
            request(&j, TOKEN).header("apns-expiration", "soon"),
            PAYLOAD,
            StatusCode::BAD_REQUEST,
            "BadExpirationDate",
        ),
        (
            request(&j, "zz-not-hex"),
            PAYLOAD,
            StatusCode::BAD_REQUEST,
            "BadDeviceToken",
        ),
        (
            request(&j, TOKEN),
            "",
            StatusCode::BAD_REQUEST,
            "PayloadEmpty",
        ),
        (
            request(&j, TOKEN),
            "{\"alert\":1}",
            StatusCode::BAD_REQUEST,
            "BadPayload",
        ),
        (
            request(&j, TOKEN),
            "[{}]",
            StatusCode::BAD_REQUEST,
            "BadPayload",
        ),
        (
            Request::get(format!("/3/device/{TOKEN}")),
            PAYLOAD,
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
        ),
        (
            Request::post("/3/devices/x"),
            PAYLOAD,
            StatusCode::NOT_FOUND,
            "BadPath",
        ),
    ];
    for (b, payload, want_status, want_reason) in cases {
        let (st, h, body) = send(&mut f.send, b, payload).await;
        assert_eq!((st, reason(&body)), (want_status, want_reason));
        assert!(h.contains_key("apns-id"));
    }
    // missing topic and push type; a repeated header
    let b = with_headers(&j, TOKEN, &[("apns-topic", "")]);
    let (st, _, body) = send(&mut f.send, b, PAYLOAD).await;
    assert_eq!(
        (st, reason(&body)),
        (StatusCode::BAD_REQUEST, "MissingTopic")
    );
    let b = with_headers(&j, TOKEN, &[("apns-push-type", "")]);
    let (st, _, body) = send(&mut f.send, b, PAYLOAD).await;
    assert_eq!(
        (st, reason(&body)),
        (StatusCode::BAD_REQUEST, "InvalidPushType")
    );
    let b = request(&j, TOKEN).header("apns-topic", DEFAULT_TOPIC);
    let (st, _, body) = send(&mut f.send, b, PAYLOAD).await;
    assert_eq!(
        (st, reason(&body)),
        (StatusCode::BAD_REQUEST, "DuplicateHeaders")
    );
    // priority 5 and an absent priority are fine
    let (st, _, _) = send(
        &mut f.send,
        with_headers(&j, TOKEN, &[("apns-priority", "5")]),
        PAYLOAD,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = send(
        &mut f.send,
        with_headers(&j, TOKEN, &[("apns-priority", "")]),
        PAYLOAD,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    // too large: a 4097-byte payload is refused, 4096 accepted
    let pad = |n: usize| {
        let base = r#"{"aps":{},"p":""}"#.len();
        format!(r#"{{"aps":{{}},"p":"{}"}}"#, "x".repeat(n - base))
    };
    let (st, _, body) = send(&mut f.send, request(&j, TOKEN), &pad(4097)).await;
    assert_eq!(
        (st, reason(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge")
    );
    let (st, _, _) = send(&mut f.send, request(&j, TOKEN), &pad(4096)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(f.server.state().delivered(), 3);
}

#[tokio::test]
async fn unregistered_and_bad_tokens() {
    let mut f = fixture().await;
    let gone = "aaaa";
    let bad = "bbbb";
    f.server.state().mark_unregistered(gone);
    f.server.state().mark_bad_token(bad);
    let (st, _, body) = send(&mut f.send, request(&f.jwt, gone), PAYLOAD).await;
    assert_eq!((st, reason(&body)), (StatusCode::GONE, "Unregistered"));
    assert!(body["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    let (st, _, body) = send(&mut f.send, request(&f.jwt, bad), PAYLOAD).await;
    assert_eq!(
        (st, reason(&body)),
        (StatusCode::BAD_REQUEST, "BadDeviceToken")
    );
}

#[tokio::test]
async fn throttle_and_failure_faults() {
    let mut f = fixture().await;
    let state = f.server.state();
    state.throttle_next.store(1, Ordering::SeqCst);
    state.retry_after_secs.store(7, Ordering::SeqCst);
    let (st, h, body) = send(&mut f.send, request(&f.jwt, TOKEN), PAYLOAD).await;
    assert_eq!(
        (st, reason(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests")
    );
    assert_eq!(h["retry-after"], "7");
    state.fail_next.store(1, Ordering::SeqCst);
    let (st, _, body) = send(&mut f.send, request(&f.jwt, TOKEN), PAYLOAD).await;
    assert_eq!(
        (st, reason(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
    );
    let (st, _, _) = send(&mut f.send, request(&f.jwt, TOKEN), PAYLOAD).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(state.requests.load(Ordering::SeqCst), 3);
    assert_eq!(state.delivered(), 1);
}

#[tokio::test]
async fn close_after_drops_the_connection() {
    let f = fixture().await;
    let state = f.server.state();
    // hold answers so several requests are in flight when the 3rd arrives
    state.delay_ms.store(200, Ordering::SeqCst);
    state.close_after_next(3);
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let mut s = f.send.clone();
        let jwt = f.jwt.clone();
        tasks.push(tokio::spawn(async move {
            s.ready().await?;
            let req = request(&jwt, TOKEN)
                .uri(format!("https://localhost/3/device/{TOKEN}"))
                .body(Full::new(Bytes::from(PAYLOAD)))
                .unwrap();
            s.send_request(req).await.map(|r| r.status())
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().is_err(), "every in-flight request is lost");
    }
    assert_eq!(state.close_after.load(Ordering::SeqCst), 0);
    assert_eq!(state.delivered(), 0);
    // a new connection works
    state.delay_ms.store(0, Ordering::SeqCst);
    let mut s = connect_h2(f.server.addr(), f.server.ca_pem())
        .await
        .unwrap();
    let (st, _, _) = send(&mut s, request(&f.jwt, TOKEN), PAYLOAD).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn advertises_max_concurrent_streams() {
    let key = ApnsTestKey::generate().unwrap();
    let mut opts = ApnsServerOptions::from_key(&key);
    opts.max_concurrent_streams = 2;
    opts.record = false;
    let server = ApnsServer::start(opts).unwrap();
    let state = server.state();
    state.delay_ms.store(100, Ordering::SeqCst);
    let mut conn = connect_h2(server.addr(), server.ca_pem()).await.unwrap();
    let jwt = key.jwt(unix_secs() as u64);
    // one request first, so the client has the server's SETTINGS
    let (st, _, _) = send(&mut conn, request(&jwt, TOKEN), PAYLOAD).await;
    assert_eq!(st, StatusCode::OK);
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut s = conn.clone();
        let jwt = jwt.clone();
        tasks.push(tokio::spawn(async move {
            s.ready().await.unwrap();
            let req = request(&jwt, TOKEN)
                .uri(format!("https://localhost/3/device/{TOKEN}"))
                .body(Full::new(Bytes::from(PAYLOAD)))
                .unwrap();
            s.send_request(req).await.unwrap().status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    // 4 requests, 2 at a time, 100 ms each
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
    assert_eq!(state.delivered(), 5);
    assert!(state.received().is_empty(), "record = false keeps nothing");
    server.shutdown();
}

/// Rough ceiling of the server with a bare client on this machine:
/// `cargo test --release --lib apns_server::tests::throughput -- --ignored --nocapture`
#[test]
#[ignore]
fn throughput() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let key = ApnsTestKey::generate().unwrap();
        let mut opts = ApnsServerOptions::from_key(&key);
        opts.record = false;
        let server = ApnsServer::start(opts).unwrap();
        let jwt = key.jwt(unix_secs() as u64);
        let total = 200_000u64;
        let conns = 4;
        let in_flight_per_conn = 100;
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let send = connect_h2(server.addr(), server.ca_pem()).await.unwrap();
            for _ in 0..in_flight_per_conn {
                let mut s = send.clone();
                let auth = HeaderValue::from_str(&format!("bearer {jwt}")).unwrap();
                let n = total / (conns * in_flight_per_conn);
                tasks.push(tokio::spawn(async move {
                    let uri: hyper::Uri = format!("https://localhost/3/device/{TOKEN}")
                        .parse()
                        .unwrap();
                    let body = Bytes::from_static(PAYLOAD.as_bytes());
                    for _ in 0..n {
                        let req = Request::post(uri.clone())
                            .header("authorization", auth.clone())
                            .header("apns-topic", DEFAULT_TOPIC)
                            .header("apns-push-type", "alert")
                            .header("apns-priority", "10")
                            .body(Full::new(body.clone()))
                            .unwrap();
                        s.ready().await.unwrap();
                        let r = s.send_request(req).await.unwrap();
                        assert_eq!(r.status(), StatusCode::OK);
                        let _ = r.into_body().collect().await;
                    }
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        let done = server.state().delivered();
        println!(
            "{done} requests in {secs:.2} s = {:.0} req/s",
            done as f64 / secs
        );
    });
}
