//! Tests of the dead-letter file: its entries, the writer's repairs and the tolerant reader.

use super::*;

#[test]
fn entries_round_trip_with_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dl/t.jsonl");
    let mut f = DeadLetterFile::new(path.clone());
    assert!(!path.exists(), "nothing is created before the first entry");
    let good = DeadLetter::new(b"{\"a\":", 10, Path::new("/in"), "invalid JSON".into());
    let bad_utf8 = DeadLetter::new(
        b"{\"a\":\"\xff\"}",
        20,
        Path::new("/in"),
        "invalid UTF-8".into(),
    );
    f.append(&good).unwrap();
    f.append(&bad_utf8).unwrap();
    let back = read_all(&path).unwrap();
    assert_eq!(back, vec![good, bad_utf8]);
    assert_eq!(back[0].original_bytes(), b"{\"a\":");
    assert_eq!(back[1].original_bytes(), b"{\"a\":\"\xff\"}");
    assert!(back[1].line_base64.is_some());
}

#[test]
fn missing_file_has_no_entries_and_garbage_is_named() {
    let dir = tempfile::tempdir().unwrap();
    assert!(read_all(&dir.path().join("none.jsonl")).unwrap().is_empty());
    let path = dir.path().join("x.jsonl");
    std::fs::write(&path, "garbage\n").unwrap();
    let err = read_all(&path).unwrap_err().to_string();
    assert!(err.contains("x.jsonl:1"), "{err}");
}

/// An entry for the line `{"n":<n>}`, named by its position (the same entry at every call).
fn entry(n: u64) -> DeadLetter {
    let line = format!("{{\"n\":{n}}}");
    let mut e = DeadLetter::new(line.as_bytes(), n * 10, Path::new("/in"), "invalid".into())
        .at(format!("pos-{n}"));
    e.time = "2026-01-01T00:00:00.000Z".into();
    e
}

/// The entry's line in the file, without its newline.
fn json(e: &DeadLetter) -> String {
    serde_json::to_string(e).unwrap()
}

/// Reads `bytes` as a dead-letter file and checks the entries and the unparsed lines it finds, each
/// with its line number.
fn check(bytes: &[u8], entries: &[(usize, &DeadLetter)], unparsed: &[(usize, &[u8])]) {
    let contents = read::parse_contents(bytes);
    let got: Vec<(usize, &DeadLetter)> = contents
        .entries
        .iter()
        .map(|e| (e.number, &e.entry))
        .collect();
    assert_eq!(
        got,
        entries,
        "entries of {:?}",
        String::from_utf8_lossy(bytes)
    );
    for e in &contents.entries {
        assert_eq!(e.text, json(&e.entry), "the exact line is kept");
    }
    let got: Vec<(usize, &[u8])> = contents
        .unparsed
        .iter()
        .map(|u| (u.number, u.bytes.as_slice()))
        .collect();
    assert_eq!(
        got,
        unparsed,
        "unparsed of {:?}",
        String::from_utf8_lossy(bytes)
    );
    // Nothing is lost: every byte of the non-blank lines (but a `\r` before the newline) is in one
    // of the two lists.
    let kept = contents.entries.iter().map(|e| e.text.len()).sum::<usize>()
        + contents
            .unparsed
            .iter()
            .map(|u| u.bytes.len())
            .sum::<usize>();
    let non_blank: usize = bytes
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::len)
        .sum();
    assert_eq!(kept, non_blank, "every byte is kept");
}

#[test]
fn every_entry_begins_as_the_reader_expects() {
    // The reader finds entries glued to a torn fragment by how they begin.
    for e in [
        entry(1),
        DeadLetter::new(b"", 0, Path::new("/in"), "lost".into()),
    ] {
        assert!(
            json(&e).as_bytes().starts_with(read::ENTRY_START),
            "{}",
            json(&e)
        );
    }
}

