//! The hardened CAP 1.2 parser: untrusted bytes in, a checked [`Alert`] out.
//! It streams the document through [`cursor`] (which refuses DTDs, foreign
//! entities, processing instructions and over-deep or over-long documents)
//! and builds the model element by element, enforcing [`CapLimits`] before
//! anything is stored, CAP's closed schema (unknown or repeated elements are
//! errors), its required elements and its value syntax ([`values`]). It
//! never expands an entity, never fetches anything and never echoes more
//! than 64 characters of its input in an error.

mod cursor;
mod values;

use chrono::{DateTime, FixedOffset};

use self::cursor::{Cursor, Ns, Tok};
use self::values::{snippet, trim_xml};
use super::limits::CapLimits;
use super::model::{Alert, Area, Info, MsgType, Resource, Scope, Status, ValuePair};

/// Why a CAP document was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CapError {
    /// The document is larger than `CapLimits::max_bytes`.
    #[error("CAP document larger than {max} bytes")]
    TooLarge { max: usize },
    /// Not well-formed XML, not UTF-8, or XML that CAP never needs.
    #[error("malformed XML: {0}")]
    Malformed(String),
    /// A `<!DOCTYPE>` was present; DTDs are never processed.
    #[error("DTDs are not allowed")]
    DtdForbidden,
    /// An entity reference other than the five XML predefines.
    #[error("entity reference &{0}; is not allowed")]
    EntityForbidden(String),
    /// The root element is not `<alert>` in the CAP 1.2 namespace.
    #[error("root element is not a CAP 1.2 <alert>")]
    WrongRoot,
    /// A count, size or depth limit was passed; names what.
    #[error("limit exceeded: {0}")]
    LimitExceeded(&'static str),
    /// A required element is absent.
    #[error("missing required element <{0}>")]
    MissingField(&'static str),
    /// An element is unknown, repeated, or has a value CAP does not allow.
    #[error("invalid <{field}>: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A polygon's last point differs from its first.
    #[error("polygon is not closed (last point must equal the first)")]
    PolygonNotClosed,
    /// A polygon has more points than allowed.
    #[error("polygon has more than {max} vertices")]
    PolygonTooManyVertices { max: usize },
    /// A polygon point is not `lat,lon` in range, or there are too few.
    #[error("invalid polygon: {0}")]
    PolygonInvalid(String),
    /// A circle is not `lat,lon radius` with coordinates and radius in range.
    #[error("invalid circle: {0}")]
    CircleInvalid(String),
}

impl CapError {
    /// A stable snake_case code for receipts, metrics labels and the README.
    pub fn code(&self) -> &'static str {
        match self {
            CapError::TooLarge { .. } => "payload_too_large",
            CapError::Malformed(_) => "xml_malformed",
            CapError::DtdForbidden => "xml_dtd_forbidden",
            CapError::EntityForbidden(_) => "xml_entity_forbidden",
            CapError::WrongRoot | CapError::MissingField(_) | CapError::Invalid { .. } => {
                "cap_invalid"
            }
            CapError::LimitExceeded(_) => "cap_limit_exceeded",
            CapError::PolygonNotClosed => "polygon_not_closed",
            CapError::PolygonTooManyVertices { .. } => "polygon_too_many_vertices",
            CapError::PolygonInvalid(_) => "polygon_invalid",
            CapError::CircleInvalid(_) => "circle_invalid",
        }
    }
}

