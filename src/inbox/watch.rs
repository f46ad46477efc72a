//! Wake-ups from the file system, and the files that leave an inbox path: one inotify instance
//! watching the parent directories of all inboxes (and their parents, for their re-creation).
//!
//! Why the directory and not the file: a watch on the file dies with rename rotation and atomic
//! replace, reports a renamed file's writes under the old name, and cannot be set before the file
//! exists (see `/work/shared/tailing.md`). A directory watch sees all of it, correctly labelled.
//!
//! What an event means, first: "read from the saved position to the end". A thread of this module
//! reads the kernel's events, maps each to the targets whose inbox name it carries (a rename
//! reports both names) and wakes their [`Inlet`]s. A wake-up holds at most one permit, so a burst
//! of events becomes one wake-up and memory stays flat. Opens and reads are not asked for, so the
//! tailer's own reads wake nobody. An overflow of the kernel queue, an event on a watched
//! directory itself (deleted, moved) and a read error wake every target, like the daemon's
//! reconcile tick.
//!
//! Then, the renames: each directory's [`Follow`] follows the files that leave an inbox path by
//! rename, and at the end of each buffer of events this thread opens them where they are and
//! hands them to the targets' inlets; a file rotated away faster than a target looks is read
//! anyway, and one deleted before it could be opened is reported.
//!
//! A directory deleted or moved away loses its watch: its targets are woken (they drain the files
//! they hold) and the directory is watched again as soon as its parent's watch sees it created
//! (or, with no parent to watch, at the next try, every [`REWATCH_EVERY_MS`]).
//!
//! Written on the `inotify` crate rather than `notify`: notify's event thread reads the kernel
//! queue until it is empty before it serves a `watch` or `unwatch`, so a producer appending in a
//! tight loop kept `watch` waiting for ever (a configuration reload hung; the churn test in
//! `tests/it/inbox/watch.rs` caught it). Here `watch` and `unwatch` are the system calls themselves,
//! made on the caller's thread, and the reader handles one buffer of events per wake-up.
//!
//! There is no polling loop here while every directory is watched: when nothing changes, nothing
//! runs. The reconcile tick (a few seconds, for filesystems where inotify is blind, such as NFS)
//! is the daemon's job.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

use super::InboxError;
use super::follow::{DirEvent, Follow, Outcome};
use super::inlet::{Arrival, Inlet};

/// What a directory watch asks the kernel for: every change of a name or of a file's content.
/// The same mask for every watch: a directory that is both an inbox's directory and another's
/// parent has one watch, and a second `add` replaces the first's mask.
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

/// How often the reader thread tries again to watch a directory that is gone and whose parent
/// cannot be watched either (a parent's event brings it back at once otherwise).
const REWATCH_EVERY_MS: i32 = 2_000;

/// Watches the directories of many inboxes with one inotify instance.
pub struct InboxWatcher {
    /// Who to wake for which file name, and the watches, shared with the reader thread.
    registry: Arc<Mutex<Registry>>,
    /// Written to (by dropping it) to stop the reader thread.
    stop: Option<OwnedFd>,
}

impl std::fmt::Debug for InboxWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let registry = lock(&self.registry);
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

/// One inbox directory.
struct Dir {
    /// Its watch; `None` while the directory is gone (deleted, or moved away) and not back yet.
    wd: Option<WatchDescriptor>,
    /// File name -> the inlets of the targets reading it.
    names: HashMap<OsString, Vec<Arc<Inlet>>>,
    /// The files that left one of its inbox paths, followed until opened.
    follow: Follow,
}

/// The parent of inbox directories, watched so that a directory deleted or moved away is
/// watched again as soon as it is created again.
struct Parent {
    wd: WatchDescriptor,
    /// The inbox directories' names in it.
    children: BTreeSet<OsString>,
}

/// The inlets by directory and file name.
struct Registry {
    /// Adds and removes watches on the instance the reader thread reads.
    watches: Watches,
    /// Canonical directory -> its watch and names.
    dirs: HashMap<PathBuf, Dir>,
    /// Canonical directory -> its watch as a parent.
    parents: HashMap<PathBuf, Parent>,
    /// Watch -> the directory it is on.
    by_wd: HashMap<WatchDescriptor, PathBuf>,
    /// The inbox directories without a watch (gone, not back yet).
    missing: BTreeSet<PathBuf>,
    /// The inbox directories whose follower has something (so that the end of a buffer does not
    /// go through 10 000 directories).
    following: BTreeSet<PathBuf>,
    /// Every event before this time was read (less a second, for the clocks' granularity).
    known_until: SystemTime,
}

