//! Discovery after consent, for a target configured without `database_id`: `authorize` (the real
//! binary, the emulator's consent page) finds the one shared database that fits the mapping and
//! saves it with the token; with several it lists them and `--database` or `database_title`
//! picks; with none it says what to share. `databases`, `check` and the daemon work from there.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use crate::support::*;
use notion_emulator::{Consent, EmulatorOptions, consent_as};
use notion_inbox::notion::TokenFile;
use secrecy::ExposeSecret;

/// A world whose OAuth target "t" names no database; `properties` replaces its mapping.
fn world(properties: Option<&str>, extra: &str) -> World {
    world_with(fast(), properties, extra)
}

fn world_with(opts: EmulatorOptions, properties: Option<&str>, extra: &str) -> World {
    let w = World::new(opts);
    let spec = TargetSpec {
        extra: extra.to_owned(),
        ..w.target("t")
    };
    let path = w.write_oauth_config(&[spec], 0o600, "");
    // A port of its own: tests run at once, and each `authorize` listens on its redirect URI.
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    w.emu.register_redirect_uri(&redirect);
    let mut text: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("database_id = "))
        .map(|l| match l.starts_with("redirect_uri = ") {
            true => format!("redirect_uri = \"{redirect}\"\n"),
            false => format!("{l}\n"),
        })
        .collect();
    if let Some(p) = properties {
        let at = text.find("[target.properties]").unwrap();
        text.truncate(at);
        text.push_str("[target.properties]\n");
        text.push_str(p);
    }
    std::fs::write(&path, text).unwrap();
    w
}

/// Runs `authorize --target t` with `extra` arguments, consents granting `databases`, and returns
/// its exit code and stderr.
fn authorize(w: &World, databases: &[&str], extra: &[&str]) -> (Option<i32>, String) {
    let consent = Consent {
        allow: true,
        databases: Some(databases.iter().map(|d| d.to_string()).collect()),
        ..Consent::default()
    };
    authorize_as(w, consent, extra)
}