/// Parses one CAP 1.2 `<alert>` from untrusted bytes, enforcing `limits`.
pub fn parse(xml: &[u8], limits: &CapLimits) -> Result<Alert, CapError> {
    if xml.len() > limits.max_bytes {
        return Err(CapError::TooLarge {
            max: limits.max_bytes,
        });
    }
    let xml = xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml);
    let text = std::str::from_utf8(xml).map_err(|e| {
        CapError::Malformed(format!("not UTF-8 (invalid byte at {})", e.valid_up_to()))
    })?;
    let mut p = Parser {
        cur: Cursor::new(text, limits),
        lim: limits,
    };
    loop {
        match p.cur.next()? {
            Tok::Text(t) if trim_xml(&t).is_empty() => {}
            Tok::Open {
                name: "alert",
                ns: Ns::Cap,
            } => break,
            Tok::Open { .. } => return Err(CapError::WrongRoot),
            Tok::Text(_) | Tok::Close => {
                return Err(CapError::Malformed("text before the root element".into()))
            }
            Tok::Eof => return Err(CapError::Malformed("no root element".into())),
        }
    }
    let alert = p.alert()?;
    loop {
        match p.cur.next()? {
            Tok::Text(t) if trim_xml(&t).is_empty() => {}
            Tok::Eof => return Ok(alert),
            _ => return Err(CapError::Malformed("content after the root element".into())),
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> CapError {
    CapError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Errs with `LimitExceeded(what)` when `len` items already fill `max`.
fn room(len: usize, max: usize, what: &'static str) -> Result<(), CapError> {
    if len >= max {
        Err(CapError::LimitExceeded(what))
    } else {
        Ok(())
    }
}

/// The element-level parser: one method per CAP container.
struct Parser<'i, 'l> {
    cur: Cursor<'i>,
    lim: &'l CapLimits,
}

impl Parser<'_, '_> {
    /// The next child element of the container `ctx`, or `None` at its end.
    /// Whitespace between children is skipped; other text is an error.
    fn child(&mut self, ctx: &'static str) -> Result<Option<&'static str>, CapError> {
        loop {
            match self.cur.next()? {
                Tok::Open { name, ns: Ns::Cap } if !name.is_empty() => return Ok(Some(name)),
                // XML-DSig `<Signature>` may close an `<alert>` (CAP 1.2 §3.3.2.1);
                // verification happens elsewhere, so it is read (within the
                // limits) and dropped.
                Tok::Open { ns: Ns::Dsig, .. } if ctx == "alert" && self.cur.depth() == 2 => {
                    self.cur.skip()?
                }
                Tok::Open { ns: Ns::Cap, .. } => return Err(self.unexpected(ctx)),
                Tok::Open { .. } => {
                    return Err(invalid(
                        ctx,
                        format!(
                            "element <{}> is not in the CAP 1.2 namespace",
                            self.cur.raw_name()
                        ),
                    ))
                }
                Tok::Close => return Ok(None),
                Tok::Text(t) if trim_xml(&t).is_empty() => {}
                Tok::Text(t) => {
                    return Err(invalid(
                        ctx,
                        format!("unexpected text {:?}", snippet(trim_xml(&t), 32)),
                    ))
                }
                Tok::Eof => return Err(self.cur.unexpected_eof()),
            }
        }
    }

    fn unexpected(&self, ctx: &'static str) -> CapError {
        invalid(ctx, format!("unexpected element <{}>", self.cur.raw_name()))
    }

    /// The text content of the element just opened, at most `max` bytes.
    fn text(&mut self, field: &'static str, max: usize) -> Result<String, CapError> {
        let mut out = String::new();
        loop {
            match self.cur.next()? {
                Tok::Text(t) => {
                    if out.len().saturating_add(t.len()) > max {
                        return Err(CapError::LimitExceeded(field));
                    }
                    out.push_str(&t);
                }
                Tok::Close => return Ok(out),
                Tok::Open { .. } => return Err(self.unexpected(field)),
                Tok::Eof => return Err(self.cur.unexpected_eof()),
            }
        }
    }

    /// The text of a single-valued element: an error if `seen` already.
    fn once(&mut self, seen: bool, field: &'static str, max: usize) -> Result<String, CapError> {
        if seen {
            return Err(invalid(field, "element appears more than once"));
        }
        self.text(field, max)
    }

    /// A single-valued CAP `dateTime` element.
    fn date_once(
        &mut self,
        slot: &Option<DateTime<FixedOffset>>,
        field: &'static str,
    ) -> Result<Option<DateTime<FixedOffset>>, CapError> {
        let raw = self.once(slot.is_some(), field, self.lim.max_short_text_bytes)?;
        values::date(field, &raw).map(Some)
    }

    fn alert(&mut self) -> Result<Alert, CapError> {
        let (short, long) = (self.lim.max_short_text_bytes, self.lim.max_text_bytes);
        let mut identifier = None;
        let mut sender = None;
        let mut sent: Option<(DateTime<FixedOffset>, String)> = None;
        let mut status = None;
        let mut msg_type = None;
        let mut source = None;
        let mut scope = None;
        let mut restriction = None;
        let mut addresses = None;
        let mut codes = Vec::new();
        let mut note = None;
        let mut references = None;
        let mut incidents = None;
        let mut infos = Vec::new();
        while let Some(name) = self.child("alert")? {
            match name {
                "identifier" => {
                    let raw = self.once(identifier.is_some(), name, short)?;
                    identifier = Some(values::id_token(name, &raw)?);
                }
                "sender" => {
                    let raw = self.once(sender.is_some(), name, short)?;
                    sender = Some(values::id_token(name, &raw)?);
                }
                "sent" => {
                    let raw = self.once(sent.is_some(), name, short)?;
                    let at = values::date(name, &raw)?;
                    sent = Some((at, trim_xml(&raw).to_owned()));
                }
                "status" => {
                    let raw = self.once(status.is_some(), name, short)?;
                    status = Some(values::one_of(name, &raw, Status::from_cap)?);
                }
                "msgType" => {
                    let raw = self.once(msg_type.is_some(), name, short)?;
                    msg_type = Some(values::one_of(name, &raw, MsgType::from_cap)?);
                }
                "source" => source = Some(self.once(source.is_some(), name, short)?),
                "scope" => {
                    let raw = self.once(scope.is_some(), name, short)?;
                    scope = Some(values::one_of(name, &raw, Scope::from_cap)?);
                }
                "restriction" => {
                    restriction = Some(self.once(restriction.is_some(), name, long)?)
                }
                "addresses" => addresses = Some(self.once(addresses.is_some(), name, long)?),
                "code" => {
                    room(codes.len(), self.lim.max_codes, "code")?;
                    codes.push(self.text(name, short)?);
                }
                "note" => note = Some(self.once(note.is_some(), name, long)?),
                "references" => {
                    let raw = self.once(references.is_some(), name, long)?;
                    references = Some(values::references(&raw, self.lim.max_references)?);
                }
                "incidents" => incidents = Some(self.once(incidents.is_some(), name, long)?),
                "info" => {
                    room(infos.len(), self.lim.max_infos, "info")?;
                    infos.push(self.info()?);
                }
                _ => return Err(self.unexpected("alert")),
            }
        }
        let identifier = identifier.ok_or(CapError::MissingField("identifier"))?;
        let sender = sender.ok_or(CapError::MissingField("sender"))?;
        let (sent, sent_raw) = sent.ok_or(CapError::MissingField("sent"))?;
        let status = status.ok_or(CapError::MissingField("status"))?;
        let msg_type = msg_type.ok_or(CapError::MissingField("msgType"))?;
        let scope = scope.ok_or(CapError::MissingField("scope"))?;
        let references = references.unwrap_or_default();
        // Update, Cancel, Ack and Error all act on the alerts they reference.
        if msg_type != MsgType::Alert && references.is_empty() {
            return Err(CapError::MissingField("references"));
        }
        if msg_type == MsgType::Alert && infos.is_empty() {
            return Err(CapError::MissingField("info"));
        }
        if scope == Scope::Private && addresses.is_none() {
            return Err(CapError::MissingField("addresses"));
        }
        Ok(Alert {
            identifier,
            sender,
            sent,
            sent_raw,
            status,
            msg_type,
            source,
            scope,
            restriction,
            addresses,
            codes,
            note,
            references,
            incidents,
            infos,
        })
    }

    fn info(&mut self) -> Result<Info, CapError> {
        let (short, long) = (self.lim.max_short_text_bytes, self.lim.max_text_bytes);
        let mut language = None;
        let mut categories = Vec::new();
        let mut event = None;
        let mut response_types = Vec::new();
        let mut urgency = None;
        let mut severity = None;
        let mut certainty = None;
        let mut audience = None;
        let mut event_codes = Vec::new();
        let mut effective = None;
        let mut onset = None;
        let mut expires = None;
        let mut sender_name = None;
        let mut headline = None;
        let mut description = None;
        let mut instruction = None;
        let mut web = None;
        let mut contact = None;
        let mut parameters = Vec::new();
        let mut resources = Vec::new();
        let mut areas = Vec::new();
        while let Some(name) = self.child("info")? {
            match name {
                "language" => {
                    let raw = self.once(language.is_some(), name, short)?;
                    language = Some(values::language(&raw)?);
                }
                "category" => {
                    room(categories.len(), self.lim.max_categories, name)?;
                    let raw = self.text(name, short)?;
                    categories.push(values::string_one_of(name, &raw, values::CATEGORIES)?);
                }
                "event" => event = Some(self.once(event.is_some(), name, short)?),
                "responseType" => {
                    room(response_types.len(), self.lim.max_response_types, name)?;
                    let raw = self.text(name, short)?;
                    response_types.push(values::string_one_of(name, &raw, values::RESPONSE_TYPES)?);
                }
                "urgency" => {
                    let raw = self.once(urgency.is_some(), name, short)?;
                    urgency = Some(values::string_one_of(name, &raw, values::URGENCIES)?);
                }
                "severity" => {
                    let raw = self.once(severity.is_some(), name, short)?;
                    severity = Some(values::string_one_of(name, &raw, values::SEVERITIES)?);
                }
                "certainty" => {
                    let raw = self.once(certainty.is_some(), name, short)?;
                    certainty = Some(values::string_one_of(name, &raw, values::CERTAINTIES)?);
                }
                "audience" => audience = Some(self.once(audience.is_some(), name, short)?),
                "eventCode" => {
                    room(event_codes.len(), self.lim.max_event_codes, name)?;
                    event_codes.push(self.pair(name)?);
                }
                "effective" => effective = self.date_once(&effective, name)?,
                "onset" => onset = self.date_once(&onset, name)?,
                "expires" => expires = self.date_once(&expires, name)?,
                "senderName" => {
                    sender_name = Some(self.once(sender_name.is_some(), name, short)?)
                }
                "headline" => headline = Some(self.once(headline.is_some(), name, short)?),
                "description" => {
                    description = Some(self.once(description.is_some(), name, long)?)
                }
                "instruction" => {
                    instruction = Some(self.once(instruction.is_some(), name, long)?)
                }
                "web" => {
                    let raw = self.once(web.is_some(), name, long)?;
                    web = Some(trim_xml(&raw).to_owned());
                }
                "contact" => contact = Some(self.once(contact.is_some(), name, long)?),
                "parameter" => {
                    room(parameters.len(), self.lim.max_parameters, name)?;
                    parameters.push(self.pair(name)?);
                }
                "resource" => {
                    room(resources.len(), self.lim.max_resources_per_info, name)?;
                    resources.push(self.resource()?);
                }
                "area" => {
                    room(areas.len(), self.lim.max_areas_per_info, name)?;
                    areas.push(self.area()?);
                }
                _ => return Err(self.unexpected("info")),
            }
        }
        if categories.is_empty() {
            return Err(CapError::MissingField("category"));
        }
        Ok(Info {
            language: language.unwrap_or_else(|| "en-US".to_owned()),
            categories,
            event: event.ok_or(CapError::MissingField("event"))?,
            response_types,
            urgency: urgency.ok_or(CapError::MissingField("urgency"))?,
            severity: severity.ok_or(CapError::MissingField("severity"))?,
            certainty: certainty.ok_or(CapError::MissingField("certainty"))?,
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
        })
    }

    /// A `<valueName>`/`<value>` pair inside `ctx` (eventCode, parameter, geocode).
    fn pair(&mut self, ctx: &'static str) -> Result<ValuePair, CapError> {
        let short = self.lim.max_short_text_bytes;
        let mut value_name = None;
        let mut value = None;
        while let Some(name) = self.child(ctx)? {
            match name {
                "valueName" => value_name = Some(self.once(value_name.is_some(), name, short)?),
                "value" => value = Some(self.once(value.is_some(), name, short)?),
                _ => return Err(self.unexpected(ctx)),
            }
        }
        Ok(ValuePair {
            value_name: value_name.ok_or(CapError::MissingField("valueName"))?,
            value: value.ok_or(CapError::MissingField("value"))?,
        })
    }

    fn resource(&mut self) -> Result<Resource, CapError> {
        let (short, long) = (self.lim.max_short_text_bytes, self.lim.max_text_bytes);
        let mut resource_desc = None;
        let mut mime_type = None;
        let mut size = None;
        let mut uri = None;
        let mut deref_uri = None;
        let mut digest = None;
        while let Some(name) = self.child("resource")? {
            match name {
                "resourceDesc" => {
                    resource_desc = Some(self.once(resource_desc.is_some(), name, short)?)
                }
                "mimeType" => {
                    let raw = self.once(mime_type.is_some(), name, short)?;
                    mime_type = Some(trim_xml(&raw).to_owned());
                }
                "size" => {
                    let raw = self.once(size.is_some(), name, short)?;
                    size = Some(values::size(&raw)?);
                }
                "uri" => {
                    let raw = self.once(uri.is_some(), name, long)?;
                    uri = Some(trim_xml(&raw).to_owned());
                }
                "derefUri" => {
                    let raw = self.once(deref_uri.is_some(), name, self.lim.max_deref_bytes)?;
                    deref_uri = Some(raw);
                }
                "digest" => {
                    let raw = self.once(digest.is_some(), name, short)?;
                    digest = Some(trim_xml(&raw).to_owned());
                }
                _ => return Err(self.unexpected("resource")),
            }
        }
        Ok(Resource {
            resource_desc: resource_desc.ok_or(CapError::MissingField("resourceDesc"))?,
            mime_type: mime_type.ok_or(CapError::MissingField("mimeType"))?,
            size,
            uri,
            deref_uri,
            digest,
        })
    }

    fn area(&mut self) -> Result<Area, CapError> {
        let short = self.lim.max_short_text_bytes;
        let mut area_desc = None;
        let mut polygons = Vec::new();
        let mut circles = Vec::new();
        let mut geocodes = Vec::new();
        let mut altitude = None;
        let mut ceiling = None;
        while let Some(name) = self.child("area")? {
            match name {
                "areaDesc" => {
                    area_desc =
                        Some(self.once(area_desc.is_some(), name, self.lim.max_text_bytes)?)
                }
                "polygon" => {
                    room(polygons.len(), self.lim.max_polygons_per_area, name)?;
                    let raw = self.text(name, self.lim.max_polygon_bytes())?;
                    polygons.push(values::polygon(&raw, self.lim.max_polygon_vertices)?);
                }
                "circle" => {
                    room(circles.len(), self.lim.max_circles_per_area, name)?;
                    let raw = self.text(name, short)?;
                    circles.push(values::circle(&raw)?);
                }
                "geocode" => {
                    room(geocodes.len(), self.lim.max_geocodes_per_area, name)?;
                    geocodes.push(self.pair(name)?);
                }
                "altitude" => {
                    let raw = self.once(altitude.is_some(), name, short)?;
                    altitude = Some(values::float(name, &raw)?);
                }
                "ceiling" => {
                    let raw = self.once(ceiling.is_some(), name, short)?;
                    ceiling = Some(values::float(name, &raw)?);
                }
                _ => return Err(self.unexpected("area")),
            }
        }
        if ceiling.is_some() && altitude.is_none() {
            return Err(invalid("ceiling", "ceiling requires altitude"));
        }
        Ok(Area {
            area_desc: area_desc.ok_or(CapError::MissingField("areaDesc"))?,
            polygons,
            circles,
            geocodes,
            altitude,
            ceiling,
        })
    }
}

#[cfg(test)]
mod tests;
