//! The admin HTTP server (axum): `/metrics` (Prometheus), `/healthz`,
//! `/readyz`, `GET /v1/alerts` and `/v1/alerts/{id}` with per-channel
//! progress, `/v1/alerts/{id}/label.png` (the parcel label), and the public
//! pull feed `GET /feeds/alerts.atom` of active alerts with their CAP XML
//! inline. Read-only; binds loopback by default.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::alert::envelope::Envelope;
use crate::dispatch::Dispatcher;
use crate::journal::{AlertRecord, Journal};
use crate::metrics::Metrics;

/// Shared state of the admin server.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: Metrics,
    pub journal: Arc<Journal>,
    pub dispatcher: Dispatcher,
    pub ready: Arc<AtomicBool>,
    pub public_url: String,
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/v1/alerts", get(list_alerts))
        .route("/v1/alerts/{id}", get(one_alert))
        .route("/v1/alerts/{id}/label.png", get(label_png))
        .route("/feeds/alerts.atom", get(atom))
        .with_state(state)
}

async fn metrics(State(s): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn readyz(State(s): State<AdminState>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "admin request failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "journal error\n").into_response()
}

fn alert_json(s: &AdminState, rec: &AlertRecord) -> serde_json::Value {
    let progress = s.dispatcher.progress(rec.seq);
    let channels = match &progress {
        Some(p) => serde_json::to_value(p.view()).unwrap_or_default(),
        None => {
            // Not started since boot: report the journaled cursors.
            let cursors = s.journal.cursors(rec.seq).unwrap_or_default();
            json!(rec
                .targeted
                .iter()
                .map(|(ch, n)| {
                    let c = cursors.get(ch).cloned().unwrap_or_default();
                    json!({"channel": ch, "targeted": n, "delivered": c.delivered,
                           "failed": c.failed, "dropped": c.dropped, "done": c.done})
                })
                .collect::<Vec<_>>())
        }
    };
    json!({
        "seq": rec.seq,
        "id": rec.alert_id,
        "receipt": rec.receipt,
        "authority": rec.authority,
        "msg_type": rec.msg_type,
        "status": rec.status,
        "state": rec.state,
        "accepted_at": rec.accepted_at,
        "expires": rec.expires,
        "replaced_by": rec.replaced_by,
        "first_delivery_ms": progress.as_ref().and_then(|p| p.first_delivery.get()).map(|d| d.as_millis() as u64),
        "finished_ms": progress.as_ref().and_then(|p| p.finished_after.get()).map(|d| d.as_millis() as u64),
        "channels": channels,
    })
}

async fn list_alerts(State(s): State<AdminState>) -> Response {
    let j = s.journal.clone();
    match tokio::task::spawn_blocking(move || j.alerts(200)).await {
        Ok(Ok(recs)) => {
            Json(recs.iter().map(|r| alert_json(&s, r)).collect::<Vec<_>>()).into_response()
        }
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

/// The alert `id` names: a journal seq, an alert id or a receipt.
fn find_alert(j: &Journal, id: &str) -> Result<Option<AlertRecord>, crate::journal::JournalError> {
    if let Ok(seq) = id.parse::<u64>() {
        return j.alert(seq);
    }
    if let Some(seq) = j.seq_of(id)? {
        return j.alert(seq);
    }
    Ok(j.alerts(usize::MAX)?.into_iter().find(|a| a.receipt == id))
}

async fn one_alert(State(s): State<AdminState>, Path(id): Path<String>) -> Response {
    let j = s.journal.clone();
    let found = tokio::task::spawn_blocking(move || find_alert(&j, &id)).await;
    match found {
        Ok(Ok(Some(rec))) => Json(alert_json(&s, &rec)).into_response(),
        Ok(Ok(None)) => (StatusCode::NOT_FOUND, "no such alert\n").into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

#[derive(serde::Deserialize)]
struct LabelQuery {
    lang: Option<String>,
}

/// The parcel label of an alert as PNG, from its journaled envelope (the
/// photo only when embedded; one that does not decode is left out).
async fn label_png(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    Query(q): Query<LabelQuery>,
) -> Response {
    use crate::channel::label;
    let j = s.journal.clone();
    let rendered = tokio::task::spawn_blocking(move || -> Result<Option<Result<Vec<u8>, label::LabelError>>, crate::journal::JournalError> {
        let Some(rec) = find_alert(&j, &id)? else { return Ok(None) };
        let Some(env) = j.envelope(rec.seq)? else { return Ok(None) };
        let Some(alert) = Envelope::decode(&env)
            .ok()
            .and_then(|e| std::str::from_utf8(e.payload()).ok().and_then(|x| crate::channel::AlertContent::from_xml(rec.seq, x).ok()))
        else {
            return Ok(None);
        };
        let language = q.lang.unwrap_or_default();
        let opts = label::LabelOptions { public_url: s.public_url.clone(), language };
        let photo = alert.info_for(&opts.language).and_then(label::photo_bytes);
        let out = match label::render(&alert, photo.as_deref(), &opts) {
            Err(e) if e.is_photo() => label::render(&alert, None, &opts),
            r => r,
        };
        Ok(Some(out.map(|l| l.png)))
    })
    .await;
    match rendered {
        Ok(Ok(Some(Ok(png)))) => ([(header::CONTENT_TYPE, "image/png")], png).into_response(),
        Ok(Ok(Some(Err(e)))) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        Ok(Ok(None)) => (StatusCode::NOT_FOUND, "no such alert\n").into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

fn xml_escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// The CAP document of an envelope without its XML declaration, for inline use.
fn inline_cap(env: &[u8]) -> Option<String> {
    let e = Envelope::decode(env).ok()?;
    let text = std::str::from_utf8(e.payload())
        .ok()?
        .trim_start_matches('\u{feff}');
    let body = match text.trim_start().strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>").map(|(_, b)| b)?,
        None => text,
    };
    Some(body.trim().to_string())
}

async fn atom(State(s): State<AdminState>) -> Response {
    let j = s.journal.clone();
    let base = s.public_url.trim_end_matches('/').to_string();
    let built = tokio::task::spawn_blocking(move || -> Result<String, crate::journal::JournalError> {
        let recs: Vec<AlertRecord> = j
            .alerts(usize::MAX)?
            .into_iter()
            .filter(|a| a.state.is_live() || a.state == crate::journal::AlertState::Completed)
            .filter(|a| a.expires.is_none_or(|e| e > chrono::Utc::now()))
            .filter(|a| a.msg_type != "Cancel" && a.status == "Actual")
            .take(500)
            .collect();
        let updated = recs
            .iter()
            .map(|r| r.accepted_at)
            .max()
            .unwrap_or_else(chrono::Utc::now);
        let mut out = String::with_capacity(4096);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
        out.push_str("  <title>tocsin active alerts</title>\n");
        out.push_str(&format!("  <id>{}/feeds/alerts.atom</id>\n", xml_escape(&base)));
        out.push_str(&format!("  <link rel=\"self\" href=\"{}/feeds/alerts.atom\"/>\n", xml_escape(&base)));
        out.push_str(&format!("  <updated>{}</updated>\n", updated.to_rfc3339()));
        for r in recs {
            let Some(env) = j.envelope(r.seq)? else { continue };
            let Some(cap) = inline_cap(&env) else { continue };
            out.push_str("  <entry>\n");
            out.push_str(&format!("    <id>urn:tocsin:alert:{}</id>\n", xml_escape(&r.receipt)));
            out.push_str(&format!("    <title>{}</title>\n", xml_escape(&r.alert_id)));
            out.push_str(&format!("    <updated>{}</updated>\n", r.accepted_at.to_rfc3339()));
            out.push_str(&format!("    <author><name>{}</name></author>\n", xml_escape(&r.authority)));
            out.push_str(&format!(
                "    <link rel=\"alternate\" href=\"{}/v1/alerts/{}\"/>\n",
                xml_escape(&base),
                xml_escape(&r.receipt)
            ));
            out.push_str("    <content type=\"application/common-alerting-protocol+xml\">");
            out.push_str(&cap);
            out.push_str("</content>\n  </entry>\n");
        }
        out.push_str("</feed>\n");
        Ok(out)
    })
    .await;
    match built {
        Ok(Ok(body)) => (
            [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
            body,
        )
            .into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}
