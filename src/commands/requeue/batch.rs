//! The steps of `requeue` on disk: batches taken from the dead-letter file, appended to the inbox
//! with a journal, and purged entries.
//!
//! Entries are handled as the exact lines of the dead-letter file, so "remove the batch's entries
//! from the dead-letter file" compares bytes, not parsed values.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RequeueError;
use super::select::{EntryOutcome, Selection};
use crate::commands::push::{PushError, append_lines_with};
use crate::config::Target;
use crate::record::LocalRules;
use crate::state::deadletter::{self, DeadLetter};
use crate::state::layout::Kind;
use crate::state::private::write_private_atomically;

/// Where a batch was appended.
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    /// The inbox file's device.
    dev: u64,
    /// The inbox file's inode.
    ino: u64,
    /// The offset of the batch's first byte.
    offset: u64,
}

/// The batches of target `name` that a crashed run left in `dir`, oldest first (none if `dir`
/// does not exist).
pub(super) fn pending(dir: &Path, name: &str) -> Result<Vec<PathBuf>, RequeueError> {
    let prefix = format!("{name}.");
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RequeueError::io("cannot list", dir)(e)),
    };
    let mut found: Vec<PathBuf> = listing
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let f = p.file_name().and_then(|f| f.to_str()).unwrap_or_default();
            f.starts_with(&prefix) && f.ends_with(".batch.jsonl")
        })
        .collect();
    found.sort();
    Ok(found)
}

/// A dead-letter file as read: its entries with their exact lines, and the lines that are not
/// entries (a torn write's fragment), kept byte for byte.
struct DeadFile {
    entries: Vec<(String, DeadLetter)>,
    unparsed: Vec<Vec<u8>>,
}

fn read_dead(path: &Path) -> Result<DeadFile, RequeueError> {
    let contents =
        deadletter::read_contents(path).map_err(RequeueError::io("cannot read", path))?;
    Ok(DeadFile {
        entries: contents
            .entries
            .into_iter()
            .map(|e| (e.text, e.entry))
            .collect(),
        unparsed: contents.unparsed.into_iter().map(|u| u.bytes).collect(),
    })
}

/// The dead-letter file read under its lock (held while the returned file lives), after checking
/// that `--line` names entries it has; `None` if there is no file.
fn read_locked(
    dead: &Path,
    name: &str,
    select: &Selection,
) -> Result<Option<(File, DeadFile)>, RequeueError> {
    if !dead.exists() {
        select.check_lines(name, 0)?;
        return Ok(None);
    }
    let lock = deadletter::open_locked(dead).map_err(RequeueError::io("cannot lock", dead))?;
    let read = read_dead(dead)?;
    select.check_lines(name, read.entries.len())?;
    Ok(Some((lock, read)))
}

/// The entries of a batch file (written whole, by rename) with their exact lines.
fn read_lines(path: &Path) -> Result<Vec<(String, DeadLetter)>, RequeueError> {
    let read = read_dead(path)?;
    if !read.unparsed.is_empty() {
        let contents =
            deadletter::read_contents(path).map_err(RequeueError::io("cannot read", path))?;
        return Err(RequeueError::io("cannot parse", path)(
            contents.unparsed[0].to_error(path),
        ));
    }
    Ok(read.entries)
}

fn joined<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Replaces the dead-letter file (whose lock the caller holds) by `keep` and then the lines that
/// were not entries, atomically; removes it if both are empty. The daemon's writer notices the new
/// file when it next takes the lock.
fn rewrite(dead: &Path, keep: &[&str], unparsed: &[Vec<u8>]) -> Result<(), RequeueError> {
    if keep.is_empty() && unparsed.is_empty() {
        std::fs::remove_file(dead).map_err(RequeueError::io("cannot remove", dead))?;
        if let Some(dir) = dead.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(RequeueError::io("cannot sync", dir))?;
        }
        return Ok(());
    }
    let mut bytes = joined(keep.iter().copied());
    for line in unparsed {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    }
    write_private_atomically(dead, ".tmp-", &bytes, Kind::DeadLetter.durability())
        .map(|_| ())
        .map_err(RequeueError::io("cannot rewrite", dead))
}

/// The entries of the batches an interrupted run left, with the dead-letter file each was taken
/// from.
///
/// A run writes its batch, then replaces the dead-letter file without the batch's entries (a
/// rename puts a new file in place, or the file is removed). So while the file a batch was taken
/// from is still the one at the path, the run stopped before that rewrite and the batch's entries
/// are still in it, once each: they are the batch's, and leave the file with it. Once another
/// file is there, the batch's entries left already, and a line equal to one of them is an entry
/// of its own (two entries may be byte for byte the same). A new file may get the inode number of
/// a removed one, but an entry in it equal to a batched one would need the same time to the
/// millisecond. Batches of older versions do not name their file: their lines are taken to be in
/// whatever file is there.
#[derive(Debug, Default)]
pub(super) struct Held {
    /// Each batch: the file it was taken from, and its lines.
    batches: Vec<(Option<FileId>, Vec<String>)>,
}

