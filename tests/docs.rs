//! The README's rejection-code table lists every code the daemon can send,
//! with the same meaning the code gives (one source of truth, checked).

#[test]
fn readme_lists_every_rejection_code() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for c in tocsin::reject::RejectCode::ALL {
        let row = format!("| `{}` | {} |", c.as_str(), c.meaning());
        assert!(readme.contains(&row), "README lacks the row:\n{row}");
    }
}
