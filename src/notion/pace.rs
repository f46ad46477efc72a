//! The pacing of one token: a token bucket whose rate adapts to Notion's answers (AIMD).
//!
//! Why not a governor limiter per token: a governor `Quota` is fixed when its limiter is built, so
//! changing a token's rate means building a new limiter, which forgets the old one's state (a
//! fresh limiter grants a whole burst at once, or has to be drained by hand). The bucket is
//! instead the same GCRA governor runs (a theoretical arrival time, `tat`, advanced by one period
//! per request), written out in a few lines so that the period can change between two requests
//! while `tat` carries the state over. Every instant comes from the caller (tokio's clock, so the
//! tests run on a paused clock).

use std::time::Duration;

use tokio::time::Instant;

/// A 429 multiplies the rate by this.
pub const RATE_CUT: f64 = 0.7;
/// The rate is never cut below this many requests per second (nor below the configured rate).
pub const MIN_RATE: f64 = 0.1;
/// A cut covers at least this long (or its Retry-After, if longer): the 429s in that window are
/// one congestion event, not many. Long enough that occasional 429s (a noisy neighbour, a fault)
/// cost a brief dip, while a limit below the configured rate still brings the rate down.
pub(super) const CUT_EVERY: Duration = Duration::from_secs(5);
/// A rate below the configured one is raised at most this often, on a success outside the
/// window of the last cut...
pub const RAISE_EVERY: Duration = Duration::from_secs(1);
/// ...by this share of the configured rate.
pub const RAISE_STEP: f64 = 0.1;

/// The bucket and the adapted rate of one token.
#[derive(Debug)]
pub(crate) struct Pace {
    /// The configured rate: the ceiling.
    configured: f64,
    /// Bucket capacity as configured.
    burst: u32,
    /// The rate in use, in `(floor, configured]`.
    rate: f64,
    /// GCRA: when the bucket would be empty again if no request came.
    tat: Instant,
    /// When the rate was last raised (or the pace made). A cut does not move it: the increase goes
    /// on at its pace between cuts, so that isolated 429s (a burst of someone else's traffic, a
    /// storm) lower the rate to where cuts and raises balance instead of to the floor.
    raised: Instant,
    /// 429s before this instant belong to the Retry-After window of the last cut: they were sent
    /// before that cut took effect, so they do not cut again.
    window_end: Instant,
    /// The last request or answer: idle paces are pruned.
    pub(crate) used: Instant,
}

impl Pace {
    /// A full bucket at the configured rate.
    pub(crate) fn new(configured: f64, burst: u32, now: Instant) -> Pace {
        Pace {
            configured,
            burst,
            rate: configured,
            tat: now,
            raised: now,
            window_end: now,
            used: now,
        }
    }

    /// The rate in use, requests per second.
    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// The spacing of requests and the tolerance (how far `tat` may run ahead of now). It keeps one
    /// request of the burst in reserve (or, with a burst of 1, runs 3% slow): requests reach
    /// Notion after a variable delay, so two sent exactly one period apart may arrive closer than
    /// that, and a bucket the same size as the server's would turn that jitter into 429s.
    fn spacing(&self) -> (Duration, Duration) {
        let (per_second, burst) = if self.burst >= 2 {
            (self.rate, self.burst - 1)
        } else {
            (self.rate * 0.97, 1)
        };
        let period = Duration::from_secs_f64(1.0 / per_second.max(1e-6));
        (period, period.saturating_mul(burst - 1))
    }

    /// Takes a cell if one is free at `now`; else says when one will be.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Instant> {
        self.used = now;
        let (period, tolerance) = self.spacing();
        if let Some(free_at) = self.tat.checked_sub(tolerance)
            && free_at > now
        {
            return Err(free_at);
        }
        self.tat = later(self.tat.max(now), period);
        Ok(())
    }

    /// Like [`Pace::take`], on the arrival time that every process shares for this token (see
    /// `notion::shared`), at this pace's own rate.
    pub(crate) fn take_shared(
        &mut self,
        now: std::time::Instant,
        slot: &super::shared::Slot,
    ) -> Result<(), std::time::Instant> {
        let (period, tolerance) = self.spacing();
        let taken = slot.take(now, period, tolerance);
        if taken.is_ok() {
            self.used = Instant::from_std(now);
        }
        taken
    }

    /// A 429 with `wait` arrived at `now`: cut the rate, unless this 429 falls in the window of
    /// the last cut. Returns whether it cut.
    pub(crate) fn rate_limited(&mut self, now: Instant, wait: Duration) -> bool {
        self.used = now;
        if now < self.window_end {
            return false;
        }
        self.rate = (self.rate * RATE_CUT).max(MIN_RATE.min(self.configured));
        self.window_end = later(now, wait.min(MAX_RETRY_AFTER).max(CUT_EVERY));
        true
    }

    /// A request succeeded at `now`: raise the rate by a step if it is below the configured one,
    /// the window of the last cut is over and the last raise was [`RAISE_EVERY`] ago. Returns
    /// whether it raised.
    pub(crate) fn succeeded(&mut self, now: Instant) -> bool {
        self.used = now;
        if self.rate >= self.configured
            || now < self.window_end
            || now < later(self.raised, RAISE_EVERY)
        {
            return false;
        }
        self.rate = (self.rate + RAISE_STEP * self.configured).min(self.configured);
        self.raised = now;
        true
    }
}

