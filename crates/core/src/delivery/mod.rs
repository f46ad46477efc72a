//! The delivery core: every rule of one target's delivery, as a synchronous state machine.
//!
//! [`Core`] does no I/O and reads no clock. The runner (`daemon::target`) feeds it [`Event`]s with
//! the current time (lines read, answers from Notion, a checkpoint saved, a tick, stop) and performs
//! the [`Action`]s it hands back from [`Core::poll_action`] (read, send, check by key, refresh the
//! token, dead-letter, save a checkpoint). [`Core::next_deadline`] says when to tick it next. The
//! simulator (`tests/sim`) drives the same core with a seeded schedule of faults, so that the rules
//! are checked against millions of interleavings, not only against the scenarios someone thought of.
//!
//! The rules, in one place:
//! - **Window.** A record is dispatched only if it lies within `window` records of the committed
//!   position of the last DURABLE checkpoint, and that checkpoint promised the window. After a crash
//!   the records that may already be rows are the first `window` records after whichever checkpoint
//!   survived: they are checked by key (with dedupe) or counted as possible duplicates.
//! - **Files.** The checkpoint names the file of its position and every later file seen at the
//!   inbox path ([`Checkpoint::next`]). A record is dispatched only once the last durable checkpoint
//!   names its file, so a restart after any number of rotations reads every file in order.
//! - **Commit.** The position moves over the contiguous prefix of finished records only (a row
//!   exists, or its dead-letter entry is on disk).
//! - **Retry.** Nothing transient finishes a record: 429s wait their (capped) `Retry-After`, unknown
//!   outcomes back off and check by key first, a 401 refreshes the token once per token generation,
//!   403/404 pause the target, a failed save or dead-letter write is retried with backoff.
//! - **Person needed.** Only a refused refresh waits for a person (until the token changes).

mod classify;
mod events;
mod flight;
mod save;
mod streak;

use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::backoff::Backoff;
use crate::checkpoint::Checkpoint;
use crate::commit::{Commit, Ticket};
use crate::health::{Health, Stats};
use crate::position::Segment;

pub use events::{
    Action, CoreConfig, DeadLetterRequest, Event, Input, LocalError, NotionErrorInfo,
};
pub use flight::{CheckResult, RefreshResult, SendResult};
use flight::{Flight, Step};

/// Time since the runner started, from its monotonic clock (the simulator's own in tests).
pub type Now = Duration;

/// How often a checkpoint is written at most while records finish.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The longest any record waits for a timer: a `Retry-After` beyond it is capped (the client caps
/// and logs it too; this keeps a hostile value from parking a record whatever the client did).
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);

/// A save being written, and what it promises once it is on disk.
#[derive(Debug)]
struct SaveInFlight<S> {
    durable: bool,
    /// Records committed when it was built.
    committed: u64,
    /// The files it names.
    files: Vec<S>,
}

/// The delivery state machine of one target. See the module docs.
pub struct Core<P, S> {
    cfg: CoreConfig,
    /// What was counted since the runner last took it ([`Core::take_stats`]).
    stats: Stats,
    rng: StdRng,
    /// Every registered record not yet covered by the committed position.
    commit: Commit<Flight<P, S>, S>,
    /// Records registered in this run.
    registered: u64,
    /// Records committed as of the last durable checkpoint (the window is counted from it).
    persisted: u64,
    /// The window the checkpoints of this run promise: this run's and the last run's.
    persisted_window: u32,
    /// Records still to read that lie in the last run's window (they may be rows already).
    unchecked_left: u64,
    /// Whether a durable checkpoint promising `persisted_window` is on disk.
    promised: bool,
    /// The files from the resume position's on, in reading order.
    files: VecDeque<S>,
    /// The files the last durable checkpoint names.
    durable_files: Vec<S>,
    /// Records ready to go out, in order.
    ready: VecDeque<Ticket>,
    /// Records waiting for a time, earliest first.
    timers: BinaryHeap<std::cmp::Reverse<(Now, Ticket)>>,
    /// Requests (send or check) in flight.
    requests: usize,
    caught_up: bool,
    reading: bool,
    /// Dead letters waiting to be written, and the batch being written.
    /// (A report of a lost file has no ticket: it holds no position back.)
    dead_queue: Vec<(Option<Ticket>, DeadLetterRequest<S>)>,
    dead_busy: Vec<Option<Ticket>>,
    dead_retry: Retry,
    saving: Option<SaveInFlight<S>>,
    save_retry: Retry,
    /// A durable save is needed (window held back, a new file, the first promise).
    want_durable: bool,
    /// Finished records not in any checkpoint yet, since when.
    dirty_since: Option<Now>,
    /// An answer said the runner's cached resolution may be stale: [`Action::ForgetResolution`].
    resolution_stale: bool,
    auth: Auth,
    auth_backoff: Backoff,
    /// Why the token could not be refreshed for now (said in the health until a refresh works).
    auth_trouble: Option<String>,
    /// A refresh succeeded and no request has succeeded since (a second 401 then backs off).
    refreshed_since_success: bool,
    /// Notion refuses access to the database: sends wait until then.
    pause_until: Option<Now>,
    /// Why the target is paused; kept until a record gets through.
    pause_message: Option<String>,
    pause_backoff: Backoff,
    /// Notion asked for a long wait (a minute or more); said in the health until a delivery.
    long_wait: Option<String>,
    /// The current run of 429s, warned about once it lasts.
    limited: streak::RateStreak,
    /// A file was lost; said in the health until the next delivery.
    lost: Option<String>,
    read_error: Option<LocalError>,
    stopping: bool,
    grace_over: bool,
    /// The stop's last look at the inbox is in flight / done.
    looking: bool,
    looked: bool,
    final_save: bool,
    finished: bool,
}

