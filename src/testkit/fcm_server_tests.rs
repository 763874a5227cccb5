//! Drives the FCM-protocol server with bare hyper clients over TLS.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http2::SendRequest;
use hyper::header::HeaderMap;
use hyper::Request;

use super::*;
use crate::testkit::h2client::{connect_h1, connect_h2};
use crate::testkit::keys::test_assertion;

const TOKEN: &str = "fcm-token_1:APA91b";

struct Fixture {
    server: FcmServer,
    send: SendRequest<Full<Bytes>>,
}

async fn fixture() -> Fixture {
    let server = FcmServer::start(FcmServerOptions::test()).unwrap();
    let send = connect_h2(server.addr(), server.ca_pem()).await.unwrap();
    Fixture { server, send }
}

async fn call(
    s: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> (StatusCode, HeaderMap, Value) {
    s.ready().await.unwrap();
    let resp = s.send_request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&body).unwrap())
}

fn token_request(form: String) -> Request<Full<Bytes>> {
    Request::post("https://localhost/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form)))
        .unwrap()
}

fn grant_form(assertion: &str) -> String {
    format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
    )
}

async fn access_token(f: &mut Fixture) -> String {
    let a = test_assertion(&f.server.token_url(), unix_secs() as u64);
    let (st, _, body) = call(&mut f.send, token_request(grant_form(&a))).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    body["access_token"].as_str().unwrap().to_string()
}

fn message(token: &str) -> Value {
    json!({"message": {
        "token": token,
        "android": {"priority": "HIGH", "ttl": "3600s", "collapse_key": "alert-1"},
        "notification": {"title": "Flood", "body": "Leave now"},
        "data": {"alert_id": "alert-1"},
    }})
}

fn send_request(project: &str, access: &str, body: &Value) -> Request<Full<Bytes>> {
    Request::post(format!(
        "https://localhost/v1/projects/{project}/messages:send"
    ))
    .header("authorization", format!("Bearer {access}"))
    .header("content-type", "application/json")
    .body(Full::new(Bytes::from(body.to_string())))
    .unwrap()
}

