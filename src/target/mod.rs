//! Targeting: CAP areas become a [`Region`] (polygons, geodesic circles and
//! geocodes resolved through the [`GeocodeTable`]), and a region becomes
//! index ranges of a channel's [`ChannelAudience`] (DESIGN §5). Plain data and
//! functions: no I/O except loading the geocode table, no runtime, no
//! personal data. It hands the dispatcher a [`Selection`] of positions and
//! must never allocate per recipient while selecting.

pub mod area;
pub mod audience;
pub mod expand;
pub mod geocode;
pub mod geodesy;
mod polygon;
pub mod synthetic;

pub use area::{AreaError, Region};
pub use audience::{AudienceBuilder, AudienceError, ChannelAudience, Selection, INDEX_RESOLUTION};
pub use geocode::{GeocodeEntry, GeocodeError, GeocodeTable, CN_GB2260, FIPS6, SAME};
