//! SMS text: GSM 03.38 / UCS-2 coding, concatenated-SMS segmentation and short templates.
//!
//! This module owns the rules that turn a rendered alert text into SMS parts: it picks the
//! GSM 03.38 default alphabet (with the escape extension table) when every character fits
//! and UCS-2 (UTF-16BE) otherwise, splits long texts into parts carrying a 6-byte
//! concatenation UDH without ever splitting an escape pair or a surrogate pair, packs
//! GSM-7 septets into octets, and shortens a template to fit a number of parts. It hands
//! [`Part`]s to the SMPP and HTTP transports. It is pure: no I/O, no logging, no
//! dependency outside `std`, and it must never cut the hotline or the link of a template.

use std::fmt;
use std::ops::Range;

/// Septet that escapes into the GSM 03.38 extension table.
pub const ESCAPE: u8 = 0x1B;
/// GSM-7 septets in a single, unconcatenated SMS.
pub const GSM7_SINGLE: usize = 160;
/// GSM-7 septets per part of a concatenated SMS (6-byte UDH plus one fill bit).
pub const GSM7_MULTI: usize = 153;
/// UCS-2 code units in a single, unconcatenated SMS.
pub const UCS2_SINGLE: usize = 70;
/// UCS-2 code units per part of a concatenated SMS (6-byte UDH).
pub const UCS2_MULTI: usize = 67;
/// Length in octets of the concatenation UDH, including its length octet.
pub const UDH_LEN: usize = 6;
/// Most parts a concatenated SMS can have (the part counters are one octet).
pub const MAX_PARTS: usize = 255;

/// GSM 03.38 default alphabet, indexed by septet. 0x1B is the escape, never a character.
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// GSM 03.38 extension table: (septet after [`ESCAPE`], character).
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Not a septet: marks an unmapped slot in [`LATIN1_TO_BASIC`].
const NONE: u8 = 0xFF;

/// Reverse of [`BASIC`] for U+0000..U+00FF, so the common case is one table look-up.
const LATIN1_TO_BASIC: [u8; 256] = latin1_to_basic();

const fn latin1_to_basic() -> [u8; 256] {
    let mut table = [NONE; 256];
    let mut septet = 0;
    while septet < BASIC.len() {
        let c = BASIC[septet] as u32;
        if septet != ESCAPE as usize && c < 256 {
            table[c as usize] = septet as u8;
        }
        septet += 1;
    }
    table
}

/// The septet(s) one character takes in GSM-7.
#[derive(Clone, Copy)]
enum Gsm7Char {
    Basic(u8),
    Extended(u8),
}

fn gsm7_char(c: char) -> Option<Gsm7Char> {
    let code = c as u32;
    if code < 256 {
        let septet = LATIN1_TO_BASIC[code as usize];
        if septet != NONE {
            return Some(Gsm7Char::Basic(septet));
        }
    } else if let Some(septet) = BASIC.iter().position(|&b| b == c) {
        // Greek capitals; the escape slot holds U+001B, which is below 256.
        return u8::try_from(septet).ok().map(Gsm7Char::Basic);
    }
    EXTENSION
        .iter()
        .find(|&&(_, e)| e == c)
        .map(|&(septet, _)| Gsm7Char::Extended(septet))
}

/// Septets `text` takes in GSM-7 (extension characters count 2), or `None` if any
/// character is outside the GSM 03.38 alphabet.
pub fn gsm7_septets(text: &str) -> Option<usize> {
    text.chars().try_fold(0usize, |n, c| match gsm7_char(c)? {
        Gsm7Char::Basic(_) => Some(n + 1),
        Gsm7Char::Extended(_) => Some(n + 2),
    })
}

/// Unpacked GSM-7 septets of `text` (one septet per octet, escapes included), or `None`
/// if any character is outside the alphabet.
pub fn encode_gsm7(text: &str) -> Option<Vec<u8>> {
    let mut septets = Vec::with_capacity(text.len());
    for c in text.chars() {
        match gsm7_char(c)? {
            Gsm7Char::Basic(s) => septets.push(s),
            Gsm7Char::Extended(s) => septets.extend_from_slice(&[ESCAPE, s]),
        }
    }
    Some(septets)
}

