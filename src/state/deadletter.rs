//! The dead-letter file: where a record that cannot become a row goes, with the reason.
//!
//! One JSON object per line in `<state_dir>/dead-letter/<target>.jsonl`. Each batch of entries is
//! written with one `write` on an `O_APPEND` descriptor and flushed to disk (`fdatasync`) before the
//! daemon commits past its records, so a record is never lost between the inbox and this file.
//!
//! A write cut short never hides the entries after it: a write or fsync that fails is cut back to
//! the file's length before it, and a last line left without its newline (a crash) is ended before
//! the next batch, so a fragment is a line of its own, which [`read_contents`] keeps apart.
//!
//! `requeue` takes the file away by renaming it under an exclusive `flock`. So the writer opens the
//! file for each entry, takes the lock, and checks that the descriptor is still the file at the path
//! (a rename may have happened between its open and its lock); if not, it opens again.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};

pub use notion_inbox_core::delivery::NotionErrorInfo;

use crate::state::private::{create_private_dir, private_options};

mod read;

use read::recent_positions;
pub use read::{Contents, EntryLine, UnparsedLine, read_all, read_contents};

/// One dead-lettered record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadLetter {
    /// The original line, without its newline; invalid UTF-8 replaced (see `line_base64`).
    pub line: String,
    /// The exact original bytes, base64, when the line is not valid UTF-8 (so `requeue` restores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_base64: Option<String>,
    /// Byte offset of the line in its inbox file.
    pub offset: u64,
    /// The inbox file the line was read from.
    pub inbox: PathBuf,
    /// Where the line sat (inbox file identity and offset). A line is dead-lettered once: a restart
    /// that reads it again finds its entry and does not write another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// The record's key, when one could be derived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Why the record could not be delivered, and what to do about it.
    pub reason: String,
    /// Notion's answer, when Notion refused the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notion_error: Option<NotionErrorInfo>,
    /// When it was dead-lettered (RFC 3339, UTC).
    pub time: String,
    /// Not a record but the report of a loss: an inbox file the checkpoint named was gone (or
    /// overwritten) before what it held after `offset` was read. `line` is empty; `requeue` keeps
    /// the entry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
}

impl DeadLetter {
    /// Builds an entry for `bytes` (the line without its newline).
    pub fn new(bytes: &[u8], offset: u64, inbox: &Path, reason: String) -> DeadLetter {
        let (line, line_base64) = match std::str::from_utf8(bytes) {
            Ok(s) => (s.to_owned(), None),
            Err(_) => (
                String::from_utf8_lossy(bytes).into_owned(),
                Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            ),
        };
        DeadLetter {
            line,
            line_base64,
            offset,
            inbox: inbox.to_owned(),
            position: None,
            key: None,
            reason,
            notion_error: None,
            lost: false,
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }

    /// The same entry, naming the line's position.
    pub fn at(mut self, position: String) -> DeadLetter {
        self.position = Some(position);
        self
    }

    /// The exact original bytes of the line.
    pub fn original_bytes(&self) -> Vec<u8> {
        self.line_base64
            .as_deref()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .unwrap_or_else(|| self.line.as_bytes().to_vec())
    }
}

/// The name of a dead-letter entry: where the line sat (file identity and offset) and a hash of its
/// bytes, as record keys have. The hash keeps a new bad line at a reused offset (after a
/// copytruncate) from being taken for an old entry.
pub fn position_key(pos: &crate::inbox::LinePos, line: &[u8]) -> String {
    format!("{}-{:016x}", pos.key(), crate::hash::fnv1a64(line))
}

/// The entries for the core's dead-letter requests, with whether each may be in the file already.
pub fn entries_for(
    requests: Vec<notion_inbox_core::delivery::DeadLetterRequest<crate::inbox::FileIdentity>>,
    inbox: &Path,
) -> Vec<(DeadLetter, bool)> {
    requests
        .into_iter()
        .map(|r| {
            let mut entry = DeadLetter::new(&r.line, r.pos.offset, inbox, r.reason)
                .at(position_key(&r.pos, &r.line));
            entry.key = r.key;
            entry.notion_error = r.error;
            entry.lost = r.lost;
            (entry, r.maybe_written)
        })
        .collect()
}

/// How many entries at the end of the file are searched for an entry an earlier run may have
/// written: those can only be among the last run's last entries (its window), so this bounds the
/// memory and the reading whatever the file's history.
const RECENT_ENTRIES: usize = 4096;

/// Appends entries to one target's dead-letter file.
#[derive(Debug)]
pub struct DeadLetterFile {
    /// Where the entries go; created on the first entry.
    path: PathBuf,
    /// The names of the file's last entries, read once, when the first entry that an earlier run
    /// may have written comes (at most [`RECENT_ENTRIES`]); this writer's entries join them once
    /// they are on disk.
    recent: Option<HashSet<String>>,
    /// The file this writer last wrote to. A file at the path that is not that one (the first
    /// write, or `requeue` removed or replaced the file) is new to this writer: its name is made
    /// durable with an fsync of the directory before the write counts as done.
    last: Option<Written>,
    /// Makes the next write fail after this many bytes, as a full disk does.
    #[cfg(test)]
    torn_write: Option<usize>,
    /// How many times the directory was synced.
    #[cfg(test)]
    dir_syncs: usize,
}

/// The file a [`DeadLetterFile`] last wrote to.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Written {
    /// Its device.
    dev: u64,
    /// Its inode number.
    ino: u64,
    /// Its length after the write. A file with the same inode number but shorter is another one
    /// (`requeue` removed ours and the number was given to the new file): only this writer appends
    /// to the file, and `requeue` replaces it rather than cut it.
    len: u64,
}

