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
//! `no-store`. Bodies are limited to 8 KiB and the flow's endpoints to 5 requests a second
//! (burst 20). A handler that panics ends its connection only: delivery runs in other tasks.

mod pages;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use secrecy::SecretString;

use crate::config::Config;
use crate::config::connected::{ConnectPage, connect};
use crate::notion::NotionClient;
use crate::notion::discover::{Candidate, Choice, none_fits_message};
use crate::notion::oauth::{authorize_url, new_state};

/// How long an issued `state`, or a choice form, stays usable.
const TTL: Duration = Duration::from_secs(600);
/// The cookie that binds a `state` to the browser that started.
const COOKIE: &str = "ni_state";

struct App {
    config: Arc<Config>,
    client: NotionClient,
    page: ConnectPage,
    /// Issued states, by value, with when they were issued.
    states: Mutex<HashMap<String, Instant>>,
    /// Choice forms: token → (target, when issued).
    choices: Mutex<HashMap<String, (String, Instant)>>,
    limiter: DefaultDirectRateLimiter,
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
    let app = Arc::new(App {
        config,
        client,
        page,
        states: Mutex::new(HashMap::new()),
        choices: Mutex::new(HashMap::new()),
        limiter: RateLimiter::direct(
            Quota::per_second(NonZeroU32::new(5).expect("non-zero"))
                .allow_burst(NonZeroU32::new(20).expect("non-zero")),
        ),
    });
    let router = axum::Router::new()
        .route("/", get(landing))
        .route("/connect.css", get(stylesheet))
        .route("/start", get(start))
        .route("/callback", get(callback))
        .route("/choose", post(choose))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(8 * 1024))
        .layer(axum::middleware::map_response(secure))
        .with_state(app);
    Ok(crate::serve::Server::start(
        vec![listener],
        router,
        crate::serve::Limits::default(),
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
async fn start(State(app): S) -> Response {
    if app.limiter.check().is_err() {
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
    {
        let mut states = lock(&app.states);
        states.retain(|_, at| at.elapsed() < TTL);
        states.insert(state.clone(), Instant::now());
    }
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
        "{COOKIE}={state}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
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

fn cookie_state(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            kv.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(str::to_owned)
        })
}

/// Notion's redirect after consent.
async fn callback(
    State(app): S,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if app.limiter.check().is_err() {
        return too_many();
    }
    let state = q.get("state").cloned().unwrap_or_default();
    // Spent only by the browser that holds it: someone else who learnt the state (it is in the
    // authorize URL) cannot use it, nor spoil it for its owner.
    let ours = !state.is_empty() && cookie_state(&headers).as_deref() == Some(state.as_str());
    let issued = ours
        && lock(&app.states)
            .remove(&state)
            .is_some_and(|at| at.elapsed() < TTL);
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
    connect_with(&app, code).await
}

/// Exchanges the code, connects the workspace and discovers its database.
async fn connect_with(app: &App, code: SecretString) -> Response {
    use secrecy::ExposeSecret;
    let failed = |why: String| {
        tracing::warn!("a workspace could not connect: {why}");
        message(
            StatusCode::BAD_GATEWAY,
            "Nothing was connected",
            "Notion did not complete the connection. Start again; if it fails again, tell the operator of this service.",
            None,
        )
    };
    let redirect = app.page.redirect_uri();
    let response = match app
        .client
        .exchange_code(code.expose_secret(), &redirect)
        .await
    {
        Ok(r) => r,
        Err(e) => return failed(e.to_string()),
    };
    let Some(settings) = app.config.connect.clone() else {
        return failed("[connect] is gone".into());
    };
    let state_dir = app.config.daemon.state_dir.clone();
    let workspace = crate::notion::error::printable(
        response
            .workspace_name
            .as_deref()
            .unwrap_or(&response.workspace_id),
    );
    let config_path = app.config.path.clone();
    let done = tokio::task::spawn_blocking(move || {
        let connected = connect(
            &state_dir,
            &settings.inbox_dir,
            &response,
            &settings.template,
        )
        .map_err(|e| e.to_string())?;
        let config = Config::load(&config_path).map_err(|e| e.to_string())?;
        Ok::<_, String>((connected, config))
    })
    .await;
    let (connected, config) = match done {
        Ok(Ok(x)) => x,
        Ok(Err(why)) => return failed(why),
        Err(e) => return failed(e.to_string()),
    };
    discover(
        app,
        &config,
        &connected.name,
        &workspace,
        connected.reconnected,
        None,
    )
    .await
}

/// Discovers (or, from the form, sets) the target's database and says what happened.
async fn discover(
    app: &App,
    config: &Config,
    name: &str,
    workspace: &str,
    reconnected: bool,
    wanted: Option<&str>,
) -> Response {
    let failed = |why: String| {
        tracing::warn!(target_name = %name, "discovery after connecting failed: {why}");
        message(
            StatusCode::OK,
            "Connected; the database is not chosen yet",
            "Your workspace is connected, but its databases could not be listed just now. Records wait in your inbox, and the service looks again by itself.",
            Some(name.to_owned()),
        )
    };
    let Ok(target) = config.target(name) else {
        return failed("the new target is not in the configuration".into());
    };
    let token = match crate::notion::TokenHandle::load(target, config) {
        Ok(t) => t,
        Err(e) => return failed(e.to_string()),
    };
    let choice = match app.client.discover_choice(target, &token, wanted).await {
        Ok(c) => c,
        Err(e) => return failed(e.to_string()),
    };
    match choice {
        Choice::One(c) => {
            if let Err(e) = token.save_destination(c.chosen()).await {
                return failed(e.to_string());
            }
            if let Some(record) = &target.record
                && let Err(e) = crate::config::connected::record_choice(record, &c.chosen())
            {
                return failed(e.to_string());
            }
            let label = c.label();
            let event = crate::state::events::Event {
                event: "database_chosen",
                target: name,
                workspace_id: None,
                workspace_name: Some(workspace),
                inbox: Some(&target.inbox),
                detail: Some(&label),
            };
            crate::state::events::note(&config.daemon.state_dir, &event);
            let page = pages::Connected {
                heading: if reconnected {
                    "Connected again"
                } else {
                    "Connected"
                }
                .into(),
                workspace: workspace.to_owned(),
                database: label.clone(),
                connection: name.to_owned(),
                next: format!(
                    "Records sent to your inbox now become rows of {label}, within a few seconds, at Notion's pace.{}",
                    if reconnected {
                        " Records that waited while you were away are delivered first."
                    } else {
                        ""
                    }
                ),
            };
            render(StatusCode::OK, page)
        }
        Choice::Several(fits) => choice_form(app, name, workspace, &fits),
        Choice::NoneFits(seen) => message(
            StatusCode::OK,
            "Connected; share a database",
            &none_fits_message(target, &seen),
            Some(name.to_owned()),
        ),
    }
}

fn choice_form(app: &App, name: &str, workspace: &str, fits: &[Candidate]) -> Response {
    let token = new_state();
    {
        let mut choices = lock(&app.choices);
        choices.retain(|_, (_, at)| at.elapsed() < TTL);
        choices.insert(token.clone(), (name.to_owned(), Instant::now()));
    }
    let page = pages::Choose {
        workspace: workspace.to_owned(),
        token,
        choices: fits
            .iter()
            .map(|c| {
                let id = c
                    .data_source_id
                    .clone()
                    .unwrap_or_else(|| c.database_id.clone());
                (id, c.label())
            })
            .collect(),
        connection: name.to_owned(),
    };
    render(StatusCode::OK, page)
}

#[derive(serde::Deserialize)]
struct ChooseForm {
    token: String,
    database: String,
}

/// The choice form's answer.
async fn choose(State(app): S, axum::Form(form): axum::Form<ChooseForm>) -> Response {
    if app.limiter.check().is_err() {
        return too_many();
    }
    let target = lock(&app.choices)
        .remove(&form.token)
        .filter(|(_, at)| at.elapsed() < TTL)
        .map(|(t, _)| t);
    let Some(name) = target else {
        return message(
            StatusCode::BAD_REQUEST,
            "This form has expired",
            "It was sent already or is older than ten minutes. Connect again to choose.",
            None,
        );
    };
    let config_path = app.config.path.clone();
    let config = match tokio::task::spawn_blocking(move || Config::load(&config_path)).await {
        Ok(Ok(c)) => c,
        _ => {
            return message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The choice could not be saved. Connect again to choose.",
                Some(name),
            );
        }
    };
    let workspace = crate::config::connected::records(&config.daemon.state_dir)
        .into_iter()
        .find(|r| r.name == name)
        .and_then(|r| r.connection.workspace_name)
        .unwrap_or_default();
    discover(
        &app,
        &config,
        &name,
        &workspace,
        false,
        Some(&form.database),
    )
    .await
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
