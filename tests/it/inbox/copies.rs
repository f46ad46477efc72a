//! The tailer when a file is truncated or rewritten under it (copytruncate): the rest is read
//! from the copy, once, or reported lost.

use std::fs;

use notion_inbox::inbox::{FileIdentity, Item, TailEvent, Tailer};

use super::{Fixture, append, drain, events, last_position, quick, texts, truncate};

/// Ten lines, two of them read: the reader is behind when the file is cut.
fn behind(fx: &Fixture) -> (Tailer, String) {
    let lines: String = (0..10).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    append(&fx.path, lines.as_bytes());
    let mut t = fx.tailer();
    let first = t.next_batch(2, 1 << 20).unwrap();
    assert_eq!(texts(&first).len(), 2);
    (t, lines)
}

fn cut_unread(items: &[Item]) -> Vec<TailEvent> {
    events(items)
        .into_iter()
        .filter(|e| matches!(e, TailEvent::CutUnread { .. }))
        .collect()
}

#[test]
fn a_truncation_under_a_reader_that_is_behind_reads_the_rest_from_the_copy_once() {
    let fx = Fixture::new();
    let (mut t, lines) = behind(&fx);
    // copytruncate: the unread lines now exist only in the copy.
    fs::copy(&fx.path, fx.at("inbox.jsonl.1")).unwrap();
    truncate(&fx.path);
    append(&fx.path, b"{\"after\":1}\n");
    let items = drain(&mut t);
    assert!(cut_unread(&items).is_empty(), "{items:?}");
    let want: Vec<String> = lines
        .lines()
        .skip(2)
        .map(String::from)
        .chain(["{\"after\":1}".to_string()])
        .collect();
    assert_eq!(texts(&items), want);
    // The copy's lines keep the truncated file's identity (and so their keys).
    let ids: Vec<FileIdentity> = items
        .iter()
        .filter_map(|item| match item {
            Item::Line { pos, .. } => Some(pos.file),
            _ => None,
        })
        .collect();
    assert_eq!(ids[0], ids[7]);
    assert_ne!(ids[7], ids[8], "the truncated file is a new file");
    // The copy is read once: nothing more comes of it.
    assert!(texts(&drain(&mut t)).is_empty());
}

#[test]
fn a_truncation_under_a_reader_that_is_behind_without_a_copy_reports_the_unread_bytes_as_lost() {
    let fx = Fixture::new();
    let (mut t, _) = behind(&fx);
    let read = (2 * "{\"n\":0}\n".len()) as u64;
    truncate(&fx.path);
    append(&fx.path, b"{\"after\":1}\n");
    let items = drain(&mut t);
    let cut = cut_unread(&items);
    assert!(
        matches!(cut[..], [TailEvent::CutUnread { from, to, .. }] if from == read && to > read),
        "{items:?}"
    );
    assert_eq!(texts(&items), vec!["{\"after\":1}".to_string()]);
}

#[test]
fn a_file_with_the_same_head_but_not_the_line_last_read_is_not_taken_for_the_copy() {
    let fx = Fixture::new();
    let (mut t, lines) = behind(&fx);
    // Another file of the directory starts alike (a CSV header would) and is long enough, but
    // holds something else where the reader's last line was.
    let other = lines.replace("{\"n\":1}", "{\"m\":1}");
    fs::write(fx.at("other.jsonl"), other).unwrap();
    truncate(&fx.path);
    append(&fx.path, b"{\"after\":1}\n");
    let items = drain(&mut t);
    assert_eq!(cut_unread(&items).len(), 1, "{items:?}");
    assert_eq!(texts(&items), vec!["{\"after\":1}".to_string()]);
}

#[test]
fn a_restart_after_a_copytruncate_resumes_in_the_copy_unless_two_files_could_be_it() {
    for copies in [1, 2] {
        let fx = Fixture::new();
        let (mut t, lines) = behind(&fx);
        let at = last_position(&t.next_batch(1, 1 << 20).unwrap());
        drop(t);
        for i in 0..copies {
            fs::copy(&fx.path, fx.at(&format!("inbox.jsonl.{i}"))).unwrap();
        }
        truncate(&fx.path);
        append(&fx.path, b"{\"after\":1}\n");
        let mut t = Tailer::new(fx.path.clone(), quick(), Some(at)).unwrap();
        let items = drain(&mut t);
        let overwritten = events(&items)
            .iter()
            .any(|e| matches!(e, TailEvent::Overwritten { .. }));
        if copies == 1 {
            let want: Vec<String> = lines.lines().skip(3).map(String::from).collect();
            assert_eq!(texts(&items)[..7], want[..], "{items:?}");
            assert!(!overwritten, "{items:?}");
        } else {
            assert!(overwritten, "two candidates: no copy is guessed: {items:?}");
            assert_eq!(texts(&items), vec!["{\"after\":1}".to_string()]);
        }
    }
}

#[test]
fn a_truncation_under_a_reader_that_had_read_everything_is_no_loss() {
    let fx = Fixture::new();
    append(&fx.path, b"{\"n\":1}\n");
    let mut t = fx.tailer();
    assert_eq!(texts(&drain(&mut t)).len(), 1);
    truncate(&fx.path);
    append(&fx.path, b"{\"n\":2}\n");
    let items = drain(&mut t);
    assert!(
        !events(&items)
            .iter()
            .any(|e| matches!(e, TailEvent::CutUnread { .. })),
        "{items:?}"
    );
    assert_eq!(texts(&items), vec!["{\"n\":2}".to_string()]);
}

