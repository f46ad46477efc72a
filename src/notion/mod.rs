//! The Notion API client: one reqwest client per process, rate limited per token and workspace,
//! with typed errors classified for the caller. It never retries a page create by itself; the
//! reads (resolve, find_by_key, users_me, search) wait out a 429 or 529 and is sent again (see [`NotionClient::request_retrying`]).

pub mod cache;
pub mod error;
pub(crate) mod limit;
pub mod oauth;
mod pace;
pub(crate) mod schema;
pub(crate) mod shared;
pub mod timing;
pub mod token;

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use url::Url;

pub use error::{ApiError, ErrorCode, NotionError, answer_of};
pub use oauth::RefreshError;
pub use schema::{Property, PropertyKind, ResolveError, Resolved};
pub use token::{TokenChange, TokenFile, TokenHandle};

use crate::config::{NotionConfig, NotionVersion, SecretSource};
use limit::Limiters;
use notion_inbox_core::answer::{Meaning, Reply, meaning};
pub use pace::{DEFAULT_RETRY_AFTER, MAX_RETRY_AFTER};
pub use pace::{MIN_RATE, RAISE_EVERY, RAISE_STEP, RATE_CUT};

/// Connecting may take this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole request may take this long: a little over Notion's 60 s server-side cap.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(65);

/// A page create's body, serialized once when its record is read: a record waiting in a target's
/// window costs its JSON bytes, not a `serde_json::Value` tree (several times more: a thousand
/// busy targets hold eighteen thousand of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageBody(Box<[u8]>);

impl PageBody {
    /// The JSON bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<&Value> for PageBody {
    fn from(body: &Value) -> PageBody {
        PageBody(body.to_string().into_bytes().into_boxed_slice())
    }
}

/// A request's JSON body.
#[derive(Clone, Copy)]
enum Body<'a> {
    Json(&'a Value),
    Raw(&'a [u8]),
}

/// Idle connections kept per host (see `NotionClient::new`).
const IDLE_CONNECTIONS: usize = 256;

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!(
    "notion-inbox/",
    env!("CARGO_PKG_VERSION"),
    " (+https://github.com/notion-inbox/notion-inbox)"
);

/// The process's Notion client; cheap to clone.
#[derive(Clone)]
pub struct NotionClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    version: NotionVersion,
    limits: Limiters,
    client_id: Option<String>,
    client_secret: Option<SecretSource>,
}

impl std::fmt::Debug for NotionClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotionClient")
            .field("base", &self.inner.base.as_str())
            .field("version", &self.inner.version)
            .finish_non_exhaustive()
    }
}

