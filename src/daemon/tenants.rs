//! The daemon's view of the connected workspaces' records, applied one tenant at a time.
//!
//! The records' directory is watched with inotify: a record is written by renaming a new file
//! over it (`IN_MOVED_TO`), removed (`IN_DELETE`, `IN_MOVED_FROM`) or edited in place
//! (`IN_CLOSE_WRITE`), and each event names the record. Once a second the supervisor takes the
//! events that came and reads just the records they name, so a connect, reconnect or disconnect
//! reads one record and starts, restarts or stops one target; nothing is listed, rebuilt or kept
//! per other tenant. Every record is read again at the start, on SIGHUP, and whenever the kernel
//! may have dropped events (the queue overflowed, the directory was removed or replaced). The
//! name is what counts, not the inode: a record rewritten twice between two looks may get its
//! first inode back (ext4 hands out a freed inode again at once), so a change is never inferred
//! from an inode. A record that cannot be read for a reason of the moment (out of descriptors)
//! is read again at the next look.
//!
//! Without inotify (its limits reached), every look lists the directory and reads every record
//! whose inode changed: a rewrite that got its inode back waits for SIGHUP. The log says so.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::DirEntryExt;
use std::path::{Path, PathBuf};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use crate::config::connected::{is_record_name, load_record, taken};
use crate::config::{Config, ConfigError, Target};

/// What changed for one tenant: its target now (None: not to run).
pub(crate) type Change = (String, Option<Target>);

/// The records, as the daemon last applied them.
pub(crate) struct Tenants {
    dir: PathBuf,
    /// The watch of the directory; None without inotify.
    inotify: Option<Inotify>,
    /// The watch, while it is in place.
    watch: Option<WatchDescriptor>,
    /// Whether every record must be read again (start, SIGHUP, lost events).
    all_due: bool,
    /// Records to read at the next look (named by events, or whose read failed for now).
    pending: BTreeSet<String>,
    /// Each record's inode at the last listing (for the mode without inotify).
    seen: HashMap<String, u64>,
    /// The inbox of each tenant that runs, and the reverse, to refuse a record that names
    /// another's inbox.
    inboxes: HashMap<String, PathBuf>,
    by_inbox: HashMap<PathBuf, String>,
}

fn mask() -> WatchMask {
    WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::DELETE
        | WatchMask::CLOSE_WRITE
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
}

impl Tenants {
    /// Nothing applied yet from the records' directory of `state_dir` (created if missing, so
    /// that it can be watched).
    pub(crate) fn new(state_dir: &Path) -> Tenants {
        let dir = crate::tenants::targets_dir(state_dir);
        if let Err(e) = crate::state::private::create_private_dir(&dir) {
            tracing::warn!("cannot create {}: {e}", dir.display());
        }
        let inotify = match Inotify::init() {
            Ok(i) => Some(i),
            Err(e) => {
                tracing::warn!(
                    "cannot watch {} ({e}): connected workspaces are found by listing it every second",
                    dir.display()
                );
                None
            }
        };
        Tenants {
            dir,
            inotify,
            watch: None,
            all_due: true,
            pending: BTreeSet::new(),
            seen: HashMap::new(),
            inboxes: HashMap::new(),
            by_inbox: HashMap::new(),
        }
    }

    /// Every record read again (at the start and on SIGHUP): the targets to run.
    pub(crate) fn all(&mut self, config: &Config) -> Vec<Target> {
        self.all_due = true;
        self.inboxes.clear();
        self.by_inbox.clear();
        self.changes(config)
            .into_iter()
            .filter_map(|(_, t)| t)
            .collect()
    }

