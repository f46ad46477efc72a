//! `requeue` against the real binary, without a daemon: listing, dry runs, filters, purge, and the
//! repair of a run that stopped half-way.

use std::path::PathBuf;

use crate::support::*;
use serde_json::json;

fn entry(line: &str, reason: &str) -> serde_json::Value {
    json!({"line": line, "offset": 0, "inbox": "x", "reason": reason, "time": "2026-12-01T00:00:00.000Z"})
}

/// A world with target `t` and a dead-letter file holding `entries`.
fn world_with(entries: &[serde_json::Value]) -> (World, PathBuf) {
    let w = World::default_world();
    let t = w.target("t");
    w.write_config(&[t], "");
    let dead = w.path("state/dead-letter/t.jsonl");
    std::fs::create_dir_all(dead.parent().unwrap()).unwrap();
    let text: String = entries.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(&dead, text).unwrap();
    // A checkpoint taken after the entries were written, naming no file: the daemon is done with
    // their lines.
    save_checkpoint(&w, None);
    (w, dead)
}

fn save_checkpoint(w: &World, position: Option<notion_inbox::inbox::Position>) {
    use notion_inbox::state::{Checkpoint, CheckpointStore};
    CheckpointStore::open(&w.path("state"))
        .unwrap()
        .save("t", &Checkpoint::new(position, vec![]))
        .unwrap();
}

fn run(w: &World, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["requeue", "--target", "t", "--allow-root"];
    all.extend_from_slice(args);
    w.cli(&all)
}

