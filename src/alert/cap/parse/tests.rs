//! Tests of the CAP parser: the sample alert, and one hostile or invalid
//! document per way the parser must refuse input.

use super::super::model::Point;
use super::*;

const NS: &str = "urn:oasis:names:tc:emergency:cap:1.2";
const SAMPLE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/samples/missing-child.xml"
));

const HEAD: &str = "<identifier>ID-1</identifier><sender>s@example.org</sender>\
    <sent>2026-11-29T09:00:00+08:00</sent><status>Actual</status>\
    <msgType>Alert</msgType><scope>Public</scope>";

fn info(extra: &str) -> String {
    format!(
        "<info><category>Rescue</category><event>E</event><urgency>Immediate</urgency>\
         <severity>Severe</severity><certainty>Likely</certainty>{extra}</info>"
    )
}

fn doc(body: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<alert xmlns=\"{NS}\">{body}</alert>")
}

fn with_info(extra: &str) -> String {
    doc(&format!("{HEAD}{}", info(extra)))
}

fn with_area(inner: &str) -> String {
    with_info(&format!("<area><areaDesc>A</areaDesc>{inner}</area>"))
}

fn p(xml: &str) -> Result<Alert, CapError> {
    parse(xml.as_bytes(), &CapLimits::default())
}

fn ring(n: usize) -> String {
    // n points on a circle, the last repeating the first.
    let mut pts: Vec<String> = (0..n - 1)
        .map(|i| {
            let a = i as f64 / (n - 1) as f64 * std::f64::consts::TAU;
            format!("{},{}", 23.0 + a.sin() * 0.1, 113.0 + a.cos() * 0.1)
        })
        .collect();
    pts.push(pts[0].clone());
    pts.join(" ")
}

#[test]
fn sample_parses_with_every_field() {
    let a = p(SAMPLE).unwrap();
    assert_eq!(a.identifier, "GZPSB-CA-2026-1129-0001");
    assert_eq!(a.sender, "police.gz@example.gov.cn");
    assert_eq!(a.sent_raw, "2026-11-29T09:00:00+08:00");
    assert_eq!(a.sent.offset().local_minus_utc(), 8 * 3600);
    assert_eq!(a.status, Status::Actual);
    assert_eq!(a.msg_type, MsgType::Alert);
    assert_eq!(a.scope, Scope::Public);
    assert_eq!(a.codes, vec!["IPAWSv1.0".to_owned()]);
    assert!(a.references.is_empty());
    assert_eq!(
        a.alert_id(),
        "police.gz@example.gov.cn,GZPSB-CA-2026-1129-0001,2026-11-29T09:00:00+08:00"
    );
    assert_eq!(a.infos.len(), 2);
    let (zh, en) = (&a.infos[0], &a.infos[1]);
    assert_eq!(zh.language, "zh-CN");
    assert_eq!(en.language, "en-US");
    assert_eq!(zh.event, "寻找失踪儿童");
    assert_eq!(en.event, "Child Abduction");
    for i in [zh, en] {
        assert_eq!(i.categories, vec!["Rescue".to_owned()]);
        assert_eq!(
            (
                i.urgency.as_str(),
                i.severity.as_str(),
                i.certainty.as_str()
            ),
            ("Immediate", "Severe", "Likely")
        );
        assert_eq!(i.event_codes[0].value_name, "SAME");
        assert_eq!(i.event_codes[0].value, "CAE");
        assert_eq!(i.expires.unwrap().to_rfc3339(), "2026-12-01T09:00:00+08:00");
        assert!(i.contact.as_deref().unwrap().contains("110"));
        assert_eq!(i.parameters[0].value_name, "childName");
        assert_eq!(i.resources[0].mime_type, "image/jpeg");
        assert_eq!(i.resources[0].size, Some(48213));
        assert!(i.resources[0]
            .uri
            .as_deref()
            .unwrap()
            .ends_with("photo.jpg"));
        assert_eq!(i.areas.len(), 1);
        let area = &i.areas[0];
        assert_eq!(
            area.circles[0].center,
            Point {
                lat: 23.1291,
                lon: 113.2644
            }
        );
        assert_eq!(area.circles[0].radius_km, 100.0);
        assert_eq!(area.geocodes[0].value_name, "CN-GB2260");
        assert_eq!(area.geocodes[0].value, "440000");
    }
    assert_eq!(zh.areas, en.areas);
    assert_eq!(zh.parameters[0].value, "李小明");
    assert!(zh.description.as_deref().unwrap().contains("6岁"));
    assert!(en.description.as_deref().unwrap().contains("age 6"));
    // `&amp;` in the sample decodes.
    assert!(en
        .description
        .as_deref()
        .unwrap()
        .contains("trainers & a small"));
}

