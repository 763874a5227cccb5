//! CI smoke of the fuzz targets, without cargo-fuzz: the properties of
//! `fuzz/checks.rs` (the same code the instrumented targets run) over every
//! committed seed in `fuzz/seeds/<target>/` and over seeded mutations of
//! them (bit flips, byte writes, inserts, deletes, truncation, repeats and
//! splices between seeds). Deterministic (`FUZZ_SMOKE_SEED` overrides the
//! seed; `FUZZ_SMOKE_ROUNDS` the mutations per seed). A failing input is
//! written to `target/fuzz-smoke/<target>-<n>` so `cargo fuzz run <target>
//! <file>` replays it. The long, coverage-guided runs are `scripts/fuzz-smoke`
//! and `cargo fuzz run` (README, Reliability).

#[path = "../fuzz/checks.rs"]
mod checks;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// One random mutation of `input` (possibly several stacked).
fn mutate(rng: &mut ChaCha8Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let len = v.len();
        match rng.gen_range(0..8) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                v[i] = *[0u8, 0xff, 0x7f, 0x80, b'<', b'>', b'&', b'"', b'-', b'.']
                    .get(rng.gen_range(0..10))
                    .unwrap_or(&0);
            }
            2 => {
                let i = rng.gen_range(0..=len);
                v.insert(i, rng.gen());
            }
            3 if len > 0 => {
                let i = rng.gen_range(0..len);
                let j = rng.gen_range(i..=len.min(i + 64));
                v.drain(i..j);
            }
            4 if len > 0 => v.truncate(rng.gen_range(0..len)),
            5 if len > 0 => {
                let i = rng.gen_range(0..len);
                let j = rng.gen_range(i..=len.min(i + 256));
                let chunk = v[i..j].to_vec();
                let at = rng.gen_range(0..=len);
                v.splice(at..at, chunk);
            }
            6 if !others.is_empty() => {
                let o = &others[rng.gen_range(0..others.len())];
                let cut = rng.gen_range(0..=len);
                let from = rng.gen_range(0..=o.len());
                v.truncate(cut);
                v.extend_from_slice(&o[from..]);
            }
            _ => {
                let n = rng.gen_range(1..=16);
                v.extend((0..n).map(|_| rng.gen::<u8>()));
            }
        }
    }
    v
}

fn smoke(target: &str, check: fn(&[u8]), rounds_per_seed: usize) {
    let seed: u64 = std::env::var("FUZZ_SMOKE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0070_c51a);
    let rounds = std::env::var("FUZZ_SMOKE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(rounds_per_seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let corpus = seeds(target);
    let mut failures: Vec<PathBuf> = Vec::new();
    let mut runs = 0usize;
    let mut run = |input: &[u8]| {
        runs += 1;
        if catch_unwind(AssertUnwindSafe(|| check(input))).is_err() {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-smoke");
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join(format!("{target}-{}", failures.len()));
            let _ = std::fs::write(&path, input);
            failures.push(path);
        }
    };
    for s in &corpus {
        run(s);
    }
    for s in &corpus {
        for _ in 0..rounds {
            let m = mutate(&mut rng, s, &corpus);
            run(&m);
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of {runs} inputs (seed {seed}) broke the property; inputs kept: {failures:?}",
        failures.len()
    );
    println!("{target}: {runs} inputs (seed {seed}), no failure");
}

#[test]
fn envelope_decoder_holds_on_seeds_and_mutations() {
    smoke("envelope", checks::envelope, 5_000);
}

#[test]
fn cap_parser_holds_on_seeds_and_mutations() {
    smoke("cap", checks::cap, 3_000);
}

#[test]
fn area_geometry_holds_on_seeds_and_mutations() {
    smoke("area", checks::area, 300);
}
