//! The inbox reader: turns the lines appended to an inbox file into records, once each.
//!
//! Three parts:
//! - [`identity`]: which file is this ([`FileIdentity`]: device + inode + a fingerprint of the head).
//! - [`reader`]: the [`Tailer`], a synchronous reader that owns the open handle and the read position
//!   and hands out complete lines in bounded batches, following rotation, truncation, deletion and
//!   replacement of the file.
//! - [`watch`]: [`InboxWatcher`], one inotify instance (the `inotify` crate) on the parent directories of all
//!   inboxes, which turns file-system events into coalesced wake-ups per target.
//!
//! # How the daemon drives it
//! An event (or the daemon's slow reconcile tick, a few seconds) only means "read from the saved
//! position to the end of the file": events are never counted. On each wake-up the daemon calls
//! [`Tailer::next_batch`] (from `spawn_blocking` or a dedicated thread, as it does blocking I/O) with a
//! budget of items and bytes equal to the room left in its delivery window, until it returns an empty
//! batch. The tailer holds no queue: the bytes it has not handed out stay in the file, so memory does
//! not grow with the backlog (a 1 GB inbox costs at most one line plus one chunk of buffer).
//!
//! # Records, positions and keys
//! Every [`Item::Line`] and [`Item::Oversized`] carries a [`LinePos`]: the file's identity and the
//! line's byte range. [`LinePos::key`] is a stable key for records that have no `"id"` of their own.
//! The delivery pipeline registers each item in read order with a
//! [`crate::state::Commit`] and marks it finished when it is in Notion or in the dead-letter file; the
//! committed [`Position`] (the end of the longest finished prefix) is what goes into the checkpoint
//! and what [`Tailer::new`] resumes from.

pub mod follow;
pub mod identity;
pub mod inlet;
pub mod look;
pub mod reader;
pub mod watch;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use identity::FileIdentity;

/// The committed position in an inbox: the core's, with a file as its segment.
pub type Position = notion_inbox_core::position::Position<FileIdentity>;
/// Where one line of an inbox is: the core's, with a file as its segment.
pub type LinePos = notion_inbox_core::position::LinePos<FileIdentity>;
pub use inlet::{Arrival, Inlet};
pub use reader::{Backlog, Tailer};
pub use watch::InboxWatcher;

/// One thing read from an inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A complete line. `text` excludes the `\n` and one `\r` before it (CRLF files work), and any
    /// NUL bytes that preceded the line. It may be invalid UTF-8 or invalid JSON: the record stage
    /// checks both and dead-letters what fails.
    Line {
        /// Where the line is.
        pos: LinePos,
        /// The line's bytes.
        text: Vec<u8>,
    },
    /// A line longer than [`TailOptions::max_line`]. It was skipped without being held in memory;
    /// dead-letter it by position.
    Oversized {
        /// Where the line is.
        pos: LinePos,
        /// Its length in bytes, without the `\n`.
        len: u64,
    },
    /// Something happened to the file; log it. It needs no action from the pipeline: the positions
    /// of the items that follow already reflect it.
    Event(TailEvent),
}

