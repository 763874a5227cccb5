//! Fuzz target `cap`: arbitrary bytes into the hardened CAP 1.2 parser with
//! the default `CapLimits`, and every parsed alert back out through the
//! writer and in again (the writer's output must parse to the same alert).
//! Must never panic and never run away with memory or time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tocsin::alert::cap::{parse, to_xml, CapLimits};

fuzz_target!(|data: &[u8]| {
    let limits = CapLimits::default();
    let Ok(alert) = parse(data, &limits) else {
        return;
    };
    let _ = alert.alert_id();
    // A document we accepted, written by us, must read back the same.
    let xml = to_xml(&alert);
    let back = parse(xml.as_bytes(), &limits);
    assert_eq!(back.as_ref().ok(), Some(&alert), "round trip: {back:?}");
});
