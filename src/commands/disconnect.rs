//! `notion-inbox disconnect --target NAME`: ends a connected workspace's target. Under the
//! tenants' lifecycle lock (`tenants::disconnect`), its token is revoked at Notion and its record
//! marked disconnected (the daemon stops the target at its next look); its inbox, checkpoint and
//! dead letters stay: producers may keep appending, and the workspace connecting again resumes
//! delivery where it stopped. A reconnect while the revoke is under way waits for it, so the
//! record marked is the connection whose token was revoked.

use anyhow::{Context, bail};

use crate::config::Config;
use crate::notion::{NotionClient, TokenHandle};
use crate::state::events::Event;
use crate::tenants::ConnectError;

/// What `disconnect` did.
#[derive(Debug)]
pub struct Disconnected {
    /// Whether Notion revoked the token; if not, why (the target is disconnected all the same).
    pub revoked: Result<(), String>,
}

/// Disconnects target `name`.
pub async fn run(config: &Config, name: &str) -> anyhow::Result<Disconnected> {
    let state_dir = &config.daemon.state_dir;
    let Some(target) = config.targets.iter().find(|t| t.name == name) else {
        if crate::tenants::record(state_dir, name)
            .is_some_and(|r| r.connection.disconnected_at.is_some())
        {
            bail!("target {name} is disconnected already; a workspace connecting again resumes it");
        }
        // The error that lists the targets there are.
        return Err(match config.target(name) {
            Err(e) => e.into(),
            Ok(_) => anyhow::anyhow!("there is no target named {name:?}"),
        });
    };
    if target.record.is_none() {
        bail!(
            "target {name} is a [[target]] of {}, not a connected workspace: remove it there (and its token file) to end it",
            config.path.display()
        );
    }
    let client = NotionClient::new(&config.notion)?.sharing_budget(state_dir, false);
    // Called under the lock: the token read is the one of the connection that gets marked.
    let revoke = |_token_file| async {
        match TokenHandle::load(target, config) {
            Ok(token) => client
                .revoke(&token.secret())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    let done = match crate::tenants::disconnect(state_dir, name, revoke).await {
        Err(ConnectError::NotConnected(why)) => bail!("{why}"),
        other => other.with_context(|| format!("target {name} was not disconnected"))?,
    };
    let connection = &done.record.connection;
    let event = Event {
        event: "disconnected",
        target: name,
        workspace_id: Some(connection.workspace_id.as_str()),
        workspace_name: connection.workspace_name.as_deref(),
        inbox: Some(&target.inbox),
        detail: done.revoked.as_ref().err().map(String::as_str),
    };
    crate::state::events::note(state_dir, &event);
    Ok(Disconnected {
        revoked: done.revoked,
    })
}
