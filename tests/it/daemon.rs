//! `notion-inbox run` end to end: the real binary against the emulator. Every test asserts on the
//! rows the emulator stored (and the dead-letter files), not on logs.

use crate::support::*;
use notion_emulator::{EmulatorOptions, Faults};

const FAST: &str = "";

fn fast_world(targets: &[&str], dedupe: bool) -> World {
    let w = World::new(fast());
    let specs: Vec<TargetSpec> = targets
        .iter()
        .map(|n| TargetSpec {
            dedupe,
            ..w.target(n)
        })
        .collect();
    w.write_config_fast(&specs);
    w
}

trait FastConfig {
    fn write_config_fast(&self, targets: &[TargetSpec]);
}

impl FastConfig for World {
    fn write_config_fast(&self, targets: &[TargetSpec]) {
        self.write_config_with(targets, "requests_per_second = 50\nburst = 50\n", FAST);
    }
}

fn handles(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("@{prefix}{i}")).collect()
}

fn append_all(w: &World, inbox: &std::path::Path, hs: &[String]) {
    for h in hs {
        w.append(inbox, &rec(h, &format!("tweet of {h}")));
    }
}

#[test]
fn appended_records_become_rows_with_their_fields() {
    let mut w = fast_world(&["tweets"], false);
    let inbox = w.inbox("tweets");
    w.append(&inbox, &rec("@SomeHandle", "Here is a tweet"));
    w.start();
    wait_until("the first row", || w.pages().len() == 1);
    let page = &w.pages()[0];
    assert_eq!(page_title(page), "@SomeHandle");
    assert_eq!(prop_text(page, "tweet"), "Here is a tweet");
    // A record appended while the daemon runs arrives too.
    w.append(&inbox, &rec("@Later", "appended while running"));
    wait_until("the second row", || w.pages().len() == 2);
    assert_eq!(w.stop(), Some(0));
    assert_rows_once(&w, &["@SomeHandle".into(), "@Later".into()]);
}

#[test]
fn backlog_drains_at_the_configured_rate_without_a_429() {
    // The emulator enforces Notion's default 3 requests/s with a burst of 3, as does the config.
    let mut w = World::new(EmulatorOptions::default());
    let spec = w.target("tweets");
    w.write_config(&[spec], "");
    let hs = handles("b", 15);
    append_all(&w, &w.inbox("tweets"), &hs);
    w.start();
    wait_until("15 rows", || w.pages().len() >= 15);
    let stats = w.emu.stats();
    assert_eq!(
        stats.rate_limited_total(),
        0,
        "the daemon provoked 429s: {stats:?}"
    );
    assert_eq!(w.stop(), Some(0));
    assert_rows_once(&w, &hs);
}

#[test]
fn partial_lines_wait_for_their_newline() {
    let mut w = fast_world(&["tweets"], false);
    let inbox = w.inbox("tweets");
    w.start();
    append_bytes(&inbox, b"{\"handle\":\"@part\",");
    w.append(&inbox, &rec("@never-before-part", "x").replace('\n', "")); // still no newline at all
    std::thread::sleep(std::time::Duration::from_millis(300)); // give it a chance to misbehave
    assert!(w.pages().is_empty(), "a line without its newline was sent");
    // Complete the broken first line: it becomes one (bad) line; then a good one.
    append_bytes(&inbox, b"\n");
    w.append(&inbox, &rec("@whole", "complete"));
    wait_until("the whole record", || w.pages().len() == 1);
    wait_until("the broken line dead-lettered", || {
        w.dead_letters("tweets").len() == 1
    });
    assert_eq!(w.stop(), Some(0));
    assert_rows_once(&w, &["@whole".into()]);
}

