//! A target's live health and counters, shared by its tasks, the progress log, `STATUS=` lines and
//! the status file.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::watch;

use crate::state::private::write_private_atomically;

pub use notion_inbox_core::health::Health;
use notion_inbox_core::health::Stats;

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
    /// Bytes of the inbox not read yet (updated on the reconcile tick).
    pub backlog_bytes: AtomicU64,
    /// The client's adapted request rate for this target's token, in thousandths of a request per
    /// second (below the configured rate after 429s; updated on the reconcile tick).
    pub effective_rate_milli: AtomicU64,
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
        // Its words may quote Notion (a property's name, a database's title): made safe once,
        // for the log, `status` and the metrics alike.
        let health = match health {
            Health::NeedsAuthorization(m) => Health::NeedsAuthorization(crate::text::message(&m)),
            Health::Paused(m) => Health::Paused(crate::text::message(&m)),
            Health::Stopped(m) => Health::Stopped(crate::text::message(&m)),
            other => other,
        };
        self.health.send_if_modified(|h| {
            if *h == health {
                return false;
            }
            match &health {
                Health::Ok => tracing::info!(target_name = %self.name, "target is delivering"),
                Health::Starting => {}
                Health::Idle => {
                    tracing::debug!(target_name = %self.name, "nothing to deliver; waiting for the inbox to change")
                }
                Health::NeedsAuthorization(m) | Health::Paused(m) | Health::Stopped(m) => {
                    tracing::error!(target_name = %self.name, "{m}");
                    self.record_error(m.clone());
                }
            }
            *h = health;
            true
        });
    }

    /// Adds what the core counted ([`notion_inbox_core::delivery::Core::take_stats`]), stamping
    /// the last delivery and the last error with the time now.
    pub fn absorb(&self, stats: Stats) {
        let c = &self.counters;
        let add = |counter: &AtomicU64, n: u64| {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&c.found_existing, stats.found_existing);
        add(&c.dead_lettered, stats.dead_lettered);
        add(&c.rate_limited, stats.rate_limited);
        add(&c.outcome_unknown, stats.outcome_unknown);
        add(&c.possible_duplicates, stats.possible_duplicates);
        add(&c.retried, stats.retried);
        if stats.delivered > 0 {
            add(&c.delivered, stats.delivered);
            self.stamp_delivery();
        }
        if let Some(message) = stats.last_error {
            self.record_error(message);
        }
    }

    /// Stamps the time of the last delivery.
    fn stamp_delivery(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.counters.last_delivery_ms.store(now, Ordering::Relaxed);
    }

    /// Remembers an error for `status`.
    pub fn record_error(&self, message: String) {
        let stamped = format!(
            "{} {}",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            crate::text::message(&message)
        );
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(stamped);
    }

    /// The current health.
    pub fn health(&self) -> Health {
        self.health.borrow().clone()
    }
}

/// What the daemon publishes about a target in `<state_dir>/status.json`, for `status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StatusSnapshot {
    /// The target.
    pub target: String,
    /// When this was written (RFC 3339).
    pub updated: String,
    /// The daemon's process id.
    pub pid: u32,
    /// Health: `state` and, unless ok, `message`.
    pub health: serde_json::Value,
    /// Rows created since the daemon started.
    pub delivered: u64,
    /// Rows found by key instead of created.
    pub found_existing: u64,
    /// Records dead-lettered since the daemon started.
    pub dead_lettered: u64,
    /// 429/529 answers since the daemon started.
    pub rate_limited: u64,
    /// Unknown outcomes since the daemon started.
    pub outcome_unknown: u64,
    /// Records resent without a dedupe check since the daemon started.
    pub possible_duplicates: u64,
    /// Creates in flight now.
    pub in_flight: u64,
    /// The request rate the client allows itself now (requests per second): the configured rate,
    /// or less after Notion answered 429s.
    #[serde(default)]
    pub effective_rate: f64,
    /// The last delivery (RFC 3339), if any.
    pub last_delivery: Option<String>,
    /// The last error, with its time.
    pub last_error: Option<String>,
    /// When the daemon stopped cleanly (RFC 3339): written by its last status write. A daemon
    /// that is not running and did not write this was killed or crashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

