//! One checkpoint per target: `<state_dir>/checkpoints/<target>.json`.
//!
//! Writing: serialize to a temporary file in the same directory (`.tmp-<target>~*.json`), `fsync` it, rename
//! it over the checkpoint, `fsync` the directory. A crash at any point leaves either the old or the
//! new checkpoint, never a mix; a leftover temporary file is ignored by [`CheckpointStore::load`] and
//! removed by [`CheckpointStore::open`].
//!
//! Reading: a missing file means a first start (`None`). Anything else that is not a valid
//! checkpoint of [`CHECKPOINT_VERSION`] (empty, truncated, not JSON, wrong fields, another version)
//! is a [`StateError`] naming the file and the way out. Never a silent start from zero (Promtail
//! crash-looped on a truncated positions file; Vector lost its place after a hard kill).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StateError;
use crate::inbox::{FileIdentity, Position};

/// The format version written and accepted.
pub const CHECKPOINT_VERSION: u32 = 1;

/// Prefix of temporary files in the checkpoints directory.
const TEMP_PREFIX: &str = ".tmp-";

/// A target's durable progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The format version ([`CHECKPOINT_VERSION`]).
    pub version: u32,
    /// The file the offset is in; `None` before the first record was committed.
    pub file: Option<FileIdentity>,
    /// Everything in `file` before this byte is in Notion or dead-lettered.
    pub offset: u64,
    /// Records past the offset that were sent (or were being sent) but not confirmed when this was
    /// written. On restart they may already be in Notion: delivery checks their keys first.
    pub in_flight: Vec<InFlight>,
    /// How many records past the offset the daemon may have sent while this checkpoint was the
    /// latest on disk (its delivery window). After a crash, the first `window` records past the
    /// offset are checked by key (or counted as possible duplicates) before being sent again.
    #[serde(default)]
    pub window: u32,
    /// When this was written.
    pub updated: DateTime<Utc>,
}

/// A record that was in flight when the checkpoint was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// The record's key (its `"id"`, or [`crate::inbox::LinePos::key`]).
    pub key: String,
    /// The file it was read from.
    pub file: FileIdentity,
    /// Its first byte.
    pub offset: u64,
    /// The byte after its `\n`.
    pub end: u64,
}

impl Checkpoint {
    /// A checkpoint at `position` (none yet: the inbox's beginning), stamped now.
    pub fn new(position: Option<Position>, in_flight: Vec<InFlight>) -> Checkpoint {
        Checkpoint {
            version: CHECKPOINT_VERSION,
            file: position.map(|p| p.file),
            offset: position.map_or(0, |p| p.offset),
            in_flight,
            window: 0,
            updated: Utc::now(),
        }
    }

    /// Where to resume reading, for [`crate::inbox::Tailer::new`].
    pub fn position(&self) -> Option<Position> {
        self.file.map(|file| Position {
            file,
            offset: self.offset,
        })
    }
}

/// The checkpoints directory.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    /// `<state_dir>/checkpoints`.
    dir: PathBuf,
}

impl CheckpointStore {
    /// Opens (creating if needed) `<state_dir>/checkpoints`.
    pub fn open(state_dir: &Path) -> Result<CheckpointStore, StateError> {
        let dir = state_dir.join("checkpoints");
        fs::create_dir_all(&dir).map_err(|source| StateError::Dir {
            path: dir.clone(),
            source,
        })?;
        Ok(CheckpointStore { dir })
    }

    /// The prefix of `target`'s temporary files. `~` cannot occur in a target name, so no target's
    /// prefix is a prefix of another's.
    fn temp_prefix(target: &str) -> String {
        format!("{TEMP_PREFIX}{target}~")
    }

    /// Removes the temporary files a crash during a write of `target`'s checkpoint left behind.
    /// Only this target's: another target may be writing its own at this very moment (removing
    /// every leftover at open made a starting target break another's write).
    fn remove_leftovers(&self, target: &str) {
        let prefix = Self::temp_prefix(target);
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                // Best effort: a leftover that cannot be removed is still never read.
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// The checkpoint file of `target`.
    pub fn path(&self, target: &str) -> Result<PathBuf, StateError> {
        let valid = !target.is_empty()
            && !target.starts_with('.')
            && target
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(StateError::BadTarget {
                target: target.to_owned(),
            });
        }
        Ok(self.dir.join(format!("{target}.json")))
    }

