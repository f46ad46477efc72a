//! Which records are finished, and how far the committed position may move.
//!
//! Records finish out of order (up to `max_in_flight` creates run at once), but the checkpoint may
//! only ever cover a contiguous prefix of finished records, in the order they were read. Each record
//! read gets a sequence number; the tracker remembers the position just after each pending record and
//! hands out the position after the longest finished prefix.

use std::collections::VecDeque;

use crate::inbox::Position;

/// Tracks pending records of one target in read order.
#[derive(Debug)]
pub struct CommitTracker {
    /// The sequence number of the front of `pending`.
    front_seq: u64,
    /// For each record from `front_seq` on: the position after it, and whether it is finished.
    pending: VecDeque<(Position, bool)>,
    /// The position after the longest finished prefix.
    committed: Option<Position>,
    /// How many records the committed prefix has passed in total.
    committed_count: u64,
}

impl CommitTracker {
    /// A tracker whose committed position starts at `start` (the checkpoint, if any).
    pub fn new(start: Option<Position>) -> CommitTracker {
        CommitTracker {
            front_seq: 0,
            pending: VecDeque::new(),
            committed: start,
            committed_count: 0,
        }
    }

    /// Registers the next record in read order; `after` is the position just past its line.
    pub fn push(&mut self, after: Position) -> u64 {
        let seq = self.front_seq + self.pending.len() as u64;
        self.pending.push_back((after, false));
        seq
    }

    /// Marks record `seq` finished (delivered or dead-lettered). Returns whether the committed
    /// position moved.
    pub fn finish(&mut self, seq: u64) -> bool {
        let Some(index) = seq.checked_sub(self.front_seq) else {
            return false;
        };
        if let Some(slot) = self.pending.get_mut(index as usize) {
            slot.1 = true;
        }
        let mut moved = false;
        while let Some((_, true)) = self.pending.front() {
            let (pos, _) = self.pending.pop_front().expect("front exists");
            self.committed = Some(pos);
            self.front_seq += 1;
            self.committed_count += 1;
            moved = true;
        }
        moved
    }

    /// The position after the longest finished prefix.
    pub fn committed(&self) -> Option<&Position> {
        self.committed.as_ref()
    }

    /// How many records the committed prefix has passed since the tracker started.
    pub fn committed_count(&self) -> u64 {
        self.committed_count
    }

    /// Records read and not yet committed (finished out of order or still running).
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// The sequence number the next pushed record will get.
    pub fn next_seq(&self) -> u64 {
        self.front_seq + self.pending.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::FileIdentity;
    use proptest::prelude::*;

    fn pos(offset: u64) -> Position {
        Position {
            file: FileIdentity {
                dev: 1,
                ino: 2,
                head_len: 0,
                head_hash: 0,
            },
            offset,
        }
    }

    #[test]
    fn commits_only_a_contiguous_prefix() {
        let mut t = CommitTracker::new(None);
        let a = t.push(pos(10));
        let b = t.push(pos(20));
        let c = t.push(pos(30));
        assert!(!t.finish(b));
        assert_eq!(t.committed(), None);
        assert!(t.finish(a));
        assert_eq!(t.committed().unwrap().offset, 20);
        assert_eq!(t.outstanding(), 1);
        assert!(t.finish(c));
        assert_eq!(t.committed().unwrap().offset, 30);
        assert_eq!(t.committed_count(), 3);
        assert!(!t.finish(a), "finishing twice changes nothing");
    }

    proptest! {
        /// Whatever order records finish in, the committed position is always the end of the
        /// longest finished prefix, and never passes an unfinished record.
        #[test]
        fn never_passes_an_unfinished_record(order in Just((0..40u64).collect::<Vec<_>>()).prop_shuffle()) {
            let mut t = CommitTracker::new(None);
            for i in 0..40u64 {
                t.push(pos((i + 1) * 10));
            }
            let mut done = [false; 40];
            for seq in order {
                t.finish(seq);
                done[seq as usize] = true;
                let prefix = done.iter().take_while(|d| **d).count() as u64;
                let expected = if prefix == 0 { None } else { Some(prefix * 10) };
                prop_assert_eq!(t.committed().map(|p| p.offset), expected);
            }
        }
    }
}
