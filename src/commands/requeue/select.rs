//! Which dead letters a run of `requeue` acts on: the filters, and whether the daemon is done with
//! an entry's line.

use chrono::{DateTime, Utc};

use super::{RequeueArgs, RequeueError};
use crate::state::checkpoint::Checkpoint;
use crate::state::deadletter::DeadLetter;

/// Which entries a run acts on.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selection {
    reason: Option<String>,
    lines: Vec<usize>,
    /// What the checkpoint says, once [`Selection::settled_by`] was told.
    settled: Option<Settled>,
}

/// What the target's checkpoint says about which lines the daemon is done with.
#[derive(Debug, Clone)]
enum Settled {
    /// No checkpoint: a restart reads every line again.
    Nothing,
    /// The checkpoint's snapshot.
    By {
        /// The entry-name prefix of each file it names, and the offset from which that file's
        /// lines are not committed.
        named: Vec<(String, u64)>,
        /// When the snapshot was taken.
        at: DateTime<Utc>,
    },
}

impl Selection {
    pub(super) fn of(args: &RequeueArgs) -> Selection {
        Selection {
            reason: args.reason.clone(),
            lines: args.lines.clone(),
            settled: None,
        }
    }

    /// The same selection, knowing the checkpoint: the position's file from its offset, and the
    /// files queued after it from 0, are not committed yet.
    pub(super) fn settled_by(mut self, checkpoint: Option<&Checkpoint>) -> Selection {
        self.settled = Some(match checkpoint {
            None => Settled::Nothing,
            Some(c) => Settled::By {
                named: c
                    .file
                    .iter()
                    .map(|f| (f, c.offset))
                    .chain(c.next.iter().map(|f| (f, 0)))
                    .map(|(f, from)| (format!("{}-", f.key_prefix()), from))
                    .collect(),
                at: c.updated,
            },
        });
        self
    }

    /// Whether the daemon may still read an entry's line again after a restart (and dead-letter
    /// it again: requeued, the line would then be there twice). A line in a file the checkpoint
    /// names is settled below the committed offset. A line of a file it does not name is settled
    /// only if the entry is older than the checkpoint: the file was then known and finished; a
    /// newer entry may come from a file that appeared after the snapshot.
    pub(super) fn unsettled(&self, entry: &DeadLetter) -> bool {
        let Some(settled) = &self.settled else {
            return false;
        };
        let Settled::By { named, at } = settled else {
            return true;
        };
        let in_named = entry.position.as_ref().and_then(|p| {
            named
                .iter()
                .find(|(prefix, _)| p.starts_with(prefix.as_str()))
        });
        if let Some((_, from)) = in_named {
            return entry.offset >= *from;
        }
        // Entry times have millisecond precision: one more covers the truncation.
        match DateTime::parse_from_rfc3339(&entry.time) {
            Ok(t) => t.with_timezone(&Utc) + chrono::Duration::milliseconds(1) > *at,
            Err(_) => true,
        }
    }

    /// Whether entry `number` (1-based) is selected.
    pub(super) fn picks(&self, number: usize, entry: &DeadLetter) -> bool {
        (self.lines.is_empty() || self.lines.contains(&number))
            && self
                .reason
                .as_ref()
                .is_none_or(|r| entry.reason.contains(r.as_str()))
    }

    /// Fails if `--line` names an entry past the last of `count`.
    pub(super) fn check_lines(&self, target: &str, count: usize) -> Result<(), RequeueError> {
        match self.lines.iter().find(|&&n| n == 0 || n > count) {
            Some(&line) => Err(RequeueError::NoSuchLine {
                target: target.to_owned(),
                count,
                line,
            }),
            None => Ok(()),
        }
    }
}
