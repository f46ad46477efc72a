//! A target's live health and counters, shared by its tasks, the progress log, `STATUS=` lines and
//! the status file.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::watch;

/// Whether a target is sending, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "message", rename_all = "snake_case")]
pub enum Health {
    /// Starting up: reading the checkpoint, loading the token, resolving the database.
    Starting,
    /// Delivering (or idle and ready).
    Ok,
    /// Notion refused the token and it cannot be refreshed: waits for `authorize` to write a new one.
    NeedsAuthorization(String),
    /// The database is not reachable (not shared, deleted, missing capability): retries slowly.
    Paused(String),
    /// Stopped until someone acts (a corrupt checkpoint, a mapping that does not fit the schema).
    Stopped(String),
}

impl Health {
    /// Whether senders may send.
    pub fn may_send(&self) -> bool {
        matches!(self, Health::Ok | Health::Paused(_))
    }
}

/// Counters of one target, since the daemon started.
#[derive(Debug, Default)]
pub struct Counters {
    /// Rows created in Notion.
    pub delivered: AtomicU64,
    /// Rows found already present by key after an unknown outcome (counted as delivered too).
    pub found_existing: AtomicU64,
    /// Records written to the dead-letter file.
    pub dead_lettered: AtomicU64,
    /// Requests Notion answered with 429 or 529.
    pub rate_limited: AtomicU64,
    /// Requests whose outcome is unknown (5xx, timeout, connection lost).
    pub outcome_unknown: AtomicU64,
    /// Records sent again without a way to check they were not created (no dedupe_property).
    pub possible_duplicates: AtomicU64,
    /// Other retries (auth refreshes, pauses).
    pub retried: AtomicU64,
    /// Creates currently in flight.
    pub in_flight: AtomicU64,
    /// Unix time in milliseconds of the last delivery, 0 if none.
    pub last_delivery_ms: AtomicU64,
}

impl Counters {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything shared about one target.
#[derive(Debug)]
pub struct TargetState {
    /// The target's name.
    pub name: String,
    /// Its health; senders wait on it.
    pub health: watch::Sender<Health>,
    /// Its counters.
    pub counters: Counters,
    /// The last error met, with the time, for `status`.
    pub last_error: Mutex<Option<String>>,
}

impl TargetState {
    /// A new state for target `name`, starting.
    pub fn new(name: String) -> TargetState {
        TargetState {
            name,
            health: watch::channel(Health::Starting).0,
            counters: Counters::default(),
            last_error: Mutex::new(None),
        }
    }

    /// Sets the health, logging changes once.
    pub fn set_health(&self, health: Health) {
        self.health.send_if_modified(|h| {
            if *h == health {
                return false;
            }
            match &health {
                Health::Ok => tracing::info!(target_name = %self.name, "target is delivering"),
                Health::Starting => {}
                Health::NeedsAuthorization(m) | Health::Paused(m) | Health::Stopped(m) => {
                    tracing::error!(target_name = %self.name, "{m}");
                    self.record_error(m.clone());
                }
            }
            *h = health;
            true
        });
    }

    /// Remembers an error for `status`.
    pub fn record_error(&self, message: String) {
        let stamped = format!(
            "{} {message}",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(stamped);
    }

    /// The current health.
    pub fn health(&self) -> Health {
        self.health.borrow().clone()
    }
}
