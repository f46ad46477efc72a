//! One request budget per token for every process of this machine: the daemon and the one-shot
//! commands (`check`, `databases`, `authorize`…) take their turns from the same GCRA state, so that
//! a `check` run while the daemon drains a backlog does not push the token past Notion's limit
//! (and meet 429s, or make the daemon meet them).
//!
//! The state is a table in `<state_dir>/limits` (mode 600), mapped into memory by every process
//! that can open it: 65 536 entries of (token key, theoretical arrival time), claimed by
//! compare-and-swap and updated by compare-and-swap, so a turn costs no system call and no lock.
//! Times are CLOCK_MONOTONIC nanoseconds, one clock for every process of the machine. A process
//! that cannot open the table (another user, a read-only state directory) keeps its own budget.
//! Hand-written: no crate keeps a GCRA in shared memory across processes.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Entries in the table (a power of two): room for tens of thousands of tokens. Entry 0 is the
/// header: the boot the times belong to.
const ENTRIES: usize = 1 << 16;
/// A time further ahead than this is not a turn of this boot (a table from before a reboot, when
/// the header could not be read): it is taken as free. Real ones are at most a capped
/// Retry-After plus a burst ahead.
const STALE_AHEAD: Duration = Duration::from_secs(24 * 3600);
/// Bytes of one entry: the key and the arrival time.
const ENTRY: usize = 16;

/// The mapped table.
#[derive(Debug)]
pub(crate) struct SharedBudget {
    map: memmap2::MmapMut,
    /// `Instant` and CLOCK_MONOTONIC read together, to convert between them.
    base: (Instant, u64),
}

/// One token's entry.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    table: Arc<SharedBudget>,
    index: usize,
}

impl SharedBudget {
    /// Opens `<state_dir>/limits`, or `None` if it cannot be used here. The daemon creates it
    /// (`create`); a one-shot command only opens it, so that it creates nothing in the state
    /// directory (run as root, it would leave a file the daemon's user cannot open).
    pub(crate) fn open(state_dir: &Path, create: bool) -> Option<Arc<SharedBudget>> {
        SharedBudget::open_for_boot(state_dir, create, boot_id())
    }

