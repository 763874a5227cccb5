//! Resource limits for the CAP parser. Every number here bounds memory or
//! work that a hostile sender could otherwise make us spend; the parser
//! checks them while it streams, before it stores anything. This file only
//! holds the numbers and their defaults: it parses nothing and does no I/O.

/// Upper bounds the CAP parser enforces while it reads one alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapLimits {
    /// Whole document, in bytes (default 1 MiB).
    pub max_bytes: usize,
    /// `<info>` blocks per alert.
    pub max_infos: usize,
    /// `<area>` blocks per `<info>`.
    pub max_areas_per_info: usize,
    /// `<polygon>` elements per `<area>`.
    pub max_polygons_per_area: usize,
    /// Points in one polygon, the closing point included.
    pub max_polygon_vertices: usize,
    /// `<circle>` elements per `<area>`.
    pub max_circles_per_area: usize,
    /// `<geocode>` elements per `<area>`.
    pub max_geocodes_per_area: usize,
    /// `<resource>` blocks per `<info>`.
    pub max_resources_per_info: usize,
    /// Long free text: description, instruction, note, addresses, areaDesc,
    /// contact, web, uri, references, incidents, restriction.
    pub max_text_bytes: usize,
    /// Short text: identifiers, headline, event, senderName, audience, code,
    /// enumerated values, dates, numbers, circles, valueName/value pairs.
    pub max_short_text_bytes: usize,
    /// Base64 text of one `<derefUri>`.
    pub max_deref_bytes: usize,
    /// Element nesting depth, `<alert>` being 1.
    pub max_depth: usize,
    /// Elements in the whole document.
    pub max_elements: usize,
    /// Attributes on one element (namespace declarations included).
    pub max_attributes: usize,
    /// `<code>` elements per alert.
    pub max_codes: usize,
    /// `<parameter>` elements per `<info>`.
    pub max_parameters: usize,
    /// `<eventCode>` elements per `<info>`.
    pub max_event_codes: usize,
    /// Entries in `<references>`.
    pub max_references: usize,
    /// `<category>` elements per `<info>` (CAP defines 12 values).
    pub max_categories: usize,
    /// `<responseType>` elements per `<info>` (CAP defines 9 values).
    pub max_response_types: usize,
}

impl CapLimits {
    /// Bytes a polygon's text may take: generous room per vertex (a point
    /// written with full `f64` precision is about 40 bytes) so that a
    /// polygon with too many points is reported as such, not as long text.
    pub fn max_polygon_bytes(&self) -> usize {
        self.max_polygon_vertices
            .saturating_add(1)
            .saturating_mul(64)
    }
}

impl Default for CapLimits {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024,
            max_infos: 8,
            max_areas_per_info: 16,
            max_polygons_per_area: 16,
            max_polygon_vertices: 1000,
            max_circles_per_area: 16,
            max_geocodes_per_area: 64,
            max_resources_per_info: 4,
            max_text_bytes: 16 * 1024,
            // CAP recommends headlines of at most 160 characters; CJK text
            // takes three bytes a character, so 1 KiB leaves room.
            max_short_text_bytes: 1024,
            max_deref_bytes: 768 * 1024,
            max_depth: 8,
            max_elements: 20_000,
            max_attributes: 16,
            max_codes: 32,
            max_parameters: 32,
            max_event_codes: 32,
            max_references: 64,
            max_categories: 12,
            max_response_types: 9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let l = CapLimits::default();
        assert_eq!(l.max_bytes, 1 << 20);
        assert_eq!(l.max_polygon_vertices, 1000);
        assert_eq!(l.max_deref_bytes, 768 << 10);
        assert_eq!(l.max_depth, 8);
        assert!(l.max_deref_bytes < l.max_bytes);
        assert!(l.max_polygon_bytes() > 1000 * 40);
    }
}
