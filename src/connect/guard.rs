//! What the connect page keeps per stranger, each part bounded: who the client is (its address,
//! or what a trusted proxy says it is), its own request bucket, its new connections of the last
//! hour, and the flow's single-use tokens (`state`s and choice forms).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How long a new connection counts against its client's hourly limit.
const HOUR: Duration = Duration::from_secs(3600);

/// The most single-use tokens of one kind kept at once: past it the oldest is dropped (a user
/// whose token was dropped starts again). 100 000 tokens take about 10 MB.
const MAX_TOKENS: usize = 100_000;

/// The most clients whose buckets are kept; past it, buckets that are full again are dropped.
const MAX_CLIENTS: usize = 100_000;

/// The client of a request: the address that connected or, when that is a trusted proxy, the
/// last address of `X-Forwarded-For` that is not a trusted proxy. An IPv6 client is its /64
/// (one host is given a /64, and would otherwise have 2^64 buckets).
pub fn client(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let mut ip = peer.ip().to_canonical();
    let trusted = |a: &IpAddr| trusted.iter().any(|t| t.to_canonical() == *a);
    if trusted(&ip) {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in forwarded.iter().rev() {
            // A hop may carry a port (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
            let parsed = hop
                .parse::<IpAddr>()
                .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()));
            match parsed {
                Ok(hop) if trusted(&hop.to_canonical()) => {}
                Ok(hop) => {
                    ip = hop.to_canonical();
                    break;
                }
                // Not an address: nothing before it can be believed.
                Err(_) => break,
            }
        }
    }
    match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// A bucket per client.
pub struct Buckets(DefaultKeyedRateLimiter<IpAddr>);

impl Buckets {
    /// Each client's requests: 5 a second, 20 at once.
    pub fn requests() -> Buckets {
        Buckets(RateLimiter::keyed(
            Quota::per_second(NonZeroU32::new(5).expect("non-zero"))
                .allow_burst(NonZeroU32::new(20).expect("non-zero")),
        ))
    }

    /// Each client's code exchanges: one every 5 s, 3 at once (a person connects one workspace
    /// at a time; a client that sends made-up codes spends its own, not everybody's).
    pub fn exchanges() -> Buckets {
        Buckets(RateLimiter::keyed(
            Quota::with_period(Duration::from_secs(5))
                .expect("non-zero")
                .allow_burst(NonZeroU32::new(3).expect("non-zero")),
        ))
    }

    /// Whether `client` may make a request now (taking it from its bucket).
    pub fn allow(&self, client: IpAddr) -> bool {
        if self.0.len() > MAX_CLIENTS {
            self.0.retain_recent();
        }
        self.0.check_key(&client).is_ok()
    }
}

/// The new connections each client made in the last hour.
pub struct NewConnections {
    per_client: u32,
    made: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

/// A new connection counted against its client until [`Reservation::keep`] or dropped.
pub struct Reservation {
    of: std::sync::Arc<NewConnections>,
    client: IpAddr,
    at: Instant,
    kept: bool,
}

impl NewConnections {
    /// At most `per_client` new connections per client and hour.
    pub fn new(per_client: u32) -> NewConnections {
        NewConnections {
            per_client,
            made: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a new connection of `client`, if it is within its limit. The count is taken
    /// before the connection is made, so that concurrent callbacks cannot pass the limit.
    pub fn reserve(self: &std::sync::Arc<Self>, client: IpAddr) -> Option<Reservation> {
        let now = Instant::now();
        let mut made = lock(&self.made);
        made.retain(|_, times| {
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) >= HOUR)
            {
                times.pop_front();
            }
            !times.is_empty()
        });
        let times = made.entry(client).or_default();
        if times.len() >= self.per_client as usize {
            return None;
        }
        times.push_back(now);
        Some(Reservation {
            of: self.clone(),
            client,
            at: now,
            kept: false,
        })
    }

    /// The most new connections any one client made in the last hour, and that client.
    pub fn busiest(&self) -> Option<(IpAddr, usize)> {
        let now = Instant::now();
        lock(&self.made)
            .iter()
            .map(|(ip, t)| {
                (
                    *ip,
                    t.iter().filter(|t| now.duration_since(**t) < HOUR).count(),
                )
            })
            .max_by_key(|(_, n)| *n)
    }
}

impl Reservation {
    /// The connection was made: it counts for the hour.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let mut made = lock(&self.of.made);
        if let Some(times) = made.get_mut(&self.client)
            && let Some(i) = times.iter().position(|t| *t == self.at)
        {
            times.remove(i);
        }
    }
}

