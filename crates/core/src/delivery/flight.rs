//! One record's way from read to finished, and the target-wide reactions to Notion's answers
//! (pause on 403/404, refresh on 401): the part of [`Core`] that acts on outcomes.

use std::sync::Arc;
use std::time::Duration;

use super::NotionErrorInfo;
use super::{Action, Auth, Core, Now};
use crate::backoff::Backoff;
use crate::commit::Ticket;
use crate::position::{LinePos, Segment};

/// How a page create ended, as [`Core`] read the answer.
#[derive(Debug, Clone, PartialEq)]
pub enum SendResult {
    /// The row exists.
    Created,
    /// Not created (429, 529, or never sent): send again after this wait.
    Wait(Duration),
    /// The row may or may not exist (5xx, timeout, reset after sending).
    Unknown(String),
    /// Notion refused the token the request was sent with (that token's generation).
    Unauthorized {
        /// The generation of the token the request carried.
        generation: u64,
        /// Notion's message.
        error: String,
    },
    /// Notion refuses access to the database (403, 404): the whole target pauses.
    Unreachable(String),
    /// Notion refused the record for good: dead-letter it.
    Invalid {
        /// Why, and the fix.
        reason: String,
        /// What Notion said.
        error: NotionErrorInfo,
    },
}

/// How a check by key ended.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckResult {
    /// A row with the key exists.
    Found,
    /// No row with the key (after the settle delay): create it.
    Absent,
    /// Rate-limited: ask again after this wait.
    Wait(Duration),
    /// A transient failure: ask again after a backoff.
    Failed(String),
    /// The token was refused (its generation).
    Unauthorized {
        /// The generation of the token the request carried.
        generation: u64,
        /// Notion's message.
        error: String,
    },
    /// The query itself is wrong (400: the dedupe property was deleted or changed type): the
    /// target pauses until it is fixed.
    Broken(String),
}

/// How a token refresh ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshResult {
    /// A new token is in use (or another caller already had one).
    Ok,
    /// The token endpoint failed for now (network, 5xx, a lost answer): try again later.
    Transient(String),
    /// A file on this machine that the refresh needs cannot be used (the client secret's file is
    /// open to others, say): try again soon, as the file is read again at each attempt and no
    /// request reaches Notion before it loads; the message says the fix.
    Local(String),
    /// The refresh was refused (`invalid_grant`, no refresh token): a person must authorize.
    Refused(String),
}

/// The longest wait between two refreshes held up by a local file ([`RefreshResult::Local`]):
/// an attempt only reads files, so the fix is picked up within this time.
pub(super) const LOCAL_REFRESH_RETRY_CAP: Duration = Duration::from_secs(10);

/// Where a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// In the ready queue.
    Ready,
    /// Waiting for [`Flight::due`].
    Timer,
    /// A create is in flight.
    Sending,
    /// A check by key is in flight.
    Checking,
    /// Queued for, or being written to, the dead-letter file.
    DeadLettering,
}

/// A registered record that is not finished yet.
#[derive(Debug)]
pub(super) struct Flight<P, S> {
    pub key: String,
    pub pos: LinePos<S>,
    pub payload: Option<Arc<P>>,
    /// The original line (kept for the dead-letter file).
    pub line: Vec<u8>,
    /// Whether an earlier run may have created it (it lies in that run's window).
    pub maybe_sent: bool,
    /// Whether to check by key (or count a possible duplicate) before the next create.
    pub check_first: bool,
    pub step: Step,
    /// When a [`Step::Timer`] fires.
    pub due: Now,
    /// Backoff after unknown outcomes and failed checks.
    pub backoff: Backoff,
    /// Set when it goes to the dead-letter file: why.
    pub dead: Option<String>,
    /// What Notion said, when Notion refused it.
    pub error: Option<NotionErrorInfo>,
}