    /// [`SharedBudget::open`] for the boot `boot` (CLOCK_MONOTONIC starts again at each boot, so
    /// the times of a table written before a reboot mean nothing now: they are cleared).
    fn open_for_boot(state_dir: &Path, create: bool, boot: u64) -> Option<Arc<SharedBudget>> {
        let path = crate::state::layout::StateDir(state_dir).limits();
        let file = crate::state::private::private_options()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| tracing::debug!(file = %path.display(), "no shared request budget: {e}"))
            .ok()?;
        let size = (ENTRIES * ENTRY) as u64;
        let meta = file.metadata().ok()?;
        // Only a regular private file of the state directory's owner (the daemon's user), whose
        // size is the table's (or empty, then sized).
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(state_dir).ok()?.uid();
        if !meta.is_file()
            || meta.uid() != owner
            || meta.mode() & 0o077 != 0
            || (meta.len() != 0 && meta.len() != size)
        {
            tracing::warn!(file = %path.display(), "not used as the shared request budget: not a private file of the state directory's owner with the table's size; remove it (the daemon makes a new one)");
            return None;
        }
        if meta.len() == 0 {
            file.set_len(size).ok()?;
        }
        // SAFETY: the file is ours, private, of the right size, and only ever grows to that size;
        // every access goes through atomics at aligned offsets inside it.
        let map = unsafe { memmap2::MmapMut::map_mut(&file) }.ok()?;
        let table = SharedBudget {
            map,
            base: (Instant::now(), monotonic_ns()),
        };
        let header = table.word(0, 0);
        if header.load(Ordering::Acquire) != boot {
            // Two processes doing this at once both clear: a turn taken meanwhile is forgotten,
            // which costs at most one burst.
            for index in 1..ENTRIES {
                table.word(index, 1).store(0, Ordering::Release);
            }
            header.store(boot, Ordering::Release);
        }
        Some(Arc::new(table))
    }

    fn word(&self, index: usize, which: usize) -> &AtomicU64 {
        let offset = index * ENTRY + which * 8;
        // SAFETY: in bounds (index < ENTRIES), 8-byte aligned (the map is page-aligned), and the
        // memory lives as long as `self`; AtomicU64 has the layout of u64.
        unsafe { &*(self.map.as_ptr().add(offset) as *const AtomicU64) }
    }

    /// The entry of `key`, claimed if new; `None` when the table is full.
    pub(crate) fn slot(self: &Arc<Self>, key: u64) -> Option<Slot> {
        let key = key.max(1); // 0 marks a free entry
        let start = (key as usize) % (ENTRIES - 1);
        for probe in 0..ENTRIES - 1 {
            // Entries 1 to ENTRIES - 1: entry 0 is the header.
            let index = 1 + (start + probe) % (ENTRIES - 1);
            let word = self.word(index, 0);
            match word.compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {}
                Err(found) if found == key => {}
                Err(_) => continue,
            }
            return Some(Slot {
                table: self.clone(),
                index,
            });
        }
        None
    }

    fn to_ns(&self, at: Instant) -> u64 {
        let (base, ns) = self.base;
        match at.checked_duration_since(base) {
            Some(d) => ns.saturating_add(d.as_nanos() as u64),
            None => ns.saturating_sub(base.duration_since(at).as_nanos() as u64),
        }
    }

    fn to_instant(&self, ns: u64) -> Instant {
        let (base, base_ns) = self.base;
        if ns >= base_ns {
            base + Duration::from_nanos(ns - base_ns)
        } else {
            base.checked_sub(Duration::from_nanos(base_ns - ns))
                .unwrap_or(base)
        }
    }
}

impl Slot {
    fn tat(&self) -> &AtomicU64 {
        self.table.word(self.index, 1)
    }

    /// GCRA on the shared arrival time: takes a cell if one is free at `now` (requests `period`
    /// apart, `tolerance` of burst), else says when one will be. The same rule as
    /// [`super::pace::Pace::take`], for every process at once.
    pub(crate) fn take(
        &self,
        now: Instant,
        period: Duration,
        tolerance: Duration,
    ) -> Result<(), Instant> {
        let table = &self.table;
        let now_ns = table.to_ns(now);
        let (period, tolerance) = (period.as_nanos() as u64, tolerance.as_nanos() as u64);
        let tat = self.tat();
        let stale = now_ns.saturating_add(STALE_AHEAD.as_nanos() as u64);
        let mut current = tat.load(Ordering::Acquire);
        loop {
            let effective = if current > stale { 0 } else { current };
            let free_at = effective.saturating_sub(tolerance);
            if free_at > now_ns {
                return Err(table.to_instant(free_at));
            }
            let next = effective.max(now_ns).saturating_add(period);
            match tat.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(seen) => current = seen,
            }
        }
    }

    /// Nobody may send before `until` (Notion's Retry-After, for every process).
    pub(crate) fn hold_until(&self, until: Instant) {
        let until = self.table.to_ns(until);
        self.tat().fetch_max(until, Ordering::AcqRel);
    }
}

