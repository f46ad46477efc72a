//! Tests of the inbox reader and watcher with real files in temporary directories.

mod copies;
mod props;
mod tailer;
mod watch;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notion_inbox::inbox::{Item, LinePos, Position, TailEvent, TailOptions, Tailer};

/// A temporary inbox directory with `inbox.jsonl` (not created).
pub struct Fixture {
    /// Removes the directory on drop.
    pub dir: tempfile::TempDir,
    /// `<dir>/inbox.jsonl`.
    pub path: PathBuf,
}

impl Default for Fixture {
    fn default() -> Fixture {
        Fixture::new()
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.jsonl");
        Fixture { dir, path }
    }

    pub fn at(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A tailer with no rotation grace (it moves to the new file as soon as the old one is drained).
    pub fn tailer(&self) -> Tailer {
        Tailer::new(self.path.clone(), quick(), None).unwrap()
    }
}

/// Options with no rotation grace.
pub fn quick() -> TailOptions {
    TailOptions {
        rotate_grace: Duration::ZERO,
        ..TailOptions::default()
    }
}

/// Appends bytes to a file (creating it), like a producer with O_APPEND.
pub fn append(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// Writes a file by temp file and rename, as an atomic replace does.
pub fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// Calls `next_batch` until it comes back empty.
pub fn drain(tailer: &mut Tailer) -> Vec<Item> {
    drain_with(tailer, 1000, 1 << 20)
}

/// Like [`drain`], with a batch budget.
pub fn drain_with(tailer: &mut Tailer, items: usize, bytes: usize) -> Vec<Item> {
    let mut all = Vec::new();
    loop {
        let batch = tailer.next_batch(items, bytes).unwrap();
        if batch.is_empty() && !tailer.more() {
            return all;
        }
        let records = batch
            .iter()
            .filter(|i| !matches!(i, Item::Event(_)))
            .count();
        assert!(records <= items.max(1), "a batch exceeded its item budget");
        all.extend(batch);
    }
}

/// The text of the lines, in order.
pub fn texts(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .filter_map(|item| match item {
            Item::Line { text, .. } => Some(String::from_utf8(text.clone()).unwrap()),
            _ => None,
        })
        .collect()
}

/// The events, in order.
pub fn events(items: &[Item]) -> Vec<TailEvent> {
    items
        .iter()
        .filter_map(|item| match item {
            Item::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// Cuts the file at `path` to 0 bytes in place (the second half of a copytruncate).
pub fn truncate(path: &std::path::Path) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

/// The position after the last record in `items`.
pub fn last_position(items: &[Item]) -> Position {
    let pos: &LinePos = items
        .iter()
        .rev()
        .find_map(|item| match item {
            Item::Line { pos, .. } | Item::Oversized { pos, .. } => Some(pos),
            Item::Event(_) => None,
        })
        .expect("a record");
    Position {
        file: pos.file,
        offset: pos.end,
    }
}
