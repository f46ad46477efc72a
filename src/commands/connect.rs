//! `notion-inbox connect`: a workspace connects from the command line. The consent flow of
//! `authorize`, then the workspace becomes a target of its own (`config::connected::connect`:
//! token file, empty inbox under `[connect] inbox_dir`, record), its database is discovered and
//! saved with the token, and the running daemon starts it within a second. The same workspace
//! connecting again resumes its target.

use std::io::BufRead;
use std::time::Duration;

use anyhow::Context;
use url::Url;

use super::authorize::{Consent, DatabaseOutcome, choose_database, obtain};
use crate::config::Config;
use crate::notion::error::printable;
use crate::tenants::lifecycle::Caps;
use crate::tenants::{Connected, connect};

/// Arguments of `connect`.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// Do not try to open a browser; just print the URL.
    #[arg(long)]
    pub no_browser: bool,
    /// Read the redirected URL from stdin instead of listening for it.
    #[arg(long)]
    pub paste: bool,
    /// How long to wait for the redirect.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The shared database (or data source) to write to, by id, URL or title, when several fit.
    #[arg(long, value_name = "ID|URL|TITLE")]
    pub database: Option<String>,
}

/// What `connect` did.
#[derive(Debug)]
pub struct ConnectedWorkspace {
    /// The workspace's name (or id).
    pub workspace: String,
    /// The target, its inbox and record.
    pub connected: Connected,
    /// Where its rows go.
    pub database: DatabaseOutcome,
}

/// Runs the consent flow and connects the workspace; `on_url` gets the authorize URL.
pub async fn run_with(
    config: &Config,
    args: &ConnectArgs,
    stdin: &mut (dyn BufRead + Send),
    on_url: &mut (dyn FnMut(&Url) + Send),
) -> anyhow::Result<ConnectedWorkspace> {
    let settings = config.connect.as_ref().with_context(|| {
        format!(
            "{} has no [connect] table: add one with inbox_dir = \"/var/spool/notion-inbox\" and [connect.properties] (the mapping connected workspaces get; see config/example.toml)",
            config.path.display()
        )
    })?;
    let consent = Consent {
        label: "a new workspace",
        token_file: None,
        force: false,
        paste: args.paste,
        timeout: args.timeout,
    };
    let response = obtain(config, consent, stdin, on_url).await?;
    let caps = Caps {
        max_targets: Some(settings.caps.max_targets),
        refuse_new: false,
    };
    let connected = connect(
        &config.daemon.state_dir,
        &settings.inbox_dir,
        &response,
        &settings.template,
        caps,
    )?;
    // The target, as the daemon sees it.
    let target = crate::config::connected::load_record(config, &connected.record)?
        .context("the connected workspace's record says it is disconnected")?;
    let database = choose_database(config, &target, args.database.as_deref()).await?;
    Ok(ConnectedWorkspace {
        workspace: printable(
            response
                .workspace_name
                .as_deref()
                .unwrap_or(&response.workspace_id),
        ),
        connected,
        database,
    })
}
