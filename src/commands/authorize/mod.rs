//! `notion-inbox authorize --target NAME`: the OAuth flow of a public integration. Prints the
//! authorize URL, takes the redirect on a loopback listener (`listen`; or pasted on stdin), checks
//! `state`, exchanges each code at most once (`flow`; a code Notion refuses leaves the listener
//! waiting) and writes the target's token file (atomically, mode 600), refusing to replace
//! another workspace's without `--force`.

mod choose;
mod error;
mod flow;
mod listen;

use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::extract::{RawQuery, State};
use tokio::sync::oneshot;
use url::Url;

pub use choose::DatabaseOutcome;
pub(crate) use choose::choose_database;
pub use error::AuthorizeError;
use flow::{Flow, FlowSettings, Outcome};

use crate::config::{Config, Target, TokenSource};
use crate::notion::NotionClient;
use crate::notion::error::printable;
use crate::notion::oauth::{Redirect, TokenResponse, authorize_url, new_state, parse_redirect};

/// Arguments of `authorize`.
#[derive(Debug, clap::Args)]
pub struct AuthorizeArgs {
    /// The target's name, as in its [[target]] table.
    #[arg(long, short)]
    pub target: String,
    /// Do not try to open a browser; just print the URL.
    #[arg(long)]
    pub no_browser: bool,
    /// Read the redirected URL from stdin instead of listening for it.
    #[arg(long)]
    pub paste: bool,
    /// How long to wait for the redirect.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Replace the target's token file even if it holds the authorization of another workspace
    /// (without it, a grant for another workspace is refused and the file kept as it was).
    #[arg(long)]
    pub force: bool,
    /// For a target configured without database_id: the shared database (or data source) to
    /// write to, by id, URL or title, when several fit its mapping.
    #[arg(long, value_name = "ID|URL|TITLE")]
    pub database: Option<String>,
}

/// What `authorize` obtained.
#[derive(Debug)]
pub struct Authorized {
    /// The workspace name (or id).
    pub workspace: String,
    /// Who authorized, if Notion said.
    pub owner: Option<String>,
    /// Where the token was written.
    pub token_file: std::path::PathBuf,
    /// Where the target's rows go.
    pub database: DatabaseOutcome,
}

/// Runs the flow for `args.target`, reading a pasted redirect from `stdin` when needed: prints the
/// URL on stdout and opens a browser unless `--no-browser`.
pub async fn run(
    config: &Config,
    args: &AuthorizeArgs,
    stdin: &mut (dyn BufRead + Send),
) -> anyhow::Result<Authorized> {
    let no_browser = args.no_browser;
    run_with(config, args, stdin, &mut |url| {
        println!("{url}");
        if !no_browser {
            open_browser(url.as_str());
        }
    })
    .await
}

/// Runs the flow, handing the authorize URL to `on_url` (the demo and tests act as the browser).
/// With a loopback redirect URI, the listener is up before `on_url` is called.
pub async fn run_with(
    config: &Config,
    args: &AuthorizeArgs,
    stdin: &mut (dyn BufRead + Send),
    on_url: &mut (dyn FnMut(&Url) + Send),
) -> anyhow::Result<Authorized> {
    let target = config.target(&args.target)?;
    choose::check_args(target, args.database.as_deref())?;
    let token_file = token_file_of(target)?;
    let consent = Consent {
        label: &args.target,
        token_file: Some(token_file.clone()),
        force: args.force,
        paste: args.paste,
        timeout: args.timeout,
    };
    let response = obtain(config, consent, stdin, on_url).await?;
    let database = choose::choose_database(config, target, args.database.as_deref()).await?;
    // Notion's texts, shown on the terminal: without control characters.
    Ok(Authorized {
        workspace: printable(
            response
                .workspace_name
                .as_deref()
                .unwrap_or(&response.workspace_id),
        ),
        owner: response.owner_name().as_deref().map(printable),
        token_file,
        database,
    })
}

/// How to run one consent flow.
pub(crate) struct Consent<'a> {
    /// For messages: the target, or "a new workspace".
    pub label: &'a str,
    /// Where the tokens go (None: the caller keeps them).
    pub token_file: Option<std::path::PathBuf>,
    /// Replace another workspace's token file.
    pub force: bool,
    /// Read the redirected URL from stdin.
    pub paste: bool,
    /// How long to wait for the redirect.
    pub timeout: Duration,
}

