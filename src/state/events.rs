//! The event log, `<state_dir>/events.jsonl` (mode 600): one JSON object per line for each
//! change an operator's tooling may want to follow, such as which inbox belongs to which
//! workspace. Events: `connected`, `reconnected`, `database_chosen`, `disconnected`, and
//! `needs_attention` (a target waits for a person: a refused authorization, a stop; once per
//! episode, with the reason).
//!
//! Each line is written with one `write()` on an `O_APPEND` descriptor, so concurrent writers
//! (the daemon, `authorize`, `disconnect`) never interleave within a line. A failed append is
//! logged by [`note`] and the caller goes on: the event log informs, it does not decide.
//!
//! The log is bounded, whoever connects how often: a workspace's name keeps at most
//! [`crate::text::LABEL_CHARS`] characters and a detail [`crate::text::MESSAGE_CHARS`], and a
//! log past [`ROTATE_AT`] is renamed `events.jsonl.1` (replacing the one before) before the next
//! line is appended to a new one.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;
use serde::Serialize;

use super::private::private_options;

/// One event.
#[derive(Debug, Clone, Serialize)]
pub struct Event<'a> {
    /// What happened.
    pub event: &'a str,
    /// The target.
    pub target: &'a str,
    /// Its workspace, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<&'a str>,
    /// The workspace's name, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_name: Option<&'a str>,
    /// The target's inbox, when it matters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbox: Option<&'a Path>,
    /// More, in words (the database chosen, why it needs attention).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
}

/// The size past which the log is rotated.
pub const ROTATE_AT: u64 = 1024 * 1024;

/// The log's path.
pub fn events_path(state_dir: &Path) -> PathBuf {
    super::layout::StateDir(state_dir).events()
}

/// Appends `event` (see [`append`]); a failure is logged as a warning naming the target, since
/// the event log informs and never decides.
pub fn note(state_dir: &Path, event: &Event<'_>) {
    if let Err(e) = append(state_dir, event) {
        tracing::warn!(target_name = %event.target, "cannot append to the event log: {e}");
    }
}

/// Appends `event`, stamped with the time, to the log under `state_dir`.
pub fn append(state_dir: &Path, event: &Event<'_>) -> std::io::Result<()> {
    #[derive(Serialize)]
    struct Stamped<'a> {
        time: String,
        #[serde(flatten)]
        event: &'a Event<'a>,
    }
    let name = event.workspace_name.map(crate::text::label);
    let detail = event.detail.map(crate::text::message);
    let bounded = Event {
        workspace_name: name.as_deref(),
        detail: detail.as_deref(),
        ..event.clone()
    };
    let mut line = serde_json::to_vec(&Stamped {
        time: Utc::now().to_rfc3339(),
        event: &bounded,
    })
    .map_err(std::io::Error::other)?;
    line.push(b'\n');
    let path = events_path(state_dir);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > ROTATE_AT) {
        // Two writers may both rotate: the second renames a log of a line or two, which the
        // first's rotated log then replaces. Events inform; a line lost so is not a delivery.
        std::fs::rename(&path, path.with_extension("jsonl.1"))?;
    }
    let mut f = private_options().create(true).append(true).open(&path)?;
    f.write_all(&line)?;
    crate::state::layout::Kind::Events.durability().sync(&f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_bounded_whatever_the_names() {
        let dir = tempfile::tempdir().unwrap();
        let name = "x".repeat(1 << 20);
        let event = Event {
            event: "connected",
            target: "ws-1",
            workspace_id: Some("w"),
            workspace_name: Some(&name),
            inbox: None,
            detail: Some(&name),
        };
        for _ in 0..1000 {
            append(dir.path(), &event).unwrap();
        }
        let total: u64 = ["events.jsonl", "events.jsonl.1"]
            .iter()
            .map(|f| std::fs::metadata(dir.path().join(f)).map_or(0, |m| m.len()))
            .sum();
        assert!(total <= 2 * ROTATE_AT + 8192, "{total} bytes");
        let last = std::fs::read_to_string(events_path(dir.path())).unwrap();
        let line = last.lines().last().unwrap();
        assert!(line.len() < 8192, "a line of {} bytes", line.len());
    }
}
