//! Tenants attacked as a stranger would: colliding names, renames, floods, a failed connect, a
//! reconnect racing a slow disconnect, and a state directory from before identities.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::lifecycle::Caps;
use super::*;
use crate::config::connected::Template;
use crate::notion::TokenFile;
use crate::notion::oauth::TokenResponse;
use crate::state::layout::StateDir;

fn response(workspace: &str, bot: &str, name: &str, token: &str) -> TokenResponse {
    TokenResponse::parse(serde_json::json!({
        "access_token": token,
        "refresh_token": format!("r-{token}"),
        "token_type": "bearer",
        "bot_id": bot,
        "workspace_id": workspace,
        "workspace_name": name,
    }))
    .unwrap()
}

fn template() -> Template {
    Template {
        properties: BTreeMap::from([("handle".to_owned(), "title".to_owned())]),
        ..Template::default()
    }
}

fn connect_as(dir: &Path, r: &TokenResponse, caps: Caps) -> Result<Connected, ConnectError> {
    connect(&dir.join("state"), &dir.join("spool"), r, &template(), caps)
}

fn token_of(dir: &Path, name: &str) -> String {
    use secrecy::ExposeSecret;
    let file = TokenFile::read(&StateDir(&dir.join("state")).token_file(name)).unwrap();
    file.access_token.expose_secret().to_owned()
}

#[test]
fn a_workspace_is_known_by_its_identity_not_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let first = connect_as(d, &response("w1", "b1", "Acme", "t1"), Caps::default()).unwrap();
    assert!(!first.reconnected);
    assert!(
        first.name.starts_with("ws-") && first.name.len() == 23,
        "{}",
        first.name
    );
    // Renamed three times: the same tenant each time, its label follows.
    for (i, name) in ["Acme Inc", "東京", "Renamed"].iter().enumerate() {
        let again = connect_as(
            d,
            &response("w1", "b1", name, &format!("t{}", i + 2)),
            Caps::default(),
        )
        .unwrap();
        assert!(again.reconnected);
        assert_eq!(again.name, first.name);
        assert_eq!(again.inbox, first.inbox);
    }
    let all = records(&d.join("state"));
    assert_eq!(all.len(), 1, "a rename made a target");
    assert_eq!(all[0].connection.workspace_name.as_deref(), Some("Renamed"));
    // Another workspace with the victim's name, or the victim's workspace with another bot:
    // tenants of their own, and the victim's token is untouched.
    let other = connect_as(d, &response("w2", "b1", "Renamed", "evil"), Caps::default()).unwrap();
    let other_bot = connect_as(
        d,
        &response("w1", "b2", "Renamed", "evil2"),
        Caps::default(),
    )
    .unwrap();
    assert!(!other.reconnected && !other_bot.reconnected);
    assert_ne!(other.name, first.name);
    assert_ne!(other_bot.name, first.name);
    assert_eq!(token_of(d, &first.name), "t4");
    assert_eq!(records(&d.join("state")).len(), 3);
}

#[test]
fn an_index_entry_naming_another_identitys_record_is_not_believed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let victim = connect_as(d, &response("w1", "b1", "Victim", "t1"), Caps::default()).unwrap();
    // A planted (or stale) entry sends the attacker's identity to the victim's record.
    let index = StateDir(&d.join("state")).identities();
    std::fs::write(index.join("w9+b9"), &victim.name).unwrap();
    let attacker = connect_as(d, &response("w9", "b9", "Victim", "evil"), Caps::default()).unwrap();
    assert!(!attacker.reconnected);
    assert_ne!(attacker.name, victim.name);
    assert_eq!(token_of(d, &victim.name), "t1");
}

#[test]
fn records_from_before_identities_are_found_by_theirs_and_keep_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let state = d.join("state");
    // A record as the earlier releases wrote it: named from the workspace's name and a hash.
    let targets = targets_dir(&state);
    std::fs::create_dir_all(&targets).unwrap();
    let inbox = d.join("spool/acme-1a2b3c4d.jsonl");
    std::fs::write(
        targets.join("acme-1a2b3c4d.toml"),
        format!(
            "[target]\nname = \"acme-1a2b3c4d\"\ninbox = \"{}\"\n[target.properties]\nhandle = \"title\"\n\n[connection]\nworkspace_id = \"w1\"\nworkspace_name = \"Acme\"\nbot_id = \"b1\"\nconnected_at = \"2026-01-01T00:00:00Z\"\n",
            inbox.display()
        ),
    )
    .unwrap();
    let again = connect_as(d, &response("w1", "b1", "Acme 2", "t2"), Caps::default()).unwrap();
    assert!(again.reconnected);
    assert_eq!(again.name, "acme-1a2b3c4d");
    assert_eq!(again.inbox, inbox);
    let r = record(&state, "acme-1a2b3c4d").unwrap();
    assert_eq!(
        r.connection.connected_at.to_rfc3339(),
        "2026-01-01T00:00:00+00:00"
    );
    assert_eq!(token_of(d, "acme-1a2b3c4d"), "t2");
    // A legacy name is taken by a different identity: never reused.
    let other = connect_as(d, &response("w2", "b2", "Acme", "t3"), Caps::default()).unwrap();
    assert_ne!(other.name, "acme-1a2b3c4d");
}

