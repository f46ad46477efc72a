//! Wake-ups from the file system: one inotify instance watching the parent directories of all
//! inboxes.
//!
//! Why the directory and not the file: a watch on the file dies with rename rotation and atomic
//! replace, reports a renamed file's writes under the old name, and cannot be set before the file
//! exists (see `/work/shared/tailing.md`). A directory watch sees all of it, correctly labelled.
//!
//! What an event means: only "read from the saved position to the end". A thread of this module
//! reads the kernel's events, maps each to the targets whose inbox name it carries (a rename
//! reports both names) and calls [`Notify::notify_one`] on their wake handles. A `Notify` holds at
//! most one permit, so a burst of events becomes one wake-up and memory stays flat. Opens and reads
//! are not asked for, so the tailer's own reads wake nobody. An overflow of the kernel queue, an
//! event on a watched directory itself (deleted, moved) and a read error wake every target, like
//! the daemon's reconcile tick.
//!
//! Written on the `inotify` crate rather than `notify`: notify's event thread reads the kernel
//! queue until it is empty before it serves a `watch` or `unwatch`, so a producer appending in a
//! tight loop kept `watch` waiting for ever (a configuration reload hung; the churn test in
//! `tests/it/inbox/watch.rs` caught it). Here `watch` and `unwatch` are the system calls themselves,
//! made on the caller's thread, and the reader handles one buffer of events per wake-up.
//!
//! There is no polling loop here: when nothing changes, nothing runs. The reconcile tick (a few
//! seconds, for filesystems where inotify is blind, such as NFS) is the daemon's job.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::Notify;

use super::InboxError;

/// What a directory watch asks the kernel for: every change of a name or of a file's content.
fn mask() -> WatchMask {
    WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
}

/// Watches the directories of many inboxes with one inotify instance.
pub struct InboxWatcher {
    /// Adds and removes watches on the instance the reader thread reads.
    watches: Watches,
    /// Who to wake for which file name, shared with the reader thread.
    registry: Arc<Mutex<Registry>>,
    /// Written to (by dropping it) to stop the reader thread.
    stop: Option<OwnedFd>,
}

