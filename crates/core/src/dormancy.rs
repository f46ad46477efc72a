//! A target's life around delivery: when a running target closes (it has been quiet at every
//! look for a while), what a closed target compares when it looks at its source, and when it
//! wakes. The runner (`notion_inbox::daemon::target`) and the simulator drive the same rules; the
//! runner does the stats and the reads, passes the time in and performs what is decided.
//!
//! A closed target holds no checkpoint writer, token, connection or open file. It looks at its
//! source at each file event and at [`Looks`]' slowing interval. A look either compares a cheap
//! view of the source with what the last look saw (for the file tailer, one `stat` of the inbox
//! path), or is whole: the checkpoint against the source ([`nothing_to_deliver`]). [`Dormant`]
//! says which: whole at the first look, at every file event (something happened: a stat that
//! looks the same, say a file rewritten to the same length within one tick of the file system's
//! clock, must not hide it), when the cheap view differs, and at least every
//! [`WHOLE_LOOK_EVERY`] looks, so that a change no stat shows and no event reported wakes the
//! target within a bounded time.

use std::time::Duration;

use rand::Rng;

use crate::checkpoint::Checkpoint;
use crate::delivery::Now;
use crate::position::{Position, Segment};

/// The longest an idle target goes without looking at its inbox.
pub const IDLE_LOOK_MAX: Duration = Duration::from_secs(60);

/// A closed target's looks without a file event that may compare a stat only, in a row.
pub const WHOLE_LOOK_EVERY: u32 = 10;

/// Why a closed target looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The first look after the target closed or the daemon started.
    First,
    /// A file event in the inbox's directory (or the watcher's overflow, which wakes every target).
    FileEvent,
    /// The interval of [`Looks`] passed without an event.
    Timer,
}

/// Whether `checkpoint` covers everything there is: nothing was in flight and no other segment
/// waits to be drained, and the source is `caught_up` with the checkpoint's position (the
/// source's comparison: for the file tailer, `notion_inbox::inbox::look::covers`, the file at the
/// inbox path against the checkpoint's file and offset). Anything else is work (a damaged
/// checkpoint is the caller's to treat as work: preparing the target reports what is wrong).
pub fn nothing_to_deliver<S: Segment>(
    checkpoint: Option<&Checkpoint<S>>,
    caught_up: impl FnOnce(Option<Position<S>>) -> bool,
) -> bool {
    if checkpoint.is_some_and(|c| !c.next.is_empty() || !c.in_flight.is_empty()) {
        return false;
    }
    caught_up(checkpoint.and_then(Checkpoint::position))
}

/// What a closed target remembers between its looks. `T` is what the source's cheap look shows
/// (for the file tailer, one `stat` of the inbox path: `notion_inbox::inbox::look::Stamp`).
#[derive(Debug, Clone, Copy)]
pub struct Dormant<T> {
    /// What the last cheap look showed (`Some(None)`: nothing at the path).
    seen: Option<Option<T>>,
    /// Looks since the last whole one.
    since_whole: u32,
}

impl<T: Copy + PartialEq> Default for Dormant<T> {
    fn default() -> Self {
        Dormant {
            seen: None,
            since_whole: 0,
        }
    }
}

impl<T: Copy + PartialEq> Dormant<T> {
    /// A target that has just closed, or a daemon that has just started: its first look is whole.
    pub fn new() -> Dormant<T> {
        Dormant::default()
    }

    /// Whether the look for `cause`, whose cheap look shows `now`, must be whole.
    pub fn whole_look(&self, cause: Cause, now: Option<T>) -> bool {
        cause != Cause::Timer || self.seen != Some(now) || self.since_whole + 1 >= WHOLE_LOOK_EVERY
    }

    /// A look happened (whole or not), its cheap look showing `now`.
    pub fn looked(&mut self, now: Option<T>, whole: bool) {
        self.seen = Some(now);
        self.since_whole = if whole { 0 } else { self.since_whole + 1 };
        debug_assert!(self.since_whole < WHOLE_LOOK_EVERY);
    }
}

/// When a target looks at its inbox and token without a file event (the safety net for events
/// the watcher missed, and the backlog figure of `status`): every `base` interval while it has
/// work; once it has been idle at a look, the interval doubles at each idle look up to
/// [`IDLE_LOOK_MAX`] (with up to half an interval of jitter, so that idle targets do not look in
/// step). With 10 000 idle targets, a look each every 5 s was 16 % of a core. A file event or
/// work found brings the interval back at once. An overflow of the watcher's queue wakes every
/// target, so a missed append waits at most `IDLE_LOOK_MAX` only if inotify lost it without
/// saying so. A running target closes once it has been idle at every look for its
/// `close_idle_after` ([`Looks::idle_for`]).
#[derive(Debug)]
pub struct Looks {
    base: Duration,
    interval: Duration,
    next: Now,
    /// The first of the idle looks in a row.
    idle_since: Option<Now>,
}

