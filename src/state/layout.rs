//! Where everything lives under the state directory, and what a crash may leave of each kind of
//! file: the one definition of each path ([`StateDir`]) and of whether each kind's writes are
//! fsynced ([`Kind::durability`]). Every file and directory is private, whatever the umask: mode
//! 600 and 700 from their creation, by the functions of [`super::private`], which every writer
//! uses.
//!
//! ```text
//! <state_dir>/
//!   checkpoints/<target>.json, <target>~b.json   two slots per target
//!   tokens/<target>.toml                         tokens from authorize and the connect page
//!   dead-letter/<target>.jsonl                   records that cannot become rows, with why
//!   purged/<target>.jsonl                        dead letters removed by requeue --purge
//!   requeue/                                     requeue's batches and journals
//!   resolved/<target>.json                       each target's resolved database (a cache)
//!   targets/<id>.toml                            connected workspaces' records
//!   targets/.identities/<workspace>+<bot>        the index by identity: holds the record's id
//!   targets/.lock                                serializes connects and disconnects
//!   events.jsonl, events.jsonl.1                 connections, disconnections, choices (bounded)
//!   connect.json                                 the connect page's busiest client of the hour
//!   daemon.pid                                   held locked by `run`, with its pid
//!   status.json                                  the daemon's view of every target
//!   limits                                       the request budget every process shares
//! ```

use std::path::{Path, PathBuf};

use super::private::Durability;

/// A kind of file under the state directory, for the rule of its writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A token file: losing a refreshed token loses the grant (the old refresh token is spent).
    Token,
    /// A dead-letter file: an entry is the only copy of a line the daemon moved past.
    DeadLetter,
    /// The purged file: requeue removes the entries from the dead-letter file after this write.
    Purged,
    /// requeue's batches and journals: the exactly-once repair after a crash reads them.
    Requeue,
    /// A connected workspace's record: the target it describes exists only through it.
    Connected,
    /// `status.json`: rewritten every few seconds, and only read by people and `status`.
    Status,
    /// A cached resolution: a lost one is asked of Notion again.
    Resolved,
    /// The event log: a record of what happened, for people; a line lost in a crash changes
    /// nothing the daemon does.
    Events,
}

impl Kind {
    /// Whether a write of this kind is fsynced (with its directory, when the file is new), so that
    /// after a crash or a power loss the file holds what was written. Checkpoints have their own
    /// rule: the delivery core asks for a durable save when it must be ([`super::Checkpoint`]).
    pub const fn durability(self) -> Durability {
        match self {
            Kind::Token | Kind::DeadLetter | Kind::Purged | Kind::Requeue | Kind::Connected => {
                Durability::Fsync
            }
            Kind::Status | Kind::Resolved | Kind::Events => Durability::NoFsync,
        }
    }
}

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

    /// The dead-letter files' directory.
    pub fn dead_letters(self) -> PathBuf {
        self.0.join("dead-letter")
    }

    /// The dead-letter file of `target`.
    pub fn dead_letter_file(self, target: &str) -> PathBuf {
        self.dead_letters().join(format!("{target}.jsonl"))
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

    /// The index of connected workspaces by identity.
    pub fn identities(self) -> PathBuf {
        self.targets().join(".identities")
    }

    /// The lock that serializes connected workspaces' lifecycle changes, across processes.
    pub fn lifecycle_lock(self) -> PathBuf {
        self.targets().join(".lock")
    }

    /// How close the connect page's per-client cap is, as the page last wrote it.
    pub fn connect_usage(self) -> PathBuf {
        self.0.join("connect.json")
    }

    /// The file `run` holds locked while it runs, with its pid.
    pub fn daemon_pid(self) -> PathBuf {
        self.0.join("daemon.pid")
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
