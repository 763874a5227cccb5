//! The CAP 1.2 serialiser: an [`Alert`] to an XML document in the CAP 1.2
//! namespace, elements in schema order, text escaped, dates in CAP form,
//! numbers in Rust's shortest round-tripping notation. For every alert the
//! parser accepts, `parse(to_xml(a)) == a`. It validates nothing (the
//! model's invariants are the parser's job) and does no I/O.

use std::fmt::Write as _;

use chrono::{DateTime, FixedOffset};

use super::model::{Alert, Area, Circle, Info, Point, Resource, ValuePair};

/// The CAP 1.2 namespace URI.
const CAP_NS: &str = "urn:oasis:names:tc:emergency:cap:1.2";

/// Serialises `alert` as a CAP 1.2 XML document (UTF-8, with declaration).
pub fn to_xml(alert: &Alert) -> String {
    let mut w = Writer {
        out: String::with_capacity(2048),
        depth: 0,
    };
    w.out
        .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    w.out.push_str("<alert xmlns=\"");
    w.out.push_str(CAP_NS);
    w.out.push_str("\">\n");
    w.depth = 1;
    w.leaf("identifier", &alert.identifier);
    w.leaf("sender", &alert.sender);
    if alert.sent_raw.is_empty() {
        w.leaf("sent", &cap_date(&alert.sent));
    } else {
        w.leaf("sent", &alert.sent_raw);
    }
    w.leaf("status", alert.status.as_str());
    w.leaf("msgType", alert.msg_type.as_str());
    w.opt("source", &alert.source);
    w.leaf("scope", alert.scope.as_str());
    w.opt("restriction", &alert.restriction);
    w.opt("addresses", &alert.addresses);
    for code in &alert.codes {
        w.leaf("code", code);
    }
    w.opt("note", &alert.note);
    if !alert.references.is_empty() {
        let refs: Vec<String> = alert.references.iter().map(|r| r.alert_id()).collect();
        w.leaf("references", &refs.join(" "));
    }
    w.opt("incidents", &alert.incidents);
    for info in &alert.infos {
        w.info(info);
    }
    w.out.push_str("</alert>\n");
    w.out
}

/// A CAP `dateTime`: `YYYY-MM-DDThh:mm:ss±hh:mm`.
fn cap_date(at: &DateTime<FixedOffset>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// `lat,lon` with the shortest decimal text that parses back to each value.
fn point(out: &mut String, p: &Point) {
    // `Display` for f64 never uses an exponent and is the shortest
    // round-tripping form, which is what the parser's decimal syntax takes.
    let _ = write!(out, "{},{}", p.lat, p.lon);
}

fn polygon_text(points: &[Point]) -> String {
    let mut s = String::with_capacity(points.len() * 20);
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        point(&mut s, p);
    }
    s
}

fn circle_text(c: &Circle) -> String {
    let mut s = String::new();
    point(&mut s, &c.center);
    let _ = write!(s, " {}", c.radius_km);
    s
}

/// Appends `text` with `&`, `<`, `>` escaped, and CR as `&#13;` so that
/// XML's line-end normalisation does not turn it into LF on the way back.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

struct Writer {
    out: String,
    depth: usize,
}

