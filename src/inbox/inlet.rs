//! What the watcher hands one target: a wake-up, and the files it opened for it ([`Arrival`]):
//! files that left the inbox path by rename and were found under their new name (see
//! [`super::follow`]), or the report that one was lost before it could be opened.
//!
//! A target that is closed keeps its inlet: the arrivals wait there (each an open descriptor,
//! so a file rotated and deleted meanwhile is still read) until it prepares its tailer, which
//! takes them ([`super::Tailer::attach`]). Their number is bounded ([`MAX_ARRIVALS`]); past it a
//! file is not kept, and that is reported as a loss.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use tokio::sync::Notify;

/// At most this many arrivals wait for one target; past it, a file is reported lost.
pub const MAX_ARRIVALS: usize = 1024;

/// One thing the watcher found for a target.
#[derive(Debug)]
pub enum Arrival {
    /// A file that was at the inbox path, opened where it went.
    File {
        /// Where it was opened.
        path: PathBuf,
        /// The open file.
        file: File,
    },
    /// A file that was at the inbox path and could not be opened any more.
    Lost {
        /// The last name it had.
        path: PathBuf,
        /// What happened to it.
        why: &'static str,
    },
    /// Files may have left the inbox path unseen since this time: the kernel's event queue
    /// overflowed, or (with `restart`) the daemon was not running. The tailer scans the directory
    /// (see `reader::scan`); after a restart only if the checkpoint's file is no longer at the
    /// path (a file can be born at the path only once it left).
    Rescan {
        /// Every file born before it was known.
        since: SystemTime,
        /// Said by a restart rather than an overflow.
        restart: bool,
    },
}

/// One target's wake-ups and arrivals.
#[derive(Debug, Default)]
pub struct Inlet {
    wake: Notify,
    arrivals: Mutex<Vec<Arrival>>,
}

impl Inlet {
    /// A new inlet, with nothing in it.
    pub fn new() -> Inlet {
        Inlet::default()
    }

    /// Wakes the target (one permit: a burst of wake-ups is one).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits for a wake-up.
    pub async fn notified(&self) {
        self.wake.notified().await;
    }

    /// Hands the target a file or a loss, and wakes it.
    pub fn push(&self, arrival: Arrival) {
        let mut arrivals = self.arrivals.lock().unwrap_or_else(PoisonError::into_inner);
        let arrival = match arrival {
            Arrival::File { path, .. } if arrivals.len() >= MAX_ARRIVALS => Arrival::Lost {
                path,
                why: "not kept: more rotated files were waiting for the target than it may hold",
            },
            Arrival::Rescan { since, restart } => {
                // One scan covers them all: the earliest time, an overflow's unconditional scan.
                for waiting in arrivals.iter_mut() {
                    if let Arrival::Rescan {
                        since: s,
                        restart: r,
                    } = waiting
                    {
                        *s = (*s).min(since);
                        *r &= restart;
                        drop(arrivals);
                        self.wake();
                        return;
                    }
                }
                Arrival::Rescan { since, restart }
            }
            other => other,
        };
        // Losses are kept past the bound: each is a line of text, and each must be reported.
        arrivals.push(arrival);
        drop(arrivals);
        self.wake();
    }

    /// Takes everything that arrived, in order.
    pub fn take(&self) -> Vec<Arrival> {
        std::mem::take(&mut *self.arrivals.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether anything waits to be taken.
    pub fn has_arrivals(&self) -> bool {
        !self
            .arrivals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}
