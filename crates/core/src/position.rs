//! Where a record is: the identity of the file it was read from, a line's byte range in it, and
//! the committed position.
//!
//! The core treats these as an ordered cursor: it compares identities for equality, keeps them in
//! reading order and hands them back in checkpoints; it never opens a file. The source (the file
//! tailer, `notion_inbox::inbox`) computes identities from the files it reads.
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

use serde::{Deserialize, Serialize};

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

impl fmt::Display for FileIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "inode {} on device {} (head {:016x}/{})",
            self.ino, self.dev, self.head_hash, self.head_len
        )
    }
}

/// FNV-1a, 64-bit (the published offset basis and prime). Hand-written because it is persisted:
/// its output must stay bit-for-bit the same forever.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET_BASIS;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

/// Where delivery has committed: everything in `file` before `offset` is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The file the offset is in.
    pub file: FileIdentity,
    /// The first byte not yet committed (always the start of a line).
    pub offset: u64,
}

/// Where one line is: which file, and its byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LinePos {
    /// The file the line was read from.
    pub file: FileIdentity,
    /// The line's first byte (after any NUL run that preceded it).
    pub offset: u64,
    /// The byte after the line's `\n`: committing this line moves the position here.
    pub end: u64,
}

impl LinePos {
    /// A stable key for a record without an `"id"`: `<inode>-<head hash>-<offset>`, all hex but the
    /// offset. The same line of the same file gets the same key after any restart.
    pub fn key(&self) -> String {
        format!("{}-{}", self.file.key_prefix(), self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_head_is_unsettled_until_a_newline_or_256_bytes() {
        assert_eq!(FileIdentity::from_start(1, 2, b"{\"partial\":"), None);
        let id = FileIdentity::from_start(1, 2, b"{\"partial\":1}\nmore").unwrap();
        assert_eq!(id.head_len, 14);
        assert_eq!(id.head_hash, fnv1a64(b"{\"partial\":1}\n"));
        assert!(id.matches_head(b"{\"partial\":1}\n"));
        assert!(!id.matches_head(b"{\"partial\":1}"));
        let long = FileIdentity::from_start(1, 2, &[b'y'; 300]).unwrap();
        assert_eq!(long.head_len, HEAD_MAX);
    }
}
