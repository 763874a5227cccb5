//! FCM channel (being written).
