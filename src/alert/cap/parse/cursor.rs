//! The hardened XML token stream under the CAP parser. It wraps quick-xml's
//! reader and turns its events into three tokens (open, close, text),
//! refusing on the way everything CAP never needs: DTDs, entity references
//! other than the five predefined ones and character references, processing
//! instructions, characters XML forbids, and documents nested, sized or
//! attributed past the limits. It resolves namespaces itself (quick-xml's
//! `NsReader` reads every attribute of a tag, with a quadratic duplicate
//! check, before we could count them). It knows nothing of CAP's elements
//! beyond their names; the structure lives in `parse.rs`.

use std::borrow::Cow;

use quick_xml::escape::unescape;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::Reader;

use super::super::limits::CapLimits;
use super::values::{push_snippet, snippet};
use super::CapError;

/// The CAP 1.2 namespace every CAP element must be bound to.
pub(super) const CAP_NS: &[u8] = b"urn:oasis:names:tc:emergency:cap:1.2";
/// XML-DSig: CAP 1.2 allows `<Signature>` elements at the end of `<alert>`.
pub(super) const DSIG_NS: &[u8] = b"http://www.w3.org/2000/09/xmldsig#";

/// Which namespace an element is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ns {
    Cap,
    Dsig,
    Other,
}

/// One token of the document, comments and the declaration already dropped.
#[derive(Debug)]
pub(super) enum Tok<'i> {
    /// An element starts; `name` is its CAP local name, or `""` when the
    /// name is not one CAP defines (the raw name is kept for messages).
    Open { name: &'static str, ns: Ns },
    /// The innermost open element ends.
    Close,
    /// A piece of character data: text, CDATA or a resolved reference.
    Text(Cow<'i, str>),
    /// End of input.
    Eof,
}

/// Every element name CAP 1.2 defines.
const CAP_NAMES: [&str; 50] = [
    "addresses",
    "alert",
    "altitude",
    "area",
    "areaDesc",
    "audience",
    "category",
    "ceiling",
    "certainty",
    "circle",
    "code",
    "contact",
    "derefUri",
    "description",
    "digest",
    "effective",
    "event",
    "eventCode",
    "expires",
    "geocode",
    "headline",
    "identifier",
    "incidents",
    "info",
    "instruction",
    "language",
    "mimeType",
    "msgType",
    "note",
    "onset",
    "parameter",
    "polygon",
    "references",
    "resource",
    "resourceDesc",
    "responseType",
    "restriction",
    "scope",
    "sender",
    "senderName",
    "sent",
    "severity",
    "size",
    "source",
    "status",
    "urgency",
    "uri",
    "value",
    "valueName",
    "web",
];

/// A namespace declaration in scope: `xmlns[:prefix]="uri"` on the
/// element at `depth`.
struct Binding {
    depth: usize,
    /// Empty for the default namespace.
    prefix: Vec<u8>,
    uri: String,
}

/// A pull parser over one document that enforces the structural limits.
pub(super) struct Cursor<'i> {
    reader: Reader<&'i [u8]>,
    /// Namespace declarations in scope, innermost last; at most
    /// `max_attributes` per open element.
    bindings: Vec<Binding>,
    depth: usize,
    elements: usize,
    max_depth: usize,
    max_elements: usize,
    max_attributes: usize,
    /// Whether any token has been seen (the declaration must come first).
    started: bool,
    /// The raw local name of the last opened element, cut to 64 characters.
    raw_name: String,
}

impl<'i> Cursor<'i> {
    /// A cursor over `xml`, which the caller has checked is UTF-8.
    pub(super) fn new(xml: &'i str, limits: &CapLimits) -> Self {
        let mut reader = Reader::from_reader(xml.as_bytes());
        let config = reader.config_mut();
        config.expand_empty_elements = true;
        config.check_end_names = true;
        config.check_comments = true;
        config.allow_dangling_amp = false;
        config.trim_text(false);
        Self {
            reader,
            bindings: Vec::new(),
            depth: 0,
            elements: 0,
            max_depth: limits.max_depth,
            max_elements: limits.max_elements,
            max_attributes: limits.max_attributes,
            started: false,
            raw_name: String::new(),
        }
    }

    /// Current nesting depth (0 outside the root).
    pub(super) fn depth(&self) -> usize {
        self.depth
    }

    /// The raw local name of the last opened element, for messages.
    pub(super) fn raw_name(&self) -> &str {
        &self.raw_name
    }

    /// A quick-xml error, placed where the reader found it.
    fn xml_error(&self, e: impl std::fmt::Display) -> CapError {
        let msg = format!("at byte {}: {e}", self.reader.error_position());
        CapError::Malformed(snippet(&msg, 96))
    }

    /// One of our own refusals, placed after the event that caused it.
    fn malformed(&self, what: impl std::fmt::Display) -> CapError {
        let msg = format!("before byte {}: {what}", self.reader.buffer_position());
        CapError::Malformed(snippet(&msg, 96))
    }

