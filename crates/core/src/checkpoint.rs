//! A target's durable progress as the core builds it: the committed position, the window it
//! promised and the files to read after it. Writing it (two checksummed slots, the time it was
//! written) is the runner's: `notion_inbox::state::checkpoint`.

use serde::{Deserialize, Serialize};

use crate::position::{Position, Segment};

/// The format version written. Version 1 (one file, renamed into place, no sequence number or
/// checksum) is still read.
pub const CHECKPOINT_VERSION: u32 = 2;

/// A target's durable progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "S: Segment")]
pub struct Checkpoint<S> {
    /// The format version ([`CHECKPOINT_VERSION`]).
    pub version: u32,
    /// The file the offset is in; `None` before the first record was committed.
    pub file: Option<S>,
    /// Everything in `file` before this byte is in Notion or dead-lettered.
    pub offset: u64,
    /// Records past the offset that were sent (or were being sent) but not confirmed when this was
    /// written, for people and tools that read the checkpoint. A restart does not read it: the
    /// records that may already be rows are the first `window` past the offset, whichever
    /// checkpoint survived, and those are checked by key (see `delivery`).
    pub in_flight: Vec<InFlight<S>>,
    /// How many records past the offset the daemon may have sent while this checkpoint was the
    /// latest on disk (its delivery window). After a crash, the first `window` records past the
    /// offset are checked by key (or counted as possible duplicates) before being sent again.
    #[serde(default)]
    pub window: u32,
    /// The files to read after `file`, in order, each from its start: every file the daemon had
    /// seen at the inbox path after `file` (rotated away since, or still there). A restart drains
    /// `file`, then each of these, then whatever is at the path; without this list, a file between
    /// the first and the one at the path would be skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next: Vec<S>,
}

/// A record that was in flight when the checkpoint was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "S: Segment")]
pub struct InFlight<S> {
    /// The record's key (its `"id"`, or [`crate::position::LinePos::key`]).
    pub key: String,
    /// The segment it was read from.
    pub file: S,
    /// Its first byte.
    pub offset: u64,
    /// The byte after its `\n`.
    pub end: u64,
}

impl<S: Segment> Checkpoint<S> {
    /// A checkpoint at `position` (none yet: the source's beginning).
    pub fn new(position: Option<Position<S>>, in_flight: Vec<InFlight<S>>) -> Checkpoint<S> {
        Checkpoint {
            version: CHECKPOINT_VERSION,
            file: position.map(|p| p.file),
            offset: position.map_or(0, |p| p.offset),
            in_flight,
            window: 0,
            next: Vec::new(),
        }
    }

    /// Where to resume reading.
    pub fn position(&self) -> Option<Position<S>> {
        self.file.map(|file| Position {
            file,
            offset: self.offset,
        })
    }
}
