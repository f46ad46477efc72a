//! Resuming a [`Tailer`] at a checkpoint: finding the checkpoint's files again (at the inbox path
//! or elsewhere in its directory, by inode and head) and queueing them in order.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::PathBuf;

use super::copy::Wanted;
use super::{Retiring, Source, Tailer};
use crate::inbox::{FileIdentity, InboxError, Item, Position, TailEvent, TailOptions, open_inbox};

impl Tailer {
    /// Like [`Tailer::new`], then queues the files `next` names (a checkpoint's
    /// [`crate::state::checkpoint::Checkpoint::next`]) to be read from their start after the first,
    /// wherever they are in the inbox's directory now. A file that is gone is reported as
    /// [`TailEvent::PreviousGone`] at offset 0.
    pub fn resume_chain(
        path: PathBuf,
        opts: TailOptions,
        start: Option<Position>,
        next: &[FileIdentity],
    ) -> Result<Tailer, InboxError> {
        Tailer::resume_attached(path, opts, start, next, None)
    }

    /// [`Tailer::resume_chain`], attached to the watcher's `inlet` before the first look at the
    /// path (see [`Tailer::attach`]): the files that left the path while the target was closed
    /// are older than the one there now, and are read before it.
    pub fn resume_attached(
        path: PathBuf,
        opts: TailOptions,
        start: Option<Position>,
        next: &[FileIdentity],
        inlet: Option<std::sync::Arc<crate::inbox::Inlet>>,
    ) -> Result<Tailer, InboxError> {
        let mut tailer = Tailer::new(path, opts, start)?;
        tailer.inlet = inlet;
        for id in next {
            for (file, identity) in tailer.locate(id)? {
                let src =
                    Source::open(file, 0, identity).map_err(|e| tailer.io_error("stat", e))?;
                if !tailer.holds(src.dev, src.ino) {
                    tailer.queue.push_back(src);
                }
            }
        }
        if tailer.src.is_none() {
            tailer.src = tailer.queue.pop_front();
        }
        // Hold the file at the path from the start too: one rotated away before the first read
        // would otherwise be missed (found by the simulator, SIM_SEED=88817).
        let mut seen = Vec::new();
        tailer.check_path(&mut seen)?;
        tailer
            .events
            .extend(seen.into_iter().filter_map(|item| match item {
                Item::Event(event) => Some(event),
                _ => None,
            }));
        Ok(tailer)
    }