    /// The next token.
    pub(super) fn next(&mut self) -> Result<Tok<'i>, CapError> {
        loop {
            let first = !self.started;
            self.started = true;
            let event = match self.reader.read_event() {
                Ok(event) => event,
                Err(e) => return Err(self.xml_error(e)),
            };
            match event {
                Event::Start(start) => {
                    self.elements += 1;
                    if self.elements > self.max_elements {
                        return Err(CapError::LimitExceeded("elements"));
                    }
                    self.depth += 1;
                    if self.depth > self.max_depth {
                        return Err(CapError::LimitExceeded("depth"));
                    }
                    self.bind(&start)?;
                    let qname = start.name();
                    let prefix = qname.prefix().map_or(&b""[..], |p| p.into_inner());
                    let ns = match self
                        .bindings
                        .iter()
                        .rev()
                        .find(|b| same_prefix(&b.prefix, prefix))
                    {
                        Some(b) if b.uri.as_bytes() == CAP_NS => Ns::Cap,
                        Some(b) if b.uri.as_bytes() == DSIG_NS => Ns::Dsig,
                        _ => Ns::Other,
                    };
                    let local = qname.local_name().into_inner();
                    let name = cap_name(local);
                    self.keep_raw_name(local);
                    return Ok(Tok::Open { name, ns });
                }
                Event::End(_) => {
                    while self.bindings.last().is_some_and(|b| b.depth >= self.depth) {
                        self.bindings.pop();
                    }
                    self.depth = self.depth.saturating_sub(1);
                    return Ok(Tok::Close);
                }
                Event::Empty(_) => {
                    // `expand_empty_elements` turns these into Start + End.
                    return Err(self.malformed("unexpected empty element event"));
                }
                Event::Text(text) => {
                    let s = text.xml10_content().map_err(|e| self.malformed(e))?;
                    check_chars(&s).map_err(|e| self.malformed(e))?;
                    return Ok(Tok::Text(s));
                }
                Event::CData(data) => {
                    let s = data.xml10_content().map_err(|e| self.malformed(e))?;
                    check_chars(&s).map_err(|e| self.malformed(e))?;
                    return Ok(Tok::Text(s));
                }
                Event::GeneralRef(r) => return self.reference(&r).map(Tok::Text),
                Event::Comment(_) => continue,
                Event::Decl(decl) => {
                    if !first {
                        return Err(self.malformed("XML declaration not at the start"));
                    }
                    if let Some(enc) = decl.encoding() {
                        let enc = enc.map_err(|e| self.malformed(e))?;
                        if !enc.eq_ignore_ascii_case(b"utf-8") {
                            return Err(self.malformed("only UTF-8 is accepted"));
                        }
                    }
                    continue;
                }
                Event::PI(_) => {
                    return Err(self.malformed("processing instructions are not allowed"))
                }
                Event::DocType(_) => return Err(CapError::DtdForbidden),
                Event::Eof => return Ok(Tok::Eof),
            }
        }
    }

    /// Keeps the first 64 characters of `local` for messages, in the
    /// buffer of the last one (no allocation per element).
    fn keep_raw_name(&mut self, local: &[u8]) {
        self.raw_name.clear();
        push_snippet(&mut self.raw_name, &String::from_utf8_lossy(local), 64);
    }

    /// Checks the attributes of a start tag (at most `max_attributes`, no
    /// duplicates) and records its namespace declarations. Other attributes
    /// are ignored: no CAP element has any.
    fn bind(&mut self, start: &BytesStart<'_>) -> Result<(), CapError> {
        let mut keys: Vec<&[u8]> = Vec::new();
        for attr in start.attributes().with_checks(false) {
            if keys.len() >= self.max_attributes {
                return Err(CapError::LimitExceeded("attributes"));
            }
            let attr = attr.map_err(|e| self.malformed(e))?;
            let key = attr.key.into_inner();
            if keys.contains(&key) {
                return Err(self.malformed("duplicate attribute"));
            }
            keys.push(key);
            let prefix = if key == b"xmlns" {
                &b""[..]
            } else if let Some(p) = key.strip_prefix(b"xmlns:") {
                p
            } else {
                continue;
            };
            // The document was checked to be UTF-8 and quotes are ASCII, so
            // the value is UTF-8 too; the check costs little and keeps the
            // error path honest.
            let raw = std::str::from_utf8(&attr.value).map_err(|e| self.malformed(e))?;
            let uri = unescape(raw).map_err(|e| self.malformed(e))?.into_owned();
            self.bindings.push(Binding {
                depth: self.depth,
                prefix: prefix.to_vec(),
                uri,
            });
        }
        Ok(())
    }

    /// Resolves `&name;`: the five predefined entities and character
    /// references only. No DTD is ever read, so any other name is refused.
    fn reference(&self, r: &BytesRef<'i>) -> Result<Cow<'i, str>, CapError> {
        if r.is_char_ref() {
            let c = match r.resolve_char_ref() {
                Ok(Some(c)) => c,
                Ok(None) => return Err(self.malformed("bad character reference")),
                Err(e) => return Err(self.malformed(e)),
            };
            if !is_xml_char(c) {
                return Err(self.malformed("character reference to a forbidden character"));
            }
            return Ok(Cow::Owned(c.to_string()));
        }
        let name = r.decode().map_err(|e| self.malformed(e))?;
        let resolved = match name.as_ref() {
            "lt" => "<",
            "gt" => ">",
            "amp" => "&",
            "apos" => "'",
            "quot" => "\"",
            other => return Err(CapError::EntityForbidden(snippet(other, 64))),
        };
        Ok(Cow::Borrowed(resolved))
    }

    /// Reads and drops the rest of the element just opened (its close tag
    /// included), still enforcing depth, element count and entity rules.
    pub(super) fn skip(&mut self) -> Result<(), CapError> {
        let target = self.depth.saturating_sub(1);
        loop {
            match self.next()? {
                Tok::Close if self.depth == target => return Ok(()),
                Tok::Eof => return Err(self.malformed("unexpected end of document")),
                _ => {}
            }
        }
    }

    /// Error for end of input inside an element.
    pub(super) fn unexpected_eof(&self) -> CapError {
        self.malformed("unexpected end of document")
    }
}