/// Text of unpacked GSM-7 septets; an escape before an unknown code reads as the basic
/// character (3GPP TS 23.038), a trailing lone escape is dropped.
pub fn decode_gsm7(septets: &[u8]) -> String {
    let mut text = String::with_capacity(septets.len());
    let mut iter = septets.iter().map(|s| s & 0x7F);
    while let Some(s) = iter.next() {
        if s == ESCAPE {
            let Some(next) = iter.next() else { break };
            let ext = EXTENSION.iter().find(|&&(code, _)| code == next);
            match ext {
                Some(&(_, c)) => text.push(c),
                None if next == ESCAPE => {}
                None => text.push(BASIC[usize::from(next)]),
            }
        } else {
            text.push(BASIC[usize::from(s)]);
        }
    }
    text
}

/// Data coding of an SMS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Coding {
    /// GSM 03.38 default alphabet, 7 bits per septet.
    Gsm7,
    /// UCS-2 as UTF-16BE (characters outside the BMP take a surrogate pair).
    Ucs2,
}

impl Coding {
    /// The SMPP / TP-DCS `data_coding` value for this coding.
    pub fn data_coding(self) -> u8 {
        match self {
            Coding::Gsm7 => 0x00,
            Coding::Ucs2 => 0x08,
        }
    }
}

/// GSM-7 when every character of `text` fits the alphabet, else UCS-2.
pub fn choose_coding(text: &str) -> Coding {
    if gsm7_septets(text).is_some() {
        Coding::Gsm7
    } else {
        Coding::Ucs2
    }
}

/// Why a text cannot be sent as SMS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextError {
    /// The text needs more parts than allowed (or than a concatenated SMS can carry).
    TooLong {
        /// Parts the whole text would take.
        parts_needed: usize,
    },
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::TooLong { parts_needed } => {
                write!(f, "text needs {parts_needed} SMS parts, more than allowed")
            }
        }
    }
}

impl std::error::Error for TextError {}

/// One SMS of a (possibly concatenated) message, ready for a transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// Concatenation UDH `05 00 03 reference total sequence`, absent for a single SMS.
    pub udh: Option<[u8; 6]>,
    /// User data after the UDH: packed septets (GSM-7, with fill bits after a UDH) or UTF-16BE.
    pub payload: Vec<u8>,
    /// How `payload` is coded.
    pub coding: Coding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2) in `payload`, UDH excluded; packed
    /// GSM-7 cannot tell 7 from 8 septets by its octets alone.
    pub units: usize,
}

impl Part {
    /// UDH followed by payload, as sent in `short_message` with `esm_class` UDHI set.
    pub fn user_data(&self) -> Vec<u8> {
        let mut data = Vec::with_capacity(UDH_LEN + self.payload.len());
        if let Some(udh) = &self.udh {
            data.extend_from_slice(udh);
        }
        data.extend_from_slice(&self.payload);
        data
    }

    /// UDH followed by the text with one GSM-7 septet per octet (the usual SMPP form of
    /// `data_coding` 0; the SMSC packs for the air interface). UCS-2 is unchanged.
    pub fn user_data_unpacked(&self) -> Vec<u8> {
        let Coding::Gsm7 = self.coding else {
            return self.user_data();
        };
        let udh_len = if self.udh.is_some() { UDH_LEN } else { 0 };
        let mut data = Vec::with_capacity(udh_len + self.units);
        if let Some(udh) = &self.udh {
            data.extend_from_slice(udh);
        }
        data.extend(unpack_septets(&self.payload, self.units, udh_len));
        data
    }

    /// TP-UDL: septets (GSM-7, UDH and fill bits counted) or octets (UCS-2), UDH included.
    pub fn user_data_length(&self) -> usize {
        let udh_octets = if self.udh.is_some() { UDH_LEN } else { 0 };
        match self.coding {
            Coding::Gsm7 => (udh_octets * 8).div_ceil(7) + self.units,
            Coding::Ucs2 => udh_octets + self.units * 2,
        }
    }

