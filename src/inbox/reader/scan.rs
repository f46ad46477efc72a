//! The scan of the inbox's directory for files the tailer was never told of: after a restart
//! (files rotated away while the daemon was down) and after the kernel's event queue overflowed
//! (renames whose events were dropped). Either way the tailer knows a time before which it held
//! every file of the inbox (the last checkpoint's writing, the last events read before the
//! overflow); a file born since, rotated away from the inbox path and not held, may hold lines
//! no run has read.
//!
//! A file is taken only if it is a regular file in the inbox's directory, not the inbox path, not
//! held, born (its `statx` birth time) after that time, named after the inbox (its name starts with
//! the inbox's name up to its first dot: `t.jsonl.1`, `t.jsonl-20261207`, `t-2026-12-07.jsonl`),
//! with a settled head of text (no NUL, UTF-8: a compressed file is not read), and not a copy of a
//! held file (another head). Files are queued in the order of their birth, behind the files held
//! and before the file at the path. A filesystem that does not record birth times gets no scan: a
//! file's change time moves with every rename, and reading a file already delivered again would
//! duplicate every line of it.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::SystemTime;

use super::{Retiring, Source, Tailer};
use crate::inbox::identity::{self, HEAD_MAX, read_full_at};
use crate::inbox::open_inbox;

impl Tailer {
    /// Queues the files born since `since` that the module docs describe. Returns how many.
    pub(super) fn scan_since(&mut self, since: SystemTime) -> usize {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut found: Vec<(SystemTime, PathBuf, Source)> = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path == self.path
                || !entry.file_type().is_ok_and(|t| t.is_file())
                || !self.named_after_inbox(&entry.file_name())
            {
                continue;
            }
            if let Some((born, src)) = self.unread_file(&path, since) {
                found.push((born, path, src));
            }
        }
        found.sort_by_key(|(born, ..)| *born);
        let n = found.len();
        // Before the file at the path (if it is queued already), behind every other.
        let at = self
            .queue
            .iter()
            .position(|s| s.retiring.is_none())
            .unwrap_or(self.queue.len());
        for (i, (_, path, src)) in found.into_iter().enumerate() {
            tracing::info!(
                "{}: found {}, born since the files were last known and not read",
                self.path.display(),
                crate::text::untrusted(&path.to_string_lossy(), 300)
            );
            self.queue.insert(at + i, src);
        }
        n
    }

    /// Whether `name` starts with the inbox's name up to its first dot.
    fn named_after_inbox(&self, name: &std::ffi::OsStr) -> bool {
        let Some(inbox) = self.path.file_name() else {
            return false;
        };
        let inbox = inbox.as_encoded_bytes();
        let stem = inbox.split(|&b| b == b'.').next().unwrap_or(inbox);
        !stem.is_empty() && name.as_encoded_bytes().starts_with(stem)
    }

    /// The file at `path`, opened and ready to queue with its birth time, if it is one to read.
    fn unread_file(
        &self,
        path: &std::path::Path,
        since: SystemTime,
    ) -> Option<(SystemTime, Source)> {
        let file = open_inbox(path).ok()?;
        let meta = file.metadata().ok()?;
        let born = meta.created().ok()?;
        if born <= since || self.holds(meta.dev(), meta.ino()) {
            return None;
        }
        let id = identity::of(&file).ok()??;
        if !text_head(&file, id.head_len) || self.order().iter().any(|h| same_head(h, &id)) {
            return None;
        }
        let mut src = Source::open(file, 0, None).ok()?;
        src.retiring = Some(Retiring::new(&src.file).ok()?);
        Some((born, src))
    }
}

/// Whether two identities have the same head (one file and its copy).
fn same_head(a: &crate::inbox::FileIdentity, b: &crate::inbox::FileIdentity) -> bool {
    (a.head_len, a.head_hash) == (b.head_len, b.head_hash)
}

/// Whether the file's first `len` bytes are text: no NUL, UTF-8 (a character cut at the end of
/// a 256-byte head is allowed).
pub(super) fn text_head(file: &File, len: u32) -> bool {
    let mut head = [0u8; HEAD_MAX as usize];
    let want = (len as usize).min(head.len());
    let Ok(n) = read_full_at(file, &mut head[..want], 0) else {
        return false;
    };
    let head = &head[..n];
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}
