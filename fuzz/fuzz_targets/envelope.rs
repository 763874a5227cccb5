//! Fuzz target `envelope`: arbitrary bytes into the COSE envelope decoder, signers, payload and verification. The property lives in `fuzz/checks.rs`,
//! shared with the CI smoke test `tests/fuzz_smoke.rs`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::envelope(data));
