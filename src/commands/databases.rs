//! `notion-inbox databases --target NAME`: what the target's token can see, with schemas, and which
//! destinations fit the target's mapping.

use serde::Serialize;
use serde_json::Value;

use crate::config::{Config, Destination, Target};
use crate::notion::schema::{parse_properties, plain_text};
use crate::notion::{NotionClient, NotionError, Resolved, TokenHandle};
use crate::record::Mapper;

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
                    crate::daemon::perform::error_chain(&e)
                ),
                None => anyhow::anyhow!(
                    "target {}: the token was refused and refreshing it failed ({}); run `notion-inbox authorize --target {}`",
                    target.name,
                    crate::daemon::perform::error_chain(&e),
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
    let client = NotionClient::new(&config.notion)?;
    let token = usable_token(&client, target, config).await?;
    let version = client.version();
    let mut out: Vec<DatabaseInfo> = Vec::new();
    if version.has_data_sources() {
        for ds in client.search_all(&token, "data_source").await? {
            let ds = with_properties(&client, &token, ds).await?;
            let database_id = ds
                .get("parent")
                .and_then(|p| p.get("database_id"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let ds_id = ds.get("id").and_then(Value::as_str).map(str::to_owned);
            let info = source_info(target, &ds, version, Some(&database_id), ds_id.clone())?;
            match out.iter_mut().find(|d| d.database_id == database_id) {
                Some(db) => db.data_sources.push(info),
                None => {
                    let title = match client.retrieve_database(&token, &database_id).await {
                        Ok(db) => plain_text(db.get("title")),
                        Err(_) => plain_text(ds.get("title")),
                    };
                    out.push(DatabaseInfo {
                        title,
                        database_id,
                        data_sources: vec![info],
                    });
                }
            }
        }
    } else {
        for db in client.search_all(&token, "database").await? {
            let id = db
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let info = source_info(target, &db, version, Some(&id), None)?;
            out.push(DatabaseInfo {
                title: plain_text(db.get("title")),
                database_id: id,
                data_sources: vec![info],
            });
        }
    }
    Ok(out)
}

/// Search results may omit properties; fetch the data source when they do.
async fn with_properties(
    client: &NotionClient,
    token: &TokenHandle,
    ds: Value,
) -> Result<Value, NotionError> {
    if ds.get("properties").is_some() {
        return Ok(ds);
    }
    let id = ds
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    client.retrieve_data_source(token, &id).await
}

fn source_info(
    target: &Target,
    object: &Value,
    version: crate::config::NotionVersion,
    database_id: Option<&str>,
    data_source_id: Option<String>,
) -> anyhow::Result<DataSourceInfo> {
    let properties = parse_properties(object).map_err(anyhow::Error::msg)?;
    let name = object
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| plain_text(object.get("title")));
    let resolved = Resolved {
        version,
        database_id: database_id.map(str::to_owned),
        data_source_id: data_source_id.clone(),
        title: name.clone(),
        properties: properties.clone(),
    };
    let configured = match &target.destination {
        Destination::DataSource(id) => data_source_id.as_deref() == Some(id.as_str()),
        Destination::Database(id) => database_id == Some(id.as_str()),
    };
    let why_not = Mapper::new(target, &resolved).err();
    Ok(DataSourceInfo {
        fits: why_not.is_none(),
        why_not,
        name,
        data_source_id,
        properties: properties
            .into_iter()
            .map(|p| PropertyInfo {
                name: p.name,
                id: p.id,
                kind: p.kind.as_str().to_owned(),
            })
            .collect(),
        configured,
    })
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
