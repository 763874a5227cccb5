//! Fuzz target `cap`: arbitrary bytes into the CAP 1.2 parser and the writer's round trip. The property lives in `fuzz/checks.rs`,
//! shared with the CI smoke test `tests/fuzz_smoke.rs`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::cap(data));
