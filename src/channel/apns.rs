//! APNs channel (being written).
