//! `notion-inbox requeue`: after the cause is fixed, move a target's dead letters back into its
//! inbox, exactly once.
//!
//! 1. Under the dead-letter file's lock, rename it to a batch file in `<state_dir>/requeue/`: the
//!    daemon then starts a new dead-letter file, and nothing is both requeued and kept.
//! 2. Append the batch's original lines to the inbox with one locked write (as `push` does). Just
//!    before the write, under the inbox's lock, a journal records the inbox file and the offset the
//!    lines will start at.
//! 3. Remove the batch and its journal.
//!
//! A crash between any two steps is repaired by the next `requeue`: a batch without a journal was
//! not appended; a batch with a journal was appended if the inbox holds its bytes at the journal's
//! offset, and is appended otherwise. So no record is lost and none is appended twice.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::commands::push::append_lines_with;
use crate::config::{Config, Target};
use crate::daemon::deadletter::{self, DeadLetter};

/// What `requeue` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Requeued {
    /// Lines appended to the inbox.
    pub appended: usize,
    /// Dead letters that cannot be requeued (a line over max_line_bytes, whose bytes were not
    /// kept); they stay in the dead-letter file.
    pub kept: usize,
}

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

/// Requeues target `name`'s dead letters.
pub fn run(config: &Config, name: &str) -> anyhow::Result<Requeued> {
    let target = config.target(name)?;
    let dir = config.daemon.state_dir.join("requeue");
    crate::state::private::create_private_dir(&dir)?;
    let mut total = Requeued::default();
    // Finish batches a crashed run left, then take the current dead letters.
    let mut batches = pending_batches(&dir, name)?;
    if let Some(batch) = take_dead_letters(target, config, &dir)? {
        batches.push(batch);
    }
    for batch in batches {
        let done = requeue_batch(target, config, &batch)?;
        total.appended += done.appended;
        total.kept += done.kept;
    }
    Ok(total)
}

fn pending_batches(dir: &Path, name: &str) -> std::io::Result<Vec<PathBuf>> {
    let prefix = format!("{name}.");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
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

fn take_dead_letters(
    target: &Target,
    config: &Config,
    dir: &Path,
) -> std::io::Result<Option<PathBuf>> {
    let path = target.dead_letter_path(&config.daemon);
    if !path.exists() {
        return Ok(None);
    }
    let file = deadletter::open_locked(&path)?;
    if file.metadata()?.len() == 0 {
        return Ok(None);
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let batch = dir.join(format!("{}.{stamp}.batch.jsonl", target.name));
    std::fs::rename(&path, &batch)?;
    std::fs::File::open(dir)?.sync_all()?;
    drop(file);
    Ok(Some(batch))
}

fn requeue_batch(target: &Target, config: &Config, batch: &Path) -> anyhow::Result<Requeued> {
    let journal_path = batch.with_extension("journal");
    let entries: Vec<DeadLetter> = deadletter::read_all(batch)?;
    let (lines, kept): (Vec<&DeadLetter>, Vec<&DeadLetter>) = entries
        .iter()
        .partition(|e| !(e.line.is_empty() && e.line_base64.is_none()));
    let payload: Vec<Vec<u8>> = lines
        .iter()
        .map(|e| {
            let mut l = e.original_bytes();
            l.push(b'\n');
            l
        })
        .collect();
    let bytes: Vec<u8> = payload.concat();
    let already = match std::fs::read(&journal_path) {
        Ok(j) => {
            let journal: Journal = serde_json::from_slice(&j)?;
            appended_at(&target.inbox, &journal, &bytes)?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e.into()),
    };
    if !already && !payload.is_empty() {
        append_lines_with(&target.inbox, &payload, |file, offset| {
            let meta = file.metadata()?;
            let journal = Journal {
                dev: meta.dev(),
                ino: meta.ino(),
                offset,
            };
            let tmp = journal_path.with_extension("journal.tmp");
            crate::state::private::write_private(&tmp, &serde_json::to_vec(&journal)?)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &journal_path)
        })?;
    }
    // Dead letters whose bytes were not kept go back to the dead-letter file.
    if !kept.is_empty() {
        let mut dl = deadletter::DeadLetterFile::new(target.dead_letter_path(&config.daemon));
        for e in &kept {
            dl.append(e)?;
        }
    }
    std::fs::remove_file(batch)?;
    let _ = std::fs::remove_file(&journal_path);
    Ok(Requeued {
        appended: payload.len(),
        kept: kept.len(),
    })
}

/// Whether the inbox file named in `journal` holds `bytes` at its offset.
fn appended_at(inbox: &Path, journal: &Journal, bytes: &[u8]) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let file = match std::fs::metadata(inbox) {
        Ok(m) if (m.dev(), m.ino()) == (journal.dev, journal.ino) => std::fs::File::open(inbox)?,
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

fn sibling_with_inode(inbox: &Path, journal: &Journal) -> std::io::Result<Option<std::fs::File>> {
    let Some(dir) = inbox.parent() else {
        return Ok(None);
    };
    for entry in std::fs::read_dir(dir)?.filter_map(Result::ok) {
        if let Ok(m) = entry.metadata()
            && (m.dev(), m.ino()) == (journal.dev, journal.ino)
        {
            return Ok(Some(std::fs::File::open(entry.path())?));
        }
    }
    Ok(None)
}
