//! Checkpoints and dead letters: when the core saves, what a checkpoint promises, and the
//! dead-letter queue (retried, batched, one write in flight).

use super::flight::Step;
use super::{Action, CHECKPOINT_EVERY, Core, DeadLetterRequest, LocalError, Now, SaveInFlight};
use crate::checkpoint::{Checkpoint, InFlight};
use crate::commit::Ticket;
use crate::position::{LinePos, Segment};

impl<P, S: Segment> Core<P, S> {
    /// A file the checkpoint named is gone: say so (health, log, and an entry in the dead-letter
    /// file, named by its position so that a restart finding the same loss writes no second one),
    /// and forget the file. The entry holds no position back: it is not a record.
    pub(super) fn lost_file(&mut self, file: S, offset: u64, reason: String) {
        tracing::error!(target_name = %self.cfg.name, "{reason}");
        self.stats.error(reason.clone());
        self.lost = Some(reason.clone());
        // The file stays named in checkpoints until its report is on disk (a crash before that
        // finds the same loss again).
        let request = DeadLetterRequest {
            pos: LinePos {
                file,
                offset,
                end: offset,
            },
            line: Vec::new(),
            reason,
            key: None,
            error: None,
            maybe_written: true,
            lost: true,
        };
        self.dead_queue.push((None, request));
    }

    pub(super) fn checkpoint(&self) -> Checkpoint<S> {
        let in_flight = self
            .commit
            .in_flight()
            .map(|(pos, f)| InFlight {
                key: f.key.clone(),
                file: pos.file,
                offset: pos.offset,
                end: pos.end,
            })
            .collect();
        let resume = self.commit.resume_position();
        let mut cp = Checkpoint::new(resume, in_flight);
        cp.window = if self.stopping && self.commit.is_empty() {
            // Nothing unfinished: only the last run's records this run did not reach may be rows.
            self.unchecked_left as u32
        } else {
            self.persisted_window
        };
        // Every file after the position's; all of them if its file is not among them (or there is
        // no position yet: files seen before the first record was read).
        let pos_file = resume.map(|p| p.file);
        let after = self.files.iter().position(|f| Some(*f) == pos_file);
        cp.next = self
            .files
            .iter()
            .skip(after.map_or(0, |i| i + 1))
            .filter(|f| Some(**f) != pos_file)
            .copied()
            .collect();
        // A lost file whose report is not on disk yet stays named, even once the position has
        // passed it: a restart then finds (and reports) the same loss.
        for (ticket, request) in &self.dead_queue {
            let file = request.pos.file;
            if ticket.is_none() && Some(file) != pos_file && !cp.next.contains(&file) {
                cp.next.insert(0, file);
            }
        }
        // A restart from it reads every record not finished yet.
        debug_assert!(
            self.commit
                .in_flight()
                .all(|(pos, _)| cp.file == Some(pos.file) || cp.next.contains(&pos.file)),
            "a checkpoint that does not name the file of a record in flight: in flight {:?}, checkpoint {:?} then {:?}, files {:?}",
            self.commit
                .in_flight()
                .map(|(pos, _)| pos.file.key_prefix())
                .collect::<Vec<_>>(),
            cp.file.map(|f| f.key_prefix()),
            cp.next.iter().map(Segment::key_prefix).collect::<Vec<_>>(),
            self.files
                .iter()
                .map(Segment::key_prefix)
                .collect::<Vec<_>>(),
        );
        cp
    }

    /// Whether a stopping core may write its last checkpoint: no request or write in flight, and
    /// everything read finished (or the grace period over). After the grace period, dead letters
    /// that cannot be written (a full disk) stay unfinished: they are read again after the restart.
    pub(super) fn quiescent(&self) -> bool {
        self.requests == 0
            && !self.reading
            && !self.looking
            && self.dead_busy.is_empty()
            && (self.dead_queue.is_empty() || self.grace_over)
            && (self.commit.is_empty() || self.grace_over)
    }

    /// Once a stopping core is quiet, it looks at the inbox once more before its final
    /// checkpoint: a file rotated away just before the stop, held by the tailer but not reported
    /// yet, is then named in it. (A restart looks for files born after the checkpoint was written,
    /// not before.)
    pub(super) fn poll_last_look(&mut self) -> Option<Action<P, S>> {
        if !self.stopping || self.looked || self.finished || !self.quiescent() {
            return None;
        }
        self.looking = true;
        Some(Action::Look)
    }

