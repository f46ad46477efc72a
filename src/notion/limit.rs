//! Client-side rate limiting: a token bucket per token and one per workspace, and the pauses that a
//! 429 or 529 imposes, so that no request is sent into a known wait.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// The longest `Retry-After` honoured (seconds or HTTP date): a longer one is cut to this, so that
/// a broken or hostile answer cannot stall a target for days (nor overflow the time arithmetic).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// The wait after a 429 or 529 that carries no (readable) `Retry-After`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The limiters of one process, shared by every target.
pub struct Limiters {
    /// Per token (keyed by a hash of the token, never the token itself).
    per_token: DefaultKeyedRateLimiter<u64>,
    /// Per workspace, when configured.
    per_workspace: Option<DefaultKeyedRateLimiter<u64>>,
    /// Keys (token or workspace) that Notion told to wait, and until when.
    paused: Mutex<HashMap<u64, Instant>>,
    /// One queue per token: requests take their turn (FIFO) before waiting for a cell, so that
    /// only the head of each queue sleeps on the limiter. (Letting every queued request wait on
    /// the limiter woke them all at each free cell, to find it taken: with 18 requests queued per
    /// token, 17 useless wake-ups per request sent.)
    turns: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters").finish_non_exhaustive()
    }
}

/// The client's bucket for a server bucket of `per_second` and `burst`. It keeps one request of the
/// burst in reserve (or, with a burst of 1, runs 3% slow): requests reach Notion after a variable
/// delay, so two sent exactly one period apart may arrive closer than that, and a bucket the same
/// size as the server's would turn that jitter into 429s. The reserve costs nothing in steady state.
fn quota(per_second: f64, burst: u32) -> Quota {
    let (per_second, burst) = if burst >= 2 {
        (per_second, burst - 1)
    } else {
        (per_second * 0.97, 1)
    };
    let period = Duration::from_secs_f64(1.0 / per_second.max(1e-6));
    Quota::with_period(period)
        .expect("a positive period")
        .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least 1"))
}

impl Limiters {
    /// Limiters for `per_second`/`burst` per token and, optionally, `workspace_per_second` per
    /// workspace (with the same burst).
    pub fn new(per_second: f64, burst: u32, workspace_per_second: Option<f64>) -> Limiters {
        Limiters {
            per_token: RateLimiter::keyed(quota(per_second, burst)),
            per_workspace: workspace_per_second.map(|r| RateLimiter::keyed(quota(r, burst))),
            paused: Mutex::new(HashMap::new()),
            turns: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until a request for this token (and workspace) may be sent.
    pub async fn acquire(&self, token_key: u64, workspace_key: Option<u64>) {
        let turn = {
            let mut turns = self.turns.lock().expect("not poisoned");
            if !turns.contains_key(&token_key) {
                // A new token (a refresh replaces one): forget the queues nobody holds.
                turns.retain(|_, turn| Arc::strong_count(turn) > 1);
            }
            turns.entry(token_key).or_default().clone()
        };
        let _turn = turn.lock().await;
        loop {
            self.wait_pauses(token_key, workspace_key).await;
            until_ready(&self.per_token, token_key).await;
            if let (Some(limiter), Some(ws)) = (&self.per_workspace, workspace_key) {
                until_ready(limiter, ws).await;
            }
            // A 429 may have arrived for this key while we waited for a cell: honour it.
            if self.pause_left(token_key, workspace_key).is_none() {
                return;
            }
        }
    }

    /// Records Notion's `Retry-After` for this token and workspace.
    /// `wait` is capped at [`MAX_RETRY_AFTER`].
    pub fn pause(&self, token_key: u64, workspace_key: Option<u64>, wait: Duration) {
        let until = later(Instant::now(), wait.min(MAX_RETRY_AFTER));
        let mut paused = self.paused.lock().expect("not poisoned");
        for key in std::iter::once(token_key).chain(workspace_key) {
            let entry = paused.entry(key).or_insert(until);
            if *entry < until {
                *entry = until;
            }
        }
    }

    /// How long the pause of either key still lasts.
    fn pause_left(&self, token_key: u64, workspace_key: Option<u64>) -> Option<Instant> {
        let now = Instant::now();
        let mut paused = self.paused.lock().expect("not poisoned");
        paused.retain(|_, until| *until > now);
        std::iter::once(token_key)
            .chain(workspace_key)
            .filter_map(|k| paused.get(&k).copied())
            .max()
    }

    async fn wait_pauses(&self, token_key: u64, workspace_key: Option<u64>) {
        while let Some(until) = self.pause_left(token_key, workspace_key) {
            tokio::time::sleep_until(until).await;
        }
    }
}

/// `t + d`, or `t` plus the cap if that overflows (it cannot for any `d` up to the cap: an
/// `Instant` reaches centuries ahead), never a panic.
pub fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(MAX_RETRY_AFTER))
        .unwrap_or(t)
}

/// Waits for a cell of `key`, sleeping on the runtime's timer (governor's own `until_key_ready`
/// sleeps on the `futures-timer` thread: a thread wake-up per wait, and deaf to tokio's test clock).
async fn until_ready(limiter: &DefaultKeyedRateLimiter<u64>, key: u64) {
    use governor::clock::Clock;
    while let Err(not_until) = limiter.check_key(&key) {
        tokio::time::sleep(not_until.wait_time_from(limiter.clock().now())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pause_delays_the_next_request_of_that_key_only() {
        let l = Limiters::new(1000.0, 10, None);
        let start = Instant::now();
        l.pause(1, None, Duration::from_secs(5));
        l.acquire(2, None).await;
        assert!(start.elapsed() < Duration::from_secs(1));
        l.acquire(1, None).await;
        assert!(start.elapsed() >= Duration::from_secs(5));
    }

    #[tokio::test]
    async fn requests_of_one_token_take_their_turns_in_order() {
        // 200/s with a burst of 1 (the client keeps no reserve then): one cell every ~5 ms, so the
        // eight requests queue, and they must be served in the order they asked.
        let l = std::sync::Arc::new(Limiters::new(200.0, 1, None));
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (l, order) = (l.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                l.acquire(7, None).await;
                order.lock().unwrap().push(i);
            }));
            // Let task i reach the queue before task i + 1 is started.
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());
        assert_eq!(l.turns.lock().unwrap().len(), 1, "one queue per token");
    }

    #[tokio::test(start_paused = true)]
    async fn an_absurd_pause_neither_overflows_nor_lasts_over_the_cap() {
        let l = Limiters::new(1000.0, 10, Some(1000.0));
        let start = Instant::now();
        l.pause(1, Some(9), Duration::from_secs(10_000_000_000_000_000_000));
        l.pause(1, Some(9), Duration::MAX);
        l.acquire(1, Some(9)).await;
        assert_eq!(start.elapsed(), MAX_RETRY_AFTER);
    }

    #[tokio::test(start_paused = true)]
    async fn a_workspace_pause_holds_every_token_of_it() {
        let l = Limiters::new(1000.0, 10, Some(1000.0));
        let start = Instant::now();
        l.pause(1, Some(9), Duration::from_secs(3));
        l.acquire(2, Some(9)).await;
        assert!(start.elapsed() >= Duration::from_secs(3));
    }
}
