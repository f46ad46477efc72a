//! Which file is this? The identity of an inbox file ([`FileIdentity`]): the file tailer's
//! segment of the core's positions (`notion_inbox_core::position::Segment`), read from the file.
//!
//! An inode number alone is not an identity: filesystems reuse inode numbers as soon as a file is
//! deleted, and a new inbox can inherit a dead one's number (Filebeat #1341, Vector #17240). So an
//! identity also carries a hash of the file's *head*, which for an append-only file never changes.
//!
//! The head is the file's first bytes up to and including its first `\n`, capped at [`HEAD_MAX`]
//! bytes. It is *settled* (never changes again for an append-only file) once the file holds a `\n`
//! within its first [`HEAD_MAX`] bytes or at least [`HEAD_MAX`] bytes. Before that the identity is
//! unknown, which costs nothing: no record can be read from a file without a complete line. Because
//! the head is defined by the content alone (not by how long the file was when it was looked at),
//! the same file always gets the same identity, across restarts too; record keys derived from it are
//! stable.
//!
//! The hash is FNV-1a 64 (written here: ten lines, and it is persisted in checkpoints, so it must
//! never change with a crate upgrade). It is not a cryptographic hash; it only has to tell apart the
//! heads of two files that happen to share an inode number.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use notion_inbox_core::position::Segment;
use serde::{Deserialize, Serialize};

use crate::hash::fnv1a64;

/// The longest head a fingerprint covers, in bytes.
pub const HEAD_MAX: u32 = 256;

/// The identity of one inbox file, persisted in checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileIdentity {
    /// `st_dev` of the filesystem holding the file. Informational on resume: device numbers can
    /// change across reboots (LVM, btrfs), so matching inside the inbox's directory uses the inode
    /// and the head.
    pub dev: u64,
    /// `st_ino` of the file.
    pub ino: u64,
    /// How many bytes of the file's start the fingerprint covers (at most [`HEAD_MAX`]).
    pub head_len: u32,
    /// FNV-1a 64 of the first `head_len` bytes.
    pub head_hash: u64,
}

impl FileIdentity {
    /// The identity of the file `dev`/`ino` whose first bytes are `start` (at most [`HEAD_MAX`] of
    /// them: all of them if the file is shorter), or `None` while its head is not settled (no `\n`
    /// in `start`, and fewer than [`HEAD_MAX`] bytes).
    pub fn from_start(dev: u64, ino: u64, start: &[u8]) -> Option<FileIdentity> {
        let start = &start[..start.len().min(HEAD_MAX as usize)];
        let len = match memchr::memchr(b'\n', start) {
            Some(i) => i + 1,
            None if start.len() == HEAD_MAX as usize => start.len(),
            None => return None,
        };
        Some(FileIdentity {
            dev,
            ino,
            head_len: len as u32,
            head_hash: fnv1a64(&start[..len]),
        })
    }

    /// What names, in its loss report, a file that was never opened (so its inode and head are
    /// unknown): inode 0 and, in place of the head's hash, a hash of the report and of when it
    /// was made, so that two such losses are two entries of the dead-letter file.
    pub fn unopened(report: &str) -> FileIdentity {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        FileIdentity {
            dev: 0,
            ino: 0,
            head_len: 0,
            head_hash: fnv1a64(format!("{report}@{now}").as_bytes()),
        }
    }

    /// Whether `head` (the first `head_len` bytes of a file, or fewer if it is shorter) hashes to
    /// this identity's fingerprint. A file shorter than the head does not match.
    pub fn matches_head(&self, head: &[u8]) -> bool {
        head.len() == self.head_len as usize && fnv1a64(head) == self.head_hash
    }

    /// The part of a record key that names this file: the inode and the head fingerprint, in hex.
    /// The device is left out on purpose, so that keys survive a device renumbering at reboot.
    pub fn key_prefix(&self) -> String {
        format!("{:x}-{:016x}", self.ino, self.head_hash)
    }
}

impl Segment for FileIdentity {
    fn key_prefix(&self) -> String {
        FileIdentity::key_prefix(self)
    }
}

impl fmt::Display for FileIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "inode {} on device {} (head {:016x}/{})",
            self.ino, self.dev, self.head_hash, self.head_len
        )
    }
}

/// The identity of an open file, or `None` while its head is not settled yet (no `\n` within the
/// first [`HEAD_MAX`] bytes and fewer than [`HEAD_MAX`] bytes in the file).
pub fn of(file: &File) -> io::Result<Option<FileIdentity>> {
    let meta = file.metadata()?;
    let mut head = [0u8; HEAD_MAX as usize];
    let n = read_full_at(file, &mut head, 0)?;
    Ok(FileIdentity::from_start(meta.dev(), meta.ino(), &head[..n]))
}

/// Whether the first `head_len` bytes of `file` still hash to `id`'s fingerprint. A file shorter
/// than the head does not match.
pub fn head_matches(id: &FileIdentity, file: &File) -> io::Result<bool> {
    let mut head = [0u8; HEAD_MAX as usize];
    let want = (id.head_len as usize).min(head.len());
    let n = read_full_at(file, &mut head[..want], 0)?;
    Ok(id.matches_head(&head[..n]))
}

/// Reads into `buf` from `offset` until it is full or the file ends; returns the bytes read.
pub(crate) fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn head_is_unsettled_until_a_newline_or_256_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = File::create(&path).unwrap();
        let r = File::open(&path).unwrap();
        assert_eq!(of(&r).unwrap(), None);
        w.write_all(b"{\"partial\":").unwrap();
        assert_eq!(of(&r).unwrap(), None);
        w.write_all(b"1}\nmore").unwrap();
        let id = of(&r).unwrap().unwrap();
        assert_eq!(id.head_len, 14);
        assert_eq!(id.head_hash, fnv1a64(b"{\"partial\":1}\n"));
        // Appending never changes a settled identity.
        w.write_all(&[b'x'; 1000]).unwrap();
        assert_eq!(of(&r).unwrap(), Some(id));
        assert!(head_matches(&id, &r).unwrap());
    }

    #[test]
    fn the_head_is_defined_by_the_content_alone() {
        assert_eq!(FileIdentity::from_start(1, 2, b"{\"partial\":"), None);
        let id = FileIdentity::from_start(1, 2, b"{\"partial\":1}\nmore").unwrap();
        assert_eq!(id.head_len, 14);
        assert_eq!(id.head_hash, fnv1a64(b"{\"partial\":1}\n"));
        assert!(id.matches_head(b"{\"partial\":1}\n"));
        assert!(!id.matches_head(b"{\"partial\":1}"));
        let long = FileIdentity::from_start(1, 2, &[b'y'; 300]).unwrap();
        assert_eq!(long.head_len, HEAD_MAX);
        assert_eq!(id.key_prefix(), format!("2-{:016x}", id.head_hash));
    }

    #[test]
    fn a_long_first_line_settles_at_256_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![b'y'; 300]).unwrap();
        let id = of(&File::open(&path).unwrap()).unwrap().unwrap();
        assert_eq!(id.head_len, HEAD_MAX);
    }

    #[test]
    fn a_rewritten_head_no_longer_matches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"first\n").unwrap();
        let f = File::open(&path).unwrap();
        let id = of(&f).unwrap().unwrap();
        // Same inode (the file is rewritten in place, as after a truncation), different head.
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap()
            .write_all(b"other\n")
            .unwrap();
        assert!(!head_matches(&id, &f).unwrap());
        // A file shorter than the head does not match either.
        f.set_len(0).ok();
        std::fs::write(&path, b"fir").unwrap();
        assert!(!head_matches(&id, &f).unwrap());
    }
}
