//! Targets that come and go without a restart: a workspace that connects (its record under
//! `<state_dir>/targets/`, written by `config::connected::connect`) is started by the running
//! daemon while another target delivers, is resumed by a reconnect, is stopped when its record is
//! removed, and a record that cannot be used is skipped with its file named. The real binary,
//! against the emulator's second workspace.

use std::collections::BTreeMap;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::support::*;
use notion_emulator::{Consent, consent_as};
use notion_inbox::config::connected::Template;
use notion_inbox::notion::oauth::TokenResponse;
use notion_inbox::tenants::lifecycle::Caps;
use notion_inbox::tenants::{Connected, connect, records};

/// A world with one configured target, "tweets" (Acme, internal token), and the OAuth client, so
/// that connected workspaces' tokens can be refreshed.
fn world() -> World {
    let w = World::new(fast());
    let info = w.emu.info().clone();
    std::fs::write(w.path("client_secret"), &info.client_secret).unwrap();
    std::fs::set_permissions(
        w.path("client_secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // A redirect URI of its own: tests run at once, and `connect` listens on it.
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    w.emu.register_redirect_uri(&redirect);
    let notion = format!(
        "client_id = \"{}\"\nclient_secret_file = \"client_secret\"\nredirect_uri = \"{redirect}\"\nrequests_per_second = 50\nburst = 50\n",
        info.client_id
    );
    let path = w.write_config_with(&[w.target("tweets")], &notion, "");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("[connect]\ninbox_dir = \"spool\"\ndedupe_property = \"Inbox ID\"\n[connect.properties]\nhandle = \"title\"\ntweet = \"tweet\"\n");
    std::fs::write(&path, text).unwrap();
    w
}

/// A user of Globex consents (picking its Tweets database) and the workspace is connected.
fn connect_globex(w: &World) -> Connected {
    let info = w.emu.info().clone();
    let redirect = info.redirect_uris[0].clone();
    let response: serde_json::Value = w.rt.block_on(async {
        let location = consent_in(
            &w.emu,
            &redirect,
            "s",
            Some(&info.other_workspace_id),
            &[&info.other_database_id],
            true,
        )
        .await;
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
    let template = Template {
        properties: BTreeMap::from([
            ("handle".to_owned(), "title".to_owned()),
            ("tweet".to_owned(), "tweet".to_owned()),
        ]),
        dedupe_property: Some("Inbox ID".into()),
        ..Template::default()
    };
    connect(
        &w.path("state"),
        &w.path("spool"),
        &TokenResponse::parse(response).unwrap(),
        &template,
        Caps::default(),
    )
    .unwrap()
}

/// The titles of the rows in `database_id`, sorted: creates run concurrently, so rows need not
/// land in inbox order.
fn rows_in(w: &World, database_id: &str) -> Vec<String> {
    let mut rows: Vec<String> = w
        .pages()
        .iter()
        .filter(|p| p.database_id == database_id)
        .map(page_title)
        .collect();
    rows.sort();
    rows
}

#[test]
fn a_workspace_connects_reconnects_and_leaves_while_another_target_delivers() {
    let mut w = world();
    let info = w.emu.info().clone();
    w.append(&w.inbox("tweets"), &rec("@acme1", "before"));
    w.start();
    wait_until("acme's first row", || {
        rows_in(&w, &info.database_id).len() == 1
    });

    let globex = connect_globex(&w);
    assert!(!globex.reconnected);
    assert!(globex.name.starts_with("ws-"), "{}", globex.name);
    let mode = std::fs::metadata(&globex.record).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&globex.inbox).unwrap().len(),
        0,
        "an empty inbox"
    );
    w.append(&globex.inbox, &rec("@globex1", "first"));
    w.append(&w.inbox("tweets"), &rec("@acme2", "meanwhile"));
    wait_until("globex's first row", || {
        rows_in(&w, &info.other_database_id) == ["@globex1"]
    });
    wait_until("acme's second row", || {
        rows_in(&w, &info.database_id).len() == 2
    });

    // The same workspace again: the same target, inbox and checkpoint; nothing is sent twice.
    let again = connect_globex(&w);
    assert_eq!(
        (again.name.as_str(), again.reconnected),
        (globex.name.as_str(), true)
    );
    w.append(&globex.inbox, &rec("@globex2", "after the reconnect"));
    wait_until("globex's second row", || {
        rows_in(&w, &info.other_database_id).len() == 2
    });

    // Its record removed: the target stops; its inbox stays.
    std::fs::remove_file(&globex.record).unwrap();
    wait_until("the target is stopped", || {
        w.logs()
            .contains("target stopped: its workspace's record was removed")
            && !w.status().contains_key(&globex.name)
    });
    w.append(&w.inbox("tweets"), &rec("@acme3", "after"));
    wait_until("acme's third row", || {
        rows_in(&w, &info.database_id).len() == 3
    });
    assert_eq!(w.stop(), Some(0));
    assert_eq!(
        rows_in(&w, &info.other_database_id),
        ["@globex1", "@globex2"]
    );
    assert_eq!(
        rows_in(&w, &info.database_id),
        ["@acme1", "@acme2", "@acme3"]
    );
    let logs = w.logs();
    assert_eq!(
        logs.matches("target stopped: ").count(),
        1,
        "only the removed target was ever stopped: {logs}"
    );
    assert!(globex.inbox.exists());
}

#[test]
fn a_record_that_cannot_be_used_is_skipped_with_its_file_named() {
    let mut w = world();
    let info = w.emu.info().clone();
    std::fs::create_dir_all(w.path("state/targets")).unwrap();
    std::fs::write(
        w.path("state/targets/broken.toml"),
        "[target]\nname = \"broken\"\n",
    )
    .unwrap();
    std::fs::write(
        w.path("state/targets/tweets.toml"),
        "[target]\nname = \"tweets\"\ninbox = \"x.jsonl\"\n[target.properties]\nhandle = \"title\"\n[connection]\nworkspace_id = \"w\"\nbot_id = \"b\"\nconnected_at = \"2026-01-01T00:00:00Z\"\n",
    )
    .unwrap();
    w.append(&w.inbox("tweets"), &rec("@still", "delivered"));
    w.start();
    wait_until("the configured target's row", || {
        rows_in(&w, &info.database_id).len() == 1
    });
    wait_until("both records are named", || {
        let logs = w.logs();
        logs.contains("targets/broken.toml") && logs.contains("targets/tweets.toml")
    });
    let logs = w.logs();
    assert!(logs.contains("is also in"), "{logs}");
    assert_eq!(w.stop(), Some(0));
    // `check` names them as problems too.
    let (code, out, err) = w.cli(&["check"]);
    assert_ne!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("skipped") && out.contains("targets/broken.toml"),
        "{out}"
    );
}

#[test]
fn a_workspace_that_removed_the_integration_waits_and_resumes_on_reconnect() {
    let mut w = world();
    let info = w.emu.info().clone();
    w.start();
    let globex = connect_globex(&w);
    w.append(&globex.inbox, &rec("@one", "before"));
    w.wait_for("the first row", || {
        rows_in(&w, &info.other_database_id).len() == 1
    });
    // The user removes the integration in Notion: a 401, then the refresh is refused.
    w.emu.remove_integration(&info.other_workspace_id);
    w.append(&globex.inbox, &rec("@two", "while removed"));
    wait_until("the target says it is disconnected", || {
        w.status()
            .get(&globex.name)
            .is_some_and(|s| s.to_string().contains("is disconnected"))
    });
    let (_, out, _) = w.cli(&["targets", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let state = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == globex.name.as_str())
        .map(|t| t["state"].clone());
    assert_eq!(state, Some(serde_json::json!("disconnected")), "{listed}");
    w.append(&globex.inbox, &rec("@three", "while removed"));
    let requests = w.emu.stats().requests.values().sum::<u64>();
    // The user connects again: delivery resumes where it stopped, nothing lost or doubled.
    let again = connect_globex(&w);
    assert!(again.reconnected);
    wait_until("the rows after the reconnect", || {
        rows_in(&w, &info.other_database_id).len() == 3
    });
    assert!(w.emu.stats().requests.values().sum::<u64>() > requests);
    assert_eq!(w.stop(), Some(0));
    assert_eq!(
        rows_in(&w, &info.other_database_id),
        ["@one", "@three", "@two"]
    );
    assert!(w.dead_letters(&globex.name).is_empty());
    // The operator's tooling heard of it once, with the reason.
    let events = std::fs::read_to_string(w.path("state/events.jsonl")).unwrap();
    let attention: Vec<&str> = events
        .lines()
        .filter(|l| l.contains("\"needs_attention\""))
        .collect();
    assert_eq!(attention.len(), 1, "{events}");
    assert!(
        attention[0].contains(&globex.name) && attention[0].contains("is disconnected"),
        "{events}"
    );
}

#[test]
fn disconnect_revokes_stops_keeps_the_inbox_and_a_reconnect_resumes() {
    let mut w = world();
    let info = w.emu.info().clone();
    w.start();
    let globex = connect_globex(&w);
    w.append(&globex.inbox, &rec("@before", "connected"));
    wait_until("the first row", || {
        rows_in(&w, &info.other_database_id).len() == 1
    });
    let listed = |w: &World| -> serde_json::Value {
        let (code, out, err) = w.cli(&["targets", "--json"]);
        assert_eq!(code, Some(0), "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let all = listed(&w);
    let find = |all: &serde_json::Value, name: &str| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} is not listed: {all}"))
    };
    let g = find(&all, &globex.name);
    assert_eq!(g["origin"], "connected");
    assert_eq!(g["workspace"], "Globex");
    assert_eq!(g["owner"], "Grace Hopper");
    assert_eq!(find(&all, "tweets")["origin"], "config");

    let token = notion_inbox::notion::TokenFile::read(
        &w.path(&format!("state/tokens/{}.toml", globex.name)),
    )
    .unwrap();
    let (code, _, err) = w.cli(&["disconnect", "--target", &globex.name]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("token is revoked"), "{err}");
    wait_until("the target is stopped", || {
        !w.status().contains_key(&globex.name)
    });
    let status = w.rt.block_on(async {
        use secrecy::ExposeSecret;
        reqwest::Client::new()
            .get(format!("{}/v1/users/me", info.url))
            .bearer_auth(token.access_token.expose_secret())
            .header("Notion-Version", "2025-09-03")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 401, "the token was revoked at Notion");
    assert_eq!(find(&listed(&w), &globex.name)["state"], "disconnected");
    w.append(&globex.inbox, &rec("@while", "disconnected"));
    let (code, _, err) = w.cli(&["disconnect", "--target", &globex.name]);
    assert_eq!(code, Some(1));
    assert!(err.contains("disconnected already"), "{err}");
    let (code, _, err) = w.cli(&["disconnect", "--target", "tweets"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("is a [[target]]"), "{err}");

    assert!(connect_globex(&w).reconnected);
    wait_until("the row appended while disconnected", || {
        rows_in(&w, &info.other_database_id).len() == 2
    });
    assert_eq!(w.stop(), Some(0));
    assert_eq!(rows_in(&w, &info.other_database_id), ["@before", "@while"]);
    let events: Vec<serde_json::Value> = std::fs::read_to_string(w.path("state/events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["connected", "disconnected", "reconnected"]);
    assert!(
        events
            .iter()
            .all(|e| e["target"] == globex.name.as_str() && e["workspace_name"] == "Globex")
    );
    assert_eq!(events[0]["inbox"], globex.inbox.display().to_string());
}

#[test]
fn the_connect_command_makes_a_workspace_a_target_the_daemon_starts() {
    let mut w = world();
    let info = w.emu.info().clone();
    w.start();
    // Run from the config's directory with a relative --config, as an operator would: the
    // record must still name the inbox by an absolute path.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_notion-inbox"))
        .current_dir(w.path("."))
        .args(["--config", "config.toml", "connect", "--no-browser"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = url::Url::parse(line.trim()).expect("the first stdout line is the URL");
    let consent = Consent {
        allow: true,
        workspace: Some(info.other_workspace_id.clone()),
        databases: Some(vec![info.other_database_id.clone()]),
        template: false,
    };
    w.rt.block_on(consent_as(&url, consent)).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("Connected workspace Globex as target ws-")
            && stderr.contains("Rows go to \"Tweets\""),
        "{stderr}"
    );
    for secret in w.emu.secrets() {
        assert!(!stderr.contains(&secret), "a secret was printed: {stderr}");
    }
    let record = records(&w.path("state")).pop().expect("a record");
    assert!(
        std::path::Path::new(&record.inbox).is_absolute(),
        "{}",
        record.inbox
    );
    w.append(
        std::path::Path::new(&record.inbox),
        &rec("@cli", "connected"),
    );
    wait_until("the row", || {
        rows_in(&w, &info.other_database_id) == ["@cli"]
    });
    assert_eq!(w.stop(), Some(0));
    // Without [connect], the command says what to add.
    let bare = World::new(fast());
    bare.write_config(&[bare.target("t")], "");
    let (code, _, err) = bare.cli(&["connect", "--no-browser"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no [connect] table"), "{err}");
}
