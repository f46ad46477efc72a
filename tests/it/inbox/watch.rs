//! The directory watcher wakes the right target, and only it.

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use notion_inbox::inbox::{InboxError, InboxWatcher, Inlet};

use super::{Fixture, append, replace};

/// Waits for a wake-up, with a generous deadline.
async fn woken(wake: &Arc<Inlet>) {
    tokio::time::timeout(Duration::from_secs(20), wake.notified())
        .await
        .expect("no wake-up within 20 s");
}

/// Whether a wake-up is pending right now (consuming it).
fn pending(wake: &Arc<Inlet>) -> bool {
    wake.notified().now_or_never().is_some()
}

#[tokio::test]
async fn a_change_wakes_its_target_and_only_it() {
    let fx = Fixture::new();
    append(&fx.path, b"");
    let mut watcher = InboxWatcher::new().unwrap();
    let inbox = watcher.watch(&fx.path).unwrap();
    let sentinel = watcher.watch(&fx.at("sentinel.jsonl")).unwrap();

    // Unrelated files, and opening the inbox for reading (as the tailer does), wake nobody. The
    // sentinel's own wake-up comes after theirs (one watcher thread delivers events in order).
    append(&fx.at("unrelated.txt"), b"x\n");
    let _reader = fs::File::open(&fx.path).unwrap();
    append(&fx.at("sentinel.jsonl"), b"s\n");
    woken(&sentinel).await;
    assert!(
        !pending(&inbox),
        "an open or an unrelated file woke the inbox"
    );

    append(&fx.path, b"{\"a\":1}\n");
    woken(&inbox).await;
}

/// Sets up an inbox before the watch starts (so the setup causes no events), then checks that
/// `change` wakes it.
async fn wakes_on(change: impl FnOnce(&Fixture)) {
    let fx = Fixture::new();
    append(&fx.path, b"a\n");
    let mut watcher = InboxWatcher::new().unwrap();
    let inbox = watcher.watch(&fx.path).unwrap();
    change(&fx);
    woken(&inbox).await;
}

#[tokio::test]
async fn rotation_replace_deletion_and_creation_wake_the_target() {
    wakes_on(|fx| append(&fx.path, b"b\n")).await;
    wakes_on(|fx| fs::rename(&fx.path, fx.at("inbox.jsonl.1")).unwrap()).await;
    wakes_on(|fx| replace(&fx.path, b"b\n")).await;
    wakes_on(|fx| fs::remove_file(&fx.path).unwrap()).await;
    wakes_on(|fx| {
        let other = fx.at("elsewhere");
        fs::write(&other, b"c\n").unwrap();
        fs::rename(&other, &fx.path).unwrap();
    })
    .await;
}

#[tokio::test]
async fn creation_of_a_missing_inbox_wakes_the_target() {
    let fx = Fixture::new();
    let mut watcher = InboxWatcher::new().unwrap();
    let inbox = watcher.watch(&fx.path).unwrap();
    append(&fx.path, b"a\n");
    woken(&inbox).await;
}

#[tokio::test]
async fn several_directories_share_one_watcher() {
    let one = Fixture::new();
    let two = Fixture::new();
    let mut watcher = InboxWatcher::new().unwrap();
    let a = watcher.watch(&one.path).unwrap();
    let b = watcher.watch(&two.path).unwrap();
    append(&two.path, b"x\n");
    woken(&b).await;
    append(&one.path, b"x\n");
    woken(&a).await;
    watcher.unwatch(&one.path).unwrap();
    // Later events of the first append may have left a permit; after unwatch none can come.
    pending(&a);
    append(&one.path, b"y\n");
    append(&two.path, b"y\n");
    woken(&b).await;
    assert!(!pending(&a));
}

/// Watching and unwatching while events stream in never blocks: notify's `watch` waits for its
/// event thread, so holding the lock its handler needs across that call deadlocked (it hung a CI
/// run). The churn runs on its own thread so that a regression fails here instead of hanging.
#[test]
fn watching_and_unwatching_while_events_stream_in_never_blocks() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    let busy = Fixture::new();
    let churned = Fixture::new();
    let mut watcher = InboxWatcher::new().unwrap();
    let woken_busy = watcher.watch(&busy.path).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, path) = (Arc::clone(&stop), busy.path.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                append(&path, b"x\n");
            }
        })
    };
    let (done_tx, done_rx) = mpsc::channel();
    let churn = {
        let path = churned.path.clone();
        std::thread::spawn(move || {
            for _ in 0..500 {
                watcher.watch(&path).unwrap();
                watcher.unwatch(&path).unwrap();
            }
            done_tx.send(()).unwrap();
            watcher
        })
    };
    let finished = done_rx.recv_timeout(Duration::from_secs(60));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        finished.is_ok(),
        "500 watch/unwatch pairs did not finish within 60 s while events streamed in: deadlock"
    );
    let watcher = churn.join().unwrap();
    // The busy inbox is still watched and its events were delivered all along.
    assert!(pending(&woken_busy), "the streaming inbox was never woken");
    drop(watcher);
}

#[test]
fn a_missing_directory_is_a_clear_error() {
    let fx = Fixture::new();
    let mut watcher = InboxWatcher::new().unwrap();
    let err = watcher.watch(&fx.at("missing/inbox.jsonl")).unwrap_err();
    assert!(matches!(err, InboxError::DirectoryMissing { .. }), "{err}");
}

/// Found by the simulator (SIM_SEED=1847 without dedupe): a rotated file was deleted before the
/// watcher could open it, and the report waited for the next read, which never came (the window
/// was full, then the daemon stopped): a restart forgot it. A look reports it at once.
#[test]
fn a_file_lost_before_the_watcher_opened_it_is_reported_by_a_look() {
    use notion_inbox::inbox::Arrival;
    use notion_inbox_core::delivery::Input;
    let fx = Fixture::new();
    append(&fx.path, b"{\"a\":1}\n");
    let mut t = fx.tailer();
    let inlet = Arc::new(Inlet::new());
    t.attach(inlet.clone());
    inlet.push(Arrival::Lost {
        path: fx.at("inbox.jsonl.5"),
        why: "deleted",
    });
    let inputs = notion_inbox::record::prepare::observe::<()>(&mut t, "t").unwrap_or_default();
    let reported = inputs
        .iter()
        .any(|i| matches!(i, Input::Lost { reason, .. } if reason.contains("inbox.jsonl.5")));
    assert!(reported, "{inputs:?}");
}