/// Prints the authorize URL (to `on_url`), takes the redirect (listening, or pasted), exchanges
/// its code and returns Notion's token response (also written to `consent.token_file`).
pub(crate) async fn obtain(
    config: &Config,
    consent: Consent<'_>,
    stdin: &mut (dyn BufRead + Send),
    on_url: &mut (dyn FnMut(&Url) + Send),
) -> anyhow::Result<TokenResponse> {
    let client_id = config.notion.client_id.clone().with_context(|| {
        format!(
            "{}: [notion] has no client_id; copy it from your integration's settings at https://www.notion.so/profile/integrations",
            config.path.display()
        )
    })?;
    config.client_secret()?;
    let client = NotionClient::new(&config.notion)?.sharing_budget(&config.daemon.state_dir, false);
    let redirect_uri = config.notion.redirect_uri.clone();
    let state = new_state();
    let url = authorize_url(&config.notion.api_base, &client_id, &redirect_uri, &state);

    let listeners = match listen::addresses(&redirect_uri) {
        Some(addrs) if !consent.paste => Some(listen::bind(&redirect_uri, &addrs).await?),
        _ => None,
    };
    eprintln!(
        "Open this URL in a browser, pick the database to share with notion-inbox, and choose Allow:"
    );
    on_url(&url);
    let (flow, outcome) = Flow::new(FlowSettings {
        client,
        state,
        redirect_uri: redirect_uri.clone(),
        target: consent.label.to_owned(),
        token_file: consent.token_file,
        force: consent.force,
    });
    match listeners {
        Some(listeners) => {
            eprintln!("Waiting for Notion to redirect to {redirect_uri} ...");
            Ok(listen_for(listeners, &redirect_uri, flow, outcome, consent.timeout).await?)
        }
        None => {
            eprintln!(
                "Then paste the address the browser was sent to (it starts with {redirect_uri}):"
            );
            let mut line = String::new();
            stdin
                .read_line(&mut line)
                .context("cannot read the redirected URL from stdin")?;
            Ok(pasted(&flow, &query_of(line.trim())).await?)
        }
    }
}

/// The token file of a target that uses OAuth.
fn token_file_of(target: &Target) -> anyhow::Result<std::path::PathBuf> {
    match &target.token {
        TokenSource::File(path) => Ok(path.clone()),
        TokenSource::Fixed(_) => bail!(
            "target {} has a fixed `token` in the config; remove it (the token file defaults to <state_dir>/tokens/{}.toml) to authorize with OAuth",
            target.name,
            target.name
        ),
    }
}

/// Completes the flow with a pasted redirect: one chance, so a wrong one ends it.
async fn pasted(flow: &Flow, query: &str) -> Result<TokenResponse, AuthorizeError> {
    match parse_redirect(query, flow.state()).map_err(AuthorizeError::Pasted)? {
        Redirect::Code(code) => flow.redeem(&code).await,
        Redirect::Error(what) => Err(AuthorizeError::Refused(what)),
    }
}

/// Serves the redirect URI's path on `listeners` until a redirect ended the flow, or `timeout`
/// passed without one. A redirect being completed when the time is up still completes.
async fn listen_for(
    listeners: Vec<tokio::net::TcpListener>,
    redirect_uri: &Url,
    flow: Arc<Flow>,
    mut outcome: oneshot::Receiver<Outcome>,
    timeout: Duration,
) -> Result<TokenResponse, AuthorizeError> {
    let app = axum::Router::new()
        .route(redirect_uri.path(), axum::routing::get(callback))
        .with_state(flow.clone());
    let server = crate::serve::Server::start(listeners, app, crate::serve::Limits::default());
    let ended = match tokio::time::timeout(timeout, &mut outcome).await {
        Ok(ended) => ended,
        Err(_) => {
            flow.close().await;
            Ok(outcome
                .try_recv()
                .unwrap_or(Err(AuthorizeError::Timeout { timeout })))
        }
    };
    server.shutdown().await;
    ended.unwrap_or(Err(AuthorizeError::Interrupted))
}

async fn callback(
    State(flow): State<Arc<Flow>>,
    RawQuery(query): RawQuery,
) -> (axum::http::StatusCode, axum::response::Html<String>) {
    flow.answer(query.as_deref().unwrap_or("")).await
}

/// The query string of a pasted URL (or a bare query).
fn query_of(pasted: &str) -> String {
    match Url::parse(pasted) {
        Ok(u) => u.query().unwrap_or("").to_owned(),
        Err(_) => pasted.trim_start_matches('?').to_owned(),
    }
}

/// Opens `url` in the desktop's browser, if one can be started; says so when it cannot.
pub fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let spawned = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if spawned.is_err() {
        eprintln!("(could not start a browser with {opener}; open the URL above yourself)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pasted_url_or_query_gives_its_query() {
        assert_eq!(
            query_of("http://localhost:1/cb?code=a&state=b"),
            "code=a&state=b"
        );
        assert_eq!(query_of("?code=a&state=b"), "code=a&state=b");
    }
}
