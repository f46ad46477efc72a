//! Private files: everything under the state directory is created for the service user only,
//! whatever the umask, and a file that holds a secret is read only if it is private.
//!
//! Directories are created with mode 700 and files with mode 600 at creation (`open(2)` with the
//! mode, never a `chmod` afterwards, so no other user can open the file in between). The umask can
//! only take bits away, so it cannot widen either mode.
//!
//! Every file and directory the daemon and the commands create under the state directory goes
//! through [`create_private_dir`], [`private_options`], [`write_private`] or
//! [`write_private_atomically`]: tokens, checkpoints, dead letters, `status.json`, requeue batches
//! and journals, lock files and the temporary files of atomic writes.

use std::ffi::CStr;
use std::fs::{DirBuilder, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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

impl Durability {
    /// Makes what was written to `file` durable, if this is [`Durability::Fsync`].
    pub fn sync(self, file: &File) -> io::Result<()> {
        match self {
            Durability::Fsync => file.sync_data(),
            Durability::NoFsync => Ok(()),
        }
    }
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

/// A file that holds a secret cannot be used. The messages name the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    /// The file cannot be opened or read.
    #[error("cannot read the {what} {path}: {fix}")]
    Read {
        /// What the file is: "client secret file", "token file", "config file".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What to do about it.
        fix: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Group or others may read the file.
    #[error(
        "the {what} {path} is mode {mode:04o}, readable by group or others; run `chmod 600 {path}`"
    )]
    Exposed {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file holds nothing.
    #[error("the {what} {path} is empty; write the secret into it")]
    Empty {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
}

impl PrivateFileError {
    /// The file concerned.
    pub fn path(&self) -> &Path {
        match self {
            Self::Read { path, .. } | Self::Exposed { path, .. } | Self::Empty { path, .. } => path,
        }
    }
}

/// Reads the file at `path` (`what` names it in errors), refusing it when group or others may read
/// it. The mode is checked on the opened file, so a file swapped in between cannot slip through.
pub fn read_private_file(path: &Path, what: &'static str) -> Result<String, PrivateFileError> {
    let read_err = |source: io::Error| PrivateFileError::Read {
        what,
        path: path.to_owned(),
        fix: read_fix(path, &source),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    check_private(&file.metadata().map_err(read_err)?, path, what)?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(read_err)?;
    Ok(text)
}

/// Refuses the file at `path` when group or others may read it.
pub fn check_private_file(path: &Path, what: &'static str) -> Result<(), PrivateFileError> {
    let meta = std::fs::metadata(path).map_err(|source| PrivateFileError::Read {
        what,
        path: path.to_owned(),
        fix: read_fix(path, &source),
        source,
    })?;
    check_private(&meta, path, what)
}

/// Refuses `path` when group or others may read it (its metadata `meta`).
pub fn check_private(
    meta: &Metadata,
    path: &Path,
    what: &'static str,
) -> Result<(), PrivateFileError> {
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PrivateFileError::Exposed {
            what,
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// What to do when `path` cannot be read.
fn read_fix(path: &Path, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => {
            "it does not exist: create it (mode 600) or fix its path in the configuration".into()
        }
        io::ErrorKind::PermissionDenied => {
            let me = effective_uid();
            let owner = std::fs::metadata(path)
                .map(|m| describe_uid(m.uid()))
                .unwrap_or_else(|_| "another user".into());
            format!(
                "permission denied: it belongs to {owner} and notion-inbox runs as {}; run `chown {} {}` (keeping it mode 600), or run notion-inbox as its owner",
                describe_uid(me),
                name_or_uid(me),
                path.display()
            )
        }
        _ => "check the file and its directory".into(),
    }
}

/// The process's effective uid.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// "name (uid N)", or "uid N" when the user database has no name for it.
pub fn describe_uid(uid: u32) -> String {
    match user_name(uid) {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// The user's name, or the uid as a number (`chown` takes either).
pub fn name_or_uid(uid: u32) -> String {
    user_name(uid).unwrap_or_else(|| uid.to_string())
}

/// The name of `uid` in the user database, if it has one.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: `passwd` is plain data that getpwuid_r fills in; zeroed is a valid value.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call, and `buf.len()` is the buffer's length.
        let rc =
            unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success `pw_name` points to a NUL-terminated string inside `buf`.
        let name = unsafe { CStr::from_ptr(pwd.pw_name) };
        return Some(name.to_string_lossy().into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_user_has_a_description() {
        let me = effective_uid();
        assert!(describe_uid(me).contains(&format!("uid {me}")));
        if me == 0 {
            assert_eq!(user_name(0).as_deref(), Some("root"));
        }
        assert_eq!(name_or_uid(4_000_000_000), "4000000000");
    }

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

    #[test]
    fn a_secret_file_is_read_only_when_private_and_errors_name_the_fix() {
        let root = tempfile::tempdir().unwrap();
        let f = root.path().join("secret");
        std::fs::write(&f, "s3cr3t\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_private_file(&f, "client secret file").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("mode 0644"), "{text}");
        assert!(
            text.contains(&format!("chmod 600 {}", f.display())),
            "{text}"
        );
        assert!(!text.contains("s3cr3t"), "{text}");
        assert_eq!(e.path(), f);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_private_file(&f, "client secret file").unwrap(),
            "s3cr3t\n"
        );
        let missing = read_private_file(&root.path().join("nope"), "token file").unwrap_err();
        assert!(missing.to_string().contains("does not exist"), "{missing}");
    }
}
