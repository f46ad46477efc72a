//! Recovery end to end: the real binary against the emulator, through situations the daemon must
//! come out of by itself (Notion unreachable across rotations and a restart, an absurd
//! `Retry-After`, a token endpoint that fails once, a checkpoint that cannot be written for a
//! while, a server limit stricter than the configured one). Every wait is on an observable event
//! with a deadline; every outcome is asserted on the emulator's rows, the dead-letter files and
//! the status the daemon publishes.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;
use notion_emulator::{EmulatorOptions, Faults, RateLimit};
use notion_inbox::state::CheckpointStore;
use serde_json::Value;

/// `[notion]` keys that match [`fast`].
const FAST_NOTION: &str = "requests_per_second = 50\nburst = 50\n";

fn handles(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("@{prefix}{i}")).collect()
}

fn append_all(w: &World, inbox: &Path, hs: &[String]) {
    for h in hs {
        w.append(inbox, &rec(h, &format!("tweet of {h}")));
    }
}

/// How many distinct handles are rows.
fn distinct_rows(w: &World) -> usize {
    let mut hs = w.handles();
    hs.sort();
    hs.dedup();
    hs.len()
}

/// Like [`World::wait_for`], with a deadline of its own (for waits that include a backoff).
#[track_caller]
fn wait_long(w: &World, what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > deadline {
            panic!(
                "timed out after {deadline:?} waiting for: {what}\nlogs:\n{}",
                w.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `notion-inbox status --json`: one object per target.
fn status(w: &World) -> Vec<Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_notion-inbox"))
        .arg("--config")
        .arg(w.path("config.toml"))
        .args(["status", "--json"])
        .output()
        .expect("status runs");
    // 0 healthy, 1 a target needs attention, 3 not running: each still prints every target.
    assert!(
        matches!(out.status.code(), Some(0 | 1 | 3)),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status --json prints JSON")
}

/// What the daemon last published for `target` (through `status --json`), if anything.
fn published(w: &World, target: &str) -> Option<Value> {
    status(w)
        .into_iter()
        .find(|s| s["target"] == target)
        .and_then(|s| s.get("daemon").cloned())
        .filter(|d| !d.is_null())
}

/// The health state and message the daemon last published for `target`.
fn health(w: &World, target: &str) -> (String, String) {
    let d = published(w, target).unwrap_or_default();
    let h = &d["health"];
    (
        h["state"].as_str().unwrap_or_default().to_owned(),
        h["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A counter the daemon last published for `target` (0 before anything was published).
fn published_counter(w: &World, target: &str, counter: &str) -> u64 {
    published(w, target)
        .and_then(|d| d[counter].as_u64())
        .unwrap_or(0)
}

/// The inodes the checkpoint of `target` names (its file, then the files to read after it).
fn named_inodes(w: &World, target: &str) -> Vec<u64> {
    let Ok(store) = CheckpointStore::open(&w.path("state")) else {
        return Vec::new();
    };
    match store.load(target) {
        Ok(Some(cp)) => cp
            .file
            .iter()
            .chain(cp.next.iter())
            .map(|f| f.ino)
            .collect(),
        _ => Vec::new(),
    }
}

fn ino(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

fn fault_count(w: &World, kind: &str) -> u64 {
    w.emu.stats().faults.get(kind).copied().unwrap_or(0)
}

/// Whether the daemon process is still running.
fn alive(w: &mut World) -> bool {
    w.daemon
        .as_mut()
        .expect("started")
        .try_wait()
        .unwrap()
        .is_none()
}

/// Notion cannot take a row while the producer rotates the inbox twice (three files: two renamed
/// away, one at the path) and the daemon is restarted cleanly; once Notion answers again, every
/// record of all three files is a row exactly once. (A checkpoint that named only the file being
/// read and the one at the path lost the middle file at the restart.)
#[test]
fn two_rotations_and_a_clean_restart_while_notion_is_unreachable_lose_no_file() {
    let mut w = World::new(fast());
    let spec = TargetSpec {
        dedupe: true,
        ..w.target("t")
    };
    w.write_config_with(&[spec], FAST_NOTION, "");
    let inbox = w.inbox("t");
    // Every create fails before it is stored (500/502/503/504): nothing can be delivered.
    w.emu.set_faults(Faults {
        error_before_write: 1.0,
        ..Faults::default()
    });
    let first = handles("first", 3);
    append_all(&w, &inbox, &first);
    let ino1 = ino(&inbox);
    w.start();
    w.wait_for("a create refused by the unreachable Notion", || {
        w.emu.stats().faults_injected_total() >= 1
    });

    // First rotation: the file is renamed away, a new one is created at the path.
    std::fs::rename(&inbox, w.path("spool/t.jsonl.1")).unwrap();
    let second = handles("second", 3);
    append_all(&w, &inbox, &second);
    let ino2 = ino(&inbox);
    w.wait_for("the checkpoint names the second file", || {
        named_inodes(&w, "t").contains(&ino2)
    });

    // Second rotation.
    std::fs::rename(&inbox, w.path("spool/t.jsonl.2")).unwrap();
    let third = handles("third", 3);
    append_all(&w, &inbox, &third);
    let ino3 = ino(&inbox);
    w.wait_for("the checkpoint names the third file", || {
        named_inodes(&w, "t").contains(&ino3)
    });
    assert_eq!(
        named_inodes(&w, "t"),
        vec![ino1, ino2, ino3],
        "the checkpoint names the three files in order\n{}",
        w.logs()
    );
    assert!(w.pages().is_empty(), "Notion was unreachable");
    assert_eq!(w.stop(), Some(0), "SIGTERM exits 0\n{}", w.logs());

    // Restart, still unreachable; then Notion answers again.
    w.start();
    let failed_before = w.emu.stats().faults_injected_total();
    w.wait_for("the restarted daemon tries (and fails) again", || {
        w.emu.stats().faults_injected_total() > failed_before
    });
    w.emu.set_faults(Faults::default());
    let all: Vec<String> = first.iter().chain(&second).chain(&third).cloned().collect();
    wait_long(
        &w,
        "every record of the three files",
        Duration::from_secs(90),
        || distinct_rows(&w) == all.len(),
    );
    assert_eq!(w.stop(), Some(0), "SIGTERM exits 0\n{}", w.logs());
    assert_rows_once(&w, &all);
    assert_eq!(w.dead_letters("t"), Vec::<Value>::new());
    assert_eq!(w.lost_reports("t"), Vec::<Value>::new());
}

/// `Retry-After: 10000000000000000000` (over u64 seconds) on one token's requests: the daemon
/// caps the wait at 15 minutes and says so, keeps running, the target is not shown crashed, and
/// another target on another token delivers meanwhile. (The capped record is not waited for.)
#[test]
fn an_absurd_retry_after_is_capped_and_the_daemon_keeps_delivering() {
    let mut w = World::new(fast());
    let storm_token = w.emu.info().token.clone();
    let storm = w.target("storm");
    let calm = TargetSpec {
        token: w.emu.mint_token(),
        ..w.target("calm")
    };
    w.write_config_with(&[storm, calm], FAST_NOTION, "");
    let (storm_inbox, calm_inbox) = (w.inbox("storm"), w.inbox("calm"));
    w.append(&storm_inbox, &rec("@storm-before", "before the storm"));
    w.append(&calm_inbox, &rec("@calm-before", "before the storm"));
    w.start();
    w.wait_for("both targets deliver", || w.pages().len() == 2);

    w.emu.set_faults(Faults {
        storm_429: 1.0,
        storm_retry_after: Some("10000000000000000000".into()),
        storm_token: Some(storm_token),
        ..Faults::default()
    });
    w.append(
        &storm_inbox,
        &rec("@stormed", "answered 429 with an absurd wait"),
    );
    w.wait_for("the capping warning", || {
        w.logs()
            .contains("Notion asked to wait longer than 900s; waiting 900s")
    });
    let calm_after = handles("calm-after", 3);
    append_all(&w, &calm_inbox, &calm_after);
    w.wait_for("the calm target's records during the storm", || {
        w.pages().len() == 2 + calm_after.len()
    });
    w.wait_for("the storm target's 429 is published", || {
        published_counter(&w, "storm", "rate_limited") >= 1
    });
    assert!(alive(&mut w), "the daemon died\n{}", w.logs());
    // A 15-minute wait is worth telling: the storm target says why it is not sending.
    w.wait_for("the storm target's health names the wait", || {
        health(&w, "storm").1.contains("asked to wait 15m")
    });
    let (storm_state, storm_message) = health(&w, "storm");
    let (calm_state, _) = health(&w, "calm");
    eprintln!("storm target health: {storm_state} {storm_message:?}");
    assert_eq!(storm_state, "paused", "{storm_message}\n{}", w.logs());
    assert!(storm_message.contains("capped"), "{storm_message}");
    assert_eq!(calm_state, "ok");
    // The capped wait is honoured: the record was sent once, not again and again.
    assert_eq!(fault_count(&w, "storm_429"), 1, "{:?}", w.emu.stats());
    assert!(!w.logs().contains("panicked"), "{}", w.logs());

    assert_eq!(w.stop(), Some(0), "SIGTERM exits 0\n{}", w.logs());
    let mut want = vec!["@storm-before".to_string(), "@calm-before".to_string()];
    want.extend(calm_after);
    assert_rows_once(&w, &want);
    assert_eq!(w.dead_letters("storm"), Vec::<Value>::new());
    assert_eq!(w.dead_letters("calm"), Vec::<Value>::new());
}

/// An OAuth target whose access token expires while the token endpoint answers 503: the refresh
/// is tried again later by itself (nobody runs `authorize`), the records arrive, and the target
/// never needs authorization. Both places that refresh are covered: delivery (the token expires
/// while running) and connect (it expired while the daemon was stopped).
#[test]
fn a_token_endpoint_that_fails_once_does_not_need_authorization() {
    use notion_inbox::notion::TokenFile;
    use notion_inbox::notion::oauth::TokenResponse;
    use secrecy::ExposeSecret;
    let mut w = World::new(fast());
    let info = w.emu.info().clone();
    // Authorize through the emulator's consent form and token endpoint, as `authorize` does.
    let redirect = info.redirect_uris[0].clone();
    let response: Value = w.rt.block_on(async {
        let location = consent_location(&w.emu, &redirect, "s", true).await;
        let location = url::Url::parse(&location).unwrap();
        let code = location
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .into_owned();
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
    let token_path = w.path("state/tokens/t.toml");
    let original = TokenFile::from_response(&TokenResponse::parse(response).unwrap(), None);
    original.write(&token_path).unwrap();
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
    let notion = format!(
        "{FAST_NOTION}client_id = \"{}\"\nclient_secret_file = \"client_secret\"\n",
        info.client_id
    );
    w.write_config_with(&[t], &notion, "");
    let inbox = w.inbox("t");
    let expire_current = |w: &World| {
        let now = TokenFile::read(&token_path).unwrap();
        w.emu.expire_token(now.access_token.expose_secret());
    };
    let unavailable = Faults {
        token_unavailable: 1.0,
        ..Faults::default()
    };

    // While running.
    w.append(&inbox, &rec("@one", "first token"));
    w.start();
    w.wait_for("the first row", || w.pages().len() == 1);
    w.emu.set_faults(unavailable.clone());
    expire_current(&w);
    w.append(&inbox, &rec("@two", "refreshed after a 503"));
    w.wait_for("a refresh answered 503", || {
        fault_count(&w, "token_unavailable") >= 1
    });
    w.emu.set_faults(Faults::default());
    wait_long(
        &w,
        "the row sent with the refreshed token",
        Duration::from_secs(60),
        || w.pages().len() == 2,
    );
    assert_eq!(w.stop(), Some(0), "SIGTERM exits 0\n{}", w.logs());

    // At connect: the token expired while the daemon was stopped.
    let failed_before = fault_count(&w, "token_unavailable");
    w.emu.set_faults(unavailable);
    expire_current(&w);
    w.append(&inbox, &rec("@three", "refreshed at connect after a 503"));
    w.start();
    w.wait_for("a refresh at connect answered 503", || {
        fault_count(&w, "token_unavailable") > failed_before
    });
    w.emu.set_faults(Faults::default());
    wait_long(
        &w,
        "the row after the refresh at connect",
        Duration::from_secs(60),
        || w.pages().len() == 3,
    );
    w.wait_for("the daemon publishes ok", || health(&w, "t").0 == "ok");
    let (state, message) = health(&w, "t");
    assert_eq!(state, "ok", "{message}");
    assert_eq!(w.stop(), Some(0), "SIGTERM exits 0\n{}", w.logs());

    let logs = w.logs();
    assert!(
        !logs.contains("needs authorization"),
        "a transient refresh failure asked for authorization:\n{logs}"
    );
    assert!(
        logs.contains("could not be refreshed for now"),
        "the transient failure is reported:\n{logs}"
    );
    assert_ne!(
        health(&w, "t").0,
        "needs_authorization",
        "the final status asks for authorization"
    );
    assert_rows_once(&w, &["@one".into(), "@two".into(), "@three".into()]);
    assert_eq!(w.dead_letters("t"), Vec::<Value>::new());
    let now = TokenFile::read(&token_path).unwrap();
    assert_ne!(
        now.refresh_token.as_ref().unwrap().expose_secret(),
        original.refresh_token.as_ref().unwrap().expose_secret(),
        "the rotated pair is persisted"
    );
}

/// A checkpoint save fails for a while, then works again: delivery resumes by itself, without a
/// restart. The failure is simulated by putting directories at both slot paths
/// (`state/checkpoints/t.json`, `t~b.json`): opening a directory for writing fails for root too,
/// whom mode bits do not stop (the tests run as root on CI), so this stands in for a full or
/// read-only state disk; it is not ENOSPC itself.
#[test]
fn a_failing_checkpoint_save_pauses_delivery_and_it_resumes_by_itself() {
    const WINDOW: usize = 2;
    let mut w = World::new(fast());
    let spec = TargetSpec {
        dedupe: true,
        extra: format!("max_in_flight = {WINDOW}\n"),
        ..w.target("t")
    };
    w.write_config_with(&[spec], FAST_NOTION, "");
    let inbox = w.inbox("t");
    w.append(&inbox, &rec("@seed", "before the trouble"));
    w.start();
    w.wait_for("the first row", || w.pages().len() == 1);
    w.wait_for("a checkpoint on disk", || {
        named_inodes(&w, "t").contains(&ino(&inbox))
    });

    let slots = [
        w.path("state/checkpoints/t.json"),
        w.path("state/checkpoints/t~b.json"),
    ];
    for slot in &slots {
        // The daemon may create the slot between the removal and the mkdir: try again.
        w.wait_for("a directory in place of the slot", || {
            if slot.is_file() {
                let _ = std::fs::remove_file(slot);
            }
            let _ = std::fs::create_dir(slot);
            slot.is_dir()
        });
    }
    let later = handles("later", 6);
    append_all(&w, &inbox, &later);
    let failure = "cannot write the checkpoint of target t at";
    w.wait_for("two failed saves", || {
        w.logs().matches(failure).count() >= 3
    });
    w.wait_for("status reports the state disk trouble", || {
        health(&w, "t").1.contains("state disk")
    });
    let (state, message) = health(&w, "t");
    assert_eq!(state, "paused", "{message}");
    assert!(
        message.contains("state disk") && message.contains("retrying by itself"),
        "{message}"
    );
    // Nothing beyond the window of the last checkpoint on disk goes out while none can be written.
    let during = w.pages().len();
    assert!(
        during <= 1 + WINDOW,
        "{during} rows while no checkpoint could be written (window {WINDOW})\n{}",
        w.logs()
    );
    eprintln!("rows while the checkpoint could not be written: {during} (1 before)");

    for slot in &slots {
        std::fs::remove_dir(slot).unwrap();
    }
    let mut all = vec!["@seed".to_string()];
    all.extend(later);
    // The save's backoff may have grown (full jitter, up to 60 s).
    wait_long(
        &w,
        "every record after the state disk recovered",
        Duration::from_secs(90),
        || distinct_rows(&w) == all.len(),
    );
    assert!(
        w.logs()
            .contains("checkpoint written again; the state disk has recovered"),
        "{}",
        w.logs()
    );
    w.wait_for("status reports ok again", || health(&w, "t").0 == "ok");
    assert!(alive(&mut w), "the daemon died\n{}", w.logs());
    assert_eq!(w.stop(), Some(0), "SIGTERM exits 0\n{}", w.logs());
    assert_rows_once(&w, &all);
    assert_eq!(w.dead_letters("t"), Vec::<Value>::new());
    let cp = CheckpointStore::open(&w.path("state"))
        .unwrap()
        .load("t")
        .unwrap()
        .expect("a checkpoint");
    assert_eq!(
        (cp.file.map(|f| f.ino), cp.offset),
        (Some(ino(&inbox)), std::fs::metadata(&inbox).unwrap().len()),
        "the checkpoint is at the end of the inbox"
    );
}

/// The server allows 1 request/s with a burst of 1; the daemon is configured for 3/s with a burst
/// of 3. The connect phase (resolving the database) meets 429s and must still finish: every
/// record is delivered. (Connect used to livelock: each retry of the read came too early again.)
#[test]
fn a_stricter_server_limit_during_connect_still_delivers_everything() {
    let mut w = World::new(EmulatorOptions {
        rate: RateLimit {
            requests_per_second: 1.0,
            burst: 1,
        },
        workspace_rate: None,
        ..EmulatorOptions::default()
    });
    let spec = TargetSpec {
        dedupe: true,
        ..w.target("t")
    };
    w.write_config_with(&[spec], "requests_per_second = 3\nburst = 3\n", "");
    let hs = handles("strict", 6);
    append_all(&w, &w.inbox("t"), &hs);
    let start = Instant::now();
    w.start();
    wait_long(&w, "every record", Duration::from_secs(120), || {
        distinct_rows(&w) == hs.len()
    });
    let took = start.elapsed();
    let stats = w.emu.stats();
    eprintln!(
        "strict server limit: {} records in {took:?}, {} 429s from the emulator's rate limiter, requests {:?}",
        hs.len(),
        stats.rate_limited_total(),
        stats.requests
    );
    assert!(alive(&mut w), "the daemon died\n{}", w.logs());
    assert_eq!(w.stop(), Some(0), "SIGTERM exits 0\n{}", w.logs());
    assert_rows_once(&w, &hs);
    assert_eq!(w.dead_letters("t"), Vec::<Value>::new());
}