/// The token's state.
#[derive(Debug)]
enum Auth {
    Ok,
    /// A refresh is in flight.
    Refreshing {
        sent_with: u64,
    },
    /// A request was refused with generation `sent_with`: refresh it.
    Refresh {
        sent_with: u64,
    },
    /// A refresh failed transiently: try again at `until`, for the generation `sent_with`.
    Retry {
        until: Now,
        sent_with: u64,
    },
    /// The refresh was refused: a person must authorize again.
    Refused(String),
}

/// A retried local write: failures so far, and when to try again.
#[derive(Debug)]
struct Retry {
    backoff: Backoff,
    not_before: Now,
    error: Option<String>,
}

impl Retry {
    fn new() -> Retry {
        Retry {
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(60)),
            not_before: Duration::ZERO,
            error: None,
        }
    }

    fn failed(&mut self, now: Now, rng: &mut StdRng, error: String) {
        let wait = self.backoff.next_delay(rng).max(Duration::from_millis(100));
        self.not_before = now.saturating_add(wait);
        self.error = Some(error);
    }

    fn succeeded(&mut self) {
        self.backoff.reset();
        self.error = None;
    }

    fn may_try(&self, now: Now) -> bool {
        now >= self.not_before
    }
}

impl<P, S: Segment> Core<P, S> {
    /// A core resuming from `loaded` (the checkpoint on disk, if any), with a seeded rng (the
    /// runner seeds it from the OS, the simulator from its schedule).
    pub fn new(cfg: CoreConfig, loaded: Option<&Checkpoint<S>>, seed: u64) -> Core<P, S> {
        let start = loaded.and_then(Checkpoint::position);
        let restart_window = loaded.map_or(0, |c| c.window);
        let mut files: VecDeque<S> = start.iter().map(|p| p.file).collect();
        files.extend(loaded.map(|c| c.next.clone()).unwrap_or_default());
        Core {
            persisted_window: (cfg.window as u32).max(restart_window),
            unchecked_left: u64::from(restart_window),
            cfg,
            stats: Stats::default(),
            rng: StdRng::seed_from_u64(seed),
            commit: Commit::new(start),
            registered: 0,
            persisted: 0,
            promised: false,
            durable_files: files.iter().copied().collect(),
            files,
            ready: VecDeque::new(),
            timers: BinaryHeap::new(),
            requests: 0,
            caught_up: false,
            reading: false,
            dead_queue: Vec::new(),
            dead_busy: Vec::new(),
            dead_retry: Retry::new(),
            saving: None,
            save_retry: Retry::new(),
            want_durable: true,
            dirty_since: None,
            resolution_stale: false,
            auth: Auth::Ok,
            auth_backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
            auth_trouble: None,
            refreshed_since_success: false,
            pause_until: None,
            pause_message: None,
            pause_backoff: Backoff::new(Duration::from_secs(5), Duration::from_secs(300)),
            long_wait: None,
            limited: streak::RateStreak::default(),
            lost: None,
            read_error: None,
            stopping: false,
            grace_over: false,
            looking: false,
            looked: false,
            final_save: false,
            finished: false,
        }
    }