/// Like [`authorize`], consenting as `consent` says.
fn authorize_as(w: &World, consent: Consent, extra: &[&str]) -> (Option<i32>, String) {
    let mut child: Child = w
        .command()
        .args(["authorize", "--target", "t", "--no-browser"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let Ok(url) = url::Url::parse(line.trim()) else {
        let out = child.wait_with_output().unwrap();
        panic!(
            "authorize printed no URL: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    w.rt.block_on(consent_as(&url, consent)).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    for secret in w.emu.secrets() {
        assert!(!stderr.contains(&secret), "a secret was printed: {stderr}");
    }
    (out.status.code(), stderr)
}

fn token_file(w: &World) -> TokenFile {
    TokenFile::read(&w.path("state/tokens/t.toml")).unwrap()
}

#[test]
fn the_one_fitting_database_is_found_saved_and_delivered_to() {
    let mut w = world(None, "");
    let info = w.emu.info().clone();
    // "Projects" is shared too, and does not fit (no tweet column).
    let (code, stderr) = authorize(
        &w,
        &[&info.database_id, &info.multi_source_database_id],
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("go to \"Twitter\""), "{stderr}");
    let chosen = token_file(&w).destination.expect("the choice is saved");
    assert_eq!(
        chosen.data_source_id.as_deref(),
        Some(info.data_source_id.as_str())
    );
    assert_eq!(
        chosen.database_id.as_deref(),
        Some(info.database_id.as_str())
    );
    let (code, out, err) = w.cli(&["databases", "--target", "t", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let dbs: serde_json::Value = serde_json::from_str(&out).unwrap();
    let configured: Vec<&str> = dbs
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["data_sources"].as_array().unwrap())
        .filter(|s| s["configured"] == true)
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(configured, ["Twitter"]);
    let (code, out, err) = w.cli(&["check", "--target", "t"]);
    assert_eq!(code, Some(0), "{out}{err}");
    w.append(&w.inbox("t"), &rec("@found", "discovered"));
    w.start();
    wait_until("the row", || w.pages().len() == 1);
    assert_eq!(w.stop(), Some(0));
    assert_eq!(w.pages()[0].data_source_id, info.data_source_id);
    // A refresh keeps the choice.
    let before = token_file(&w);
    w.emu.expire_token(before.access_token.expose_secret());
    w.append(&w.inbox("t"), &rec("@after", "a refresh"));
    w.start();
    wait_until("the row after a refresh", || w.pages().len() == 2);
    assert_eq!(w.stop(), Some(0));
    let after = token_file(&w);
    assert!(after.refreshed_at.is_some(), "the token was refreshed");
    assert_eq!(after.destination, before.destination);
}

#[test]
fn several_fitting_data_sources_are_listed_and_chosen_by_flag_or_title() {
    // Tasks and Bugs (both in "Projects") fit a mapping onto Name and Notes.
    let mapping = "handle = \"title\"\nnote = \"Notes\"\n";
    let w = world(Some(mapping), "");
    let projects = w.emu.info().multi_source_database_id.clone();
    let (code, stderr) = authorize(&w, &[&projects], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("2 shared databases fit target t")
            && stderr.contains("\"Projects\" / \"Tasks\"")
            && stderr.contains("--database"),
        "{stderr}"
    );
    assert!(token_file(&w).destination.is_none());
    let (code, stderr) = authorize(&w, &[&projects], &["--database", "Bugs"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(token_file(&w).destination.unwrap().title.contains("Bugs"));
    // database_title in the configuration breaks the tie as well.
    let w = world(Some(mapping), "database_title = \"Tasks\"\n");
    let (code, stderr) = authorize(&w, &[&projects], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(token_file(&w).destination.unwrap().title.contains("Tasks"));
}

#[test]
fn nothing_fitting_says_what_was_shared_and_what_to_share() {
    let w = world(None, "");
    let info = w.emu.info().clone();
    let (code, stderr) = authorize(&w, &[&info.multi_source_database_id], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("no shared database fits target t")
            && stderr.contains("\"Projects\" / \"Tasks\" does not fit")
            && stderr.contains("a column named \"tweet\""),
        "{stderr}"
    );
    // The daemon says the same and waits; nothing is lost or dead-lettered.
    let (code, out, err) = w.cli(&["check", "--target", "t"]);
    assert_ne!(code, Some(0), "{out}{err}");
    assert!(
        format!("{out}{err}").contains("no shared database fits"),
        "{out}{err}"
    );
    // --database on a target whose configuration names one is refused before any consent.
    let configured = World::new(fast());
    configured.write_oauth_config(&[configured.target("t")], 0o600, "");
    let (code, _, err) = configured.cli(&[
        "authorize",
        "--target",
        "t",
        "--no-browser",
        "--database",
        "X",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--database would contradict"), "{err}");
}

#[test]
fn the_database_of_a_duplicated_template_is_found_in_the_workspace_chosen() {
    let opts = EmulatorOptions {
        template: true,
        ..fast()
    };
    let mut w = world_with(opts, None, "");
    let info = w.emu.info().clone();
    let consent = Consent {
        allow: true,
        workspace: Some(info.other_workspace_id.clone()),
        databases: Some(Vec::new()),
        template: true,
    };
    let (code, stderr) = authorize_as(&w, consent, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("workspace Globex"), "{stderr}");
    let file = token_file(&w);
    assert!(
        file.duplicated_template_id().is_some(),
        "the template was duplicated"
    );
    let chosen = file.destination.expect("a database was chosen");
    let db = chosen.database_id.unwrap();
    assert_ne!(
        db, info.other_database_id,
        "the duplicate, not Globex's own Tweets"
    );
    w.append(&w.inbox("t"), &rec("@globex", "into the template"));
    w.start();
    wait_until("the row", || w.pages().len() == 1);
    assert_eq!(w.stop(), Some(0));
    assert_eq!(w.pages()[0].database_id, db);
}
