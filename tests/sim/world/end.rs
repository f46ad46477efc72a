//! The end of a schedule: the faults stop, everything is finished, and the invariants are checked
//! against the simulated Notion and the dead-letter file.

use std::collections::BTreeMap;

use notion_inbox::state::deadletter::read_all;
use notion_inbox_core::delivery::Event;
use rand::Rng;

use super::{Kind, Req, World};

impl World {
    // ---- the end ------------------------------------------------------------------------------

    /// Stops the faults and runs until everything is finished.
    pub(super) fn settle_down(&mut self) {
        self.faults = false;
        self.disk_full = false;
        if let Some(rest) = self.partial.take() {
            self.append(&rest);
        }
        if self.notion.void || self.notion.expired {
            self.reauthorize();
        }
        let mut quiet = 0;
        for round in 0..20_000 {
            if round % 50 == 49 {
                // A refused token waits for a person; here one comes by.
                self.reauthorize();
            }
            if self.dormant.is_some() {
                // A closed target wakes by its own looks only.
                if self.dormant_and_done() {
                    return;
                }
                self.dormant_wait();
                continue;
            }
            if !self.pending.is_empty() {
                let i = self.rng.random_range(0..self.pending.len());
                let req = self.pending.swap_remove(i);
                let event = self.answer(req);
                self.feed(event);
                continue;
            }
            if self.core().settled() && self.everything_read() {
                quiet += 1;
                if quiet > 3 {
                    return;
                }
            } else {
                quiet = 0;
            }
            self.observe();
            self.feed(Event::Wake);
            self.advance();
            self.maybe_finish_stop();
        }
        if self.dormant.is_some() {
            panic!(
                "a closed target with records to deliver did not wake after the faults stopped (seed {}): {:?}",
                self.seed, self.dormant
            );
        }
        eprintln!("core: {}", self.core().summary());
        let unfinished = self.core().unfinished();
        let backlog = self.tailer.as_ref().map(|t| t.backlog());
        let health = self.core().health();
        panic!(
            "did not finish after the faults stopped (seed {}): {unfinished} unfinished, requests out: {}, backlog {backlog:?}, partial {:?}, health {:?}",
            self.seed,
            self.pending
                .iter()
                .map(|r| match r {
                    Req::Send { .. } => "send",
                    Req::Check { .. } => "check",
                    Req::Refresh { .. } => "refresh",
                    Req::Read { .. } => "read",
                    Req::Look => "look",
                    Req::Save { .. } => "save",
                    Req::Dead(_) => "dead",
                })
                .collect::<Vec<_>>()
                .join(","),
            self.partial,
            health
        );
    }

    pub(super) fn check(&mut self) {
        let dead = read_all(&self.dead_path).unwrap();
        let lost = dead.iter().filter(|d| d.lost).count();
        let mut rows: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, tweet, _) in &self.notion.rows {
            *rows.entry(tweet.as_str()).or_default() += 1;
        }
        assert!(
            !rows.contains_key("secret") && !dead.iter().any(|d| d.line.contains("secret")),
            "a line of the file a planted symlink points at was read (seed {})",
            self.seed
        );
        let mut extra = 0;
        for (id, (kind, file)) in &self.lines {
            let dead_entries = dead
                .iter()
                .filter(|d| {
                    d.line == *id
                        || (d.line.contains(&format!("\"{id}\"")) && *kind == Kind::Reject)
                })
                .count();
            let n = rows.get(id.as_str()).copied().unwrap_or(0);
            let in_deleted =
                self.deleted.get(*file).copied().unwrap_or(false) || self.lost_ok.contains(file);
            let (seed, crashes) = (self.seed, self.crashes);
            let ctx = format!(
                "line {id:?} ({kind:?}) in file {file} (deleted {in_deleted}), seed {seed}, {crashes} crashes, {lost} lost entries"
            );
            match kind {
                Kind::Record => {
                    if n == 0
                        && !self.stop_window.contains(file)
                        && !(self.unseen_ok.contains(file) && in_deleted)
                    {
                        assert!(in_deleted && lost > 0, "lost without a trace: {ctx}");
                    }
                    if self.dedupe {
                        assert!(n <= 1, "{n} rows with dedupe: {ctx}");
                    }
                    extra += n.saturating_sub(1);
                    assert_eq!(dead_entries, 0, "a delivered record dead-lettered: {ctx}");
                }
                Kind::Reject | Kind::Bad => {
                    assert_eq!(n, 0, "a refused line became a row: {ctx}");
                    if dead_entries == 0
                        && !self.stop_window.contains(file)
                        && !(self.unseen_ok.contains(file) && in_deleted)
                    {
                        assert!(in_deleted && lost > 0, "lost without a trace: {ctx}");
                    }
                    assert!(dead_entries <= 1, "{dead_entries} dead letters: {ctx}");
                }
            }
        }
        // Each refusal a stale view explains asks for the cached resolution to be dropped (several
        // before the next poll ask once).
        let refusals = self.notion.refusals;
        assert!(
            (refusals == 0) == (self.forgotten == 0) && self.forgotten <= refusals,
            "{refusals} refusals, the resolution forgotten {} times (seed {})",
            self.forgotten,
            self.seed
        );
        let warned = self.stats.possible_duplicates as usize;
        assert!(
            extra <= warned,
            "{extra} duplicate rows but {warned} possible-duplicate warnings (seed {})",
            self.seed
        );
    }
}