fn fcm_code(body: &Value) -> &str {
    body["error"]["details"][0]["errorCode"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn grant_then_send_is_delivered_and_recorded() {
    let mut f = fixture().await;
    let access = access_token(&mut f).await;
    assert!(access.starts_with("ya29.test-"));
    let (st, _, body) = call(
        &mut f.send,
        send_request("tocsin-test", &access, &message(TOKEN)),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body["name"]
        .as_str()
        .unwrap()
        .starts_with("projects/tocsin-test/messages/"));
    let state = f.server.state();
    assert_eq!(state.delivered(), 1);
    assert_eq!(state.token_requests(), 1);
    assert_eq!(state.count_for(TOKEN), 1);
    let rec = &state.received()[0];
    assert_eq!(rec.token, TOKEN);
    assert_eq!(rec.message["android"]["collapse_key"], "alert-1");
    assert_eq!(rec.authorization, format!("Bearer {access}"));
}

#[tokio::test]
async fn bad_assertions_are_refused() {
    let mut f = fixture().await;
    let now = unix_secs() as u64;
    let url = f.server.token_url();
    let good = test_assertion(&url, now);
    // tampered signature
    let mid = good.len() - 20;
    let flipped = if &good[mid..mid + 1] == "A" { "B" } else { "A" };
    let bad = format!("{}{flipped}{}", &good[..mid], &good[mid + 1..]);
    // wrong audience, expired, wrong grant type, missing assertion
    let wrong_aud = test_assertion("https://oauth2.googleapis.com/token", now);
    let expired = test_assertion(&url, now - 7200);
    for (form, error) in [
        (grant_form(&bad), "invalid_grant"),
        (grant_form(&wrong_aud), "invalid_grant"),
        (grant_form(&expired), "invalid_grant"),
        (grant_form("not.a.jwt"), "invalid_grant"),
        (
            format!("grant_type=client_credentials&assertion={good}"),
            "unsupported_grant_type",
        ),
        (
            "grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
            "invalid_request",
        ),
    ] {
        let (st, _, body) = call(&mut f.send, token_request(form)).await;
        assert_eq!(
            (st, body["error"].as_str().unwrap()),
            (StatusCode::BAD_REQUEST, error),
            "{body}"
        );
    }
    // unencoded grant type is fine too
    let form = format!("grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion={good}");
    let (st, _, _) = call(&mut f.send, token_request(form)).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn sends_need_a_live_access_token() {
    let mut f = fixture().await;
    let (st, _, body) = call(
        &mut f.send,
        send_request("tocsin-test", "ya29.forged", &message(TOKEN)),
    )
    .await;
    assert_eq!(
        (st, body["error"]["status"].as_str().unwrap()),
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED")
    );
    assert_eq!(body["error"]["code"], 401);
    let access = access_token(&mut f).await;
    f.server.revoke_tokens();
    let (st, _, _) = call(
        &mut f.send,
        send_request("tocsin-test", &access, &message(TOKEN)),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // a fresh token works
    let access = access_token(&mut f).await;
    let (st, _, _) = call(
        &mut f.send,
        send_request("tocsin-test", &access, &message(TOKEN)),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    // another project is refused
    let (st, _, body) = call(&mut f.send, send_request("other", &access, &message(TOKEN))).await;
    assert_eq!(
        (st, body["error"]["status"].as_str().unwrap()),
        (StatusCode::FORBIDDEN, "PERMISSION_DENIED")
    );
}

#[tokio::test]
async fn token_and_message_errors() {
    let mut f = fixture().await;
    let access = access_token(&mut f).await;
    let state = f.server.state();
    state.mark_unregistered("gone-token");
    state.mark_invalid_token("bad-token");
    let (st, _, body) = call(
        &mut f.send,
        send_request("tocsin-test", &access, &message("gone-token")),
    )
    .await;
    assert_eq!(
        (st, fcm_code(&body)),
        (StatusCode::NOT_FOUND, "UNREGISTERED")
    );
    assert_eq!(body["error"]["status"], "NOT_FOUND");
    let (st, _, body) = call(
        &mut f.send,
        send_request("tocsin-test", &access, &message("bad-token")),
    )
    .await;
    assert_eq!(
        (st, fcm_code(&body)),
        (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT")
    );
    let mut m = message(TOKEN);
    m["message"]["data"]["n"] = json!(3);
    let (st, _, body) = call(&mut f.send, send_request("tocsin-test", &access, &m)).await;
    assert_eq!(
        (st, fcm_code(&body)),
        (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT")
    );
    let (st, _, body) = call(
        &mut f.send,
        send_request("tocsin-test", &access, &json!({"message": {}})),
    )
    .await;
    assert_eq!(
        (st, body["error"]["status"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT")
    );
    let wrong_path = Request::post("https://localhost/v1/projects/tocsin-test/messages:sendAll")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (st, _, _) = call(&mut f.send, wrong_path).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(state.delivered(), 0);
}

#[tokio::test]
async fn throttle_failure_and_close_faults() {
    let mut f = fixture().await;
    let access = access_token(&mut f).await;
    let state = f.server.state();
    state.throttle_next.store(1, Ordering::SeqCst);
    state.retry_after_secs.store(3, Ordering::SeqCst);
    let (st, h, body) = call(
        &mut f.send,
        send_request("tocsin-test", &access, &message(TOKEN)),
    )
    .await;
    assert_eq!(
        (st, fcm_code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "QUOTA_EXCEEDED")
    );
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(h["retry-after"], "3");
    state.fail_next.store(1, Ordering::SeqCst);
    let (st, _, body) = call(
        &mut f.send,
        send_request("tocsin-test", &access, &message(TOKEN)),
    )
    .await;
    assert_eq!(
        (st, fcm_code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
    );
    state.close_after_next(1);
    f.send.ready().await.unwrap();
    let lost = f
        .send
        .send_request(send_request("tocsin-test", &access, &message(TOKEN)))
        .await;
    assert!(lost.is_err(), "the connection is dropped without an answer");
    assert_eq!(state.close_after.load(Ordering::SeqCst), 0);
    let mut s = connect_h2(f.server.addr(), f.server.ca_pem())
        .await
        .unwrap();
    let (st, _, _) = call(
        &mut s,
        send_request("tocsin-test", &access, &message(TOKEN)),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(state.requests.load(Ordering::SeqCst), 4);
    assert_eq!(state.delivered(), 1);
}

#[tokio::test]
async fn token_endpoint_speaks_http1() {
    let server = FcmServer::start(FcmServerOptions::test()).unwrap();
    let mut s = connect_h1(server.addr(), server.ca_pem()).await.unwrap();
    let a = test_assertion(&server.token_url(), unix_secs() as u64);
    let req = Request::post("/token")
        .header("host", "localhost")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(grant_form(&a))))
        .unwrap();
    s.ready().await.unwrap();
    let resp = s.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(body["access_token"].as_str().unwrap().starts_with("ya29."));
}

#[test]
fn form_decoding() {
    let f = parse_form(b"a=x%3Ay+z&b=&c=%zz&d=%4");
    assert_eq!(
        f,
        vec![
            ("a".to_string(), "x:y z".to_string()),
            ("b".to_string(), String::new()),
            ("c".to_string(), "%zz".to_string()),
            ("d".to_string(), "%4".to_string()),
        ]
    );
}
