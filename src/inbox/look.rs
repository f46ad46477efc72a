//! What a closed target's look sees at its inbox path: one `stat` ([`stamp`]), or the file's
//! inode, length and head ([`at_path`]), and whether the checkpoint covers that ([`covers`]).
//! When a look is whole and what a target with a checkpoint does with the answer is decided in
//! `notion_inbox_core::dormancy`.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::identity::HEAD_MAX;
use super::{FileIdentity, InboxError, Position, open_inbox};

/// What one `stat` of the inbox path (not following a symlink) shows; `None` in the looks when
/// nothing is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The inode.
    pub ino: u64,
    /// The length.
    pub len: u64,
    /// The modification time, in nanoseconds.
    pub modified_ns: i128,
    /// The status change time, in nanoseconds.
    pub changed_ns: i128,
}

/// What is at the inbox path, as a whole look found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtPath {
    /// Nothing.
    Missing,
    /// Something that cannot be read as an inbox (a FIFO, a symlink, an error): preparing the
    /// target reports it.
    Unusable,
    /// A regular file.
    File {
        /// Its inode.
        ino: u64,
        /// Its length.
        len: u64,
        /// Its first bytes (at least the checkpoint's head length when the file is as long).
        head: Vec<u8>,
    },
}

/// A closed target's whole look: whether `checkpoint` covers everything at `inbox` (the core's
/// rule, `notion_inbox_core::dormancy::nothing_to_deliver`, with [`covers`] as the source's
/// comparison). The daemon and the simulator ask this.
pub fn nothing_to_deliver(
    checkpoint: Option<&notion_inbox_core::checkpoint::Checkpoint<FileIdentity>>,
    inbox: &Path,
) -> bool {
    notion_inbox_core::dormancy::nothing_to_deliver(checkpoint, |position| {
        covers(position, &at_path(inbox))
    })
}

/// Whether the committed `position` covers everything at the inbox path: the file there is the
/// position's file, at its offset; or there is no position and the path is missing or empty.
/// (The rest of "nothing to deliver", no file queued and no record in flight, is the core's:
/// `notion_inbox_core::dormancy::nothing_to_deliver`.)
pub fn covers(position: Option<Position>, at_path: &AtPath) -> bool {
    match (at_path, position) {
        // No file: idle unless the checkpoint's file was moved away (a rotation to drain).
        (AtPath::Missing, position) => position.is_none(),
        (AtPath::Unusable, _) => false,
        (AtPath::File { len, .. }, None) => *len == 0,
        (AtPath::File { ino, len, head }, Some(p)) => {
            let want = (p.file.head_len as usize).min(head.len());
            *ino == p.file.ino && *len == p.offset && p.file.matches_head(&head[..want])
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_position_at_the_end_of_the_file_at_the_path_covers_it() {
        let head = b"{\"a\":1}\n".to_vec();
        let file = FileIdentity::from_start(1, 7, &head).unwrap();
        let at = |offset| Some(Position { file, offset });
        let there = |ino, len| AtPath::File {
            ino,
            len,
            head: head.clone(),
        };
        assert!(covers(None, &AtPath::Missing));
        assert!(covers(None, &there(7, 0)));
        assert!(!covers(None, &there(7, 8)));
        assert!(covers(at(8), &there(7, 8)));
        assert!(!covers(at(8), &there(7, 16)), "appended");
        assert!(!covers(at(8), &there(8, 8)), "another file");
        assert!(!covers(at(8), &AtPath::Missing), "rotated away");
        assert!(!covers(at(8), &AtPath::Unusable));
        let rewritten = AtPath::File {
            ino: 7,
            len: 8,
            head: b"{\"b\":2}\n".to_vec(),
        };
        assert!(!covers(at(8), &rewritten), "the same length, another head");
    }
}
