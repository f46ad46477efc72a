//! One authorization in progress: which requests to the redirect URI may end it, the exchange of
//! their codes, and the token file it writes.
//!
//! Anyone on the machine can send a request to the loopback listener, and the authorize URL, with
//! its `state`, is on the browser's command line for them to read. A request whose `state` is
//! missing or wrong, or that carries no code, is answered 400 and the flow goes on waiting. A
//! redirect with this flow's `state` takes the flow's claim (one at a time: the others wait their
//! turn), so a code is exchanged at most once and never two at once. The flow ends only when a
//! code is exchanged, or with Notion's refusal (`error=`); a code Notion does not exchange, such
//! as one made up by someone who read the `state`, is answered 400 and the claim given back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use axum::response::Html;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Mutex, oneshot};
use url::Url;

use super::error::{AuthorizeError, with_causes};
use crate::notion::error::printable;
use crate::notion::oauth::{Redirect, TokenResponse, parse_redirect};
use crate::notion::{NotionClient, TokenFile};

/// How the flow ended, for whoever waits for it.
pub(super) type Outcome = Result<TokenResponse, AuthorizeError>;

/// One authorization in progress.
/// How many redirects carrying the flow's `state` may be completed or wait at once.
const MAX_WAITING: usize = 4;

pub(super) struct Flow {
    /// Exchanges the code.
    client: NotionClient,
    /// The `state` of this authorization's URL; a request carrying another is not its redirect.
    state: String,
    /// Sent again with the code exchange, as Notion requires.
    redirect_uri: Url,
    /// The target, named in the fixes of errors.
    target: String,
    /// Where the tokens go (None: the caller keeps them, as `connect` does).
    token_file: Option<PathBuf>,
    /// Whether a token file of another workspace may be replaced.
    force: bool,
    /// The flow's claim, held by one redirect with the right `state` at a time while it is
    /// completed (the others wait for the lock). A redirect that ends the flow sends its outcome
    /// through the sender, leaving it empty; one whose code Notion does not exchange leaves it.
    claim: Mutex<Option<oneshot::Sender<Outcome>>>,
    /// Redirects with the flow's `state` being completed or waiting for the claim: at most
    /// [`MAX_WAITING`], so someone who read the `state` cannot queue exchanges without end.
    waiting: std::sync::atomic::AtomicUsize,
    /// Set when the flow's time is up: a redirect that gets the claim afterwards is turned away,
    /// and a failed exchange still in progress then ends the flow with its error.
    closed: AtomicBool,
}

/// What a [`Flow`] needs to know.
pub(super) struct FlowSettings {
    /// See [`Flow::client`].
    pub client: NotionClient,
    /// See [`Flow::state`].
    pub state: String,
    /// See [`Flow::redirect_uri`].
    pub redirect_uri: Url,
    /// See [`Flow::target`].
    pub target: String,
    /// See [`Flow::token_file`].
    pub token_file: Option<PathBuf>,
    /// See [`Flow::force`].
    pub force: bool,
}

impl Flow {
    /// A flow, and the receiver of its outcome.
    pub fn new(settings: FlowSettings) -> (Arc<Flow>, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        let flow = Flow {
            client: settings.client,
            state: settings.state,
            redirect_uri: settings.redirect_uri,
            target: settings.target,
            token_file: settings.token_file,
            force: settings.force,
            claim: Mutex::new(Some(tx)),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        };
        (Arc::new(flow), rx)
    }

    /// The `state` a redirect must carry.
    pub fn state(&self) -> &str {
        &self.state
    }