#[test]
fn malformed_lines_are_dead_lettered_with_the_reason_and_the_daemon_goes_on() {
    let mut w = fast_world(&["tweets"], false);
    let inbox = w.inbox("tweets");
    let bad: Vec<(&[u8], &str)> = vec![
        (b"{\"handle\":", "not valid JSON"),
        (b"[\"an\",\"array\"]", "not an object"),
        (b"{\"handle\":\"\xff\xfe\"}", "not valid UTF-8"),
        (
            b"{\"handle\":\"@x\",\"id\":{\"a\":1}}",
            "\"id\" field is an object",
        ),
        (b"{\"handle\":\"@x\",\"id\":\"\"}", "\"id\" field is empty"),
        // The record rules push applies too (one definition, in notion_inbox::record).
        (
            b"{\"handle\":\"@c\",\"twet\":\"typo\"}",
            "did you mean \"tweet\"?",
        ),
        (b"{\"tweet\":\"no title\"}", "fills the row's title"),
    ];
    for (line, _) in &bad {
        append_bytes(&inbox, line);
        append_bytes(&inbox, b"\n");
    }
    append_bytes(&inbox, b"\n\n   \n"); // blank lines are skipped, not dead-lettered
    w.append(&inbox, &rec("@good", "after the bad ones"));
    w.start();
    wait_until("the good row", || w.pages().len() == 1);
    wait_until("every bad line dead-lettered", || {
        w.dead_letters("tweets").len() == bad.len()
    });
    let dl = w.dead_letters("tweets");
    for ((line, reason), entry) in bad.iter().zip(&dl) {
        let r = entry["reason"].as_str().unwrap();
        assert!(r.contains(reason), "reason {r:?} lacks {reason:?}");
        let original = match entry.get("line_base64").and_then(|b| b.as_str()) {
            Some(b) => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(b).unwrap()
            }
            None => entry["line"].as_str().unwrap().as_bytes().to_vec(),
        };
        assert_eq!(&original, line, "the dead letter keeps the exact line");
        assert!(entry["offset"].is_u64() && entry["time"].is_string());
    }
    assert_eq!(w.stop(), Some(0));
    assert_rows_once(&w, &["@good".into()]);
}

#[test]
fn oversized_lines_are_dead_lettered_without_being_kept() {
    let mut w = World::new(fast());
    let t = w.target("tweets");
    w.write_config_with(
        &[t],
        "requests_per_second = 50\nburst = 50\n",
        "max_line_bytes = 4096\n",
    );
    let inbox = w.inbox("tweets");
    w.append(&inbox, &rec("@big", &"x".repeat(100_000)));
    w.append(&inbox, &rec("@small", "fits"));
    w.start();
    wait_until("the small row", || w.pages().len() == 1);
    wait_until("the big line dead-lettered", || {
        w.dead_letters("tweets").len() == 1
    });
    let dl = &w.dead_letters("tweets")[0];
    assert!(
        dl["reason"]
            .as_str()
            .unwrap()
            .contains("over max_line_bytes"),
        "{dl}"
    );
    assert_eq!(w.stop(), Some(0));
    assert_rows_once(&w, &["@small".into()]);
}

#[test]
fn notion_refusals_are_dead_lettered_with_notions_error() {
    let mut w = fast_world(&["tweets"], false);
    let inbox = w.inbox("tweets");
    // Over 100 rich-text items of 2000 characters: Notion would refuse it; the mapper refuses first.
    w.append(&inbox, &rec("@huge", &"y".repeat(300_000)));
    w.append(&inbox, &rec("@fine", "ok"));
    w.start();
    wait_until("the fine row", || w.pages().len() == 1);
    wait_until("the huge record dead-lettered", || {
        w.dead_letters("tweets").len() == 1
    });
    assert_eq!(w.stop(), Some(0));
    assert_rows_once(&w, &["@fine".into()]);
}

#[test]
fn rotation_truncation_and_replacement_lose_and_repeat_nothing() {
    let mut w = fast_world(&["tweets"], false);
    let inbox = w.inbox("tweets");
    let mut all = Vec::new();
    w.start();
    let step = |w: &World, name: &str, n: usize, all: &mut Vec<String>| {
        let hs = handles(name, n);
        append_all(w, &inbox, &hs);
        all.extend(hs);
        let want = all.len();
        wait_until(&format!("rows after {name}"), || w.pages().len() >= want);
    };
    step(&w, "first", 5, &mut all);
    // Rename rotation, with a writer still appending to the renamed file.
    std::fs::rename(&inbox, w.path("spool/tweets.jsonl.1")).unwrap();
    let late = handles("late-in-old", 2);
    append_all(&w, &w.path("spool/tweets.jsonl.1"), &late);
    all.extend(late);
    step(&w, "after-rename", 5, &mut all);
    // copytruncate.
    std::fs::copy(&inbox, w.path("spool/tweets.jsonl.2")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&inbox)
        .unwrap()
        .set_len(0)
        .unwrap();
    step(&w, "after-copytruncate", 5, &mut all);
    // Delete and re-create.
    std::fs::remove_file(&inbox).unwrap();
    step(&w, "after-delete", 5, &mut all);
    // Atomic replace: write a temporary file and rename it over the inbox.
    let tmp = w.path("spool/tweets.jsonl.tmp");
    let hs = handles("replaced", 3);
    std::fs::write(&tmp, hs.iter().map(|h| rec(h, "r")).collect::<String>()).unwrap();
    std::fs::rename(&tmp, &inbox).unwrap();
    all.extend(hs);
    let want = all.len();
    wait_until("rows after atomic replace", || w.pages().len() >= want);
    assert_eq!(w.stop(), Some(0));
    assert_rows_once(&w, &all);
}