#[test]
fn the_tolerant_reader_keeps_every_line() {
    let (a, b, c) = (entry(1), entry(2), entry(3));
    let (ja, jb, jc) = (json(&a), json(&b), json(&c));
    let fragment = &ja[..ja.len() / 2];

    check(b"", &[], &[]);
    check(format!("{ja}\n{jb}\n").as_bytes(), &[(1, &a), (2, &b)], &[]);
    // Blank lines are skipped but counted.
    check(
        format!("\n{ja}\n  \n{jb}").as_bytes(),
        &[(2, &a), (4, &b)],
        &[],
    );
    // A fragment the repaired writer left on a line of its own.
    check(
        format!("{ja}\n{fragment}\n{jb}\n").as_bytes(),
        &[(1, &a), (3, &b)],
        &[(2, fragment.as_bytes())],
    );
    // A fragment at the end (the crash was the last thing to happen).
    check(
        format!("{ja}\n{fragment}").as_bytes(),
        &[(1, &a)],
        &[(2, fragment.as_bytes())],
    );
    // An entry an older writer glued to a fragment.
    check(
        format!("{ja}\n{fragment}{jb}\n{jc}\n").as_bytes(),
        &[(1, &a), (2, &b), (3, &c)],
        &[(2, fragment.as_bytes())],
    );
    // Two fragments glued, then an entry.
    let two = format!("{fragment}{}", &jb[..5]);
    check(
        format!("{two}{jc}\n").as_bytes(),
        &[(1, &c)],
        &[(1, two.as_bytes())],
    );
    // A whole entry whose newline was cut off, then an entry glued to it.
    check(format!("{ja}{jb}\n").as_bytes(), &[(1, &a), (1, &b)], &[]);
    // Something that is no entry at all, even if an entry's start is in it.
    let odd = format!("x{ja}y");
    check(odd.as_bytes(), &[], &[(1, odd.as_bytes())]);
    check(b"garbage\r\n", &[], &[(1, b"garbage")]);
}

#[test]
fn a_fragment_cut_inside_a_utf8_sequence_does_not_hide_the_other_entries() {
    let a = entry(1);
    let mut wide = DeadLetter::new("{\"é\":1}".as_bytes(), 5, Path::new("/in"), "x".into());
    wide.reason = "ééé".into();
    let jw = json(&wide);
    let cut = jw.find('é').unwrap() + 1;
    let mut bytes = jw.as_bytes()[..cut].to_vec();
    bytes.push(b'\n');
    bytes.extend_from_slice(json(&a).as_bytes());
    bytes.push(b'\n');
    check(&bytes, &[(2, &a)], &[(1, &jw.as_bytes()[..cut])]);
}

#[test]
fn read_all_names_the_first_line_that_is_not_an_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    let a = json(&entry(1));
    std::fs::write(&path, format!("{a}\n{}\n{a}\nbad\n", &a[..9])).unwrap();
    let err = read_all(&path).unwrap_err().to_string();
    assert!(err.contains("t.jsonl:2: not a dead-letter entry"), "{err}");
    let contents = read_contents(&path).unwrap();
    assert_eq!(contents.entries.len(), 2);
    let unparsed: Vec<_> = contents.unparsed.iter().map(|u| u.number).collect();
    assert_eq!(unparsed, [2, 4]);
    assert!(
        read_contents(&dir.path().join("none"))
            .unwrap()
            .entries
            .is_empty()
    );
}

#[test]
fn the_look_back_finds_an_entry_glued_to_a_fragment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    let (a, b) = (json(&entry(1)), json(&entry(2)));
    std::fs::write(&path, format!("{a}\n{}{b}\n", &a[..20])).unwrap();
    let found = read::recent_positions(&path, 10).unwrap();
    assert_eq!(found, ["pos-1", "pos-2"].map(str::to_owned).into());
}

/// A file at `path` holding `bytes`, open as the writer opens it.
fn file_with(path: &Path, bytes: &[u8]) -> File {
    std::fs::write(path, bytes).unwrap();
    open_locked(path).unwrap()
}

