//! The [`Tailer`]: reads complete lines from one inbox file, following it through rotation,
//! truncation, deletion and replacement.
//!
//! # Model
//! The tailer owns at most one open file (the *source*) and a read position in it: the start of
//! the first line not handed out yet. It keeps no bytes between calls; a partial last line stays in
//! the file and is read again once its `\n` has arrived (the cost is one `pread` of a partial line).
//! Each call to [`Tailer::next_batch`] first compares the inbox path with the source:
//!
//! - the path names the same inode: if its length is below the position (truncation, copytruncate),
//!   or its head no longer matches the source's [`FileIdentity`] (rewritten in place), reading starts
//!   again at 0;
//! - the path names another inode, or nothing (rotation by rename, atomic replace, deletion): the
//!   source is *retiring*. It is read to its end, and kept and read on later calls until its length
//!   has not changed for [`TailOptions::rotate_grace`] (a writer may append to a renamed file until
//!   it reopens). Then the tailer moves to the file at the path and reads it from 0. While nothing
//!   is at the path, the old handle is kept;
//! - no source and no file: wait (a [`TailEvent::Waiting`] once).
//!
//! Files are read strictly one after the other, so a single committed [`Position`] describes the
//! progress, and the order of records is the order of the files.
//!
//! # Lines
//! Reads are `pread`s of [`TailOptions::chunk`] bytes; lines are found with `memchr`. A line is
//! handed out only with its `\n`. A run of NUL bytes before a line (left by a writer without
//! `O_APPEND` after copytruncate) is skipped, as are blank lines (only spaces, tabs and a `\r`); the
//! position still moves past them. One `\r` before the `\n` is stripped. A line longer than
//! [`TailOptions::max_line`] becomes [`Item::Oversized`]: once the partial line exceeds the limit,
//! the bytes are dropped as they are scanned, so memory stays at `max_line + chunk`.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use memchr::memchr;

mod copy;
mod path;
mod resume;
mod scan;

use super::{
    Arrival, FileIdentity, InboxError, Inlet, Item, LinePos, Position, TailEvent, TailOptions,
    open_inbox,
};

/// Reads the complete lines of one inbox file. See the module docs.
#[derive(Debug)]
pub struct Tailer {
    /// The inbox path.
    path: PathBuf,
    /// Its parent directory (which must exist).
    dir: PathBuf,
    /// Limits and timings.
    opts: TailOptions,
    /// The file being read, if any.
    src: Option<Source>,
    /// Files to read after `src`, in order: files that appeared at the path while an older one was
    /// still being read, or that the checkpoint named. Each is held open, so a rotation that
    /// renames or deletes it before its turn loses nothing.
    queue: VecDeque<Source>,
    /// Whether [`TailEvent::Waiting`] was reported since the inbox was last seen.
    waiting_reported: bool,
    /// Something other than a regular file was at the inbox path at the last look.
    refused: bool,
    /// The last batch stopped at its budget.
    more: bool,
    /// Events from [`Tailer::new`], handed out with the first batch.
    events: Vec<TailEvent>,
    /// The read buffer, reused while there is a backlog and freed when caught up.
    buf: Vec<u8>,
    /// The watcher's inlet, which hands over the files that left the inbox path by rename.
    inlet: Option<Arc<Inlet>>,
    /// When the last few looks at the path began, oldest first: a file born before one of them
    /// was held from it on, or had left the path before it (see `reader::scan`).
    looks: VecDeque<std::time::SystemTime>,
    /// The files retired last (device, inode, identity): the watcher may hand one over again
    /// when it is renamed once more (it follows a file one buffer past its opening), and it
    /// must not be read twice.
    retired: VecDeque<(u64, u64, Option<FileIdentity>)>,
    /// The files the last batch retired, in order: the order handed out after it keeps them in
    /// their place (one may have settled and been reported in the same batch).
    retired_in_batch: Vec<FileIdentity>,
}

/// How many retired files the tailer remembers.
const RETIRED_KEPT: usize = 256;

/// Unread bytes, for status reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Bytes after the read position in the current file (including a partial last line), plus
    /// the unread bytes of the queued files and of the file at the path.
    pub bytes: u64,
    /// Whether an old file is being drained after a rotation.
    pub rotating: bool,
}

