//! Validation of an FCM HTTP v1 send body (`{"message": {...}}`), as the
//! `projects.messages` reference describes the `Message` resource, and the
//! Google API error shape (`google.rpc.Status` in JSON, with an
//! `FcmError` detail) the server answers with. Plain functions on JSON, no
//! I/O, so the server stays thin.
//!
//! Checked: the top-level and `message` field names (proto JSON accepts
//! snake_case and lowerCamelCase), a registration `token` (topics and
//! conditions are refused: tocsin never sends them), `data` as a string →
//! string map, `notification` strings, `android.priority` (`HIGH`/`NORMAL`,
//! either case), `android.ttl` as a proto `Duration` (`"3600s"`, at most
//! four weeks) and `android.collapse_key`, and the 4096-byte payload limit
//! (measured as the compact JSON of `data`, `notification` and `android`).
//! Not checked: `webpush`, `apns` and `fcm_options` contents.

use serde_json::{json, Map, Value};

/// FCM's limit on a message's payload.
pub const MAX_PAYLOAD: usize = 4096;
/// Longest `android.ttl` FCM accepts (28 days).
const MAX_TTL_SECS: u64 = 28 * 24 * 3600;

/// A Google API error: HTTP status, `google.rpc.Code` name, message and the
/// optional `FcmError.errorCode` detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `status`, e.g. `INVALID_ARGUMENT`.
    pub status: &'static str,
    /// Human-readable `message`.
    pub message: String,
    /// `FcmError.errorCode` detail, when FCM sends one.
    pub fcm_code: Option<&'static str>,
    /// `google.rpc.BadRequest` field violation (field, description).
    pub field: Option<(String, String)>,
}

impl ApiError {
    /// A 400 `INVALID_ARGUMENT` with FCM error code `INVALID_ARGUMENT`.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 400,
            status: "INVALID_ARGUMENT",
            message: message.into(),
            fcm_code: Some("INVALID_ARGUMENT"),
            field: None,
        }
    }

    /// Attach a field violation.
    fn at(mut self, field: &str, description: &str) -> ApiError {
        self.field = Some((field.to_string(), description.to_string()));
        self
    }

    /// The JSON body Google sends.
    pub fn body(&self) -> Value {
        let mut err = json!({
            "code": self.code,
            "message": self.message,
            "status": self.status,
        });
        let mut details = Vec::new();
        if let Some(c) = self.fcm_code {
            details.push(json!({
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": c,
            }));
        }
        if let Some((field, description)) = &self.field {
            details.push(json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": description}],
            }));
        }
        if !details.is_empty() {
            err["details"] = Value::Array(details);
        }
        json!({ "error": err })
    }
}

const TOP_FIELDS: &[&str] = &["message", "validate_only", "validateOnly"];
const MESSAGE_FIELDS: &[&str] = &[
    "name",
    "token",
    "topic",
    "condition",
    "data",
    "notification",
    "android",
    "webpush",
    "apns",
    "fcm_options",
    "fcmOptions",
];
const NOTIFICATION_FIELDS: &[&str] = &["title", "body", "image"];
const ANDROID_FIELDS: &[&str] = &[
    "collapse_key",
    "collapseKey",
    "priority",
    "ttl",
    "restricted_package_name",
    "restrictedPackageName",
    "data",
    "notification",
    "fcm_options",
    "fcmOptions",
    "direct_boot_ok",
    "directBootOk",
];

fn unknown_field(obj: &Map<String, Value>, known: &[&str], at: &str) -> Result<(), ApiError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => {
            let field = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            Err(ApiError::invalid(format!(
                "Invalid JSON payload received. Unknown name \"{k}\" at '{at}': Cannot find field."
            ))
            .at(
                &field,
                &format!("Invalid JSON payload received. Unknown name \"{k}\""),
            ))
        }
    }
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, ApiError> {
    v.as_object().ok_or_else(|| {
        ApiError::invalid(format!("Invalid value at '{at}': expected an object"))
            .at(at, "expected an object")
    })
}

fn string<'a>(v: &'a Value, at: &str) -> Result<&'a str, ApiError> {
    v.as_str().ok_or_else(|| {
        ApiError::invalid(format!("Invalid value at '{at}' (TYPE_STRING), {v}"))
            .at(at, &format!("Invalid value at '{at}' (TYPE_STRING), {v}"))
    })
}