    /// What changed since the last look (nothing, mostly).
    pub(crate) fn changes(&mut self, config: &Config) -> Vec<Change> {
        self.take_events();
        if self.all_due {
            self.all_due = false;
            match self.list() {
                Ok(listed) => {
                    self.pending.extend(self.seen.keys().cloned());
                    self.pending.extend(listed.keys().cloned());
                    self.seen = listed;
                }
                Err(e) => {
                    tracing::error!("cannot list {}: {e}", self.dir.display());
                    self.all_due = true;
                }
            }
        } else if self.watch.is_none() {
            self.changed_inodes();
        }
        let mut changes = Vec::new();
        for name in std::mem::take(&mut self.pending) {
            if let Some(inbox) = self.inboxes.remove(&name) {
                self.by_inbox.remove(&inbox);
            }
            match self.load(config, &name) {
                Ok(target) => {
                    if let Some(t) = &target {
                        self.inboxes.insert(name.clone(), t.inbox.clone());
                        self.by_inbox.insert(t.inbox.clone(), name.clone());
                    }
                    changes.push((name, target));
                }
                // Read again at the next look; meanwhile the target keeps what it had.
                Err(()) => {
                    self.pending.insert(name);
                }
            }
        }
        changes
    }

    /// Takes the events that came: the records they name become pending; lost events, or a lost
    /// watch, make every record due.
    fn take_events(&mut self) {
        let Some(inotify) = self.inotify.as_mut() else {
            return;
        };
        if self.watch.is_none() {
            match inotify.watches().add(&self.dir, mask()) {
                Ok(wd) => {
                    self.watch = Some(wd);
                    // Whatever happened while nothing watched is read from the records.
                    self.all_due = true;
                }
                Err(e) => {
                    tracing::debug!("cannot watch {}: {e}", self.dir.display());
                    return;
                }
            }
        }
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match inotify.read_events(&mut buffer) {
                Ok(events) => {
                    let mut any = false;
                    for event in events {
                        any = true;
                        if event.mask.intersects(EventMask::Q_OVERFLOW) {
                            self.all_due = true;
                        }
                        if event.mask.intersects(
                            EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF,
                        ) {
                            // The directory went (or was replaced): watch what is there now.
                            self.watch = None;
                            self.all_due = true;
                        }
                        if let Some(name) = event
                            .name
                            .and_then(|n| n.to_str())
                            .and_then(|n| n.strip_suffix(".toml"))
                            .filter(|n| is_record_name(n))
                        {
                            self.pending.insert(name.to_owned());
                        }
                    }
                    if !any {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("cannot read the events of {}: {e}", self.dir.display());
                    self.all_due = true;
                    return;
                }
            }
        }
    }

    /// Without inotify: the records whose inode changed since the last listing become pending.
    fn changed_inodes(&mut self) {
        let Ok(listed) = self.list() else {
            return;
        };
        for (name, ino) in &listed {
            if self.seen.get(name) != Some(ino) {
                self.pending.insert(name.clone());
            }
        }
        for name in self.seen.keys() {
            if !listed.contains_key(name) {
                self.pending.insert(name.clone());
            }
        }
        self.seen = listed;
    }

