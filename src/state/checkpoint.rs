//! One checkpoint per target, in two slot files: `<state_dir>/checkpoints/<target>.json` and
//! `<target>~b.json`.
//!
//! Writing ([`CheckpointWriter`]): each save overwrites, in place, the slot that does not hold the
//! newest durable checkpoint, with a sequence number and a CRC-32; a durable save fsyncs it. A crash
//! (or a power loss) at any point leaves at least one whole slot, and never a slot that looks whole
//! but mixes two writes. Files left by older versions (one file written by rename; temporary files
//! `.tmp-<target>~*`) are read, and the temporary files removed.
//!
//! Reading: no slot file means a first start (`None`). The whole slot with the highest sequence
//! number wins; a damaged slot beside a whole one is the trace of an interrupted write (a warning).
//! If no slot is whole (empty, truncated, not JSON, wrong fields, bad checksum, another version),
//! that is a [`StateError`] naming the file and the way out. Never a silent start from zero
//! (Promtail crash-looped on a truncated positions file; Vector lost its place after a hard kill).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StateError;
use super::private::{create_private_dir, private_options};
use crate::inbox::FileIdentity;
pub use notion_inbox_core::checkpoint::CHECKPOINT_VERSION;

/// A target's durable progress: the core's, with a file as its segment.
pub type Checkpoint = notion_inbox_core::checkpoint::Checkpoint<FileIdentity>;
/// A record in flight when a checkpoint was written: the core's, with a file as its segment.
pub type InFlight = notion_inbox_core::checkpoint::InFlight<FileIdentity>;

/// Prefix of temporary files in the checkpoints directory.
const TEMP_PREFIX: &str = ".tmp-";

/// The checkpoints directory.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    /// `<state_dir>/checkpoints`.
    dir: PathBuf,
}

impl CheckpointStore {
    /// The store at `<state_dir>/checkpoints` for reading only: `None` if the directory does not
    /// exist (nothing is created).
    pub fn existing(state_dir: &Path) -> Option<CheckpointStore> {
        let dir = super::layout::StateDir(state_dir).checkpoints();
        dir.is_dir().then_some(CheckpointStore { dir })
    }

    /// Opens (creating if needed) `<state_dir>/checkpoints`.
    pub fn open(state_dir: &Path) -> Result<CheckpointStore, StateError> {
        let dir = super::layout::StateDir(state_dir).checkpoints();
        create_private_dir(&dir).map_err(|source| StateError::Dir {
            path: dir.clone(),
            source,
        })?;
        Ok(CheckpointStore { dir })
    }