#[test]
fn a_missing_inbox_is_waited_for() {
    let mut w = fast_world(&["tweets"], false);
    w.start();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let inbox = w.inbox("tweets");
    assert!(!inbox.exists());
    w.append(&inbox, &rec("@appeared", "the file did not exist at start"));
    wait_until("the row", || w.pages().len() == 1);
    assert_eq!(w.stop(), Some(0));
    assert_rows_once(&w, &["@appeared".into()]);
}

#[test]
fn restarts_after_sigterm_and_sigkill_lose_nothing() {
    let mut w = fast_world(&["tweets"], true);
    let inbox = w.inbox("tweets");
    let first = handles("before", 10);
    append_all(&w, &inbox, &first);
    w.start();
    wait_until("some rows", || !w.pages().is_empty());
    assert_eq!(w.stop(), Some(0), "SIGTERM exits 0\n{}", w.logs());
    let second = handles("between", 10);
    append_all(&w, &inbox, &second);
    w.start();
    wait_until("some more rows", || w.pages().len() > 10);
    w.kill();
    let third = handles("after-kill", 10);
    append_all(&w, &inbox, &third);
    w.start();
    let all: Vec<String> = first.into_iter().chain(second).chain(third).collect();
    wait_until("every row", || w.pages().len() >= all.len());
    assert_eq!(w.stop(), Some(0));
    assert_rows_once(&w, &all);
}

/// Appends `hs`, runs the daemon until the emulator holds at least `rows` rows, and stops it.
fn run_until_rows(w: &mut World, inbox: &std::path::Path, hs: &[String], rows: usize) {
    append_all(w, inbox, hs);
    w.start();
    wait_until("the rows", || w.pages().len() >= rows);
    assert_eq!(w.stop(), Some(0), "SIGTERM exits 0\n{}", w.logs());
}

/// Queries the emulator received (the daemon's checks by key).
fn queries(w: &World) -> u64 {
    w.emu
        .stats()
        .requests
        .iter()
        .filter(|(endpoint, _)| endpoint.ends_with("/query"))
        .map(|(_, n)| n)
        .sum()
}

/// After a clean stop every record sent was answered, so the records appended later are new: a
/// restart must neither check them by key nor call them possible duplicates. (The checkpoint
/// written at shutdown used to keep the delivery window, and the next run then treated its first
/// `max_in_flight` new records as maybe-sent.)
#[test]
fn a_clean_restart_treats_new_records_as_new() {
    for dedupe in [true, false] {
        let mut w = fast_world(&["tweets"], dedupe);
        let inbox = w.inbox("tweets");
        let first = handles("before", 5);
        run_until_rows(&mut w, &inbox, &first, first.len());
        let checks_before = queries(&w);
        let second = handles("after", 30);
        let all: Vec<String> = first.iter().chain(&second).cloned().collect();
        run_until_rows(&mut w, &inbox, &second, all.len());
        assert_rows_once(&w, &all);
        let logs = w.logs();
        assert_eq!(
            queries(&w),
            checks_before,
            "dedupe={dedupe}: new records were checked by key after a clean restart\n{logs}"
        );
        assert!(
            !logs.contains("possible duplicate"),
            "dedupe={dedupe}: new records called possible duplicates after a clean restart\n{logs}"
        );
    }
}

