//! When 429s are worth a warning: they are expected (the client paces itself below Notion's
//! limit, but other clients of the same workspace or integration share it), so each one is only
//! counted; a run of them that lasts is said once, as a warning, and its end once.

use std::time::Duration;

use super::Now;

/// 429s further apart than this belong to different runs.
pub(super) const RUN_GAP: Duration = Duration::from_secs(60);
/// A run of 429s this long is warned about.
pub(super) const PERSISTS_AFTER: Duration = Duration::from_secs(300);

/// The current run of 429s of one target.
#[derive(Debug, Default)]
pub(super) struct RateStreak {
    /// When the run began and when its last 429 came.
    run: Option<(Now, Now)>,
    /// Whether this run was warned about.
    warned: bool,
}

impl RateStreak {
    /// A 429 at `now`: returns how long the run has lasted when it has just become worth a warning.
    pub(super) fn limited(&mut self, now: Now) -> Option<Duration> {
        let start = match self.run {
            Some((start, last)) if now.saturating_sub(last) <= RUN_GAP => start,
            _ => {
                self.warned = false;
                now
            }
        };
        self.run = Some((start, now));
        let lasted = now.saturating_sub(start);
        (lasted >= PERSISTS_AFTER && !std::mem::replace(&mut self.warned, true)).then_some(lasted)
    }

    /// A request succeeded at `now`: returns true when a warned run is over (no 429 for a gap).
    pub(super) fn succeeded(&mut self, now: Now) -> bool {
        match self.run {
            Some((_, last)) if now.saturating_sub(last) > RUN_GAP => {
                self.run = None;
                std::mem::take(&mut self.warned)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Now {
        Duration::from_secs(secs)
    }

    #[test]
    fn a_lasting_run_is_warned_once_and_its_end_once() {
        let mut r = RateStreak::default();
        // Isolated 429s, a minute and more apart: never a warning.
        for t in [0, 61, 122, 183, 244, 305, 366] {
            assert_eq!(r.limited(s(t * 2)), None, "at {t}");
        }
        let mut r = RateStreak::default();
        let mut warned = Vec::new();
        for t in (1000..1400).step_by(30) {
            if let Some(d) = r.limited(s(t)) {
                warned.push((t, d));
            }
            assert!(!r.succeeded(s(t + 1)), "within the run");
        }
        assert_eq!(warned, [(1300, s(300))]);
        assert!(r.succeeded(s(1390 + 61)), "the run ended");
        assert!(!r.succeeded(s(1500)), "said once");
        // A new run is warned about again.
        assert_eq!(r.limited(s(2000)), None);
        assert_eq!(r.limited(s(2300)), None, "a gap over a minute: new run");
    }
}
