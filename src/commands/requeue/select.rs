//! Which dead letters a run of `requeue` acts on: the filters, and whether the daemon is done with
//! an entry's line.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{RequeueArgs, RequeueError, requeueable};
use crate::record::LocalRules;
use crate::state::checkpoint::Checkpoint;
use crate::state::deadletter::DeadLetter;

/// What a run does (or, with `--dry-run`, would do) with one selected entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Moved back into the inbox.
    Requeued,
    /// Moved to the purged file.
    Purged,
    /// Left in the dead-letter file for good: a lost-file report, or a line whose bytes were not
    /// kept.
    Kept,
    /// Left for a later run: the daemon may still read its line again.
    Unsettled,
    /// Left in the dead-letter file: the daemon's rules, with the configuration as it is now,
    /// refuse the line again (its cause is not fixed).
    Refused,
}

/// One selected entry and what the run does with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryOutcome {
    /// Its number, as `--list` shows it.
    pub number: usize,
    /// What is done with it.
    pub outcome: Verdict,
    /// Why it stays, for the entries that do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// For an entry that stays, its number after the run (the entries before it that left are
    /// no longer counted): what `--line` names next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub now: Option<usize>,
}

/// What a run does with a dead-letter file's entries.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// For each entry, in the file's order, whether it leaves the file.
    pub leaves: Vec<bool>,
    /// Each selected entry, and what becomes of it.
    pub outcomes: Vec<EntryOutcome>,
}

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
    pub(super) fn settled_by(
        mut self,
        checkpoint: Option<(&Checkpoint, chrono::DateTime<chrono::Utc>)>,
    ) -> Selection {
        self.settled = Some(match checkpoint {
            None => Settled::Nothing,
            Some((c, updated)) => Settled::By {
                named: c
                    .file
                    .iter()
                    .map(|f| (f, c.offset))
                    .chain(c.next.iter().map(|f| (f, 0)))
                    .map(|(f, from)| (format!("{}-", f.key_prefix()), from))
                    .collect(),
                at: updated,
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

    /// What a requeue does with entry `number` (`None`: it is not selected). An entry moves back
    /// only if it holds its line, the daemon is done with that line, and `rules` (the daemon's,
    /// with the configuration as it is now) accept it: a line they refuse would only be
    /// dead-lettered again, so it stays, with the reason it would get.
    pub(super) fn judge(
        &self,
        number: usize,
        entry: &DeadLetter,
        rules: &LocalRules<'_>,
    ) -> Option<EntryOutcome> {
        if !self.picks(number, entry) {
            return None;
        }
        let (outcome, why) = if !requeueable(entry) {
            let why = if entry.lost {
                "it reports a lost file; it holds no record"
            } else {
                "its line was over max_line_bytes and its bytes were not kept"
            };
            (Verdict::Kept, Some(why.to_owned()))
        } else if let Err(e) = rules.line(&entry.original_bytes()) {
            (Verdict::Refused, Some(e.to_string()))
        } else if self.unsettled(entry) {
            let why = "the daemon has not committed past its line yet; run requeue again later";
            (Verdict::Unsettled, Some(why.to_owned()))
        } else {
            (Verdict::Requeued, None)
        };
        Some(EntryOutcome {
            number,
            outcome,
            why,
            now: None,
        })
    }

    /// What a run does with each entry of a dead-letter file, given in the file's order with
    /// whether an interrupted run's batch already holds it (it leaves the file, as that batch's).
    /// With `rules`, a requeue ([`Selection::judge`]); without, a purge of every selected entry.
    pub(super) fn plan<'a>(
        &self,
        entries: impl IntoIterator<Item = (&'a DeadLetter, bool)>,
        rules: Option<&LocalRules<'_>>,
    ) -> Plan {
        let mut plan = Plan::default();
        let mut stay = 0;
        for (i, (entry, batched)) in entries.into_iter().enumerate() {
            let judged = match (batched, rules) {
                (true, _) => None,
                (false, Some(rules)) => self.judge(i + 1, entry, rules),
                (false, None) => self.picks(i + 1, entry).then_some(EntryOutcome {
                    number: i + 1,
                    outcome: Verdict::Purged,
                    why: None,
                    now: None,
                }),
            };
            let leaves = batched
                || judged
                    .as_ref()
                    .is_some_and(|o| matches!(o.outcome, Verdict::Requeued | Verdict::Purged));
            if !leaves {
                stay += 1;
            }
            plan.leaves.push(leaves);
            plan.outcomes.extend(judged.map(|o| EntryOutcome {
                now: (!leaves).then_some(stay),
                ..o
            }));
        }
        plan
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