    /// Whether the core is done: stopped, and the last checkpoint written (or given up on).
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Whether a read is in flight.
    pub fn is_reading(&self) -> bool {
        self.reading
    }

    /// Records registered and not committed yet.
    pub fn unfinished(&self) -> usize {
        self.commit.len()
    }

    /// Whether nothing is left to do but wait for input: every record committed, no dead letter
    /// (a loss report included, which holds no position back) waiting to be written, no save in
    /// flight or waiting for a retry, no request out. A core can have nothing unfinished and still
    /// owe a retried write: this is the end condition, not [`Core::unfinished`].
    pub fn settled(&self) -> bool {
        self.commit.is_empty()
            && self.requests == 0
            && self.dead_queue.is_empty()
            && self.dead_busy.is_empty()
            && self.saving.is_none()
            && self.save_retry.error.is_none()
            && self.dead_retry.error.is_none()
    }

    /// Whether the target is quiet at `now`: settled, no read in flight and no timer set. A
    /// runner that finds it quiet, with a tailer that has nothing left to read, at every look for
    /// a while closes it ([`crate::dormancy::Looks::idle_for`]).
    pub fn quiet(&self, now: Now) -> bool {
        self.settled() && !self.reading && self.next_deadline(now).is_none()
    }

    /// Whether the last durable checkpoint names every file the core knows of. Until it does, a
    /// crash forgets the newer files: a file rotated away in that time is not read after the
    /// restart (README: the one window in which a rotation can be missed; milliseconds, unless the
    /// state disk is full).
    pub fn files_saved(&self) -> bool {
        self.files.iter().all(|f| self.durable_files.contains(f))
    }

    /// A one-line summary of the core's state, for diagnostics (the simulator prints it).
    pub fn summary(&self) -> String {
        let inos = |files: &mut dyn Iterator<Item = &S>| {
            files.map(Segment::key_prefix).collect::<Vec<_>>()
        };
        format!(
            "requests {} registered {} persisted {} unfinished {} files {:?} durable {:?} want_durable {} stopping {} final_save {} auth {:?} pause {:?}",
            self.requests,
            self.registered,
            self.persisted,
            self.commit.len(),
            inos(&mut self.files.iter()),
            inos(&mut self.durable_files.iter()),
            self.want_durable,
            self.stopping,
            self.final_save,
            self.auth,
            self.pause_until,
        )
    }

    /// The files the checkpoint would name now, in reading order.
    #[cfg(test)]
    pub fn files(&self) -> impl Iterator<Item = &S> {
        self.files.iter()
    }

