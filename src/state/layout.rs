//! Where everything lives under the state directory: the one definition of each path. How the
//! files are made (modes 700/600, fsync) is [`super::private`]'s.
//!
//! ```text
//! <state_dir>/
//!   checkpoints/<target>.json, <target>~b.json   two slots per target
//!   tokens/<target>.toml                         tokens from authorize and the connect page
//!   dead-letter/<target>.jsonl                   records that cannot become rows, with why
//!   purged/<target>.jsonl                        dead letters removed by requeue --purge
//!   requeue/                                     requeue's batches and journals
//!   resolved/<target>.json                       each target's resolved database (a cache)
//!   targets/                                     connected workspaces' records
//!   events.jsonl                                 connections, disconnections, choices
//!   status.json                                  the daemon's view of every target
//!   limits                                       the request budget every process shares
//! ```

use std::path::{Path, PathBuf};

/// The state directory.
#[derive(Debug, Clone, Copy)]
pub struct StateDir<'a>(pub &'a Path);

impl StateDir<'_> {
    /// The checkpoints' directory.
    pub fn checkpoints(self) -> PathBuf {
        self.0.join("checkpoints")
    }

    /// The tokens' directory.
    pub fn tokens(self) -> PathBuf {
        self.0.join("tokens")
    }

    /// The token file of `target`.
    pub fn token_file(self, target: &str) -> PathBuf {
        self.tokens().join(format!("{target}.toml"))
    }

    /// The dead-letter file of `target`.
    pub fn dead_letter_file(self, target: &str) -> PathBuf {
        self.0.join("dead-letter").join(format!("{target}.jsonl"))
    }

    /// The purged dead letters of `target`.
    pub fn purged_file(self, target: &str) -> PathBuf {
        self.0.join("purged").join(format!("{target}.jsonl"))
    }

    /// requeue's batches and journals.
    pub fn requeue(self) -> PathBuf {
        self.0.join("requeue")
    }

    /// The cached resolution of `target`.
    pub fn resolved_file(self, target: &str) -> PathBuf {
        self.0.join("resolved").join(format!("{target}.json"))
    }

    /// The connected workspaces' records.
    pub fn targets(self) -> PathBuf {
        self.0.join("targets")
    }

    /// The event log.
    pub fn events(self) -> PathBuf {
        self.0.join("events.jsonl")
    }

    /// The daemon's status file.
    pub fn status(self) -> PathBuf {
        self.0.join("status.json")
    }

    /// The shared request budget.
    pub fn limits(self) -> PathBuf {
        self.0.join("limits")
    }
}
