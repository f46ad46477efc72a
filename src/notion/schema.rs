//! Resolving a target's destination to the data source (or, under 2022-06-28, the database) that
//! receives its rows, with the schema it has.

use serde_json::{Value, json};

use crate::config::{Destination, NotionVersion, Target};
use crate::notion::{NotionClient, NotionError, TokenHandle};

/// The type of a property, as far as notion-inbox writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertyKind {
    /// The title (exactly one per schema, id "title").
    Title,
    /// Rich text.
    RichText,
    /// A URL.
    Url,
    /// An email address.
    Email,
    /// A phone number.
    PhoneNumber,
    /// A number.
    Number,
    /// A checkbox.
    Checkbox,
    /// A date (or date and time).
    Date,
    /// One option.
    Select,
    /// Several options.
    MultiSelect,
    /// Any other type (formula, relation, people...): notion-inbox cannot write it.
    Other(String),
}

impl PropertyKind {
    /// Parses Notion's type name.
    pub fn parse(ty: &str) -> PropertyKind {
        match ty {
            "title" => Self::Title,
            "rich_text" => Self::RichText,
            "url" => Self::Url,
            "email" => Self::Email,
            "phone_number" => Self::PhoneNumber,
            "number" => Self::Number,
            "checkbox" => Self::Checkbox,
            "date" => Self::Date,
            "select" => Self::Select,
            "multi_select" => Self::MultiSelect,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Notion's type name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Title => "title",
            Self::RichText => "rich_text",
            Self::Url => "url",
            Self::Email => "email",
            Self::PhoneNumber => "phone_number",
            Self::Number => "number",
            Self::Checkbox => "checkbox",
            Self::Date => "date",
            Self::Select => "select",
            Self::MultiSelect => "multi_select",
            Self::Other(s) => s,
        }
    }
}

/// One property of the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    /// Its name (what users see; may change).
    pub name: String,
    /// Its id (stable across renames).
    pub id: String,
    /// Its type.
    pub kind: PropertyKind,
    /// For select and multi_select: the option names that exist.
    pub options: Vec<String>,
}

/// Where a target's rows go, and the schema there.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The Notion-Version in use.
    pub version: NotionVersion,
    /// The database id, when known.
    pub database_id: Option<String>,
    /// The data source id (2025-09-03 and later).
    pub data_source_id: Option<String>,
    /// The database's (or data source's) title.
    pub title: String,
    /// The schema.
    pub properties: Vec<Property>,
}

impl Resolved {
    /// For messages: `data source "Twitter" (…)` or `database "Twitter" (…)`.
    /// (Its title and ids come from Notion: the whole is made safe to print and log.)
    pub fn describe(&self) -> String {
        crate::text::message(&match (&self.data_source_id, &self.database_id) {
            (Some(ds), _) => format!("data source \"{}\" ({ds})", self.title),
            (None, Some(db)) => format!("database \"{}\" ({db})", self.title),
            (None, None) => format!("\"{}\"", self.title),
        })
    }

    /// The `parent` of a page create.
    pub fn parent(&self) -> Value {
        match (&self.data_source_id, &self.database_id) {
            (Some(ds), _) if self.version.has_data_sources() => {
                json!({"type": "data_source_id", "data_source_id": ds})
            }
            (_, Some(db)) => json!({"type": "database_id", "database_id": db}),
            (Some(ds), None) => json!({"type": "data_source_id", "data_source_id": ds}),
            (None, None) => Value::Null,
        }
    }

    /// The path of the query endpoint for rows.
    pub fn query_path(&self) -> String {
        match (&self.data_source_id, &self.database_id) {
            (Some(ds), _) if self.version.has_data_sources() => {
                format!("/v1/data_sources/{ds}/query")
            }
            (_, Some(db)) => format!("/v1/databases/{db}/query"),
            (Some(ds), None) => format!("/v1/data_sources/{ds}/query"),
            (None, None) => String::new(),
        }
    }

    /// A property by name, else by id; "title" also names the title property whatever its name.
    pub fn property(&self, name_or_id: &str) -> Option<&Property> {
        self.properties
            .iter()
            .find(|p| p.name == name_or_id)
            .or_else(|| self.properties.iter().find(|p| p.id == name_or_id))
            .or_else(|| {
                (name_or_id == "title")
                    .then(|| {
                        self.properties
                            .iter()
                            .find(|p| p.kind == PropertyKind::Title)
                    })
                    .flatten()
            })
    }
}

/// Why a destination could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Notion refused or failed.
    #[error("{0}")]
    Notion(#[from] NotionError),
    /// The database holds several data sources; the user must pick one.
    #[error(
        "database {database_id} has {} data sources: {}; set data_source_id = \"<id>\" for target {target} instead of database_id",
        choices.len(),
        choices.iter().map(|(name, id)| format!("\"{name}\" ({id})")).collect::<Vec<_>>().join(", ")
    )]
    Ambiguous {
        /// The target.
        target: String,
        /// The configured database.
        database_id: String,
        /// Its data sources: (name, id).
        choices: Vec<(String, String)>,
    },
    /// What Notion answered does not fit (no data source, no properties...).
    #[error("{0}")]
    Unusable(String),
}