/// The open file and where we are in it.
#[derive(Debug)]
struct Source {
    /// The open handle (kept open across rotations and deletions until drained).
    file: File,
    /// Its device, from `fstat`.
    dev: u64,
    /// Its inode, from `fstat`.
    ino: u64,
    /// Its identity, once its head is settled.
    identity: Option<FileIdentity>,
    /// The start of the first line not handed out yet; while an oversized line is skipped, how far
    /// it has been scanned.
    pos: u64,
    /// The oversized line being skipped, if any.
    skipping: Option<Skipping>,
    /// The furthest end of the file a read has seen: what lies between `pos` and it was there and
    /// not read yet (lost if the file is cut or rewritten under it).
    seen_end: u64,
    /// Set when the inbox path no longer names this file.
    retiring: Option<Retiring>,
    /// Whether its identity was handed out in a [`TailEvent::Queued`] (or came from the checkpoint).
    reported: bool,
    /// The last line handed out, as `(start, end, FNV-1a of its bytes)`: what a copy of the file
    /// must hold at the same place to be taken for one (see `reader::copy`).
    last_line: Option<(u64, u64, u64)>,
}

/// A line longer than the limit, being scanned for its end without being kept.
#[derive(Debug, Clone, Copy)]
struct Skipping {
    /// Its first byte.
    start: u64,
    /// Whether every byte so far was blank (a long blank line is skipped like a short one).
    blank: bool,
}

/// Whether a byte may appear in a blank line.
fn is_blank(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r')
}

/// The drain of a file that the inbox path no longer names.
#[derive(Debug)]
struct Retiring {
    /// Its length when last checked.
    last_len: u64,
    /// When that length was first seen.
    quiet_since: Instant,
    /// No writer holds it (a copy the tailer found): it is done once read to its end.
    no_writer: bool,
}

/// How many bytes one [`Tailer::next_batch`] reads at most, lines or not. A file of NULs or of
/// one endless line (a planted sparse file of terabytes) is scanned a slice per call, so no call
/// holds the tailer for long; [`Tailer::more`] says that there is more to read right away.
const SCAN_LIMIT: usize = 64 << 20;

/// Counts what a batch has taken.
struct Budget {
    /// Items still allowed.
    items: usize,
    /// Line bytes still allowed.
    bytes: usize,
    /// Bytes that may still be read from files.
    scan: usize,
}

impl Budget {
    fn take(&mut self, bytes: usize) {
        self.items = self.items.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes);
    }

    fn full(&self) -> bool {
        self.items == 0 || self.bytes == 0 || self.scan == 0
    }
}

/// How a read of the source ended.
enum Read {
    /// The batch budget is used up.
    Full,
    /// The end of the file (a partial line may remain).
    Eof,
}

/// What to do after the source's end.
enum AtEof {
    /// More bytes arrived: read again.
    Again,
    /// Nothing more now.
    Stay,
    /// The retired source is done; open the file at the path.
    Switched,
}

impl Source {
    fn open(file: File, pos: u64, identity: Option<FileIdentity>) -> io::Result<Source> {
        let meta = file.metadata()?;
        Ok(Source {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            identity,
            pos,
            skipping: None,
            seen_end: pos,
            retiring: None,
            reported: identity.is_some(),
            last_line: None,
        })
    }

    /// Starts again from byte 0 (after a truncation or rewrite).
    fn restart(&mut self) {
        self.pos = 0;
        self.identity = None;
        self.skipping = None;
        self.seen_end = 0;
        self.last_line = None;
        // Its new identity is reported in its place in the reading order, before the files queued
        // behind it (they wait for it to settle).
        self.reported = false;
    }

    /// The identity, computing it if needed. `None` only if the file shrank under us.
    fn settle_identity(&mut self) -> io::Result<Option<FileIdentity>> {
        if self.identity.is_none() {
            self.identity = super::identity::of(&self.file)?;
        }
        Ok(self.identity)
    }
}