    /// Each record of the directory (by target name) and its inode, from one listing.
    fn list(&self) -> std::io::Result<HashMap<String, u64>> {
        let mut out = HashMap::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let file_name = entry.file_name();
            if let Some(name) = file_name
                .to_str()
                .and_then(|n| n.strip_suffix(".toml"))
                .filter(|n| is_record_name(n))
            {
                out.insert(name.to_owned(), entry.ino());
            }
        }
        Ok(out)
    }

    /// The target of record `name`, if it is to run (a missing, disconnected or unusable record
    /// is not: the last is logged); `Err` when it could not be read just now.
    fn load(&self, config: &Config, name: &str) -> Result<Option<Target>, ()> {
        let path = self.dir.join(format!("{name}.toml"));
        match load_record(config, &path) {
            Ok(Some(t)) => {
                let configured = config
                    .targets
                    .iter()
                    .any(|c| c.name == t.name || c.inbox == t.inbox);
                let other = self.by_inbox.get(&t.inbox).is_some_and(|n| n != name);
                if configured || other {
                    let why = taken(config, &path, &t);
                    tracing::error!("a connected workspace's target is skipped: {why}");
                    return Ok(None);
                }
                Ok(Some(t))
            }
            // Disconnected: listed by `targets`, not run.
            Ok(None) => Ok(None),
            Err(ConfigError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(ConfigError::Read { path, source }) => {
                tracing::warn!("cannot read {} ({source}); trying again", path.display());
                Err(())
            }
            Err(e) => {
                tracing::error!("a connected workspace's target is skipped: {e}");
                Ok(None)
            }
        }
    }
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

    /// A state directory, its configuration and the template of its tenants.
    fn setup() -> (tempfile::TempDir, Config, Template) {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.toml");
        std::fs::write(
            &config_path,
            "[notion]\nclient_id = \"c\"\nclient_secret_file = \"secret\"\nredirect_uri = \"https://example.com/callback\"\n\n[daemon]\nstate_dir = \"state\"\n",
        )
        .unwrap();
        let config = Config::load_file(&config_path).unwrap();
        let template = Template {
            properties: [("handle".to_owned(), "title".to_owned())].into(),
            ..Template::default()
        };
        (dir, config, template)
    }

    /// A connect, a reconnect and a disconnect each change one tenant, whatever the number of
    /// others; an unchanged directory costs no listing.
    #[test]
    fn each_lifecycle_change_is_one_change() {
        let (dir, config, template) = setup();
        let (state, spool) = (dir.path().join("state"), dir.path().join("spool"));
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
        let changes = tenants.changes(&config);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].0, fresh.name);
        assert!(changes[0].1.is_some());
        let again = connect(7);
        let changes = tenants.changes(&config);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].0, again.name);
        std::fs::remove_file(&fresh.record).unwrap();
        let changes = tenants.changes(&config);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].0, fresh.name);
        assert!(
            changes[0].1.is_none(),
            "a removed record's target is to run"
        );
        // Nothing changed: nothing is read.
        assert!(tenants.changes(&config).is_empty());
    }

    /// A record rewritten twice between two looks (ext4 gives the first file's inode back to
    /// the second new file) is read again all the same: a reconnect then its choice of database,
    /// a disconnect then a reconnect.
    #[test]
    fn a_record_rewritten_twice_between_looks_is_read_again() {
        let (dir, config, template) = setup();
        let (state, spool) = (dir.path().join("state"), dir.path().join("spool"));
        let first =
            crate::tenants::connect(&state, &spool, &response(1), &template, Caps::default())
                .unwrap();
        let mut tenants = Tenants::new(&state);
        assert_eq!(tenants.all(&config).len(), 1);
        let chosen = |id: &str| crate::notion::token::Chosen {
            database_id: Some(id.to_owned()),
            data_source_id: None,
            title: "T".into(),
        };
        for round in 0..20 {
            crate::tenants::record_choice(&state, &first.name, &chosen(&format!("a{round}")))
                .unwrap();
            crate::tenants::record_choice(&state, &first.name, &chosen(&format!("b{round}")))
                .unwrap();
            let changes = tenants.changes(&config);
            assert_eq!(changes.len(), 1, "round {round}: {changes:?}");
            let target = changes[0].1.as_ref().expect("it runs");
            assert!(
                target
                    .chosen
                    .as_deref()
                    .unwrap_or("")
                    .contains(&format!("b{round}")),
                "round {round}: {:?}",
                target.chosen
            );
        }
        // Disconnected, then connected again, between two looks.
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(crate::tenants::disconnect(&state, &first.name, |_| async {
            Ok(())
        }))
        .unwrap();
        let changes = tenants.changes(&config);
        assert!(changes[0].1.is_none(), "a disconnected target runs");
        rt.block_on(crate::tenants::disconnect(&state, &first.name, |_| async {
            Ok(())
        }))
        .unwrap_err();
        crate::tenants::connect(&state, &spool, &response(1), &template, Caps::default()).unwrap();
        rt.block_on(crate::tenants::disconnect(&state, &first.name, |_| async {
            Ok(())
        }))
        .unwrap();
        let changes = tenants.changes(&config);
        assert_eq!(changes.len(), 1);
        assert!(
            changes[0].1.is_none(),
            "the disconnect between two looks was missed"
        );
    }
}