/// What happened to an inbox file, for the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailEvent {
    /// The inbox does not exist yet; the tailer waits for it. Reported once.
    Waiting {
        /// The inbox path.
        path: PathBuf,
    },
    /// A file appeared at the inbox path (first start, re-creation or rotation) and is read from 0.
    Opened {
        /// The inbox path.
        path: PathBuf,
        /// Its inode number.
        ino: u64,
    },
    /// Resumed at the checkpoint in the same file.
    Resumed {
        /// The file.
        file: FileIdentity,
        /// The offset resumed at.
        offset: u64,
    },
    /// The checkpoint's file was rotated away; it was found under another name and is drained
    /// first, then the inbox path is read from 0.
    ResumedRotated {
        /// The file.
        file: FileIdentity,
        /// The offset resumed at.
        offset: u64,
        /// Where it was found.
        found: PathBuf,
    },
    /// The checkpoint's file no longer exists anywhere in the inbox's directory: whatever it held
    /// after `offset` was never read and is lost. The inbox path is read from 0.
    PreviousGone {
        /// The file the checkpoint named.
        file: FileIdentity,
        /// The committed offset in it.
        offset: u64,
    },
    /// The inode the checkpoint names holds another file now (another first line): the file was
    /// truncated or rewritten while the daemon was not looking (copytruncate), or deleted and its
    /// inode reused. What it held after `offset` cannot be read any more; the current content is
    /// read from 0.
    Overwritten {
        /// The file the checkpoint named.
        file: FileIdentity,
        /// The committed offset in it.
        offset: u64,
    },
    /// The inode the checkpoint names is elsewhere in the inbox's directory holding another file:
    /// the inbox was truncated or rewritten and then rotated while the daemon was not looking, or
    /// the inode was reused by another file (a compressed copy can be). It is not read, as it may
    /// not be an inbox file at all: what the checkpoint's file held after `offset`, and anything
    /// written to `found` since the rewrite, is not delivered.
    OverwrittenElsewhere {
        /// The file the checkpoint named.
        file: FileIdentity,
        /// The committed offset in it.
        offset: u64,
        /// Where the inode is now.
        found: PathBuf,
    },
    /// The inbox path names a new file. The old one is drained to its end, and read until it has
    /// been quiet for [`TailOptions::rotate_grace`], before the tailer moves on.
    RotationSeen {
        /// Inode of the file being drained.
        old_ino: u64,
        /// Inode of the file now at the path.
        new_ino: u64,
    },
    /// The old file is finished; the tailer moves to the file at the path.
    Rotated {
        /// Inode of the finished file.
        old_ino: u64,
        /// Bytes after its last `\n` that never became a complete line, dropped.
        dropped_tail: u64,
    },
    /// The file got shorter than the read position (truncation or copytruncate): read again from 0.
    Truncated {
        /// Its inode number.
        ino: u64,
        /// The read position before.
        at: u64,
        /// Its length now.
        len: u64,
    },
    /// The file was truncated or rewritten under the reader while it was behind: bytes `from..to`
    /// (at least; more may have been written after the last read) were in the file and were not
    /// read. Lost: a copy (`copytruncate`'s) is not read.
    CutUnread {
        /// The file.
        file: FileIdentity,
        /// The read position.
        from: u64,
        /// The furthest end a read had seen.
        to: u64,
        /// Its length now.
        len: u64,
    },
    /// The file was truncated or rewritten under the reader, and a file in the inbox's directory
    /// starts as it did and holds what was not read yet (the copy logrotate's `copytruncate` just
    /// made): the rest of the file is read from that copy, under the file's identity, and then the
    /// truncated file from 0.
    ReadFromCopy {
        /// The file.
        file: FileIdentity,
        /// The read position, where reading goes on in the copy.
        from: u64,
        /// The copy.
        copy: PathBuf,
        /// The copy's length.
        len: u64,
    },
    /// The file's head changed on the same inode (rewritten in place, or an inode reused after a
    /// deletion): read again from 0.
    Rewritten {
        /// Its inode number.
        ino: u64,
    },
    /// A new file appeared at the inbox path while an older one is still being read: it is kept
    /// open and read after the ones before it (so that several rotations in a row skip nothing).
    Queued {
        /// The new file.
        file: FileIdentity,
    },
    /// A file that was at the inbox path left it by rename and was deleted, replaced or moved out
    /// of the directory before the watcher could open it: whatever it held is not read.
    LostUnopened {
        /// The last name it had.
        path: PathBuf,
        /// What happened to it.
        why: &'static str,
    },
    /// The inbox path was deleted; the open handle is still read in case a writer holds it.
    Vanished {
        /// The inbox path.
        path: PathBuf,
    },
}

