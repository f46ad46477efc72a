//! Input and state hardening: a corpus of bad and odd lines (each ends as a row or a dead letter
//! with a precise reason, and the daemon goes on), damaged checkpoints and an unwritable state
//! directory (the target stops, says why, loses nothing, and the documented recovery works), and
//! the token lifecycle (refresh refused → waits for `authorize` → resumes on its own).

use std::os::unix::fs::PermissionsExt;

use crate::support::*;

fn fast_config(w: &World, targets: &[TargetSpec]) {
    w.write_config_with(targets, "requests_per_second = 150\nburst = 50\n", "");
}

/// [`fast_config`] for OAuth targets of client `client_id` (its secret in `client_secret`).
fn oauth_config(w: &World, targets: &[TargetSpec], client_id: &str) {
    let notion = format!(
        "requests_per_second = 150\nburst = 50\nclient_id = \"{client_id}\"\nclient_secret_file = \"client_secret\"\n"
    );
    w.write_config_with(targets, &notion, "");
}

/// What must become of a line.
enum Want {
    /// A row with this handle and tweet.
    Row(String, String),
    /// A dead letter whose reason contains this.
    Dead(&'static str),
}

fn row(h: &str, t: &str) -> Want {
    Want::Row(h.into(), t.into())
}

fn corpus() -> Vec<(&'static str, Vec<u8>, Want)> {
    let j = |v: serde_json::Value| v.to_string().into_bytes();
    let long_200k = "t".repeat(200_000);
    let emoji_split = format!("{}😀y", "x".repeat(1999));
    let combining = format!("{}e\u{301}z", "e".repeat(1999));
    let deep = format!(
        "{{\"handle\":\"@deep\",\"x\":{}{}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    vec![
        (
            "invalid JSON",
            b"{\"handle\": \"@a\", broken".to_vec(),
            Want::Dead("not valid JSON"),
        ),
        (
            "invalid UTF-8",
            b"{\"handle\":\"@\xff\xfe\"}".to_vec(),
            Want::Dead("not valid UTF-8"),
        ),
        (
            "a BOM",
            [
                b"\xEF\xBB\xBF".as_slice(),
                br#"{"handle":"@bom","tweet":"t"}"#,
            ]
            .concat(),
            row("@bom", "t"),
        ),
        (
            "CRLF",
            br#"{"handle":"@crlf","tweet":"t"}"#.iter().chain(b"\r").copied().collect(),
            row("@crlf", "t"),
        ),
        (
            "a raw NUL in a string",
            b"{\"handle\":\"@n\x00ul\"}".to_vec(),
            Want::Dead("not valid JSON"),
        ),
        (
            "a 10 MB line",
            [
                b"{\"handle\":\"@huge\",\"tweet\":\"".as_slice(),
                &vec![b'a'; 10 << 20],
                b"\"}",
            ]
            .concat(),
            Want::Dead("over max_line_bytes"),
        ),
        (
            "deep nesting",
            deep.into_bytes(),
            Want::Dead("recursion limit"),
        ),
        (
            "an object for text",
            j(serde_json::json!({"handle": {"a": 1}})),
            Want::Dead("expected text, got an object"),
        ),
        (
            "an array for text",
            j(serde_json::json!({"handle": ["@arr"]})),
            Want::Dead("expected text, got an array"),
        ),
        (
            "a missing field",
            j(serde_json::json!({"handle": "@onlyhandle"})),
            row("@onlyhandle", ""),
        ),
        (
            "the title's field missing",
            j(serde_json::json!({"tweet": "no handle"})),
            Want::Dead("no \"handle\", which fills the row's title"),
        ),
        (
            "a misspelt field",
            j(serde_json::json!({"handle": "@typo", "twet": "t"})),
            Want::Dead("did you mean \"tweet\"?"),
        ),
        (
            "none of the fields",
            j(serde_json::json!({"other": 1})),
            Want::Dead("none of the fields target"),
        ),
        (
            "an empty object",
            b"{}".to_vec(),
            Want::Dead("none of the fields target"),
        ),
        (
            "empty strings",
            j(serde_json::json!({"handle": "", "tweet": "", "id": "empty-strings"})),
            Want::Dead("which fills the row's title"),
        ),
        (
            "a 300 000-character tweet",
            j(serde_json::json!({"handle": "@long", "tweet": "t".repeat(300_000)})),
            Want::Dead("over what Notion holds"),
        ),
        (
            "a 200 000-character tweet",
            j(serde_json::json!({"handle": "@max", "tweet": long_200k})),
            row("@max", &"t".repeat(200_000)),
        ),
        (
            "an emoji at the 2000 split",
            j(serde_json::json!({"handle": "@emoji", "tweet": emoji_split})),
            row("@emoji", &format!("{}😀y", "x".repeat(1999))),
        ),
        (
            "a combining mark at the split",
            j(serde_json::json!({"handle": "@comb", "tweet": combining})),
            row("@comb", &format!("{}e\u{301}z", "e".repeat(1999))),
        ),
        (
            "extra fields",
            j(serde_json::json!({"handle": "@extra", "tweet": "t", "more": {"deep": [1, 2]}})),
            row("@extra", "t"),
        ),
        (
            "numbers and booleans for text",
            j(serde_json::json!({"handle": 12345, "tweet": true})),
            row("12345", "true"),
        ),
        (
            "an array line",
            b"[1,2,3]".to_vec(),
            Want::Dead("not an object (it is an array)"),
        ),
        (
            "a string line",
            b"\"just a string\"".to_vec(),
            Want::Dead("not an object (it is a string)"),
        ),
        (
            "null",
            b"null".to_vec(),
            Want::Dead("not an object (it is null)"),
        ),
        (
            "an empty id",
            j(serde_json::json!({"id": " ", "handle": "@x"})),
            Want::Dead("\"id\" field is empty"),
        ),
        (
            "an object id",
            j(serde_json::json!({"id": {"a": 1}, "handle": "@x"})),
            Want::Dead("\"id\" field is an object"),
        ),
        (
            "a number id",
            j(serde_json::json!({"id": 77, "handle": "@idnum"})),
            row("@idnum", ""),
        ),
        (
            "duplicate keys",
            br#"{"handle":"@first","handle":"@second"}"#.to_vec(),
            row("@second", ""),
        ),
        (
            "surrounding spaces",
            br#"   {"handle":"@spaces","tweet":"t"}   "#.to_vec(),
            row("@spaces", "t"),
        ),
        (
            "a long title",
            j(serde_json::json!({"handle": format!("@{}", "h".repeat(2500))})),
            row(&format!("@{}", "h".repeat(2500)), ""),
        ),
        (
            "unicode keys and values",
            j(serde_json::json!({"handle": "@ключ", "tweet": "значение 漢字", "ключ": 1})),
            row("@ключ", "значение 漢字"),
        ),
        (
            "trailing garbage",
            br#"{"handle":"@tail"} and more"#.to_vec(),
            Want::Dead("trailing characters"),
        ),
        (
            "escaped unicode",
            br#"{"handle":"@\u00e9\ud83d\ude00","tweet":"e"}"#.to_vec(),
            row("@é😀", "e"),
        ),
        (
            "a lone surrogate",
            br#"{"handle":"@\ud800"}"#.to_vec(),
            Want::Dead("not valid JSON"),
        ),
        (
            "a number out of range",
            br#"{"handle":"@big","tweet":1e400}"#.to_vec(),
            Want::Dead("number out of range"),
        ),
        (
            "an escaped newline",
            br#"{"handle":"@nl","tweet":"line1\nline2"}"#.to_vec(),
            row("@nl", "line1\nline2"),
        ),
        (
            "a tab-separated value",
            b"{\"handle\":\"@tab\",\t\"tweet\":\"t\"}".to_vec(),
            row("@tab", "t"),
        ),
    ]
}

#[test]
fn every_line_of_the_corpus_ends_as_a_row_or_a_precise_dead_letter() {
    let cases = corpus();
    assert!(cases.len() >= 30);
    let mut w = World::new(fast());
    let t = w.target("t");
    fast_config(&w, &[t]);
    let inbox = w.inbox("t");
    std::fs::create_dir_all(w.path("spool")).unwrap();
    let mut bytes = Vec::new();
    for (_, line, _) in &cases {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    }
    // After the corpus, a good record: the daemon goes on.
    bytes.extend_from_slice(rec("@after-corpus", "still running").as_bytes());
    append_bytes(&inbox, &bytes);
    let rows_wanted = cases
        .iter()
        .filter(|c| matches!(c.2, Want::Row(..)))
        .count()
        + 1;
    let dead_wanted = cases.len() + 1 - rows_wanted;
    w.start();
    wait_until("every corpus line handled", || {
        w.pages().len() >= rows_wanted && w.dead_letters("t").len() >= dead_wanted
    });
    assert_eq!(w.stop(), Some(0));
    let pages = w.pages();
    assert_eq!(pages.len(), rows_wanted, "rows");
    let dead = w.dead_letters("t");
    assert_eq!(dead.len(), dead_wanted, "dead letters: {dead:#?}");
    // Match each case to its outcome by its offset in the inbox.
    let mut offset = 0u64;
    for (name, line, want) in &cases {
        match want {
            Want::Row(h, t) => {
                let found = pages
                    .iter()
                    .any(|p| &page_title(p) == h && &prop_text(p, "tweet") == t);
                assert!(
                    found,
                    "{name}: no row with handle {:.40?} and tweet {:.40?}",
                    h, t
                );
            }
            Want::Dead(reason) => {
                let d = dead
                    .iter()
                    .find(|d| d["offset"] == offset)
                    .unwrap_or_else(|| panic!("{name}: no dead letter at offset {offset}"));
                let why = d["reason"].as_str().unwrap();
                assert!(
                    why.contains(reason),
                    "{name}: reason {why:?} lacks {reason:?}"
                );
                if line.len() < 1 << 20 {
                    let kept = match d.get("line_base64").and_then(|b| b.as_str()) {
                        Some(b64) => base64_decode(b64),
                        None => d["line"].as_str().unwrap().as_bytes().to_vec(),
                    };
                    assert_eq!(&kept, line, "{name}: the dead letter keeps the exact line");
                }
            }
        }
        offset += line.len() as u64 + 1;
    }
    assert!(pages.iter().any(|p| page_title(p) == "@after-corpus"));
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn a_damaged_checkpoint_stops_its_target_only_and_the_documented_recovery_works() {
    for damage in [
        &b""[..],
        b"{\"version\": 1, \"file\": {\"dev\"",
        b"not json at all",
    ] {
        let mut w = World::new(fast());
        let (a, b) = (w.target("a"), w.target("b"));
        fast_config(&w, &[a, b]);
        std::fs::create_dir_all(w.path("state/checkpoints")).unwrap();
        std::fs::write(w.path("state/checkpoints/a.json"), damage).unwrap();
        w.append(&w.inbox("a"), &rec("@a1", "kept"));
        w.append(&w.inbox("b"), &rec("@b1", "delivered"));
        w.start();
        wait_until("b delivers", || w.handles().contains(&"@b1".to_string()));
        wait_until("a says why it stopped", || {
            w.logs().contains("the checkpoint of target a")
        });
        let logs = w.logs();
        assert!(
            logs.contains("away to start this target again"),
            "the message gives the way out:\n{logs}"
        );
        // `status` shows it too.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_notion-inbox"))
            .arg("--config")
            .arg(w.path("config.toml"))
            .args(["status", "--json"])
            .output()
            .unwrap();
        let status = String::from_utf8_lossy(&out.stdout);
        assert!(status.contains("damaged"), "{status}");
        assert_eq!(w.stop(), Some(0));
        assert!(
            !w.handles().contains(&"@a1".to_string()),
            "nothing sent from a damaged state"
        );
        // The documented recovery: move the checkpoint away, restart.
        std::fs::rename(w.path("state/checkpoints/a.json"), w.path("a.json.damaged")).unwrap();
        w.start();
        w.wait_for("a delivers after the recovery", || {
            w.handles().contains(&"@a1".to_string())
        });
        assert_eq!(w.stop(), Some(0));
    }
}

#[test]
fn a_torn_checkpoint_slot_falls_back_to_the_other_and_nothing_is_lost_or_doubled() {
    // A crash (or a power loss) during a checkpoint write leaves the slot being written torn; the
    // other slot is whole and older. The daemon must go on from it, say so, and (with a dedupe
    // property) create no row twice for the records between the two.
    let mut w = World::new(fast());
    let mut a = w.target("a");
    a.dedupe = true;
    fast_config(&w, &[a]);
    for i in 0..3 {
        w.append(&w.inbox("a"), &rec(&format!("@first{i}"), "x"));
    }
    w.start();
    w.wait_for("the first rows", || w.pages().len() == 3);
    assert_eq!(w.stop(), Some(0));
    let slots = [
        w.path("state/checkpoints/a.json"),
        w.path("state/checkpoints/a~b.json"),
    ];
    assert!(slots.iter().all(|p| p.is_file()), "two slots after a run");
    let seq = |p: &std::path::Path| {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        v["seq"].as_u64().unwrap()
    };
    let newest = if seq(&slots[0]) > seq(&slots[1]) {
        &slots[0]
    } else {
        &slots[1]
    };
    // Torn: the head of the write, then garbage.
    let bytes = std::fs::read(newest).unwrap();
    let mut torn = bytes[..bytes.len() / 2].to_vec();
    torn.extend(std::iter::repeat_n(0u8, bytes.len() / 2));
    std::fs::write(newest, torn).unwrap();
    w.append(&w.inbox("a"), &rec("@after", "y"));
    w.start();
    w.wait_for("the new record after the fallback", || {
        w.handles().contains(&"@after".to_string())
    });
    assert_eq!(w.stop(), Some(0));
    let mut handles = w.handles();
    handles.sort();
    assert_eq!(handles, ["@after", "@first0", "@first1", "@first2"]);
    let logs = w.logs();
    assert!(
        logs.contains(&newest.file_name().unwrap().to_string_lossy().to_string())
            && logs.contains("the other slot is whole"),
        "the fallback is reported, naming the file:\n{logs}"
    );
}

#[test]
fn an_unwritable_checkpoint_stops_its_target_with_the_fix_and_loses_nothing() {
    // The checkpoint's path is taken by a directory: no write can land there (this works as root,
    // whom mode bits do not stop).
    let mut w = World::new(fast());
    let (a, b) = (w.target("a"), w.target("b"));
    fast_config(&w, &[a, b]);
    std::fs::create_dir_all(w.path("state/checkpoints/a.json")).unwrap();
    w.append(&w.inbox("a"), &rec("@a1", "waits"));
    w.append(&w.inbox("b"), &rec("@b1", "goes"));
    w.start();
    wait_until("b delivers", || w.handles().contains(&"@b1".to_string()));
    wait_until("a says why it stopped", || w.logs().contains("target a"));
    let logs = w.logs();
    assert!(
        logs.contains("a.json"),
        "the message names the file:\n{logs}"
    );
    assert!(
        !w.handles().contains(&"@a1".to_string()),
        "nothing is sent without a checkpoint"
    );
    assert_eq!(w.stop(), Some(0));
    std::fs::remove_dir(w.path("state/checkpoints/a.json")).unwrap();
    w.start();
    w.wait_for("a delivers once its checkpoint can be written", || {
        w.handles().contains(&"@a1".to_string())
    });
    assert_eq!(w.stop(), Some(0));
    assert_eq!(w.pages().len(), 2);
}

#[test]
fn a_refused_refresh_waits_for_authorize_and_resumes_by_itself() {
    let mut w = World::new(fast());
    let info = w.emu.info().clone();
    // A token file as `authorize` writes it, for an OAuth token whose refresh will be refused.
    let oauth_token = w.emu.mint_token();
    let file = format!(
        "access_token = \"{oauth_token}\"\nrefresh_token = \"nrt_unknown\"\ntoken_type = \"bearer\"\nbot_id = \"b\"\nworkspace_id = \"{}\"\nobtained_at = \"2026-01-01T00:00:00Z\"\nresponse = \"{{}}\"\n",
        info.workspace_id
    );
    std::fs::create_dir_all(w.path("state/tokens")).unwrap();
    std::fs::write(w.path("state/tokens/t.toml"), &file).unwrap();
    std::fs::set_permissions(
        w.path("state/tokens/t.toml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(w.path("client_secret"), &info.client_secret).unwrap();
    std::fs::set_permissions(
        w.path("client_secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let t = TargetSpec {
        token: String::new(),
        ..w.target("t")
    };
    oauth_config(&w, &[t], &info.client_id);
    w.append(&w.inbox("t"), &rec("@first", "before expiry"));
    w.start();
    wait_until("the first row", || w.pages().len() == 1);
    // The token expires and the refresh is refused: the target waits, the record is kept.
    w.emu.expire_token(&oauth_token);
    w.append(&w.inbox("t"), &rec("@second", "after expiry"));
    wait_until("needs authorization", || {
        w.logs().contains("needs authorization")
    });
    assert_eq!(w.pages().len(), 1);
    // `authorize` rewrites the token file (here: a fresh token, written the way it writes).
    let fresh = w.emu.mint_token();
    let tmp = w.path("state/tokens/.t.toml.tmp");
    std::fs::write(&tmp, file.replace(&oauth_token, &fresh)).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp, w.path("state/tokens/t.toml")).unwrap();
    wait_until("resumed by itself", || w.pages().len() == 2);
    assert_eq!(w.stop(), Some(0));
    let logs = w.logs();
    for secret in [
        &oauth_token,
        &fresh,
        &info.client_secret,
        &"nrt_unknown".to_string(),
    ] {
        assert!(!logs.contains(secret.as_str()), "a secret reached the log");
    }
}

#[test]
fn an_expired_oauth_token_is_refreshed_by_the_daemon_and_the_rotated_pair_persisted() {
    use notion_inbox::notion::TokenFile;
    use notion_inbox::notion::oauth::TokenResponse;
    use secrecy::ExposeSecret;
    let mut w = World::new(fast());
    let info = w.emu.info().clone();
    // Authorize through the emulator's consent form and token endpoint, as `authorize` does.
    let redirect = info.redirect_uris[0].clone();
    let response: serde_json::Value = w.rt.block_on(async {
        let location = consent_location(&w.emu, &redirect, "s", true).await;
        let location = url::Url::parse(&location).unwrap();
        let code = location.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
        reqwest::Client::new()
            .post(format!("{}/v1/oauth/token", info.url))
            .basic_auth(&info.client_id, Some(&info.client_secret))
            .json(&serde_json::json!({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let first = TokenFile::from_response(&TokenResponse::parse(response).unwrap(), None);
    first.write(&w.path("state/tokens/t.toml")).unwrap();
    std::fs::write(w.path("client_secret"), &info.client_secret).unwrap();
    std::fs::set_permissions(
        w.path("client_secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let t = TargetSpec {
        token: String::new(),
        ..w.target("t")
    };
    oauth_config(&w, &[t], &info.client_id);
    w.append(&w.inbox("t"), &rec("@before", "first token"));
    w.start();
    wait_until("the first row", || w.pages().len() == 1);
    w.emu.expire_token(first.access_token.expose_secret());
    w.append(&w.inbox("t"), &rec("@after", "refreshed token"));
    w.wait_for("the row sent with the refreshed token", || {
        w.pages().len() == 2
    });
    assert_eq!(w.stop(), Some(0));
    let now = TokenFile::read(&w.path("state/tokens/t.toml")).unwrap();
    assert_ne!(
        now.access_token.expose_secret(),
        first.access_token.expose_secret()
    );
    assert_ne!(
        now.refresh_token.as_ref().unwrap().expose_secret(),
        first.refresh_token.as_ref().unwrap().expose_secret(),
        "the rotated refresh token is persisted"
    );
    assert!(now.refreshed_at.is_some());
    let mode = std::fs::metadata(w.path("state/tokens/t.toml"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}
