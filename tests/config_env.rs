//! `TOCSIN__SECTION__KEY` environment variables override settings. Alone in
//! its own test binary: it sets a process-wide variable.

#[test]
fn environment_overrides_settings() {
    // Only this test sets the variable, and it reads it back at once.
    std::env::set_var("TOCSIN__DISPATCH__BATCH_SIZE", "77");
    let s = tocsin::config::Settings::from_toml("").unwrap();
    std::env::remove_var("TOCSIN__DISPATCH__BATCH_SIZE");
    assert_eq!(s.dispatch.batch_size, 77);
}