fn reasons(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn four() -> Vec<serde_json::Value> {
    let mut lost = entry("", "file gone");
    lost["lost"] = json!(true);
    vec![
        entry(
            "{\"handle\":\"@a\",\"tweet\":\"x\"}",
            "validation_error: Kind is not a property",
        ),
        entry(
            "{\"handle\":\"@b\",\"tweet\":\"y\"}",
            "conflict_error: gave up after 10 attempts",
        ),
        entry("", "line over max_line_bytes"),
        lost,
    ]
}

#[test]
fn list_dry_run_filters_and_purge_act_on_exactly_the_chosen_entries() {
    let (w, dead) = world_with(&four());
    let before = std::fs::read(&dead).unwrap();

    let (code, out, err) = run(&w, &["--list", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let flags: Vec<(u64, bool, bool)> = listed
        .iter()
        .map(|e| {
            (
                e["number"].as_u64().unwrap(),
                e["requeueable"].as_bool().unwrap(),
                e["lost"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        flags,
        [
            (1, true, false),
            (2, true, false),
            (3, false, false),
            (4, false, true)
        ]
    );

    let (code, _, err) = run(&w, &["--dry-run", "--reason", "conflict_error"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("would move 1 dead letter(s)"), "{err}");
    assert_eq!(
        std::fs::read(&dead).unwrap(),
        before,
        "a dry run changes nothing"
    );
    assert!(!w.inbox("t").exists(), "a dry run creates no inbox");
    assert!(!w.path("state/requeue").exists());

    let (code, _, err) = run(&w, &["--line", "9"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("there is no entry 9"), "{err}");
    assert_eq!(std::fs::read(&dead).unwrap(), before);

    let (code, _, err) = run(&w, &["--line", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("moved 1 dead letter(s)"), "{err}");
    assert_eq!(
        std::fs::read_to_string(w.inbox("t")).unwrap(),
        "{\"handle\":\"@a\",\"tweet\":\"x\"}\n"
    );
    assert_eq!(
        reasons(&dead),
        [
            "conflict_error: gave up after 10 attempts",
            "line over max_line_bytes",
            "file gone"
        ]
    );

    let (code, _, err) = run(&w, &["--purge", "--line", "2"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("purge 1 dead letter(s)"), "{err}");
    assert_eq!(
        reasons(&w.path("state/purged/t.jsonl")),
        ["line over max_line_bytes"]
    );
    assert_eq!(
        reasons(&dead),
        ["conflict_error: gave up after 10 attempts", "file gone"]
    );

    // Everything else: the conflicted record goes back; the loss report stays.
    let (code, _, err) = run(&w, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("moved 1 dead letter(s)") && err.contains("1 selected entry kept"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(w.inbox("t")).unwrap(),
        "{\"handle\":\"@a\",\"tweet\":\"x\"}\n{\"handle\":\"@b\",\"tweet\":\"y\"}\n"
    );
    assert_eq!(reasons(&dead), ["file gone"]);
    let left: Vec<_> = std::fs::read_dir(w.path("state/requeue"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".batch") || n.contains(".journal"))
        .collect();
    assert!(left.is_empty(), "no batch left: {left:?}");
}

#[test]
fn a_run_that_stopped_after_taking_its_batch_is_finished_once() {
    let all = four();
    let (w, dead) = world_with(&all);
    // The batch was written, the dead-letter file not yet rewritten.
    let dir = w.path("state/requeue");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("t.20261201T000000.000000Z.batch.jsonl"),
        format!("{}\n", all[0]),
    )
    .unwrap();
    let (code, _, err) = run(&w, &["--reason", "nothing matches this"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("moved 1 dead letter(s)"), "{err}");
    assert_eq!(
        std::fs::read_to_string(w.inbox("t")).unwrap(),
        "{\"handle\":\"@a\",\"tweet\":\"x\"}\n"
    );
    assert_eq!(
        reasons(&dead).len(),
        3,
        "the batch's entry left the dead-letter file"
    );
}

#[test]
fn a_run_that_stopped_after_appending_does_not_append_again() {
    let all = four();
    let (w, dead) = world_with(&all);
    std::fs::create_dir_all(w.path("spool")).unwrap();
    std::fs::write(
        w.inbox("t"),
        "{\"handle\":\"@old\"}\n{\"handle\":\"@a\",\"tweet\":\"x\"}\n",
    )
    .unwrap();
    let meta = std::fs::metadata(w.inbox("t")).unwrap();
    use std::os::unix::fs::MetadataExt;
    let dir = w.path("state/requeue");
    std::fs::create_dir_all(&dir).unwrap();
    let batch = dir.join("t.20261201T000000.000000Z.batch.jsonl");
    std::fs::write(&batch, format!("{}\n", all[0])).unwrap();
    std::fs::write(
        batch.with_extension("journal"),
        json!({"dev": meta.dev(), "ino": meta.ino(), "offset": 18}).to_string(),
    )
    .unwrap();
    let (code, _, err) = run(&w, &["--line", "2"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        std::fs::read_to_string(w.inbox("t")).unwrap(),
        "{\"handle\":\"@old\"}\n{\"handle\":\"@a\",\"tweet\":\"x\"}\n{\"handle\":\"@b\",\"tweet\":\"y\"}\n",
        "the journalled batch is not appended twice; the new selection is appended once"
    );
    assert_eq!(reasons(&dead), ["line over max_line_bytes", "file gone"]);
}

#[test]
fn requeue_as_root_needs_allow_root() {
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED requeue_as_root_needs_allow_root: not running as root");
        return;
    }
    let (w, dead) = world_with(&four());
    let before = std::fs::read(&dead).unwrap();
    let (code, _, err) = w.cli(&["requeue", "--target", "t"]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("refusing to requeue as root") && err.contains("--allow-root"),
        "{err}"
    );
    assert_eq!(std::fs::read(&dead).unwrap(), before);
}

#[test]
fn entries_the_daemon_has_not_committed_past_wait_for_a_later_run() {
    use notion_inbox::inbox::{FileIdentity, Position};
    let file = FileIdentity {
        dev: 1,
        ino: 0xabc,
        head_len: 10,
        head_hash: 0x1234,
    };
    let name = |offset: u64| format!("{}-{offset}-00000000000000ff", file.key_prefix());
    let mut before = entry(
        "{\"handle\":\"@a\",\"tweet\":\"x\"}",
        "validation_error: before",
    );
    before["offset"] = json!(50);
    before["position"] = json!(name(50));
    let mut after = entry(
        "{\"handle\":\"@b\",\"tweet\":\"y\"}",
        "validation_error: after",
    );
    after["offset"] = json!(150);
    after["position"] = json!(name(150));
    let (w, dead) = world_with(&[before, after]);
    save_checkpoint(&w, Some(Position { file, offset: 100 }));
    let (code, _, err) = run(&w, &["--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("would move 1 dead letter(s)")
            && err.contains("1 selected entry left for now"),
        "{err}"
    );
    let (code, _, err) = run(&w, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("moved 1 dead letter(s)") && err.contains("1 selected entry left for now"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(w.inbox("t")).unwrap(),
        "{\"handle\":\"@a\",\"tweet\":\"x\"}\n"
    );
    assert_eq!(reasons(&dead), ["validation_error: after"]);
}

#[test]
fn an_entry_newer_than_the_checkpoint_from_a_file_it_does_not_name_waits() {
    let mut new = entry(
        "{\"handle\":\"@n\",\"tweet\":\"x\"}",
        "validation_error: new",
    );
    new["position"] = json!("beef-0000000000000001-0-00000000000000ff");
    let (w, dead) = world_with(&[]);
    // Written after the checkpoint: its file may have appeared after the snapshot.
    new["time"] = json!(
        chrono::Utc::now()
            .checked_add_signed(chrono::Duration::seconds(5))
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    std::fs::write(&dead, format!("{new}\n")).unwrap();
    let (code, _, err) = run(&w, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("moved 0") && err.contains("1 selected entry left for now"),
        "{err}"
    );
    assert_eq!(reasons(&dead), ["validation_error: new"]);
}

#[test]
fn a_checkpoint_that_cannot_be_read_stops_requeue() {
    let (w, dead) = world_with(&four());
    let before = std::fs::read(&dead).unwrap();
    for slot in std::fs::read_dir(w.path("state/checkpoints")).unwrap() {
        std::fs::write(slot.unwrap().path(), "{ not a checkpoint").unwrap();
    }
    let (code, _, err) = run(&w, &[]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("cannot read the checkpoint of target t"),
        "{err}"
    );
    assert_eq!(std::fs::read(&dead).unwrap(), before);
    assert!(!w.inbox("t").exists());
}

#[test]
fn requeue_runs_at_the_same_time_append_each_line_once() {
    for round in 0..8 {
        let entries: Vec<serde_json::Value> = (0..50)
            .map(|i| {
                entry(
                    &format!("{{\"handle\":\"@r{round}-{i}\"}}"),
                    "validation_error",
                )
            })
            .collect();
        let (w, _) = world_with(&entries);
        let runs: Vec<_> = (0..2)
            .map(|_| {
                let config = w.path("config.toml");
                std::thread::spawn(move || {
                    std::process::Command::new(env!("CARGO_BIN_EXE_notion-inbox"))
                        .arg("--config")
                        .arg(config)
                        .args(["requeue", "--target", "t", "--allow-root"])
                        .output()
                        .unwrap()
                })
            })
            .collect();
        for r in runs {
            let out = r.join().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let inbox = std::fs::read_to_string(w.inbox("t")).unwrap();
        assert_eq!(inbox.lines().count(), 50, "round {round}: {inbox}");
    }
}

#[test]
fn a_torn_line_in_the_dead_letter_file_is_kept_byte_for_byte_and_the_rest_requeued() {
    let (w, dead) = world_with(&four());
    // A write cut short by a full disk, ending inside a UTF-8 sequence.
    let mut bytes = std::fs::read(&dead).unwrap();
    bytes.extend_from_slice(b"{\"line\":\"caf\xc3\n");
    std::fs::write(&dead, &bytes).unwrap();
    let (code, out, err) = run(&w, &["--list", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(&out)
            .unwrap()
            .len(),
        4
    );
    let (code, _, err) = run(&w, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("moved 2 dead letter(s)"), "{err}");
    let left = std::fs::read(&dead).unwrap();
    assert!(
        left.ends_with(b"{\"line\":\"caf\xc3\n"),
        "the fragment is kept as it was"
    );
}

#[test]
fn requeue_moves_what_the_daemon_accepts_now_and_says_why_each_other_entry_stays() {
    let long = format!(
        "{{\"handle\":\"@long\",\"tweet\":\"{}\"}}",
        "z".repeat(1500)
    );
    let (w, dead) = world_with(&[
        entry(
            "{\"handle\":\"@fixed\",\"tweet\":\"x\"}",
            "validation_error: Kind is not a property",
        ),
        entry("{not json", "the line is not valid JSON"),
        entry(
            "{\"handle\":\"@c\",\"twet\":\"typo\"}",
            "field \"twet\" is not mapped",
        ),
        entry(&long, "validation_error: body failed validation"),
    ]);
    // The operator lowered max_line_bytes since: the long line would now be cut, its bytes lost.
    w.write_config(&[w.target("t")], "max_line_bytes = 1024\n");

    let (code, out, err) = run(&w, &["--list", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let refused: Vec<Option<&str>> = listed.iter().map(|e| e["refused_now"].as_str()).collect();
    assert_eq!(refused[0], None, "{out}");
    assert!(refused[1].unwrap().contains("not valid JSON"), "{out}");
    assert!(
        refused[2].unwrap().contains("did you mean \"tweet\""),
        "{out}"
    );
    assert!(
        refused[3].unwrap().contains("over max_line_bytes (1024)"),
        "{out}"
    );

    let before = std::fs::read(&dead).unwrap();
    let (code, out, err) = run(&w, &["--dry-run", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let done: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (done["appended"].as_u64(), done["refused"].as_u64()),
        (Some(1), Some(3))
    );
    let outcomes: Vec<(u64, &str)> = done["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["number"].as_u64().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            (1, "requeued"),
            (2, "refused"),
            (3, "refused"),
            (4, "refused")
        ]
    );
    assert_eq!(
        std::fs::read(&dead).unwrap(),
        before,
        "a dry run changes nothing"
    );

    let (code, _, err) = run(&w, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("moved 1 dead letter(s)"), "{err}");
    assert!(
        err.contains("3 selected entries refused again by the configuration as it is now"),
        "{err}"
    );
    // Numbered as they are now that entry 1 left: what --line names next.
    assert!(
        err.contains("entry 1 (was 2): the line is not valid JSON"),
        "{err}"
    );
    assert!(
        err.contains("entry 3 (was 4): the line is 1529 bytes"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(w.inbox("t")).unwrap(),
        "{\"handle\":\"@fixed\",\"tweet\":\"x\"}\n"
    );
    assert_eq!(
        reasons(&dead),
        [
            "the line is not valid JSON",
            "field \"twet\" is not mapped",
            "validation_error: body failed validation"
        ],
        "the refused entries stay as they were"
    );

    // The cause fixed (the limit raised again), the long line goes back, whole.
    w.write_config(&[w.target("t")], "");
    let (code, _, err) = run(&w, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("moved 1 dead letter(s)"), "{err}");
    assert!(err.contains("2 selected entries refused again"), "{err}");
    let inbox = std::fs::read_to_string(w.inbox("t")).unwrap();
    assert_eq!(inbox.lines().nth(1), Some(long.as_str()));
    assert_eq!(reasons(&dead).len(), 2);
}

/// Two entries byte for byte the same (a dead-letter write retried after a failed cut-back, or a
/// file put back by hand), and a run that stopped after taking one of them: neither is lost, and
/// neither is appended twice, whether the run stopped before or after rewriting the file.
#[test]
fn identical_entries_with_an_interrupted_batch_are_each_appended_once() {
    use std::os::unix::fs::MetadataExt;
    let twin = entry("{\"handle\":\"@twin\",\"tweet\":\"x\"}", "conflict_error");
    for rewritten in [false, true] {
        let (w, dead) = if rewritten {
            // The run rewrote the file without the entry it took (a new file): one copy is left.
            world_with(std::slice::from_ref(&twin))
        } else {
            world_with(&[twin.clone(), twin.clone()])
        };
        let meta = std::fs::metadata(&dead).unwrap();
        // The file the batch was taken from: this one, or (rewritten) the one replaced since.
        let from = if rewritten {
            format!("{}-{}", meta.dev(), meta.ino() + 1_000_000)
        } else {
            format!("{}-{}", meta.dev(), meta.ino())
        };
        let dir = w.path("state/requeue");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("t.20261201T000000.000000Z.{from}.batch.jsonl")),
            format!("{twin}\n"),
        )
        .unwrap();

        let (code, out, err) = run(&w, &["--list", "--json"]);
        assert_eq!(code, Some(0), "{err}");
        let listed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        let in_batch: Vec<bool> = listed
            .iter()
            .map(|e| e["in_batch"].as_bool().unwrap_or(false))
            .collect();
        let want: &[bool] = if rewritten { &[false] } else { &[true, false] };
        assert_eq!(in_batch, want, "rewritten={rewritten}: {out}");

        let (code, out, err) = run(&w, &["--dry-run", "--json"]);
        assert_eq!(code, Some(0), "{err}");
        let dry: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(dry["appended"], 2, "rewritten={rewritten}: {dry}");

        let (code, _, err) = run(&w, &[]);
        assert_eq!(code, Some(0), "{err}");
        let inbox = std::fs::read_to_string(w.inbox("t")).unwrap();
        assert_eq!(
            inbox.lines().filter(|l| l.contains("@twin")).count(),
            2,
            "rewritten={rewritten}: each entry once: {inbox}"
        );
        assert!(reasons(&dead).is_empty(), "rewritten={rewritten}");
    }
}