impl fmt::Display for TailEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TailEvent::Waiting { path } => write!(
                f,
                "inbox {} does not exist yet; waiting for it to be created",
                path.display()
            ),
            TailEvent::Opened { path, ino } => {
                write!(
                    f,
                    "reading inbox {} (inode {ino}) from the start",
                    path.display()
                )
            }
            TailEvent::Resumed { file, offset } => {
                write!(f, "resuming {file} at byte {offset}")
            }
            TailEvent::ResumedRotated {
                file,
                offset,
                found,
            } => write!(
                f,
                "the checkpoint's file was rotated to {}; draining it from byte {offset} ({file}), then the inbox from the start",
                found.display()
            ),
            TailEvent::PreviousGone { file, offset } => write!(
                f,
                "the checkpoint's file ({file}) is gone from the inbox directory; anything written to it after byte {offset} was never read and is lost; reading the current inbox from the start"
            ),
            TailEvent::Overwritten { file, offset } => write!(
                f,
                "the checkpoint's file ({file}) was truncated or rewritten since, or deleted and its inode reused; what it held after byte {offset} can no longer be read; reading what is there now from the start"
            ),
            TailEvent::OverwrittenElsewhere {
                file,
                offset,
                found,
            } => write!(
                f,
                "the checkpoint's inode ({file}) is at {} with another first line: the inbox was rewritten and then rotated, or the inode reused by another file; it is not read: what the old file held after byte {offset} and whatever was written to {} since the rewrite is not delivered",
                found.display(),
                found.display()
            ),
            TailEvent::RotationSeen { old_ino, new_ino } => write!(
                f,
                "inbox rotated (inode {old_ino} -> {new_ino}); draining the old file first"
            ),
            TailEvent::Rotated {
                old_ino,
                dropped_tail: 0,
            } => write!(f, "finished the rotated file (inode {old_ino})"),
            TailEvent::Rotated {
                old_ino,
                dropped_tail,
            } => write!(
                f,
                "finished the rotated file (inode {old_ino}); its last {dropped_tail} bytes had no newline and were dropped"
            ),
            TailEvent::Truncated { ino, at, len } => write!(
                f,
                "inbox truncated (inode {ino}: length {len} < position {at}); reading again from the start"
            ),
            TailEvent::CutUnread {
                file,
                from,
                to,
                len,
            } => write!(
                f,
                "the inbox ({file}) was truncated or rewritten (length now {len}) while bytes {from}..{to} (at least) were not read yet: they are lost"
            ),
            TailEvent::ReadFromCopy {
                file,
                from,
                copy,
                len,
            } => write!(
                f,
                "the inbox ({file}) was truncated or rewritten before bytes {from}..{len} were read: they are read from its copy {}",
                crate::text::untrusted(&copy.to_string_lossy(), 300)
            ),
            TailEvent::Rewritten { ino } => write!(
                f,
                "inbox rewritten in place (inode {ino}: its first line changed); reading again from the start"
            ),
            TailEvent::Queued { file } => write!(
                f,
                "a new file ({file}) is at the inbox path while an older one is still read; it is read next"
            ),
            TailEvent::LostUnopened { path, why } => write!(
                f,
                "a file rotated away from the inbox was {why} before it could be opened ({}): whatever it held was not read",
                crate::text::untrusted(&path.to_string_lossy(), 300)
            ),
            TailEvent::Vanished { path } => write!(
                f,
                "inbox {} was deleted (or replaced by something that is not a regular file); still reading the open file until a new one appears",
                path.display()
            ),
        }
    }
}

/// Opens an inbox file for reading without following a symlink and without blocking (a FIFO at
/// the path would block `open` forever), then checks with `fstat` that what was opened is a
/// regular file. Every open of an inbox goes through here or [`open_inbox_for_append`]: a producer
/// who may write the spool may also plant a symlink to a secret, a FIFO or a device there, and
/// must gain nothing by it.
pub fn open_inbox(path: &Path) -> Result<std::fs::File, InboxError> {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    regular_only(path, opened)
}

/// Opens (creating if missing) an inbox file for appending, with the same care as
/// [`open_inbox`]: no symlink is followed, a FIFO neither blocks nor is written, and only a
/// regular file with one link is returned (through a hard link, a write would land in another
/// file too). Readable too, to see whether the file ends with a newline. A file it creates is mode
/// 660 whatever the umask: shared with the group (producers, and the daemon) and nobody else.
pub fn open_inbox_for_append(path: &Path) -> Result<std::fs::File, InboxError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    let file = loop {
        let existing = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .custom_flags(flags)
            .open(path);
        match existing {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => break regular_only(path, other)?,
        }
        let created = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o660)
            .custom_flags(flags)
            .open(path);
        match created {
            // Someone else created it first: open theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Ok(file) => {
                file.set_permissions(std::fs::Permissions::from_mode(0o660))
                    .map_err(|source| InboxError::Io {
                        action: "chmod",
                        path: path.to_owned(),
                        source,
                    })?;
                break file;
            }
            other => break regular_only(path, other)?,
        }
    };
    let links = stat(path, &file)?.nlink();
    if links != 1 {
        return Err(InboxError::HardLinked {
            path: path.to_owned(),
            links,
        });
    }
    Ok(file)
}

