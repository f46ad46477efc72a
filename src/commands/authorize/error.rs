//! Why an authorization failed. No variant holds a secret: codes and tokens stay in the flow, and
//! Notion's answers and transport errors name URLs only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::notion::NotionError;
use crate::notion::oauth::RedirectError;

/// An authorization that did not end with a token file.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    /// An address of the redirect URI's host could not be listened on.
    #[error(
        "cannot listen on {addr} for the redirect to {redirect_uri} (is port {port} taken there, by another `authorize` or another program or user?); free port {port}, or use --paste"
    )]
    Bind {
        /// The address (127.0.0.1:PORT or [::1]:PORT).
        addr: SocketAddr,
        /// Its port, named on its own in the message.
        port: u16,
        /// The redirect URI being listened for.
        redirect_uri: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No redirect whose `state` matched arrived in time.
    #[error(
        "no redirect arrived within {}; run `notion-inbox authorize` again (or use --paste if the browser runs on another machine)",
        humantime::format_duration(*timeout)
    )]
    Timeout {
        /// The `--timeout`.
        timeout: Duration,
    },
    /// The pasted address is not this authorization's redirect.
    #[error(
        "the pasted address is not the redirect of this authorization; paste the address the browser was sent to, or start `notion-inbox authorize` again"
    )]
    Pasted(#[source] RedirectError),
    /// The redirect carried Notion's refusal (`error=…`), with this authorization's `state`.
    #[error("{0}; run `notion-inbox authorize` again and choose Allow")]
    Refused(String),
    /// The code exchange failed.
    #[error("exchanging the code for a token failed; run `notion-inbox authorize` again")]
    Exchange(#[source] NotionError),
    /// The token file holds the authorization of another workspace, and `--force` was not given.
    #[error(
        "the token file {path} holds the authorization of workspace {existing}, but this grant is for workspace {granted}; the file was left as it was: run `notion-inbox authorize --target {target} --force` to replace it"
    )]
    OtherWorkspace {
        /// The token file.
        path: PathBuf,
        /// The target.
        target: String,
        /// The workspace of the file, for people (name and id).
        existing: String,
        /// The workspace of the new grant, for people.
        granted: String,
    },
    /// The token file exists but cannot be read to see whose authorization it holds.
    #[error(
        "the token file {path} cannot be read to check which workspace it belongs to; fix its permissions, or run `notion-inbox authorize --target {target} --force` to replace it"
    )]
    ReadExisting {
        /// The token file.
        path: PathBuf,
        /// The target.
        target: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The token file cannot be written.
    #[error("cannot write the token file {path}; make its directory writable and authorize again")]
    Write {
        /// The token file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The redirect was being handled when its task failed (a bug).
    #[error("the redirect listener stopped before the authorization was complete")]
    Interrupted,
}

/// An error with its causes, `a: b: c`, as `{:#}` shows an anyhow chain (for the browser's page).
pub(super) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