/// A crash can leave records past the checkpoint that are rows already. A run that stops cleanly
/// before reaching them all must hand the rest on: the run after it still checks them by key.
/// (The state after the crash is made by hand: every record is a row, the checkpoint at the start
/// with a window covering all of them.)
#[test]
fn records_a_crash_may_have_sent_stay_checked_across_a_short_clean_run() {
    use notion_inbox::state::CheckpointStore;
    let mut w = fast_world(&["tweets"], true);
    let inbox = w.inbox("tweets");
    let all = handles("rec", 20);
    run_until_rows(&mut w, &inbox, &all, all.len());
    let store = CheckpointStore::open(&w.path("state")).unwrap();
    let mut cp = store.load("tweets").unwrap().expect("a checkpoint");
    let end = cp.offset;
    cp.offset = 0;
    cp.in_flight.clear();
    cp.window = all.len() as u32;
    store.save("tweets", &cp).unwrap();

    // A short run: one request a second, two records in flight at most (so they are answered
    // within the shutdown grace, and the run ends with nothing unfinished), stopped after its
    // first checks.
    let spec = TargetSpec {
        dedupe: true,
        ..w.target("tweets")
    };
    let slow = TargetSpec {
        extra: "max_in_flight = 2\n".into(),
        ..spec.clone()
    };
    w.write_config_with(&[slow], "requests_per_second = 1\nburst = 1\n", FAST);
    w.start();
    wait_until("two checks by key", || queries(&w) >= 2);
    assert_eq!(w.stop(), Some(0));
    let after_short = store.load("tweets").unwrap().unwrap();
    assert!(
        after_short.offset > 0 && after_short.offset < end,
        "the short run should have passed some records, not all: {after_short:?}"
    );
    assert!(
        after_short.in_flight.is_empty(),
        "the short run should have finished what it sent: {after_short:?}"
    );
    assert_eq!(w.pages().len(), all.len(), "{}", w.logs());

    // The next run checks the rest too, and creates nothing.
    w.write_config_fast(&[spec]);
    w.start();
    wait_until("the checkpoint at the end", || {
        store
            .load("tweets")
            .unwrap()
            .is_some_and(|c| c.offset == end)
    });
    assert_eq!(w.stop(), Some(0));
    assert_rows_once(&w, &all);
}

#[test]
fn transient_faults_and_rate_limits_are_retried_until_delivered() {
    let mut w = fast_world(&["tweets"], true);
    w.emu.set_faults(Faults {
        seed: Some(42),
        error_before_write: 0.2,
        timeout_after_write: 0.1,
        drop_after_write: 0.1,
        storm_429: 0.1,
        storm_529: 0.05,
        ..Faults::default()
    });
    let hs = handles("faulty", 30);
    append_all(&w, &w.inbox("tweets"), &hs);
    w.start();
    wait_until("every row", || {
        let mut seen: Vec<String> = w.handles();
        seen.sort();
        seen.dedup();
        seen.len() == hs.len()
    });
    assert_eq!(w.stop(), Some(0));
    // With dedupe_property, unknown outcomes are checked by key: exactly once.
    assert_rows_once(&w, &hs);
    let stats = w.emu.stats();
    assert!(
        stats.faults_injected_total() > 0,
        "the faults were not exercised: {stats:?}"
    );
}

#[test]
fn an_expired_token_is_refreshed_and_a_revoked_one_waits_for_authorization() {
    // A fixed (internal) token cannot be refreshed: the target waits, keeps its records, and says so.
    let mut w = fast_world(&["tweets"], false);
    let inbox = w.inbox("tweets");
    let token = w.emu.info().token.clone();
    w.emu.revoke_token(&token);
    w.append(&inbox, &rec("@waiting", "token revoked"));
    w.start();
    wait_until("the log says what to do", || {
        w.logs().contains("needs authorization")
    });
    assert!(w.pages().is_empty());
    assert_eq!(w.stop(), Some(0));
    assert!(!w.logs().contains(&token), "the token leaked into the log");
}

#[test]
fn an_unshared_database_pauses_the_target_until_shared_again() {
    let mut w = fast_world(&["tweets"], false);
    let inbox = w.inbox("tweets");
    w.append(&inbox, &rec("@one", "shared"));
    w.start();
    wait_until("the first row", || w.pages().len() == 1);
    let db = w.emu.info().database_id.clone();
    w.emu.unshare(&db);
    w.append(&inbox, &rec("@two", "while unshared"));
    wait_until("the pause is reported", || {
        w.logs().contains("share the database")
    });
    w.emu.share(&db);
    wait_until("the second row after re-sharing", || w.pages().len() == 2);
    assert_eq!(w.stop(), Some(0));
    assert_rows_once(&w, &["@one".into(), "@two".into()]);
}

