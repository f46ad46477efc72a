//! A faithful stand-in for the Notion API on loopback: `notion-inbox emulator`, and in-process for
//! the tests, the benchmarks and the demo.
//!
//! It is an independent reading of Notion's documentation: this crate depends on nothing of
//! notion-inbox (a test of the workspace, `tests/it/layering.rs`, checks it), so that a mistake in the
//! product's reading of the API is not mirrored here, where it would be invisible.
//!
//! What it does (see ../shared/notion-api.md for the API it imitates):
//! - OAuth: `GET /v1/oauth/authorize` renders a consent page, a `<form method="post"
//!   action="/v1/oauth/authorize">` with hidden fields `client_id`, `redirect_uri`, `state`, one
//!   checkbox `database` (value: the database id) per database, and two submit buttons named
//!   `decision` with values `allow` and `cancel`; its POST redirects (302) to
//!   `redirect_uri?code=…&state=…` or `?error=access_denied&state=…`. [`consent`] plays the user.
//!   `POST /v1/oauth/token` (Basic auth; JSON or form body; `authorization_code` and
//!   `refresh_token` grants with rotation), `revoke`, `introspect`.
//! - The API: `users/me`, `search`, `databases/{id}`, `data_sources/{id}`, `pages` (create,
//!   retrieve, update, trash, property items), and both query endpoints (filters, sorts), per
//!   `Notion-Version` (2021-08-16 to 2026-03-11), with Notion's validation and error bodies.
//! - Rate limits per token and per workspace (429 with `Retry-After`), and seeded faults
//!   ([`Faults`]): latency, 5xx before the write, 504 or a dropped connection after it, 429/529
//!   storms, query lag; on the token endpoint, a 503 before the grant or a dropped connection
//!   after a refresh was carried out.
//! - `/_emulator/…`: the inspection API (pages, stats, faults, tokens, sharing, the trash).

#![warn(missing_docs, unreachable_pub)]

// The route modules' handlers return an axum `Response` as their error: built once per failed
// request, its size is of no consequence, and boxing it would only add noise.
#[allow(clippy::result_large_err)]
mod api;
mod browser;
mod filter;
mod inspect;
mod oauth;
pub(crate) mod objects;
#[allow(clippy::result_large_err)]
mod pages;
#[allow(clippy::result_large_err)]
mod query;
#[allow(clippy::result_large_err)]
mod retrieve;
mod router;
#[allow(clippy::result_large_err)]
mod search;
pub(crate) mod state;
mod values;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use browser::{Consent, ConsentError, consent, consent_as, consent_with};
use state::Workspace;

/// A token bucket: `requests_per_second` refill, `burst` capacity.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Refill rate.
    pub requests_per_second: f64,
    /// Capacity.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            requests_per_second: 3.0,
            burst: 3,
        }
    }
}

/// Injected faults. Every random choice comes from one RNG seeded with `seed`, so a run with the
/// same requests in the same order meets the same faults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// The seed (None: 0).
    pub seed: Option<u64>,
    /// Every request waits this long...
    #[serde(with = "humantime_serde_compat")]
    pub latency: Duration,
    /// ...plus a uniform random part up to this.
    #[serde(with = "humantime_serde_compat")]
    pub latency_jitter: Duration,
    /// Probability that a page create fails with 500/502/503/504 without storing the page.
    pub error_before_write: f64,
    /// Probability that a page create stores the page, then answers 504.
    pub timeout_after_write: f64,
    /// Probability that a page create stores the page, then drops the connection unanswered.
    pub drop_after_write: f64,
    /// Probability that a request is answered 429 `rate_limited` (Retry-After: 1).
    pub storm_429: f64,
    /// Probability that a request is answered 529 `service_overload` (Retry-After: 1).
    pub storm_529: f64,
    /// The `Retry-After` header of the storms' 429s and 529s, sent verbatim (an absurd number,
    /// an HTTP date...) instead of 1.
    pub storm_retry_after: Option<String>,
    /// The storms hit only the requests sent with this token (None: every request), so that a
    /// test can storm one target and watch another.
    pub storm_token: Option<String>,
    /// New pages are invisible to queries for this long.
    #[serde(with = "humantime_serde_compat")]
    pub query_lag: Duration,
    /// Probability that a request to `POST /v1/oauth/token` is answered 503
    /// `service_unavailable` before it is looked at (nothing rotates).
    pub token_unavailable: f64,
    /// Probability that a refresh grant is carried out (the old refresh token is spent and a new
    /// pair issued, as Notion does), then the connection is dropped unanswered.
    pub token_drop_after_refresh: f64,
    /// The next this many API requests (of `storm_token` only, if set) are answered 429
    /// `rate_limited` with `Retry-After: 1` (or `storm_retry_after`): a rate limit a test can
    /// count on, where the storms are random.
    pub rate_limit_next: u32,
}