/// A proto JSON `Duration`: decimal seconds with an `s` suffix.
fn parse_duration_secs(s: &str) -> Option<u64> {
    let digits = s.strip_suffix('s')?;
    let (whole, frac) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Some(f) = frac {
        if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    whole.parse().ok()
}

/// Length of the compact JSON of `m`.
fn json_len(m: &Map<String, Value>) -> usize {
    serde_json::to_vec(m).map(|v| v.len()).unwrap_or(0)
}

/// Is `t` shaped like an FCM registration token?
fn token_shape_ok(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 4096
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.'))
}

/// Check a send body; returns the registration token.
pub fn validate(body: &Value) -> Result<&str, ApiError> {
    let top = body
        .as_object()
        .ok_or_else(|| ApiError::invalid("Invalid JSON payload received. Expected an object."))?;
    unknown_field(top, TOP_FIELDS, "")?;
    let msg = object(
        top.get("message").ok_or_else(|| {
            ApiError::invalid("Request contains an invalid argument.")
                .at("message", "Message must be set")
        })?,
        "message",
    )?;
    unknown_field(msg, MESSAGE_FIELDS, "message")?;
    if msg.contains_key("topic") || msg.contains_key("condition") {
        return Err(ApiError::invalid(
            "This test server only accepts messages to a registration token.",
        )
        .at("message", "topic and condition are not supported"));
    }
    let token = match msg.get("token") {
        None => {
            return Err(ApiError::invalid("Request contains an invalid argument.")
                .at("message", "Recipient of the message is not set."))
        }
        Some(t) => string(t, "message.token")?,
    };
    if !token_shape_ok(token) {
        return Err(ApiError::invalid(
            "The registration token is not a valid FCM registration token",
        )
        .at("message.token", "Invalid registration token"));
    }
    let mut size = 0;
    if let Some(data) = msg.get("data") {
        let data = object(data, "message.data")?;
        for (i, v) in data.values().enumerate() {
            string(v, &format!("message.data[{i}].value"))?;
        }
        size += json_len(data);
    }
    if let Some(n) = msg.get("notification") {
        let n = object(n, "message.notification")?;
        unknown_field(n, NOTIFICATION_FIELDS, "message.notification")?;
        for (k, v) in n {
            string(v, &format!("message.notification.{k}"))?;
        }
        size += json_len(n);
    }
    if let Some(a) = msg.get("android") {
        let a = object(a, "message.android")?;
        unknown_field(a, ANDROID_FIELDS, "message.android")?;
        if let Some(p) = a.get("priority") {
            let p = string(p, "message.android.priority")?;
            if !matches!(p, "HIGH" | "high" | "NORMAL" | "normal") {
                return Err(ApiError::invalid(format!(
                    "Invalid value at 'message.android.priority' (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), \"{p}\""
                ))
                .at("message.android.priority", "Invalid value"));
            }
        }
        if let Some(t) = a.get("ttl") {
            let t = string(t, "message.android.ttl")?;
            match parse_duration_secs(t) {
                Some(secs) if secs <= MAX_TTL_SECS => {}
                Some(_) => {
                    return Err(ApiError::invalid("TTL must not exceed 4 weeks")
                        .at("message.android.ttl", "TTL must not exceed 4 weeks"))
                }
                None => {
                    return Err(ApiError::invalid(format!(
                        "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), \"{t}\""
                    ))
                    .at("message.android.ttl", "Illegal duration format"))
                }
            }
        }
        for k in ["collapse_key", "collapseKey", "restricted_package_name"] {
            if let Some(v) = a.get(k) {
                string(v, &format!("message.android.{k}"))?;
            }
        }
        size += json_len(a);
    }
    if size > MAX_PAYLOAD {
        return Err(ApiError::invalid(format!(
            "Message is too big: {size} bytes, the limit is {MAX_PAYLOAD}"
        ))
        .at("message", "Message is too big"));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_msg() -> Value {
        json!({"message": {
            "token": "fcm-tok_1:abc",
            "android": {"priority": "HIGH", "ttl": "3600s", "collapse_key": "a1"},
            "notification": {"title": "Flood", "body": "Leave now"},
            "data": {"alert_id": "a1"},
        }})
    }

    fn err_of(mut f: impl FnMut(&mut Value)) -> ApiError {
        let mut m = ok_msg();
        f(&mut m);
        validate(&m).unwrap_err()
    }

    #[test]
    fn accepts_a_tocsin_message() {
        assert_eq!(validate(&ok_msg()).unwrap(), "fcm-tok_1:abc");
        let mut m = ok_msg();
        m["message"]["android"]["priority"] = json!("high");
        m["message"]["android"]["ttl"] = json!("1.5s");
        assert!(validate(&m).is_ok());
    }

    #[test]
    fn rejects_malformed_messages() {
        let e = err_of(|m| {
            m["message"].as_object_mut().unwrap().remove("token");
        });
        assert_eq!((e.code, e.status), (400, "INVALID_ARGUMENT"));
        let e = err_of(|m| m["message"]["data"]["n"] = json!(1));
        assert!(e.message.contains("message.data"), "{}", e.message);
        let e = err_of(|m| m["message"]["android"]["priority"] = json!("URGENT"));
        assert_eq!(e.code, 400);
        let e = err_of(|m| m["message"]["android"]["ttl"] = json!("3600"));
        assert_eq!(e.code, 400);
        let e = err_of(|m| m["message"]["android"]["ttl"] = json!("3000000s"));
        assert_eq!(e.code, 400);
        let e = err_of(|m| m["message"]["bogus"] = json!(1));
        assert!(e.message.contains("Unknown name \"bogus\""));
        let e = err_of(|m| m["message"]["token"] = json!("bad token!"));
        assert_eq!(e.field.unwrap().0, "message.token");
        let e = err_of(|m| m["message"]["data"]["big"] = json!("x".repeat(4100)));
        assert!(e.message.contains("too big"));
        let e = err_of(|m| m["message"]["topic"] = json!("news"));
        assert_eq!(e.code, 400);
    }

    #[test]
    fn error_body_has_google_shape() {
        let mut e = ApiError::invalid("x").at("message.token", "bad");
        let b = e.body();
        assert_eq!(b["error"]["code"], 400);
        assert_eq!(b["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(
            b["error"]["details"][0]["@type"],
            "type.googleapis.com/google.firebase.fcm.v1.FcmError"
        );
        assert_eq!(b["error"]["details"][0]["errorCode"], "INVALID_ARGUMENT");
        assert_eq!(
            b["error"]["details"][1]["fieldViolations"][0]["field"],
            "message.token"
        );
        e.fcm_code = None;
        e.field = None;
        assert!(e.body()["error"].get("details").is_none());
    }
}