impl ResolveError {
    /// Whether the token was refused.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Self::Notion(e) if e.is_unauthorized())
    }
}

/// The plain text of a rich-text array: a title, which whoever shared the database chose, so
/// made safe to show as it is read ([`crate::text::label`]).
pub(crate) fn plain_text(items: Option<&Value>) -> String {
    let text: String = items
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|i| {
                    i.get("plain_text")
                        .or_else(|| i.get("text").and_then(|t| t.get("content")))
                        .and_then(Value::as_str)
                })
                .collect()
        })
        .unwrap_or_default();
    crate::text::label(&text)
}

/// Parses a `properties` map of a database or data source.
pub(crate) fn parse_properties(object: &Value) -> Result<Vec<Property>, String> {
    let map = object
        .get("properties")
        .and_then(Value::as_object)
        .ok_or("the answer has no properties")?;
    let mut out = Vec::with_capacity(map.len());
    for (name, p) in map {
        let kind = PropertyKind::parse(p.get("type").and_then(Value::as_str).unwrap_or(""));
        let options = match kind {
            PropertyKind::Select | PropertyKind::MultiSelect => p
                .get(kind.as_str())
                .and_then(|c| c.get("options"))
                .and_then(Value::as_array)
                .map(|o| {
                    o.iter()
                        .filter_map(|o| o.get("name").and_then(Value::as_str).map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        out.push(Property {
            name: name.clone(),
            id: p
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or(name)
                .to_owned(),
            kind,
            options,
        });
    }
    Ok(out)
}

impl NotionClient {
    /// `GET /v1/databases/{id}` (a 429 or 529 is waited out and retried).
    pub async fn retrieve_database(
        &self,
        token: &TokenHandle,
        id: &str,
    ) -> Result<Value, NotionError> {
        self.request_retrying(
            token,
            reqwest::Method::GET,
            &format!("/v1/databases/{id}"),
            None,
        )
        .await
    }

    /// `GET /v1/data_sources/{id}` (a 429 or 529 is waited out and retried).
    pub async fn retrieve_data_source(
        &self,
        token: &TokenHandle,
        id: &str,
    ) -> Result<Value, NotionError> {
        self.request_retrying(
            token,
            reqwest::Method::GET,
            &format!("/v1/data_sources/{id}"),
            None,
        )
        .await
    }

    /// Where `target`'s rows go as far as known without a request: the configured database or
    /// data source, else the one chosen after consent and saved with the token; `None` when it
    /// must be discovered.
    pub fn destination(target: &Target, token: &TokenHandle) -> Option<Destination> {
        match &target.destination {
            Destination::Discover => token.file().and_then(|f| f.destination)?.destination(),
            d => Some(d.clone()),
        }
    }

    /// Resolves a known destination of `target` to where rows go and its schema (a target
    /// without one is resolved by discovery: `discover`'s `NotionClient::resolve`).
    pub async fn resolve_destination(
        &self,
        target: &Target,
        token: &TokenHandle,
        destination: &Destination,
    ) -> Result<Resolved, ResolveError> {
        let version = self.version();
        let unusable =
            |what: String| ResolveError::Unusable(format!("target {}: {what}", target.name));
        match destination {
            Destination::DataSource(id) => {
                if !version.has_data_sources() {
                    return Err(unusable(format!(
                        "data_source_id needs Notion-Version 2025-09-03 or later, but version = \"{version}\" is configured; set version = \"2025-09-03\" in [notion]"
                    )));
                }
                let ds = self.retrieve_data_source(token, id).await?;
                let database_id = ds
                    .get("parent")
                    .and_then(|p| p.get("database_id"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                Ok(Resolved {
                    version,
                    database_id,
                    data_source_id: Some(id.clone()),
                    title: plain_text(ds.get("title")),
                    properties: parse_properties(&ds).map_err(unusable)?,
                })
            }
            Destination::Database(id) => {
                let db = self.retrieve_database(token, id).await?;
                let title = plain_text(db.get("title"));
                if !version.has_data_sources() {
                    return Ok(Resolved {
                        version,
                        database_id: Some(id.clone()),
                        data_source_id: None,
                        title,
                        properties: parse_properties(&db).map_err(unusable)?,
                    });
                }
                let sources: Vec<(String, String)> = db
                    .get("data_sources")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| {
                                Some((
                                    s.get("name")
                                        .and_then(Value::as_str)
                                        .unwrap_or("")
                                        .to_owned(),
                                    s.get("id")?.as_str()?.to_owned(),
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                match sources.as_slice() {
                    [] => Err(unusable(format!("database {id} has no data source"))),
                    [(_, ds_id)] => {
                        let ds = self.retrieve_data_source(token, ds_id).await?;
                        Ok(Resolved {
                            version,
                            database_id: Some(id.clone()),
                            data_source_id: Some(ds_id.clone()),
                            title,
                            properties: parse_properties(&ds).map_err(unusable)?,
                        })
                    }
                    _ => Err(ResolveError::Ambiguous {
                        target: target.name.clone(),
                        database_id: id.clone(),
                        choices: sources,
                    }),
                }
            }
            Destination::Discover => Err(ResolveError::Unusable(format!(
                "target {}: no database is configured or chosen for it yet",
                target.name
            ))),
        }
    }
}