/// This boot's identity (`/proc/sys/kernel/random/boot_id`, hashed; never 0), or 1 where it
/// cannot be read (then only [`STALE_AHEAD`] guards against a table from an earlier boot).
fn boot_id() -> u64 {
    std::fs::read("/proc/sys/kernel/random/boot_id")
        .map(|id| crate::hash::fnv1a64(id.trim_ascii()).max(2))
        .unwrap_or(1)
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

use std::os::unix::fs::OpenOptionsExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_tables_on_one_file_share_one_budget() {
        let dir = tempfile::tempdir().unwrap();
        // Two processes, as two mappings of the same file.
        let a = SharedBudget::open(dir.path(), true)
            .unwrap()
            .slot(42)
            .unwrap();
        let b = SharedBudget::open(dir.path(), true)
            .unwrap()
            .slot(42)
            .unwrap();
        let other = SharedBudget::open(dir.path(), true)
            .unwrap()
            .slot(43)
            .unwrap();
        let period = Duration::from_millis(100);
        let now = Instant::now();
        // A burst of 2 (tolerance one period), taken by either side, then both must wait. (Each
        // mapping reads the clock on its own, so their times differ by microseconds: the takes
        // are a millisecond apart.)
        let ms = Duration::from_millis(1);
        assert!(a.take(now, period, period).is_ok());
        assert!(b.take(now + ms, period, period).is_ok());
        let free = a.take(now + 2 * ms, period, period).unwrap_err();
        let free_b = b.take(now + 2 * ms, period, period).unwrap_err();
        let apart = if free > free_b {
            free - free_b
        } else {
            free_b - free
        };
        assert!(apart < ms, "{apart:?}");
        assert!(free > now + Duration::from_millis(90), "{:?}", free - now);
        assert!(free < now + Duration::from_millis(110), "{:?}", free - now);
        // Another token is not held back.
        assert!(other.take(now, period, period).is_ok());
        // A Retry-After held by one holds the other.
        b.hold_until(now + Duration::from_secs(5));
        let free = a
            .take(now + Duration::from_secs(1), period, period)
            .unwrap_err();
        assert!(free >= now + Duration::from_secs(4), "{:?}", free - now);
        let mode = std::fs::metadata(crate::state::layout::StateDir(dir.path()).limits())
            .unwrap()
            .permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
    }

    #[test]
    fn a_table_from_an_earlier_boot_is_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let period = Duration::from_millis(100);
        let now = Instant::now();
        let before = SharedBudget::open_for_boot(dir.path(), true, 7).unwrap();
        let slot = before.slot(42).unwrap();
        slot.hold_until(now + Duration::from_secs(600));
        assert!(slot.take(now, period, period).is_err());
        // The same boot keeps it; another clears it.
        let same = SharedBudget::open_for_boot(dir.path(), true, 7).unwrap();
        assert!(same.slot(42).unwrap().take(now, period, period).is_err());
        let after = SharedBudget::open_for_boot(dir.path(), true, 8).unwrap();
        assert!(after.slot(42).unwrap().take(now, period, period).is_ok());
    }

    #[test]
    fn a_time_a_day_ahead_is_taken_as_free() {
        let dir = tempfile::tempdir().unwrap();
        let table = SharedBudget::open(dir.path(), true).unwrap();
        let slot = table.slot(9).unwrap();
        let now = Instant::now();
        slot.hold_until(now + Duration::from_secs(2 * 24 * 3600));
        assert!(
            slot.take(now, Duration::from_millis(100), Duration::ZERO)
                .is_ok()
        );
    }

    #[test]
    fn only_the_daemon_creates_the_table() {
        let dir = tempfile::tempdir().unwrap();
        assert!(SharedBudget::open(dir.path(), false).is_none());
        assert!(!crate::state::layout::StateDir(dir.path()).limits().exists());
        assert!(SharedBudget::open(dir.path(), true).is_some());
        assert!(SharedBudget::open(dir.path(), false).is_some());
    }

    #[test]
    fn a_planted_file_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("elsewhere"), b"x").unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("elsewhere"),
            crate::state::layout::StateDir(dir.path()).limits(),
        )
        .unwrap();
        assert!(SharedBudget::open(dir.path(), true).is_none());
        std::fs::remove_file(crate::state::layout::StateDir(dir.path()).limits()).unwrap();
        std::fs::write(
            crate::state::layout::StateDir(dir.path()).limits(),
            b"short",
        )
        .unwrap();
        assert!(SharedBudget::open(dir.path(), true).is_none());
    }
}
