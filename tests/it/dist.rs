//! The packaged completions and man pages are generated from the clap definitions; this test fails
//! when they are stale. Regenerate with `UPDATE_DIST=1 cargo test --test it dist::`.

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
        "{rel} is stale; run `UPDATE_DIST=1 cargo test --test it dist::` and commit it"
    );
}

/// What `notion-inbox ARGS` prints (it must succeed).
fn notion_inbox(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_notion-inbox"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "notion-inbox {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
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
        let out = notion_inbox(&["completions", &shell.to_string()]);
        assert!(String::from_utf8_lossy(&out).contains("authorize"));
        check(file, out);
    }
    let fresh = tempfile::tempdir().unwrap();
    notion_inbox(&["manpage", "--dir", fresh.path().to_str().unwrap()]);
    let mut pages: Vec<String> = std::fs::read_dir(fresh.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert!(pages.len() > 10, "the pages were written: {pages:?}");
    for name in &pages {
        check(
            &format!("dist/man/{name}"),
            std::fs::read(fresh.path().join(name)).unwrap(),
        );
    }
    // Every page notion-inbox(1) refers to is shipped, and no stale page is left.
    let main = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/man/notion-inbox.1"),
    )
    .unwrap();
    for section in [
        ".SH \"EXIT STATUS\"",
        ".SH ENVIRONMENT",
        ".SH FILES",
        ".SH \"SEE ALSO\"",
    ] {
        assert!(main.contains(section), "notion-inbox(1) lacks {section}");
    }
    let plain = main
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fR", "");
    for (i, _) in plain.match_indices("notion-inbox-") {
        let rest = &plain[i..];
        let end = rest.find('(').unwrap_or(0);
        let referred = &rest[..end];
        if end > 0 && rest[end..].starts_with("(1)") {
            assert!(
                pages.contains(&format!("{referred}.1")),
                "notion-inbox(1) refers to {referred}(1), which is not generated"
            );
        }
    }
    let shipped: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/man"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    for file in &shipped {
        assert!(
            pages.contains(file),
            "dist/man/{file} is not generated any more: remove it"
        );
    }
    for hidden in ["completions", "manpage"] {
        assert!(
            !pages.iter().any(|p| p.contains(hidden)),
            "a page for the hidden {hidden}"
        );
    }
}

/// The bash completion, run by bash against the real binary: `--target <TAB>` offers the
/// configured targets' names, and the hidden commands are not offered.
#[test]
fn bash_completes_target_names_and_hides_hidden_commands() {
    if std::process::Command::new("bash")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("bash is not installed: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[daemon]\nstate_dir = \"state\"\n\
         [[target]]\nname = \"tweets\"\ninbox = \"t.jsonl\"\ndatabase_id = \"0123456789abcdef0123456789abcdef\"\n[target.properties]\nhandle = \"title\"\n\
         [[target]]\nname = \"tasks\"\ninbox = \"k.jsonl\"\ndatabase_id = \"0123456789abcdef0123456789abcdef\"\n[target.properties]\nhandle = \"title\"\n",
    )
    .unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_notion-inbox"))
        .parent()
        .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/completions/notion-inbox.bash");
    let complete = |words: &str| {
        let program = format!(
            "source {}\nCOMP_WORDS=({words})\nCOMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n_notion__inbox notion-inbox \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
            script.display()
        );
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(program)
            .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
            .env("NOTION_INBOX_CONFIG", &config)
            .output()
            .unwrap();
        let mut words: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        words.sort();
        words
    };
    assert_eq!(
        complete("notion-inbox status --target ''"),
        ["tasks", "tweets"]
    );
    assert_eq!(complete("notion-inbox push -t tw"), ["tweets"]);
    let commands = complete("notion-inbox ''");
    assert!(commands.contains(&"status".to_owned()), "{commands:?}");
    for hidden in ["completions", "manpage"] {
        assert!(!commands.contains(&hidden.to_owned()), "{commands:?}");
    }
}