    /// The text this part carries.
    pub fn text(&self) -> String {
        let udh_len = if self.udh.is_some() { UDH_LEN } else { 0 };
        match self.coding {
            Coding::Gsm7 => decode_gsm7_packed(&self.payload, self.units, udh_len),
            Coding::Ucs2 => decode_ucs2(&self.payload),
        }
    }
}

/// Fill bits after a UDH of `udh_len` octets so the first septet starts on a septet boundary.
pub fn fill_bits(udh_len: usize) -> usize {
    (7 - (udh_len * 8) % 7) % 7
}

/// Packs septets into octets, least significant bit first, after `fill` zero bits.
pub fn pack_septets(septets: &[u8], fill: usize) -> Vec<u8> {
    let mut out = vec![0u8; (fill + septets.len() * 7).div_ceil(8)];
    let mut bit = fill;
    for &s in septets {
        let word = u16::from(s & 0x7F) << (bit % 8);
        let [low, high] = word.to_le_bytes();
        if let Some(b) = out.get_mut(bit / 8) {
            *b |= low;
        }
        if high != 0 {
            if let Some(b) = out.get_mut(bit / 8 + 1) {
                *b |= high;
            }
        }
        bit += 7;
    }
    out
}

/// Unpacks `septets` septets from `bytes`, the packed user data that follows a UDH of
/// `udh_len` octets (0 without UDH), and decodes them; missing octets end the text early.
pub fn decode_gsm7_packed(bytes: &[u8], septets: usize, udh_len: usize) -> String {
    decode_gsm7(&unpack_septets(bytes, septets, udh_len))
}

/// Unpacks `septets` septets from packed user data that follows a UDH of `udh_len`
/// octets (0 without UDH); missing octets end the result early.
pub fn unpack_septets(bytes: &[u8], septets: usize, udh_len: usize) -> Vec<u8> {
    let fill = fill_bits(udh_len);
    let mut unpacked = Vec::with_capacity(septets);
    for i in 0..septets {
        let bit = fill + i * 7;
        let Some(&low) = bytes.get(bit / 8) else {
            break;
        };
        let high = bytes.get(bit / 8 + 1).copied().unwrap_or(0);
        let word = u16::from_le_bytes([low, high]) >> (bit % 8);
        unpacked.push((word & 0x7F) as u8);
    }
    unpacked
}

/// Text of UTF-16BE octets; unpaired surrogates and a trailing odd octet become U+FFFD.
pub fn decode_ucs2(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    let mut text = String::from_utf16_lossy(&units);
    if bytes.len() % 2 == 1 {
        text.push(char::REPLACEMENT_CHARACTER);
    }
    text
}

/// Splits `len` units into parts of at most `single` (one part) or `multi` units,
/// never cutting at an index where `can_cut` is false. `multi` must be at least 2.
fn split(
    len: usize,
    single: usize,
    multi: usize,
    can_cut: impl Fn(usize) -> bool,
) -> Vec<Range<usize>> {
    if len <= single {
        return std::iter::once(0..len).collect();
    }
    let mut ranges = Vec::with_capacity(len.div_ceil(multi));
    let mut start = 0;
    while start < len {
        let mut end = (start + multi).min(len);
        if end < len && !can_cut(end) {
            // Only the second half of a pair is uncuttable, so one step back always cuts.
            end -= 1;
        }
        ranges.push(start..end);
        start = end;
    }
    ranges
}

/// Units of `text` in its chosen coding, and where parts may start.
enum Units {
    Gsm7(Vec<u8>),
    Ucs2(Vec<u16>),
}

impl Units {
    fn of(text: &str) -> Units {
        match encode_gsm7(text) {
            Some(septets) => Units::Gsm7(septets),
            None => Units::Ucs2(text.encode_utf16().collect()),
        }
    }