impl Tailer {
    /// Prepares to read the inbox at `path`, resuming at `start` (the committed position from the
    /// checkpoint) if given. Fails only if the inbox's directory is missing or unreadable; a missing
    /// inbox file is waited for.
    ///
    /// Resuming: if the file at `path` is the checkpoint's file, reading starts at the offset (at 0,
    /// with [`TailEvent::Truncated`], if the file is now shorter). Otherwise the inbox's directory is
    /// searched for it (a rotated `inbox.jsonl.1`); if found, it is drained from the offset first.
    /// If it is gone, [`TailEvent::PreviousGone`] says so and the current file is read from 0.
    pub fn new(
        path: PathBuf,
        opts: TailOptions,
        start: Option<Position>,
    ) -> Result<Tailer, InboxError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut tailer = Tailer {
            path,
            dir,
            opts,
            src: None,
            queue: VecDeque::new(),
            waiting_reported: false,
            refused: false,
            more: false,
            events: Vec::new(),
            buf: Vec::new(),
            inlet: None,
            looks: VecDeque::new(),
            retired: VecDeque::new(),
            retired_in_batch: Vec::new(),
        };
        tailer.check_dir()?;
        if let Some(start) = start {
            tailer.resume(start)?;
        }
        Ok(tailer)
    }

    /// Takes, from now on, the files the watcher opened for this inbox after they left its path
    /// (see `inbox::follow`): each is queued behind the files held, unless it is one of them.
    /// What the inlet holds already is taken at the next look.
    pub fn attach(&mut self, inlet: Arc<Inlet>) {
        self.inlet = Some(inlet);
    }

    /// Queues the files the watcher handed over; reports the ones it lost.
    pub(super) fn take_arrivals(&mut self, out: &mut Vec<Item>) {
        let Some(inlet) = &self.inlet else {
            return;
        };
        for arrival in inlet.take() {
            match arrival {
                Arrival::File { path, file } => {
                    let Ok(mut src) = Source::open(file, 0, None) else {
                        continue;
                    };
                    // Not at the path (it was renamed away): its quiet period runs from now,
                    // beside the others'.
                    let Ok(retiring) = Retiring::new(&src.file) else {
                        continue;
                    };
                    if let Some(held) = self
                        .src
                        .iter_mut()
                        .chain(self.queue.iter_mut())
                        .find(|s| (s.dev, s.ino) == (src.dev, src.ino))
                    {
                        // Held already, from the path: it left, so what leaves after it comes
                        // after it.
                        held.retiring.get_or_insert(retiring);
                        continue;
                    }
                    if self.was_retired(&src) {
                        continue;
                    }
                    src.retiring = Some(retiring);
                    tracing::debug!(
                        "{}: holding {}, rotated away",
                        self.path.display(),
                        path.display()
                    );
                    // Behind the files that left the path before it, before the one still there.
                    let at = self
                        .queue
                        .iter()
                        .position(|s| s.retiring.is_none())
                        .unwrap_or(self.queue.len());
                    self.queue.insert(at, src);
                }
                Arrival::Lost { path, why } => {
                    out.push(Item::Event(TailEvent::LostUnopened { path, why }));
                }
                Arrival::Rescan { since, restart } => {
                    if !restart || !self.first_held_at_path() {
                        // From the last look before it: a file born since may have left the path
                        // unseen (one born before was at the path at that look, or had left it
                        // before, and was followed).
                        let from = self.looks.iter().rev().find(|t| **t <= since);
                        self.scan_since(from.copied().unwrap_or(since));
                    }
                }
            }
        }
        // What left the path is older than what is there now.
        if self.src.is_none() {
            self.src = self.queue.pop_front();
        }
    }

    /// Looks at the inbox path without reading lines: a new file there is opened and queued at
    /// once (even while the reader is held back), so that it cannot be rotated away unseen.
    /// Returns the identities of files newly settled in the reading order; other events are handed
    /// out with the next batch.
    pub fn observe(&mut self) -> Vec<FileIdentity> {
        let mut out = Vec::new();
        self.retired_in_batch.clear();
        if let Err(e) = self.check_path(&mut out) {
            // The next read reports it, with the health that goes with it.
            tracing::debug!("observing {}: {e}", self.path.display());
        }
        self.report_settled(&mut out, true);
        let mut queued = Vec::new();
        for item in out {
            match item {
                Item::Event(TailEvent::Queued { file }) => queued.push(file),
                Item::Event(event) => self.events.push(event),
                _ => {}
            }
        }
        queued
    }

    /// Takes the reports of files the watcher lost before it could open them, which otherwise
    /// wait for the next batch: they name no position, so they need not come in reading order.
    pub fn take_unopened(&mut self) -> Vec<TailEvent> {
        let (lost, kept) = std::mem::take(&mut self.events)
            .into_iter()
            .partition(|e| matches!(e, TailEvent::LostUnopened { .. }));
        self.events = kept;
        lost
    }

    /// Reports, in reading order, the files whose identity has settled since last asked, up to
    /// the first that has not (so the order handed out is the reading order), passing over
    /// a rotated file that has not: it holds no complete line, and were it to get one before it
    /// is retired (a producer writing to it after the rotation), the `Order` that goes with its
    /// report puts it back in its place. Without that, an empty file rotated away hid every file
    /// behind it from the checkpoint for as long as it was held (found by the simulator's
    /// dormancy schedules, SIM_SEED=6891 without dedupe; a queued one, emptied by a copytruncate
    /// and rotated, at SIM_SEED=30596).
    fn report_settled(&mut self, out: &mut Vec<Item>, lone: bool) {
        // In a batch, the file being read needs reporting only to come before the queued ones
        // (alone, its lines name it); `observe` reports it alone too, so that the checkpoint
        // names a file even while nothing of it has been read.
        if self.queue.is_empty() && !lone {
            return;
        }
        let held = usize::from(self.src.is_some()) + self.queue.len();
        for (i, src) in self.src.iter_mut().chain(self.queue.iter_mut()).enumerate() {
            if src.reported {
                continue;
            }
            // A file with a later one behind it was rotated away, as is a retiring one.
            let rotated = src.retiring.is_some() || i + 1 < held;
            match src.settle_identity() {
                Ok(Some(file)) => {
                    src.reported = true;
                    out.push(Item::Event(TailEvent::Queued { file }));
                }
                Ok(None) if rotated => {}
                _ => return,
            }
        }
    }

    /// The files being read and queued whose identity is known, in reading order, after the files
    /// the last batch (or look) finished.
    pub fn order(&self) -> Vec<FileIdentity> {
        let held = self.src.iter().chain(self.queue.iter());
        self.retired_in_batch
            .iter()
            .copied()
            .chain(held.filter_map(|s| s.identity))
            .collect()
    }

    /// Whether `src` is a file this tailer has read to its end and retired (the same inode with the
    /// same head: a reused inode holds another file).
    fn was_retired(&self, src: &Source) -> bool {
        self.retired.iter().any(|(dev, ino, id)| {
            (*dev, *ino) == (src.dev, src.ino)
                && super::identity::of(&src.file).is_ok_and(|now| now == *id)
        })
    }

    /// Whether the file being read is the one at the inbox path.
    fn first_held_at_path(&self) -> bool {
        let Some(src) = &self.src else {
            return false;
        };
        src.retiring.is_none()
            && fs::symlink_metadata(&self.path)
                .is_ok_and(|m| (m.dev(), m.ino()) == (src.dev, src.ino))
    }

    /// Whether the file `(dev, ino)` is being read or queued.
    fn holds(&self, dev: u64, ino: u64) -> bool {
        self.src
            .iter()
            .chain(self.queue.iter())
            .any(|s| (s.dev, s.ino) == (dev, ino))
    }

    /// Whether the last [`Tailer::next_batch`] stopped at its budget, with more to read now.
    pub fn more(&self) -> bool {
        self.more
    }

    /// The inbox path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what is complete now: at most `max_items` lines (events do not count), past the
    /// first line about `max_bytes` bytes of line text, and at most [`SCAN_LIMIT`] bytes in all.
    /// An empty batch means caught up, unless [`Tailer::more`] says the scan limit stopped it.
    pub fn next_batch(
        &mut self,
        max_items: usize,
        max_bytes: usize,
    ) -> Result<Vec<Item>, InboxError> {
        let mut out: Vec<Item> = self.events.drain(..).map(Item::Event).collect();
        self.retired_in_batch.clear();
        let mut budget = Budget {
            items: max_items.max(1),
            bytes: max_bytes.max(1),
            scan: SCAN_LIMIT,
        };
        self.more = false;
        self.check_path(&mut out)?;
        self.report_settled(&mut out, false);
        while self.src.is_some() {
            // A file no look compares (it left the path) may be cut under the reader too.
            self.cut_while_retiring(&mut out)?;
            let src = self.src.as_mut().expect("checked above");
            let read = read_lines(src, &mut self.buf, &self.opts, &mut out, &mut budget)
                .map_err(|e| self.io_error("read", e))?;
            if let Read::Full = read {
                self.more = true;
                // Nothing in the buffer is needed by the next read (it starts at `src.pos`), and a
                // target held back by its window may wait long: hold no buffer meanwhile.
                self.buf = Vec::new();
                return Ok(out);
            }
            match self
                .at_eof(&mut out)
                .map_err(|e| self.io_error("read", e))?
            {
                AtEof::Again => {}
                AtEof::Stay => break,
                AtEof::Switched => {
                    self.check_path(&mut out)?;
                    self.report_settled(&mut out, false);
                }
            }
        }
        // Caught up: hold no buffer while idle (a daemon may tail a thousand inboxes).
        self.buf = Vec::new();
        if self.refused && out.is_empty() {
            // What it is, exactly, comes from the one safe open.
            return Err(match open_inbox(&self.path) {
                Err(e) => e,
                Ok(_) => InboxError::NotAFile {
                    path: self.path.clone(),
                    what: "not a regular file",
                },
            });
        }
        Ok(out)
    }

    /// Whether there is nothing left to do here: no byte unread (a partial last line counts), no
    /// rotated file still being read or retired, none queued, no event to hand out. A target may
    /// close its files only then: its checkpoint then names the one file at the path, at its end.
    pub fn settled(&self) -> bool {
        self.queue.is_empty()
            && self.events.is_empty()
            && !self.inlet.as_ref().is_some_and(|i| i.has_arrivals())
            && self.backlog().is_ok_and(|b| b.bytes == 0 && !b.rotating)
    }

    /// Bytes not read yet, for status reports.
    pub fn backlog(&self) -> io::Result<Backlog> {
        // Only a regular file counts: a symlink is not followed even to read its target's size.
        let at_path = match fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.is_file() => Some(meta),
            Ok(_) => None,
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let Some(src) = &self.src else {
            return Ok(Backlog {
                bytes: at_path.map_or(0, |m| m.len()),
                rotating: false,
            });
        };
        let mut bytes = src.file.metadata()?.len().saturating_sub(src.pos);
        for queued in &self.queue {
            bytes += queued.file.metadata()?.len().saturating_sub(queued.pos);
        }
        if let Some(meta) = at_path
            && !self.holds(meta.dev(), meta.ino())
        {
            bytes += meta.len();
        }
        Ok(Backlog {
            bytes,
            rotating: src.retiring.is_some(),
        })
    }

    fn io_error(&self, action: &'static str, source: io::Error) -> InboxError {
        InboxError::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }

    /// At the end of the source: decides whether a retiring source is finished.
    fn at_eof(&mut self, out: &mut Vec<Item>) -> io::Result<AtEof> {
        let Some(src) = self.src.as_mut() else {
            return Ok(AtEof::Stay);
        };
        let Some(retiring) = src.retiring.as_mut() else {
            return Ok(AtEof::Stay);
        };
        let len = src.file.metadata()?.len();
        let now = Instant::now();
        if len != retiring.last_len {
            retiring.last_len = len;
            retiring.quiet_since = now;
            return Ok(AtEof::Again);
        }
        let quiet = retiring.no_writer
            || now.duration_since(retiring.quiet_since) >= self.opts.rotate_grace;
        // With nothing at the path and nothing queued, keep the old handle: a writer may still
        // hold it.
        if !quiet || (self.queue.is_empty() && fs::symlink_metadata(&self.path).is_err()) {
            return Ok(AtEof::Stay);
        }
        let tail_start = src.skipping.map_or(src.pos, |s| s.start);
        out.push(Item::Event(TailEvent::Rotated {
            old_ino: src.ino,
            dropped_tail: len.saturating_sub(tail_start),
        }));
        if self.retired.len() == RETIRED_KEPT {
            self.retired.pop_front();
        }
        self.retired.push_back((src.dev, src.ino, src.identity));
        self.retired_in_batch.extend(src.identity);
        self.src = self.queue.pop_front();
        Ok(AtEof::Switched)
    }
}

