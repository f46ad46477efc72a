//! After consent, for a target configured without `database_id` or `data_source_id`: which of the
//! databases the user shared receives its rows (`notion::discover`), saved in the token file.

use anyhow::bail;

use crate::config::{Config, Destination, Target};
use crate::discover::{Choice, none_fits_message, several_message};
use crate::notion::{NotionClient, TokenHandle};

/// Where the target's rows go, as `authorize` ends.
#[derive(Debug)]
pub enum DatabaseOutcome {
    /// The configuration names the database.
    Configured,
    /// Chosen among what the user shared (its label), and saved with the token.
    Chosen(String),
    /// Nothing fits, or several do: what to do about it.
    NotChosen(String),
}

/// Refuses `--database` for a target whose configuration names its database (before the flow,
/// so that nobody consents for nothing).
pub fn check_args(target: &Target, wanted: Option<&str>) -> anyhow::Result<()> {
    if wanted.is_some() && !matches!(target.destination, Destination::Discover) {
        bail!(
            "target {} sets database_id or data_source_id in the configuration, which --database would contradict; remove it there to choose at authorization",
            target.name
        );
    }
    Ok(())
}

/// Discovers and saves the target's database with the token just written.
pub async fn choose_database(
    config: &Config,
    target: &Target,
    wanted: Option<&str>,
) -> anyhow::Result<DatabaseOutcome> {
    if !matches!(target.destination, Destination::Discover) {
        return Ok(DatabaseOutcome::Configured);
    }
    let client = NotionClient::new(&config.notion)?.sharing_budget(&config.daemon.state_dir, false);
    let token = TokenHandle::load(target, config)?;
    Ok(
        match client.discover_choice(target, &token, wanted).await? {
            Choice::One(c) => {
                token.save_destination(c.chosen()).await?;
                if target.record.is_some() {
                    crate::tenants::record_choice(
                        &config.daemon.state_dir,
                        &target.name,
                        &c.chosen(),
                    )?;
                }
                let label = c.label();
                let file = token.file();
                let event = crate::state::events::Event {
                    event: "database_chosen",
                    target: &target.name,
                    workspace_id: file.as_ref().map(|f| f.workspace_id.as_str()),
                    workspace_name: file.as_ref().and_then(|f| f.workspace_name.as_deref()),
                    inbox: Some(&target.inbox),
                    detail: Some(&label),
                };
                crate::state::events::note(&config.daemon.state_dir, &event);
                DatabaseOutcome::Chosen(label)
            }
            Choice::NoneFits(seen) => DatabaseOutcome::NotChosen(none_fits_message(target, &seen)),
            Choice::Several(fits) => DatabaseOutcome::NotChosen(several_message(target, &fits)),
        },
    )
}
