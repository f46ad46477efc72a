//! The index of tenants by identity: `targets/.identities/<workspace_id>+<bot_id>` holds the
//! tenant's id, so that a connect finds its tenant with two small reads whatever the number of
//! tenants. It is only read and written under the lifecycle lock ([`super::lifecycle`]).
//!
//! An entry is a hint: [`Index::find`] believes it only when the record it names says, in its
//! `[connection]`, that it is that identity's. The file `.complete` says that every record has
//! its entry; when it is missing (a state directory from before the index), [`Index::open`]
//! reads every record once and writes their entries.

use std::io;
use std::path::{Path, PathBuf};

use super::{Identity, Record, record_path};
use crate::state::layout::{Kind, StateDir};
use crate::state::private::{create_private_dir, write_private_atomically};

/// Marks an index that holds every record's entry.
const COMPLETE: &str = ".complete";

/// The index of one state directory (open it under the lifecycle lock).
#[derive(Debug)]
pub struct Index {
    state_dir: PathBuf,
    dir: PathBuf,
}

impl Index {
    /// Opens the index, building it from the records when it was never completed.
    pub fn open(state_dir: &Path) -> io::Result<Index> {
        let dir = StateDir(state_dir).identities();
        create_private_dir(&dir)?;
        let index = Index {
            state_dir: state_dir.to_owned(),
            dir,
        };
        if !index.dir.join(COMPLETE).exists() {
            index.rebuild()?;
        }
        Ok(index)
    }

    /// Writes the entry of every record that has none, then marks the index complete. Earlier
    /// versions named a record from the workspace's name, so a renamed workspace may have
    /// several: the one in use wins (connected rather than disconnected, then the latest to
    /// connect), and the others are named in the log.
    fn rebuild(&self) -> io::Result<()> {
        let rank = |r: &Record| {
            let c = &r.connection;
            (
                c.disconnected_at.is_none(),
                c.reconnected_at.unwrap_or(c.connected_at),
            )
        };
        let mut best: std::collections::HashMap<Identity, Record> = Default::default();
        for record in super::records(&self.state_dir) {
            let Ok(identity) =
                Identity::new(&record.connection.workspace_id, &record.connection.bot_id)
            else {
                continue;
            };
            let (kept, older) = match best.remove(&identity) {
                None => (record, None),
                Some(other) if rank(&other) >= rank(&record) => (other, Some(record)),
                Some(other) => (record, Some(other)),
            };
            if let Some(older) = older {
                tracing::warn!(kept = %kept.name, "connected workspace {} has another, older record: {}", kept.name, older.path.display());
            }
            best.insert(identity, kept);
        }
        let mut indexed = 0;
        for (identity, record) in best {
            if self.find(&identity).is_none() {
                self.insert(&identity, &record.name)?;
                indexed += 1;
            }
        }
        write_private_atomically(
            &self.dir.join(COMPLETE),
            ".tmp-",
            b"",
            Kind::Connected.durability(),
        )?;
        if indexed > 0 {
            tracing::info!(indexed, "connected workspaces indexed by identity");
        }
        Ok(())
    }

    /// The record of `identity`'s tenant: the one its entry names, if that record is
    /// `identity`'s own.
    pub fn find(&self, identity: &Identity) -> Option<Record> {
        let name = std::fs::read_to_string(self.dir.join(identity.key())).ok()?;
        let name = name.trim();
        if !crate::config::connected::is_record_name(name) {
            return None;
        }
        let record = Record::read(&record_path(&self.state_dir, name))?;
        (record.name == name && record.connection.is(identity)).then_some(record)
    }

    /// Makes `identity`'s entry name tenant `name`.
    pub fn insert(&self, identity: &Identity, name: &str) -> io::Result<()> {
        write_private_atomically(
            &self.dir.join(identity.key()),
            ".tmp-",
            name.as_bytes(),
            Kind::Connected.durability(),
        )
        .map(|_| ())
    }
}