#[test]
fn minimal_alert_gets_the_default_language() {
    let a = p(&with_info("")).unwrap();
    assert_eq!(a.infos[0].language, "en-US");
    assert_eq!(a.infos[0].categories, vec!["Rescue".to_owned()]);
}

#[test]
fn prefixed_root_and_bom_are_accepted() {
    let xml = format!(
        "\u{FEFF}<cap:alert xmlns:cap=\"{NS}\"><cap:identifier>X</cap:identifier>\
         <cap:sender>s</cap:sender><cap:sent>2026-11-29T01:00:00-00:00</cap:sent>\
         <cap:status>Test</cap:status><cap:msgType>Cancel</cap:msgType>\
         <cap:scope>Public</cap:scope>\
         <cap:references>s,W,2026-11-29T00:00:00-00:00</cap:references></cap:alert>"
    );
    let a = p(&xml).unwrap();
    assert_eq!(a.msg_type, MsgType::Cancel);
    assert!(a.infos.is_empty());
    assert_eq!(a.references[0].alert_id(), "s,W,2026-11-29T00:00:00-00:00");
    assert_eq!(a.sent_raw, "2026-11-29T01:00:00-00:00");
}

#[test]
fn predefined_entities_char_refs_cdata_and_comments_decode() {
    let a = p(&with_info(
        "<!-- a comment --><headline>&lt;&gt;&amp;&apos;&quot;&#20013;&#x6587;</headline>\
         <description><![CDATA[<b>bold</b> & more]]></description>",
    ))
    .unwrap();
    assert_eq!(a.infos[0].headline.as_deref(), Some("<>&'\"中文"));
    assert_eq!(
        a.infos[0].description.as_deref(),
        Some("<b>bold</b> & more")
    );
}

#[test]
fn signature_element_is_skipped() {
    let sig = "<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\">\
               <SignedInfo><Reference URI=\"\"/></SignedInfo>\
               <SignatureValue>AAAA</SignatureValue></Signature>";
    let a = p(&doc(&format!("{HEAD}{}{sig}", info("")))).unwrap();
    assert_eq!(a.infos.len(), 1);
}

#[test]
fn billion_laughs_dtd_is_refused() {
    let xml = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n\
         <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n\
         <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n\
         ]>\n<alert xmlns=\"{NS}\"><note>&lol2;</note></alert>"
    );
    let err = p(&xml).unwrap_err();
    assert_eq!(err, CapError::DtdForbidden);
    assert_eq!(err.code(), "xml_dtd_forbidden");
}

#[test]
fn external_entity_is_refused() {
    let xml = format!(
        "<!DOCTYPE alert [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\
         <alert xmlns=\"{NS}\"><identifier>&xxe;</identifier></alert>"
    );
    assert_eq!(p(&xml), Err(CapError::DtdForbidden));
}

#[test]
fn unknown_entity_is_refused() {
    let err = p(&with_info("<headline>a &foo; b</headline>")).unwrap_err();
    assert_eq!(err, CapError::EntityForbidden("foo".into()));
    assert_eq!(err.code(), "xml_entity_forbidden");
    // HTML entities are not XML's.
    assert!(matches!(
        p(&with_info("<headline>&nbsp;</headline>")),
        Err(CapError::EntityForbidden(_))
    ));
}

#[test]
fn unclosed_polygon_is_refused() {
    let err = p(&with_area("<polygon>1,1 1,2 2,2 2,1</polygon>")).unwrap_err();
    assert_eq!(err, CapError::PolygonNotClosed);
    assert_eq!(err.code(), "polygon_not_closed");
}

#[test]
fn polygon_vertex_limit_is_inclusive() {
    let a = p(&with_area(&format!("<polygon>{}</polygon>", ring(1000)))).unwrap();
    assert_eq!(a.infos[0].areas[0].polygons[0].len(), 1000);
    let err = p(&with_area(&format!("<polygon>{}</polygon>", ring(1001)))).unwrap_err();
    assert_eq!(err, CapError::PolygonTooManyVertices { max: 1000 });
    assert_eq!(err.code(), "polygon_too_many_vertices");
}

