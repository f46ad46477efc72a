//! The daemon's view of the connected workspaces' records, applied one tenant at a time.
//!
//! Once a second the supervisor `stat`s `<state_dir>/targets`; when the directory changed (a
//! record is only ever written by renaming a new file over it, so each version of a record is a
//! new inode), one listing gives every record's name and inode (`readdir`, no `stat` and no read
//! per record), and only the records whose inode differs from the last look are read again. So a
//! connect, reconnect or disconnect reads one record and starts, restarts or stops one target;
//! nothing is rebuilt or kept per other tenant. (An edit made in place, which keeps the inode,
//! is taken up at the next `SIGHUP`, which reads everything.)

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::DirEntryExt;
use std::path::{Path, PathBuf};

use crate::config::connected::{is_record_name, load_record, taken};
use crate::config::{Config, Target};

/// What changed for one tenant: its target now (None: not to run).
pub(crate) type Change = (String, Option<Target>);

/// The records last seen.
pub(crate) struct Tenants {
    dir: PathBuf,
    /// The directory's identity and modification time at the last look.
    stamp: Option<(u64, i64, i64)>,
    /// Each record's inode at the last look, and the look that last saw it.
    seen: HashMap<String, (u64, u64)>,
    /// How many looks listed the directory.
    looks: u64,
    /// The inboxes of the tenants that run, to refuse a record that names another's.
    inboxes: BTreeMap<String, PathBuf>,
}

impl Tenants {
    /// Nothing seen yet in the records' directory of `state_dir`.
    pub(crate) fn new(state_dir: &Path) -> Tenants {
        Tenants {
            dir: crate::tenants::targets_dir(state_dir),
            stamp: None,
            seen: HashMap::new(),
            looks: 0,
            inboxes: BTreeMap::new(),
        }
    }

    /// Every record read again (at the start and on SIGHUP): the targets to run.
    pub(crate) fn all(&mut self, config: &Config) -> Vec<Target> {
        self.seen.clear();
        self.inboxes.clear();
        self.stamp = None;
        self.changes(config)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, t)| t)
            .collect()
    }

    /// What changed since the last look; None when the directory did not change.
    pub(crate) fn changes(&mut self, config: &Config) -> Option<Vec<Change>> {
        // Taken before the listing, so that a record written meanwhile is seen at the next look.
        let stamp = dir_stamp(&self.dir);
        if stamp == self.stamp && self.stamp.is_some() {
            return None;
        }
        // A change made later within the same tick of the file system's clock would leave the
        // stamp as it is: a stamp that recent is not trusted, and the next look lists again.
        self.stamp = stamp.filter(|(_, secs, _)| chrono::Utc::now().timestamp() - secs > 2);
        // One listing, compared in place: nothing is allocated per record that did not change.
        self.looks += 1;
        let look = self.looks;
        let mut changed: Vec<String> = Vec::new();
        let listed = list(&self.dir, |name, ino| match self.seen.get_mut(name) {
            Some(seen) if seen.0 == ino => seen.1 = look,
            Some(seen) => {
                *seen = (ino, look);
                changed.push(name.to_owned());
            }
            None => {
                self.seen.insert(name.to_owned(), (ino, look));
                changed.push(name.to_owned());
            }
        });
        if let Err(e) = listed {
            tracing::error!("cannot list {}: {e}", self.dir.display());
            return None;
        }
        let mut changes: Vec<Change> = Vec::new();
        self.seen.retain(|name, (_, seen_at)| {
            let there = *seen_at == look;
            if !there {
                changes.push((name.clone(), None));
            }
            there
        });
        for (name, _) in &changes {
            self.inboxes.remove(name);
        }
        for name in changed {
            self.inboxes.remove(&name);
            let target = self.load(config, &name);
            if let Some(t) = &target {
                self.inboxes.insert(name.clone(), t.inbox.clone());
            }
            changes.push((name, target));
        }
        Some(changes)
    }

    /// The target of record `name`, if it is to run; a record that cannot be used is logged.
    fn load(&self, config: &Config, name: &str) -> Option<Target> {
        let path = self.dir.join(format!("{name}.toml"));
        match load_record(config, &path) {
            Ok(Some(t)) => {
                let configured = config
                    .targets
                    .iter()
                    .any(|c| c.name == t.name || c.inbox == t.inbox);
                let other = self.inboxes.iter().any(|(n, i)| n != name && *i == t.inbox);
                if configured || other {
                    let why = taken(config, &path, &t);
                    tracing::error!("a connected workspace's target is skipped: {why}");
                    return None;
                }
                Some(t)
            }
            // Disconnected: listed by `targets`, not run.
            Ok(None) => None,
            Err(e) => {
                tracing::error!("a connected workspace's target is skipped: {e}");
                None
            }
        }
    }
}

/// Calls `each` with the target name and inode of every record of `dir`, from one listing
/// (none when it does not exist).
fn list(dir: &Path, mut each: impl FnMut(&str, u64)) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".toml")) else {
            continue;
        };
        if is_record_name(name) {
            each(name, entry.ino());
        }
    }
    Ok(())
}

/// The identity and modification time of a directory: it changes when a file is created,
/// renamed or removed in it (records are written by renaming). None when it does not exist.
pub(crate) fn dir_stamp(dir: &Path) -> Option<(u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir)
        .ok()
        .map(|m| (m.ino(), m.mtime(), m.mtime_nsec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::connected::Template;
    use crate::tenants::lifecycle::Caps;

    fn response(i: usize) -> crate::notion::oauth::TokenResponse {
        crate::notion::oauth::TokenResponse::parse(serde_json::json!({
            "access_token": format!("t{i}"), "token_type": "bearer",
            "bot_id": format!("b{i}"), "workspace_id": format!("w{i}"),
            "workspace_name": format!("W {i}"),
        }))
        .unwrap()
    }

    /// A connect, a reconnect and a disconnect each change one tenant, whatever the number of
    /// others; an unchanged directory costs no listing.
    #[test]
    fn each_lifecycle_change_is_one_change() {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.toml");
        std::fs::write(
            &config_path,
            "[notion]\nclient_id = \"c\"\nclient_secret_file = \"secret\"\nredirect_uri = \"https://example.com/callback\"\n\n[daemon]\nstate_dir = \"state\"\n",
        )
        .unwrap();
        let config = Config::load_file(&config_path).unwrap();
        let (state, spool) = (dir.path().join("state"), dir.path().join("spool"));
        let template = Template {
            properties: [("handle".to_owned(), "title".to_owned())].into(),
            ..Template::default()
        };
        let connect = |i| {
            crate::tenants::connect(&state, &spool, &response(i), &template, Caps::default())
                .unwrap()
        };
        for i in 0..50 {
            connect(i);
        }
        let mut tenants = Tenants::new(&state);
        assert_eq!(tenants.all(&config).len(), 50);
        let fresh = connect(50);
        let changes = tenants.changes(&config).unwrap();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].0, fresh.name);
        assert!(changes[0].1.is_some());
        let again = connect(7);
        let changes = tenants.changes(&config).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].0, again.name);
        std::fs::remove_file(&fresh.record).unwrap();
        let changes = tenants.changes(&config).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].0, fresh.name);
        assert!(
            changes[0].1.is_none(),
            "a removed record's target is to run"
        );
        // Nothing changed: at most a listing that finds nothing.
        assert!(tenants.changes(&config).is_none_or(|c| c.is_empty()));
    }
}
