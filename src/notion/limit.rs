//! Client-side rate limiting: an adaptive bucket per token ([`Pace`]), a governor bucket per
//! workspace, and the pauses that a 429 or 529 imposes, so that no request is sent into a known
//! wait.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

use super::pace::{MAX_RETRY_AFTER, Pace, later};

/// A token's lane unused this long is dropped when a new token appears.
pub(crate) const IDLE_LANE: Duration = Duration::from_secs(10 * 60);

/// The limiters of one process, shared by every target.
pub(crate) struct Limiters {
    /// The configured rate and burst per token.
    per_second: f64,
    burst: u32,
    /// One lane per token (keyed by a hash of the token, never the token itself).
    lanes: Mutex<HashMap<u64, Arc<Lane>>>,
    /// Per workspace, when configured.
    per_workspace: Option<DefaultKeyedRateLimiter<u64>>,
    /// Keys (token or workspace) that Notion told to wait, and until when.
    paused: Mutex<HashMap<u64, Instant>>,
    /// The budget shared with the other processes of this machine, if it could be opened.
    shared: std::sync::OnceLock<Arc<super::shared::SharedBudget>>,
}

/// What one token's requests share.
struct Lane {
    /// Requests take their turn (FIFO) before waiting for a cell, so that only the head of each
    /// queue sleeps on the bucket. (Letting every queued request wait on the limiter woke them all
    /// at each free cell, to find it taken: with 18 requests queued per token, 17 useless wake-ups
    /// per request sent.)
    turn: tokio::sync::Mutex<()>,
    /// The token's bucket and adapted rate.
    pace: Mutex<Pace>,
    /// The token's entry in the budget shared with other processes, if there is one.
    shared: Option<super::shared::Slot>,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters").finish_non_exhaustive()
    }
}

