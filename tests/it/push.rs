//! `notion-inbox push`: validation, and concurrent producers that never interleave.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("spool")).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[daemon]\nstate_dir = \"state\"\n[[target]]\nname = \"tweets\"\ninbox = \"spool/tweets.jsonl\"\n\
         database_id = \"0123456789abcdef0123456789abcdef\"\n[target.properties]\nhandle = \"title\"\ntweet = \"tweet\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    (dir, config)
}

fn push(config: &std::path::Path, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_notion-inbox"))
        .arg("--config")
        .arg(config)
        .arg("push")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn flags_push_one_record() {
    let (dir, config) = setup();
    let out = push(
        &config,
        &[
            "--target",
            "tweets",
            "--handle",
            "@a",
            "--tweet",
            "hello \"world\"\nline two",
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("spool/tweets.jsonl")).unwrap();
    assert_eq!(
        text.lines().count(),
        1,
        "a newline in a value stays escaped: {text:?}"
    );
    let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(v["tweet"], "hello \"world\"\nline two");
}

#[test]
fn one_bad_line_on_stdin_appends_nothing_and_names_the_line() {
    let (dir, config) = setup();
    let out = push(
        &config,
        &["--target", "tweets"],
        b"{\"handle\":\"@a\"}\n{\"handle\":\n",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stdin line 2") && err.contains("nothing was appended"),
        "{err}"
    );
    assert!(!dir.path().join("spool/tweets.jsonl").exists());
    let out = push(&config, &["--target", "tweets"], b"{\"other\":1}\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("none of the fields target tweets maps (handle, tweet)"),
        "{err}"
    );
    let out = push(&config, &["--target", "nope"], b"{\"handle\":\"@a\"}\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no target named \"nope\""));
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown target is a usage error"
    );
}

/// `push` refuses what the daemon would dead-letter or land wrong, with the daemon's reasons, and
/// appends nothing: a misspelt field, a record without its title, a key over 500 characters.
#[test]
fn push_refuses_what_the_daemon_would_refuse() {
    let (dir, config) = setup();
    let long_id = "k".repeat(600);
    let cases: [(&[&str], String, &str); 4] = [
        (
            &[],
            "{\"handle\":\"@c\",\"twet\":\"typo\"}\n".to_owned(),
            "field \"twet\" is not mapped by target tweets; did you mean \"tweet\"?",
        ),
        (
            &["--tweet", "hi"],
            String::new(),
            "no \"handle\", which fills the row's title",
        ),
        (
            &[],
            format!("{{\"handle\":\"@a\",\"id\":\"{long_id}\"}}\n"),
            "the \"id\" field is 600 characters long, over the limit of 500",
        ),
        (
            &[],
            "\u{feff}{\"handle\":\"@a\",\"id\":\"\"}\n".to_owned(),
            "the \"id\" field is empty",
        ),
    ];
    for (flags, stdin, reason) in cases {
        let mut args = vec!["--target", "tweets"];
        args.extend_from_slice(flags);
        let out = push(&config, &args, stdin.as_bytes());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stdin}: {err}");
        assert!(err.contains(reason), "{stdin}: {err} lacks {reason}");
        assert!(err.contains("nothing was appended"), "{err}");
        assert!(!dir.path().join("spool/tweets.jsonl").exists());
    }
    // Fields the mapping does not name are fine (the daemon leaves them out of the row).
    let out = push(
        &config,
        &["--target", "tweets", "--json"],
        b"{\"handle\":\"@a\",\"tweet\":\"t\",\"source\":\"cron\"}\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["appended"], 1, "{done}");
    assert_eq!(done["target"], "tweets", "{done}");
    // With --json, an error is a JSON object on stdout too.
    let out = push(
        &config,
        &["--target", "tweets", "--json", "--tweet", "x"],
        b"",
    );
    let error: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(error["error"]["exit_code"], 1, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fills the row's title"),
        "{error}"
    );
}

#[test]
fn a_partial_last_line_is_closed_before_appending() {
    let (dir, config) = setup();
    let inbox = dir.path().join("spool/tweets.jsonl");
    std::fs::write(&inbox, b"{\"handle\":\"@crashed-mid-wri").unwrap();
    let out = push(&config, &["--target", "tweets", "--handle", "@next"], b"");
    assert!(out.status.success());
    let text = std::fs::read_to_string(&inbox).unwrap();
    assert_eq!(
        text,
        "{\"handle\":\"@crashed-mid-wri\n{\"handle\":\"@next\"}\n"
    );
}

#[test]
fn concurrent_producers_never_interleave() {
    let (dir, config) = setup();
    let producers = 8;
    let per = 50;
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let config = config.clone();
            std::thread::spawn(move || {
                // Big records make a torn or interleaved write visible.
                let body: String = (0..per)
                    .map(|i| {
                        format!(
                            "{{\"handle\":\"@p{p}-{i}\",\"tweet\":\"{}\"}}\n",
                            "z".repeat(20_000)
                        )
                    })
                    .collect();
                let out = push(&config, &["--target", "tweets"], body.as_bytes());
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let text = std::fs::read_to_string(dir.path().join("spool/tweets.jsonl")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).expect("every line is a whole record");
        assert!(
            seen.insert(v["handle"].as_str().unwrap().to_owned()),
            "duplicate line"
        );
    }
    assert_eq!(seen.len(), producers * per);
}

#[test]
fn a_new_inbox_is_shared_with_the_group_only_and_a_hard_linked_one_is_refused() {
    use std::os::unix::fs::MetadataExt;
    let (dir, config) = setup();
    let args = ["--target", "tweets", "--handle", "@a", "--tweet", "x"];
    // Under umask 077 as well as 022, the file push creates is 660.
    for umask in ["077", "022"] {
        let inbox = dir.path().join("spool/tweets.jsonl");
        let _ = std::fs::remove_file(&inbox);
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umask {umask} && exec \"$0\" --config \"$1\" push {}",
                args.join(" ")
            ))
            .arg(env!("CARGO_BIN_EXE_notion-inbox"))
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mode = std::fs::metadata(&inbox).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o660, "umask {umask}");
    }
    // A second name for the inbox: appending would write that file too.
    let other = dir.path().join("elsewhere.txt");
    std::fs::hard_link(dir.path().join("spool/tweets.jsonl"), &other).unwrap();
    let before = std::fs::read(&other).unwrap();
    let out = push(&config, &args, b"");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 hard links"), "{err}");
    assert_eq!(std::fs::read(&other).unwrap(), before);
}
