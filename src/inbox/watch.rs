//! Wake-ups from the file system: one `notify` watcher on the parent directories of all inboxes.
//!
//! Why the directory and not the file: a watch on the file dies with rename rotation and atomic
//! replace, reports a renamed file's writes under the old name, and cannot be set before the file
//! exists (see `/work/shared/tailing.md`). A directory watch sees all of it, correctly labelled.
//!
//! What an event means: only "read from the saved position to the end". The handler (which runs on
//! notify's thread) maps each event to the targets whose inbox name it mentions (both paths of a
//! rename) and calls [`Notify::notify_one`] on their wake handle. A `Notify` holds at most one
//! permit, so a burst of events becomes one wake-up and memory stays flat. `Access` events are
//! ignored: notify 8 reports the tailer's own `open()` as `Access(Open)`, and `Close(Write)` always
//! follows a `Modify`. An overflow of the kernel queue (`Flag::Rescan`), an event without paths and
//! a watcher error wake every target, like the daemon's reconcile tick.
//!
//! There is no polling loop here: when nothing changes, nothing runs. The reconcile tick (a few
//! seconds, for filesystems where inotify is blind, such as NFS) is the daemon's job.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use notify::event::{Event, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

use super::InboxError;

/// Watches the directories of many inboxes with one inotify instance.
pub struct InboxWatcher {
    /// The notify watcher; dropping it stops the watch thread.
    watcher: RecommendedWatcher,
    /// Who to wake for which file name, shared with the event handler.
    registry: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for InboxWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("InboxWatcher")
            .field("dirs", &registry.dirs.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The wake handles by directory and file name.
#[derive(Default)]
struct Registry {
    /// Canonical directory -> file name -> the wake handles of the targets reading it.
    dirs: HashMap<PathBuf, HashMap<OsString, Vec<Arc<Notify>>>>,
}

impl Registry {
    fn wake_all(&self) {
        for wake in self
            .dirs
            .values()
            .flat_map(|names| names.values().flatten())
        {
            wake.notify_one();
        }
    }

    fn handle(&self, event: notify::Result<Event>) {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, "file watcher error; checking every inbox");
                self.wake_all();
                return;
            }
        };
        if event.need_rescan() || event.paths.is_empty() {
            self.wake_all();
            return;
        }
        if let EventKind::Access(_) = event.kind {
            return;
        }
        for path in &event.paths {
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            let wakes = self.dirs.get(dir).and_then(|names| names.get(name));
            for wake in wakes.into_iter().flatten() {
                wake.notify_one();
            }
        }
    }
}

impl InboxWatcher {
    /// Starts the watcher (one inotify instance and its thread); it watches nothing yet.
    pub fn new() -> Result<InboxWatcher, InboxError> {
        let registry = Arc::new(Mutex::new(Registry::default()));
        let shared = Arc::clone(&registry);
        let watcher = notify::recommended_watcher(move |event| {
            shared
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .handle(event);
        })
        .map_err(|source| map_error(PathBuf::from("(inotify)"), source))?;
        Ok(InboxWatcher { watcher, registry })
    }

    /// Watches `inbox` and returns a fresh wake handle that is notified when it may have changed.
    pub fn watch(&mut self, inbox: &Path) -> Result<Arc<Notify>, InboxError> {
        let wake = Arc::new(Notify::new());
        self.watch_with(inbox, Arc::clone(&wake))?;
        Ok(wake)
    }

    /// Watches `inbox`, notifying `wake` when it may have changed. The inbox file need not exist;
    /// its directory must.
    ///
    /// The registry lock is never held across a call into notify: notify's `watch`/`unwatch` wait
    /// for its event thread, which may be inside the handler waiting for that lock (a deadlock
    /// that hung CI once). The handle is registered first, so no event after the watch is missed.
    pub fn watch_with(&mut self, inbox: &Path, wake: Arc<Notify>) -> Result<(), InboxError> {
        let (dir, name) = split(inbox)?;
        let new_dir = {
            let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
            let new_dir = !registry.dirs.contains_key(&dir);
            registry
                .dirs
                .entry(dir.clone())
                .or_default()
                .entry(name.clone())
                .or_default()
                .push(Arc::clone(&wake));
            new_dir
        };
        if !new_dir {
            return Ok(());
        }
        let result = self.watcher.watch(&dir, RecursiveMode::NonRecursive);
        let Err(source) = result else {
            return Ok(());
        };
        // Take the directory back: it was new, so this handle was its only one.
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .dirs
            .remove(&dir);
        Err(match source.kind {
            notify::ErrorKind::PathNotFound => InboxError::DirectoryMissing {
                dir: dir.clone(),
                inbox: inbox.to_path_buf(),
            },
            _ => map_error(dir, source),
        })
    }

    /// Stops waking for `inbox` (all its handles); unwatches the directory when it was the last.
    pub fn unwatch(&mut self, inbox: &Path) -> Result<(), InboxError> {
        let (dir, name) = split(inbox)?;
        let last = {
            let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(names) = registry.dirs.get_mut(&dir) else {
                return Ok(());
            };
            names.remove(&name);
            let last = names.is_empty();
            if last {
                registry.dirs.remove(&dir);
            }
            last
        };
        if last {
            // Outside the lock (see `watch_with`). The directory may be gone already, which
            // removed the watch too.
            let _ = self.watcher.unwatch(&dir);
        }
        Ok(())
    }
}

/// The canonical parent directory and the file name of an inbox path.
fn split(inbox: &Path) -> Result<(PathBuf, OsString), InboxError> {
    let name = inbox
        .file_name()
        .ok_or_else(|| InboxError::NotAFile {
            path: inbox.to_path_buf(),
            what: "a path without a file name",
        })?
        .to_os_string();
    let dir = match inbox.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Events carry the watched path joined with the name, so the registry uses the same, canonical
    // form of the directory whatever spelling the configuration used.
    let dir = dir.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => InboxError::DirectoryMissing {
            dir: dir.to_path_buf(),
            inbox: inbox.to_path_buf(),
        },
        _ => InboxError::Io {
            action: "resolve",
            path: dir.to_path_buf(),
            source: e,
        },
    })?;
    Ok((dir, name))
}

fn map_error(dir: PathBuf, source: notify::Error) -> InboxError {
    match source.kind {
        notify::ErrorKind::MaxFilesWatch => InboxError::WatchLimit { dir, source },
        _ => InboxError::Watch { dir, source },
    }
}