/// `fstat` of the inbox file opened at `path`.
fn stat(path: &Path, file: &std::fs::File) -> Result<std::fs::Metadata, InboxError> {
    file.metadata().map_err(|source| InboxError::Io {
        action: "stat",
        path: path.to_owned(),
        source,
    })
}

/// The file `opened` at `path` if it is a regular file; otherwise what is there instead.
fn regular_only(
    path: &Path,
    opened: io::Result<std::fs::File>,
) -> Result<std::fs::File, InboxError> {
    use std::os::unix::fs::FileTypeExt;
    let not_a_file = |what| InboxError::NotAFile {
        path: path.to_owned(),
        what,
    };
    let file = opened.map_err(|source| match source.raw_os_error() {
        Some(libc::ELOOP) => not_a_file("a symbolic link"),
        // A socket, or a FIFO without a reader opened for writing: `lstat` names which (it only
        // words the message; nothing was opened).
        Some(libc::ENXIO) => not_a_file(match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => "a socket",
            _ => "a FIFO",
        }),
        Some(libc::EISDIR) => not_a_file("a directory"),
        _ => InboxError::Io {
            action: "open",
            path: path.to_owned(),
            source,
        },
    })?;
    let ty = stat(path, &file)?.file_type();
    let what = if ty.is_file() {
        return Ok(file);
    } else if ty.is_dir() {
        "a directory"
    } else if ty.is_fifo() {
        "a FIFO"
    } else if ty.is_socket() {
        "a socket"
    } else if ty.is_block_device() || ty.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    };
    Err(not_a_file(what))
}

/// How the tailer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailOptions {
    /// The longest line accepted, in bytes without the `\n`; longer lines become
    /// [`Item::Oversized`]. Default 1 MiB.
    pub max_line: usize,
    /// How many bytes one read asks for. Default 64 KiB.
    pub chunk: usize,
    /// After a rotation, how long the old file must stay unchanged at its end before the tailer
    /// stops reading it (a writer may still append to it until it reopens). Default 5 s.
    pub rotate_grace: Duration,
}

impl Default for TailOptions {
    fn default() -> Self {
        TailOptions {
            max_line: 1024 * 1024,
            chunk: 64 * 1024,
            rotate_grace: Duration::from_secs(5),
        }
    }
}

/// What can go wrong reading an inbox.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// The inbox's directory does not exist.
    #[error(
        "the directory of inbox {inbox} ({dir}) does not exist: create it (the inbox file itself may be created later), or fix the inbox path in the configuration"
    )]
    DirectoryMissing {
        /// The missing directory.
        dir: PathBuf,
        /// The inbox path.
        inbox: PathBuf,
    },
    /// Something other than a regular file is at the inbox path.
    #[error(
        "inbox {path} is {what}, not a regular file: nothing is read from it; remove it (producers create the file by appending), or point the configuration at a file"
    )]
    NotAFile {
        /// The inbox path.
        path: PathBuf,
        /// What is there instead.
        what: &'static str,
    },
    /// The inbox file has more than one name, so appending to it would write another file too.
    #[error(
        "inbox {path} has {links} hard links, so it may be another file as well: nothing is written to it; move it away and let producers create a new one"
    )]
    HardLinked {
        /// The inbox path.
        path: PathBuf,
        /// How many names the file has.
        links: u64,
    },
    /// An I/O error on an inbox file.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done ("read", "open", "stat"...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The kernel's inotify limits are exhausted.
    #[error(
        "cannot watch {dir}: the inotify limit is reached; raise the sysctls fs.inotify.max_user_watches and fs.inotify.max_user_instances"
    )]
    WatchLimit {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Another error from the file watcher.
    #[error("cannot watch {dir} for changes")]
    Watch {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}
