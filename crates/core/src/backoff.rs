//! Exponential backoff with full jitter.
//!
//! Hand-written because the daemon's retry loop is not a closure to wrap: each outcome class decides
//! its own wait (Retry-After, a slow pause, a backoff step), which backon's combinators do not fit,
//! and "full jitter" (a uniform draw in [0, min(cap, base·2^n)]) is a few lines.

use std::time::Duration;

use rand::Rng;

/// The state of one retry sequence.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The first ceiling.
    base: Duration,
    /// The largest ceiling.
    cap: Duration,
    /// Attempts so far.
    attempt: u32,
}

impl Backoff {
    /// A sequence starting at `base` and doubling up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The ceiling of the next wait, before jitter.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next wait: uniform in [0, ceiling], then the ceiling doubles.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = ceiling.as_nanos().min(u64::MAX as u128) as u64;
        Duration::from_nanos(rng.random_range(0..=nanos))
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ceilings_double_up_to_the_cap_and_draws_stay_under_them() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let ceilings: Vec<u64> = (0..6)
            .map(|_| {
                let c = b.ceiling();
                let d = b.next_delay(&mut rng);
                assert!(d <= c, "{d:?} > {c:?}");
                c.as_millis() as u64
            })
            .collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1000, 1000]);
        for _ in 0..100 {
            b.next_delay(&mut rng);
        }
        assert_eq!(
            b.ceiling(),
            Duration::from_secs(1),
            "no overflow after many attempts"
        );
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn draws_are_spread_not_constant() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let draws: Vec<Duration> = (0..20)
            .map(|_| {
                Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_delay(&mut rng)
            })
            .collect();
        let distinct: std::collections::BTreeSet<_> = draws.iter().collect();
        assert!(
            distinct.len() > 15,
            "full jitter draws uniformly: {draws:?}"
        );
    }
}
