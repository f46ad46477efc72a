//! The tailer's look at the inbox path: what is there now, compared with the files it holds, and
//! what follows (a file to open or queue, a retirement, a wait, a refusal).

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;

use super::copy::Wanted;
use super::{Retiring, Source, Tailer};
use crate::inbox::{InboxError, Item, TailEvent, open_inbox};

/// How many looks' times the tailer keeps for a rescan (see `reader::scan`).
const LOOKS_KEPT: usize = 8;

impl Tailer {
    pub(super) fn check_dir(&self) -> Result<(), InboxError> {
        match fs::metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(self.dir_missing()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.dir_missing()),
            Err(source) => Err(InboxError::Io {
                action: "stat",
                path: self.dir.clone(),
                source,
            }),
        }
    }

    pub(super) fn dir_missing(&self) -> InboxError {
        InboxError::DirectoryMissing {
            dir: self.dir.clone(),
            inbox: self.path.clone(),
        }
    }

    /// No file to read is at the path: the current one is retired (it may still grow until the
    /// grace passes), or the wait for a first one is reported.
    pub(super) fn vacate(
        &mut self,
        out: &mut Vec<Item>,
        report_waiting: bool,
    ) -> Result<(), InboxError> {
        match &mut self.src {
            None if report_waiting && !self.waiting_reported => {
                self.waiting_reported = true;
                out.push(Item::Event(TailEvent::Waiting {
                    path: self.path.clone(),
                }));
            }
            None => {}
            Some(src) if src.retiring.is_none() => {
                src.retiring = Some(Retiring::new(&src.file).map_err(|e| InboxError::Io {
                    action: "stat",
                    path: self.path.clone(),
                    source: e,
                })?);
                out.push(Item::Event(TailEvent::Vanished {
                    path: self.path.clone(),
                }));
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Compares the inbox path with the source and reacts (see the module docs).
    pub(super) fn check_path(&mut self, out: &mut Vec<Item>) -> Result<(), InboxError> {
        self.take_arrivals(out);
        if self.looks.len() == LOOKS_KEPT {
            self.looks.pop_front();
        }
        self.looks.push_back(std::time::SystemTime::now());
        self.look_at_path(out)?;
        self.retire_queued()
    }

    /// Starts the quiet period of every queued file that the path no longer names, so that they
    /// run side by side: K files rotated at once are retired in one quiet period, not in K.
    fn retire_queued(&mut self) -> Result<(), InboxError> {
        if self.queue.is_empty() {
            return Ok(());
        }
        let at_path = fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        for queued in &mut self.queue {
            if queued.retiring.is_none() && at_path != Some((queued.dev, queued.ino)) {
                queued.retiring =
                    Some(Retiring::new(&queued.file).map_err(|e| InboxError::Io {
                        action: "stat",
                        path: self.path.clone(),
                        source: e,
                    })?);
            }
        }
        Ok(())
    }

    /// Compares what is at the inbox path with the files held.
    fn look_at_path(&mut self, out: &mut Vec<Item>) -> Result<(), InboxError> {
        // Not `metadata`: a symlink at the path is refused, not followed.
        let meta = match fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.is_file() => meta,
            // Something else is at the path (a symlink, FIFO...): nothing is read from it, but
            // the files already held are drained as if the path were empty; `next_batch` reports
            // it once they are.
            Ok(_) => {
                self.refused = true;
                return self.vacate(out, false);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.check_dir()?;
                return self.vacate(out, true);
            }
            Err(e) => return Err(self.io_error("stat", e)),
        };
        self.refused = false;
        let Some(src) = &mut self.src else {
            return self.open_path(out);
        };
        if (meta.dev(), meta.ino()) == (src.dev, src.ino) {
            // Renamed away and back, or re-linked: it is the current file again.
            src.retiring = None;
            let rewritten = match src.identity {
                Some(id) => !crate::inbox::identity::head_matches(&id, &src.file).map_err(|e| {
                    InboxError::Io {
                        action: "read",
                        path: self.path.clone(),
                        source: e,
                    }
                })?,
                None => false,
            };
            let cut = meta.len() < src.pos;
            if cut || rewritten {
                let event = if cut {
                    TailEvent::Truncated {
                        ino: src.ino,
                        at: src.pos,
                        len: meta.len(),
                    }
                } else {
                    TailEvent::Rewritten { ino: src.ino }
                };
                return self.cut_under_reader(out, event, meta.len());
            }
        } else {
            if src.retiring.is_none() {
                src.retiring = Some(Retiring::new(&src.file).map_err(|e| InboxError::Io {
                    action: "stat",
                    path: self.path.clone(),
                    source: e,
                })?);
                out.push(Item::Event(TailEvent::RotationSeen {
                    old_ino: src.ino,
                    new_ino: meta.ino(),
                }));
            }
            if !self.holds(meta.dev(), meta.ino()) {
                self.queue_path()?;
            }
        }
        Ok(())
    }

    /// A retiring file (no longer at the path, so no look compares it) truncated or rewritten
    /// under the reader is treated as one at the path is (see [`Tailer::cut_under_reader`]).
    /// Whether it was.
    pub(super) fn cut_while_retiring(&mut self, out: &mut Vec<Item>) -> Result<bool, InboxError> {
        let Some(src) = self.src.as_mut().filter(|s| s.retiring.is_some()) else {
            return Ok(false);
        };
        let io = |e| InboxError::Io {
            action: "read",
            path: self.path.clone(),
            source: e,
        };
        let len = src.file.metadata().map_err(io)?.len();
        let event = if len < src.pos {
            TailEvent::Truncated {
                ino: src.ino,
                at: src.pos,
                len,
            }
        } else if let Some(id) = src.identity
            && !crate::inbox::identity::head_matches(&id, &src.file).map_err(io)?
        {
            TailEvent::Rewritten { ino: src.ino }
        } else {
            return Ok(false);
        };
        self.cut_under_reader(out, event, len)?;
        Ok(true)
    }

    /// The file being read was truncated or rewritten (`event` says which; `len` is its length
    /// now): what it held past the read position is read from its copy, if one is in the
    /// directory, or else reported lost if the reader had seen it; then it is read from 0.
    fn cut_under_reader(
        &mut self,
        out: &mut Vec<Item>,
        event: TailEvent,
        len: u64,
    ) -> Result<(), InboxError> {
        let src = self.src.as_mut().expect("a file is being read");
        let Some(id) = src.identity else {
            // Nothing of it was handed out (its head never settled): nothing to go on from.
            out.push(Item::Event(event));
            src.restart();
            return Ok(());
        };
        let (pos, seen_end) = (src.pos, src.seen_end);
        let want = Wanted {
            id,
            pos,
            min_len: seen_end.max(pos + 1),
            last_line: src.last_line,
        };
        if let Some(copy) = self.find_copy(&want) {
            return self.read_on_from_copy(out, copy, event);
        }
        let src = self.src.as_mut().expect("a file is being read");
        // A file with a settled identity held a complete line: from its start, that much at
        // least was there unread.
        let to = if pos == 0 {
            seen_end.max(u64::from(id.head_len))
        } else {
            seen_end
        };
        if to > pos {
            out.push(Item::Event(TailEvent::CutUnread {
                file: id,
                from: pos,
                to,
                len,
            }));
        }
        out.push(Item::Event(event));
        src.restart();
        Ok(())
    }

    /// Opens the file at the inbox path and queues it behind the files being read.
    pub(super) fn queue_path(&mut self) -> Result<(), InboxError> {
        let file = match open_inbox(&self.path) {
            Ok(file) => file,
            Err(InboxError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let src = Source::open(file, 0, None).map_err(|e| self.io_error("stat", e))?;
        // What was opened is compared, not what was seen: a file renamed back to the path
        // between the look and the open is already held, and must not be read twice.
        if !self.holds(src.dev, src.ino) {
            self.queue.push_back(src);
        }
        Ok(())
    }

    /// Opens the file at the inbox path, at 0.
    pub(super) fn open_path(&mut self, out: &mut Vec<Item>) -> Result<(), InboxError> {
        let file = match open_inbox(&self.path) {
            Ok(file) => file,
            // Gone again between the stat and the open: the next call sees it.
            Err(InboxError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let src = Source::open(file, 0, None).map_err(|e| self.io_error("stat", e))?;
        if self.holds(src.dev, src.ino) {
            return Ok(());
        }
        out.push(Item::Event(TailEvent::Opened {
            path: self.path.clone(),
            ino: src.ino,
        }));
        self.waiting_reported = false;
        self.src = Some(src);
        Ok(())
    }
}