    /// Ends the wait for a redirect: one being completed finishes first (its outcome, if it ended
    /// the flow, is then in the receiver), and any later one is turned away.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let mut claim = match self.claim.try_lock() {
            Ok(claim) => claim,
            Err(_) => {
                eprintln!("The time is up; waiting for the redirect being completed");
                self.claim.lock().await
            }
        };
        claim.take();
    }

    /// Answers one request to the redirect URI, with `query` its query string.
    pub async fn answer(self: Arc<Self>, query: &str) -> (StatusCode, Html<String>) {
        let redirect = match parse_redirect(query, &self.state) {
            Ok(redirect) => redirect,
            Err(why) => {
                eprintln!("Ignored a request to the redirect URI: {why}; still waiting");
                return page(
                    StatusCode::BAD_REQUEST,
                    "Not this authorization's redirect",
                    &format!(
                        "{why}. notion-inbox keeps waiting for the redirect of the authorization it started."
                    ),
                );
            }
        };
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            eprintln!(
                "Turned a redirect away: {MAX_WAITING} others are being completed; still waiting"
            );
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Busy",
                "Other redirects of this authorization are being completed. Reload this page in a moment.",
            );
        }
        // On a task of its own, so that the flow completes even if the browser goes away.
        // The place is given back when the task ends, even if this request is gone by then.
        let flow = Arc::clone(&self);
        tokio::spawn(async move {
            let answer = flow.complete(redirect).await;
            flow.waiting.fetch_sub(1, Ordering::SeqCst);
            answer
        })
        .await
        .unwrap_or_else(|_| outcome_page(&Err(AuthorizeError::Interrupted)))
    }

    /// Completes the flow with a redirect that carries its `state`, once it holds the claim.
    async fn complete(&self, redirect: Redirect) -> (StatusCode, Html<String>) {
        let mut claim = self.claim.lock().await;
        let done = match claim.take() {
            Some(done) if !self.closed.load(Ordering::SeqCst) => done,
            _ => {
                eprintln!(
                    "Ignored a request to the redirect URI: the authorization was already completed"
                );
                return page(
                    StatusCode::CONFLICT,
                    "Already completed",
                    "This authorization was already completed (or ended) by another request. You can close this tab.",
                );
            }
        };
        let outcome = match redirect {
            Redirect::Error(what) => Err(AuthorizeError::Refused(what)),
            Redirect::Code(code) => match self.redeem(&code).await {
                // A code anyone could have made up ends nothing while the flow waits.
                Err(AuthorizeError::Exchange(e)) if !self.closed.load(Ordering::SeqCst) => {
                    *claim = Some(done);
                    let why = printable(&with_causes(&e));
                    eprintln!(
                        "A redirect's code was not exchanged for a token ({why}); still waiting for the redirect"
                    );
                    return page(
                        StatusCode::BAD_REQUEST,
                        "The code was not accepted",
                        &format!(
                            "Notion did not exchange this redirect's code for a token ({why}). notion-inbox keeps waiting for the redirect of the authorization it started: open the URL it printed again and choose Allow."
                        ),
                    );
                }
                outcome => outcome,
            },
        };
        let answer = outcome_page(&outcome);
        let _ = done.send(outcome);
        answer
    }

    /// Exchanges `code` and writes the token file.
    pub async fn redeem(&self, code: &SecretString) -> Outcome {
        let response = self
            .client
            .exchange_code(code.expose_secret(), &self.redirect_uri)
            .await
            .map_err(AuthorizeError::Exchange)?;
        self.save(&response)?;
        Ok(response)
    }

    /// Writes the token file, if there is one and [`Flow::may_replace`] allows.
    fn save(&self, response: &TokenResponse) -> Result<(), AuthorizeError> {
        let Some(path) = &self.token_file else {
            return Ok(());
        };
        self.may_replace(path, response)?;
        TokenFile::from_response(response, None)
            .write(path)
            .map_err(|source| AuthorizeError::Write {
                path: path.to_owned(),
                source,
            })
    }

    /// Whether the token file may be replaced by `response`'s grant: yes when there is none, when
    /// it holds the same workspace (that is authorizing again) or no workspace at all; for another
    /// workspace's, or one that cannot be read, only with `--force`, and then with a warning.
    fn may_replace(&self, path: &Path, response: &TokenResponse) -> Result<(), AuthorizeError> {
        let old = match existing_workspace(path) {
            Ok(Some(old))
                if !old.workspace_id.is_empty() && old.workspace_id != response.workspace_id =>
            {
                old
            }
            Ok(_) => return Ok(()),
            Err(source) if !self.force => {
                return Err(AuthorizeError::ReadExisting {
                    path: path.to_owned(),
                    target: self.target.clone(),
                    source,
                });
            }
            Err(e) => {
                eprintln!(
                    "warning: --force: replacing the token file {}, which cannot be read ({e})",
                    path.display()
                );
                return Ok(());
            }
        };
        let existing = describe(old.workspace_name.as_deref(), &old.workspace_id);
        let granted = describe(response.workspace_name.as_deref(), &response.workspace_id);
        if !self.force {
            return Err(AuthorizeError::OtherWorkspace {
                path: path.to_owned(),
                target: self.target.clone(),
                existing,
                granted,
            });
        }
        eprintln!(
            "warning: --force: replacing the token file {} of workspace {existing} with the authorization of workspace {granted}",
            path.display()
        );
        Ok(())
    }
}

