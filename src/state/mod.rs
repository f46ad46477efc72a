//! Durable progress: the per-target checkpoint and the commit tracker that feeds it.
//!
//! - [`commit`]: [`Commit`], which turns records finishing out of order into a committed
//!   [`Position`](crate::inbox::Position) that only ever covers a contiguous prefix of finished
//!   records.
//! - [`checkpoint`]: [`Checkpoint`], [`CheckpointStore`] and [`CheckpointWriter`]: two JSON slot
//!   files per target in `<state_dir>/checkpoints/`, overwritten in turn (sequence number, CRC-32,
//!   fsync when durable) so that one is always whole, and read defensively: if no slot is whole the
//!   target stops with a message that names the file and the way out; it never silently restarts
//!   from zero.
//! - [`layout`]: [`StateDir`](layout::StateDir), the path of everything under the state directory.
//! - [`private`]: creating state for the service user only (directories 700, files 600, whatever
//!   the umask) and reading files that hold secrets only when they are private.
//! - [`deadletter`]: the dead-letter file of each target: what could not become a row and why,
//!   written durably before the commit passes it, and read back by `requeue` and `status`.
//! - [`events`]: the event log, `events.jsonl`: workspaces connected, databases chosen,
//!   disconnections.
//! - [`running`]: the lock `run` holds while it runs, which tells `status` whether it does.

pub mod checkpoint;
pub mod deadletter;
pub mod events;
pub mod layout;
pub mod private;
pub mod running;

use std::io;
use std::path::PathBuf;

pub use checkpoint::{CHECKPOINT_VERSION, Checkpoint, CheckpointStore, CheckpointWriter, InFlight};
pub use notion_inbox_core::commit::{Commit, Ticket};

/// What can go wrong with durable state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The checkpoints directory cannot be created or listed.
    #[error(
        "cannot use the state directory {path}: check that it exists and is writable by the service user (state_dir in the configuration)"
    )]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A target name that cannot be a file name.
    #[error(
        "target name {target:?} cannot name a checkpoint file: use letters, digits, '-', '_' or '.', not starting with '.'"
    )]
    BadTarget {
        /// The name.
        target: String,
    },
    /// The checkpoint exists but cannot be read.
    #[error("cannot read the checkpoint of target {target} at {path}")]
    Read {
        /// The target.
        target: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The checkpoint is empty, truncated or not a valid checkpoint.
    #[error(
        "the checkpoint of target {target} at {path} is damaged ({what}); the target is stopped so that nothing is sent twice or skipped: inspect the file, then either repair it (and delete its checksum field) or move it and the target's other slot file ({target}.json and {target}~b.json, in that directory) away to start this target again from the beginning of its inbox (records already in Notion would be sent again)"
    )]
    Corrupt {
        /// The target.
        target: String,
        /// The file.
        path: PathBuf,
        /// What is wrong, in a few words.
        what: &'static str,
        /// The parse error, if any.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// The checkpoint was written by another version of the format.
    #[error(
        "the checkpoint of target {target} at {path} has format version {found}, and this notion-inbox reads versions 1 to {expected}: run the notion-inbox that wrote it, or move the target's checkpoint files ({target}.json and {target}~b.json, in that directory) away to start this target again from the beginning of its inbox (records already in Notion would be sent again)"
    )]
    Version {
        /// The target.
        target: String,
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u64,
        /// The version this build reads.
        expected: u32,
    },
    /// The checkpoint cannot be written.
    #[error(
        "cannot write the checkpoint of target {target} at {path}: check free space and permissions of the state directory"
    )]
    Write {
        /// The target.
        target: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}