impl std::fmt::Debug for InboxWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("InboxWatcher")
            .field("dirs", &registry.dirs.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Drop for InboxWatcher {
    fn drop(&mut self) {
        // Closing the pipe's write end makes its read end readable: the thread ends.
        self.stop.take();
    }
}

/// One watched directory.
struct Dir {
    wd: WatchDescriptor,
    /// File name -> the wake handles of the targets reading it.
    names: HashMap<OsString, Vec<Arc<Notify>>>,
}

/// The wake handles by directory and file name.
#[derive(Default)]
struct Registry {
    /// Canonical directory -> its watch and names.
    dirs: HashMap<PathBuf, Dir>,
    /// Watch -> its directory.
    by_wd: HashMap<WatchDescriptor, PathBuf>,
}

impl Registry {
    fn wake_all(&self) {
        for wake in self.dirs.values().flat_map(|d| d.names.values().flatten()) {
            wake.notify_one();
        }
    }

    fn handle(&mut self, wd: &WatchDescriptor, mask: EventMask, name: Option<&std::ffi::OsStr>) {
        if mask.contains(EventMask::Q_OVERFLOW) {
            self.wake_all();
            return;
        }
        let Some(dir) = self.by_wd.get(wd) else {
            return;
        };
        let Some(entry) = self.dirs.get(dir) else {
            return;
        };
        match name {
            Some(name) => {
                for wake in entry.names.get(name).into_iter().flatten() {
                    wake.notify_one();
                }
            }
            // The directory itself was deleted or moved: every inbox in it may have changed.
            None => {
                for wake in entry.names.values().flatten() {
                    wake.notify_one();
                }
            }
        }
        if mask.contains(EventMask::IGNORED) {
            // The kernel dropped the watch (the directory is gone); `watch` sets a new one.
            let dir = self.by_wd.remove(wd).expect("looked up above");
            if let Some(entry) = self.dirs.get_mut(&dir)
                && &entry.wd == wd
            {
                self.dirs.remove(&dir);
            }
        }
    }
}

impl InboxWatcher {
    /// Starts the watcher (one inotify instance and its thread); it watches nothing yet.
    pub fn new() -> Result<InboxWatcher, InboxError> {
        let inotify = Inotify::init().map_err(|source| limit_or_error("(inotify)", source))?;
        let mut fds = [0; 2];
        // SAFETY: pipe2(2) with a valid array of two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(InboxError::Watch {
                dir: PathBuf::from("(inotify)"),
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: pipe2 returned two new descriptors that nothing else owns.
        let (stop_rx, stop_tx) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let registry = Arc::new(Mutex::new(Registry::default()));
        let watches = inotify.watches();
        let shared = Arc::clone(&registry);
        std::thread::Builder::new()
            .name("inbox-watch".into())
            .spawn(move || read_events(inotify, &stop_rx, &shared))
            .map_err(|source| InboxError::Watch {
                dir: PathBuf::from("(inotify)"),
                source,
            })?;
        Ok(InboxWatcher {
            watches,
            registry,
            stop: Some(stop_tx),
        })
    }

    /// Watches `inbox` and returns a fresh wake handle that is notified when it may have changed.
    pub fn watch(&mut self, inbox: &Path) -> Result<Arc<Notify>, InboxError> {
        let wake = Arc::new(Notify::new());
        self.watch_with(inbox, Arc::clone(&wake))?;
        Ok(wake)
    }

    /// Watches `inbox`, notifying `wake` when it may have changed. The inbox file need not exist;
    /// its directory must. The watch is added under the registry lock, so the reader knows the
    /// directory by the time an event for it is read.
    pub fn watch_with(&mut self, inbox: &Path, wake: Arc<Notify>) -> Result<(), InboxError> {
        let (dir, name) = split(inbox)?;
        let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        if !registry.dirs.contains_key(&dir) {
            let wd =
                self.watches
                    .add(&dir, mask())
                    .map_err(|source| match source.raw_os_error() {
                        Some(libc::ENOENT) | Some(libc::ENOTDIR) => InboxError::DirectoryMissing {
                            dir: dir.clone(),
                            inbox: inbox.to_path_buf(),
                        },
                        _ => limit_or_error(&dir, source),
                    })?;
            registry.by_wd.insert(wd.clone(), dir.clone());
            registry.dirs.insert(
                dir.clone(),
                Dir {
                    wd,
                    names: HashMap::new(),
                },
            );
        }
        registry
            .dirs
            .get_mut(&dir)
            .expect("inserted above")
            .names
            .entry(name)
            .or_default()
            .push(wake);
        Ok(())
    }

    /// Stops waking for `inbox` (all its handles); unwatches the directory when it was the last.
    pub fn unwatch(&mut self, inbox: &Path) -> Result<(), InboxError> {
        let (dir, name) = split(inbox)?;
        let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = registry.dirs.get_mut(&dir) else {
            return Ok(());
        };
        entry.names.remove(&name);
        if entry.names.is_empty() {
            let entry = registry.dirs.remove(&dir).expect("looked up above");
            registry.by_wd.remove(&entry.wd);
            // The directory may be gone already, which removed the watch too.
            let _ = self.watches.remove(entry.wd);
        }
        Ok(())
    }
}

/// The reader thread: waits for events or the stop pipe, and hands one buffer of events at a time
/// to the registry.
fn read_events(mut inotify: Inotify, stop: &OwnedFd, registry: &Mutex<Registry>) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: inotify.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll(2) on two valid descriptors owned by this thread.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            tracing::warn!("file watcher stopped: {}", std::io::Error::last_os_error());
            registry
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .wake_all();
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        match inotify.read_events(&mut buffer) {
            Ok(events) => {
                let mut registry = registry.lock().unwrap_or_else(PoisonError::into_inner);
                for event in events {
                    registry.handle(&event.wd, event.mask, event.name);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => {
                tracing::warn!(%error, "file watcher error; checking every inbox");
                registry
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .wake_all();
            }
        }
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

/// The kernel's limits (watches, instances) have their own message; other errors name the path.
fn limit_or_error(dir: impl Into<PathBuf>, source: std::io::Error) -> InboxError {
    let dir = dir.into();
    match source.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EMFILE) => InboxError::WatchLimit { dir, source },
        _ => InboxError::Watch { dir, source },
    }
}
