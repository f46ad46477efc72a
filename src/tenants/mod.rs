//! Connected workspaces as tenants: targets that come and go without editing the configuration.
//!
//! A tenant is a connection of the integration to one workspace, identified by what Notion says
//! of it, `(workspace_id, bot_id)` ([`Identity`]), never by its name, which whoever owns the
//! workspace chooses and may change. When it first connects it gets an id ([`new_id`]: 80 random
//! bits, checked free), which is its target's name for ever: its record
//! `<state_dir>/targets/<id>.toml`, token file, inbox `<inbox_dir>/<id>.jsonl`, checkpoint and
//! dead letters. Connecting again finds it through the index by identity
//! (`targets/.identities/<workspace_id>+<bot_id>`, holding the id, see [`index`]) and resumes
//! it; a rename changes only its label. A record whose `[connection]` does not name the identity
//! looked up is never reused.
//!
//! Every change of a tenant's lifecycle (connect, reconnect, the database chosen, disconnect) is
//! made under one lock (`targets/.lock`, `flock`, so across processes: the daemon's connect page,
//! `notion-inbox connect` and `disconnect`), so that a disconnect never marks a connection newer
//! than the one whose token it revoked ([`lifecycle`]).
//!
//! A record is a `[target]` table with the keys of a `[[target]]` (validated by the
//! configuration's own code: `config::connected`) and a `[connection]` table ([`Connection`]).
//! Records written before identities existed (named from the workspace's name and a 32-bit
//! hash) are read as they are and indexed by the identity in their `[connection]` the first
//! time the index is opened, so they keep their names, inboxes and checkpoints.

pub mod index;
pub mod lifecycle;
pub mod usage;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use lifecycle::{ConnectError, Connected, Disconnected, connect, disconnect, record_choice};

/// Who a connection is, as Notion says: the workspace and the integration's bot in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The workspace.
    pub workspace_id: String,
    /// The bot.
    pub bot_id: String,
}

impl Identity {
    /// The identity of a token response. Notion's ids are UUIDs; an id that is empty, longer than
    /// 64 characters or holds anything but ASCII letters, digits, `-` and `_` is refused (it
    /// names a file of the index).
    pub fn new(workspace_id: &str, bot_id: &str) -> Result<Identity, String> {
        for (what, id) in [("workspace id", workspace_id), ("bot id", bot_id)] {
            let fine = !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !fine {
                return Err(format!(
                    "Notion's answer has an unusable {what} ({:?})",
                    crate::text::label(id)
                ));
            }
        }
        Ok(Identity {
            workspace_id: workspace_id.to_owned(),
            bot_id: bot_id.to_owned(),
        })
    }

    /// Its file name in the index.
    fn key(&self) -> String {
        format!("{}+{}", self.workspace_id, self.bot_id)
    }
}

/// A new tenant id: `ws-` and 20 hex digits (80 random bits: at ten million tenants, the
/// chance that two were ever drawn alike is below one in ten billion, and [`lifecycle::connect`]
/// checks that the one drawn is free).
pub fn new_id() -> String {
    let bits: u128 = rand::random::<u128>() >> 48;
    format!("ws-{bits:020x}")
}

/// Who connected a workspace, kept in its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// The workspace.
    pub workspace_id: String,
    /// Its name (its label), if Notion gave one: made safe to show ([`crate::text::label`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_name: Option<String>,
    /// The integration's bot in that workspace.
    pub bot_id: String,
    /// Who consented, if Notion said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// When it first connected.
    pub connected_at: DateTime<Utc>,
    /// When it connected again last, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnected_at: Option<DateTime<Utc>>,
    /// When `notion-inbox disconnect` ended it: the target does not run, its inbox and dead
    /// letters stay, and connecting again resumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnected_at: Option<DateTime<Utc>>,
    /// The database chosen for it after consent (also saved with its token). Written here too
    /// so that the daemon, which restarts a target whose record changed, takes up a new choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<crate::notion::token::Chosen>,
}

impl Connection {
    /// Whether it is the connection of `identity`.
    pub fn is(&self, identity: &Identity) -> bool {
        self.workspace_id == identity.workspace_id && self.bot_id == identity.bot_id
    }
}

/// A record as `targets` lists it, read without validating its target.
#[derive(Debug, Clone)]
pub struct Record {
    /// The file.
    pub path: PathBuf,
    /// The target's name.
    pub name: String,
    /// Its inbox, as written.
    pub inbox: String,
    /// Who connected.
    pub connection: Connection,
}

impl Record {
    /// Reads the record at `path`; None when it cannot be read or is not a record.
    pub fn read(path: &Path) -> Option<Record> {
        let table: toml::Table = std::fs::read_to_string(path).ok()?.parse().ok()?;
        let target = table.get("target")?;
        Some(Record {
            name: target.get("name")?.as_str()?.to_owned(),
            inbox: target.get("inbox")?.as_str()?.to_owned(),
            connection: table.get("connection")?.clone().try_into().ok()?,
            path: path.to_owned(),
        })
    }
}

/// Every readable record, by file name.
pub fn records(state_dir: &Path) -> Vec<Record> {
    crate::config::connected::record_files(&targets_dir(state_dir))
        .unwrap_or_default()
        .iter()
        .filter_map(|path| Record::read(path))
        .collect()
}

/// The record of target `name`, if it is a connected workspace's.
pub fn record(state_dir: &Path, name: &str) -> Option<Record> {
    if !crate::config::connected::is_record_name(name) {
        return None;
    }
    Record::read(&record_path(state_dir, name))
}

/// The directory of the records.
pub fn targets_dir(state_dir: &Path) -> PathBuf {
    crate::state::layout::StateDir(state_dir).targets()
}

/// The record of target `name`.
pub fn record_path(state_dir: &Path, name: &str) -> PathBuf {
    targets_dir(state_dir).join(format!("{name}.toml"))
}

#[cfg(test)]
mod tests;