impl Retiring {
    fn new(file: &File) -> io::Result<Retiring> {
        Ok(Retiring {
            last_len: file.metadata()?.len(),
            quiet_since: Instant::now(),
            no_writer: false,
        })
    }
}

/// Reads complete lines from the source's position until the end of the file or the budget.
fn read_lines(
    src: &mut Source,
    buf: &mut Vec<u8>,
    opts: &TailOptions,
    out: &mut Vec<Item>,
    budget: &mut Budget,
) -> io::Result<Read> {
    // The buffer always holds the file's bytes from `src.pos` on.
    buf.clear();
    loop {
        if budget.full() {
            return Ok(Read::Full);
        }
        let have = buf.len();
        buf.resize(have + opts.chunk.max(1), 0);
        let n = read_at(&src.file, &mut buf[have..], src.pos + have as u64)?;
        buf.truncate(have + n);
        src.seen_end = src.seen_end.max(src.pos + (have + n) as u64);
        budget.scan = budget.scan.saturating_sub(n);
        if n == 0 {
            return Ok(Read::Eof);
        }
        if let Some(skipping) = &mut src.skipping {
            let Some(i) = memchr(b'\n', buf) else {
                skipping.blank &= buf.iter().all(is_blank);
                src.pos += buf.len() as u64;
                buf.clear();
                continue;
            };
            let Skipping { start, blank } = *skipping;
            let blank = blank && buf[..i].iter().all(is_blank);
            let end = src.pos + i as u64 + 1;
            if !blank {
                let Some(file) = src.settle_identity()? else {
                    return Ok(Read::Eof);
                };
                let pos = LinePos {
                    file,
                    offset: start,
                    end,
                };
                out.push(Item::Oversized {
                    pos,
                    len: end - 1 - start,
                });
                budget.take(0);
            }
            src.skipping = None;
            buf.drain(..=i);
            src.pos = end;
            if budget.full() {
                return Ok(Read::Full);
            }
        }
        let file = if memchr(b'\n', buf).is_some() {
            match src.settle_identity()? {
                Some(file) => Some(file),
                None => return Ok(Read::Eof),
            }
        } else {
            None
        };
        let at = match file {
            Some(file) => {
                let mut last = None;
                let taken = take_lines(src, file, buf, opts, out, budget, &mut last);
                if let Some((start, end)) = last {
                    src.last_line = Some((
                        src.pos + start as u64,
                        src.pos + end as u64,
                        crate::hash::fnv1a64(&buf[start..end]),
                    ));
                }
                match taken {
                    Ok(at) => at,
                    Err(at) => {
                        src.pos += at as u64;
                        return Ok(Read::Full);
                    }
                }
            }
            // No line end in the buffer: still skip a leading NUL run.
            None => buf.iter().position(|&b| b != 0).unwrap_or(buf.len()),
        };
        buf.drain(..at);
        src.pos += at as u64;
        // What is left is a partial line; past the limit it is skipped as it is scanned.
        if buf.len() > opts.max_line {
            src.skipping = Some(Skipping {
                start: src.pos,
                blank: buf.iter().all(is_blank),
            });
            src.pos += buf.len() as u64;
            buf.clear();
        }
    }
}