/// A database moved to Notion's trash answers every create with 400 "Can't edit block that is
/// archived": the database's trouble, not the records'. The target pauses, nothing is
/// dead-lettered, and delivery resumes once the database is restored.
#[test]
fn a_trashed_database_pauses_the_target_until_restored() {
    let mut w = fast_world(&["tweets"], false);
    let inbox = w.inbox("tweets");
    w.append(&inbox, &rec("@one", "live"));
    w.start();
    wait_until("the first row", || w.pages().len() == 1);
    let db = w.emu.info().database_id.clone();
    w.emu.trash_database(&db);
    w.append(&inbox, &rec("@two", "while in the trash"));
    w.append(&inbox, &rec("@three", "while in the trash"));
    wait_until("the pause is reported", || {
        w.logs().contains("in Notion's trash")
    });
    w.emu.restore_database(&db);
    wait_until("the rows after the restore", || w.pages().len() == 3);
    assert_eq!(w.stop(), Some(0));
    assert_rows_once(&w, &["@one".into(), "@two".into(), "@three".into()]);
    let dead = w.dead_letters("tweets");
    assert!(dead.is_empty(), "nothing is dead-lettered: {dead:?}");
}

#[test]
fn one_broken_target_does_not_stall_another() {
    let mut w = World::new(fast());
    let good = w.target("good");
    let broken = TargetSpec {
        token: "ntn_not_a_real_token_000000000000000000000000".into(),
        ..w.target("broken")
    };
    w.write_config_fast(&[good, broken]);
    w.append(&w.inbox("broken"), &rec("@stuck", "bad token"));
    let hs = handles("good", 5);
    append_all(&w, &w.inbox("good"), &hs);
    w.start();
    wait_until("the good target's rows", || w.pages().len() == 5);
    assert_eq!(w.stop(), Some(0));
    assert_rows_once(&w, &hs);
    assert!(
        w.logs().contains("target broken needs authorization"),
        "{}",
        w.logs()
    );
}

#[test]
fn sighup_reloads_the_configuration_and_adds_a_target() {
    let mut w = World::new(fast());
    let a = w.target("a");
    w.write_config_fast(std::slice::from_ref(&a));
    w.start();
    w.append(&w.inbox("a"), &rec("@a1", "first target"));
    wait_until("a's row", || w.pages().len() == 1);
    // A broken config is refused and the old one stays.
    std::fs::write(w.path("config.toml"), "this is not toml [").unwrap();
    w.signal(1);
    wait_until("the refusal is logged", || {
        w.logs().contains("configuration not reloaded")
    });
    let b = w.target("b");
    w.write_config_fast(&[a, b]);
    w.signal(1);
    wait_until("the reload is logged", || {
        w.logs().contains("configuration reloaded")
    });
    w.append(&w.inbox("b"), &rec("@b1", "second target"));
    w.append(&w.inbox("a"), &rec("@a2", "first target again"));
    wait_until("both rows", || w.pages().len() == 3);
    assert_eq!(w.stop(), Some(0));
    assert_rows_once(&w, &["@a1".into(), "@b1".into(), "@a2".into()]);
}

/// A target that waits to connect (here: its database is not shared) already holds its inbox:
/// an inbox rotated meanwhile is read whole once it connects, and a restart in between finds the
/// rotated file by the checkpoint that names it. (The inbox was opened only after connecting, so
/// the records of a file rotated away before that were lost without a word.)
#[test]
fn an_inbox_rotated_while_the_target_waits_to_connect_is_read_whole() {
    let mut w = fast_world(&["tweets"], false);
    let db = w.emu.info().database_id.clone();
    w.emu.unshare(&db);
    let inbox = w.inbox("tweets");
    w.append(&inbox, &rec("@before1", "in the file rotated away"));
    w.append(&inbox, &rec("@before2", "in the file rotated away"));
    w.start();
    wait_until("the target waits for its database", || {
        w.status()
            .get("tweets")
            .is_some_and(|s| s["health"]["state"] == "paused")
    });
    // Rotation while it waits, and a restart.
    std::fs::rename(&inbox, w.path("spool/tweets.jsonl.1")).unwrap();
    w.append(&inbox, &rec("@after", "in the new file"));
    assert_eq!(w.stop(), Some(0));
    w.start();
    w.emu.share(&db);
    wait_until("every row", || w.pages().len() == 3);
    assert_eq!(w.stop(), Some(0));
    assert_rows_once(&w, &["@before1".into(), "@before2".into(), "@after".into()]);
}