#[test]
fn polygon_with_bad_latitude_is_refused() {
    for bad in [
        "1,1 91,2 2,2 1,1",
        "1,1 NaN,2 2,2 1,1",
        "1,1 1e1,2 2,2 1,1",
        "1,1 x 2,2 1,1",
    ] {
        let err = p(&with_area(&format!("<polygon>{bad}</polygon>"))).unwrap_err();
        assert!(matches!(err, CapError::PolygonInvalid(_)), "{bad}: {err}");
        assert_eq!(err.code(), "polygon_invalid");
    }
}

#[test]
fn bad_circle_is_refused() {
    for bad in ["23.1,113.2", "23.1,113.2 0", "23.1,200 5", "23.1,113.2 inf"] {
        let err = p(&with_area(&format!("<circle>{bad}</circle>"))).unwrap_err();
        assert!(matches!(err, CapError::CircleInvalid(_)), "{bad}: {err}");
        assert_eq!(err.code(), "circle_invalid");
    }
}

#[test]
fn missing_required_elements_are_named() {
    let no_id = doc(&format!(
        "{}{}",
        HEAD.replace("<identifier>ID-1</identifier>", ""),
        info("")
    ));
    let err = p(&no_id).unwrap_err();
    assert_eq!(err, CapError::MissingField("identifier"));
    assert_eq!(err.code(), "cap_invalid");
    let no_cat = doc(&format!(
        "{HEAD}{}",
        info("").replace("<category>Rescue</category>", "")
    ));
    assert_eq!(p(&no_cat), Err(CapError::MissingField("category")));
    assert_eq!(p(&doc(HEAD)), Err(CapError::MissingField("info")));
    let update = doc(&format!(
        "{}{}",
        HEAD.replace(">Alert<", ">Update<"),
        info("")
    ));
    assert_eq!(p(&update), Err(CapError::MissingField("references")));
    let res = with_info("<resource><resourceDesc>d</resourceDesc></resource>");
    assert_eq!(p(&res), Err(CapError::MissingField("mimeType")));
    let area = with_info("<area><circle>1,1 1</circle></area>");
    assert_eq!(p(&area), Err(CapError::MissingField("areaDesc")));
    let geo = with_area("<geocode><value>1</value></geocode>");
    assert_eq!(p(&geo), Err(CapError::MissingField("valueName")));
    let private = doc(&format!(
        "{}{}",
        HEAD.replace(">Public<", ">Private<"),
        info("")
    ));
    assert_eq!(p(&private), Err(CapError::MissingField("addresses")));
}

#[test]
fn oversize_input_is_refused_before_parsing() {
    let limits = CapLimits {
        max_bytes: 100,
        ..CapLimits::default()
    };
    let err = parse(with_info("").as_bytes(), &limits).unwrap_err();
    assert_eq!(err, CapError::TooLarge { max: 100 });
    assert_eq!(err.code(), "payload_too_large");
}

#[test]
fn too_deep_nesting_is_refused() {
    let limits = CapLimits {
        max_depth: 3,
        ..CapLimits::default()
    };
    let err = parse(with_area("").as_bytes(), &limits).unwrap_err();
    assert_eq!(err, CapError::LimitExceeded("depth"));
    assert_eq!(err.code(), "cap_limit_exceeded");
    // Deep nesting inside the skipped signature is caught as well.
    let deep = format!(
        "<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\">{}{}</Signature>",
        "<a>".repeat(50),
        "</a>".repeat(50)
    );
    let err = p(&doc(&format!("{HEAD}{}{deep}", info("")))).unwrap_err();
    assert_eq!(err, CapError::LimitExceeded("depth"));
}

#[test]
fn too_many_infos_and_elements_are_refused() {
    let nine = info("").repeat(9);
    assert_eq!(
        p(&doc(&format!("{HEAD}{nine}"))),
        Err(CapError::LimitExceeded("info"))
    );
    let limits = CapLimits {
        max_elements: 10,
        ..CapLimits::default()
    };
    assert_eq!(
        parse(with_info("").as_bytes(), &limits),
        Err(CapError::LimitExceeded("elements"))
    );
    let geos = "<geocode><valueName>a</valueName><value>b</value></geocode>".repeat(65);
    assert_eq!(
        p(&with_area(&geos)),
        Err(CapError::LimitExceeded("geocode"))
    );
}

