//! The event log, `<state_dir>/events.jsonl` (mode 600): one JSON object per line for each
//! change an operator's tooling may want to follow, such as which inbox belongs to which
//! workspace. Events: `connected`, `reconnected`, `database_chosen`, `disconnected`, and
//! `needs_attention` (a target waits for a person: a refused authorization, a stop; once per
//! episode, with the reason).
//!
//! Each line is written with one `write()` on an `O_APPEND` descriptor, so concurrent writers
//! (the daemon, `authorize`, `disconnect`) never interleave within a line. A failed append is
//! logged by [`note`] and the caller goes on: the event log informs, it does not decide.

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
    let mut line = serde_json::to_vec(&Stamped {
        time: Utc::now().to_rfc3339(),
        event,
    })
    .map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = private_options()
        .create(true)
        .append(true)
        .open(events_path(state_dir))?;
    f.write_all(&line)?;
    crate::state::layout::Kind::Events.durability().sync(&f)
}