    pub(super) fn poll_save(&mut self, now: Now) -> Option<Action<P, S>> {
        if self.saving.is_some() || self.finished || !self.save_retry.may_try(now) {
            return None;
        }
        let durable = if self.stopping {
            // The last checkpoint: once everything read is finished, or the grace period is over,
            // and the last look is in.
            if self.final_save || !self.looked || !self.quiescent() {
                return None;
            }
            self.final_save = true;
            true
        } else {
            let held_back = self.room() == 0
                && self.committed_count() > self.persisted
                && self.commit.len() <= self.cfg.window / 2;
            let periodic = self
                .dirty_since
                .is_some_and(|t| now >= t.saturating_add(CHECKPOINT_EVERY));
            if !(self.want_durable || held_back || periodic) {
                return None;
            }
            self.want_durable || held_back
        };
        let checkpoint = self.checkpoint();
        let files = checkpoint
            .file
            .into_iter()
            .chain(checkpoint.next.iter().copied())
            .collect();
        self.saving = Some(SaveInFlight {
            durable,
            committed: self.committed_count(),
            files,
        });
        self.want_durable = false;
        self.dirty_since = None;
        Some(Action::Save {
            checkpoint,
            durable,
        })
    }

    pub(super) fn saved(&mut self, now: Now, result: Result<(), LocalError>) {
        // One save at a time, and an answer only to the save handed out.
        debug_assert!(
            self.saving.is_some(),
            "a save answered that was not asked for"
        );
        let Some(save) = self.saving.take() else {
            return;
        };
        match result {
            Ok(()) => {
                if self.save_retry.error.is_some() {
                    tracing::info!(target_name = %self.cfg.name, "checkpoint written again; the state disk has recovered");
                }
                self.save_retry.succeeded();
                if save.durable {
                    self.persisted = self.persisted.max(save.committed);
                    self.durable_files = save.files;
                    self.promised = true;
                    // Files noted since this save was built still need one.
                    self.want_durable = self.files.iter().any(|f| !self.durable_files.contains(f));
                }
                if self.stopping && self.final_save {
                    if self.files_saved() && self.quiescent() {
                        self.finished = true;
                    } else {
                        // Something happened while the last checkpoint was written (a file was
                        // noted, records in a read already in flight were registered and sent):
                        // it is written again once that is settled.
                        self.final_save = false;
                    }
                }
            }
            Err(error) => {
                let message = error.to_string();
                tracing::error!(target_name = %self.cfg.name, "{message}");
                self.stats.error(message.clone());
                self.save_retry.failed(now, &mut self.rng, message);
                if self.stopping && self.final_save {
                    if self.grace_over {
                        // The older checkpoint on disk is still whole, and the records after it
                        // are re-read (and checked) after the restart.
                        self.finished = true;
                    } else {
                        // Try again (after the backoff) until the grace period is over.
                        self.final_save = false;
                    }
                    return;
                }
                if save.durable {
                    self.want_durable = true;
                } else {
                    self.dirty_since.get_or_insert(now);
                }
            }
        }
    }

    /// Queues a registered bad record for the dead-letter file.
    pub(super) fn dead_letter(&mut self, ticket: Ticket) {
        let Some(f) = self.commit.get_mut(ticket) else {
            return;
        };
        f.step = Step::DeadLettering;
        let request = DeadLetterRequest {
            pos: f.pos,
            line: std::mem::take(&mut f.line),
            reason: f.dead.take().unwrap_or_default(),
            key: (!f.key.is_empty()).then(|| f.key.clone()),
            error: f.error.take(),
            maybe_written: f.maybe_sent,
            lost: false,
        };
        self.dead_queue.push((Some(ticket), request));
    }

    pub(super) fn poll_dead_letters(&mut self, now: Now) -> Option<Action<P, S>> {
        if self.dead_queue.is_empty() || !self.dead_busy.is_empty() || !self.dead_retry.may_try(now)
        {
            return None;
        }
        let (tickets, requests): (Vec<_>, Vec<_>) = self.dead_queue.iter().cloned().unzip();
        self.dead_busy = tickets;
        Some(Action::DeadLetter(requests))
    }

    pub(super) fn dead_lettered(&mut self, now: Now, result: Result<(), LocalError>) {
        let batch = std::mem::take(&mut self.dead_busy);
        match result {
            Ok(()) => {
                self.dead_retry.succeeded();
                let written: Vec<_> = self.dead_queue.drain(..batch.len()).collect();
                for (ticket, request) in written {
                    self.stats.dead_lettered += 1;
                    match ticket {
                        Some(ticket) => self.finish(now, ticket),
                        // A lost file's report is on disk: forget the file.
                        None => self.files.retain(|f| *f != request.pos.file),
                    }
                }
            }
            Err(error) => {
                let message = error.to_string();
                tracing::error!(target_name = %self.cfg.name, "{message}");
                self.stats.error(message.clone());
                self.dead_retry.failed(now, &mut self.rng, message);
            }
        }
    }
}