#[test]
fn long_text_is_refused_per_field() {
    let long = "x".repeat(1025);
    assert_eq!(
        p(&with_info(&format!("<headline>{long}</headline>"))),
        Err(CapError::LimitExceeded("headline"))
    );
    let amps = "&amp;".repeat(1025);
    assert_eq!(
        p(&with_info(&format!("<headline>{amps}</headline>"))),
        Err(CapError::LimitExceeded("headline"))
    );
    assert!(p(&with_info(&format!("<description>{long}</description>"))).is_ok());
}

#[test]
fn malformed_xml_is_refused() {
    for bad in [
        doc("<identifier>x</sender>"),
        format!("<alert xmlns=\"{NS}\"><identifier>x</identifier>"),
        with_info("<headline>a & b</headline>"),
        with_info("<headline>bell \u{7}</headline>"),
        with_info("<headline>&#1;</headline>"),
        with_info("<?php echo 1; ?>"),
        with_info("").replace("UTF-8", "UTF-16"),
        format!("{}<alert xmlns=\"{NS}\"/>", with_info("")),
        "".to_owned(),
    ] {
        let err = p(&bad).unwrap_err();
        assert!(matches!(err, CapError::Malformed(_)), "{bad}: {err:?}");
        assert_eq!(err.code(), "xml_malformed");
    }
    let mut not_utf8 = with_info("<headline>é</headline>").into_bytes();
    let at = not_utf8.iter().position(|&b| b == 0xC3).unwrap();
    not_utf8[at] = 0xFF;
    assert!(matches!(
        parse(&not_utf8, &CapLimits::default()),
        Err(CapError::Malformed(_))
    ));
}

#[test]
fn wrong_root_or_namespace_is_refused() {
    for bad in [
        format!("<feed xmlns=\"{NS}\"></feed>"),
        "<alert><identifier>x</identifier></alert>".to_owned(),
        "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.1\"></alert>".to_owned(),
    ] {
        let err = p(&bad).unwrap_err();
        assert_eq!(err, CapError::WrongRoot, "{bad}");
        assert_eq!(err.code(), "cap_invalid");
    }
    // Children must be in the CAP namespace too.
    let foreign = format!("<cap:alert xmlns:cap=\"{NS}\"><identifier>x</identifier></cap:alert>");
    assert!(matches!(
        p(&foreign),
        Err(CapError::Invalid { field: "alert", .. })
    ));
}

#[test]
fn z_dates_are_refused_and_minus_zero_accepted() {
    let z = doc(&format!(
        "{}{}",
        HEAD.replace("2026-11-29T09:00:00+08:00", "2026-11-29T01:00:00Z"),
        info("")
    ));
    assert!(matches!(
        p(&z),
        Err(CapError::Invalid { field: "sent", .. })
    ));
    let utc = HEAD.replace("2026-11-29T09:00:00+08:00", "2026-11-29T01:00:00-00:00");
    let a = p(&doc(&format!("{utc}{}", info("")))).unwrap();
    assert_eq!(a.sent, p(&with_info("")).unwrap().sent);
    assert!(matches!(
        p(&with_info("<expires>2026-11-29</expires>")),
        Err(CapError::Invalid {
            field: "expires",
            ..
        })
    ));
}

#[test]
fn closed_schema_unknown_and_repeated_elements() {
    let err = p(&with_info("<colour>red</colour>")).unwrap_err();
    assert_eq!(
        err,
        CapError::Invalid {
            field: "info",
            reason: "unexpected element <colour>".into()
        }
    );
    assert!(matches!(
        p(&with_info("<headline>a</headline><headline>b</headline>")),
        Err(CapError::Invalid {
            field: "headline",
            ..
        })
    ));
    assert!(matches!(
        p(&with_info("<headline>a<b>c</b></headline>")),
        Err(CapError::Invalid {
            field: "headline",
            ..
        })
    ));
    assert!(matches!(
        p(&with_area("stray text")),
        Err(CapError::Invalid { field: "area", .. })
    ));
    assert!(matches!(
        p(&with_area("<ceiling>10</ceiling>")),
        Err(CapError::Invalid {
            field: "ceiling",
            ..
        })
    ));
}