    /// Removes the temporary files that a crash of a version before the two slots left behind
    /// (this version writes none), in one listing of the directory. The daemon calls it once at
    /// start; listing the directory per target made a start with 10 000 targets quadratic (a
    /// minute of `getdents64` over 20 000 slot files).
    pub fn remove_leftovers(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                // Best effort: a leftover that cannot be removed is still never read.
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// The checkpoint file of `target` (its first slot; see [`CheckpointStore::slots`]).
    pub fn path(&self, target: &str) -> Result<PathBuf, StateError> {
        Ok(self.slots(target)?[0].clone())
    }

    /// The two slot files of `target`: `<target>.json` and `<target>~b.json` (`~` cannot occur in
    /// a target name, so no target's second slot is another's first).
    pub fn slots(&self, target: &str) -> Result<[PathBuf; 2], StateError> {
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
        Ok([
            self.dir.join(format!("{target}.json")),
            self.dir.join(format!("{target}~b.json")),
        ])
    }

    /// Reads the checkpoint of `target`: `None` if there is none yet.
    pub fn load(&self, target: &str) -> Result<Option<Checkpoint>, StateError> {
        Ok(self.read_slots(target)?.map(|(cp, _)| cp.checkpoint))
    }

    /// Reads the checkpoint of `target` with the time it was written.
    pub fn load_stamped(
        &self,
        target: &str,
    ) -> Result<Option<(Checkpoint, DateTime<Utc>)>, StateError> {
        Ok(self
            .read_slots(target)?
            .map(|(cp, _)| (cp.checkpoint, cp.updated)))
    }

    /// Reads both slots and picks the newest whole one. Returns it and its slot.
    fn read_slots(&self, target: &str) -> Result<Option<(Slot, usize)>, StateError> {
        let paths = self.slots(target)?;
        let mut read = Vec::with_capacity(2);
        for (i, path) in paths.iter().enumerate() {
            match fs::read(path) {
                Ok(bytes) => read.push((i, parse(target, path.clone(), &bytes))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StateError::Read {
                        target: target.to_owned(),
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
        let newest = read
            .iter()
            .filter_map(|(i, r)| r.as_ref().ok().map(|slot| (slot.seq, *i)))
            .max();
        let Some((_, chosen)) = newest else {
            // Nothing whole: the first error (a version error first: it has its own way out).
            let mut errors: Vec<StateError> =
                read.into_iter().filter_map(|(_, r)| r.err()).collect();
            errors.sort_by_key(|e| !matches!(e, StateError::Version { .. }));
            return match errors.into_iter().next() {
                Some(e) => Err(e),
                None => Ok(None),
            };
        };
        let mut slot = None;
        for (i, r) in read {
            match r {
                Ok(s) if i == chosen => slot = Some(s),
                Ok(_) => {}
                // The expected trace of a crash during a write: the other slot is whole.
                Err(e) => tracing::warn!(
                    target_name = %target,
                    "{e} (the other slot is whole and is used; this one is rewritten by the next save)"
                ),
            }
        }
        Ok(slot.map(|s| (s, chosen)))
    }

    /// Opens `target`'s checkpoint for writing: its newest checkpoint (`None` on a first start)
    /// and the writer that continues from it. Both slot files are fsynced first, so that whatever
    /// was read is on disk before the writer starts overwriting the other slot.
    pub fn writer(
        &self,
        target: &str,
    ) -> Result<(Option<Checkpoint>, CheckpointWriter), StateError> {
        let paths = self.slots(target)?;
        let found = self.read_slots(target)?;
        for path in &paths {
            if let Ok(file) = File::open(path) {
                file.sync_all().map_err(|source| StateError::Write {
                    target: target.to_owned(),
                    path: path.clone(),
                    source,
                })?;
            }
        }
        let (seq, durable_slot, checkpoint, loaded_written) = match found {
            Some((slot, i)) => (slot.seq, i, Some(slot.checkpoint), Some(slot.updated)),
            // The first write goes to the first slot, `<target>.json`.
            None => (0, 1, None, None),
        };
        let writer = CheckpointWriter {
            dir: self.dir.clone(),
            target: target.to_owned(),
            paths,
            seq,
            durable_slot,
            lens: [None, None],
            dir_unsynced: false,
            loaded_written,
        };
        Ok((checkpoint, writer))
    }

    /// Writes the checkpoint of `target` once, durably (a tool's or a test's write; the daemon
    /// keeps a [`CheckpointWriter`]).
    pub fn save(&self, target: &str, checkpoint: &Checkpoint) -> Result<(), StateError> {
        self.writer(target)?.1.save(checkpoint, true)
    }
}

/// Writes one target's checkpoints, in place, into two alternating slot files.
///
/// Hand-written rather than a temp file renamed over the checkpoint: with a thousand targets each
/// saving every second, creating and deleting an inode per save (and taking the directory's lock
/// for the rename) cost more CPU than sending the records (BENCHMARKS.md, scale). Here a save is a
/// `pwrite` into an existing file. Each slot holds a sequence number and a CRC-32 of its content;
/// the reader takes the whole slot with the highest sequence number. A crash during a write can
/// only damage the slot being written; the other is whole.
///
/// Durability: the slot holding the newest DURABLE checkpoint is never written; every save goes to
/// the other slot, and a durable save (fsync) makes that slot the durable one. So a power loss
/// leaves at least the last durable checkpoint, whatever happened to the non-durable ones.
#[derive(Debug)]
pub struct CheckpointWriter {
    dir: PathBuf,
    target: String,
    paths: [PathBuf; 2],
    /// The sequence number of the last write.
    seq: u64,
    /// The slot that holds the newest durable checkpoint.
    durable_slot: usize,
    /// The slot files' lengths, when known.
    lens: [Option<u64>; 2],
    /// A slot file was created and the directory not fsynced since: the next durable save does
    /// it (its name must survive a power loss, whichever save created it).
    dir_unsynced: bool,
    /// When the checkpoint it continues from was written.
    loaded_written: Option<DateTime<Utc>>,
}

impl CheckpointWriter {
    /// When the checkpoint this writer continues from was written (`None` on a first start): a
    /// file born in the inbox's directory since then was not held when it was written.
    pub fn loaded_written(&self) -> Option<std::time::SystemTime> {
        self.loaded_written.map(std::time::SystemTime::from)
    }

    /// Writes `checkpoint`; `durable` adds the fsync, so that it also survives a power loss, not
    /// only a crash.
    pub fn save(&mut self, checkpoint: &Checkpoint, durable: bool) -> Result<(), StateError> {
        use std::os::unix::fs::FileExt;
        let slot = 1 - self.durable_slot;
        let path = &self.paths[slot];
        let write_err = |source| StateError::Write {
            target: self.target.clone(),
            path: path.clone(),
            source,
        };
        let seq = self.seq + 1;
        let bytes = Slot::encode(checkpoint, Utc::now(), seq).map_err(write_err)?;
        let (file, created) = match fs::OpenOptions::new().write(true).open(path) {
            Ok(file) => (file, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (
                // Private whatever the umask: a checkpoint names the inbox files and keys.
                private_options()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)
                    .map_err(write_err)?,
                true,
            ),
            Err(e) => return Err(write_err(e)),
        };
        file.write_all_at(&bytes, 0).map_err(write_err)?;
        let len = match self.lens[slot] {
            Some(len) => len,
            None => file.metadata().map_err(write_err)?.len(),
        };
        if len > bytes.len() as u64 {
            file.set_len(bytes.len() as u64).map_err(write_err)?;
        }
        self.lens[slot] = Some(bytes.len() as u64);
        self.dir_unsynced |= created;
        if durable {
            file.sync_data().map_err(write_err)?;
            if self.dir_unsynced {
                File::open(&self.dir)
                    .and_then(|dir| dir.sync_all())
                    .map_err(write_err)?;
                self.dir_unsynced = false;
            }
            self.durable_slot = slot;
        }
        self.seq = seq;
        Ok(())
    }
}

/// A slot file: the checkpoint, its sequence number and the CRC-32 of both.
#[derive(Debug, Serialize, Deserialize)]
struct Slot {
    #[serde(flatten)]
    checkpoint: Checkpoint,
    /// When it was written (stamped by the writer: the core reads no clock).
    updated: DateTime<Utc>,
    /// Orders the two slots (absent in version 1 files: 0).
    #[serde(default)]
    seq: u64,
    /// CRC-32 (hex) of the slot's compact JSON without this field. Absent in version 1 files; a
    /// file repaired by hand may leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checksum: Option<String>,
}

impl Slot {
    fn checksum_of(
        checkpoint: &Checkpoint,
        updated: DateTime<Utc>,
        seq: u64,
    ) -> Result<String, serde_json::Error> {
        let bare = serde_json::to_vec(&SlotRef {
            checkpoint,
            updated,
            seq,
            checksum: None,
        })?;
        Ok(format!("{:08x}", crc32fast::hash(&bare)))
    }

    fn encode(checkpoint: &Checkpoint, updated: DateTime<Utc>, seq: u64) -> io::Result<Vec<u8>> {
        let mut checkpoint = checkpoint.clone();
        checkpoint.version = CHECKPOINT_VERSION;
        let sum = Self::checksum_of(&checkpoint, updated, seq).map_err(io::Error::other)?;
        let mut bytes = serde_json::to_vec_pretty(&SlotRef {
            checkpoint: &checkpoint,
            updated,
            seq,
            checksum: Some(sum),
        })
        .map_err(io::Error::other)?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

/// [`Slot`] by reference, for writing.
#[derive(Serialize)]
struct SlotRef<'a> {
    #[serde(flatten)]
    checkpoint: &'a Checkpoint,
    updated: DateTime<Utc>,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    checksum: Option<String>,
}

/// Parses a slot file's bytes, strictly.
fn parse(target: &str, path: PathBuf, bytes: &[u8]) -> Result<Slot, StateError> {
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
        Some(found) if !(1..=u64::from(CHECKPOINT_VERSION)).contains(&found) => {
            return Err(StateError::Version {
                target: target.to_owned(),
                path,
                found,
                expected: CHECKPOINT_VERSION,
            });
        }
        Some(_) => {}
    }
    let slot: Slot = serde_json::from_value(value)
        .map_err(|e| corrupt("a field is missing or invalid", Some(e)))?;
    if let Some(sum) = &slot.checksum {
        let expected = Slot::checksum_of(&slot.checkpoint, slot.updated, slot.seq)
            .map_err(|e| corrupt("a field is missing or invalid", Some(e)))?;
        if *sum != expected {
            return Err(corrupt(
                "its checksum does not match: a write was interrupted",
                None,
            ));
        }
    }
    Ok(slot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::{FileIdentity, Position};

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
        let other = dir.path().join("checkpoints/.tmp-t.b~x.json");
        fs::write(&other, b"{").unwrap();
        // Reading ignores them and changes nothing (status reads); the daemon's start cleans them.
        assert_eq!(store.load("t").unwrap(), Some(cp.clone()));
        assert!(leftover.exists(), "a read removed a file");
        let (loaded, _writer) = store.writer("t").unwrap();
        assert_eq!(loaded, Some(cp.clone()));
        store.remove_leftovers();
        assert!(!leftover.exists() && !other.exists());
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
            text.contains("truncated")
                && text.contains("t~b.json")
                && text.contains("away to start"),
            "{text}"
        );
        assert!(damaged(b"\0\0\0\0").contains("not valid JSON"));
        assert!(damaged(b"{\"offset\": 3}").contains("no \"version\""));
        assert!(damaged(b"{\"version\": 1, \"offset\": -3}").contains("missing or invalid"));
        let text = damaged(b"{\"version\": 7}");
        assert!(
            text.contains("version 7") && text.contains("reads versions 1 to 2"),
            "{text}"
        );
    }

    /// A checkpoint at `offset`.
    fn at(offset: u64) -> Checkpoint {
        Checkpoint::new(
            Some(Position {
                file: identity(),
                offset,
            }),
            vec![],
        )
    }

    #[test]
    fn saves_alternate_between_two_slots_and_the_newest_whole_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        let [a, b] = store.slots("t").unwrap();
        let (found, mut w) = store.writer("t").unwrap();
        assert_eq!(found, None);
        w.save(&at(10), true).unwrap();
        assert!(a.is_file() && !b.exists(), "the first save goes to t.json");
        w.save(&at(20), true).unwrap();
        assert!(b.is_file());
        assert_eq!(store.load("t").unwrap(), Some(at(20)));
        w.save(&at(30), true).unwrap();
        assert_eq!(store.load("t").unwrap(), Some(at(30)));
        // A longer checkpoint, then a shorter one in the same slot: no stale tail survives.
        let mut long = at(40);
        long.in_flight = (0..50)
            .map(|i| InFlight {
                key: format!("key-{i}"),
                file: identity(),
                offset: 40 + i,
                end: 41 + i,
            })
            .collect();
        w.save(&long, true).unwrap();
        w.save(&at(50), true).unwrap();
        w.save(&at(60), true).unwrap();
        assert_eq!(store.load("t").unwrap(), Some(at(60)));
        // A new writer (a restart) goes on from the newest.
        let (found, mut w) = store.writer("t").unwrap();
        assert_eq!(found, Some(at(60)));
        w.save(&at(70), false).unwrap();
        assert_eq!(store.load("t").unwrap(), Some(at(70)));
        // So does a tool's one-off save.
        store.save("t", &at(80)).unwrap();
        assert_eq!(store.load("t").unwrap(), Some(at(80)));
    }

    /// A new store in a temporary directory, target `t`'s slot paths and a writer for it.
    fn fresh_writer() -> (
        tempfile::TempDir,
        CheckpointStore,
        [PathBuf; 2],
        CheckpointWriter,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        let slots = store.slots("t").unwrap();
        let (found, writer) = store.writer("t").unwrap();
        assert_eq!(found, None);
        (dir, store, slots, writer)
    }

    #[test]
    fn non_durable_saves_never_overwrite_the_newest_durable_checkpoint() {
        let (_dir, store, [a, b], mut w) = fresh_writer();
        w.save(&at(10), true).unwrap();
        let durable = fs::read(&a).unwrap();
        for offset in [11, 12, 13] {
            w.save(&at(offset), false).unwrap();
            assert_eq!(
                fs::read(&a).unwrap(),
                durable,
                "the durable slot was written"
            );
        }
        assert_eq!(store.load("t").unwrap(), Some(at(13)));
        // A durable save goes to the other slot and becomes the one to keep.
        w.save(&at(14), true).unwrap();
        let durable = fs::read(&b).unwrap();
        w.save(&at(15), false).unwrap();
        assert_eq!(fs::read(&b).unwrap(), durable);
        // A power loss that wipes the non-durable slot leaves the durable one.
        fs::write(&a, b"\0\0\0\0").unwrap();
        assert_eq!(store.load("t").unwrap(), Some(at(14)));
    }

    #[test]
    fn an_interrupted_write_is_detected_and_the_other_slot_used() {
        let (_dir, store, [a, b], mut w) = fresh_writer();
        w.save(&at(123_456), true).unwrap();
        w.save(&at(123_999), true).unwrap();
        let (old, new) = (fs::read(&a).unwrap(), fs::read(&b).unwrap());
        // Torn at every byte: the new write's head over the old content of the same slot (here:
        // the other slot's bytes, the same length and shape). Some mixes are valid JSON with a
        // plausible offset; the checksum must refuse every one that is not exactly one write.
        assert_eq!(old.len(), new.len());
        let mut refused = 0;
        for cut in 1..new.len() {
            let mut torn = new[..cut].to_vec();
            torn.extend_from_slice(&old[cut..]);
            fs::write(&b, &torn).unwrap();
            let loaded = store.load("t").unwrap();
            if torn == new {
                assert_eq!(loaded, Some(at(123_999)));
            } else if torn == old {
                // Identical bytes: the same checkpoint and sequence number as slot a.
                assert_eq!(loaded, Some(at(123_456)));
            } else {
                assert_eq!(
                    loaded,
                    Some(at(123_456)),
                    "torn at byte {cut} was taken as whole"
                );
                refused += 1;
            }
        }
        assert!(refused > 0);
        // A tail left by a longer earlier write is not whole either.
        let mut tail = new.clone();
        tail.extend_from_slice(b"  \"offset\": 9}\n");
        fs::write(&b, &tail).unwrap();
        assert_eq!(store.load("t").unwrap(), Some(at(123_456)));
    }

    #[test]
    fn a_version_1_checkpoint_is_read_and_continued() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        let mut v1 = at(77);
        v1.version = 1;
        // Version 1: one file, no sequence number, no checksum.
        let mut file = serde_json::to_value(&v1).unwrap();
        file["updated"] = "2026-01-02T03:04:05.678Z".into();
        fs::write(
            store.path("t").unwrap(),
            serde_json::to_vec_pretty(&file).unwrap(),
        )
        .unwrap();
        let (found, mut w) = store.writer("t").unwrap();
        assert_eq!(found, Some(v1));
        w.save(&at(88), false).unwrap();
        assert_eq!(store.load("t").unwrap(), Some(at(88)));
        assert!(
            store.slots("t").unwrap()[1].is_file(),
            "the v1 file was kept as the durable slot"
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