/// `a == b`, without calling `memcmp` for two empty prefixes (the default
/// namespace, the common case): an empty slice's pointer is dangling, and
/// glibc's AVX-512 `memcmp` does a masked load from it that costs a
/// microcode assist, which made this lookup a third of the parse.
fn same_prefix(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
}

/// The longest name [`CAP_NAMES`] may hold: a name and its length pack into
/// a `u128`.
const MAX_NAME: usize = 15;

/// `name` (at most [`MAX_NAME`] bytes) packed into an integer: its bytes,
/// then its length in the top byte (so a NUL byte cannot pass for padding).
const fn pack(name: &[u8]) -> u128 {
    let mut k = (name.len() as u128) << 120;
    let mut i = 0;
    while i < name.len() {
        k |= (name[i] as u128) << (8 * i);
        i += 1;
    }
    k
}

/// [`CAP_NAMES`], packed: looking a name up compares integers, not bytes
/// (a `memcmp` per candidate was a fifth of the parse).
const CAP_KEYS: [u128; CAP_NAMES.len()] = {
    let mut keys = [0; CAP_NAMES.len()];
    let mut i = 0;
    while i < keys.len() {
        assert!(CAP_NAMES[i].len() <= MAX_NAME);
        keys[i] = pack(CAP_NAMES[i].as_bytes());
        i += 1;
    }
    keys
};

/// The CAP name `local` spells, or `""` when CAP defines no such element.
fn cap_name(local: &[u8]) -> &'static str {
    if local.len() > MAX_NAME {
        return "";
    }
    let key = pack(local);
    CAP_KEYS
        .iter()
        .position(|&k| k == key)
        .map_or("", |i| CAP_NAMES[i])
}

/// True for the characters XML 1.0 allows in a document (§2.2 `Char`).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Refuses the characters XML 1.0 forbids. A `str` holds no surrogates, so
/// besides the C0 controls other than tab, LF and CR only U+FFFE and U+FFFF
/// (UTF-8 `EF BF BE` and `EF BF BF`) are left to find: a byte scan does it,
/// without decoding characters.
fn check_chars(s: &str) -> Result<(), &'static str> {
    let b = s.as_bytes();
    let bad = b.iter().enumerate().any(|(i, &c)| match c {
        b'\t' | b'\n' | b'\r' => false,
        0..0x20 => true,
        0xEF => b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF)),
        _ => false,
    });
    if bad {
        Err("character not allowed in XML")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_names_are_all_found_and_nothing_else() {
        for n in CAP_NAMES {
            assert_eq!(cap_name(n.as_bytes()), n);
        }
        for other in [
            "",
            "Alert",
            "alerts",
            "aler",
            "alert\0",
            "zzz",
            "xmlns",
            "resourceDescription",
        ] {
            assert_eq!(cap_name(other.as_bytes()), "");
        }
    }

    #[test]
    fn the_byte_scan_agrees_with_the_xml_char_rule() {
        let probes = (0u32..0x300)
            .chain(0xD7F0..0xD800)
            .chain(0xE000..0xE010)
            .chain(0xFFF0..=0xFFFF)
            .chain(0x10000..0x10010)
            .chain(0x10FFF0..=0x10FFFF)
            .filter_map(char::from_u32);
        for c in probes {
            // Alone, and between other characters (the scan looks ahead).
            for s in [c.to_string(), format!("a{c}é"), format!("\u{EF}{c}")] {
                assert_eq!(
                    check_chars(&s).is_ok(),
                    s.chars().all(is_xml_char),
                    "U+{:04X} in {s:?}",
                    c as u32
                );
            }
        }
    }
}