impl Writer {
    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    fn open(&mut self, name: &str) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        self.out.push_str(">\n");
        self.depth += 1;
    }

    fn close(&mut self, name: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    fn leaf(&mut self, name: &str, text: &str) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        escape_into(&mut self.out, text);
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    fn opt(&mut self, name: &str, text: &Option<String>) {
        if let Some(text) = text {
            self.leaf(name, text);
        }
    }

    fn opt_date(&mut self, name: &str, at: &Option<DateTime<FixedOffset>>) {
        if let Some(at) = at {
            self.leaf(name, &cap_date(at));
        }
    }

    fn pair(&mut self, name: &str, pair: &ValuePair) {
        self.open(name);
        self.leaf("valueName", &pair.value_name);
        self.leaf("value", &pair.value);
        self.close(name);
    }

    fn info(&mut self, info: &Info) {
        self.open("info");
        self.leaf("language", &info.language);
        for c in &info.categories {
            self.leaf("category", c);
        }
        self.leaf("event", &info.event);
        for r in &info.response_types {
            self.leaf("responseType", r);
        }
        self.leaf("urgency", &info.urgency);
        self.leaf("severity", &info.severity);
        self.leaf("certainty", &info.certainty);
        self.opt("audience", &info.audience);
        for ec in &info.event_codes {
            self.pair("eventCode", ec);
        }
        self.opt_date("effective", &info.effective);
        self.opt_date("onset", &info.onset);
        self.opt_date("expires", &info.expires);
        self.opt("senderName", &info.sender_name);
        self.opt("headline", &info.headline);
        self.opt("description", &info.description);
        self.opt("instruction", &info.instruction);
        self.opt("web", &info.web);
        self.opt("contact", &info.contact);
        for p in &info.parameters {
            self.pair("parameter", p);
        }
        for r in &info.resources {
            self.resource(r);
        }
        for a in &info.areas {
            self.area(a);
        }
        self.close("info");
    }

    fn resource(&mut self, r: &Resource) {
        self.open("resource");
        self.leaf("resourceDesc", &r.resource_desc);
        self.leaf("mimeType", &r.mime_type);
        if let Some(size) = r.size {
            self.leaf("size", &size.to_string());
        }
        self.opt("uri", &r.uri);
        self.opt("derefUri", &r.deref_uri);
        self.opt("digest", &r.digest);
        self.close("resource");
    }

    fn area(&mut self, a: &Area) {
        self.open("area");
        self.leaf("areaDesc", &a.area_desc);
        for p in &a.polygons {
            self.leaf("polygon", &polygon_text(p));
        }
        for c in &a.circles {
            self.leaf("circle", &circle_text(c));
        }
        for g in &a.geocodes {
            self.pair("geocode", g);
        }
        if let Some(alt) = a.altitude {
            self.leaf("altitude", &alt.to_string());
        }
        if let Some(ceil) = a.ceiling {
            self.leaf("ceiling", &ceil.to_string());
        }
        self.close("area");
    }
}

#[cfg(test)]
mod tests {
    use super::super::limits::CapLimits;
    use super::super::model::*;
    use super::super::parse::parse;
    use super::to_xml;
    use chrono::{DateTime, FixedOffset, TimeZone};
    use proptest::collection::vec;
    use proptest::option;
    use proptest::prelude::*;

