//! The packaged completions and man page are generated from the clap definitions; this test fails
//! when they are stale. Regenerate with `UPDATE_DIST=1 cargo test --test dist`.

use std::path::Path;

fn check(rel: &str, fresh: Vec<u8>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    if std::env::var_os("UPDATE_DIST").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let on_disk = std::fs::read(&path).unwrap_or_default();
    assert!(
        on_disk == fresh,
        "{rel} is stale; run `UPDATE_DIST=1 cargo test --test dist` and commit it"
    );
}

#[test]
fn completions_and_man_page_are_current() {
    for (shell, file) in [
        (
            clap_complete::Shell::Bash,
            "dist/completions/notion-inbox.bash",
        ),
        (clap_complete::Shell::Zsh, "dist/completions/_notion-inbox"),
        (
            clap_complete::Shell::Fish,
            "dist/completions/notion-inbox.fish",
        ),
    ] {
        let mut out = Vec::new();
        notion_inbox::cli::completions(shell, &mut out);
        assert!(String::from_utf8_lossy(&out).contains("authorize"));
        check(file, out);
    }
    let mut man = Vec::new();
    notion_inbox::cli::manpage(&mut man).unwrap();
    assert!(String::from_utf8_lossy(&man).contains(".TH notion-inbox"));
    check("dist/man/notion-inbox.1", man);
}