#[test]
fn past_the_caps_nothing_is_created_but_a_reconnect_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let caps = Caps {
        max_targets: Some(2),
        refuse_new: false,
    };
    let a = connect_as(d, &response("w1", "b1", "A", "t1"), caps).unwrap();
    connect_as(d, &response("w2", "b2", "B", "t2"), caps).unwrap();
    let full = connect_as(d, &response("w3", "b3", "C", "t3"), caps).unwrap_err();
    assert!(matches!(full, ConnectError::Full { count: 2 }), "{full}");
    assert!(
        connect_as(d, &response("w1", "b1", "A", "t4"), caps)
            .unwrap()
            .reconnected
    );
    let refused = Caps {
        max_targets: None,
        refuse_new: true,
    };
    let e = connect_as(d, &response("w5", "b5", "E", "t5"), refused).unwrap_err();
    assert!(matches!(e, ConnectError::NewRefused), "{e}");
    assert!(
        connect_as(d, &response("w1", "b1", "A", "t6"), refused)
            .unwrap()
            .reconnected
    );
    assert_eq!(records(&d.join("state")).len(), 2);
    let tokens = std::fs::read_dir(StateDir(&d.join("state")).tokens())
        .unwrap()
        .count();
    assert_eq!(tokens, 2, "a refused connect left a token file");
    assert_eq!(token_of(d, &a.name), "t6");
}

#[test]
fn ids_that_could_name_other_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (w, b) in [
        ("../x", "b"),
        ("w", "b/c"),
        ("", "b"),
        ("w", &"b".repeat(65)),
        ("w\n", "b"),
    ] {
        let e = connect_as(dir.path(), &response(w, b, "X", "t"), Caps::default()).unwrap_err();
        assert!(matches!(e, ConnectError::Identity(_)), "{w:?} {b:?}: {e}");
    }
    assert!(records(&dir.path().join("state")).is_empty());
}

#[test]
fn a_connect_that_fails_leaves_no_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The inbox directory cannot be created: a file is where it should be.
    std::fs::write(d.join("spool"), b"").unwrap();
    assert!(connect_as(d, &response("w1", "b1", "A", "t1"), Caps::default()).is_err());
    let tokens = StateDir(&d.join("state")).tokens();
    let left = std::fs::read_dir(&tokens).map_or(0, |e| e.count());
    assert_eq!(left, 0, "a token file without a record");
    assert!(records(&d.join("state")).is_empty());
}

/// A reconnect that arrives while a disconnect's revoke is slow waits for it, then resumes the
/// tenant with its fresh token: the disconnect never marks the newer connection.
#[test]
fn a_reconnect_during_a_slow_disconnect_waits_and_wins() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let first = connect_as(&d, &response("w1", "b1", "A", "old"), Caps::default()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (revoking_tx, revoking_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let state = d.join("state");
    let name = first.name.clone();
    let disconnect = rt.spawn(async move {
        disconnect(&state, &name, |token_file| async move {
            let revoked = TokenFile::read(&token_file).unwrap();
            revoking_tx.send(()).unwrap();
            let _ = go_rx.await;
            use secrecy::ExposeSecret;
            Err(format!("revoked {}", revoked.access_token.expose_secret()))
        })
        .await
    });
    revoking_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let d2 = d.clone();
    let reconnect = std::thread::spawn(move || {
        connect_as(&d2, &response("w1", "b1", "A", "new"), Caps::default())
    });
    // The reconnect is held by the lock while the revoke is under way.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !reconnect.is_finished(),
        "the reconnect did not wait for the disconnect"
    );
    go_tx.send(()).unwrap();
    let done = rt.block_on(disconnect).unwrap().unwrap();
    assert_eq!(
        done.revoked,
        Err("revoked old".to_owned()),
        "the token revoked was not the old one"
    );
    let again = reconnect.join().unwrap().unwrap();
    assert!(again.reconnected);
    let r = record(&d.join("state"), &first.name).unwrap();
    assert!(
        r.connection.disconnected_at.is_none(),
        "the newer connection was marked disconnected"
    );
    assert_eq!(token_of(&d, &first.name), "new");
}

/// A workspace renamed under the earlier naming has two records: the one in use is resumed.
#[test]
fn of_two_records_from_before_for_one_workspace_the_one_in_use_is_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let targets = targets_dir(&d.join("state"));
    std::fs::create_dir_all(&targets).unwrap();
    let write = |name: &str, at: &str, extra: &str| {
        std::fs::write(
            targets.join(format!("{name}.toml")),
            format!(
                "[target]\nname = \"{name}\"\ninbox = \"{}\"\n[target.properties]\nhandle = \"title\"\n\n[connection]\nworkspace_id = \"w1\"\nbot_id = \"b1\"\nconnected_at = \"{at}\"\n{extra}",
                d.join(format!("spool/{name}.jsonl")).display()
            ),
        )
        .unwrap();
    };
    // "aaa" sorts first but was left behind by a rename and disconnected.
    write(
        "aaa-00000001",
        "2026-01-01T00:00:00Z",
        "disconnected_at = \"2026-02-01T00:00:00Z\"\n",
    );
    write("zzz-00000001", "2026-03-01T00:00:00Z", "");
    let again = connect_as(d, &response("w1", "b1", "Z", "t"), Caps::default()).unwrap();
    assert!(again.reconnected);
    assert_eq!(again.name, "zzz-00000001");
}
