//! Private state and the permissions around secrets, with the real binary: what the daemon and
//! the commands create under the state directory is private whatever the umask; `check` and the
//! daemon's start name the state and secrets that others could read, write or own, with the fix;
//! and a client secret or token file that cannot be used is waited out, its fix picked up without
//! a restart.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use crate::support::*;
use notion_inbox::notion::TokenFile;
use secrecy::ExposeSecret;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o777
}

/// Every directory and file under `root` (itself included), with its mode.
fn modes_under(root: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut found = vec![(root.to_owned(), true, mode_of(root))];
    let mut i = 0;
    while i < found.len() {
        let (path, is_dir, _) = found[i].clone();
        i += 1;
        if !is_dir {
            continue;
        }
        for entry in std::fs::read_dir(&path).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            found.push((path, meta.is_dir(), meta.mode() & 0o777));
        }
    }
    found
}

/// Asserts that every directory under `root` is mode 700 and every file mode 600.
#[track_caller]
fn assert_private(root: &Path, umask: u32) {
    for (path, is_dir, mode) in modes_under(root) {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(
            mode,
            want,
            "{} is mode {mode:04o} under umask {umask:04o}",
            path.display()
        );
    }
}

/// `check`'s stdout and whether it passed.
fn check(w: &World) -> (bool, String) {
    let out: Output = w.command().arg("check").output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let ready = text.contains("ready: ");
    assert_eq!(out.status.success(), ready, "{text}");
    (ready, text)
}

