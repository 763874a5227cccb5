//! The CAP 1.2 data model: plain types for an `<alert>` and its `<info>`,
//! `<resource>` and `<area>` blocks (OASIS CAP 1.2, §3.2). Parsing lives in
//! `parse.rs`, serialisation in `write.rs`; this file holds no I/O.

use chrono::{DateTime, FixedOffset};

/// `<status>`: who the alert is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Actual,
    Exercise,
    System,
    Test,
    Draft,
}

/// `<msgType>`: a new alert, or a change to earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MsgType {
    Alert,
    Update,
    Cancel,
    Ack,
    Error,
}

/// `<scope>`: who may see the alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Public,
    Restricted,
    Private,
}

/// One entry of `<references>`: `sender,identifier,sent`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub sender: String,
    pub identifier: String,
    /// The referenced alert's `<sent>` exactly as written.
    pub sent: String,
}

impl Reference {
    /// The canonical alert id `sender,identifier,sent` (the form `<references>` uses).
    pub fn alert_id(&self) -> String {
        format!("{},{},{}", self.sender, self.identifier, self.sent)
    }
}

/// A `<valueName>`/`<value>` pair (eventCode, parameter, geocode).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValuePair {
    pub value_name: String,
    pub value: String,
}

/// A CAP `<alert>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub identifier: String,
    pub sender: String,
    pub sent: DateTime<FixedOffset>,
    /// `<sent>` exactly as written, used in the alert id and in `<references>`.
    pub sent_raw: String,
    pub status: Status,
    pub msg_type: MsgType,
    pub source: Option<String>,
    pub scope: Scope,
    pub restriction: Option<String>,
    pub addresses: Option<String>,
    pub codes: Vec<String>,
    pub note: Option<String>,
    pub references: Vec<Reference>,
    pub incidents: Option<String>,
    pub infos: Vec<Info>,
}

impl Alert {
    /// The canonical alert id `sender,identifier,sent` (the form `<references>` uses).
    pub fn alert_id(&self) -> String {
        format!("{},{},{}", self.sender, self.identifier, self.sent_raw)
    }
}

/// A CAP `<info>` block: the message in one language.
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    /// RFC 3066 language tag; CAP's default is `en-US` when absent.
    pub language: String,
    /// `<category>` values as written (Geo, Met, Safety, Security, Rescue, …).
    pub categories: Vec<String>,
    pub event: String,
    pub response_types: Vec<String>,
    pub urgency: String,
    pub severity: String,
    pub certainty: String,
    pub audience: Option<String>,
    pub event_codes: Vec<ValuePair>,
    pub effective: Option<DateTime<FixedOffset>>,
    pub onset: Option<DateTime<FixedOffset>>,
    pub expires: Option<DateTime<FixedOffset>>,
    pub sender_name: Option<String>,
    pub headline: Option<String>,
    pub description: Option<String>,
    pub instruction: Option<String>,
    pub web: Option<String>,
    pub contact: Option<String>,
    pub parameters: Vec<ValuePair>,
    pub resources: Vec<Resource>,
    pub areas: Vec<Area>,
}

/// A CAP `<resource>`: a photo, audio file or document linked or embedded.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub resource_desc: String,
    pub mime_type: String,
    pub size: Option<u64>,
    pub uri: Option<String>,
    /// Base64 content exactly as written in `<derefUri>`.
    pub deref_uri: Option<String>,
    pub digest: Option<String>,
}

/// A point in WGS 84 degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub lat: f64,
    pub lon: f64,
}

/// A CAP `<circle>`: centre and radius in kilometres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Circle {
    pub center: Point,
    pub radius_km: f64,
}

/// A CAP `<area>`: the union of its polygons, circles and geocodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Area {
    pub area_desc: String,
    /// Closed rings (first point == last point), at least four points each.
    pub polygons: Vec<Vec<Point>>,
    pub circles: Vec<Circle>,
    pub geocodes: Vec<ValuePair>,
    pub altitude: Option<f64>,
    pub ceiling: Option<f64>,
}

impl Area {
    /// True when the area names no shape at all (only a description).
    pub fn is_empty(&self) -> bool {
        self.polygons.is_empty() && self.circles.is_empty() && self.geocodes.is_empty()
    }
}