/// The governor quota of a workspace bucket, with the same reserve as [`Pace`] keeps: one request
/// of the burst (or, with a burst of 1, 3% of the rate).
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
    pub(crate) fn new(per_second: f64, burst: u32, workspace_per_second: Option<f64>) -> Limiters {
        Limiters {
            per_second,
            burst,
            lanes: Mutex::new(HashMap::new()),
            per_workspace: workspace_per_second.map(|r| RateLimiter::keyed(quota(r, burst))),
            paused: Mutex::new(HashMap::new()),
            shared: std::sync::OnceLock::new(),
        }
    }

    /// Takes every token's turns from `budget` too, which other processes share (set once,
    /// before the first request).
    pub(crate) fn share(&self, budget: Arc<super::shared::SharedBudget>) {
        let _ = self.shared.set(budget);
    }

    /// The lane of `token_key`. A new token (a refresh replaces one) first drops the lanes that
    /// nobody holds and that were idle for [`IDLE_LANE`], and the idle workspace buckets: the maps
    /// only grow when a token appears, so that bounds them.
    fn lane(&self, token_key: u64) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().expect("not poisoned");
        if let Some(lane) = lanes.get(&token_key) {
            return lane.clone();
        }
        let now = Instant::now();
        lanes.retain(|_, lane| {
            Arc::strong_count(lane) > 1
                || now.saturating_duration_since(lane.pace.lock().expect("not poisoned").used)
                    < IDLE_LANE
        });
        if let Some(limiter) = &self.per_workspace {
            limiter.retain_recent();
        }
        let lane = Arc::new(Lane {
            turn: tokio::sync::Mutex::new(()),
            pace: Mutex::new(Pace::new(self.per_second, self.burst, now)),
            shared: self.shared.get().and_then(|b| b.slot(token_key)),
        });
        lanes.insert(token_key, lane.clone());
        lane
    }

    /// Waits until a request for this token (and workspace) may be sent.
    pub(crate) async fn acquire(&self, token_key: u64, workspace_key: Option<u64>) {
        let lane = self.lane(token_key);
        let _turn = lane.turn.lock().await;
        loop {
            self.wait_pauses(token_key, workspace_key).await;
            loop {
                let taken = {
                    let mut pace = lane.pace.lock().expect("not poisoned");
                    match &lane.shared {
                        Some(slot) => pace
                            .take_shared(Instant::now().into_std(), slot)
                            .map_err(Instant::from_std),
                        None => pace.take(Instant::now()),
                    }
                };
                match taken {
                    Ok(()) => break,
                    Err(next) => tokio::time::sleep_until(next).await,
                }
            }
            if let (Some(limiter), Some(ws)) = (&self.per_workspace, workspace_key) {
                until_ready(limiter, ws).await;
            }
            // A 429 may have arrived for this key while we waited for a cell: honour it.
            if self.pause_left(token_key, workspace_key).is_none() {
                return;
            }
        }
    }

    /// A 429 with `wait` for this token: pauses both keys for `wait`, and cuts the token's rate
    /// (once per Retry-After window: the 429s of requests already sent count once).
    pub(crate) fn rate_limited(&self, token_key: u64, workspace_key: Option<u64>, wait: Duration) {
        self.pause(token_key, workspace_key, wait);
        let lane = self.lane(token_key);
        let mut pace = lane.pace.lock().expect("not poisoned");
        if pace.rate_limited(Instant::now(), wait) {
            // Expected now and then, and counted: a lasting run is warned about per target (see
            // `delivery::streak`).
            tracing::debug!(
                token_key,
                "Notion rate-limited a token: sending at most {:.2} requests/s for it (configured {})",
                pace.rate(),
                self.per_second
            );
        }
    }

    /// A request of this token succeeded: its rate may go back up a step.
    pub(crate) fn succeeded(&self, token_key: u64) {
        let lane = self.lane(token_key);
        let mut pace = lane.pace.lock().expect("not poisoned");
        if pace.succeeded(Instant::now()) {
            tracing::debug!(token_key, rate = pace.rate(), "a token's rate went back up");
        }
    }

    /// The rate (requests per second) this token is sent at now: the configured one unless
    /// Notion's 429s lowered it.
    pub(crate) fn effective_rate(&self, token_key: u64) -> f64 {
        let lanes = self.lanes.lock().expect("not poisoned");
        lanes.get(&token_key).map_or(self.per_second, |lane| {
            lane.pace.lock().expect("not poisoned").rate()
        })
    }

    /// The effective rate of every token known (recently used), by token key.
    pub(crate) fn effective_rates(&self) -> BTreeMap<u64, f64> {
        let lanes = self.lanes.lock().expect("not poisoned");
        lanes
            .iter()
            .map(|(key, lane)| (*key, lane.pace.lock().expect("not poisoned").rate()))
            .collect()
    }

    /// The configured rate per token.
    pub(crate) fn configured_rate(&self) -> f64 {
        self.per_second
    }

    /// Records Notion's `Retry-After` for this token and workspace.
    /// `wait` is capped at [`MAX_RETRY_AFTER`].
    pub(crate) fn pause(&self, token_key: u64, workspace_key: Option<u64>, wait: Duration) {
        let until = later(Instant::now(), wait.min(MAX_RETRY_AFTER));
        // The other processes sending with this token wait too.
        if let Some(slot) = &self.lane(token_key).shared {
            slot.hold_until(until.into_std());
        }
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

/// Waits for a workspace cell of `key`, sleeping on the runtime's timer (governor's own `until_key_ready`
/// sleeps on the `futures-timer` thread: a thread wake-up per wait, and deaf to tokio's test clock).
async fn until_ready(limiter: &DefaultKeyedRateLimiter<u64>, key: u64) {
    use governor::clock::Clock;
    while let Err(not_until) = limiter.check_key(&key) {
        tokio::time::sleep(not_until.wait_time_from(limiter.clock().now())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::pace::RAISE_EVERY;
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
        assert_eq!(l.lanes.lock().unwrap().len(), 1, "one queue per token");
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

    /// Sends `n` requests of token 1 back to back, each followed by a success; returns how long
    /// they took.
    async fn send_n(l: &Limiters, n: u32) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            l.acquire(1, None).await;
            l.succeeded(1);
        }
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_lowers_the_rate_once_per_window_and_the_rate_recovers_to_the_configured() {
        let l = Limiters::new(10.0, 1, None);
        send_n(&l, 5).await;
        assert_eq!(l.effective_rate(1), 10.0);
        // A burst of 429s within one cut window counts once.
        for _ in 0..5 {
            l.rate_limited(1, None, Duration::from_secs(1));
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        assert!(
            (l.effective_rate(1) - 7.0).abs() < 1e-9,
            "{}",
            l.effective_rate(1)
        );
        assert_eq!(
            l.effective_rates(),
            BTreeMap::from([(1, l.effective_rate(1))])
        );
        // The pause of the last 429 (0.9 s left) holds, then the bucket paces at the lowered rate
        // (3% under it with burst 1).
        let took = send_n(&l, 8).await;
        let period = Duration::from_secs_f64(1.0 / (7.0 * 0.97));
        assert!(took >= Duration::from_millis(900) + period * 7, "{took:?}");
        assert!(took < Duration::from_millis(950) + period * 8, "{took:?}");
        // A 429 inside the cut's window (5 s at least) is the same event; after it, it cuts again.
        l.rate_limited(1, None, Duration::from_secs(1));
        assert!((l.effective_rate(1) - 7.0).abs() < 1e-9);
        tokio::time::advance(super::super::pace::CUT_EVERY).await;
        l.rate_limited(1, None, Duration::from_secs(1));
        assert!((l.effective_rate(1) - 4.9).abs() < 1e-9);
        // Steady successes bring it back up a step per second, to the configured rate, not above.
        let mut raises = Vec::new();
        let mut rate = l.effective_rate(1);
        for _ in 0..80 {
            tokio::time::advance(Duration::from_secs(1)).await;
            send_n(&l, 1).await;
            let now = l.effective_rate(1);
            assert!(now >= rate && now <= 10.0, "{rate} -> {now}");
            if now > rate {
                assert!(now - rate <= 1.0 + 1e-9, "a step is 0.1 × configured");
                raises.push(Instant::now());
            }
            rate = now;
        }
        assert_eq!(rate, 10.0);
        assert_eq!(raises.len(), 6, "4.9 -> 10 in steps of 1");
        assert!(raises.windows(2).all(|w| w[1] - w[0] >= RAISE_EVERY));
        // Another token never saw a 429.
        assert_eq!(l.effective_rate(2), 10.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_529_pauses_without_touching_the_rate() {
        let l = Limiters::new(10.0, 3, None);
        let start = Instant::now();
        l.pause(1, None, Duration::from_secs(2));
        l.acquire(1, None).await;
        assert!(start.elapsed() >= Duration::from_secs(2));
        assert_eq!(l.effective_rate(1), 10.0);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_lanes_are_dropped_when_a_new_token_appears() {
        let l = Limiters::new(10.0, 3, Some(10.0));
        l.acquire(1, Some(9)).await;
        l.rate_limited(1, Some(9), Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(5 * 60)).await;
        l.acquire(2, Some(9)).await;
        assert_eq!(
            l.lanes.lock().unwrap().len(),
            2,
            "token 1 was used 5 min ago"
        );
        tokio::time::advance(IDLE_LANE).await;
        l.acquire(3, Some(9)).await;
        let keys: Vec<u64> = l.effective_rates().into_keys().collect();
        assert_eq!(keys, vec![3], "tokens 1 and 2 were idle for 10 min");
        // Forgotten, token 1 starts again at the configured rate.
        assert_eq!(l.effective_rate(1), 10.0);
    }
}
