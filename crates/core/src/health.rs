//! What the core reports about its target, as values: the health it is in, and what it counted.
//! The runner publishes both (to `status`, the metrics and the log) and stamps their times.

use serde::Serialize;

/// Whether a target is sending, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "message", rename_all = "snake_case")]
pub enum Health {
    /// Starting up: reading the checkpoint, loading the token, resolving the database.
    Starting,
    /// Delivering (or idle and ready).
    Ok,
    /// Nothing to deliver since the daemon started: not prepared (no request to Notion, no open
    /// inbox) until its inbox changes. Whether its token and database work is known at its first
    /// record, or now with `notion-inbox check`.
    Idle,
    /// Notion refused the token and it cannot be refreshed: waits for `authorize` to write a new one.
    NeedsAuthorization(String),
    /// The database is not reachable (not shared, deleted, missing capability): retries slowly.
    Paused(String),
    /// Stopped until someone acts (a corrupt checkpoint, a mapping that does not fit the schema).
    Stopped(String),
}

/// What the core counted since the runner last took them ([`crate::delivery::Core::take_stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Rows created in Notion.
    pub delivered: u64,
    /// Rows found already present by key after an unknown outcome (counted as delivered too).
    pub found_existing: u64,
    /// Records whose dead-letter entry was written.
    pub dead_lettered: u64,
    /// Requests Notion answered with 429 or 529.
    pub rate_limited: u64,
    /// Requests whose outcome is unknown (5xx, timeout, connection lost).
    pub outcome_unknown: u64,
    /// Records sent again without a way to check they were not created (no dedupe property).
    pub possible_duplicates: u64,
    /// Other retries (auth refreshes, pauses).
    pub retried: u64,
    /// The last error met, for `status` (the runner stamps its time).
    pub last_error: Option<String>,
}

impl Stats {
    /// Remembers `message` as the last error.
    pub(crate) fn error(&mut self, message: String) {
        self.last_error = Some(message);
    }

    /// Adds `other`'s counts to these; its error, if any, becomes the last.
    pub fn absorb(&mut self, other: Stats) {
        self.delivered += other.delivered;
        self.found_existing += other.found_existing;
        self.dead_lettered += other.dead_lettered;
        self.rate_limited += other.rate_limited;
        self.outcome_unknown += other.outcome_unknown;
        self.possible_duplicates += other.possible_duplicates;
        self.retried += other.retried;
        if other.last_error.is_some() {
            self.last_error = other.last_error;
        }
    }
}