/// A file's device and inode.
type FileId = (u64, u64);

impl Held {
    /// The entries of `batches`.
    pub(super) fn of(batches: &[PathBuf]) -> Result<Held, RequeueError> {
        let mut held = Held::default();
        for b in batches {
            let lines = read_lines(b)?.into_iter().map(|(l, _)| l).collect();
            held.batches.push((taken_from(b), lines));
        }
        Ok(held)
    }

    /// For each of `lines` (the dead-letter file `file`'s entries, in order), whether a batch
    /// holds it: one line per batch line, the first ones found.
    pub(super) fn mark<'a>(
        &self,
        file: Option<FileId>,
        lines: impl IntoIterator<Item = &'a str>,
    ) -> Vec<bool> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for (from, batch) in &self.batches {
            if from.is_none() || *from == file {
                for l in batch {
                    *counts.entry(l.as_str()).or_default() += 1;
                }
            }
        }
        lines
            .into_iter()
            .map(|l| match counts.get_mut(l) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            })
            .collect()
    }
}

/// A batch's name: `<target>.<time>.<dev>-<ino>.batch.jsonl`, naming the dead-letter file it was
/// taken from.
fn batch_name(name: &str, from: &File) -> std::io::Result<String> {
    let meta = from.metadata()?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    Ok(format!(
        "{name}.{stamp}.{}-{}.batch.jsonl",
        meta.dev(),
        meta.ino()
    ))
}