impl<P, S: Segment> Flight<P, S> {
    fn new(
        key: String,
        pos: LinePos<S>,
        payload: Option<Arc<P>>,
        line: Vec<u8>,
        step: Step,
    ) -> Flight<P, S> {
        Flight {
            key,
            pos,
            payload,
            line,
            maybe_sent: false,
            check_first: false,
            step,
            due: Duration::ZERO,
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(60)),
            dead: None,
            error: None,
        }
    }

    /// A record to send.
    pub(super) fn record(key: String, pos: LinePos<S>, payload: P, line: Vec<u8>) -> Flight<P, S> {
        Flight::new(key, pos, Some(Arc::new(payload)), line, Step::Ready)
    }

    /// A line for the dead-letter file.
    pub(super) fn bad(pos: LinePos<S>, line: Vec<u8>, reason: String) -> Flight<P, S> {
        let mut f = Flight::new(String::new(), pos, None, line, Step::DeadLettering);
        f.dead = Some(reason);
        f
    }
}

impl<P, S: Segment> Core<P, S> {
    /// The next create or check to send, if the window, the token and the pause allow one.
    pub(super) fn poll_send(&mut self, _now: Now) -> Option<Action<P, S>> {
        if !self.promised || !matches!(self.auth, Auth::Ok) || self.pause_until.is_some() {
            return None;
        }
        while let Some(&ticket) = self.ready.front() {
            let promised = match self.commit.get_mut(ticket) {
                Some(f) if f.step == Step::Ready => f.pos.file,
                _ => {
                    self.ready.pop_front();
                    continue;
                }
            };
            if !self.file_promised(&promised) {
                // Its file is not in the durable checkpoint yet (`want_durable` is set).
                return None;
            }
            self.ready.pop_front();
            // The window: only records within it of the last durable checkpoint, which
            // promised it, go out (a crash then leaves at most the window to check).
            debug_assert!(
                self.promised && ticket.index() < self.persisted + u64::from(self.persisted_window),
                "a record dispatched outside the durable checkpoint's window"
            );
            let dedupe = self.cfg.dedupe_property.is_some();
            let name = self.cfg.name.clone();
            let f = self.commit.get_mut(ticket).expect("checked above");
            self.requests += 1;
            if f.check_first && dedupe {
                f.step = Step::Checking;
                return Some(Action::Check {
                    ticket,
                    key: f.key.clone(),
                });
            }
            if f.check_first {
                tracing::warn!(target_name = %name, offset = f.pos.offset, key = %f.key,
                    "possible duplicate: sending a record whose earlier attempt may have created a row; set dedupe_property for effectively-once delivery");
                self.stats.possible_duplicates += 1;
                f.check_first = false;
            }
            f.step = Step::Sending;
            let payload = f.payload.clone().expect("records have a payload");
            return Some(Action::Send { ticket, payload });
        }
        None
    }

    /// The refresh to start, if a request was refused.
    pub(super) fn poll_refresh(&mut self, _now: Now) -> Option<Action<P, S>> {
        let Auth::Refresh { sent_with } = self.auth else {
            return None;
        };
        self.auth = Auth::Refreshing { sent_with };
        Some(Action::Refresh { sent_with })
    }

    /// Takes a request's answer for `ticket`: the flight, if it was waiting for one.
    fn answered(&mut self, ticket: Ticket, step: Step) -> bool {
        if self.grace_over {
            return false;
        }
        match self.commit.get_mut(ticket) {
            Some(f) if f.step == step => {
                debug_assert!(self.requests > 0, "an answer with no request counted out");
                self.requests = self.requests.saturating_sub(1);
                true
            }
            _ => false,
        }
    }

    /// Puts `ticket` back to wait for `wait` (capped: a hostile Retry-After cannot park it).
    fn retry_in(&mut self, now: Now, ticket: Ticket, wait: Duration) {
        let due = now.saturating_add(wait.min(super::MAX_WAIT));
        if let Some(f) = self.commit.get_mut(ticket) {
            f.step = Step::Timer;
            f.due = due;
            self.timers.push(std::cmp::Reverse((due, ticket)));
        }
    }

    /// Puts `ticket` first in the ready queue (it keeps its place in the order).
    fn retry_now(&mut self, ticket: Ticket) {
        if let Some(f) = self.commit.get_mut(ticket) {
            f.step = Step::Ready;
            self.ready.push_front(ticket);
        }
    }