/// Durations as humantime strings ("250ms") in JSON.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// The redirect URI registered by default: notion-inbox's default (`authorize`'s loopback
/// listener), so that the product works against a default emulator. A test of notion-inbox keeps
/// the two equal.
pub const DEFAULT_REDIRECT_URI: &str = "http://localhost:8765/callback";

/// How to start an emulator.
#[derive(Clone, Debug)]
pub struct EmulatorOptions {
    /// Where to listen (default 127.0.0.1:0).
    pub listen: SocketAddr,
    /// Per token.
    pub rate: RateLimit,
    /// Per workspace (None: no workspace limit).
    pub workspace_rate: Option<RateLimit>,
    /// Faults from the start.
    pub faults: Faults,
    /// Registered OAuth redirect URIs.
    pub redirect_uris: Vec<String>,
    /// OAuth access tokens stop working after this long (their refresh tokens still work).
    pub access_token_ttl: Option<Duration>,
    /// Seed of the ids and secrets of the workspace.
    pub seed: u64,
    /// The integration has a template: the consent page offers to duplicate it (a page
    /// "notion-inbox" with a "Tweets" database), and the token response names the duplicate in
    /// `duplicated_template_id`.
    pub template: bool,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            rate: RateLimit::default(),
            workspace_rate: Some(RateLimit::default()),
            faults: Faults::default(),
            redirect_uris: vec![DEFAULT_REDIRECT_URI.to_owned()],
            access_token_ttl: None,
            seed: 7,
            template: false,
        }
    }
}

/// What a client needs to talk to the emulator.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EmulatorInfo {
    /// Base URL, without a trailing slash.
    pub url: String,
    /// An internal integration token with access to "Twitter" and "Projects".
    pub token: String,
    /// The OAuth client id.
    pub client_id: String,
    /// The OAuth client secret.
    pub client_secret: String,
    /// The "Twitter" database.
    pub database_id: String,
    /// Its one data source.
    pub data_source_id: String,
    /// "Projects": a database with two data sources.
    pub multi_source_database_id: String,
    /// "Hidden": granted only when picked on the consent page.
    pub hidden_database_id: String,
    /// The workspace "Acme" (the internal token's).
    pub workspace_id: String,
    /// Its name.
    pub workspace_name: String,
    /// A second workspace, "Globex", which a user may pick on the consent page.
    pub other_workspace_id: String,
    /// Its "Tweets" database (fits the handle/tweet mapping).
    pub other_database_id: String,
    /// Its "Tweets archive" database (fits it too).
    pub other_archive_database_id: String,
    /// Registered OAuth redirect URIs.
    pub redirect_uris: Vec<String>,
}

/// A created page, as tests inspect it.
#[derive(Clone, Debug, Serialize)]
pub struct StoredPage {
    /// Page id.
    pub id: String,
    /// Its database.
    pub database_id: String,
    /// Its data source.
    pub data_source_id: String,
    /// Property values in response shape, keyed by property name (each with "id" and "type").
    pub properties: serde_json::Value,
    /// The bot that created it.
    pub created_by: String,
    /// When the create request arrived.
    pub received_at: SystemTime,
}

/// Counters since start.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// Requests by endpoint (`POST /v1/pages`, …).
    pub requests: BTreeMap<String, u64>,
    /// Pages stored.
    pub pages_created: u64,
    /// 429s from the rate limiters (not from storms).
    pub rate_limited: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
}

impl Stats {
    /// 429s from the rate limiters.
    pub fn rate_limited_total(&self) -> u64 {
        self.rate_limited
    }

    /// Faults injected, all kinds.
    pub fn faults_injected_total(&self) -> u64 {
        self.faults.values().sum()
    }
}