/// The workspace named in an existing token file.
#[derive(serde::Deserialize)]
struct ExistingWorkspace {
    /// Its id (empty in a file that does not say).
    #[serde(default)]
    workspace_id: String,
    /// Its name, if the file has one.
    #[serde(default)]
    workspace_name: Option<String>,
}

/// The workspace of the token file at `path`: None when there is no file, or when it is not a
/// token file (a broken file belongs to nobody, and authorizing again is its fix). Only the
/// workspace fields are parsed; the tokens in the text are dropped unread.
fn existing_workspace(path: &Path) -> std::io::Result<Option<ExistingWorkspace>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(toml::from_str(&text).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A workspace for people: `"Acme" (id)`, or the id alone, without control characters (the
/// name is Notion's, the file's or the grant's).
fn describe(name: Option<&str>, id: &str) -> String {
    let id = printable(id);
    match name {
        Some(name) if !name.is_empty() => format!("\"{}\" ({id})", printable(name)),
        _ => id,
    }
}

/// The page that tells the browser how the flow ended.
fn outcome_page(outcome: &Outcome) -> (StatusCode, Html<String>) {
    match outcome {
        Ok(r) => page(
            StatusCode::OK,
            "notion-inbox is authorized",
            &format!(
                "notion-inbox can now write to what you shared in workspace {}. You can close this tab.",
                r.workspace_name.as_deref().unwrap_or(&r.workspace_id)
            ),
        ),
        // The redirect did what it was meant to: tell this program the answer.
        Err(AuthorizeError::Refused(what)) => {
            page(StatusCode::OK, "Authorization not granted", what)
        }
        Err(e) => page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Authorization failed",
            &with_causes(e),
        ),
    }
}

/// A small HTML page; `title` and `body` are plain text, shown without control characters.
fn page(status: StatusCode, title: &str, body: &str) -> (StatusCode, Html<String>) {
    let (title, body) = (
        html_escape(&printable(title)),
        html_escape(&printable(body)),
    );
    (
        status,
        Html(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head><body><h1>{title}</h1><p>{body}</p></body></html>"
        )),
    )
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
    fn a_token_file_names_its_workspace_and_a_broken_one_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        assert!(existing_workspace(&path).unwrap().is_none());
        std::fs::write(
            &path,
            "access_token = \"secret\"\nworkspace_id = \"w1\"\nworkspace_name = \"Acme\"\nobtained_at = \"2026-01-01T00:00:00Z\"\n",
        )
        .unwrap();
        let found = existing_workspace(&path).unwrap().unwrap();
        assert_eq!(
            describe(found.workspace_name.as_deref(), &found.workspace_id),
            "\"Acme\" (w1)"
        );
        std::fs::write(&path, "not toml [").unwrap();
        assert!(existing_workspace(&path).unwrap().is_none());
    }

    #[test]
    fn pages_escape_what_they_show() {
        let (status, Html(html)) = page(StatusCode::BAD_REQUEST, "a<b", "\"c\" & d");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(html.contains("a&lt;b") && html.contains("&quot;c&quot; &amp; d"));
    }
}