/// A file to open for some targets, once the registry is unlocked.
struct ToOpen {
    dir: PathBuf,
    name: OsString,
    inlets: Vec<Arc<Inlet>>,
}

impl Registry {
    fn wake_all(&self) {
        for inlet in self.dirs.values().flat_map(|d| d.names.values().flatten()) {
            inlet.wake();
        }
    }

    /// The kernel dropped events: renames out of any inbox path since `since` may be unknown, so
    /// every target scans its directory for files born since (see `reader::scan`).
    fn overflowed(&mut self, since: SystemTime) {
        tracing::warn!(
            "the kernel's file event queue overflowed; scanning every inbox's directory for files rotated away unseen"
        );
        for inlet in self.dirs.values().flat_map(|d| d.names.values().flatten()) {
            inlet.push(Arrival::Rescan {
                since,
                restart: false,
            });
        }
    }

    fn handle(&mut self, wd: &WatchDescriptor, mask: EventMask, cookie: u32, name: Option<&OsStr>) {
        if mask.contains(EventMask::Q_OVERFLOW) {
            return self.overflowed(self.known_until);
        }
        let Some(path) = self.by_wd.get(wd).cloned() else {
            return;
        };
        if let Some(name) = name
            && mask.intersects(EventMask::CREATE | EventMask::MOVED_TO)
            && self
                .parents
                .get(&path)
                .is_some_and(|p| &p.wd == wd && p.children.contains(name))
        {
            self.rewatch(&path.join(name));
        }
        let Some(dir) = self
            .dirs
            .get_mut(&path)
            .filter(|d| d.wd.as_ref() == Some(wd))
        else {
            if mask.contains(EventMask::IGNORED) {
                self.by_wd.remove(wd);
            }
            return;
        };
        let Some(name) = name else {
            // The directory itself was deleted or moved: every inbox in it may have changed, and
            // what is at its path now (if anything) must be watched instead.
            for inlet in dir.names.values().flatten() {
                inlet.wake();
            }
            if mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED) {
                self.lost_watch(&path, wd, mask.contains(EventMask::MOVE_SELF));
            }
            return;
        };
        for inlet in dir.names.get(name).into_iter().flatten() {
            inlet.wake();
        }
        let event = if mask.contains(EventMask::MOVED_FROM) {
            DirEvent::MovedFrom(name, cookie)
        } else if mask.contains(EventMask::MOVED_TO) {
            DirEvent::MovedTo(name, cookie)
        } else if mask.contains(EventMask::DELETE) {
            DirEvent::Deleted(name)
        } else {
            return;
        };
        let mut outcomes = Vec::new();
        let names = &dir.names;
        dir.follow
            .event(event, &|n| names.contains_key(n), &mut outcomes);
        report_losses(&path, names, outcomes);
        if !dir.follow.is_empty() {
            self.following.insert(path);
        }
    }

    /// The watch on `path` (`wd`) is gone or on a directory moved elsewhere: drop it and watch
    /// what is at the path now, if anything.
    fn lost_watch(&mut self, path: &Path, wd: &WatchDescriptor, moved: bool) {
        if let Some(dir) = self.dirs.get_mut(path) {
            dir.wd = None;
            dir.follow = Follow::default();
            self.missing.insert(path.to_owned());
        }
        if moved {
            // The watch follows the directory to its new name; nothing there is an inbox now.
            let _ = self.watches.remove(wd.clone());
        }
        // As a parent of other inbox directories too, it is gone: they are tried again with the
        // missing ones.
        if self.parents.get(path).is_some_and(|p| &p.wd == wd) {
            self.parents.remove(path);
        }
        self.by_wd.remove(wd);
        self.rewatch(path);
    }

    /// Watches the inbox directory `path` again if it exists, and wakes its targets (what was
    /// written in it before the watch was set was not seen).
    fn rewatch(&mut self, path: &Path) {
        let Some(dir) = self.dirs.get(path) else {
            return;
        };
        if dir.wd.is_some() {
            return;
        }
        let Ok(wd) = self.watches.add(path, mask()) else {
            return;
        };
        self.by_wd.insert(wd.clone(), path.to_owned());
        self.missing.remove(path);
        let dir = self.dirs.get_mut(path).expect("looked up above");
        dir.wd = Some(wd);
        for inlet in dir.names.values().flatten() {
            inlet.wake();
        }
        self.watch_parent(path);
    }

    /// Tries again every inbox directory that is not watched; whether some still are not.
    fn rewatch_missing(&mut self) -> bool {
        let missing: Vec<PathBuf> = self.missing.iter().cloned().collect();
        for path in &missing {
            self.rewatch(path);
        }
        !self.missing.is_empty()
    }

    /// Watches the parent of the inbox directory `path` (if it can), for its re-creation.
    fn watch_parent(&mut self, path: &Path) {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return;
        };
        if let Some(p) = self.parents.get_mut(parent) {
            p.children.insert(name.to_owned());
            return;
        }
        let Ok(wd) = self.watches.add(parent, mask()) else {
            return;
        };
        self.by_wd.insert(wd.clone(), parent.to_owned());
        self.parents.insert(
            parent.to_owned(),
            Parent {
                wd,
                children: BTreeSet::from([name.to_owned()]),
            },
        );
    }

    /// The end of a buffer of events: the files the followers ask to open.
    fn end_batch(&mut self) -> Vec<ToOpen> {
        let mut opens = Vec::new();
        for path in std::mem::take(&mut self.following) {
            let Some(dir) = self.dirs.get_mut(&path) else {
                continue;
            };
            let mut outcomes = Vec::new();
            dir.follow.end_batch(&mut outcomes);
            let mut lost = Vec::new();
            for outcome in outcomes {
                match outcome {
                    Outcome::Open { inbox, name } => opens.push(ToOpen {
                        dir: path.to_owned(),
                        name,
                        inlets: dir.names.get(&inbox).cloned().unwrap_or_default(),
                    }),
                    other => lost.push(other),
                }
            }
            report_losses(&path, &dir.names, lost);
            if !dir.follow.is_empty() {
                self.following.insert(path);
            }
        }
        opens
    }
}