    const SAMPLE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/samples/missing-child.xml"
    ));

    fn round_trip(a: &Alert) -> Alert {
        let xml = to_xml(a);
        match parse(xml.as_bytes(), &CapLimits::default()) {
            Ok(back) => back,
            Err(e) => panic!("{e}\n{xml}"),
        }
    }

    #[test]
    fn sample_round_trips() {
        let a = parse(SAMPLE.as_bytes(), &CapLimits::default()).unwrap();
        assert_eq!(round_trip(&a), a);
        let xml = to_xml(&a);
        assert!(xml.contains("<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">"));
        assert!(xml.contains("<sent>2026-11-29T09:00:00+08:00</sent>"));
        assert!(xml.contains("<expires>2026-12-01T09:00:00+08:00</expires>"));
        assert!(xml.contains("<circle>23.1291,113.2644 100</circle>"));
        assert!(xml.contains("trainers &amp; a small"));
    }

    #[test]
    fn elements_come_in_schema_order() {
        let a = parse(SAMPLE.as_bytes(), &CapLimits::default()).unwrap();
        let xml = to_xml(&a);
        let order = [
            "<identifier>",
            "<sender>",
            "<sent>",
            "<status>",
            "<msgType>",
            "<source>",
            "<scope>",
            "<code>",
            "<info>",
            "<language>",
            "<category>",
            "<event>",
            "<responseType>",
            "<urgency>",
            "<severity>",
            "<certainty>",
            "<audience>",
            "<eventCode>",
            "<effective>",
            "<expires>",
            "<senderName>",
            "<headline>",
            "<description>",
            "<instruction>",
            "<web>",
            "<contact>",
            "<parameter>",
            "<resource>",
            "<area>",
            "<areaDesc>",
            "<circle>",
            "<geocode>",
        ];
        let at: Vec<usize> = order.iter().map(|t| xml.find(t).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{xml}");
    }

    #[test]
    fn awkward_text_and_floats_survive() {
        let mut a = parse(SAMPLE.as_bytes(), &CapLimits::default()).unwrap();
        a.note = Some(" a\r\nb\rc <&>\"' ]]> 中文 \t".to_owned());
        a.infos[0].areas[0].polygons = vec![vec![
            Point {
                lat: 0.1 + 0.2,
                lon: -179.99999999999997,
            },
            Point {
                lat: -90.0,
                lon: 1e-7,
            },
            Point {
                lat: 89.123_456_789_012_35,
                lon: 180.0,
            },
            Point {
                lat: 0.1 + 0.2,
                lon: -179.99999999999997,
            },
        ]];
        a.infos[0].areas[0].altitude = Some(-0.5);
        a.infos[0].areas[0].ceiling = Some(1e21);
        assert_eq!(round_trip(&a), a);
    }

    fn text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 <>&\"'\t\n\r;#寻找失踪儿童中文é😀\\]]{0,24}"
    }

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._@:/-]{1,24}"
    }

    fn date() -> impl Strategy<Value = DateTime<FixedOffset>> {
        // Years 1970..2100, offsets in quarter hours within ±14 h.
        (0i64..4_102_444_800, -56i32..=56).prop_map(|(secs, q)| {
            let off = FixedOffset::east_opt(q * 900).unwrap();
            off.timestamp_opt(secs, 0).unwrap()
        })
    }

    fn point() -> impl Strategy<Value = Point> {
        (-90.0f64..=90.0, -180.0f64..=180.0).prop_map(|(lat, lon)| Point { lat, lon })
    }

    fn pair() -> impl Strategy<Value = ValuePair> {
        (text(), text()).prop_map(|(value_name, value)| ValuePair { value_name, value })
    }

    fn area() -> impl Strategy<Value = Area> {
        (
            text(),
            vec(vec(point(), 3..12), 0..3),
            vec((point(), 0.001f64..=2000.0), 0..3),
            vec(pair(), 0..4),
            option::of(-1e4f64..1e5),
            option::of(0.0f64..1e5),
        )
            .prop_map(
                |(area_desc, rings, circles, geocodes, altitude, ceiling)| Area {
                    area_desc,
                    polygons: rings
                        .into_iter()
                        .map(|mut r| {
                            r.push(r[0]);
                            r
                        })
                        .collect(),
                    circles: circles
                        .into_iter()
                        .map(|(center, radius_km)| Circle { center, radius_km })
                        .collect(),
                    geocodes,
                    ceiling: altitude.and(ceiling),
                    altitude,
                },
            )
    }

    fn resource() -> impl Strategy<Value = Resource> {
        (
            text(),
            "[a-z]{1,8}/[a-z0-9.+-]{1,12}",
            option::of(any::<u64>()),
            option::of(token()),
            option::of("[A-Za-z0-9+/]{0,40}={0,2}"),
            option::of("[0-9a-f]{40}"),
        )
            .prop_map(|(resource_desc, mime_type, size, uri, deref_uri, digest)| {
                Resource {
                    resource_desc,
                    mime_type,
                    size,
                    uri,
                    deref_uri,
                    digest,
                }
            })
    }

    fn pick(values: &'static [&'static str]) -> impl Strategy<Value = String> {
        proptest::sample::select(values).prop_map(str::to_owned)
    }

    fn info() -> impl Strategy<Value = Info> {
        let head = (
            "[a-z]{2}(-[A-Z]{2})?",
            vec(
                pick(&["Geo", "Met", "Safety", "Rescue", "CBRNE", "Other"]),
                1..4,
            ),
            text(),
            vec(
                pick(&["Shelter", "Evacuate", "Monitor", "AllClear", "None"]),
                0..3,
            ),
            pick(&["Immediate", "Expected", "Future", "Past", "Unknown"]),
            pick(&["Extreme", "Severe", "Moderate", "Minor", "Unknown"]),
            pick(&["Observed", "Likely", "Possible", "Unlikely", "Unknown"]),
            option::of(text()),
            vec(pair(), 0..3),
        );
        let dates = (option::of(date()), option::of(date()), option::of(date()));
        let texts = (
            option::of(text()),
            option::of(text()),
            option::of(text()),
            option::of(text()),
            option::of(token()),
            option::of(text()),
        );
        let rest = (vec(pair(), 0..3), vec(resource(), 0..3), vec(area(), 0..3));
        (head, dates, texts, rest).prop_map(
            |(
                (
                    language,
                    categories,
                    event,
                    response_types,
                    urgency,
                    severity,
                    certainty,
                    audience,
                    event_codes,
                ),
                (effective, onset, expires),
                (sender_name, headline, description, instruction, web, contact),
                (parameters, resources, areas),
            )| Info {
                language,
                categories,
                event,
                response_types,
                urgency,
                severity,
                certainty,
                audience,
                event_codes,
                effective,
                onset,
                expires,
                sender_name,
                headline,
                description,
                instruction,
                web,
                contact,
                parameters,
                resources,
                areas,
            },
        )
    }

    fn reference() -> impl Strategy<Value = Reference> {
        ("[A-Za-z0-9.@-]{1,16}", "[A-Za-z0-9.@-]{1,16}", date()).prop_map(
            |(sender, identifier, sent)| Reference {
                sender,
                identifier,
                sent: sent.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            },
        )
    }

    fn alert() -> impl Strategy<Value = Alert> {
        let head = (
            "[A-Za-z0-9._@:-]{1,30}",
            "[A-Za-z0-9._@:-]{1,30}",
            date(),
            proptest::sample::select(
                &[
                    Status::Actual,
                    Status::Exercise,
                    Status::System,
                    Status::Test,
                    Status::Draft,
                ][..],
            ),
            proptest::sample::select(
                &[
                    MsgType::Alert,
                    MsgType::Update,
                    MsgType::Cancel,
                    MsgType::Ack,
                    MsgType::Error,
                ][..],
            ),
            proptest::sample::select(&[Scope::Public, Scope::Restricted, Scope::Private][..]),
        );
        let texts = (
            option::of(text()),
            option::of(text()),
            option::of(text()),
            vec(text(), 0..3),
            option::of(text()),
            option::of(text()),
        );
        (head, texts, vec(reference(), 1..4), vec(info(), 1..4)).prop_map(
            |(
                (identifier, sender, sent, status, msg_type, scope),
                (source, restriction, addresses, codes, note, incidents),
                references,
                infos,
            )| Alert {
                identifier,
                sender,
                sent_raw: sent.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
                sent,
                status,
                msg_type,
                source,
                scope,
                restriction,
                // CAP requires addresses for Private scope.
                addresses: if scope == Scope::Private {
                    Some(addresses.unwrap_or_default())
                } else {
                    addresses
                },
                codes,
                note,
                references,
                incidents,
                infos,
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn generated_alerts_round_trip(a in alert()) {
            let xml = to_xml(&a);
            let back = parse(xml.as_bytes(), &CapLimits::default());
            prop_assert_eq!(back.as_ref(), Ok(&a), "{}", xml);
            // Offsets survive too, not only instants.
            if let Ok(back) = back {
                for (x, y) in a.infos.iter().zip(&back.infos) {
                    prop_assert_eq!(x.expires.map(|d| *d.offset()), y.expires.map(|d| *d.offset()));
                }
            }
        }
    }
}
