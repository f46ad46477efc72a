//! A closed target's whole look ([`nothing_to_deliver`]: the checkpoint against the file at the
//! path; `inbox::look` reads the path and compares). When a look is whole, and when a target
//! closes and wakes, are decided in `notion_inbox_core::dormancy`.
//!
//! A target with nothing to deliver when the daemon starts is left unprepared (no checkpoint
//! writer, no token, no request to Notion, no open inbox, a task of about 2 KiB) until its inbox
//! changes: with 10 000 mostly idle targets, preparing every one at each start cost 20 000
//! requests of rate budget, a descriptor each and most of the daemon's memory.

use std::path::Path;

use crate::inbox::look;
use crate::state::checkpoint::CheckpointStore;

/// True when the checkpoint of `target` (in `store`, if the state directory exists) covers
/// everything at `inbox` ([`look::nothing_to_deliver`]). A checkpoint that
/// cannot be read is work: preparing the target reports what is wrong.
pub fn nothing_to_deliver(store: Option<&CheckpointStore>, target: &str, inbox: &Path) -> bool {
    let checkpoint = match store.map(|s| s.load(target)) {
        Some(Ok(c)) => c,
        Some(Err(_)) => return false,
        None => None,
    };
    look::nothing_to_deliver(checkpoint.as_ref(), inbox)
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