#[test]
fn a_rescan_after_an_overflow_queues_the_files_born_since_and_only_those() {
    use notion_inbox::inbox::{Arrival, Inlet};
    let fx = Fixture::new();
    append(&fx.path, b"{\"a\":1}\n");
    fs::write(fx.at("inbox.jsonl.old"), b"{\"old\":1}\n").unwrap();
    let mut t = fx.tailer();
    let inlet = std::sync::Arc::new(Inlet::new());
    t.attach(inlet.clone());
    assert_eq!(texts(&drain(&mut t)).len(), 1);
    // Birth times are stamped with the kernel's coarse clock: `since` is a birth time, and the
    // files below are created once births have moved past it.
    let probe = fx.at("probe");
    fs::write(&probe, b"").unwrap();
    let since = fs::metadata(&probe).unwrap().created().unwrap();
    create_born_after(&fx.at("probe2"), b"", &probe);
    // Renamed away unseen (the events were dropped): the held file, then a file born since.
    fs::rename(&fx.path, fx.at("inbox.jsonl.1")).unwrap();
    append(&fx.path, b"{\"b\":1}\n");
    fs::rename(&fx.path, fx.at("inbox.jsonl.2")).unwrap();
    append(&fx.path, b"{\"c\":1}\n");
    fs::write(fx.at("inbox.jsonl.3.gz"), b"\x1f\x8b\x08\x00\x00\n").unwrap();
    fs::copy(fx.at("inbox.jsonl.1"), fx.at("inbox.jsonl.copy")).unwrap();
    fs::write(fx.at("unrelated.jsonl"), b"{\"u\":1}\n").unwrap();
    inlet.push(Arrival::Rescan {
        since,
        restart: false,
    });
    let items = drain(&mut t);
    assert_eq!(
        texts(&items),
        vec!["{\"b\":1}".to_string(), "{\"c\":1}".to_string()],
        "{items:?}"
    );
}

/// Creates `path` holding `bytes` once its birth time is after `after`'s (the kernel stamps
/// births with a coarse clock: files created in the same tick are born at the same time).
fn create_born_after(path: &std::path::Path, bytes: &[u8], after: &std::path::Path) {
    let born = |p: &std::path::Path| fs::metadata(p).unwrap().created().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        append(path, bytes);
        if born(path) > born(after) {
            return;
        }
        fs::remove_file(path).unwrap();
        assert!(
            std::time::Instant::now() < deadline,
            "births never moved on"
        );
        std::thread::yield_now();
    }
}

/// Found by the simulator (SIM_SEED=1760): a file the checkpoint named was copytruncated, then
/// deleted, and its inode was given to a newer file rotated away later. At the restart the copy was
/// read in the file's place, and the newer file with it, before files older than it: the records
/// after the checkpoint came in another order than the run before, and the check of the last
/// run's window missed a dead letter written already. What the inode holds now is read as the
/// truncated file's continuation only if it was born no later than the copy.
#[test]
fn a_copied_file_whose_inode_now_holds_a_newer_file_is_read_from_the_copy_alone() {
    for newer in [true, false] {
        let fx = Fixture::new();
        append(&fx.path, b"{\"x\":0}\n{\"x\":1}\n");
        let x = last_position(&drain(&mut fx.tailer())).file;
        let (copy, inode) = (fx.at("inbox.jsonl.1"), fx.at("inbox.jsonl.9"));
        if newer {
            // Deleted after the copy; a newer file reused the inode (here: named as if it had).
            fs::copy(&fx.path, &copy).unwrap();
            fs::remove_file(&fx.path).unwrap();
            create_born_after(&inode, b"{\"y\":0}\n", &copy);
        } else {
            // Truncated after the copy, written to and rotated: the same inode, another head.
            fs::copy(&fx.path, &copy).unwrap();
            truncate(&fx.path);
            append(&fx.path, b"{\"y\":0}\n");
            fs::rename(&fx.path, &inode).unwrap();
        }
        append(&fx.path, b"{\"z\":0}\n");
        let named = FileIdentity {
            ino: std::os::unix::fs::MetadataExt::ino(&fs::metadata(&inode).unwrap()),
            ..x
        };
        let want: &[&str] = if newer {
            &["{\"x\":0}", "{\"x\":1}", "{\"z\":0}"]
        } else {
            &["{\"x\":0}", "{\"x\":1}", "{\"y\":0}", "{\"z\":0}"]
        };
        // Named in the checkpoint's next files, and as its position.
        let mut t = Tailer::resume_chain(fx.path.clone(), quick(), None, &[named]).unwrap();
        assert_eq!(texts(&drain(&mut t)), want, "next, newer {newer}");
        let start = notion_inbox::inbox::Position {
            file: named,
            offset: 8,
        };
        let mut t = Tailer::new(fx.path.clone(), quick(), Some(start)).unwrap();
        assert_eq!(
            texts(&drain(&mut t))[..],
            want[1..],
            "position, newer {newer}"
        );
    }
}
