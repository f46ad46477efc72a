//! The copy of a truncated file: when the file being read is truncated or rewritten before the
//! tailer has read all of it, the bytes it had not read may still exist in a copy (logrotate's
//! `copytruncate` copies the file, then truncates it). The tailer looks for that copy in the inbox's
//! directory and, if it finds it, reads the rest from it, once, under the truncated file's identity
//! (so the records keep the keys they would have had), then the truncated file from 0.
//!
//! A file is taken for the copy only if it is a regular file in the inbox's directory, not held,
//! not the inbox path, at least as long as what the reader had seen of the original (and longer
//! than the read position), starts with the original's head, and holds the last line the reader
//! handed out at the same offsets. Without a last line (nothing read since a restart), the byte
//! before the read position must be a `\n`, and the copy must be the only candidate: a directory
//! of files with a common first line (a CSV header) is ambiguous, and a wrong copy would deliver
//! another file's lines.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::{Retiring, Source, Tailer};
use crate::inbox::identity::{head_matches, read_full_at};
use crate::inbox::{FileIdentity, InboxError, Item, TailEvent, open_inbox};

/// What the copy of a file must hold.
pub(super) struct Wanted {
    /// The original's identity.
    pub id: FileIdentity,
    /// The read position in the original.
    pub pos: u64,
    /// The least length the copy has (the furthest end seen of the original, or more).
    pub min_len: u64,
    /// The last line handed out: `(start, end, FNV-1a of its bytes)`.
    pub last_line: Option<(u64, u64, u64)>,
}

impl Tailer {
    /// Finds the copy described by `want` in the inbox's directory: its path, the open file and
    /// its length. Errors reading the directory are `None`: the caller reports what it would have
    /// without a copy.
    pub(super) fn find_copy(&self, want: &Wanted) -> Option<(PathBuf, File, u64)> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir).ok()?.flatten() {
            let path = entry.path();
            if path == self.path || !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            match self.is_copy(&path, want) {
                Ok(Some((file, len))) => {
                    if want.last_line.is_some() {
                        // The last line read is there, at its place: any such copy holds the rest.
                        return Some((path, file, len));
                    }
                    found.push((path, file, len));
                    if found.len() > 1 {
                        return None;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::debug!("looking at {} for a copy: {e}", path.display()),
            }
        }
        found.pop()
    }

    /// The open file and its length, if `path` is a copy as `want` describes.
    fn is_copy(&self, path: &std::path::Path, want: &Wanted) -> io::Result<Option<(File, u64)>> {
        let Ok(file) = open_inbox(path) else {
            return Ok(None);
        };
        let meta = file.metadata()?;
        if !meta.is_file() || meta.len() < want.min_len || self.holds(meta.dev(), meta.ino()) {
            return Ok(None);
        }
        if !head_matches(&want.id, &file)? {
            return Ok(None);
        }
        let holds_last = match want.last_line {
            Some((start, end, hash)) => {
                let mut bytes = vec![0u8; (end - start) as usize];
                read_full_at(&file, &mut bytes, start)? == bytes.len()
                    && crate::hash::fnv1a64(&bytes) == hash
            }
            None if want.pos == 0 => true,
            None => {
                let mut byte = [0u8];
                read_full_at(&file, &mut byte, want.pos - 1)? == 1 && byte[0] == b'\n'
            }
        };
        Ok(holds_last.then_some((file, meta.len())))
    }

    /// Reads on from `copy` in place of the current file, which was truncated or rewritten (the
    /// `cut` event says which): the copy is read from the read position to its end, then the
    /// current file from 0.
    pub(super) fn read_on_from_copy(
        &mut self,
        out: &mut Vec<Item>,
        (path, file, len): (PathBuf, File, u64),
        cut: TailEvent,
    ) -> Result<(), InboxError> {
        let stat = |e| InboxError::Io {
            action: "stat",
            path: path.clone(),
            source: e,
        };
        let mut orig = self.src.take().expect("a file is being read");
        let id = orig
            .identity
            .expect("a copy is looked for only with a known identity");
        let mut copy = Source::open(file, orig.pos, Some(id)).map_err(stat)?;
        copy.skipping = orig.skipping;
        copy.reported = orig.reported;
        copy.last_line = orig.last_line;
        let mut retiring = Retiring::new(&copy.file).map_err(stat)?;
        retiring.no_writer = true;
        copy.retiring = Some(retiring);
        out.push(Item::Event(cut));
        out.push(Item::Event(TailEvent::ReadFromCopy {
            file: id,
            from: orig.pos,
            copy: path,
            len,
        }));
        // It keeps its place: at the path, or retiring.
        orig.restart();
        self.src = Some(copy);
        self.queue.push_front(orig);
        Ok(())
    }
}
