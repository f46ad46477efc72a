//! The self-service connect page, served by `notion-inbox run` when `[connect]` has `listen` and
//! `public_url`: other workspaces connect themselves, and each becomes a target of its own.
//!
//! `/` explains and links to `/start`, which issues a `state` (random, single use, 10 minutes),
//! binds it to the browser with a cookie (HttpOnly, SameSite=Lax, Secure under https) and sends
//! the browser to Notion's consent page. Notion redirects to `/callback`: the `state` must be the
//! cookie's and still issued (it is spent on first use), `error=access_denied` gets a kind page,
//! and a code is exchanged, the workspace connected (`config::connected::connect`) and its
//! database discovered: one that fits is saved, several give a form (`/choose`, with a
//! single-use token), none says what to share. The daemon picks the new target up by itself.
//!
//! Every answer carries a strict Content-Security-Policy (no script, styles from this origin, no
//! framing), `Referrer-Policy: no-referrer` (the callback's URL holds the code), `nosniff` and
//! `no-store`. A handler that panics ends its connection only: delivery runs in other tasks.
//!
//! The page is for strangers, and defends itself so (its threat model is in README's "The connect
//! page and strangers"):
//! - each client (its address, or what a `trusted_proxies` proxy says) has its own bucket of
//!   requests (5 a second, 20 at once), so one client flooding is refused alone; a callback's
//!   `state` and cookie are checked before Notion is asked anything, and the code exchanges of all
//!   clients share one more budget only once they passed that check;
//! - requests have 5 s for their headers and 5 s for their body (at most 8 KiB); the page has 1024
//!   places, and a connection arriving when all are taken closes the oldest one still sending
//!   its request (see `crate::serve`);
//! - a new workspace is connected only within `[connect] max_targets` and the client's
//!   `max_new_per_client_per_hour`; past either, the page says so, nothing is created and the
//!   token Notion gave is revoked;
//! - what Notion says of the workspace (names, titles) is made safe as it is read
//!   (`crate::text`) and escaped again by the templates; the `state` cookie is
//!   `__Host-ni_state` (Secure, Path=/, no Domain) under https.

mod flow;
mod guard;
mod pages;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use secrecy::SecretString;

use crate::config::Config;
use crate::config::connected::ConnectPage;
use crate::notion::NotionClient;
use crate::notion::oauth::{authorize_url, new_state};

/// How long an issued `state`, or a choice form, stays usable.
const TTL: Duration = Duration::from_secs(600);

/// How the page is served: more places than `authorize`'s listener, and the oldest connection
/// still sending its request gives its place to a new one.
fn limits() -> crate::serve::Limits {
    crate::serve::Limits {
        max_connections: 1024,
        shed_idle: true,
        ..crate::serve::Limits::default()
    }
}

struct App {
    /// The configuration file's settings (the page never needs the targets).
    config: Arc<Config>,
    client: NotionClient,
    page: ConnectPage,
    /// The cookie that binds a `state` to the browser that started.
    cookie: &'static str,
    /// Issued states.
    states: guard::Tokens<()>,
    /// Choice forms: token → target.
    choices: guard::Tokens<String>,
    /// Each client's requests.
    buckets: guard::Buckets,
    /// Each client's code exchanges.
    client_exchanges: guard::Buckets,
    /// The code exchanges of every client, once their state was checked.
    exchanges: DefaultDirectRateLimiter,
    /// Each client's new connections of the last hour.
    new_connections: Arc<guard::NewConnections>,
}

impl App {
    /// The client of a request, if its bucket lets it in.
    fn admit(&self, peer: SocketAddr, headers: &HeaderMap) -> Option<std::net::IpAddr> {
        let trusted = self
            .config
            .connect
            .as_ref()
            .map_or(&[][..], |c| &c.caps.trusted_proxies[..]);
        let client = guard::client(peer, headers, trusted);
        self.buckets.allow(client).then_some(client)
    }
}

type S = State<Arc<App>>;

/// Serves the connect page on `page.listen` until the server is shut down.
pub async fn serve(
    config: Arc<Config>,
    client: NotionClient,
    page: ConnectPage,
) -> std::io::Result<crate::serve::Server> {
    let listener = tokio::net::TcpListener::bind(page.listen)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on [connect] listen = \"{}\": {e}; pick a free port",
                    page.listen
                ),
            )
        })?;
    let per_client = config
        .connect
        .as_ref()
        .map_or(10, |c| c.caps.new_per_client_per_hour);
    let cookie = if page.public_url.scheme() == "https" {
        "__Host-ni_state"
    } else {
        "ni_state"
    };
    let app = Arc::new(App {
        config,
        client,
        page,
        cookie,
        states: guard::Tokens::new(TTL),
        choices: guard::Tokens::new(TTL),
        buckets: guard::Buckets::requests(),
        client_exchanges: guard::Buckets::exchanges(),
        exchanges: RateLimiter::direct(
            Quota::per_second(NonZeroU32::new(20).expect("non-zero"))
                .allow_burst(NonZeroU32::new(40).expect("non-zero")),
        ),
        new_connections: Arc::new(guard::NewConnections::new(per_client)),
    });
    let router = axum::Router::new()
        .route("/", get(landing))
        .route("/connect.css", get(stylesheet))
        .route("/start", get(start))
        .route("/callback", get(callback))
        .route("/choose", post(flow::choose))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(limits().max_body))
        .layer(axum::middleware::map_response(secure))
        .with_state(app);
    Ok(crate::serve::Server::start(
        vec![listener],
        router,
        limits(),
    ))
}