    /// Finds the file with identity `id` at the inbox path or elsewhere in its directory.
    /// If it is not there, says why in an event (a file from the start of which nothing was read is
    /// reported at offset 0).
    /// Returns the file to read for it (with `id`), or its copy (with `id`) and, behind it, what
    /// its inode holds now (a new file).
    pub(super) fn locate(
        &mut self,
        id: &FileIdentity,
    ) -> Result<Vec<(File, Option<FileIdentity>)>, InboxError> {
        match open_inbox(&self.path) {
            Ok(file) => {
                let meta = file.metadata().map_err(|e| self.io_error("stat", e))?;
                if meta.ino() == id.ino
                    && crate::inbox::identity::head_matches(id, &file)
                        .map_err(|e| self.io_error("read", e))?
                {
                    return Ok(vec![(file, Some(*id))]);
                }
            }
            Err(InboxError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(InboxError::NotAFile { .. }) => {}
            Err(e) => return Err(e),
        }
        let found = self.search_dir(id)?;
        if let InDir::Found(_, file) = found {
            return Ok(vec![(file, Some(*id))]);
        }
        let want = Wanted {
            id: *id,
            pos: 0,
            min_len: 0,
            last_line: None,
        };
        // Truncated or rewritten before it was read: a copy of it is read in its place, then
        // what its inode holds now.
        let Some((copy, file, len)) = self.find_copy(&want) else {
            self.events.push(found.not_found(*id, 0));
            return Ok(Vec::new());
        };
        self.events.push(TailEvent::ReadFromCopy {
            file: *id,
            from: 0,
            copy,
            len,
        });
        let rewritten = match &found {
            InDir::Other(now) => rewritten_inode(now, &file),
            _ => None,
        };
        let mut files = vec![(file, Some(*id))];
        files.extend(rewritten.map(|f| (f, None)));
        Ok(files)
    }

    /// Positions the tailer at a checkpoint (see [`Tailer::new`]).
    pub(super) fn resume(&mut self, start: Position) -> Result<(), InboxError> {
        let id = start.file;
        match open_inbox(&self.path) {
            Ok(file) => {
                let meta = file.metadata().map_err(|e| self.io_error("stat", e))?;
                let same_ino = meta.ino() == id.ino;
                if same_ino
                    && crate::inbox::identity::head_matches(&id, &file)
                        .map_err(|e| self.io_error("read", e))?
                {
                    // The device number is not compared: it may change across reboots.
                    let here = FileIdentity {
                        dev: meta.dev(),
                        ..id
                    };
                    let src = if meta.len() < start.offset {
                        self.events.push(TailEvent::Truncated {
                            ino: meta.ino(),
                            at: start.offset,
                            len: meta.len(),
                        });
                        Source::open(file, 0, None)
                    } else {
                        self.events.push(TailEvent::Resumed {
                            file: here,
                            offset: start.offset,
                        });
                        Source::open(file, start.offset, Some(here))
                    };
                    self.src = Some(src.map_err(|e| self.io_error("stat", e))?);
                    return Ok(());
                }
                if same_ino {
                    // Same inode, another head: rewritten in place or a reused inode. The old file
                    // cannot exist elsewhere in this directory, but a copy of it may.
                    if self.resume_in_copy(start)? {
                        return Ok(());
                    }
                    self.events.push(TailEvent::Overwritten {
                        file: id,
                        offset: start.offset,
                    });
                    return Ok(());
                }
            }
            Err(InboxError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            // Not read from; the checkpoint's file may still be elsewhere in the directory.
            Err(InboxError::NotAFile { .. }) => {}
            Err(e) => return Err(e),
        }
        let (found, file) = match self.search_dir(&id)? {
            InDir::Found(found, file) => (found, file),
            InDir::Other(now) if self.resume_in_copy(start)? => {
                let copy = &self.src.as_ref().expect("resumed in the copy").file;
                if let Some(file) = rewritten_inode(&now, copy) {
                    let src = Source::open(file, 0, None).map_err(|e| self.io_error("stat", e))?;
                    self.queue.push_back(src);
                }
                return Ok(());
            }
            InDir::Absent if self.resume_in_copy(start)? => return Ok(()),
            missing => {
                self.events.push(missing.not_found(id, start.offset));
                return Ok(());
            }
        };
        let stat_err = |e| InboxError::Io {
            action: "stat",
            path: found.clone(),
            source: e,
        };
        let len = file.metadata().map_err(stat_err)?.len();
        let mut src = if len < start.offset {
            self.events.push(TailEvent::Truncated {
                ino: id.ino,
                at: start.offset,
                len,
            });
            Source::open(file, 0, None).map_err(stat_err)?
        } else {
            self.events.push(TailEvent::ResumedRotated {
                file: id,
                offset: start.offset,
                found: found.clone(),
            });
            Source::open(file, start.offset, Some(id)).map_err(stat_err)?
        };
        src.retiring = Some(Retiring::new(&src.file).map_err(stat_err)?);
        self.src = Some(src);
        Ok(())
    }

    /// The checkpoint's file is gone or overwritten: resumes in a copy of it (see `reader::copy`),
    /// if the directory holds one. Whether it did.
    fn resume_in_copy(&mut self, start: Position) -> Result<bool, InboxError> {
        let want = Wanted {
            id: start.file,
            pos: start.offset,
            min_len: start.offset,
            last_line: None,
        };
        let Some((found, file, len)) = self.find_copy(&want) else {
            return Ok(false);
        };
        let stat_err = |e| InboxError::Io {
            action: "stat",
            path: found.clone(),
            source: e,
        };
        let mut src = Source::open(file, start.offset, Some(start.file)).map_err(stat_err)?;
        let mut retiring = Retiring::new(&src.file).map_err(stat_err)?;
        retiring.no_writer = true;
        src.retiring = Some(retiring);
        self.events.push(TailEvent::ReadFromCopy {
            file: start.file,
            from: start.offset,
            copy: found.clone(),
            len,
        });
        self.src = Some(src);
        Ok(true)
    }

    /// Looks in the inbox's directory (not at its path) for the file with this identity.
    fn search_dir(&self, id: &FileIdentity) -> Result<InDir, InboxError> {
        self.find_in_dir(id).map_err(|e| InboxError::Io {
            action: "search",
            path: self.dir.clone(),
            source: e,
        })
    }

    /// Looks in the inbox's directory for the file with this identity (inode and head).
    fn find_in_dir(&self, id: &FileIdentity) -> io::Result<InDir> {
        let mut other = None;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.ino() != id.ino || entry.path() == self.path {
                continue;
            }
            let path = entry.path();
            if !entry.file_type()?.is_file() {
                continue;
            }
            let file = match open_inbox(&path) {
                Ok(file) => file,
                // Gone, or replaced by something that is not a regular file, since the listing.
                Err(_) => continue,
            };
            if file.metadata()?.ino() != id.ino {
                continue;
            }
            if crate::inbox::identity::head_matches(id, &file)? {
                return Ok(InDir::Found(path, file));
            }
            other = Some(path);
        }
        Ok(other.map_or(InDir::Absent, InDir::Other))
    }
}

/// Where a file is in the inbox's directory.
enum InDir {
    /// Under this name.
    Found(PathBuf, File),
    /// Its inode is under this name, holding another file (another first line).
    Other(PathBuf),
    /// Nowhere.
    Absent,
}

impl InDir {
    /// What the tailer reports for a file it did not find (`offset`: what was read of it).
    fn not_found(self, file: FileIdentity, offset: u64) -> TailEvent {
        match self {
            InDir::Other(found) => TailEvent::OverwrittenElsewhere {
                file,
                offset,
                found,
            },
            // `Found` is never asked: the file is read.
            InDir::Found(..) | InDir::Absent => TailEvent::PreviousGone { file, offset },
        }
    }
}

/// The file at `path`, which holds the inode of a file that was truncated or rewritten and of
/// which `copy` is a copy: it is read as the file's continuation if it starts with text (a
/// compressed file that reused the inode does not) and was born no later than the copy. A file
/// born after the copy got the inode once the truncated file was deleted: it is newer than the
/// files queued behind this one, and a rescan or the path finds it in its place. (Without birth
/// times it is taken.)
fn rewritten_inode(path: &std::path::Path, copy: &File) -> Option<File> {
    let file = open_inbox(path).ok()?;
    let born = |f: &File| f.metadata().and_then(|m| m.created()).ok();
    if let (Some(now), Some(copied)) = (born(&file), born(copy))
        && now > copied
    {
        return None;
    }
    let id = crate::inbox::identity::of(&file).ok()??;
    super::scan::text_head(&file, id.head_len).then_some(file)
}