    fn split(&self) -> Vec<Range<usize>> {
        match self {
            Units::Gsm7(s) => split(s.len(), GSM7_SINGLE, GSM7_MULTI, |i| s[i - 1] != ESCAPE),
            Units::Ucs2(u) => split(u.len(), UCS2_SINGLE, UCS2_MULTI, |i| {
                !(0xD800..0xDC00).contains(&u[i - 1])
            }),
        }
    }
}

/// Number of SMS parts `text` takes in its chosen coding (1 for an empty text).
pub fn count_parts(text: &str) -> usize {
    Units::of(text).split().len()
}

/// Codes and splits `text` into at most `max_parts` SMS parts; concatenated parts carry a
/// UDH with `reference`, which should differ between messages to the same recipient.
pub fn encode(text: &str, reference: u8, max_parts: usize) -> Result<Vec<Part>, TextError> {
    let units = Units::of(text);
    let ranges = units.split();
    let total = ranges.len();
    if total > max_parts.min(MAX_PARTS) {
        return Err(TextError::TooLong {
            parts_needed: total,
        });
    }
    let parts = ranges
        .into_iter()
        .enumerate()
        .map(|(i, range)| {
            let udh = (total > 1).then(|| {
                // Both fit in a u8: total <= MAX_PARTS was checked above.
                let total = u8::try_from(total).unwrap_or(u8::MAX);
                let seq = u8::try_from(i + 1).unwrap_or(u8::MAX);
                [0x05, 0x00, 0x03, reference, total, seq]
            });
            let units_in_part = range.len();
            match &units {
                Units::Gsm7(s) => Part {
                    payload: pack_septets(
                        &s[range],
                        if udh.is_some() { fill_bits(UDH_LEN) } else { 0 },
                    ),
                    udh,
                    coding: Coding::Gsm7,
                    units: units_in_part,
                },
                Units::Ucs2(u) => Part {
                    payload: u[range].iter().flat_map(|w| w.to_be_bytes()).collect(),
                    udh,
                    coding: Coding::Ucs2,
                    units: units_in_part,
                },
            }
        })
        .collect();
    Ok(parts)
}

/// Separator between template fields: one septet, and a line break on every handset.
const SEPARATOR: &str = "\n";

/// Joins template fields (headline, key facts…, hotline, link) with line breaks and, when
/// the result needs more than `max_parts` SMS parts, shortens the longest free-text field
/// at a word boundary with an ellipsis ("..." when the rest is GSM-7, else "…"), then the
/// next. The last two fields (hotline and link) are never cut; empty fields are skipped.
/// If even those two alone do not fit, they are returned whole and [`encode`] will refuse.
pub fn fit_template(parts: &[&str], max_parts: usize) -> String {
    let protected = parts.len().min(2);
    let free = parts.len() - protected;
    let mut fields: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
    let mut done = vec![false; free];
    loop {
        let joined = join(&fields);
        if count_parts(&joined) <= max_parts {
            return joined;
        }
        // Longest free-text field not yet shortened.
        let Some(target) = (0..free)
            .filter(|&i| !done[i] && !fields[i].is_empty())
            .max_by_key(|&i| fields[i].chars().count())
        else {
            return joined;
        };
        done[target] = true;
        fields[target] = shorten_to_fit(&fields, target, max_parts);
    }
}

fn join(fields: &[String]) -> String {
    let non_empty: Vec<&str> = fields
        .iter()
        .map(String::as_str)
        .filter(|f| !f.is_empty())
        .collect();
    non_empty.join(SEPARATOR)
}

/// The longest cut of `fields[target]` (word boundary, else any character, else empty)
/// with which the whole template fits `max_parts`.
fn shorten_to_fit(fields: &[String], target: usize, max_parts: usize) -> String {
    let original = fields[target].as_str();
    let mut trial: Vec<String> = fields.to_vec();
    let mut fits = |candidate: &str| {
        trial[target] = candidate.to_string();
        count_parts(&join(&trial)) <= max_parts
    };
    let char_cuts: Vec<usize> = original.char_indices().map(|(i, _)| i).skip(1).collect();
    let word_cuts: Vec<usize> = char_cuts
        .iter()
        .copied()
        .filter(|&i| is_word_boundary(original, i))
        .collect();
    for cuts in [word_cuts, char_cuts] {
        if let Some(best) = best_cut(original, &cuts, fields, target, &mut fits) {
            return best;
        }
    }
    String::new()
}