/// Hands each [`Outcome::Lost`] to the targets of its inbox.
fn report_losses(dir: &Path, names: &HashMap<OsString, Vec<Arc<Inlet>>>, outcomes: Vec<Outcome>) {
    for outcome in outcomes {
        if let Outcome::Lost { inbox, name, why } = outcome {
            for inlet in names.get(&inbox).into_iter().flatten() {
                inlet.push(Arrival::Lost {
                    path: dir.join(&name),
                    why,
                });
            }
        }
    }
}

/// Opens the files the followers asked for (outside the registry's lock) and hands them to
/// their targets; returns the names that were not there.
fn open_all(opens: Vec<ToOpen>) -> Vec<(PathBuf, OsString)> {
    let mut not_there = Vec::new();
    for ToOpen { dir, name, inlets } in opens {
        let path = dir.join(&name);
        match super::open_inbox(&path) {
            Ok(file) => {
                for inlet in &inlets {
                    match file.try_clone() {
                        Ok(file) => inlet.push(Arrival::File {
                            path: path.clone(),
                            file,
                        }),
                        Err(_) => inlet.push(Arrival::Lost {
                            path: path.clone(),
                            why: "could not be held open (out of file descriptors)",
                        }),
                    }
                }
            }
            Err(InboxError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                not_there.push((dir, name));
            }
            // Something that is not a regular file (a symlink a producer planted and rotated):
            // nothing is read from it, as at the inbox path.
            Err(InboxError::NotAFile { .. }) => {}
            Err(_) => {
                for inlet in &inlets {
                    inlet.push(Arrival::Lost {
                        path: path.clone(),
                        why: "could not be opened",
                    });
                }
            }
        }
    }
    not_there
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
        let registry = Arc::new(Mutex::new(Registry {
            watches: inotify.watches(),
            dirs: HashMap::new(),
            parents: HashMap::new(),
            by_wd: HashMap::new(),
            missing: BTreeSet::new(),
            following: BTreeSet::new(),
            known_until: SystemTime::now(),
        }));
        let shared = Arc::clone(&registry);
        std::thread::Builder::new()
            .name("inbox-watch".into())
            .spawn(move || read_events(inotify, &stop_rx, &shared))
            .map_err(|source| InboxError::Watch {
                dir: PathBuf::from("(inotify)"),
                source,
            })?;
        Ok(InboxWatcher {
            registry,
            stop: Some(stop_tx),
        })
    }

    /// Watches `inbox` and returns a fresh inlet that is woken when it may have changed.
    pub fn watch(&mut self, inbox: &Path) -> Result<Arc<Inlet>, InboxError> {
        let inlet = Arc::new(Inlet::new());
        self.watch_with(inbox, Arc::clone(&inlet))?;
        Ok(inlet)
    }

    /// Watches `inbox`, waking `inlet` when it may have changed and handing it the files that
    /// leave the inbox path. The inbox file need not exist; its directory must. The watch is
    /// added under the registry lock, so the reader knows the directory by the time an event for
    /// it is read.
    pub fn watch_with(&mut self, inbox: &Path, inlet: Arc<Inlet>) -> Result<(), InboxError> {
        let (dir, name) = split(inbox)?;
        let mut registry = lock(&self.registry);
        if !registry.dirs.contains_key(&dir) {
            let wd = registry.watches.add(&dir, mask()).map_err(|source| {
                match source.raw_os_error() {
                    Some(libc::ENOENT) | Some(libc::ENOTDIR) => InboxError::DirectoryMissing {
                        dir: dir.clone(),
                        inbox: inbox.to_path_buf(),
                    },
                    _ => limit_or_error(&dir, source),
                }
            })?;
            registry.by_wd.insert(wd.clone(), dir.clone());
            registry.dirs.insert(
                dir.clone(),
                Dir {
                    wd: Some(wd),
                    names: HashMap::new(),
                    follow: Follow::default(),
                },
            );
            registry.watch_parent(&dir);
        }
        registry
            .dirs
            .get_mut(&dir)
            .expect("inserted above")
            .names
            .entry(name)
            .or_default()
            .push(inlet);
        Ok(())
    }

    /// Stops waking for `inbox` (all its inlets); unwatches the directory when it was the last.
    pub fn unwatch(&mut self, inbox: &Path) -> Result<(), InboxError> {
        let (dir, name) = split(inbox)?;
        let mut registry = lock(&self.registry);
        let Some(entry) = registry.dirs.get_mut(&dir) else {
            return Ok(());
        };
        entry.names.remove(&name);
        if entry.names.is_empty() {
            let entry = registry.dirs.remove(&dir).expect("looked up above");
            registry.missing.remove(&dir);
            registry.following.remove(&dir);
            let still_parent = registry.parents.contains_key(&dir);
            if let Some(wd) = entry.wd
                && !still_parent
            {
                registry.by_wd.remove(&wd);
                // The directory may be gone already, which removed the watch too.
                let _ = registry.watches.remove(wd);
            }
            registry.unwatch_parent(&dir);
        }
        Ok(())
    }
}

