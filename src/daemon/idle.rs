//! Whether a target has anything to deliver, answered from its checkpoint and one look at its inbox
//! path, without preparing it. A target with nothing to deliver when the daemon starts is left
//! unprepared (no checkpoint writer, no token, no request to Notion, no open inbox, a task of
//! about 2 KiB) until its inbox changes: with 10 000 mostly idle targets, preparing every
//! one at each start cost 20 000 requests of rate budget, a descriptor each and most of the
//! daemon's memory.
//!
//! [`Looks`]: how often a target looks at its inbox without a file event, slowing while idle.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::inbox::{InboxError, open_inbox};
use crate::state::checkpoint::CheckpointStore;

/// True when the checkpoint of `target` (in `store`, if the state directory exists) covers
/// everything at `inbox`: the file there is the checkpoint's file, at the committed offset, with
/// nothing in flight and no other file to drain; or there is no checkpoint and the inbox is
/// missing or empty. Anything else, a damaged checkpoint included, is work (preparing the target
/// reports what is wrong).
pub fn nothing_to_deliver(store: Option<&CheckpointStore>, target: &str, inbox: &Path) -> bool {
    let checkpoint = match store.map(|s| s.load(target)) {
        Some(Ok(c)) => c,
        Some(Err(_)) => return false,
        None => None,
    };
    let position = match &checkpoint {
        Some(c) if !c.next.is_empty() || !c.in_flight.is_empty() => return false,
        Some(c) => c.position(),
        None => None,
    };
    let file = match open_inbox(inbox) {
        Ok(file) => file,
        // No file yet: idle unless the checkpoint's file was moved away (a rotation to drain).
        Err(InboxError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return position.is_none();
        }
        Err(_) => return false,
    };
    let Ok(meta) = file.metadata() else {
        return false;
    };
    match position {
        None => meta.len() == 0,
        Some(p) => {
            meta.ino() == p.file.ino
                && meta.len() == p.offset
                && crate::inbox::identity::head_matches(&p.file, &file).unwrap_or(false)
        }
    }
}

/// The inode and length of what is at the inbox path (not following a symlink), if anything.
pub fn stamp(inbox: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(inbox)
        .ok()
        .map(|m| (m.ino(), m.len()))
}

/// When a target looks at its inbox and token without a file event (the safety net for events
/// the watcher missed, and the backlog figure of `status`): every `reconcile_interval` while it
/// has work; once it has been idle at a look, the interval doubles at each idle look up to
/// [`IDLE_LOOK_MAX`] (with up to half an interval of jitter, so that idle targets do not look in
/// step). With 10 000 idle targets, a look each every 5 s was 16 % of a core. A file event (a
/// producer appended) or work found brings the interval back at once. An overflow of the
/// watcher's queue wakes every target, so a missed append waits at most `IDLE_LOOK_MAX` only if
/// inotify lost it without saying so. Unprepared targets (`wait_for_work`) look the same way.
pub(crate) struct Looks {
    base: Duration,
    interval: Duration,
    pub(crate) next: tokio::time::Instant,
    /// The first of the idle looks in a row.
    idle_since: Option<tokio::time::Instant>,
}

/// The longest an idle target goes without looking at its inbox.
const IDLE_LOOK_MAX: Duration = Duration::from_secs(60);

impl Looks {
    pub(crate) fn new(base: Duration) -> Looks {
        Looks {
            base,
            interval: base,
            next: tokio::time::Instant::now() + base,
            idle_since: None,
        }
    }

    /// How long the target has been idle at every look.
    pub(crate) fn idle_for(&self) -> Duration {
        self.idle_since.map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// A file event: back to the base interval from now.
    pub(crate) fn active(&mut self) {
        self.idle_since = None;
        self.interval = self.base;
        self.next = self.next.min(tokio::time::Instant::now() + self.base);
    }

    /// A look happened; `idle` when the target had nothing to do.
    pub(crate) fn looked(&mut self, idle: bool) {
        let now = tokio::time::Instant::now();
        self.idle_since = if idle {
            self.idle_since.or(Some(now))
        } else {
            None
        };
        self.interval = if idle {
            (self.interval * 2).min(IDLE_LOOK_MAX.max(self.base))
        } else {
            self.base
        };
        // Idle looks spread over half an interval, so that thousands of targets started together
        // do not keep looking together; a busy target's over a tenth.
        let spread = if idle { 2.0 } else { 10.0 };
        let jitter = self.interval.mul_f64(rand::random::<f64>() / spread);
        self.next = tokio::time::Instant::now() + self.interval + jitter;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::Position;
    use crate::state::checkpoint::Checkpoint;

    fn save_at(store: &CheckpointStore, inbox: &Path, offset: u64) {
        let file = std::fs::File::open(inbox).unwrap();
        let id = crate::inbox::identity::of(&file).unwrap().unwrap();
        let cp = Checkpoint::new(Some(Position { file: id, offset }), vec![]);
        store.save("t", &cp).unwrap();
    }

    #[test]
    fn idle_only_when_the_checkpoint_covers_the_whole_inbox() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().join("t.jsonl");
        let idle = |store: Option<&CheckpointStore>| nothing_to_deliver(store, "t", &inbox);
        assert!(idle(None), "no state, no inbox");
        std::fs::write(&inbox, b"").unwrap();
        assert!(idle(None), "an empty inbox");
        std::fs::write(&inbox, b"{\"handle\":\"@a\"}\n").unwrap();
        assert!(!idle(None), "a line and no checkpoint");
        let store = CheckpointStore::open(dir.path()).unwrap();
        save_at(&store, &inbox, 0);
        assert!(!idle(Some(&store)), "a line past the checkpoint");
        save_at(&store, &inbox, 16);
        assert!(idle(Some(&store)), "the checkpoint at the end");
        std::fs::write(&inbox, b"{\"handle\":\"@a\"}\n{\"handle\":\"@b\"}\n").unwrap();
        assert!(!idle(Some(&store)), "appended since");
        // Rotated away: the checkpoint's file must be drained wherever it went.
        std::fs::rename(&inbox, dir.path().join("t.jsonl.1")).unwrap();
        assert!(!idle(Some(&store)), "the checkpoint's file moved away");
        // Another file at the path, as long as the old one.
        std::fs::write(&inbox, b"{\"handle\":\"@x\"}\n{\"handle\":\"@y\"}\n").unwrap();
        save_at(&store, &dir.path().join("t.jsonl.1"), 32);
        assert!(!idle(Some(&store)), "another file at the path");
        std::fs::write(store.path("t").unwrap(), b"damaged").unwrap();
        std::fs::remove_file(store.slots("t").unwrap()[1].clone()).ok();
        assert!(
            !idle(Some(&store)),
            "a damaged checkpoint is for prepare to report"
        );
    }

    #[test]
    fn a_planted_fifo_or_symlink_is_work_for_prepare_to_report() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().join("t.jsonl");
        std::os::unix::fs::symlink("/etc/passwd", &inbox).unwrap();
        assert!(!nothing_to_deliver(None, "t", &inbox));
    }
}