impl NotionClient {
    /// Builds the client from the `[notion]` section.
    pub fn new(config: &NotionConfig) -> Result<NotionClient, NotionError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(USER_AGENT)
            // Idle connections kept for reuse. Over HTTP/2 (Notion) one connection carries every
            // request; over HTTP/1.1 each request in flight needs its own, and without a cap a
            // start with 10 000 targets resolving at once left 10 000 idle sockets (and their
            // buffers, most of the daemon's memory) open for the pool's idle timeout.
            .pool_max_idle_per_host(IDLE_CONNECTIONS)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| NotionError::Transport {
                what: "cannot set up the HTTP client".into(),
                detail: e.to_string(),
                sent: false,
            })?;
        Ok(NotionClient {
            inner: Arc::new(Inner {
                http,
                base: config.api_base.clone(),
                version: config.version,
                limits: Limiters::new(
                    config.requests_per_second,
                    config.burst,
                    config.workspace_requests_per_second,
                ),
                client_id: config.client_id.clone(),
                client_secret: config.client_secret.clone(),
            }),
        })
    }

    /// Takes this client's turns from the request budget shared by every process that uses
    /// `state_dir` (see [`shared`]); without it (it cannot be opened), the client keeps its own.
    /// Only the daemon creates the table (`create`).
    pub fn sharing_budget(self, state_dir: &std::path::Path, create: bool) -> NotionClient {
        if let Some(budget) = shared::SharedBudget::open(state_dir, create) {
            self.inner.limits.share(budget);
        }
        self
    }

    /// The `Notion-Version` this client speaks.
    pub fn version(&self) -> NotionVersion {
        self.inner.version
    }

    /// The rate (requests per second) `token` is sent at now: the configured
    /// `requests_per_second` unless Notion's 429s lowered it (see [`RATE_CUT`], [`RAISE_STEP`]).
    pub fn effective_rate(&self, token: &TokenHandle) -> f64 {
        self.inner.limits.effective_rate(token.key())
    }

    /// The effective rate of every recently used token, by [`TokenHandle::key`] (for metrics).
    pub fn effective_rates(&self) -> std::collections::BTreeMap<u64, f64> {
        self.inner.limits.effective_rates()
    }

    /// The configured `requests_per_second` per token.
    pub fn configured_rate(&self) -> f64 {
        self.inner.limits.configured_rate()
    }

    /// The API base URL.
    pub fn base(&self) -> &Url {
        &self.inner.base
    }

    /// The OAuth client id and secret (the secret from the config or systemd's credentials). The
    /// secret's file is read at each call, so a file fixed meanwhile is used at once; a file that
    /// cannot be used is [`NotionError::Local`].
    fn oauth_credentials(&self) -> Result<(&str, SecretString), NotionError> {
        let id = self.inner.client_id.as_deref().ok_or_else(|| {
            NotionError::Token(
                "no OAuth client_id is configured; set client_id in [notion] of the config".into(),
            )
        })?;
        let Some(source) = crate::config::secret_source(self.inner.client_secret.as_ref()) else {
            return Err(NotionError::Token(
                "no OAuth client secret is configured; set client_secret_file in [notion] of the config, or pass the systemd credential client_secret".into(),
            ));
        };
        Ok((id, source.load()?))
    }

    /// Sends one authenticated API request through the limiters and returns the JSON body. One
    /// attempt: a 429 or 529 is returned (after pausing the limiters for its `Retry-After`).
    pub async fn request(
        &self,
        token: &TokenHandle,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, NotionError> {
        self.send(token, method, path, body.map(Body::Json)).await.0
    }

    /// Like [`NotionClient::request`], but a 429 or 529 (which Notion answers before doing
    /// anything, so any request may be sent again) waits out its `Retry-After` (capped; 1 s when
    /// absent) and sends the same request again, without an attempt limit: a small server burst
    /// then costs a wait, not the whole sequence of requests it belonged to. Dropping the future
    /// cancels it. Every other error is returned at once.
    pub async fn request_retrying(
        &self,
        token: &TokenHandle,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, NotionError> {
        self.send_retrying(token, method, path, body).await
    }

    async fn send_retrying<T: serde::de::DeserializeOwned>(
        &self,
        token: &TokenHandle,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, NotionError> {
        loop {
            match self
                .send(token, method.clone(), path, body.map(Body::Json))
                .await
                .0
            {
                Err(NotionError::Api(e)) if meaning(&e.wire()).wait().is_some() => {
                    // `send` paused the limiters: the next `acquire` sleeps out the wait.
                    tracing::debug!(endpoint = %format!("{method} {path}"), status = e.status,
                        wait = ?meaning(&e.wire()).wait(), "rate limited; sending again after the wait");
                }
                other => return other,
            }
        }
    }

    /// Like [`NotionClient::request`], decoding the success body into `T` (only the fields `T`
    /// names are kept: the hot path does not build a whole page object to read its id). Also
    /// returns the generation of the token sent (see [`TokenHandle::refresh_from`]).
    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        token: &TokenHandle,
        method: reqwest::Method,
        path: &str,
        body: Option<Body<'_>>,
    ) -> (Result<T, NotionError>, u64) {
        let (token_key, workspace_key) = (token.key(), token.workspace_key());
        let waiting = std::time::Instant::now();
        self.inner.limits.acquire(token_key, workspace_key).await;
        timing::TIMING.waited(waiting.elapsed());
        let (secret, generation) = token.sending();
        let url = self.url(path);
        let mut req = self
            .inner
            .http
            .request(method.clone(), url)
            .bearer_auth(secret.expose_secret())
            .header("Notion-Version", self.inner.version.as_str());
        match body {
            Some(Body::Json(value)) => req = req.json(value),
            Some(Body::Raw(bytes)) => {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(bytes.to_vec());
            }
            None => {}
        }
        let endpoint = format!("{method} {path}");
        // Boxed: a request waiting above for its token's turn holds a small future, not the
        // HTTP exchange's state (a thousand busy targets keep thousands of them waiting).
        let sent = std::time::Instant::now();
        let result = Box::pin(self.finish(req, &endpoint)).await;
        let status = match &result {
            Ok(_) => Some(200),
            Err(NotionError::Api(e)) => Some(e.status),
            Err(_) => None,
        };
        timing::TIMING.answered(method.as_str(), path, status, sent.elapsed());
        let limits = &self.inner.limits;
        match &result {
            Ok(_) => limits.succeeded(token_key),
            Err(NotionError::Api(e)) => match meaning(&e.wire()) {
                Meaning::RateLimited(wait) => limits.rate_limited(token_key, workspace_key, wait),
                // Overload is Notion's trouble, not this token's rate: wait, keep the rate.
                Meaning::Overloaded(wait) => limits.pause(token_key, workspace_key, wait),
                _ => {}
            },
            Err(_) => {}
        }
        (result, generation)
    }

    fn url(&self, path: &str) -> Url {
        self.inner.base.join(path).expect("API paths are valid")
    }

    /// Sends and reads the answer, mapping every failure to a [`NotionError`].
    async fn finish<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        endpoint: &str,
    ) -> Result<T, NotionError> {
        let resp = req
            .send()
            .await
            .map_err(|e| transport(&self.inner.base, e))?;
        let status = resp.status().as_u16();
        let request_id = resp
            .headers()
            .get("x-notion-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after_header(v, endpoint));
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport(&self.inner.base, e))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| NotionError::Decode {
                endpoint: endpoint.to_owned(),
                detail: format!("the body is not JSON: {e}"),
            });
        }
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut error = if endpoint.contains("/oauth/") {
            oauth::parse_oauth_error(status, &body, request_id.clone())
        } else {
            ApiError {
                status,
                code: body
                    .get("code")
                    .and_then(Value::as_str)
                    .map_or_else(|| ErrorCode::for_status(status), ErrorCode::parse),
                message: body
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| {
                        let text = String::from_utf8_lossy(&bytes);
                        let text = text.trim();
                        if text.is_empty() {
                            "no error body".to_owned()
                        } else {
                            text.chars().take(200).collect()
                        }
                    }),
                request_id: body
                    .get("request_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or(request_id),
                retry_after: None,
            }
        };
        error.retry_after = retry_after;
        Err(NotionError::Api(error.printable()))
    }

    /// A POST with HTTP Basic auth (the OAuth endpoints).
    async fn basic_post(
        &self,
        path: &str,
        client_id: &str,
        secret: SecretString,
        body: &Value,
    ) -> Result<Value, NotionError> {
        let req = self
            .inner
            .http
            .post(self.url(path))
            .basic_auth(client_id, Some(secret.expose_secret()))
            .header("Notion-Version", self.inner.version.as_str())
            .json(body);
        self.finish(req, &format!("POST {path}")).await
    }

    /// Creates a page with `body` (a full `POST /v1/pages` body): the new page's id, or what went
    /// wrong, for the core to read (the client never sends a create again by itself).
    pub async fn create_page(&self, token: &TokenHandle, body: &PageBody) -> Reply<String> {
        #[derive(serde::Deserialize)]
        struct Created {
            id: String,
        }
        let (result, generation) = self
            .send::<Created>(
                token,
                reqwest::Method::POST,
                "/v1/pages",
                Some(Body::Raw(body.as_bytes())),
            )
            .await;
        Reply {
            generation,
            answer: answer_of(result.map(|c| c.id)),
        }
    }

    /// Looks for a row whose rich_text `property` equals `key`; its page id if found (a 429 or
    /// 529 is waited out and retried).
    pub async fn find_by_key(
        &self,
        token: &TokenHandle,
        resolved: &Resolved,
        property: &str,
        key: &str,
    ) -> Result<Option<String>, NotionError> {
        let prop = resolved
            .property(property)
            .map_or(property, |p| p.id.as_str());
        let body = json!({
            "filter": {"property": prop, "rich_text": {"equals": key}},
            "page_size": 1,
        });
        let answer = self
            .request_retrying(
                token,
                reqwest::Method::POST,
                &resolved.query_path(),
                Some(&body),
            )
            .await?;
        Ok(answer
            .get("results")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .and_then(|p| p.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned))
    }

    /// `GET /v1/users/me`: the bot user of the token (a 429 or 529 is waited out and retried).
    pub async fn users_me(&self, token: &TokenHandle) -> Result<Value, NotionError> {
        self.request_retrying(token, reqwest::Method::GET, "/v1/users/me", None)
            .await
    }

    /// Every result of a search for `object` ("page", "database" or "data_source"), following
    /// the pagination to the end (a 429 or 529 is waited out and that page asked again).
    pub async fn search_all(
        &self,
        token: &TokenHandle,
        object: &str,
    ) -> Result<Vec<Value>, NotionError> {
        let mut results = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut body = json!({
                "filter": {"property": "object", "value": object},
                "page_size": 100,
            });
            if let Some(c) = &cursor {
                body["start_cursor"] = json!(c);
            }
            let page = self
                .request_retrying(token, reqwest::Method::POST, "/v1/search", Some(&body))
                .await?;
            if let Some(items) = page.get("results").and_then(Value::as_array) {
                results.extend(items.iter().cloned());
            }
            match (
                page.get("has_more").and_then(Value::as_bool),
                page.get("next_cursor").and_then(Value::as_str),
            ) {
                (Some(true), Some(next)) => cursor = Some(next.to_owned()),
                _ => return Ok(results),
            }
        }
    }
}