impl Registry {
    /// `dir` is no longer an inbox directory: its parent stops watching for it.
    fn unwatch_parent(&mut self, dir: &Path) {
        let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
            return;
        };
        let Some(p) = self.parents.get_mut(parent) else {
            return;
        };
        p.children.remove(name);
        if !p.children.is_empty() {
            return;
        }
        let p = self.parents.remove(parent).expect("looked up above");
        // The same watch, if the parent is an inbox directory too, stays for it.
        if self
            .dirs
            .get(parent)
            .is_none_or(|d| d.wd.as_ref() != Some(&p.wd))
        {
            self.by_wd.remove(&p.wd);
            let _ = self.watches.remove(p.wd);
        }
    }
}

fn lock(registry: &Mutex<Registry>) -> std::sync::MutexGuard<'_, Registry> {
    registry.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The reader thread: waits for events or the stop pipe, hands one buffer of events at a time
/// to the registry, then opens the files its followers ask for.
fn read_events(mut inotify: Inotify, stop: &OwnedFd, registry: &Mutex<Registry>) {
    let mut buffer = [0u8; 16 * 1024];
    let mut missing = false;
    let mut known_until = SystemTime::now() - Duration::from_secs(1);
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
        let timeout = if missing { REWATCH_EVERY_MS } else { -1 };
        // SAFETY: poll(2) on two valid descriptors owned by this thread.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            tracing::warn!("file watcher stopped: {}", std::io::Error::last_os_error());
            lock(registry).wake_all();
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        let read_at = SystemTime::now();
        let opens = match inotify.read_events(&mut buffer) {
            Ok(events) => {
                let mut registry = lock(registry);
                registry.known_until = known_until;
                for event in events {
                    registry.handle(&event.wd, event.mask, event.cookie, event.name);
                }
                registry.end_batch()
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Vec::new(),
            Err(error) => {
                tracing::warn!(%error, "file watcher error; checking every inbox");
                lock(registry).wake_all();
                Vec::new()
            }
        };
        known_until = read_at - Duration::from_secs(1);
        let not_there = open_all(opens);
        let mut registry = lock(registry);
        for (dir, name) in not_there {
            if let Some(d) = registry.dirs.get_mut(&dir) {
                d.follow.not_there(&name);
            }
        }
        missing = !registry.missing.is_empty() && registry.rewatch_missing();
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
