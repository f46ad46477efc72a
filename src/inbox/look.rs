//! What a closed target's look sees at its inbox path: one `stat` ([`stamp`]), or the file's
//! inode, length and head ([`at_path`]). What a look compares is decided in
//! `notion_inbox_core::dormancy`.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use notion_inbox_core::dormancy::{AtPath, Stamp};
use notion_inbox_core::position::HEAD_MAX;

use super::{InboxError, open_inbox};

/// What is at the inbox path: its inode, length and first bytes (opened as every inbox is, so a
/// FIFO or a symlink a producer planted is unusable, not followed).
pub fn at_path(inbox: &Path) -> AtPath {
    let file = match open_inbox(inbox) {
        Ok(file) => file,
        Err(InboxError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return AtPath::Missing;
        }
        Err(_) => return AtPath::Unusable,
    };
    let Ok(meta) = file.metadata() else {
        return AtPath::Unusable;
    };
    let mut head = Vec::with_capacity(HEAD_MAX as usize);
    if (&file)
        .take(u64::from(HEAD_MAX))
        .read_to_end(&mut head)
        .is_err()
    {
        return AtPath::Unusable;
    }
    AtPath::File {
        ino: meta.ino(),
        len: meta.len(),
        head,
    }
}

/// What one `stat` of the inbox path (not following a symlink) shows, if anything is there.
pub fn stamp(inbox: &Path) -> Option<Stamp> {
    std::fs::symlink_metadata(inbox).ok().map(|m| Stamp {
        ino: m.ino(),
        len: m.len(),
        modified_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        changed_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
    })
}