/// Runs `authorize --paste` with the world's umask, playing the browser.
fn authorize_with_the_binary(w: &World) {
    let mut child = w
        .command()
        .args(["authorize", "--target", "t", "--no-browser", "--paste"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = url::Url::parse(line.trim()).expect("the first stdout line is the URL");
    let q: std::collections::BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    let location = w.rt.block_on(consent_location(
        &w.emu,
        &q["redirect_uri"],
        &q["state"],
        true,
    ));
    writeln!(child.stdin.as_mut().unwrap(), "{location}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The health of target `name` in `status.json`, as "state: message".
fn health(w: &World, name: &str) -> String {
    w.status()
        .get(name)
        .map(|s| {
            format!(
                "{}: {}",
                s["health"]["state"].as_str().unwrap_or_default(),
                s["health"]["message"].as_str().unwrap_or_default()
            )
        })
        .unwrap_or_default()
}

#[test]
fn everything_created_under_the_state_directory_is_private_whatever_the_umask() {
    for umask in [0o022, 0o002] {
        let mut w = World::new(fast());
        w.umask = Some(umask);
        w.write_oauth_config(&[w.target("t")], 0o600, "");
        authorize_with_the_binary(&w);
        let token = w.path("state/tokens/t.toml");
        // An expired token: the daemon refreshes it, so its own token write is covered too.
        let first = TokenFile::read(&token).unwrap();
        w.emu.expire_token(first.access_token.expose_secret());
        w.append(&w.inbox("t"), &rec("@one", "a row"));
        w.append(&w.inbox("t"), "not json\n");
        w.start();
        w.wait_for(
            "a row, a dead letter, the status file and a refresh",
            || {
                w.pages().len() == 1
                    && w.dead_letters("t").len() == 1
                    && w.path("state/status.json").exists()
                    && TokenFile::read(&token).is_ok_and(|f| f.refreshed_at.is_some())
            },
        );
        assert_eq!(w.stop(), Some(0));
        for name in [
            "checkpoints/t.json",
            "tokens/t.toml",
            "tokens/t.lock",
            "dead-letter/t.jsonl",
            "status.json",
        ] {
            assert!(w.path(&format!("state/{name}")).exists(), "{name}");
        }
        assert_private(&w.path("state"), umask);
        // `requeue` moves the dead letters through `requeue/`.
        let out = w
            .command()
            .args(["requeue", "--target", "t", "--allow-root"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(w.path("state/requeue").is_dir());
        assert_private(&w.path("state"), umask);
    }
}

#[test]
fn check_names_state_and_secrets_that_others_could_read_write_or_own() {
    let w = World::new(fast());
    w.write_oauth_config(&[w.target("t")], 0o600, "");
    w.authorize("t");
    let (state, token, secret) = (
        w.path("state"),
        w.path("state/tokens/t.toml"),
        w.path("client_secret"),
    );
    let (ready, text) = check(&w);
    assert!(ready, "{text}");
    assert!(
        text.contains(&format!(
            "the client secret loads from {}",
            secret.display()
        )),
        "{text}"
    );

    chmod(&state, 0o777);
    let (ready, text) = check(&w);
    assert!(!ready, "{text}");
    assert!(
        text.contains(&format!("chmod 700 {}", state.display())),
        "{text}"
    );
    chmod(&state, 0o700);

    // The directory above the spool: whoever may write it could swap the spool for a symlink.
    chmod(w.dir.path(), 0o777);
    let (ready, text) = check(&w);
    assert!(!ready, "{text}");
    assert!(
        text.contains(&format!(
            "the directory {}, which holds",
            w.dir.path().display()
        )) && text.contains("chmod go-w"),
        "{text}"
    );
    chmod(w.dir.path(), 0o700);

    chmod(&token, 0o644);
    let (ready, text) = check(&w);
    assert!(!ready, "{text}");
    assert!(
        text.contains(&format!("PROBLEM [t] the token file {}", token.display()))
            && text.contains(&format!("chmod 600 {}", token.display())),
        "{text}"
    );
    chmod(&token, 0o600);

    // The client secret: too open, empty, missing. Each is a problem naming the file and the fix.
    chmod(&secret, 0o644);
    let (ready, text) = check(&w);
    assert!(!ready, "{text}");
    assert!(
        text.contains("mode 0644") && text.contains(&format!("chmod 600 {}", secret.display())),
        "{text}"
    );
    chmod(&secret, 0o600);
    let value = std::fs::read(&secret).unwrap();
    std::fs::write(&secret, "\n").unwrap();
    let (ready, text) = check(&w);
    assert!(!ready && text.contains("is empty"), "{text}");
    std::fs::remove_file(&secret).unwrap();
    let (ready, text) = check(&w);
    assert!(!ready && text.contains("does not exist"), "{text}");
    std::fs::write(&secret, &value).unwrap();
    chmod(&secret, 0o600);

    // A token file of another user (as `sudo notion-inbox authorize` leaves one). Only root can
    // give a file away; `check` then expects the state directory's owner.
    if nix_euid() == 0 {
        std::os::unix::fs::chown(&token, Some(4242), None).unwrap();
        let (ready, text) = check(&w);
        assert!(!ready, "{text}");
        let owner = std::fs::metadata(&state).unwrap().uid();
        assert!(
            text.contains("uid 4242")
                && text.contains(&format!("chown {} {}", user(owner), token.display())),
            "{text}"
        );
        std::os::unix::fs::chown(&token, Some(owner), None).unwrap();
    }
    let (ready, text) = check(&w);
    assert!(ready, "{text}");
}

#[test]
fn a_token_file_others_can_read_is_warned_about_and_its_fix_picked_up_without_a_restart() {
    let mut w = World::new(fast());
    w.write_oauth_config(&[w.target("t")], 0o600, "");
    w.authorize("t");
    let (state, token) = (w.path("state"), w.path("state/tokens/t.toml"));
    chmod(&state, 0o770);
    chmod(&token, 0o640);
    w.append(&w.inbox("t"), &rec("@one", "waits for the chmod"));
    w.start();
    w.wait_for("the warnings and the health say the fixes", || {
        let logs = w.logs();
        logs.contains(&format!("chmod 700 {}", state.display()))
            && logs.contains(&format!("chmod 600 {}", token.display()))
            && health(&w, "t").starts_with("paused: ")
            && health(&w, "t").contains(&format!("chmod 600 {}", token.display()))
    });
    assert!(w.pages().is_empty());
    chmod(&token, 0o600);
    w.wait_for("the row, once the token file is private", || {
        w.pages().len() == 1
    });
    assert_eq!(w.starts, 1);
    assert_eq!(w.stop(), Some(0));
}

#[test]
fn a_client_secret_file_that_cannot_be_used_is_shown_in_the_health_and_its_fix_picked_up_by_itself()
{
    let mut w = World::new(fast());
    w.write_oauth_config(&[w.target("t")], 0o644, "");
    let secret = w.path("client_secret");
    let fix = format!("chmod 600 {}", secret.display());
    let first = w.authorize("t");
    // The daemon starts with an expired token: its first refresh meets the open secret file.
    w.emu.expire_token(first.access_token.expose_secret());
    w.append(&w.inbox("t"), &rec("@one", "after the first fix"));
    w.start();
    w.wait_for("the health says the secret's fix", || {
        let h = health(&w, "t");
        h.starts_with("paused: ") && h.contains(&fix) && h.contains("client secret file")
    });
    assert!(
        w.logs().contains(&fix),
        "the start warns about the secret file"
    );
    assert!(w.pages().is_empty());
    chmod(&secret, 0o600);
    w.wait_for("the refresh and the row, with no restart", || {
        w.pages().len() == 1
    });

    // The same while delivering: the file is opened up again and the token expires again.
    chmod(&secret, 0o644);
    let now = TokenFile::read(&w.path("state/tokens/t.toml")).unwrap();
    w.emu.expire_token(now.access_token.expose_secret());
    w.append(&w.inbox("t"), &rec("@two", "after the second fix"));
    w.wait_for("the health says the secret's fix again", || {
        let h = health(&w, "t");
        h.starts_with("paused: ") && h.contains(&fix)
    });
    assert_eq!(w.pages().len(), 1);
    chmod(&secret, 0o600);
    w.wait_for("the second row, with no restart", || w.pages().len() == 2);
    w.wait_for("the health is ok again", || health(&w, "t") == "ok: ");
    assert!(!w.logs().contains("needs authorization"), "{}", w.logs());
    assert_eq!(w.starts, 1);
    assert!(w.daemon.as_mut().unwrap().try_wait().unwrap().is_none());
    assert_eq!(w.stop(), Some(0));
}

fn nix_euid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() }
}

fn user(uid: u32) -> String {
    notion_inbox::state::private::name_or_uid(uid)
}
