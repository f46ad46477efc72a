//! `notion-inbox targets`: every target, configured or connected (disconnected ones included),
//! with its workspace, owner, database, inbox, state, backlog and last delivery.

use serde::Serialize;

use crate::config::{Config, Destination, TokenSource};
use crate::notion::TokenFile;
use crate::tenants::records;

/// One target, as `targets` lists it.
#[derive(Debug, Serialize)]
pub struct TargetInfo {
    /// Its name.
    pub name: String,
    /// "config" (a `[[target]]`) or "connected" (a workspace that connected).
    pub origin: &'static str,
    /// The daemon's health state ("ok", "paused"…), "not running", or "disconnected" (by
    /// `disconnect`, or the workspace removed the integration).
    pub state: String,
    /// The workspace, when known.
    pub workspace: Option<String>,
    /// Who authorized, when known.
    pub owner: Option<String>,
    /// Where rows go: the configured id, the database chosen at consent, or "discovered".
    pub database: String,
    /// The inbox.
    pub inbox: String,
    /// Lines waiting (estimated for big backlogs).
    pub backlog_lines: Option<u64>,
    /// When the last row was delivered, as the daemon last said.
    pub last_delivery: Option<String>,
}

/// Lists every target.
/// What `targets` prints.
#[derive(Debug, clap::Args)]
pub struct TargetsArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print the names only, one per line (what shell completions offer after --target).
    #[arg(long, conflicts_with = "json")]
    pub names: bool,
}

pub fn collect(config: &Config) -> anyhow::Result<Vec<TargetInfo>> {
    let statuses = super::status::collect(config, None)?;
    let records = records(&config.daemon.state_dir);
    let mut out = Vec::new();
    for t in &config.targets {
        let token = match &t.token {
            TokenSource::File(path) => TokenFile::read(path).ok(),
            TokenSource::Fixed(_) => None,
        };
        let record = records.iter().find(|r| Some(&r.path) == t.record.as_ref());
        let status = statuses.iter().find(|s| s.target == t.name);
        let database = match (
            &t.destination,
            token.as_ref().and_then(|f| f.destination.as_ref()),
        ) {
            (Destination::Database(id) | Destination::DataSource(id), _) => id.clone(),
            (Destination::Discover, Some(chosen)) => crate::text::label(&chosen.title),
            (Destination::Discover, None) => "to be discovered".into(),
        };
        let state = match status.and_then(|s| s.daemon.as_ref().map(|d| (s.daemon_running, d))) {
            // A connected workspace whose authorization Notion refused removed the integration.
            Some((true, d)) if t.record.is_some() && d.health["state"] == "needs_authorization" => {
                "disconnected".to_owned()
            }
            Some((true, d)) => d.health["state"].as_str().unwrap_or("?").to_owned(),
            _ => "not running".into(),
        };
        out.push(TargetInfo {
            name: t.name.clone(),
            origin: if t.record.is_some() {
                "connected"
            } else {
                "config"
            },
            state,
            workspace: record
                .and_then(|r| r.connection.workspace_name.as_deref())
                .or_else(|| token.as_ref().and_then(|f| f.workspace_name.as_deref()))
                .map(crate::text::label),
            owner: record
                .and_then(|r| r.connection.owner.as_deref())
                .or_else(|| token.as_ref().and_then(|f| f.owner.as_deref()))
                .map(crate::text::label),
            database,
            inbox: t.inbox.display().to_string(),
            backlog_lines: status.map(|s| s.backlog_lines),
            last_delivery: status
                .and_then(|s| s.daemon.as_ref())
                .and_then(|d| d.last_delivery.clone()),
        });
    }
    for r in records
        .iter()
        .filter(|r| r.connection.disconnected_at.is_some())
    {
        out.push(TargetInfo {
            name: r.name.clone(),
            origin: "connected",
            state: "disconnected".into(),
            workspace: r
                .connection
                .workspace_name
                .as_deref()
                .map(crate::text::label),
            owner: r.connection.owner.as_deref().map(crate::text::label),
            database: String::new(),
            inbox: r.inbox.clone(),
            backlog_lines: None,
            last_delivery: None,
        });
    }
    Ok(out)
}

/// Prints the list as a table.
pub fn print_text(targets: &[TargetInfo]) {
    if targets.is_empty() {
        println!("No target: add a [[target]] to the configuration, or let a workspace connect.");
        return;
    }
    println!(
        "{:<28} {:<9} {:<12} {:<20} {:<24} {:>8}  {:<24} INBOX",
        "NAME", "ORIGIN", "STATE", "WORKSPACE", "DATABASE", "BACKLOG", "LAST DELIVERY"
    );
    for t in targets {
        println!(
            "{:<28} {:<9} {:<12} {:<20} {:<24} {:>8}  {:<24} {}",
            t.name,
            t.origin,
            t.state,
            t.workspace.as_deref().unwrap_or("-"),
            t.database,
            t.backlog_lines.map_or("-".into(), |b| b.to_string()),
            t.last_delivery.as_deref().unwrap_or("-"),
            t.inbox
        );
    }
}
