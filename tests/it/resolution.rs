//! Each target's resolution (data source and schema) is cached in its state, and a target with
//! nothing to deliver is not prepared at all: a restart sends no request for a target until it
//! has a record, and a row Notion refuses in a way a lost share or
//! a schema change explains drops that target's cache (only that target's), so its next start
//! resolves again and sees the change.

use std::path::PathBuf;

use crate::support::*;

fn resolutions(w: &World) -> u64 {
    let stats = w.emu.stats();
    ["GET /v1/databases/{id}", "GET /v1/data_sources/{id}"]
        .iter()
        .map(|k| stats.requests.get(*k).copied().unwrap_or(0))
        .sum()
}

fn cache_file(w: &World, target: &str) -> PathBuf {
    w.path(&format!("state/resolved/{target}.json"))
}

fn deliver(w: &World, target: &str, handle: &str) {
    let before = w.emu.page_count();
    w.append(&w.inbox(target), &rec(handle, "x"));
    wait_until(&format!("{handle} becomes a row"), || {
        w.emu.page_count() > before
    });
}

#[test]
fn a_restart_resolves_nothing_until_notion_refuses_a_row_then_only_that_target_again() {
    let mut w = World::new(fast());
    let db = w.emu.info().database_id.clone();
    let (a, b) = (w.target("a"), w.target("b"));
    w.write_config(&[a, b], "");
    w.start();
    deliver(&w, "a", "@first");
    deliver(&w, "b", "@first-b");
    wait_until("both targets cached their resolution", || {
        cache_file(&w, "a").exists() && cache_file(&w, "b").exists()
    });
    let first = resolutions(&w);
    assert_eq!(first, 4, "a database and a data source request per target");
    w.stop();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cache_file(&w, "a"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the cache is private");

    // Restart: a record for a arrives without a single resolution request.
    w.start();
    deliver(&w, "a", "@after-restart");
    w.stop();
    assert_eq!(resolutions(&w), first, "a restart resolved again");

    // The database is no longer shared: a's row is refused (404) and a's cache is dropped;
    // b, which sent nothing, keeps its cache.
    w.emu.unshare(&db);
    let b_cached = std::fs::read(cache_file(&w, "b")).unwrap();
    w.start();
    w.append(&w.inbox("a"), &rec("@while-unshared", "x"));
    wait_until("a's cache is dropped after the 404", || {
        !cache_file(&w, "a").exists()
    });
    assert_eq!(std::fs::read(cache_file(&w, "b")).unwrap(), b_cached);
    w.stop();

    // Shared again: the next start resolves a (only a) and the held record lands.
    w.emu.share(&db);
    let before = resolutions(&w);
    let rows = w.emu.page_count();
    w.start();
    wait_until("the held record lands", || w.emu.page_count() > rows);
    wait_until("a is cached again", || cache_file(&w, "a").exists());
    w.stop();
    assert_eq!(resolutions(&w) - before, 2, "only a resolved again");
}

#[test]
fn a_mapping_that_no_longer_fits_the_cached_schema_is_checked_against_notion() {
    let mut w = World::new(fast());
    let t = w.target("t");
    w.write_config(&[t], "");
    w.start();
    deliver(&w, "t", "@first");
    wait_until("t cached", || cache_file(&w, "t").exists());
    w.stop();
    let before = resolutions(&w);
    // A mapping to a property the cached schema does not have: at the next record the daemon asks
    // Notion rather than pausing on what it cached (Notion does not have it either, so the target
    // pauses, saying so).
    let missing = w
        .target("t")
        .mapping(&[("handle", "title"), ("tweet", "Missing")]);
    w.write_config(&[missing], "");
    w.start();
    w.append(&w.inbox("t"), &rec("@second", "x"));
    wait_until("the mapping's problem is reported", || {
        w.logs().contains("the mapping does not fit")
    });
    w.stop();
    assert!(resolutions(&w) > before, "the cached schema was trusted");
}

/// The inbox files the daemon holds open.
fn open_inboxes(w: &World) -> Vec<String> {
    let pid = w.daemon.as_ref().unwrap().id();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .filter(|l| l.contains("/spool/"))
        .collect()
}

#[test]
fn an_idle_target_holds_nothing_open_asks_nothing_and_wakes_on_an_append_or_a_rotation() {
    let mut w = World::new(fast());
    let (busy, quiet) = (w.target("busy"), w.target("quiet"));
    w.write_config(&[busy, quiet], "");
    w.append(&w.inbox("quiet"), "");
    w.start();
    deliver(&w, "busy", "@busy");
    wait_until("quiet is idle in status.json", || {
        w.status()
            .get("quiet")
            .is_some_and(|s| s["health"]["state"] == "idle")
    });
    assert_eq!(resolutions(&w), 2, "only busy was resolved");
    let open = open_inboxes(&w);
    assert!(
        !open.iter().any(|l| l.contains("quiet")),
        "the idle target holds its inbox open: {open:?}"
    );

    // An append wakes it: it connects and delivers.
    deliver(&w, "quiet", "@quiet-1");
    wait_until("quiet is ok", || {
        w.status()
            .get("quiet")
            .is_some_and(|s| s["health"]["state"] == "ok")
    });
    w.stop();

    // Idle again after a restart; then rotated by rename, a line written to the old file by a
    // producer that still held it, and a line in the new file: both arrive, from the checkpoint.
    w.start();
    wait_until("quiet is idle again", || {
        w.status()
            .get("quiet")
            .is_some_and(|s| s["health"]["state"] == "idle")
    });
    let rotated = w.path("spool/quiet.jsonl.1");
    let mut held = std::fs::OpenOptions::new()
        .append(true)
        .open(w.inbox("quiet"))
        .unwrap();
    std::fs::rename(w.inbox("quiet"), &rotated).unwrap();
    std::io::Write::write_all(&mut held, rec("@into-the-rotated", "x").as_bytes()).unwrap();
    drop(held);
    let rows = w.emu.page_count();
    w.append(&w.inbox("quiet"), &rec("@into-the-new", "x"));
    wait_until("both lines land", || w.emu.page_count() >= rows + 2);
    let titles: Vec<String> = w.pages().iter().map(page_title).collect();
    for h in ["@into-the-rotated", "@into-the-new"] {
        assert_eq!(
            titles.iter().filter(|t| *t == h).count(),
            1,
            "{h}: {titles:?}"
        );
    }
    w.stop();
}

#[test]
fn a_target_idle_for_close_idle_after_closes_its_inbox_and_resumes_from_its_checkpoint() {
    let mut w = World::new(fast());
    let t = w.target("t");
    w.write_config(&[t], "close_idle_after = \"1s\"\n");
    w.start();
    deliver(&w, "t", "@before");
    let closed = |w: &World| {
        open_inboxes(w).is_empty()
            && w.status()
                .get("t")
                .is_some_and(|s| s["health"]["state"] == "idle")
    };
    wait_until("t closes its inbox and is idle", || closed(&w));

    // An append wakes it from its checkpoint: the new line, once.
    deliver(&w, "t", "@after-close");
    wait_until("t closes again", || closed(&w));

    // Rotated while closed, with a line written to the old file afterwards by a producer that
    // held it, and one in the new file: both arrive, once each.
    let mut held = std::fs::OpenOptions::new()
        .append(true)
        .open(w.inbox("t"))
        .unwrap();
    std::fs::rename(w.inbox("t"), w.path("spool/t.jsonl.1")).unwrap();
    std::io::Write::write_all(&mut held, rec("@rotated-away", "x").as_bytes()).unwrap();
    drop(held);
    let rows = w.emu.page_count();
    w.append(&w.inbox("t"), &rec("@new-file", "x"));
    w.wait_for("both lines land", || w.emu.page_count() >= rows + 2);
    // It closes again, settled on the new file: its checkpoint names that file at its end, so the
    // next look finds nothing to do (closing before the rotated file was retired made a target
    // reopen and close for ever).
    wait_until("t closes after the rotation", || closed(&w));
    let store = notion_inbox::state::CheckpointStore::existing(&w.path("state")).unwrap();
    let cp = store.load("t").unwrap().unwrap();
    let meta = std::fs::metadata(w.inbox("t")).unwrap();
    let at = cp.position().unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((at.file.ino, at.offset), (meta.ino(), meta.len()));
    assert!(cp.next.is_empty(), "{:?}", cp.next);
    w.stop();
    let titles: Vec<String> = w.pages().iter().map(page_title).collect();
    for h in ["@before", "@after-close", "@rotated-away", "@new-file"] {
        assert_eq!(
            titles.iter().filter(|t| *t == h).count(),
            1,
            "{h}: {titles:?}"
        );
    }
    assert!(w.lost_reports("t").is_empty(), "nothing was lost");
}