/// Hands out the complete lines in `buf` (which starts at `src.pos`), setting `last` to the range
/// in `buf` of the last one handed out (with its `\n`). Returns how many bytes were consumed: `Ok`
/// when the buffer holds no further line end, `Err` when the budget ran out.
fn take_lines(
    src: &Source,
    file: FileIdentity,
    buf: &[u8],
    opts: &TailOptions,
    out: &mut Vec<Item>,
    budget: &mut Budget,
    last: &mut Option<(usize, usize)>,
) -> Result<usize, usize> {
    let mut at = 0;
    loop {
        // Skip a NUL run (left by a writer without O_APPEND after a copytruncate).
        at += buf[at..]
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(buf.len() - at);
        let Some(i) = memchr(b'\n', &buf[at..]) else {
            return Ok(at);
        };
        let line = &buf[at..at + i];
        let pos = LinePos {
            file,
            offset: src.pos + at as u64,
            end: src.pos + (at + i + 1) as u64,
        };
        at += i + 1;
        if line.iter().all(is_blank) {
            continue;
        }
        if line.len() > opts.max_line {
            out.push(Item::Oversized {
                pos,
                len: line.len() as u64,
            });
            budget.take(0);
        } else {
            let text = line.strip_suffix(b"\r").unwrap_or(line).to_vec();
            budget.take(text.len());
            out.push(Item::Line { pos, text });
            *last = Some((at - i - 1, at));
        }
        if budget.full() {
            return Err(at);
        }
    }
}

/// One `pread`, retried on `EINTR`.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}
