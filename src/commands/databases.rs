//! `notion-inbox databases --target NAME`: what the target's token can see, with schemas, and which
//! destinations fit the target's mapping.

use serde::Serialize;

use crate::config::{Config, Destination, Target};
use crate::notion::{NotionClient, TokenHandle};

/// One database the token can see.
#[derive(Debug, Serialize)]
pub struct DatabaseInfo {
    /// Its title.
    pub title: String,
    /// Its id.
    pub database_id: String,
    /// Its data sources (one entry with no id under 2022-06-28).
    pub data_sources: Vec<DataSourceInfo>,
}

/// One data source (or, under 2022-06-28, the database's own schema).
#[derive(Debug, Serialize)]
pub struct DataSourceInfo {
    /// Its name.
    pub name: String,
    /// Its id (none under 2022-06-28).
    pub data_source_id: Option<String>,
    /// Its properties.
    pub properties: Vec<PropertyInfo>,
    /// Whether the target's mapping fits it.
    pub fits: bool,
    /// Why it does not fit, if it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not: Option<String>,
    /// Whether the target is configured to write here.
    pub configured: bool,
}

/// One property.
#[derive(Debug, Serialize)]
pub struct PropertyInfo {
    /// Name.
    pub name: String,
    /// Id.
    pub id: String,
    /// Type.
    #[serde(rename = "type")]
    pub kind: String,
}

/// Loads the target's token, refreshing it once if Notion refuses it.
pub async fn usable_token(
    client: &NotionClient,
    target: &Target,
    config: &Config,
) -> anyhow::Result<TokenHandle> {
    let token = TokenHandle::load(target, config).map_err(|e| {
        anyhow::anyhow!(
            "{e}; run `notion-inbox authorize --target {}` first",
            target.name
        )
    })?;
    let sent_with = token.generation();
    match client.users_me(&token).await {
        Ok(_) => Ok(token),
        Err(e) if e.is_unauthorized() && token.can_refresh() => {
            token.refresh_from(client, sent_with).await.map_err(|e| match e.local_file() {
                // A file on this machine: its fix, not an authorization, is what is needed.
                Some(_) => anyhow::anyhow!(
                    "target {}: the token was refused and cannot be refreshed: {}",
                    target.name,
                    crate::error::chain(&e)
                ),
                None => anyhow::anyhow!(
                    "target {}: the token was refused and refreshing it failed ({}); run `notion-inbox authorize --target {}`",
                    target.name,
                    crate::error::chain(&e),
                    target.name
                ),
            })?;
            Ok(token)
        }
        Err(e) if e.is_unauthorized() => anyhow::bail!(
            "target {}: Notion refused the token ({e}); run `notion-inbox authorize --target {}` (or replace the fixed token)",
            target.name,
            target.name
        ),
        Err(e) => Err(e.into()),
    }
}

/// Lists every database and data source the target's token can see.
pub async fn collect(config: &Config, name: &str) -> anyhow::Result<Vec<DatabaseInfo>> {
    let target = config.target(name)?;
    let client = NotionClient::new(&config.notion)?.sharing_budget(&config.daemon.state_dir, false);
    let token = usable_token(&client, target, config).await?;
    let chosen = token.file().and_then(|f| f.destination);
    let mut out: Vec<DatabaseInfo> = Vec::new();
    let mut candidates = client.candidates(target, &token).await?;
    client.fill_database_titles(&token, &mut candidates).await?;
    for c in candidates {
        let configured = match &target.destination {
            Destination::DataSource(id) => c.data_source_id.as_deref() == Some(id.as_str()),
            Destination::Database(id) => c.database_id == *id,
            Destination::Discover => chosen.as_ref().is_some_and(|ch| match &ch.data_source_id {
                Some(ds) => c.data_source_id.as_ref() == Some(ds),
                None => ch.database_id.as_ref() == Some(&c.database_id),
            }),
        };
        let info = DataSourceInfo {
            fits: c.why_not.is_none(),
            why_not: c.why_not.as_deref().map(crate::text::message),
            name: crate::text::label(&c.name),
            data_source_id: c.data_source_id.as_deref().map(crate::text::label),
            properties: c
                .properties
                .into_iter()
                .map(|p| PropertyInfo {
                    name: crate::text::label(&p.name),
                    id: crate::text::label(&p.id),
                    kind: p.kind.as_str().to_owned(),
                })
                .collect(),
            configured,
        };
        match out
            .iter_mut()
            .find(|d| d.database_id == crate::text::label(&c.database_id))
        {
            Some(db) => db.data_sources.push(info),
            None => out.push(DatabaseInfo {
                title: crate::text::label(&c.database_title),
                database_id: crate::text::label(&c.database_id),
                data_sources: vec![info],
            }),
        }
    }
    Ok(out)
}

/// Prints the listing for people.
pub fn print_text(target: &str, dbs: &[DatabaseInfo]) {
    if dbs.is_empty() {
        println!(
            "The token of target {target} sees no database. Share one with the integration (in Notion: the database's ••• menu, Connections), or run `notion-inbox authorize --target {target}` and pick it."
        );
        return;
    }
    for db in dbs {
        println!(
            "database \"{}\"  database_id = \"{}\"",
            db.title, db.database_id
        );
        for ds in &db.data_sources {
            match &ds.data_source_id {
                Some(id) => println!("  data source \"{}\"  data_source_id = \"{id}\"", ds.name),
                None => println!("  schema"),
            }
            for p in &ds.properties {
                println!("    {:<24} {:<14} id {}", p.name, p.kind, p.id);
            }
            let mark = if ds.configured {
                " (configured for this target)"
            } else {
                ""
            };
            match &ds.why_not {
                None => println!("  fits target {target}'s mapping{mark}"),
                Some(e) => println!("  does not fit target {target}'s mapping{mark}: {e}"),
            }
        }
    }
}