    /// A wait of a minute or more is worth telling the operator (it shows in the health until a
    /// record gets through).
    fn note_long_wait(&mut self, wait: Duration) {
        if wait >= Duration::from_secs(60) {
            let capped = wait.min(super::MAX_WAIT);
            let mut message = format!(
                "target {}: Notion asked to wait {} before the next request (Retry-After)",
                self.cfg.name,
                humantime::format_duration(Duration::from_secs(capped.as_secs()))
            );
            if wait >= super::MAX_WAIT {
                message.push_str(", the longest wait accepted (a longer Retry-After is capped)");
            }
            self.long_wait = Some(message);
        }
    }

    fn backoff(&mut self, ticket: Ticket) -> Duration {
        let rng = &mut self.rng;
        self.commit
            .get_mut(ticket)
            .map_or(Duration::from_secs(1), |f| f.backoff.next_delay(rng))
    }

    /// A row exists for `ticket`.
    fn delivered(&mut self, now: Now, ticket: Ticket) {
        self.stats.delivered += 1;
        if self.limited.succeeded(now) {
            tracing::info!(target_name = %self.cfg.name, "Notion has stopped answering 429");
        }
        self.pause_message = None;
        self.long_wait = None;
        self.lost = None;
        self.pause_backoff.reset();
        self.auth_backoff.reset();
        self.refreshed_since_success = false;
        if let Some(f) = self.commit.get_mut(ticket) {
            f.payload = None;
            f.line = Vec::new();
        }
        self.finish(now, ticket);
    }

    pub(super) fn sent(&mut self, now: Now, ticket: Ticket, result: SendResult) {
        if !self.answered(ticket, Step::Sending) {
            return;
        }
        let name = self.cfg.name.clone();
        match result {
            SendResult::Created => self.delivered(now, ticket),
            SendResult::Wait(wait) => {
                self.stats.rate_limited += 1;
                if let Some(lasted) = self.limited.limited(now) {
                    let message = format!(
                        "target {name}: Notion has answered 429 (rate limited) for {}; rows still go out, more slowly. Other clients of this workspace or integration share its rate limit: lower [notion] requests_per_second, or find who else sends",
                        humantime::format_duration(Duration::from_secs(lasted.as_secs()))
                    );
                    tracing::warn!(target_name = %name, "{message}");
                    self.stats.error(message);
                }
                self.note_long_wait(wait);
                self.retry_in(now, ticket, wait);
            }
            SendResult::Unknown(error) => {
                self.stats.outcome_unknown += 1;
                let mut wait = self.backoff(ticket);
                if self.cfg.dedupe_property.is_some() {
                    // Queries lag behind writes: ask only after the settle delay.
                    wait = wait.max(self.cfg.settle);
                }
                let f = self.commit.get_mut(ticket).expect("answered");
                f.check_first = true;
                let offset = f.pos.offset;
                tracing::warn!(target_name = %name, offset, "outcome unknown ({error}); checking and resending in {wait:?}");
                self.stats.error(format!("offset {offset}: {error}"));
                self.retry_in(now, ticket, wait);
            }
            SendResult::Unauthorized { generation, error } => {
                self.unauthorized(now, generation, &error);
                self.retry_now(ticket);
            }
            SendResult::Unreachable(error) => {
                self.unreachable(now, &error);
                self.retry_now(ticket);
            }
            SendResult::Invalid { reason, error } => {
                let f = self.commit.get_mut(ticket).expect("answered");
                f.dead = Some(reason);
                f.error = Some(error);
                f.payload = None;
                self.dead_letter(ticket);
            }
        }
    }