    /// When, after `now`, the core next wants a [`Event::Tick`], if ever. Never `now` or earlier:
    /// the runner sleeps until it, and what was due by `now` was handed out by
    /// [`Core::poll_action`] already or waits for an event (a save in flight, say), not for time.
    pub fn next_deadline(&self, now: Now) -> Option<Now> {
        let mut at: Option<Now> = None;
        let mut consider = |t: Now| {
            if t > now {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        };
        if let Some(std::cmp::Reverse((t, _))) = self.timers.peek() {
            consider(*t);
        }
        if let Some(since) = self.dirty_since {
            consider(since.saturating_add(CHECKPOINT_EVERY));
        }
        if self.save_retry.error.is_some() {
            consider(self.save_retry.not_before);
        }
        if self.dead_retry.error.is_some() && !self.dead_queue.is_empty() {
            consider(self.dead_retry.not_before);
        }
        if let Auth::Retry { until, .. } = self.auth {
            consider(until);
        }
        if let Some(until) = self.pause_until {
            consider(until);
        }
        at
    }

    /// Feeds one event in.
    pub fn handle(&mut self, now: Now, event: Event<P, S>) {
        match event {
            Event::Read { inputs, caught_up } => {
                self.reading = false;
                self.read_error = None;
                self.caught_up = caught_up;
                self.register(now, inputs);
            }
            Event::ReadFailed(error) => {
                self.reading = false;
                self.caught_up = true;
                if self.read_error.as_ref() != Some(&error) {
                    // The health it leads to is logged as an error when it changes.
                    tracing::debug!(target_name = %self.cfg.name, "{error}");
                    self.stats.error(error.to_string());
                }
                self.read_error = Some(error);
            }
            Event::Observed(inputs) => self.register(now, inputs),
            Event::Looked(inputs) => {
                debug_assert!(self.looking, "a look answered that was not asked for");
                self.looking = false;
                self.looked = true;
                self.register(now, inputs);
            }
            Event::Wake => self.caught_up = false,
            Event::Sent(ticket, reply) => {
                let result = self.classify_send(reply);
                self.sent(now, ticket, result);
            }
            Event::Checked(ticket, reply) => {
                let result = self.classify_check(reply);
                self.checked(now, ticket, result);
            }
            Event::Refreshed(result) => self.refreshed(now, result),
            Event::TokenChanged => {
                if matches!(self.auth, Auth::Refused(_) | Auth::Retry { .. }) {
                    tracing::info!(target_name = %self.cfg.name, "the token changed; trying it");
                    self.auth = Auth::Ok;
                    self.auth_trouble = None;
                    self.auth_backoff.reset();
                }
            }
            Event::DeadLettered(result) => self.dead_lettered(now, result),
            Event::Saved(result) => self.saved(now, result),
            Event::Tick => {}
            Event::Stop => self.stopping = true,
            Event::GraceOver => {
                if self.requests > 0 {
                    tracing::warn!(target_name = %self.cfg.name, in_flight = self.requests,
                        "shutdown grace period over; unfinished records will be sent again after restart");
                }
                self.stopping = true;
                self.grace_over = true;
                self.requests = 0;
            }
        }
        self.fire_timers(now);
    }

    /// The next thing to do, if any. Call until `None` after each [`Core::handle`].
    pub fn poll_action(&mut self, now: Now) -> Option<Action<P, S>> {
        self.fire_timers(now);
        if std::mem::take(&mut self.resolution_stale) {
            return Some(Action::ForgetResolution);
        }
        if let Some(look) = self.poll_last_look() {
            return Some(look);
        }
        if let Some(save) = self.poll_save(now) {
            return Some(save);
        }
        if let Some(dead) = self.poll_dead_letters(now) {
            return Some(dead);
        }
        if self.finished || self.grace_over {
            return None;
        }
        // While stopping, what was read is still delivered until the grace period is over.
        if let Some(refresh) = self.poll_refresh(now) {
            return Some(refresh);
        }
        if let Some(send) = self.poll_send(now) {
            return Some(send);
        }
        if self.stopping {
            return None;
        }
        self.poll_read()
    }

    /// The room in the window: how many more records may be registered.
    fn room(&self) -> u64 {
        let limit = self.persisted + self.cfg.window as u64;
        debug_assert!(
            self.registered <= limit,
            "{} records registered, over the window of the durable checkpoint ({limit})",
            self.registered
        );
        limit.saturating_sub(self.registered)
    }

    fn committed_count(&self) -> u64 {
        self.registered - self.commit.len() as u64
    }

    fn poll_read(&mut self) -> Option<Action<P, S>> {
        let room = self.room();
        if self.reading || self.caught_up || room == 0 || !self.promised {
            return None;
        }
        self.reading = true;
        Some(Action::Read {
            max_items: room as usize,
        })
    }

    /// Registers what was read: records become flights, bad lines dead letters.
    fn register(&mut self, now: Now, inputs: Vec<Input<P, S>>) {
        for input in inputs {
            let (pos, flight) = match input {
                Input::Queued(file) => {
                    self.note_file(file);
                    continue;
                }
                Input::Order(order) => {
                    self.reorder(order);
                    continue;
                }
                Input::Record {
                    pos,
                    key,
                    payload,
                    line,
                } => (pos, Flight::record(key, pos, payload, line)),
                Input::Bad { pos, line, reason } => (pos, Flight::bad(pos, line, reason)),
                Input::Lost {
                    file,
                    offset,
                    reason,
                } => {
                    self.lost_file(file, offset, reason);
                    continue;
                }
            };
            self.note_file(pos.file);
            self.registered += 1;
            let mut flight = flight;
            if self.unchecked_left > 0 {
                self.unchecked_left -= 1;
                flight.maybe_sent = true;
            }
            let is_bad = flight.dead.is_some();
            let ticket = self.commit.begin(pos, flight);
            // The reader hands out no more than the room it was given.
            debug_assert!(
                self.registered <= self.persisted + self.cfg.window as u64,
                "a read handed out more records than the window's room"
            );
            if is_bad {
                self.dead_letter(ticket);
            } else {
                let f = self.commit.get_mut(ticket).expect("just registered");
                // An earlier run may have created it: ask Notion first (once queries caught up),
                // or, without dedupe, count and warn of a possible duplicate when it is sent.
                f.check_first = f.maybe_sent;
                if f.maybe_sent && self.cfg.dedupe_property.is_some() {
                    f.step = Step::Timer;
                    let due = now.saturating_add(self.cfg.settle);
                    f.due = due;
                    self.timers.push(std::cmp::Reverse((due, ticket)));
                } else {
                    self.ready.push_back(ticket);
                }
            }
        }
    }

    /// Forgets the files before the position's file in the reading order: the position has
    /// moved past them.
    fn prune_files(&mut self) {
        if let Some(pos) = self.commit.resume_position()
            && let Some(i) = self.files.iter().position(|f| *f == pos.file)
        {
            self.files.drain(..i);
        }
    }

    /// Takes the tailer's order for the files it holds: they keep the places they have in the
    /// reading order, filled in the tailer's order (a file rewritten in place has a new identity
    /// but is read where the old one was). Files the tailer does not hold (read already, or named
    /// by the checkpoint and not found) keep their places.
    fn reorder(&mut self, order: Vec<S>) {
        for file in &order {
            self.note_file(*file);
        }
        let slots: Vec<S> = order.clone();
        let mut held = order.into_iter();
        for slot in self.files.iter_mut() {
            if slots.contains(slot) {
                *slot = held.next().expect("one slot per held file");
            }
        }
    }

    /// Adds a file to the reading order; a file the durable checkpoint does not name needs one.
    fn note_file(&mut self, file: S) {
        if !self.files.contains(&file) {
            self.files.push_back(file);
        }
        if !self.durable_files.contains(&file) {
            self.want_durable = true;
        }
    }

    /// Whether a record of `file` may go out: the durable checkpoint names it.
    fn file_promised(&self, file: &S) -> bool {
        self.durable_files.contains(file)
    }

    /// Moves records whose time has come to the ready queue.
    fn fire_timers(&mut self, now: Now) {
        while let Some(std::cmp::Reverse((due, ticket))) = self.timers.peek().copied() {
            if due > now {
                break;
            }
            self.timers.pop();
            if let Some(f) = self.commit.get_mut(ticket)
                && matches!(f.step, Step::Timer)
                && f.due == due
            {
                f.step = Step::Ready;
                self.ready.push_back(ticket);
            }
        }
        // Try again; the pause message stays until a record gets through.
        if self.pause_until.is_some_and(|until| until <= now) {
            self.pause_until = None;
        }
        if let Auth::Retry { until, sent_with } = self.auth
            && until <= now
        {
            self.auth = Auth::Refresh { sent_with };
        }
    }

    /// Puts a finished record's ticket through the commit.
    fn finish(&mut self, now: Now, ticket: Ticket) {
        if self.commit.finish(ticket) {
            self.dirty_since.get_or_insert(now);
            self.prune_files();
        }
    }

    /// The health the target shows, worst first: [`Health::Ok`], [`Health::Paused`] or
    /// [`Health::NeedsAuthorization`] (the others are the runner's).
    pub fn health(&self) -> Health {
        let name = &self.cfg.name;
        if let Some(e) = self
            .save_retry
            .error
            .as_ref()
            .or(self.dead_retry.error.as_ref())
        {
            return Health::Paused(format!(
                "target {name}: state disk trouble, retrying by itself: {e}"
            ));
        }
        match &self.auth {
            Auth::Refused(m) => return Health::NeedsAuthorization(m.clone()),
            Auth::Ok => {}
            _ => {
                if let Some(m) = &self.auth_trouble {
                    return Health::Paused(m.clone());
                }
            }
        }
        if let Some(m) = self.pause_message.as_ref().or(self.long_wait.as_ref()) {
            return Health::Paused(m.clone());
        }
        if let Some(e) = &self.read_error {
            return Health::Paused(e.to_string());
        }
        if let Some(m) = &self.lost {
            return Health::Paused(m.clone());
        }
        Health::Ok
    }

    /// What was counted since the last call, and the last error met. Handing out actions counts
    /// too (a possible duplicate is counted as it is sent), so the runner takes this after
    /// [`Core::poll_action`] has returned `None`, adds it to the target's counters and stamps the
    /// time.
    pub fn take_stats(&mut self) -> Stats {
        std::mem::take(&mut self.stats)
    }
}

#[cfg(test)]
mod tests;
