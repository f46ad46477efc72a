//! [`Commit`]: the committed position advances only over a contiguous prefix of finished records.
//!
//! Records are registered with [`Commit::begin`] in the order the tailer handed them out and may
//! finish in any order (concurrent sends, retries, dead letters). The committed position is the end
//! of the longest prefix of registered records that are all finished, so a crash never skips a
//! record that was still in flight. Gaps between records (blank lines and NUL runs the tailer
//! skipped) are covered implicitly, because the prefix is taken in registration order, not by byte
//! arithmetic; this also keeps it right across rotations and truncations, where offsets jump.
//!
//! Memory is one entry per record between the committed position and the newest registered one,
//! which the delivery window bounds.

use std::collections::VecDeque;

use crate::position::{LinePos, Position, Segment};

/// A handle to a registered record, to finish it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(u64);

impl Ticket {
    /// The record's place in registration order (0 for the first of this run).
    pub(crate) fn index(self) -> u64 {
        self.0
    }
}

/// Tracks records from registration to finish and derives the committed position.
#[derive(Debug)]
pub struct Commit<T, S> {
    /// Registered records not yet covered by the committed position, in registration order.
    entries: VecDeque<Entry<T, S>>,
    /// The ticket number of `entries[0]`.
    first: u64,
    /// Where delivery has committed, if anywhere yet.
    committed: Option<Position<S>>,
}

/// One registered record.
#[derive(Debug)]
struct Entry<T, S> {
    /// Where it is in the inbox.
    pos: LinePos<S>,
    /// The caller's data (typically the record key).
    data: T,
    /// Whether it is in Notion or dead-lettered.
    done: bool,
}

impl<T, S: Segment> Commit<T, S> {
    /// Starts at `committed` (from the checkpoint, or `None` on a first start).
    pub fn new(committed: Option<Position<S>>) -> Commit<T, S> {
        Commit {
            entries: VecDeque::new(),
            first: 0,
            committed,
        }
    }

    /// Registers a record, in the order read.
    pub fn begin(&mut self, pos: LinePos<S>, data: T) -> Ticket {
        let ticket = Ticket(self.first + self.entries.len() as u64);
        self.entries.push_back(Entry {
            pos,
            data,
            done: false,
        });
        ticket
    }

    /// Marks a record finished. Returns whether the committed position moved. Finishing a ticket
    /// twice, or one already committed, does nothing.
    pub fn finish(&mut self, ticket: Ticket) -> bool {
        let Some(index) = ticket.0.checked_sub(self.first) else {
            return false;
        };
        let Some(entry) = usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get_mut(i))
        else {
            return false;
        };
        entry.done = true;
        let mut moved = false;
        while self.entries.front().is_some_and(|e| e.done) {
            let entry = self.entries.pop_front().expect("front exists");
            self.first += 1;
            // Within a file the position only moves forward (a new file starts it again).
            debug_assert!(
                self.committed
                    .is_none_or(|c| c.file != entry.pos.file || c.offset <= entry.pos.end),
                "the committed position moved back in its file"
            );
            self.committed = Some(Position {
                file: entry.pos.file,
                offset: entry.pos.end,
            });
            moved = true;
        }
        // The commit never passes a record that is not finished.
        debug_assert!(self.entries.front().is_none_or(|e| !e.done));
        moved
    }

    /// The data of a registered record that is not finished yet.
    pub fn get_mut(&mut self, ticket: Ticket) -> Option<&mut T> {
        let index = usize::try_from(ticket.0.checked_sub(self.first)?).ok()?;
        self.entries
            .get_mut(index)
            .filter(|e| !e.done)
            .map(|e| &mut e.data)
    }

    /// Where delivery has committed.
    #[cfg(test)]
    pub fn committed(&self) -> Option<Position<S>> {
        self.committed
    }

    /// Where a restart must resume: the committed position, or, before anything was committed, the
    /// start of the first registered record (so the checkpoint names the file being read even
    /// then, and a rotation before the first commit cannot make a restart skip that file).
    pub fn resume_position(&self) -> Option<Position<S>> {
        self.committed.or_else(|| {
            self.entries.front().map(|e| Position {
                file: e.pos.file,
                offset: e.pos.offset,
            })
        })
    }

    /// The registered records not finished yet, in order: the in-flight list of a checkpoint.
    pub fn in_flight(&self) -> impl Iterator<Item = (&LinePos<S>, &T)> {
        self.entries
            .iter()
            .filter(|e| !e.done)
            .map(|e| (&e.pos, &e.data))
    }

    /// How many registered records are not covered by the committed position yet.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether every registered record is committed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::tests::TestFile;
    use proptest::prelude::*;

    const FILE: TestFile = TestFile(2);

    fn at(offset: u64, end: u64) -> LinePos<TestFile> {
        LinePos {
            file: FILE,
            offset,
            end,
        }
    }

    #[test]
    fn before_the_first_commit_the_resume_position_names_the_file() {
        let mut c: Commit<&str, TestFile> = Commit::new(None);
        assert_eq!(c.resume_position(), None);
        let a = c.begin(at(0, 10), "a");
        c.begin(at(10, 20), "b");
        assert_eq!(c.committed(), None);
        assert_eq!(
            c.resume_position(),
            Some(Position {
                file: FILE,
                offset: 0
            })
        );
        c.finish(a);
        assert_eq!(
            c.resume_position(),
            Some(Position {
                file: FILE,
                offset: 10
            })
        );
    }

    #[test]
    fn out_of_order_finishes_wait_for_the_gap() {
        let mut c = Commit::new(None);
        let a = c.begin(at(0, 10), "a");
        // A blank line at 10..11 was skipped by the tailer.
        let b = c.begin(at(11, 20), "b");
        let d = c.begin(at(20, 30), "d");
        assert!(!c.finish(d));
        assert!(!c.finish(b));
        assert_eq!(c.committed(), None);
        assert_eq!(c.in_flight().map(|(_, k)| *k).collect::<Vec<_>>(), ["a"]);
        assert!(c.finish(a));
        assert_eq!(
            c.committed(),
            Some(Position {
                file: FILE,
                offset: 30
            })
        );
        assert!(c.is_empty());
        // Finishing again, or an unknown ticket, changes nothing.
        assert!(!c.finish(a));
        assert!(!c.finish(Ticket(99)));
    }

    proptest! {
        /// Whatever the finishing order, the committed position is the end of the longest finished
        /// prefix: never past an unfinished record.
        #[test]
        fn never_commits_past_an_unfinished_record(
            lens in prop::collection::vec(1u64..50, 1..40),
            order in prop::collection::vec(any::<prop::sample::Index>(), 0..60),
        ) {
            let mut c = Commit::new(None);
            let mut offset = 0;
            let mut tickets = Vec::new();
            for len in &lens {
                tickets.push((c.begin(at(offset, offset + len), ()), offset + len));
                offset += len + 1; // a skipped byte between records
            }
            let mut done = vec![false; lens.len()];
            for index in order {
                let i = index.index(lens.len());
                c.finish(tickets[i].0);
                done[i] = true;
                let prefix = done.iter().take_while(|d| **d).count();
                let expected = prefix.checked_sub(1).map(|last| Position { file: FILE, offset: tickets[last].1 });
                prop_assert_eq!(c.committed(), expected);
                prop_assert_eq!(c.in_flight().count(), done.iter().filter(|d| !**d).count());
            }
        }
    }
}