/// The longest `Retry-After` honoured (seconds or HTTP date): a longer one is cut to this, so that
/// a broken or hostile answer cannot stall a target for days (nor overflow the time arithmetic).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// The wait after a 429 or 529 that carries no (readable) `Retry-After`.
pub const DEFAULT_RETRY_AFTER: Duration = notion_inbox_core::answer::DEFAULT_WAIT;

/// `t + d`, or `t` plus the cap if that overflows (it cannot for any `d` up to the cap: an
/// `Instant` reaches centuries ahead), never a panic.
pub(super) fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(MAX_RETRY_AFTER))
        .unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_429_cuts_once_per_window_and_successes_raise_it_back_to_the_ceiling() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut p = Pace::new(10.0, 3, t0);
        assert!(p.rate_limited(at(0), Duration::from_secs(2)));
        assert!(close(p.rate(), 7.0), "{}", p.rate());
        // The other 429s of the burst, inside the window (5 s at least): no further cut.
        for ms in [0, 10, 500, 1999, 4999] {
            assert!(!p.rate_limited(at(ms), Duration::from_secs(2)));
        }
        assert!(close(p.rate(), 7.0));
        // After the window a 429 is news.
        assert!(p.rate_limited(at(5000), Duration::from_secs(1)));
        assert!(close(p.rate(), 4.9), "{}", p.rate());
        // Successes inside the window (until 10 s) change nothing; then +1/s per second of
        // successes.
        assert!(!p.succeeded(at(5999)));
        assert!(!p.succeeded(at(9999)));
        assert!(p.succeeded(at(10_000)));
        assert!(close(p.rate(), 5.9), "{}", p.rate());
        let mut ms = 11_000;
        let mut rates = Vec::new();
        while ms < 200_000 {
            p.succeeded(at(ms));
            rates.push(p.rate());
            ms += 1000;
        }
        assert!(rates.iter().all(|r| *r <= 10.0), "never above the ceiling");
        assert!(close(*rates.last().unwrap(), 10.0));
        assert!(close(rates[0], 6.9), "{}", rates[0]);
        assert!(close(rates[1], 7.9), "{rates:?}");
    }

    #[test]
    fn the_rate_has_a_floor() {
        let t0 = Instant::now();
        let mut p = Pace::new(3.0, 3, t0);
        for s in 0..100 {
            p.rate_limited(t0 + Duration::from_secs(s), Duration::ZERO);
        }
        assert!(close(p.rate(), MIN_RATE));
        let mut slow = Pace::new(0.05, 1, t0);
        slow.rate_limited(t0, Duration::ZERO);
        assert!(
            close(slow.rate(), 0.05),
            "never below a lower configured rate"
        );
    }

    #[test]
    fn the_bucket_grants_the_burst_less_one_then_one_per_period_at_the_current_rate() {
        let t0 = Instant::now();
        let mut p = Pace::new(10.0, 4, t0);
        for _ in 0..3 {
            p.take(t0).unwrap();
        }
        let next = p.take(t0).unwrap_err();
        assert_eq!(next, t0 + Duration::from_millis(100));
        p.take(next).unwrap();
        // A cut stretches the period from the next cell on; the state carries over.
        p.rate_limited(next, Duration::ZERO);
        let after = p.take(next).unwrap_err();
        let period = Duration::from_secs_f64(1.0 / 7.0);
        assert_eq!(after, t0 + Duration::from_millis(400) - period * 2);
    }

    #[test]
    fn nothing_overflows() {
        let t0 = Instant::now();
        let mut p = Pace::new(1e-9, 1000, t0);
        p.take(t0).unwrap();
        assert!(p.rate_limited(t0, Duration::MAX));
        assert!(!p.rate_limited(
            later(t0, MAX_RETRY_AFTER - Duration::from_secs(1)),
            Duration::MAX
        ));
    }
}
