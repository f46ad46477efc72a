//! What the daemon does once at its start (and the checks it repeats at each reload): the state
//! directory's subdirectories, the warnings about files others may read or own, and the limit of
//! open files.

use std::path::Path;

use super::DaemonError;
use crate::config::{Config, Target};

/// [`warn_exposures`] for `config` running `targets` (its own and the connected workspaces').
pub(super) fn warn_exposures_of(config: &Config, targets: &[Target]) {
    let checked = Config {
        targets: targets.to_vec(),
        ..config.clone()
    };
    warn_exposures(&checked);
}

/// Creates the state directory's subdirectories and removes what a crash left of checkpoints.
pub(super) fn prepare_state_dir(dir: &Path) -> Result<(), DaemonError> {
    let layout = crate::state::layout::StateDir(dir);
    for path in [layout.checkpoints(), layout.dead_letters(), layout.tokens()] {
        crate::state::private::create_private_dir(&path)
            .map_err(|source| DaemonError::StateDir { path, source })?;
    }
    if let Some(store) = crate::state::checkpoint::CheckpointStore::existing(dir) {
        store.remove_leftovers();
    }
    Ok(())
}

/// Logs an error for each connected workspace's record that is skipped, and a warning, with the
/// fix, for each state or secret file that other users could read, write or own (see [`crate::state::audit`]), and for a client secret that cannot be loaded.
fn warn_exposures(config: &Config) {
    for skipped in &config.skipped {
        tracing::error!("a connected workspace's target is skipped: {skipped}");
    }
    let exposures = crate::audit::audit(config);
    for e in &exposures {
        match &e.target {
            Some(name) => tracing::warn!(target_name = %name, "{e}"),
            None => tracing::warn!("{e}"),
        }
    }
    if let Some(source) = config.client_secret_source()
        && let Err(e) = source.load()
        && !exposures.iter().any(|x| x.path == e.path())
    {
        tracing::warn!(
            "{e}; token refreshes fail until it is fixed (it is read again at each one)"
        );
    }
}

/// Raises the soft limit of open files to the hard one, and logs the limit in force (at debug).
/// Each target holds descriptors: its inbox file and the rotated files it has not read to their
/// end, its connections to Notion (up to `max_in_flight`), and briefly its state files. The soft
/// limit is often 1024 where the hard one is far higher (systemd's default is 1024:524288); under
/// the unit, `LimitNOFILE=` sets both and there is nothing to raise.
pub(super) fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) fills in the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        let e = std::io::Error::last_os_error();
        tracing::debug!("cannot read the limit of open files: {e}");
        return;
    }
    let before = limit.rlim_cur;
    // An unlimited hard limit cannot be the soft one: the kernel caps descriptors at nr_open.
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<libc::rlim_t>().ok())
        .unwrap_or(1 << 20);
    let target = limit.rlim_max.min(nr_open);
    if limit.rlim_cur < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit(2) reads the struct it is given; raising the soft limit up to the
        // hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            let e = std::io::Error::last_os_error();
            tracing::debug!("cannot raise the limit of open files from {before} to {target}: {e}");
        }
    }
    tracing::debug!(
        hard = limit.rlim_max,
        raised_from = before,
        "the limit of open files is {}",
        limit.rlim_cur
    );
}

/// Caps glibc's malloc arenas at the number of cores (at least 2). By default glibc may make
/// up to eight per core, one for each thread that meets contention, and the blocking pool's
/// threads (a look at an idle inbox, a status write) come and go: memory freed in an arena stays
/// with it, so a daemon that starts targets while it runs kept about 35 KiB per connect in idle
/// arenas (benchmark 8: 300 connects at 1000 targets, +13.2 MiB over a restart; +2.0 MiB with
/// two arenas, as much as 150 s of running without connects). The daemon's threads are few and
/// its allocations small, so fewer arenas cost it no measurable time. `MALLOC_ARENA_MAX` in the
/// environment wins, as glibc documents.
pub(super) fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2);
        let cores = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt(3) only sets a tunable of the allocator (it takes the allocator's own
        // lock); M_ARENA_MAX bounds the arenas made from then on.
        if unsafe { libc::mallopt(libc::M_ARENA_MAX, cores) } != 1 {
            tracing::debug!("cannot limit malloc arenas to {cores}");
        }
    }
}