#[test]
fn enumerations_and_identifiers_are_checked() {
    for (from, to, field) in [
        (">Actual<", ">Real<", "status"),
        (">Alert<", ">Warning<", "msgType"),
        (">Public<", ">Everyone<", "scope"),
        ("<identifier>ID-1<", "<identifier>ID 1<", "identifier"),
        ("<sender>s@example.org<", "<sender>a,b<", "sender"),
    ] {
        let bad = doc(&format!("{}{}", HEAD.replace(from, to), info("")));
        assert!(
            matches!(p(&bad), Err(CapError::Invalid { field: f, .. }) if f == field),
            "{field}"
        );
    }
    for (from, to, field) in [
        (">Rescue<", ">Kidnap<", "category"),
        (">Immediate<", ">Now<", "urgency"),
        (">Severe<", ">Bad<", "severity"),
        (">Likely<", ">Very Likely<", "certainty"),
    ] {
        let bad = doc(&format!("{HEAD}{}", info("").replace(from, to)));
        assert!(
            matches!(p(&bad), Err(CapError::Invalid { field: f, .. }) if f == field),
            "{field}"
        );
    }
    assert!(matches!(
        p(&with_info("<responseType>Run</responseType>")),
        Err(CapError::Invalid {
            field: "responseType",
            ..
        })
    ));
    // Enumerated values tolerate surrounding whitespace.
    assert!(p(&doc(&format!(
        "{}{}",
        HEAD.replace(">Actual<", "> Actual\n<"),
        info("")
    )))
    .is_ok());
}

#[test]
fn errors_never_echo_much_input() {
    let long_name = "e".repeat(10_000);
    for bad in [
        with_info(&format!("<headline>&{long_name};</headline>")),
        with_info(&format!("<{long_name}>x</{long_name}>")),
        with_area(&format!("<polygon>1,1 {long_name} 2,2 1,1</polygon>")),
        with_area(&format!("<circle>{long_name}</circle>")),
        doc(&format!(
            "{}{}",
            HEAD.replace(">Actual<", &format!(">{long_name}<")),
            info("")
        )),
        doc(&format!("<identifier>x</{long_name}>")),
    ] {
        let msg = p(&bad).unwrap_err().to_string();
        assert!(msg.len() < 200, "{} chars: {msg}", msg.len());
    }
}

#[test]
fn every_variant_has_a_stable_code() {
    let all = [
        (CapError::TooLarge { max: 1 }, "payload_too_large"),
        (CapError::Malformed(String::new()), "xml_malformed"),
        (CapError::DtdForbidden, "xml_dtd_forbidden"),
        (
            CapError::EntityForbidden(String::new()),
            "xml_entity_forbidden",
        ),
        (CapError::WrongRoot, "cap_invalid"),
        (CapError::LimitExceeded("x"), "cap_limit_exceeded"),
        (CapError::MissingField("x"), "cap_invalid"),
        (
            CapError::Invalid {
                field: "x",
                reason: String::new(),
            },
            "cap_invalid",
        ),
        (CapError::PolygonNotClosed, "polygon_not_closed"),
        (
            CapError::PolygonTooManyVertices { max: 1 },
            "polygon_too_many_vertices",
        ),
        (CapError::PolygonInvalid(String::new()), "polygon_invalid"),
        (CapError::CircleInvalid(String::new()), "circle_invalid"),
    ];
    for (err, code) in all {
        assert_eq!(err.code(), code, "{err:?}");
    }
}

#[test]
fn attribute_bombs_are_cut_short() {
    let attrs: String = (0..10_000).map(|i| format!(" a{i}=\"\"")).collect();
    let xml = format!("<alert xmlns=\"{NS}\"{attrs}></alert>");
    assert_eq!(p(&xml), Err(CapError::LimitExceeded("attributes")));
    let dup = format!("<alert xmlns=\"{NS}\" a=\"1\" a=\"2\"></alert>");
    assert!(matches!(p(&dup), Err(CapError::Malformed(_))));
}

#[test]
fn namespace_declarations_are_scoped() {
    let prefixed = |s: &str| s.replace("<", "<c:").replace("<c:/", "</c:");
    let rest = prefixed(&HEAD.replace("<identifier>ID-1</identifier>", ""));
    let info = prefixed(&info(""));
    let ok = format!(
        "<c:alert xmlns:c=\"{NS}\"><identifier xmlns=\"{NS}\">ID-1</identifier>{rest}{info}</c:alert>"
    );
    assert_eq!(p(&ok).unwrap().identifier, "ID-1");
    // The default namespace declared on <identifier> ends with it.
    let leaked = format!(
        "<c:alert xmlns:c=\"{NS}\"><identifier xmlns=\"{NS}\">ID-1</identifier><sender>s</sender></c:alert>"
    );
    assert!(matches!(
        p(&leaked),
        Err(CapError::Invalid { field: "alert", .. })
    ));
}