/// Adds the security headers to every answer.
async fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("referrer-policy", "no-referrer"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}

fn render(status: StatusCode, page: impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!("cannot render a connect page: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn message(status: StatusCode, heading: &str, text: &str, connection: Option<String>) -> Response {
    let page = pages::Message {
        heading: heading.into(),
        text: text.into(),
        connection,
    };
    render(status, page)
}

fn too_many() -> Response {
    message(
        StatusCode::TOO_MANY_REQUESTS,
        "Busy",
        "Many people are connecting right now. Wait a few seconds, then start again.",
        None,
    )
}

async fn not_found() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page here.",
        None,
    )
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        pages::STYLESHEET,
    )
        .into_response()
}

async fn landing(State(app): S) -> Response {
    let Some(settings) = &app.config.connect else {
        return not_found().await;
    };
    let wanted = settings
        .template
        .properties
        .values()
        .filter(|p| *p != "title")
        .cloned()
        .collect();
    render(
        StatusCode::OK,
        pages::Landing {
            wanted,
            template: false,
        },
    )
}

/// Issues a `state`, sets its cookie and sends the browser to Notion.
async fn start(
    State(app): S,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if app.admit(peer, &headers).is_none() {
        return too_many();
    }
    let Some(client_id) = app.config.notion.client_id.as_deref() else {
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not ready",
            "This service is not set up to connect workspaces yet (no OAuth client id).",
            None,
        );
    };
    let state = new_state();
    app.states.issue(state.clone(), ());
    let url = authorize_url(
        &app.config.notion.api_base,
        client_id,
        &app.page.redirect_uri(),
        &state,
    );
    let secure = if app.page.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={state}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        app.cookie,
        TTL.as_secs()
    );
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let (Ok(location), Ok(cookie)) = (
        HeaderValue::from_str(url.as_str()),
        HeaderValue::from_str(&cookie),
    ) {
        r.headers_mut().insert(header::LOCATION, location);
        r.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    r
}

fn cookie_state(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            kv.trim()
                .strip_prefix(name)
                .and_then(|v| v.strip_prefix('='))
                .map(str::to_owned)
        })
}

/// Notion's redirect after consent.
async fn callback(
    State(app): S,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(client) = app.admit(peer, &headers) else {
        return too_many();
    };
    let state = q.get("state").cloned().unwrap_or_default();
    // Spent only by the browser that holds it: someone else who learnt the state (it is in the
    // authorize URL) cannot use it, nor spoil it for its owner.
    let ours =
        !state.is_empty() && cookie_state(&headers, app.cookie).as_deref() == Some(state.as_str());
    // The budgets are taken before the state is spent: a callback refused as busy can be
    // loaded again. The client's own budget comes first, so that a client sending made-up codes
    // (with states it started itself) spends its own and not everybody's.
    if ours
        && app.states.is_live(&state)
        && q.contains_key("code")
        && (!app.client_exchanges.allow(client) || app.exchanges.check().is_err())
    {
        return too_many();
    }
    let issued = ours && app.states.spend(&state).is_some();
    if !issued {
        return message(
            StatusCode::BAD_REQUEST,
            "This link has expired",
            "It was used already, is older than ten minutes, or was opened in another browser than the one that started. Start again from this page.",
            None,
        );
    }
    if let Some(error) = q.get("error") {
        let text = if error == "access_denied" {
            "You chose Cancel, so nothing was connected and nothing was shared. You can start again whenever you like.".to_owned()
        } else {
            format!(
                "Notion did not grant access ({}). Nothing was connected.",
                crate::notion::error::printable(error)
            )
        };
        return message(StatusCode::OK, "Nothing was connected", &text, None);
    }
    let Some(code) = q.get("code").map(|c| SecretString::from(c.clone())) else {
        return message(
            StatusCode::BAD_REQUEST,
            "Nothing was connected",
            "Notion's answer had no code. Start again.",
            None,
        );
    };
    flow::connect_with(&app, client, code).await
}