/// Parses `Retry-After` (integer seconds or an HTTP date), capped at [`MAX_RETRY_AFTER`].
#[cfg(test)]
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    parse_retry_after_uncapped(value).map(|d| d.min(MAX_RETRY_AFTER))
}

/// Parses `Retry-After` as sent: integer seconds (a number too large for a `u64` is
/// `Duration::MAX`) or an HTTP date.
fn parse_retry_after_uncapped(value: &str) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(
            value
                .parse::<u64>()
                .map_or(Duration::MAX, Duration::from_secs),
        );
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The `Retry-After` header of an answer to `endpoint`, capped, with a warning when it was longer.
fn retry_after_header(value: &str, endpoint: &str) -> Option<Duration> {
    let wait = parse_retry_after_uncapped(value)?;
    if wait > MAX_RETRY_AFTER {
        tracing::warn!(
            %endpoint,
            retry_after = value,
            "Notion asked to wait longer than {}s; waiting {}s",
            MAX_RETRY_AFTER.as_secs(),
            MAX_RETRY_AFTER.as_secs()
        );
    }
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Maps a reqwest failure: before the request was sent (connect) or possibly after.
fn transport(base: &Url, e: reqwest::Error) -> NotionError {
    let mut detail = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_connect() {
        NotionError::Transport {
            what: format!("cannot connect to {base}"),
            detail,
            sent: false,
        }
    } else if e.is_timeout() {
        NotionError::Transport {
            what: format!(
                "no answer from {base} within {}s",
                REQUEST_TIMEOUT.as_secs()
            ),
            detail,
            sent: true,
        }
    } else {
        NotionError::Transport {
            what: format!("the connection to {base} failed"),
            detail,
            sent: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let later = std::time::SystemTime::now() + Duration::from_secs(30);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn an_absurd_retry_after_is_capped() {
        for absurd in [
            "10000000000000000000",
            "18446744073709551615",
            "99999999999999999999999999",
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ] {
            assert_eq!(parse_retry_after(absurd), Some(MAX_RETRY_AFTER), "{absurd}");
        }
        assert_eq!(parse_retry_after("900"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("899"), Some(Duration::from_secs(899)));
    }
}