/// State shared by the handlers.
pub(crate) struct Shared {
    pub ws: Mutex<Workspace>,
    pub faults: Mutex<Faults>,
    pub rng: Mutex<StdRng>,
    pub stats: Mutex<Stats>,
    pub per_token: DefaultKeyedRateLimiter<String>,
    pub per_workspace: Option<DefaultKeyedRateLimiter<String>>,
    pub access_token_ttl: Option<Duration>,
    pub request_seq: AtomicU64,
    /// Request ids differ from run to run, as Notion's do: this is drawn at start.
    pub request_salt: u64,
    pub info: EmulatorInfo,
}

impl Shared {
    pub(crate) fn lock_ws(&self) -> std::sync::MutexGuard<'_, Workspace> {
        self.ws.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn count(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub(crate) fn fault(&self, kind: &str) {
        self.count(|s| *s.faults.entry(kind.to_owned()).or_default() += 1);
    }

    /// A fresh request id, unique within the run and unlike any other run's.
    pub(crate) fn request_id(&self) -> String {
        let n = self.request_seq.fetch_add(1, Ordering::Relaxed);
        state::make_id(self.request_salt, n)
    }
}

fn quota(r: RateLimit) -> Quota {
    Quota::with_period(Duration::from_secs_f64(
        1.0 / r.requests_per_second.max(1e-6),
    ))
    .expect("a positive period")
    .allow_burst(std::num::NonZeroU32::new(r.burst.max(1)).expect("non-zero"))
}

/// A running emulator. Dropping it stops it.
pub struct Emulator {
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Emulator {
    /// Starts an emulator on the current tokio runtime.
    pub async fn start(opts: EmulatorOptions) -> std::io::Result<Emulator> {
        let listener = tokio::net::TcpListener::bind(opts.listen).await?;
        let addr = listener.local_addr()?;
        let mut ws = Workspace::seeded(opts.seed, opts.redirect_uris.clone());
        ws.template = opts.template;
        let token = ws.mint_internal();
        let twitter = ws.dbs[0].clone();
        let info = EmulatorInfo {
            url: format!("http://{addr}"),
            token,
            client_id: ws.client_id.clone(),
            client_secret: ws.client_secret.clone(),
            database_id: twitter.id.clone(),
            data_source_id: twitter.data_sources[0].clone(),
            multi_source_database_id: ws.dbs[1].id.clone(),
            hidden_database_id: ws.dbs[2].id.clone(),
            workspace_id: ws.id.clone(),
            workspace_name: ws.name.clone(),
            other_workspace_id: ws.spaces[1].id.clone(),
            other_database_id: ws
                .dbs
                .iter()
                .find(|d| d.space == 1)
                .map(|d| d.id.clone())
                .unwrap_or_default(),
            other_archive_database_id: ws
                .dbs
                .iter()
                .filter(|d| d.space == 1)
                .nth(1)
                .map(|d| d.id.clone())
                .unwrap_or_default(),
            redirect_uris: opts.redirect_uris.clone(),
        };
        let seed = opts.faults.seed.unwrap_or(0);
        let shared = Arc::new(Shared {
            ws: Mutex::new(ws),
            faults: Mutex::new(opts.faults.clone()),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            stats: Mutex::new(Stats::default()),
            per_token: RateLimiter::keyed(quota(opts.rate)),
            per_workspace: opts.workspace_rate.map(|r| RateLimiter::keyed(quota(r))),
            access_token_ttl: opts.access_token_ttl,
            request_seq: AtomicU64::new(1),
            request_salt: rand::random(),
            info,
        });
        let stop = CancellationToken::new();
        let router = router::router(shared.clone());
        let task = tokio::spawn(serve(listener, router, stop.clone()));
        Ok(Emulator {
            shared,
            stop,
            task: Some(task),
        })
    }

    /// The base URL.
    pub fn url(&self) -> String {
        self.shared.info.url.clone()
    }

    /// Credentials and ids.
    pub fn info(&self) -> &EmulatorInfo {
        &self.shared.info
    }

    /// Every created page, in creation order.
    pub fn pages(&self) -> Vec<StoredPage> {
        self.shared
            .lock_ws()
            .rows
            .iter()
            .map(|r| r.page.clone())
            .collect()
    }

    /// The pages created after the first `start`, in creation order (cheaper than `pages()` for
    /// watching a growing workspace: only the new ones are cloned, under the lock).
    pub fn pages_from(&self, start: usize) -> Vec<StoredPage> {
        self.shared
            .lock_ws()
            .rows
            .iter()
            .skip(start)
            .map(|r| r.page.clone())
            .collect()
    }

    /// How many pages were created (cheaper than `pages().len()`).
    pub fn page_count(&self) -> usize {
        self.shared.lock_ws().rows.len()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the faults (the RNG is re-seeded from `faults.seed`).
    pub fn set_faults(&self, faults: Faults) {
        inspect::set_faults(&self.shared, faults);
    }

    /// The token stops working (401).
    pub fn revoke_token(&self, token: &str) {
        if let Some(t) = self.shared.lock_ws().tokens.get_mut(token) {
            t.revoked = true;
        }
    }

    /// The user removes the integration from workspace `workspace_id` (in Notion: Settings,
    /// Connections, Disconnect): every access token of that workspace gets 401 and every
    /// refresh token `invalid_grant`.
    pub fn remove_integration(&self, workspace_id: &str) {
        inspect::remove_integration(&self.shared, workspace_id);
    }

    /// The access token expires (401); its refresh token still works.
    pub fn expire_token(&self, token: &str) {
        if let Some(t) = self.shared.lock_ws().tokens.get_mut(token) {
            t.expired = true;
        }
    }

    /// The database (and its data sources) become invisible to every token.
    pub fn unshare(&self, database_id: &str) {
        inspect::set_shared(&self.shared, database_id, false);
    }

    /// Undoes [`Emulator::unshare`].
    pub fn share(&self, database_id: &str) {
        inspect::set_shared(&self.shared, database_id, true);
    }

    /// The database goes to the trash: still readable (with `in_trash: true`), but a row
    /// created in it gets Notion's 400 "Can't edit block that is archived".
    pub fn trash_database(&self, database_id: &str) {
        inspect::set_trashed(&self.shared, database_id, true);
    }

    /// Undoes [`Emulator::trash_database`].
    pub fn restore_database(&self, database_id: &str) {
        inspect::set_trashed(&self.shared, database_id, false);
    }

    /// The workspace `workspace_id` is renamed, and its owner (the user who consents) too, when
    /// `owner` is given: what the next token response says.
    pub fn rename_workspace(&self, workspace_id: &str, name: &str, owner: Option<&str>) {
        let mut ws = self.shared.lock_ws();
        if let Some(space) = ws.spaces.iter_mut().find(|s| s.id == workspace_id) {
            space.name = name.to_owned();
            if let Some(owner) = owner {
                space.owner.1 = owner.to_owned();
            }
        }
    }

    /// The database is retitled, and its data sources renamed `data_source_name`.
    pub fn retitle_database(&self, database_id: &str, title: &str, data_source_name: &str) {
        let mut ws = self.shared.lock_ws();
        let Some(db) = ws.dbs.iter_mut().find(|d| d.id == database_id) else {
            return;
        };
        db.title = title.to_owned();
        let sources = db.data_sources.clone();
        for ds in ws.dss.iter_mut().filter(|d| sources.contains(&d.id)) {
            ds.name = data_source_name.to_owned();
        }
    }

    /// A new internal token with the same grants as `info().token`.
    pub fn mint_token(&self) -> String {
        self.shared.lock_ws().mint_internal()
    }

    /// Every secret the emulator handed out so far (access and refresh tokens, authorization codes,
    /// the client secret): tests scan logs for them.
    pub fn secrets(&self) -> Vec<String> {
        let ws = self.shared.lock_ws();
        ws.tokens
            .keys()
            .chain(ws.refresh.keys())
            .chain(ws.codes.keys())
            .cloned()
            .chain(std::iter::once(ws.client_secret.clone()))
            .collect()
    }

    /// Registers another OAuth redirect URI.
    pub fn register_redirect_uri(&self, uri: &str) {
        self.shared.lock_ws().redirect_uris.push(uri.to_owned());
    }

    /// Stops serving and waits for the server task.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Marks a connection to be dropped without an answer (the `drop_after_write` fault).
#[derive(Clone)]
pub(crate) struct ConnKill(pub CancellationToken);

/// The accept loop. Hand-written around hyper (rather than `axum::serve`) so that a handler can
/// drop its connection without answering, which `axum::serve` offers no way to do.
async fn serve(listener: tokio::net::TcpListener, router: axum::Router, stop: CancellationToken) {
    use hyper_util::rt::TokioIo;
    use tower::ServiceExt;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!("emulator accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let kill = CancellationToken::new();
            let k = kill.clone();
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnKill(k.clone()));
                    router.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                () = kill.cancelled() => {}
                () = stop.cancelled() => {}
            }
        });
    }
}