#[test]
fn a_failed_write_is_cut_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    let before = format!("{}\n", json(&entry(1)));
    let batch = format!("{}\n{}\n", json(&entry(2)), json(&entry(3)));
    // A full disk part-way, and an fsync that fails after the whole batch was written.
    for written in [batch.len() / 3, batch.len()] {
        let file = file_with(&path, before.as_bytes());
        let err = append_lines(&file, batch.as_bytes(), |mut f, b| {
            f.write_all(&b[..written])?;
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        })
        .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "the write's error");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    }
    let file = file_with(&path, before.as_bytes());
    let len = append_lines(&file, batch.as_bytes(), |mut f, b| f.write_all(b)).unwrap();
    assert_eq!(len, (before.len() + batch.len()) as u64);
    assert_eq!(read_all(&path).unwrap(), [entry(1), entry(2), entry(3)]);
}

#[test]
fn an_append_after_a_torn_line_ends_it_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    let a = json(&entry(1));
    let torn = format!("{a}\n{}", &a[..a.len() / 2]);
    std::fs::write(&path, &torn).unwrap();
    let mut f = DeadLetterFile::new(path.clone());
    assert!(f.append(&entry(2)).unwrap());
    let contents = read_contents(&path).unwrap();
    let entries: Vec<_> = contents
        .entries
        .iter()
        .map(|e| (e.number, &e.entry))
        .collect();
    assert_eq!(entries, [(1, &entry(1)), (3, &entry(2))]);
    let unparsed: Vec<_> = contents.unparsed.iter().map(|u| u.number).collect();
    assert_eq!(unparsed, [2], "the fragment is a line of its own");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, format!("{torn}\n{}\n", json(&entry(2))));
}

#[test]
fn an_entry_whose_write_failed_is_written_by_the_retry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    let mut f = DeadLetterFile::new(path.clone());
    f.append(&entry(1)).unwrap();
    let before = std::fs::read(&path).unwrap();
    // A loss report is always flagged as maybe written already, so its name is looked for.
    let batch = [(entry(2), true), (entry(3), false)];
    f.torn_write = Some(json(&entry(2)).len() + 10);
    f.append_batch(&batch).unwrap_err();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "nothing of the batch is left"
    );
    assert_eq!(f.append_batch(&batch).unwrap(), [true, true]);
    assert_eq!(read_all(&path).unwrap(), [entry(1), entry(2), entry(3)]);
    assert_eq!(
        f.append_batch(&batch[..1]).unwrap(),
        [false],
        "written once"
    );
}

#[test]
fn a_file_new_to_the_writer_has_its_directory_synced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dl/t.jsonl");
    let mut f = DeadLetterFile::new(path.clone());
    let mut n = 0;
    let mut append = |f: &mut DeadLetterFile| {
        n += 1;
        f.append(&entry(n)).unwrap();
        f.dir_syncs
    };
    assert_eq!(append(&mut f), 1, "the first write creates the file");
    assert_eq!(append(&mut f), 1, "the same file");
    // `requeue` took every entry: the file is gone, and the next write creates it again.
    std::fs::remove_file(&path).unwrap();
    assert_eq!(append(&mut f), 2, "recreated after a removal");
    assert_eq!(append(&mut f), 2);
    // `requeue` kept some entries: a new file renamed over the old one.
    let tmp = dir.path().join("dl/tmp");
    std::fs::write(&tmp, format!("{}\n", json(&entry(1)))).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert_eq!(append(&mut f), 3, "replaced by a rename");
    // The same inode number but shorter: how a file recreated with a reused number looks.
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    assert_eq!(append(&mut f), 4, "a reused inode number");
    assert_eq!(append(&mut f), 4);
    assert_eq!(read_all(&path).unwrap().len(), 2);
}

#[test]
fn a_failed_write_does_not_count_as_the_file_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    let mut f = DeadLetterFile::new(path.clone());
    f.torn_write = Some(5);
    f.append(&entry(1)).unwrap_err();
    assert_eq!(f.dir_syncs, 0);
    f.append(&entry(1)).unwrap();
    assert_eq!(f.dir_syncs, 1, "the retry syncs the new file's directory");
}