/// Issued tokens with their values and times, and the order they were issued in.
type Issued<T> = (HashMap<String, (T, Instant)>, VecDeque<String>);

/// Single-use tokens with a time to live, at most [`MAX_TOKENS`] of them.
pub struct Tokens<T> {
    ttl: Duration,
    issued: Mutex<Issued<T>>,
}

impl<T> Tokens<T> {
    /// Tokens that live `ttl`.
    pub fn new(ttl: Duration) -> Tokens<T> {
        Tokens {
            ttl,
            issued: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// Issues `token` for `value`.
    pub fn issue(&self, token: String, value: T) {
        let mut guard = lock(&self.issued);
        let (by_token, order) = &mut *guard;
        let now = Instant::now();
        while let Some(oldest) = order.front() {
            let expired = by_token
                .get(oldest)
                .is_none_or(|(_, at)| now.duration_since(*at) >= self.ttl);
            if !expired && by_token.len() < MAX_TOKENS && order.len() < MAX_TOKENS {
                break;
            }
            let oldest = order.pop_front().expect("looked at");
            by_token.remove(&oldest);
        }
        order.push_back(token.clone());
        by_token.insert(token, (value, now));
    }

    /// Whether `token` was issued and has not expired (it is not spent).
    pub fn is_live(&self, token: &str) -> bool {
        lock(&self.issued)
            .0
            .get(token)
            .is_some_and(|(_, at)| at.elapsed() < self.ttl)
    }

    /// Spends `token`: its value, if it was issued and has not expired.
    pub fn spend(&self, token: &str) -> Option<T> {
        let (value, at) = lock(&self.issued).0.remove(token)?;
        (at.elapsed() < self.ttl).then_some(value)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 1234)
    }

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_says_otherwise() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.1".parse().unwrap());
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Untrusted peer: its header is not believed.
        assert_eq!(
            client(peer("198.51.100.7"), &h, &[proxy]),
            ip("198.51.100.7")
        );
        // Trusted: the last hop that is not a trusted proxy.
        assert_eq!(client(peer("10.0.0.1"), &h, &[proxy]), ip("203.0.113.9"));
        // Ports are not part of the client.
        h.insert(
            "x-forwarded-for",
            "[2001:db8::1]:4711, 203.0.113.9:80".parse().unwrap(),
        );
        assert_eq!(client(peer("10.0.0.1"), &h, &[proxy]), ip("203.0.113.9"));
        // A forged first hop before the real one is not taken.
        h.insert("x-forwarded-for", "1.1.1.1, 203.0.113.9".parse().unwrap());
        assert_eq!(client(peer("10.0.0.1"), &h, &[proxy]), ip("203.0.113.9"));
        // IPv6 clients are their /64.
        assert_eq!(
            client(peer("2001:db8:1:2:aaaa::1"), &h, &[]),
            ip("2001:db8:1:2::")
        );
        assert_eq!(client(peer("::ffff:192.0.2.1"), &h, &[]), ip("192.0.2.1"));
    }

    #[test]
    fn new_connections_are_limited_per_client_and_a_dropped_reservation_gives_back() {
        let n = std::sync::Arc::new(NewConnections::new(2));
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        n.reserve(a).unwrap().keep();
        let r = n.reserve(a).unwrap();
        assert!(n.reserve(a).is_none(), "a third while two are counted");
        drop(r);
        n.reserve(a).unwrap().keep();
        assert!(n.reserve(a).is_none());
        assert!(n.reserve(b).is_some(), "another client has its own limit");
        assert_eq!(n.busiest(), Some((a, 2)));
    }

    #[test]
    fn tokens_are_single_use_and_bounded() {
        let t: Tokens<u32> = Tokens::new(Duration::from_secs(60));
        t.issue("a".into(), 1);
        assert_eq!(t.spend("a"), Some(1));
        assert_eq!(t.spend("a"), None);
        for i in 0..(MAX_TOKENS + 10) {
            t.issue(format!("t{i}"), 0);
        }
        assert!(lock(&t.issued).0.len() <= MAX_TOKENS);
        assert_eq!(t.spend("t0"), None, "the oldest was dropped");
        assert!(t.spend(&format!("t{}", MAX_TOKENS + 9)).is_some());
    }
}