impl Looks {
    /// Looks every `base`, the first at `now + base`.
    pub fn new(base: Duration, now: Now) -> Looks {
        Looks {
            base,
            interval: base,
            next: now.saturating_add(base),
            idle_since: None,
        }
    }

    /// When the next look is due.
    pub fn next(&self) -> Now {
        self.next
    }

    /// How long the target has been idle at every look.
    pub fn idle_for(&self, now: Now) -> Duration {
        self.idle_since
            .map_or(Duration::ZERO, |t| now.saturating_sub(t))
    }

    /// A file event: back to the base interval from now.
    pub fn active(&mut self, now: Now) {
        self.idle_since = None;
        self.interval = self.base;
        self.next = self.next.min(now.saturating_add(self.base));
    }

    /// A look happened at `now`; `idle` when the target had nothing to do.
    pub fn looked(&mut self, now: Now, idle: bool, rng: &mut impl Rng) {
        self.idle_since = if idle {
            self.idle_since.or(Some(now))
        } else {
            None
        };
        self.interval = if idle {
            (self.interval * 2).min(IDLE_LOOK_MAX.max(self.base))
        } else {
            self.base
        };
        // Idle looks spread over half an interval, so that thousands of targets started together
        // do not keep looking together; a busy target's over a tenth.
        let spread = if idle { 2.0 } else { 10.0 };
        let jitter = self.interval.mul_f64(rng.random::<f64>() / spread);
        self.next = now.saturating_add(self.interval + jitter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::InFlight;
    use crate::position::tests::TestFile;

    /// A cheap look's view: a length and a modification time.
    fn stamp(len: u64, modified_ns: i128) -> Option<(u64, i128)> {
        Some((len, modified_ns))
    }

    #[test]
    fn a_look_is_whole_first_at_an_event_on_a_change_and_every_tenth_time() {
        let mut d: Dormant<(u64, i128)> = Dormant::new();
        assert!(d.whole_look(Cause::Timer, stamp(10, 1)), "the first look");
        d.looked(stamp(10, 1), true);
        assert!(!d.whole_look(Cause::Timer, stamp(10, 1)));
        assert!(
            d.whole_look(Cause::FileEvent, stamp(10, 1)),
            "an event, however it looks"
        );
        assert!(
            d.whole_look(Cause::Timer, stamp(10, 2)),
            "rewritten to the same length"
        );
        assert!(d.whole_look(Cause::Timer, None), "deleted");
        for _ in 0..WHOLE_LOOK_EVERY - 1 {
            assert!(!d.whole_look(Cause::Timer, stamp(10, 1)));
            d.looked(stamp(10, 1), false);
        }
        assert!(d.whole_look(Cause::Timer, stamp(10, 1)), "the bound");
    }

    #[test]
    fn a_checkpoint_with_work_in_it_is_never_nothing_to_deliver() {
        let file = TestFile(1);
        let at = |offset| Checkpoint::new(Some(Position { file, offset }), vec![]);
        let mut asked = None;
        assert!(nothing_to_deliver(Some(&at(8)), |p| {
            asked = Some(p);
            true
        }));
        assert_eq!(asked, Some(Some(Position { file, offset: 8 })));
        assert!(!nothing_to_deliver(Some(&at(8)), |_| false));
        assert!(nothing_to_deliver::<TestFile>(None, |p| p.is_none()));
        let mut queued = at(8);
        queued.next.push(TestFile(2));
        assert!(
            !nothing_to_deliver(Some(&queued), |_| true),
            "a segment to drain"
        );
        let in_flight = Checkpoint::new(
            Some(Position { file, offset: 8 }),
            vec![InFlight {
                key: "k".into(),
                file,
                offset: 8,
                end: 9,
            }],
        );
        assert!(
            !nothing_to_deliver(Some(&in_flight), |_| true),
            "a record in flight"
        );
    }

    #[test]
    fn looks_slow_while_idle_and_come_back_at_an_event() {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let base = Duration::from_secs(5);
        let mut l = Looks::new(base, Now::ZERO);
        assert_eq!(l.next(), base);
        let mut now = Now::ZERO;
        for _ in 0..10 {
            now = l.next();
            l.looked(now, true, &mut rng);
        }
        assert!(l.next() - now <= IDLE_LOOK_MAX.mul_f64(1.5));
        assert!(l.next() - now >= IDLE_LOOK_MAX);
        assert!(l.idle_for(now) > Duration::from_secs(60));
        l.active(now);
        assert_eq!(l.idle_for(now), Duration::ZERO);
        assert_eq!(l.next(), now + base);
    }
}
