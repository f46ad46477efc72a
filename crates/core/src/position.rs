//! Where a record is: the segment of its source it was read from, its byte range there, and the
//! committed position.
//!
//! The core treats these as an opaque, ordered cursor: a [`Segment`] is compared for equality,
//! kept in reading order and handed back in checkpoints; offsets only increase within a segment
//! while it is read. The core never opens a file and does not know what a segment is made of. The
//! file tailer (`notion_inbox::inbox`) is today's source: its segment is a file
//! (`notion_inbox::inbox::FileIdentity`, an inode and a fingerprint of the file's head) and its
//! offsets are bytes. A partition of a distributed log would be another, its offsets the log's.
//!
//! The fields are named `file` after today's source: checkpoints and dead-letter entries persist
//! them under that name.

use std::fmt;
use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// One segment of a source, read in order from its start: a file of the file tailer.
pub trait Segment:
    Copy + Eq + Hash + fmt::Debug + fmt::Display + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The part of a record key that names this segment: the same text for the same segment
    /// after any restart (a record without an `"id"` is keyed `<prefix>-<offset>`).
    fn key_prefix(&self) -> String;
}

/// Where delivery has committed: everything in `file` before `offset` is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "S: Segment")]
pub struct Position<S> {
    /// The segment the offset is in.
    pub file: S,
    /// The first byte not yet committed (always the start of a line).
    pub offset: u64,
}

/// Where one line is: which file, and its byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(bound = "S: Segment")]
pub struct LinePos<S> {
    /// The segment the line was read from.
    pub file: S,
    /// The line's first byte (after any NUL run that preceded it).
    pub offset: u64,
    /// The byte after the line's `\n`: committing this line moves the position here.
    pub end: u64,
}

impl<S: Segment> LinePos<S> {
    /// A stable key for a record without an `"id"`: [`Segment::key_prefix`], then the offset in
    /// decimal. The same line of the same segment gets the same key after any restart.
    pub fn key(&self) -> String {
        format!("{}-{}", self.file.key_prefix(), self.offset)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A segment for the core's own tests: a numbered file.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub(crate) struct TestFile(pub(crate) u32);

    impl fmt::Display for TestFile {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "test file {}", self.0)
        }
    }

    impl Segment for TestFile {
        fn key_prefix(&self) -> String {
            format!("f{}", self.0)
        }
    }

    #[test]
    fn a_key_is_the_segment_prefix_and_the_offset() {
        let pos = LinePos {
            file: TestFile(7),
            offset: 12,
            end: 20,
        };
        assert_eq!(pos.key(), "f7-12");
    }
}
