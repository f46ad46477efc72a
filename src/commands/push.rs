//! `notion-inbox push`: append records to a target's inbox safely.
//!
//! Every record is validated first (nothing is appended if one is bad), then the records are
//! appended with one `write` on an `O_APPEND` descriptor under an exclusive advisory lock (`flock`),
//! so concurrent producers never interleave. If the inbox ends with a partial line (a producer died
//! mid-write), a newline is written first, so that the partial line becomes a line of its own (which
//! the daemon dead-letters) instead of corrupting the first new record. The inbox is opened as the
//! daemon opens it ([`crate::inbox::open_inbox_for_append`]): a symlink, FIFO or device planted at
//! the path is refused, not followed.

use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde_json::{Map, Value};

use crate::config::Config;
use crate::record::{LocalRules, RecordError};

/// What to push.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The target whose inbox receives the records.
    #[arg(long, short)]
    pub target: String,
    /// The record's handle (with --tweet: push one record instead of reading stdin).
    #[arg(long)]
    pub handle: Option<String>,
    /// The record's tweet.
    #[arg(long)]
    pub tweet: Option<String>,
    /// The record's key (optional; used for deduplication).
    #[arg(long)]
    pub id: Option<String>,
    /// Print what was appended as JSON (`{"target", "inbox", "appended"}`).
    #[arg(long)]
    pub json: bool,
}

/// Errors of `push`.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// A record on stdin is not acceptable.
    #[error("stdin line {line}: {reason}; nothing was appended")]
    BadRecord {
        /// One-based line number on stdin.
        line: usize,
        /// Why.
        reason: RecordError,
    },
    /// No record was given.
    #[error("no record given: pass --handle and --tweet, or JSON lines on stdin")]
    Nothing,
    /// The inbox could not be written.
    #[error(
        "cannot append to {path}: {source}; check that the directory exists and that you may write to it (producers belong to the notion-inbox group)"
    )]
    Write {
        /// The inbox.
        path: std::path::PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// Something other than a regular file is at the inbox path.
    #[error(transparent)]
    Inbox(crate::inbox::InboxError),
    /// The caller's check refused the inbox file (it says why).
    #[error("the inbox was refused")]
    Refused,
    /// Reading stdin failed.
    #[error("cannot read stdin: {0}")]
    Stdin(#[source] std::io::Error),
}

/// Runs `push`; returns how many records were appended.
pub fn run(config: &Config, args: &PushArgs, stdin: &mut dyn BufRead) -> anyhow::Result<usize> {
    let target = config.target(&args.target)?;
    let rules = LocalRules::new(target, config.daemon.max_line_bytes as usize);
    let mut lines: Vec<Vec<u8>> = Vec::new();
    if args.handle.is_some() || args.tweet.is_some() || args.id.is_some() {
        let mut record = Map::new();
        for (k, v) in [
            ("handle", &args.handle),
            ("tweet", &args.tweet),
            ("id", &args.id),
        ] {
            if let Some(v) = v {
                record.insert(k.to_owned(), Value::String(v.clone()));
            }
        }
        lines.push(
            validated(&rules, record).map_err(|reason| PushError::BadRecord { line: 0, reason })?,
        );
    } else {
        let mut buf = Vec::new();
        let mut number = 0;
        loop {
            buf.clear();
            if stdin
                .read_until(b'\n', &mut buf)
                .map_err(PushError::Stdin)?
                == 0
            {
                break;
            }
            number += 1;
            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
            if line.trim_ascii().is_empty() {
                continue;
            }
            let bad = |reason| PushError::BadRecord {
                line: number,
                reason,
            };
            let record = crate::record::line::parse_line(line).map_err(bad)?;
            lines.push(validated(&rules, record).map_err(bad)?);
        }
    }
    if lines.is_empty() {
        return Err(PushError::Nothing.into());
    }
    append_lines(&target.inbox, &lines)?;
    Ok(lines.len())
}

/// Checks one record by `rules` and returns its compact line, newline included.
fn validated(rules: &LocalRules<'_>, record: Map<String, Value>) -> Result<Vec<u8>, RecordError> {
    rules.record(&record)?;
    let mut line = serde_json::to_vec(&Value::Object(record))
        .map_err(|e| RecordError::NotJson(e.to_string()))?;
    rules.length(line.len())?;
    line.push(b'\n');
    Ok(line)
}

/// Appends whole lines under an exclusive lock, with one write.
pub fn append_lines(path: &Path, lines: &[Vec<u8>]) -> Result<(), PushError> {
    append_lines_with(path, lines, |_, _| Ok(()))
}

/// Like [`append_lines`], calling `before_write(file, offset)` under the lock, just before the
/// write, with the offset where the lines will start (after a newline that closes a partial line).
pub fn append_lines_with(
    path: &Path,
    lines: &[Vec<u8>],
    before_write: impl FnOnce(&std::fs::File, u64) -> Result<(), PushError>,
) -> Result<(), PushError> {
    let err = |source| PushError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = crate::inbox::open_inbox_for_append(path).map_err(|e| match e {
        crate::inbox::InboxError::Io { source, .. } => err(source),
        other => PushError::Inbox(other),
    })?;
    file.lock().map_err(err)?;
    let mut buf = Vec::with_capacity(lines.iter().map(Vec::len).sum::<usize>() + 1);
    let len = file.metadata().map_err(err)?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1)).map_err(err)?;
        file.read_exact(&mut last).map_err(err)?;
        if last[0] != b'\n' {
            buf.push(b'\n');
        }
    }
    let start = len + buf.len() as u64;
    for line in lines {
        buf.extend_from_slice(line);
    }
    before_write(&file, start)?;
    // O_APPEND: the write lands at the end whatever the seek above did.
    file.write_all(&buf).map_err(err)?;
    file.sync_data().map_err(err)?;
    file.unlock().map_err(err)?;
    Ok(())
}