    /// Reads the checkpoint of `target`: `None` if there is none yet.
    pub fn load(&self, target: &str) -> Result<Option<Checkpoint>, StateError> {
        let path = self.path(target)?;
        self.remove_leftovers(target);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Read {
                    target: target.to_owned(),
                    path,
                    source,
                });
            }
        };
        parse(target, path, &bytes).map(Some)
    }

    /// Writes the checkpoint of `target` atomically and durably.
    pub fn save(&self, target: &str, checkpoint: &Checkpoint) -> Result<(), StateError> {
        self.save_with(target, checkpoint, true)
    }

    /// Writes the checkpoint of `target` atomically (temp file, rename); `durable` adds the fsyncs
    /// of the file and the directory, so that it also survives a power loss, not only a crash.
    pub fn save_with(
        &self,
        target: &str,
        checkpoint: &Checkpoint,
        durable: bool,
    ) -> Result<(), StateError> {
        let path = self.path(target)?;
        let write_err = |source| StateError::Write {
            target: target.to_owned(),
            path: path.clone(),
            source,
        };
        let mut json = serde_json::to_vec_pretty(checkpoint).map_err(io::Error::other);
        if let Ok(json) = &mut json {
            json.push(b'\n');
        }
        let json = json.map_err(write_err)?;
        let mut temp = tempfile::Builder::new()
            .prefix(&Self::temp_prefix(target))
            .suffix(".json")
            .tempfile_in(&self.dir)
            .map_err(write_err)?;
        temp.write_all(&json).map_err(write_err)?;
        if durable {
            temp.as_file().sync_all().map_err(write_err)?;
        }
        temp.persist(&path).map_err(|e| write_err(e.error))?;
        if durable {
            File::open(&self.dir)
                .and_then(|dir| dir.sync_all())
                .map_err(write_err)?;
        }
        Ok(())
    }
}

/// Parses a checkpoint file's bytes, strictly.
fn parse(target: &str, path: PathBuf, bytes: &[u8]) -> Result<Checkpoint, StateError> {
    let corrupt = |what, source| StateError::Corrupt {
        target: target.to_owned(),
        path: path.clone(),
        what,
        source,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(corrupt("the file is empty", None));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_eof() {
            corrupt("the file is truncated", Some(e))
        } else {
            corrupt("the file is not valid JSON", Some(e))
        }
    })?;
    let version = value.get("version").and_then(serde_json::Value::as_u64);
    match version {
        None => return Err(corrupt("it has no \"version\" field", None)),
        Some(found) if found != u64::from(CHECKPOINT_VERSION) => {
            return Err(StateError::Version {
                target: target.to_owned(),
                path,
                found,
                expected: CHECKPOINT_VERSION,
            });
        }
        Some(_) => {}
    }
    serde_json::from_value(value).map_err(|e| corrupt("a field is missing or invalid", Some(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> FileIdentity {
        FileIdentity {
            dev: 2049,
            ino: 77,
            head_len: 20,
            head_hash: 0xdead_beef,
        }
    }

    fn sample() -> Checkpoint {
        let file = identity();
        Checkpoint::new(
            Some(Position { file, offset: 120 }),
            vec![InFlight {
                key: "4d-00000000deadbeef-120".into(),
                file,
                offset: 120,
                end: 160,
            }],
        )
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        assert_eq!(store.load("tweets").unwrap(), None);
        let cp = sample();
        store.save("tweets", &cp).unwrap();
        assert_eq!(store.load("tweets").unwrap(), Some(cp.clone()));
        assert_eq!(
            cp.position(),
            Some(Position {
                file: identity(),
                offset: 120
            })
        );
        // Overwriting replaces it.
        let next = Checkpoint::new(None, vec![]);
        store.save("tweets", &next).unwrap();
        assert_eq!(store.load("tweets").unwrap(), Some(next));
        assert!(dir.path().join("checkpoints/tweets.json").is_file());
    }

    #[test]
    fn leftover_temp_files_are_ignored_and_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        let cp = sample();
        store.save("t", &cp).unwrap();
        // A crash between writing the temp file and renaming it leaves this behind.
        let leftover = dir.path().join("checkpoints/.tmp-t~crash.json");
        fs::write(&leftover, b"{\"version\":1,\"partial").unwrap();
        // Another target's write in progress, which loading `t` must not touch.
        let other = dir.path().join("checkpoints/.tmp-t.b~x.json");
        fs::write(&other, b"{").unwrap();
        assert_eq!(store.load("t").unwrap(), Some(cp.clone()));
        assert!(!leftover.exists());
        assert!(
            other.exists(),
            "another target's temporary file was removed"
        );
        assert_eq!(store.load("t").unwrap(), Some(cp));
    }

    fn damaged(contents: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        fs::write(store.path("t").unwrap(), contents).unwrap();
        let err = store.load("t").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("checkpoints/t.json"), "{text}");
        assert!(text.contains("target t"), "{text}");
        text
    }

    #[test]
    fn damaged_checkpoints_are_loud_errors() {
        assert!(damaged(b"").contains("empty"));
        assert!(damaged(b"\n  \n").contains("empty"));
        let full = serde_json::to_vec(&sample()).unwrap();
        let text = damaged(&full[..full.len() / 2]);
        assert!(
            text.contains("truncated") && text.contains("move it away"),
            "{text}"
        );
        assert!(damaged(b"\0\0\0\0").contains("not valid JSON"));
        assert!(damaged(b"{\"offset\": 3}").contains("no \"version\""));
        assert!(damaged(b"{\"version\": 1, \"offset\": -3}").contains("missing or invalid"));
        let text = damaged(b"{\"version\": 7}");
        assert!(
            text.contains("version 7") && text.contains("reads version 1"),
            "{text}"
        );
    }

    #[test]
    fn target_names_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        for bad in ["", "../x", ".hidden", "a/b", "a b"] {
            assert!(matches!(store.path(bad), Err(StateError::BadTarget { .. })));
        }
        assert!(store.path("tweets-2.main_x").is_ok());
    }
}
