//! The simulated inbox watcher: the directory's renames and deletions go, as inotify reports them,
//! through the real follower (`inbox::follow`), and the files it asks for are opened and handed to
//! the target's real inlet, as the daemon's watcher thread does. Its buffers end at random
//! times, but always before the tailer looks (the real thread reads within milliseconds, a
//! tailer's look comes later). Some schedules overflow the queue now and then: the event is
//! dropped and every target is told to rescan, as `inbox::watch` does.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use notion_inbox::inbox::follow::{DirEvent, Follow, Outcome};
use notion_inbox::inbox::{Arrival, InboxError, Inlet, open_inbox};
use rand::Rng;

use super::World;

/// One daemon process's watcher of the inbox's directory.
pub(super) struct SimWatch {
    follow: Follow,
    pub(super) inlet: Arc<Inlet>,
    cookie: u32,
    /// Names the follower asked to open at the end of the buffer.
    to_open: Vec<std::ffi::OsString>,
    /// How likely an event is dropped (a queue overflow).
    overflow: f64,
}

impl SimWatch {
    /// A new process's watcher: nothing followed, an empty inlet.
    pub(super) fn new(overflow: f64) -> SimWatch {
        SimWatch {
            follow: Follow::default(),
            inlet: Arc::new(Inlet::new()),
            cookie: 0,
            to_open: Vec::new(),
            overflow,
        }
    }
}

impl World {
    fn inbox_name(&self) -> std::ffi::OsString {
        self.inbox.file_name().unwrap().to_os_string()
    }

    /// Feeds one event to the follower, unless the queue overflows (then every target rescans
    /// from now: the events before were read).
    fn dir_event(&mut self, event: DirEvent<'_>) -> bool {
        if self.rng.random_bool(self.watch.overflow) {
            if std::env::var("SIM_TRACE").is_ok() {
                eprintln!("{:?} watcher: overflow, {event:?} dropped", self.now);
            }
            self.watch.inlet.push(Arrival::Rescan {
                since: SystemTime::now(),
                restart: false,
            });
            return false;
        }
        let inbox = self.inbox_name();
        let mut out = Vec::new();
        self.watch
            .follow
            .event(event, &|n: &OsStr| n == inbox.as_os_str(), &mut out);
        self.outcomes(out);
        true
    }

    /// `from` was renamed to `to`, both in the inbox's directory.
    pub(super) fn watch_renamed(&mut self, from: &Path, to: &Path) {
        self.watch.cookie += 1;
        let cookie = self.watch.cookie;
        let (from, to) = (from.file_name().unwrap(), to.file_name().unwrap());
        // A pair is dropped or kept whole: the half of a pair that is kept goes unpaired, as
        // the real follower treats a lone `IN_MOVED_FROM` (a move out of the directory).
        if self.dir_event(DirEvent::MovedFrom(from, cookie)) {
            let inbox = self.inbox_name();
            let mut out = Vec::new();
            self.watch.follow.event(
                DirEvent::MovedTo(to, cookie),
                &|n: &OsStr| n == inbox.as_os_str(),
                &mut out,
            );
            self.outcomes(out);
        }
    }

    /// `path` in the inbox's directory was deleted.
    pub(super) fn watch_deleted(&mut self, path: &Path) {
        self.dir_event(DirEvent::Deleted(path.file_name().unwrap()));
    }

    fn outcomes(&mut self, out: Vec<Outcome>) {
        let dir = self.inbox.parent().unwrap().to_path_buf();
        for outcome in out {
            if std::env::var("SIM_TRACE").is_ok() {
                eprintln!("{:?} watcher: {outcome:?}", self.now);
            }
            match outcome {
                Outcome::Open { name, .. } => self.watch.to_open.push(name),
                Outcome::Lost { name, why, .. } => self.watch.inlet.push(Arrival::Lost {
                    path: dir.join(name),
                    why,
                }),
            }
        }
    }

    /// The end of a buffer: what the follower asks for is opened and handed to the inlet.
    pub(super) fn watch_batch(&mut self) {
        let mut out = Vec::new();
        self.watch.follow.end_batch(&mut out);
        self.outcomes(out);
        let dir = self.inbox.parent().unwrap().to_path_buf();
        for name in std::mem::take(&mut self.watch.to_open) {
            let path = dir.join(&name);
            match open_inbox(&path) {
                Ok(file) => {
                    if std::env::var("SIM_TRACE").is_ok() {
                        eprintln!("{:?} watcher: opened {}", self.now, path.display());
                    }
                    self.watch.inlet.push(Arrival::File { path, file });
                }
                Err(InboxError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    self.watch.follow.not_there(&name);
                }
                Err(InboxError::NotAFile { .. }) => {}
                Err(e) => panic!("opening {}: {e}", path.display()),
            }
        }
    }
}
