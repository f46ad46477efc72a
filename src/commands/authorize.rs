//! `notion-inbox authorize --target NAME`: the OAuth flow of a public integration. Prints the
//! authorize URL, takes the redirect on a loopback listener (or pasted on stdin), checks `state`,
//! exchanges the code and writes the target's token file (atomically, mode 600).

use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::extract::{RawQuery, State};
use axum::response::Html;
use secrecy::ExposeSecret;
use tokio::sync::mpsc;
use url::Url;

use crate::config::{Config, Target, TokenSource, is_loopback_url};
use crate::notion::oauth::{Redirect, TokenResponse, authorize_url, new_state, parse_redirect};
use crate::notion::{NotionClient, TokenFile};

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
pub async fn run_with(
    config: &Config,
    args: &AuthorizeArgs,
    stdin: &mut (dyn BufRead + Send),
    on_url: &mut (dyn FnMut(&Url) + Send),
) -> anyhow::Result<Authorized> {
    let target = config.target(&args.target)?;
    let token_file = token_file_of(target)?;
    let client_id = config.notion.client_id.clone().with_context(|| {
        format!(
            "{}: [notion] has no client_id; copy it from your integration's settings at https://www.notion.so/profile/integrations",
            config.path.display()
        )
    })?;
    config.client_secret()?;
    let client = NotionClient::new(&config.notion)?;
    let redirect_uri = config.notion.redirect_uri.clone();
    let state = new_state();
    let url = authorize_url(&config.notion.api_base, &client_id, &redirect_uri, &state);

    let listener = match loopback_listener(&redirect_uri) {
        Some(addr) if !args.paste => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!(
                "cannot listen on {addr} for the redirect to {redirect_uri} (is another `authorize` running?); free the port, or use --paste"
            )
        })?),
        _ => None,
    };
    eprintln!(
        "Open this URL in a browser, pick the database to share with notion-inbox, and choose Allow:"
    );
    on_url(&url);
    let flow = Flow {
        client,
        state,
        redirect_uri,
        token_file: token_file.clone(),
        done: Mutex::new(None),
    };
    let response = match listener {
        Some(listener) => {
            eprintln!(
                "Waiting for Notion to redirect to {} ...",
                flow.redirect_uri
            );
            listen(listener, Arc::new(flow), args.timeout).await?
        }
        None => {
            eprintln!(
                "Then paste the address the browser was sent to (it starts with {}):",
                flow.redirect_uri
            );
            let mut line = String::new();
            stdin
                .read_line(&mut line)
                .context("cannot read the redirected URL from stdin")?;
            let query = query_of(line.trim());
            flow.complete(&query).await.map_err(anyhow::Error::msg)?
        }
    };
    Ok(Authorized {
        workspace: response
            .workspace_name
            .clone()
            .unwrap_or_else(|| response.workspace_id.clone()),
        owner: response.owner_name(),
        token_file,
    })
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

/// The address to listen on when the redirect URI is `http://localhost:PORT/...` or a loopback IP.
fn loopback_listener(uri: &Url) -> Option<SocketAddr> {
    if uri.scheme() != "http" || !is_loopback_url(uri) {
        return None;
    }
    let port = uri.port()?;
    let ip = match uri.host() {
        Some(url::Host::Ipv6(ip)) => std::net::IpAddr::V6(ip),
        _ => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    };
    Some(SocketAddr::new(ip, port))
}

/// The query string of a pasted URL (or a bare query).
fn query_of(pasted: &str) -> String {
    match Url::parse(pasted) {
        Ok(u) => u.query().unwrap_or("").to_owned(),
        Err(_) => pasted.trim_start_matches('?').to_owned(),
    }
}

fn open_browser(url: &str) {
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

/// One authorization in progress.
struct Flow {
    client: NotionClient,
    state: String,
    redirect_uri: Url,
    token_file: std::path::PathBuf,
    /// The result, once a redirect was handled.
    done: Mutex<Option<Result<TokenResponse, String>>>,
}

impl Flow {
    /// Checks a redirect's query, exchanges the code and writes the token file.
    async fn complete(&self, query: &str) -> Result<TokenResponse, String> {
        let code = match parse_redirect(query, &self.state).map_err(|e| e.to_string())? {
            Redirect::Code(code) => code,
            Redirect::Error(e) => return Err(e),
        };
        let response = self
            .client
            .exchange_code(code.expose_secret(), &self.redirect_uri)
            .await
            .map_err(|e| format!("exchanging the code failed: {e}"))?;
        let file = TokenFile::from_response(&response, None);
        file.write(&self.token_file).map_err(|e| {
            format!(
                "cannot write the token file {}: {e}; make its directory writable and authorize again",
                self.token_file.display()
            )
        })?;
        Ok(response)
    }
}

/// Serves the redirect URI's path until one redirect was handled or `timeout` passes.
async fn listen(
    listener: tokio::net::TcpListener,
    flow: Arc<Flow>,
    timeout: Duration,
) -> anyhow::Result<TokenResponse> {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let path = flow.redirect_uri.path().to_owned();
    let app = axum::Router::new()
        .route(&path, axum::routing::get(callback))
        .with_state((flow.clone(), tx));
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        rx.recv().await;
        // Let the browser receive its page before the listener goes.
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    let served = tokio::time::timeout(timeout, server.into_future()).await;
    let result = flow.done.lock().expect("not poisoned").take();
    match (served, result) {
        (_, Some(result)) => result.map_err(anyhow::Error::msg),
        (Err(_), None) => bail!(
            "no redirect arrived within {}; run `notion-inbox authorize` again (or use --paste if the browser runs on another machine)",
            humantime::format_duration(timeout)
        ),
        (Ok(r), None) => {
            r.context("the redirect listener failed")?;
            bail!("the redirect listener stopped before a redirect arrived")
        }
    }
}

async fn callback(
    State((flow, tx)): State<(Arc<Flow>, mpsc::Sender<()>)>,
    RawQuery(query): RawQuery,
) -> Html<String> {
    if flow.done.lock().expect("not poisoned").is_some() {
        return page(
            "Already done",
            "This authorization was already handled. You can close this tab.",
        );
    }
    let result = flow.complete(query.as_deref().unwrap_or("")).await;
    let html = match &result {
        Ok(r) => page(
            "notion-inbox is authorized",
            &format!(
                "notion-inbox can now write to what you shared in workspace {}. You can close this tab.",
                html_escape(r.workspace_name.as_deref().unwrap_or(&r.workspace_id))
            ),
        ),
        Err(e) => page("Authorization failed", &html_escape(e)),
    };
    *flow.done.lock().expect("not poisoned") = Some(result);
    let _ = tx.try_send(());
    html
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head><body><h1>{title}</h1><p>{body}</p></body></html>"
    ))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_loopback_redirects_are_listened_for() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            loopback_listener(&u("http://localhost:8765/callback")),
            Some("127.0.0.1:8765".parse().unwrap())
        );
        assert_eq!(loopback_listener(&u("https://example.com/cb")), None);
        assert_eq!(loopback_listener(&u("http://localhost/cb")), None);
        assert_eq!(
            query_of("http://localhost:1/cb?code=a&state=b"),
            "code=a&state=b"
        );
        assert_eq!(query_of("?code=a&state=b"), "code=a&state=b");
    }
}
