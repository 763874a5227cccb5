//! The shipped systemd unit passes `systemd-analyze verify` and keeps its
//! `systemd-analyze security` exposure at or below 1.1 ("OK"), via
//! `.ci/check-systemd`. Fails (never skips) when systemd-analyze is missing:
//! `scripts/test` installs Debian's `systemd` package.

#[test]
fn unit_verifies_and_scores_ok() {
    // The script checks the binary cargo built for these tests.
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_tocsin"));
    assert!(bin.exists());
    let out = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/check-systemd"))
        .env("TOCSIN_BIN", bin)
        .output()
        .expect("run .ci/check-systemd (needs bash)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "check-systemd failed:\n{text}");
    assert!(text.contains("Overall exposure level"), "{text}");
}