/// Binary search over increasing cut positions for the longest fitting shortened text.
fn best_cut(
    original: &str,
    cuts: &[usize],
    fields: &[String],
    target: usize,
    fits: &mut impl FnMut(&str) -> bool,
) -> Option<String> {
    let candidate = |cut: usize| -> Option<String> {
        let head = original[..cut]
            .trim_end_matches(|c: char| c.is_whitespace() || ",;:-–—、，；：".contains(c));
        if head.is_empty() {
            return None;
        }
        let others_gsm7 = fields
            .iter()
            .enumerate()
            .all(|(i, f)| i == target || gsm7_septets(f).is_some());
        let ellipsis = if others_gsm7 && gsm7_septets(head).is_some() {
            "..."
        } else {
            "…"
        };
        Some(format!("{head}{ellipsis}"))
    };
    let (mut lo, mut hi) = (0, cuts.len());
    let mut best = None;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match candidate(cuts[mid]) {
            Some(text) if fits(&text) => {
                best = Some(text);
                lo = mid + 1;
            }
            Some(_) => hi = mid,
            None => lo = mid + 1,
        }
    }
    best
}

/// Ideographic and kana scripts, written without spaces: any character boundary is a word
/// boundary there.
fn is_unspaced(c: char) -> bool {
    matches!(c as u32,
        0x2E80..=0x2FDF | 0x3000..=0x30FF | 0x3100..=0x31FF | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0xFF00..=0xFFEF | 0x20000..=0x3FFFF)
}

