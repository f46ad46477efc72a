//! Dormancy: the target closes once it has been quiet at every look for a while (as the runner
//! does, through `notion_inbox_core::dormancy`), and while closed the producer keeps writing,
//! rotates, rewrites the file to the same length, the daemon restarts, and file events are
//! delivered or lost. A closed target wakes only through its own looks.

use std::time::Duration;

use notion_inbox::inbox::look::{nothing_to_deliver, stamp};
use notion_inbox::state::checkpoint::Checkpoint;
use notion_inbox_core::delivery::Event;
use notion_inbox_core::dormancy::{Cause, Dormant, Looks};
use rand::Rng;

use super::{Kind, World};

/// The runner's `reconcile_interval`: a running target's looks.
pub(super) const LOOK_EVERY: Duration = Duration::from_secs(1);

/// `close_idle_after`.
const CLOSE_AFTER: Duration = Duration::from_secs(4);

impl World {
    /// A running target's look without a file event, when one is due: it closes once it has
    /// been quiet at every look for [`CLOSE_AFTER`].
    pub(super) fn running_look(&mut self) {
        if self.dormant.is_some() || self.now < self.looks.next() {
            return;
        }
        let now = self.now;
        let idle = self.pending.is_empty()
            && self.core().quiet(now)
            && self.tailer.as_ref().is_some_and(|t| t.settled());
        self.looks.looked(now, idle, &mut self.rng);
        if idle && self.stopping.is_none() && self.looks.idle_for(now) >= CLOSE_AFTER {
            self.closing = true;
            self.begin_stop();
        }
    }

    /// The stopped core of a closing target is gone: the target waits, closed.
    pub(super) fn go_dormant(&mut self) {
        if std::env::var("SIM_TRACE").is_ok() {
            eprintln!(
                "{:?} closed; disk full {}; checkpoint {:?}",
                self.now,
                self.disk_full,
                self.closed_checkpoint().map(|c| (
                    c.file.map(|f| f.ino),
                    c.offset,
                    c.next.iter().map(|f| f.ino).collect::<Vec<_>>()
                ))
            );
        }
        self.abandon_in_flight();
        self.core = None;
        self.tailer = None;
        self.closing = false;
        self.stopping = None;
        self.grace_sent = false;
        self.closes += 1;
        self.appended_while_closed = false;
        self.dormant = Some(Dormant::new());
        self.looks = Looks::new(LOOK_EVERY, self.now);
        self.dormant_look(Cause::First);
    }

    /// One step while closed.
    pub(super) fn dormant_step(&mut self) {
        match self.rng.random_range(0..100) {
            0..=29 => {
                self.produce();
                // inotify reports it, or (a full queue reported as an overflow aside) it is lost.
                if self.rng.random_bool(0.8) {
                    self.dormant_look(Cause::FileEvent);
                }
            }
            30..=37 => {
                self.rewrite_same_length();
                if self.rng.random_bool(0.5) {
                    self.dormant_look(Cause::FileEvent);
                }
            }
            38..=41 => {
                // The daemon restarts: the target's first look is whole; the new watcher follows
                // nothing yet.
                self.crashes += 1;
                self.watch = super::watcher::SimWatch::new(self.overflow);
                for (_, file) in &self.rotated {
                    if self.created_while_closed.contains(file) {
                        self.unseen_ok.insert(*file);
                    }
                }
                self.dormant = Some(Dormant::new());
                self.looks = Looks::new(LOOK_EVERY, self.now);
                self.dormant_look(Cause::First);
            }
            _ => self.dormant_wait(),
        }
    }

    /// Time passes until the next look is due, or for a while.
    pub(super) fn dormant_wait(&mut self) {
        let step = Duration::from_millis(self.rng.random_range(1..5000));
        self.now = (self.now + step).min(self.looks.next().max(self.now));
        if self.now >= self.looks.next() {
            self.dormant_look(Cause::Timer);
        }
    }

    /// A closed target's look: a stat, or the checkpoint against the file; it wakes if there
    /// is something to deliver.
    pub(super) fn dormant_look(&mut self, cause: Cause) {
        let Some(mut dormant) = self.dormant else {
            return;
        };
        self.watch_batch();
        let now_stamp = stamp(&self.inbox);
        let whole = dormant.whole_look(cause, now_stamp);
        let checkpoint = self.closed_checkpoint();
        // Files the watcher opened after they left the path are work, as in the daemon.
        let idle = !self.watch.inlet.has_arrivals()
            && (!whole || nothing_to_deliver(checkpoint.as_ref(), &self.inbox));
        dormant.looked(now_stamp, whole);
        self.dormant = Some(dormant);
        if idle {
            self.looks.looked(self.now, true, &mut self.rng);
            return;
        }
        if std::env::var("SIM_TRACE").is_ok() {
            eprintln!("{:?} wakes ({cause:?})", self.now);
        }
        self.dormant = None;
        self.wakes += 1;
        self.rewritten_while_closed.clear();
        self.created_while_closed.clear();
        self.looks = Looks::new(LOOK_EVERY, self.now);
        self.start(checkpoint);
        self.observe();
        self.feed(Event::Wake);
    }

    /// What a closed target resumes from: its final checkpoint (the newest).
    fn closed_checkpoint(&self) -> Option<Checkpoint> {
        self.volatile.clone().or_else(|| self.durable.clone())
    }

    /// Whether a closed target has nothing to deliver (the end of a schedule may stop there).
    pub(super) fn dormant_and_done(&self) -> bool {
        self.dormant.is_some() && nothing_to_deliver(self.closed_checkpoint().as_ref(), &self.inbox)
    }

    /// copytruncate, then new records until the file is exactly as long as before: a stat that
    /// shows the same length (and, within one tick of the file system's clock, the same times).
    /// Only while closed with everything delivered, as copytruncate loses what it races.
    fn rewrite_same_length(&mut self) {
        use std::io::Write;
        if self.appended_while_closed || self.planted || self.partial.is_some() {
            return;
        }
        let Ok(meta) = std::fs::symlink_metadata(&self.inbox) else {
            return;
        };
        let len = meta.len() as usize;
        let shortest = "{\"handle\":\"@s\",\"tweet\":\"t0000000\",\"pad\":\"\"}\n".len();
        if !meta.is_file() || len < shortest {
            return;
        }
        let n = self.next_line;
        self.next_line += 1;
        let bare = format!("{{\"handle\":\"@s\",\"tweet\":\"t{n}\",\"pad\":\"\"}}\n");
        let line = format!(
            "{{\"handle\":\"@s\",\"tweet\":\"t{n}\",\"pad\":\"{}\"}}\n",
            "p".repeat(len - bare.len())
        );
        assert_eq!(line.len(), len);
        // The rewritten file is another file for the check (its old lines were delivered).
        self.deleted.push(false);
        let file = self.deleted.len() - 1;
        self.current = Some(file);
        self.rewritten_while_closed.insert(file);
        self.lines.insert(format!("t{n}"), (Kind::Record, file));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&self.inbox)
            .unwrap();
        f.write_all(line.as_bytes()).unwrap();
        self.appended_while_closed = true;
        if std::env::var("SIM_TRACE").is_ok() {
            eprintln!("{:?} rewrote the inbox to its length {len}", self.now);
        }
    }
}