impl DeadLetterFile {
    /// A writer for `path`; nothing is created until the first entry.
    pub fn new(path: PathBuf) -> DeadLetterFile {
        DeadLetterFile {
            path,
            recent: None,
            last: None,
            #[cfg(test)]
            torn_write: None,
            #[cfg(test)]
            dir_syncs: 0,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry durably, unless an entry of the same name is already among the file's last
    /// entries. Returns whether it wrote.
    #[cfg(test)]
    pub fn append(&mut self, entry: &DeadLetter) -> io::Result<bool> {
        Ok(self.append_batch(&[(entry.clone(), true)])?[0])
    }

    /// Appends entries with one write and one fsync. An entry flagged `true` may have been written
    /// by an earlier run (it was read again after a restart): it is skipped if its name is among
    /// the file's last entries. Returns, per entry, whether it was written. On an error nothing of
    /// the batch is left in the file (as far as the disk lets the file be cut back), so the retry
    /// writes it whole.
    pub fn append_batch(&mut self, entries: &[(DeadLetter, bool)]) -> io::Result<Vec<bool>> {
        if self.recent.is_none() && entries.iter().any(|(_, maybe)| *maybe) {
            self.recent = Some(recent_positions(&self.path, RECENT_ENTRIES)?);
        }
        let mut bytes = Vec::new();
        let mut wrote = Vec::with_capacity(entries.len());
        // The names this batch writes, kept apart until the write succeeds: a name in `recent`
        // whose entry a failed write cut back would have its retry skipped, and the entry lost.
        let mut named: HashSet<&str> = HashSet::new();
        for (entry, maybe) in entries {
            let name = entry.position.as_deref();
            let known = *maybe
                && name.is_some_and(|p| {
                    named.contains(p) || self.recent.as_ref().is_some_and(|r| r.contains(p))
                });
            wrote.push(!known);
            if !known {
                named.extend(name);
                serde_json::to_writer(&mut bytes, entry).map_err(io::Error::other)?;
                bytes.push(b'\n');
            }
        }
        if bytes.is_empty() {
            return Ok(wrote);
        }
        self.write(&bytes)?;
        if let Some(recent) = self.recent.as_mut() {
            recent.extend(named.into_iter().map(str::to_owned));
        }
        Ok(wrote)
    }

    /// Appends `bytes` (whole lines) durably under the file's lock.
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let file = open_locked(&self.path)?;
        // Whether the file is new is decided from the locked file itself: until we hold the lock,
        // `requeue` may remove the file (when it takes every entry) or replace it.
        let held = file.metadata()?;
        let new = !self
            .last
            .is_some_and(|w| (w.dev, w.ino) == (held.dev(), held.ino()) && held.len() >= w.len);
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        #[cfg(test)]
        let torn = self.torn_write.take();
        let len = append_lines(&file, bytes, |mut f, b| {
            #[cfg(test)]
            if let Some(n) = torn {
                f.write_all(&b[..n.min(b.len())])?;
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            f.write_all(b)?;
            let durability = super::layout::Kind::DeadLetter.durability();
            durability.sync(f)?;
            if new && durability == super::private::Durability::Fsync {
                // A new file's name must survive a power loss as well as its content. Within the
                // cut-back: if this fails, the retry writes the batch again, and once.
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        })?;
        // Closing the file releases the lock.
        drop(file);
        self.last = Some(Written {
            dev: held.dev(),
            ino: held.ino(),
            len,
        });
        #[cfg(test)]
        {
            self.dir_syncs += usize::from(new);
        }
        Ok(())
    }
}

/// Appends `bytes` (whole lines) to `file`, which the caller holds locked, through `write`, which
/// writes them and makes them durable. Returns the file's length after them.
///
/// Both repairs keep a torn write a line of its own, so that it never hides the entries after it:
/// - a last line without its newline (a crash in the middle of a write) is ended first;
/// - if `write` fails, the file is cut back to its length before, best effort (a full disk may have
///   taken part of the batch), so that the retry does not append after a fragment.
fn append_lines(
    file: &File,
    bytes: &[u8],
    write: impl FnOnce(&File, &[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut last = [0u8];
    if len > 0 {
        file.read_exact_at(&mut last, len - 1)?;
    }
    let ended;
    let bytes = if len > 0 && last[0] != b'\n' {
        ended = [b"\n", bytes].concat();
        &ended[..]
    } else {
        bytes
    };
    match write(file, bytes) {
        Ok(()) => Ok(len + bytes.len() as u64),
        Err(e) => {
            // Best effort: the error that matters is the write's. A cut the disk does not keep
            // leaves at worst a fragment, which the next append ends.
            let _ = file.set_len(len).and_then(|()| file.sync_data());
            Err(e)
        }
    }
}

/// Opens `path` for appending (creating it and its directory) under an exclusive lock, making sure
/// the locked descriptor is the file now at `path`.
pub fn open_locked(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::MetadataExt;
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    loop {
        // Dead letters hold record content: private whatever the umask.
        let file = private_options()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        file.lock()?;
        let held = file.metadata()?;
        match std::fs::metadata(path) {
            Ok(now) if (now.dev(), now.ino()) == (held.dev(), held.ino()) => return Ok(file),
            // Renamed away (or removed) between our open and our lock: open the new file.
            _ => continue,
        }
    }
}

#[cfg(test)]
mod tests;