impl TargetState {
    /// A snapshot for the status file.
    pub fn snapshot(&self) -> StatusSnapshot {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.counters;
        let last_ms = c.last_delivery_ms.load(Relaxed);
        StatusSnapshot {
            target: self.name.clone(),
            updated: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            pid: std::process::id(),
            health: serde_json::to_value(self.health()).unwrap_or_default(),
            delivered: c.delivered.load(Relaxed),
            found_existing: c.found_existing.load(Relaxed),
            dead_lettered: c.dead_lettered.load(Relaxed),
            rate_limited: c.rate_limited.load(Relaxed),
            outcome_unknown: c.outcome_unknown.load(Relaxed),
            possible_duplicates: c.possible_duplicates.load(Relaxed),
            in_flight: c.in_flight.load(Relaxed),
            effective_rate: c.effective_rate_milli.load(Relaxed) as f64 / 1000.0,
            last_delivery: (last_ms > 0)
                .then(|| chrono::DateTime::from_timestamp_millis(last_ms as i64))
                .flatten()
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            stopped: None,
        }
    }
}

/// `<state_dir>/status.json`: the daemon's [`StatusSnapshot`] of every target, for `status`.
///
/// One file for all targets, rewritten by rename: one per target cost an inode created and deleted
/// per target per heartbeat, which with 1000 busy targets was a third of the daemon's CPU.
#[derive(Debug)]
pub struct StatusWriter {
    path: std::path::PathBuf,
    /// The last content written (without times) and when, to skip identical rewrites.
    last: Option<(String, std::time::Instant)>,
}

/// The prefix of the status file's temporary files.
const STATUS_TEMP_PREFIX: &str = ".status-";

impl StatusWriter {
    /// A writer for `<state_dir>/status.json`.
    pub fn new(state_dir: &std::path::Path) -> StatusWriter {
        // Temporary files a crash left behind (best effort: they are never read).
        if let Ok(entries) = std::fs::read_dir(state_dir) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(STATUS_TEMP_PREFIX)
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        StatusWriter {
            path: crate::state::layout::StateDir(state_dir).status(),
            last: None,
        }
    }

    /// Writes the status file (atomically; it is advisory, so without fsync). An idle daemon
    /// should cost nothing: an unchanged status is rewritten once a minute only (so that
    /// `updated` still shows the daemon is alive).
    pub fn write(&mut self, mut snapshots: Vec<StatusSnapshot>) -> std::io::Result<()> {
        for s in &mut snapshots {
            s.updated = String::new();
        }
        let content = serde_json::to_string(&snapshots)?;
        if let Some((prev, at)) = self.last.as_ref()
            && *prev == content
            && at.elapsed() < std::time::Duration::from_secs(60)
        {
            return Ok(());
        }
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        for s in &mut snapshots {
            s.updated.clone_from(&now);
            if s.stopped.is_some() {
                s.stopped = Some(now.clone());
            }
        }
        // Written whole before the rename: a failed write (a full disk) puts no truncated file
        // in place. Private: it holds error texts, which may quote records.
        let bytes = serde_json::to_vec_pretty(&snapshots)?;
        write_private_atomically(
            &self.path,
            STATUS_TEMP_PREFIX,
            &bytes,
            crate::state::layout::Kind::Status.durability(),
        )?;
        self.last = Some((content, std::time::Instant::now()));
        Ok(())
    }
}

/// Reads `<state_dir>/status.json`: each target's snapshot by name (empty if there is none).
pub fn read_status(
    state_dir: &std::path::Path,
) -> std::collections::HashMap<String, StatusSnapshot> {
    std::fs::read(crate::state::layout::StateDir(state_dir).status())
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<StatusSnapshot>>(&b).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.target.clone(), s))
        .collect()
}