fn is_word_boundary(text: &str, at: usize) -> bool {
    let before = text[..at].chars().next_back();
    let after = text[at..].chars().next();
    match (before, after) {
        (Some(b), Some(a)) => {
            let word = |c: char| !c.is_whitespace() && !is_unspaced(c);
            !(word(b) && word(a))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(parts: &[Part]) -> String {
        parts.iter().map(Part::text).collect()
    }

    #[test]
    fn gsm7_detection_counts_extension_chars_twice() {
        assert_eq!(gsm7_septets("Hello @£$¥ èé ÄÖÑÜ§ ¿à ΔΩ"), Some(25));
        assert_eq!(gsm7_septets("^{}\\[~]|€\u{0C}"), Some(20));
        assert_eq!(gsm7_septets("€"), Some(2));
        assert_eq!(gsm7_septets(""), Some(0));
        assert_eq!(gsm7_septets("naïve"), None);
        assert_eq!(gsm7_septets("\u{1B}"), None);
        assert_eq!(choose_coding("Flood warning: 5€ {x}"), Coding::Gsm7);
        assert_eq!(choose_coding("洪水警报：请立即撤离"), Coding::Ucs2);
        assert_eq!(choose_coding("Alert 🚨"), Coding::Ucs2);
    }

    #[test]
    fn gsm7_encode_decode_round_trips_whole_alphabet() {
        let all: String = BASIC
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != usize::from(ESCAPE))
            .map(|(_, &c)| c)
            .chain(EXTENSION.iter().map(|&(_, c)| c))
            .collect();
        let septets = encode_gsm7(&all).unwrap_or_default();
        assert_eq!(septets.len(), 127 + 20);
        assert_eq!(decode_gsm7(&septets), all);
        assert_eq!(encode_gsm7("€"), Some(vec![0x1B, 0x65]));
    }

    #[test]
    fn chinese_is_ucs2_big_endian() {
        let parts = encode("中文", 1, 1).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].coding, Coding::Ucs2);
        assert_eq!(parts[0].payload, vec![0x4E, 0x2D, 0x65, 0x87]);
        assert_eq!(parts[0].udh, None);
        assert_eq!(decode_ucs2(&parts[0].payload), "中文");
    }

    #[test]
    fn gsm7_part_boundaries() {
        for (len, parts) in [(160, 1), (161, 2), (306, 2), (307, 3)] {
            let text = "a".repeat(len);
            assert_eq!(count_parts(&text), parts, "{len} septets");
            let encoded = encode(&text, 7, 10).unwrap();
            assert_eq!(encoded.len(), parts);
            assert_eq!(texts(&encoded), text);
        }
        let two = encode(&"a".repeat(306), 7, 2).unwrap();
        assert!(two.iter().all(|p| p.units == 153));
        // Extension characters count 2: 80 × "€" is exactly one SMS, 81 are two.
        assert_eq!(count_parts(&"€".repeat(80)), 1);
        assert_eq!(count_parts(&"€".repeat(81)), 2);
    }

    #[test]
    fn ucs2_part_boundaries() {
        for (len, parts) in [(70, 1), (71, 2), (134, 2), (135, 3)] {
            let text = "中".repeat(len);
            assert_eq!(count_parts(&text), parts, "{len} units");
            let encoded = encode(&text, 7, 10).unwrap();
            assert_eq!(encoded.len(), parts);
            assert_eq!(texts(&encoded), text);
        }
        let two = encode(&"中".repeat(134), 7, 2).unwrap();
        assert!(two.iter().all(|p| p.units == 67 && p.payload.len() == 134));
    }

    #[test]
    fn escape_pair_is_never_split() {
        // Septet 153 would be the escape of "€": the first part stops at 152.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(20));
        let parts = encode(&text, 1, 3).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].units, 152);
        assert_eq!(parts[0].text(), "a".repeat(152));
        assert!(parts[1].text().starts_with('€'));
        assert_eq!(texts(&parts), text);
    }

    #[test]
    fn surrogate_pair_is_never_split() {
        let text = format!("{}🚨{}", "中".repeat(66), "文".repeat(10));
        let parts = encode(&text, 1, 3).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].units, 66);
        assert_eq!(parts[1].text(), format!("🚨{}", "文".repeat(10)));
        assert!(parts.iter().all(|p| !p.text().contains('\u{FFFD}')));
        assert_eq!(texts(&parts), text);
    }

    #[test]
    fn known_packed_vector() {
        let septets = encode_gsm7("hellohello").unwrap_or_default();
        assert_eq!(
            pack_septets(&septets, 0),
            vec![0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]
        );
        let parts = encode("hellohello", 0, 1).unwrap();
        assert_eq!(
            parts[0].payload,
            vec![0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]
        );
        assert_eq!(parts[0].user_data_length(), 10);
    }

    #[test]
    fn packing_round_trips_with_and_without_udh() {
        let samples = [
            "",
            "a",
            "1234567",
            "12345678",
            "Flood warning {river} [level ~3] | call 112 €5 ^ \\",
            "@@@@@@@@",
            "ΔΦΓΛΩΠΨΣΘΞ ÆæßÉ ¡¿ Ç\r\n",
        ];
        for text in samples {
            let septets = encode_gsm7(text).unwrap_or_default();
            for udh_len in [0, UDH_LEN, 5, 7] {
                let packed = pack_septets(&septets, fill_bits(udh_len));
                assert_eq!(
                    decode_gsm7_packed(&packed, septets.len(), udh_len),
                    text,
                    "{text:?} udh {udh_len}"
                );
            }
        }
        assert_eq!(fill_bits(0), 0);
        assert_eq!(fill_bits(UDH_LEN), 1);
        // First septet after the UDH starts at bit 1: "h" (0x68) << 1.
        assert_eq!(pack_septets(&[0x68], 1), vec![0xD0]);
    }

    #[test]
    fn concatenated_gsm7_parts_have_udh_and_fill_bit() {
        let text = "Evacuate now. ".repeat(20);
        let parts = encode(&text, 0x42, 4).unwrap();
        assert_eq!(parts.len(), 2);
        for (i, part) in parts.iter().enumerate() {
            let seq = u8::try_from(i + 1).unwrap();
            assert_eq!(part.udh, Some([0x05, 0x00, 0x03, 0x42, 2, seq]));
            assert_eq!(part.payload.len(), (1 + part.units * 7).div_ceil(8));
            let data = part.user_data();
            assert_eq!(&data[..6], &[0x05, 0x00, 0x03, 0x42, 2, seq]);
        }
        assert_eq!(parts[0].user_data_length(), 7 + 153);
        assert_eq!(parts[0].payload.len(), 134);
        assert_eq!(texts(&parts), text);
    }

    #[test]
    fn ucs2_concatenated_parts_have_udh() {
        let parts = encode(&"警".repeat(100), 9, 2).unwrap();
        assert_eq!(parts[0].udh, Some([5, 0, 3, 9, 2, 1]));
        assert_eq!(parts[1].udh, Some([5, 0, 3, 9, 2, 2]));
        assert_eq!(parts[1].units, 33);
        assert_eq!(parts[0].user_data_length(), 6 + 134);
        assert_eq!(parts[0].coding.data_coding(), 8);
    }

    #[test]
    fn too_long_reports_parts_needed() {
        assert_eq!(
            encode(&"a".repeat(307), 1, 2),
            Err(TextError::TooLong { parts_needed: 3 })
        );
        assert_eq!(
            encode(&"中".repeat(135), 1, 2),
            Err(TextError::TooLong { parts_needed: 3 })
        );
        assert_eq!(
            encode("a", 1, 0),
            Err(TextError::TooLong { parts_needed: 1 })
        );
        assert_eq!(
            encode(&"a".repeat(153 * 256), 1, 1000),
            Err(TextError::TooLong { parts_needed: 256 })
        );
        assert!(TextError::TooLong { parts_needed: 3 }
            .to_string()
            .contains('3'));
    }

    #[test]
    fn mixed_texts_round_trip_at_every_length() {
        // Deterministic pseudo-random texts around the part boundaries.
        let gsm = ['a', ' ', '€', '{', 'Δ', '\n', '@', '|'];
        let ucs = ['中', '🚨', 'a', '€', '文', '😀'];
        let mut seed: u32 = 0x1234_5678;
        let mut next = |n: usize| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 16) as usize % n
        };
        for len in (60..=320).step_by(3) {
            for alphabet in [&gsm[..], &ucs[..]] {
                let text: String = (0..len).map(|_| alphabet[next(alphabet.len())]).collect();
                let parts = encode(&text, 5, 20).unwrap();
                assert_eq!(parts.len(), count_parts(&text));
                assert_eq!(texts(&parts), text);
                let (single, multi) = match parts[0].coding {
                    Coding::Gsm7 => (GSM7_SINGLE, GSM7_MULTI),
                    Coding::Ucs2 => (UCS2_SINGLE, UCS2_MULTI),
                };
                let limit = if parts.len() == 1 { single } else { multi };
                assert!(parts
                    .iter()
                    .all(|p| p.units <= limit && !p.text().contains('\u{FFFD}')));
            }
        }
    }

    #[test]
    fn empty_text_is_one_empty_part() {
        let parts = encode("", 1, 1).unwrap();
        assert_eq!(parts.len(), 1);
        assert!(parts[0].payload.is_empty());
    }

    #[test]
    fn short_template_is_joined_unchanged() {
        let fitted = fit_template(
            &[
                "Flood warning",
                "",
                "River above 5 m",
                "Call 112",
                "https://a.example/1",
            ],
            1,
        );
        assert_eq!(
            fitted,
            "Flood warning\nRiver above 5 m\nCall 112\nhttps://a.example/1"
        );
    }

    #[test]
    fn english_template_fits_two_parts_keeping_hotline_and_link() {
        let facts = "The river Elbe is expected to exceed 7.5 m at Dresden by 18:00. \
                     Residents of the districts Altstadt, Neustadt and Pieschen must leave \
                     their homes now and go to higher ground; shelters are open at the \
                     schools. "
            .repeat(4);
        let hotline = "Hotline: +49 351 123456";
        let link = "https://alerts.example.org/a/8f3c2b";
        let fitted = fit_template(&["FLOOD WARNING – evacuate", &facts, hotline, link], 2);
        assert_eq!(
            choose_coding(&fitted),
            Coding::Ucs2,
            "the en dash is not GSM-7"
        );
        let fitted = fit_template(&["FLOOD WARNING - evacuate", &facts, hotline, link], 2);
        assert_eq!(choose_coding(&fitted), Coding::Gsm7);
        assert!(count_parts(&fitted) <= 2);
        assert!(
            fitted.ends_with(&format!("...\n{hotline}\n{link}")),
            "{fitted}"
        );
        assert!(!fitted.contains('…'));
        assert!(fitted.starts_with("FLOOD WARNING - evacuate\nThe river Elbe"));
        // Cut at a word boundary: the text before "..." is a prefix ending a whole word.
        let head = fitted.split("...\n").next().unwrap_or_default();
        let body = head.trim_start_matches("FLOOD WARNING - evacuate\n");
        assert!(facts.starts_with(body));
        assert!(
            facts[body.len()..].starts_with([' ', '.', ';', ',']),
            "{body:?}"
        );
        // Nearly full: one more word would not fit.
        assert!(gsm7_septets(&fitted).unwrap_or(0) > 2 * 153 - 20);
        assert_eq!(encode(&fitted, 1, 2).map(|p| p.len()), Ok(2));
    }

    #[test]
    fn chinese_template_fits_two_parts_keeping_hotline_and_link() {
        let facts = "预计今晚十八时前长江水位将超过警戒线，沿江低洼地区居民请立即撤离至高处，\
                     各中小学已开放为临时避难所。"
            .repeat(5);
        let hotline = "热线：12345";
        let link = "https://alerts.example.cn/a/8f3c2b";
        let fitted = fit_template(&["洪水红色预警", &facts, hotline, link], 2);
        assert_eq!(choose_coding(&fitted), Coding::Ucs2);
        assert_eq!(count_parts(&fitted), 2);
        assert!(
            fitted.ends_with(&format!("…\n{hotline}\n{link}")),
            "{fitted}"
        );
        assert!(fitted.starts_with("洪水红色预警\n预计今晚"));
        assert!(fitted.encode_utf16().count() > 2 * 67 - 5);
        let parts = encode(&fitted, 3, 2).unwrap();
        assert_eq!(texts(&parts), fitted);
    }

    #[test]
    fn template_shortens_longest_field_first_then_others() {
        let long = "word ".repeat(100);
        let medium = "other ".repeat(10);
        let fitted = fit_template(&[&medium, &long, "112", "x.y/z"], 1);
        assert!(count_parts(&fitted) == 1);
        assert!(fitted.starts_with(medium.trim_end()));
        // Hotline and link alone too long: returned whole, encode refuses.
        let link = format!("https://x.example/{}", "a".repeat(400));
        let fitted = fit_template(&["Headline", "112", &link], 1);
        assert_eq!(fitted, format!("112\n{link}"));
        assert!(encode(&fitted, 1, 1).is_err());
    }

    #[test]
    fn unpacked_user_data_is_one_septet_per_octet_after_the_udh() {
        let text = "Hello {world} ".repeat(20);
        let parts = encode(&text, 9, 3).unwrap();
        assert!(parts.len() > 1);
        let mut septets = Vec::new();
        for p in &parts {
            let data = p.user_data_unpacked();
            assert_eq!(&data[..UDH_LEN], &p.udh.unwrap());
            assert_eq!(data.len(), UDH_LEN + p.units);
            assert!(data[UDH_LEN..].iter().all(|&b| b < 0x80));
            septets.extend_from_slice(&data[UDH_LEN..]);
        }
        assert_eq!(decode_gsm7(&septets), text);
        let single = encode("Hi", 1, 1).unwrap();
        assert_eq!(single[0].user_data_unpacked(), b"Hi");
        let ucs2 = encode("寻人", 1, 1).unwrap();
        assert_eq!(ucs2[0].user_data_unpacked(), ucs2[0].user_data());
    }
}
