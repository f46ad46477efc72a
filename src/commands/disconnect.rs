//! `notion-inbox disconnect --target NAME`: ends a connected workspace's target. Its token is
//! revoked at Notion, its record marked disconnected (the daemon stops the target at its next
//! look), and its inbox, checkpoint and dead letters stay: producers may keep appending, and the
//! workspace connecting again resumes delivery where it stopped.

use anyhow::{Context, bail};

use crate::config::Config;
use crate::config::connected::{mark_disconnected, records};
use crate::notion::{NotionClient, TokenHandle};
use crate::state::events::Event;

/// What `disconnect` did.
#[derive(Debug)]
pub struct Disconnected {
    /// Whether Notion revoked the token; if not, why (the target is disconnected all the same).
    pub revoked: Result<(), String>,
}

/// Disconnects target `name`.
pub async fn run(config: &Config, name: &str) -> anyhow::Result<Disconnected> {
    let Some(target) = config.targets.iter().find(|t| t.name == name) else {
        if records(&config.daemon.state_dir)
            .iter()
            .any(|r| r.name == name && r.connection.disconnected_at.is_some())
        {
            bail!("target {name} is disconnected already; a workspace connecting again resumes it");
        }
        // The error that lists the targets there are.
        return Err(match config.target(name) {
            Err(e) => e.into(),
            Ok(_) => anyhow::anyhow!("there is no target named {name:?}"),
        });
    };
    let Some(record) = &target.record else {
        bail!(
            "target {name} is a [[target]] of {}, not a connected workspace: remove it there (and its token file) to end it",
            config.path.display()
        );
    };
    let revoked = match TokenHandle::load(target, config) {
        Ok(token) => NotionClient::new(&config.notion)?
            .sharing_budget(&config.daemon.state_dir, false)
            .revoke(&token.secret())
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    mark_disconnected(record).with_context(|| format!("target {name} was not disconnected"))?;
    let connection = records(&config.daemon.state_dir)
        .into_iter()
        .find(|r| r.name == name)
        .map(|r| r.connection);
    let event = Event {
        event: "disconnected",
        target: name,
        workspace_id: connection.as_ref().map(|c| c.workspace_id.as_str()),
        workspace_name: connection
            .as_ref()
            .and_then(|c| c.workspace_name.as_deref()),
        inbox: Some(&target.inbox),
        detail: revoked.as_ref().err().map(String::as_str),
    };
    crate::state::events::note(&config.daemon.state_dir, &event);
    Ok(Disconnected { revoked })
}