    pub(super) fn checked(&mut self, now: Now, ticket: Ticket, result: CheckResult) {
        if !self.answered(ticket, Step::Checking) {
            return;
        }
        let name = self.cfg.name.clone();
        match result {
            CheckResult::Found => {
                let f = self.commit.get_mut(ticket).expect("answered");
                tracing::info!(target_name = %name, offset = f.pos.offset, key = %f.key,
                    "row already in Notion after an unknown outcome; not creating it again");
                self.stats.found_existing += 1;
                self.delivered(now, ticket);
            }
            CheckResult::Absent => {
                self.commit.get_mut(ticket).expect("answered").check_first = false;
                self.retry_now(ticket);
            }
            CheckResult::Wait(wait) => {
                self.stats.rate_limited += 1;
                self.note_long_wait(wait);
                self.retry_in(now, ticket, wait);
            }
            CheckResult::Failed(error) => {
                self.stats.retried += 1;
                let wait = self.backoff(ticket);
                tracing::warn!(target_name = %name, "cannot check whether the row exists yet ({error}); asking again in {wait:?}");
                self.retry_in(now, ticket, wait);
            }
            CheckResult::Unauthorized { generation, error } => {
                self.unauthorized(now, generation, &error);
                self.retry_now(ticket);
            }
            CheckResult::Broken(error) => {
                self.unreachable(now, &error);
                self.retry_now(ticket);
            }
        }
    }

    /// A request was refused with the token of `generation`: refresh it (once per generation; a
    /// second refusal right after a refresh waits a backoff first).
    fn unauthorized(&mut self, now: Now, generation: u64, error: &str) {
        self.stats.retried += 1;
        if !matches!(self.auth, Auth::Ok) {
            return;
        }
        tracing::info!(target_name = %self.cfg.name, "Notion refused the token ({error}); refreshing it");
        if self.refreshed_since_success {
            let wait = self.auth_backoff.next_delay(&mut self.rng);
            self.auth = Auth::Retry {
                until: now.saturating_add(wait),
                sent_with: generation,
            };
        } else {
            self.auth = Auth::Refresh {
                sent_with: generation,
            };
        }
    }

    /// Notion refuses access to the database: pause every send of the target for a slow backoff.
    fn unreachable(&mut self, now: Now, error: &str) {
        self.stats.retried += 1;
        if self.pause_until.is_some() {
            return;
        }
        let wait = self
            .pause_backoff
            .next_delay(&mut self.rng)
            .max(Duration::from_secs(1));
        self.pause_until = Some(now.saturating_add(wait));
        let name = &self.cfg.name;
        self.pause_message = Some(format!(
            "target {name}: {error}; share the database with the integration (or re-run `notion-inbox authorize --target {name}` and pick it), \
             or fix database_id; retrying by itself (next in {wait:?})"
        ));
    }

    /// A refresh failed but may work later: says why in the health and tries again after `wait`
    /// (at least a second).
    fn refresh_later(&mut self, now: Now, sent_with: u64, wait: Duration, error: &str, then: &str) {
        self.stats.retried += 1;
        let wait = wait.max(Duration::from_secs(1));
        let cause = format!(
            "target {}: the token could not be refreshed for now ({error}); {then}",
            self.cfg.name
        );
        let message = format!("{cause} (next in {wait:?})");
        // Said once as a warning; the retries of the same trouble only at debug.
        if self
            .auth_trouble
            .as_deref()
            .is_some_and(|m| m.starts_with(&cause))
        {
            tracing::debug!(target_name = %self.cfg.name, "{message}");
        } else {
            tracing::warn!(target_name = %self.cfg.name, "{message}");
        }
        self.stats.error(message.clone());
        self.auth_trouble = Some(message);
        self.auth = Auth::Retry {
            until: now.saturating_add(wait),
            sent_with,
        };
    }

    pub(super) fn refreshed(&mut self, now: Now, result: RefreshResult) {
        let Auth::Refreshing { sent_with } = self.auth else {
            return;
        };
        match result {
            RefreshResult::Ok => {
                self.auth = Auth::Ok;
                self.auth_trouble = None;
                self.refreshed_since_success = true;
            }
            RefreshResult::Transient(error) => {
                let wait = self.auth_backoff.next_delay(&mut self.rng);
                self.refresh_later(now, sent_with, wait, &error, "retrying by itself");
            }
            RefreshResult::Local(error) => {
                let wait = self
                    .auth_backoff
                    .next_delay(&mut self.rng)
                    .min(LOCAL_REFRESH_RETRY_CAP);
                self.refresh_later(
                    now,
                    sent_with,
                    wait,
                    &error,
                    "retrying by itself once fixed",
                );
            }
            RefreshResult::Refused(message) => self.auth = Auth::Refused(message),
        }
    }
}
