//! Whether the daemon runs: `notion-inbox run` holds `<state_dir>/daemon.pid` locked (`flock`,
//! exclusive) for as long as it runs, with its pid in it. The kernel drops the lock when the
//! process ends, however it ends, so a lock that can be taken means no daemon runs; a second
//! `run` on the same state directory is refused (it would deliver every inbox twice).

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::Path;

use super::layout::StateDir;
use super::private::private_options;

/// The lock `run` holds.
#[derive(Debug)]
pub struct DaemonLock(#[allow(dead_code)] File);

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another daemon runs on this state directory.
    #[error(
        "another notion-inbox run (pid {pid}) uses the state directory {dir}: stop it first (`systemctl stop notion-inbox`), or give this one a state_dir of its own"
    )]
    Taken {
        /// Its pid, as its file says.
        pid: String,
        /// The state directory.
        dir: String,
    },
    /// The file could not be opened or written.
    #[error("cannot lock {path}: {source}; check that this user may write the state directory")]
    Io {
        /// The file.
        path: String,
        /// What the system said.
        #[source]
        source: io::Error,
    },
}

/// Takes the daemon's lock of `state_dir` and writes this process's pid in it.
pub fn lock(state_dir: &Path) -> Result<DaemonLock, LockError> {
    let path = StateDir(state_dir).daemon_pid();
    let failed = |source| LockError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(failed)?;
    // `status` takes a shared lock for an instant to look: a daemon starting then tries again
    // for a second before it says that another one runs.
    let mut tries = 0;
    let locked = loop {
        match file.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) if tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => break other,
        }
    };
    match locked {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(LockError::Taken {
                pid: crate::text::label(pid.trim()),
                dir: state_dir.display().to_string(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(failed(e)),
    }
    file.set_len(0).map_err(failed)?;
    file.rewind().map_err(failed)?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(failed)?;
    Ok(DaemonLock(file))
}

/// The pid of the daemon running on `state_dir`, if one runs (read only: nothing is created).
pub fn running(state_dir: &Path) -> Option<u32> {
    let mut file = File::open(StateDir(state_dir).daemon_pid()).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            file.read_to_string(&mut pid).ok()?;
            // Locked but not yet written: it runs, its pid is not known yet.
            Some(pid.trim().parse().unwrap_or(0))
        }
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_says_whether_a_daemon_runs_and_refuses_a_second() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(running(dir.path()), None);
        let held = lock(dir.path()).unwrap();
        assert_eq!(running(dir.path()), Some(std::process::id()));
        let second = lock(dir.path()).unwrap_err();
        assert!(matches!(second, LockError::Taken { .. }), "{second}");
        assert!(second.to_string().contains(&std::process::id().to_string()));
        drop(held);
        assert_eq!(running(dir.path()), None);
        let _again = lock(dir.path()).unwrap();
    }
}