/// The dead-letter file a batch was taken from, as its name says (`None`: an older version's).
fn taken_from(batch: &Path) -> Option<FileId> {
    let file = batch.file_name()?.to_str()?;
    let (rest, _) = file.rsplit_once(".batch.jsonl")?;
    let (_, id) = rest.rsplit_once('.')?;
    let (dev, ino) = id.split_once('-')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// The identity of the dead-letter file at `path` now, if there is one.
pub(super) fn identity(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// What [`take`] moved and left.
pub(super) struct Taken {
    /// The new batch, if any entry was moved.
    pub batch: Option<PathBuf>,
    /// What became of each selected entry.
    pub entries: Vec<EntryOutcome>,
}

/// Under the dead-letter file's lock, moves the selected entries that [`Selection::judge`] lets go
/// back into a new batch in `dir`, and drops the entries that batches of an interrupted run hold
/// (`held`). Entries are numbered as `--list` shows the file.
pub(super) fn take(
    dead: &Path,
    dir: &Path,
    name: &str,
    select: &Selection,
    rules: &LocalRules<'_>,
    held: &Held,
) -> Result<Taken, RequeueError> {
    let mut taken = Taken {
        batch: None,
        entries: Vec::new(),
    };
    let Some((
        lock,
        DeadFile {
            entries: lines,
            unparsed,
        },
    )) = read_locked(dead, name, select)?
    else {
        return Ok(taken);
    };
    let file = lock.metadata().ok().map(|m| (m.dev(), m.ino()));
    let batched = held.mark(file, lines.iter().map(|(l, _)| l.as_str()));
    let plan = select.plan(
        lines.iter().zip(&batched).map(|((_, e), b)| (e, *b)),
        Some(rules),
    );
    let (mut moved, mut keep) = (Vec::new(), Vec::new());
    for (((line, _), leaves), batched) in lines.iter().zip(&plan.leaves).zip(&batched) {
        if *batched {
            continue;
        }
        if *leaves { &mut moved } else { &mut keep }.push(line.as_str());
    }
    taken.entries = plan.outcomes;
    if moved.is_empty() {
        if keep.len() < lines.len() {
            rewrite(dead, &keep, &unparsed)?;
        }
        return Ok(taken);
    }
    let batch = dir.join(batch_name(name, &lock).map_err(RequeueError::io("cannot stat", dead))?);
    write_private_atomically(
        &batch,
        ".tmp-",
        &joined(moved.iter().copied()),
        Kind::Requeue.durability(),
    )
    .map(|_| ())
    .map_err(RequeueError::io("cannot write", &batch))?;
    rewrite(dead, &keep, &unparsed)?;
    taken.batch = Some(batch);
    Ok(taken)
}

/// Appends a batch's lines to the inbox (unless a journal shows they already were), calling
/// `check` on the inbox descriptor under its lock before writing, then removes the batch.
/// Returns how many lines it holds.
pub(super) fn append(
    target: &Target,
    batch: &Path,
    check: impl FnOnce(&File) -> Result<(), RequeueError>,
) -> Result<usize, RequeueError> {
    let journal_path = batch.with_extension("journal");
    let payload: Vec<Vec<u8>> = read_lines(batch)?
        .iter()
        .map(|(_, e)| {
            let mut l = e.original_bytes();
            l.push(b'\n');
            l
        })
        .collect();
    let bytes: Vec<u8> = payload.concat();
    let already = match std::fs::read(&journal_path) {
        Ok(j) => {
            let journal: Journal = serde_json::from_slice(&j).map_err(|e| RequeueError::Io {
                what: "cannot parse",
                path: journal_path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
            appended_at(&target.inbox, &journal, &bytes)
                .map_err(RequeueError::io("cannot check", &target.inbox))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(RequeueError::io("cannot read", &journal_path)(e)),
    };
    if !already && !payload.is_empty() {
        let mut refused = None;
        let appended = append_lines_with(&target.inbox, &payload, |file, offset| {
            if let Err(e) = check(file) {
                refused = Some(e);
                return Err(PushError::Refused);
            }
            write_journal(&journal_path, file, offset).map_err(|source| PushError::Write {
                path: journal_path.clone(),
                source,
            })
        });
        if let Some(e) = refused {
            return Err(e);
        }
        appended?;
    }
    std::fs::remove_file(batch).map_err(RequeueError::io("cannot remove", batch))?;
    let _ = std::fs::remove_file(&journal_path);
    Ok(payload.len())
}

fn write_journal(path: &Path, file: &File, offset: u64) -> std::io::Result<()> {
    let meta = file.metadata()?;
    let journal = Journal {
        dev: meta.dev(),
        ino: meta.ino(),
        offset,
    };
    let bytes = serde_json::to_vec(&journal)?;
    write_private_atomically(path, ".tmp-", &bytes, Kind::Requeue.durability()).map(|_| ())
}

/// Whether the inbox file named in `journal` holds `bytes` at its offset.
fn appended_at(inbox: &Path, journal: &Journal, bytes: &[u8]) -> std::io::Result<bool> {
    let same = |f: &File| {
        f.metadata()
            .is_ok_and(|m| (m.dev(), m.ino()) == (journal.dev, journal.ino))
    };
    let file = match crate::inbox::open_inbox(inbox) {
        Ok(f) if same(&f) => f,
        // The inbox was rotated since: the batch was written before the rotation, or the write
        // never happened and the file we appended to is gone. Look for the file among its siblings.
        _ => match sibling_with_inode(inbox, journal)? {
            Some(f) => f,
            None => return Ok(false),
        },
    };
    let mut file = file;
    if file.metadata()?.len() < journal.offset + bytes.len() as u64 {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(journal.offset))?;
    let mut found = vec![0; bytes.len()];
    file.read_exact(&mut found)?;
    Ok(found == bytes)
}

fn sibling_with_inode(inbox: &Path, journal: &Journal) -> std::io::Result<Option<File>> {
    let Some(dir) = inbox.parent() else {
        return Ok(None);
    };
    for entry in std::fs::read_dir(dir)?.filter_map(Result::ok) {
        // `DirEntry::metadata` does not follow symlinks; the open below does not either.
        // The descriptor is compared too: the name may hold another file by the time it is opened.
        let same = |m: &std::fs::Metadata| (m.dev(), m.ino()) == (journal.dev, journal.ino);
        if let Ok(m) = entry.metadata()
            && same(&m)
            && let Ok(f) = crate::inbox::open_inbox(&entry.path())
            && f.metadata().is_ok_and(|m| same(&m))
        {
            return Ok(Some(f));
        }
    }
    Ok(None)
}

/// Under the dead-letter file's lock, moves the selected entries to `archive` (appended, 0600,
/// synced before the dead-letter file is rewritten). Returns what became of each.
pub(super) fn purge(
    dead: &Path,
    archive: &Path,
    select: &Selection,
    name: &str,
    held: &Held,
) -> Result<Vec<EntryOutcome>, RequeueError> {
    let Some((
        lock,
        DeadFile {
            entries: lines,
            unparsed,
        },
    )) = read_locked(dead, name, select)?
    else {
        return Ok(Vec::new());
    };
    // Entries of a batch an interrupted run left are that batch's: neither purged nor kept.
    let file = lock.metadata().ok().map(|m| (m.dev(), m.ino()));
    let batched = held.mark(file, lines.iter().map(|(l, _)| l.as_str()));
    let plan = select.plan(lines.iter().zip(&batched).map(|((_, e), b)| (e, *b)), None);
    let (mut gone, mut keep) = (Vec::new(), Vec::new());
    for (((line, _), leaves), batched) in lines.iter().zip(&plan.leaves).zip(&batched) {
        if *batched {
            continue;
        }
        if *leaves { &mut gone } else { &mut keep }.push(line.as_str());
    }
    if gone.is_empty() {
        return Ok(plan.outcomes);
    }
    let mut out =
        deadletter::open_locked(archive).map_err(RequeueError::io("cannot open", archive))?;
    out.write_all(&joined(gone.iter().copied()))
        .and_then(|()| Kind::Purged.durability().sync(&out))
        .map_err(RequeueError::io("cannot write", archive))?;
    rewrite(dead, &keep, &unparsed)?;
    Ok(plan.outcomes)
}
