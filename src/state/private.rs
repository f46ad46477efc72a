//! Private files: everything under the state directory is created for the service user only,
//! whatever the umask.
//!
//! Directories are created with mode 700 and files with mode 600 at creation (`open(2)` with the
//! mode, never a `chmod` afterwards, so no other user can open the file in between). The umask can
//! only take bits away, so it cannot widen either mode.
//!
//! Every file and directory the daemon and the commands create under the state directory goes
//! through [`create_private_dir`], [`private_options`], [`write_private`] or
//! [`write_private_atomically`]: tokens, checkpoints, dead letters, `status.json`, requeue batches
//! and journals, lock files and the temporary files of atomic writes.

use std::fs::{DirBuilder, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of every directory created under the state directory.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// The mode of every file created under the state directory.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Creates `path` and its missing parents with mode 700. An existing directory is left as it is
/// (`notion-inbox check` and the daemon's start warn when it is open to others).
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(path)
}

/// `OpenOptions` that create a file with mode 600; the caller adds how it opens
/// (`.create(true).append(true)`, …). An existing file keeps its mode.
pub fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(PRIVATE_FILE_MODE);
    options
}

/// Writes `bytes` to a new file at `path` with mode 600, as `std::fs::write` does but private.
/// A file already there (left by a crash) is removed first, so that the file written is always
/// one created with mode 600. Not atomic: for a temporary file the caller renames into place.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    private_options()
        .write(true)
        .create_new(true)
        .open(path)?
        .write_all(bytes)
}

/// Whether [`write_private_atomically`] makes the file durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the file and its directory: after a crash the file holds the old or the new bytes.
    Fsync,
    /// No fsync (advisory files such as `status.json`): a crash may leave the old file.
    NoFsync,
}

/// Writes `bytes` to `path` atomically: a temporary file (mode 600, named `<tmp_prefix>…` in the
/// same directory) renamed over `path`. Creates the directory (mode 700) if needed. Returns the
/// metadata of the file written, taken from the temporary file itself (a rename keeps inode, mtime
/// and size), so a write by someone else right after this one has other metadata.
pub fn write_private_atomically(
    path: &Path,
    tmp_prefix: &str,
    bytes: &[u8],
    durability: Durability,
) -> io::Result<Metadata> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(tmp_prefix)
        .permissions(std::fs::Permissions::from_mode(PRIVATE_FILE_MODE))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    if durability == Durability::Fsync {
        tmp.as_file().sync_all()?;
    }
    let written = tmp.as_file().metadata()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if durability == Durability::Fsync {
        File::open(dir)?.sync_all()?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn created_files_and_directories_are_private_and_atomic_writes_replace_the_file() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_private_dir(&dir).unwrap();
        for d in [root.path().join("a"), dir.clone()] {
            assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        }
        let f = dir.join("f");
        private_options()
            .create(true)
            .append(true)
            .open(&f)
            .unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
        let g = root.path().join("c/g");
        let meta = write_private_atomically(&g, ".tmp-", b"one", Durability::Fsync).unwrap();
        assert_eq!(std::fs::metadata(&g).unwrap().ino(), meta.ino());
        write_private_atomically(&g, ".tmp-", b"two", Durability::NoFsync).unwrap();
        assert_eq!(std::fs::read(&g).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&g).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(root.path().join("c")).unwrap().count(), 1);
    }
}
