//! Connected workspaces: targets that come and go without editing the configuration file.
//!
//! When a workspace connects (the connect flow, through [`connect`]), its target is written as a
//! record `<state_dir>/targets/<name>.toml` (mode 600, atomically): a `[target]` table with the
//! keys of a `[[target]]`, validated by the same code, and a `[connection]` table saying who
//! connected. Its token file and an empty inbox are written beside it. [`Config::load`] reads
//! every record (one directory listing) after the configuration file; the daemon notices the
//! directory change and starts, restarts or stops just those targets. The name comes from the
//! workspace and its bot, so the same workspace connecting again gets the same target, inbox and
//! checkpoint.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{Config, ConfigError, Cx, RawTarget, Target};
use crate::notion::TokenFile;
use crate::notion::oauth::TokenResponse;
use crate::state::layout::Kind;
use crate::state::private::{create_private_dir, write_private_atomically};

/// Who connected a workspace, kept in its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// The workspace.
    pub workspace_id: String,
    /// Its name, if Notion gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_name: Option<String>,
    /// The integration's bot in that workspace.
    pub bot_id: String,
    /// Who consented, if Notion said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// When it first connected.
    pub connected_at: DateTime<Utc>,
    /// When it connected again last, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnected_at: Option<DateTime<Utc>>,
    /// When `notion-inbox disconnect` ended it: the target does not run, its inbox and dead
    /// letters stay, and connecting again resumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnected_at: Option<DateTime<Utc>>,
    /// The database chosen for it after consent (also saved with its token). Written here too
    /// so that the daemon, which restarts a target whose record changed, takes up a new choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<crate::notion::discover::Chosen>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    target: Spanned<RawTarget>,
    connection: Connection,
}

/// A record as `targets` lists it, read without validating its target.
#[derive(Debug, Clone)]
pub struct Record {
    /// The file.
    pub path: PathBuf,
    /// The target's name.
    pub name: String,
    /// Its inbox, as written.
    pub inbox: String,
    /// Who connected.
    pub connection: Connection,
}

/// Every readable record, by file name (those that cannot be read are in `Config::skipped`).
pub fn records(state_dir: &Path) -> Vec<Record> {
    record_files(&targets_dir(state_dir))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|path| {
            let table: toml::Table = std::fs::read_to_string(&path).ok()?.parse().ok()?;
            let target = table.get("target")?;
            Some(Record {
                name: target.get("name")?.as_str()?.to_owned(),
                inbox: target.get("inbox")?.as_str()?.to_owned(),
                connection: table.get("connection")?.clone().try_into().ok()?,
                path,
            })
        })
        .collect()
}

/// The `*.toml` files of the records' directory, sorted (none when it does not exist).
fn record_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "toml")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The directory of the records.
pub fn targets_dir(state_dir: &Path) -> PathBuf {
    crate::state::layout::StateDir(state_dir).targets()
}

/// Adds the records of `<state_dir>/targets/` to `config.targets`; a record that cannot be used
/// (unreadable, invalid, a name or inbox already taken) goes to `config.skipped` instead.
pub fn load_into(config: &mut Config) {
    let dir = targets_dir(&config.daemon.state_dir);
    let files = match record_files(&dir) {
        Ok(files) => files,
        Err(source) => {
            config
                .skipped
                .push(ConfigError::Read { path: dir, source }.to_string());
            return;
        }
    };
    let mut names: HashSet<String> = config.targets.iter().map(|t| t.name.clone()).collect();
    let mut inboxes: HashSet<PathBuf> = config.targets.iter().map(|t| t.inbox.clone()).collect();
    for path in files {
        match load_one(config, &path) {
            // Disconnected: listed by `targets`, not run.
            Ok(None) => {}
            Ok(Some(t)) if names.contains(&t.name) || inboxes.contains(&t.inbox) => {
                let e = ConfigError::Invalid {
                    location: super::Location {
                        path: path.clone(),
                        line: 0,
                        column: 0,
                    },
                    problem: format!(
                        "target {:?} (inbox {}) is also in {}",
                        t.name,
                        t.inbox.display(),
                        config.path.display()
                    ),
                    fix:
                        "remove one of the two; a connected workspace keeps its own name and inbox"
                            .into(),
                };
                config.skipped.push(e.to_string());
            }
            Ok(Some(t)) => {
                names.insert(t.name.clone());
                inboxes.insert(t.inbox.clone());
                config.targets.push(t);
            }
            Err(e) => config.skipped.push(e.to_string()),
        }
    }
}

fn load_one(config: &Config, path: &Path) -> Result<Option<Target>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let cx = Cx { path, text: &text };
    let raw: RawRecord = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
        location: cx.at(e.span().unwrap_or(0..0)),
        message: e.message().trim_end().to_owned(),
    })?;
    if raw.connection.disconnected_at.is_some() {
        return Ok(None);
    }
    let span = raw.target.span();
    let base = path.parent().unwrap_or(Path::new("."));
    let target = cx.target(
        raw.target.into_inner(),
        span.clone(),
        base,
        &config.notion,
        &config.daemon,
    )?;
    if path.file_stem().is_none_or(|s| s != target.name.as_str()) {
        return Err(cx.invalid(
            span,
            format!("the record names target {:?}", target.name),
            format!(
                "call the file {}.toml, or put the name it has in it",
                target.name
            ),
        ));
    }
    let chosen = raw
        .connection
        .database
        .map(|c| format!("{:?}/{:?}", c.database_id, c.data_source_id));
    Ok(Some(Target {
        record: Some(path.to_owned()),
        chosen,
        ..target
    }))
}

/// Notes in the record at `path` the database chosen for its workspace, so that the daemon
/// restarts the target with it.
pub fn record_choice(
    path: &Path,
    chosen: &crate::notion::discover::Chosen,
) -> Result<(), ConnectError> {
    let fix = "check that this user may write the state directory";
    let mut table: toml::Table = std::fs::read_to_string(path)
        .map_err(io("read", path, fix))?
        .parse()
        .map_err(|e| io("read", path, fix)(std::io::Error::other(e)))?;
    let value = toml::Value::try_from(chosen)
        .map_err(|e| io("write", path, fix)(std::io::Error::other(e)))?;
    if let Some(toml::Value::Table(connection)) = table.get_mut("connection") {
        connection.insert("database".into(), value);
    }
    let text =
        toml::to_string(&table).map_err(|e| io("write", path, fix)(std::io::Error::other(e)))?;
    write_private_atomically(path, ".tmp-", text.as_bytes(), Kind::Connected.durability())
        .map_err(io("write", path, fix))?;
    Ok(())
}

/// Marks the record at `path` disconnected (now): the daemon stops its target at its next look,
/// and `connect` for the same workspace resumes it.
pub fn mark_disconnected(path: &Path) -> Result<(), ConnectError> {
    let fix = "check that this user may write the state directory";
    let mut table: toml::Table = std::fs::read_to_string(path)
        .map_err(io("read", path, fix))?
        .parse()
        .map_err(|e| {
            io(
                "read",
                path,
                "the record is not valid TOML: remove it to stop the target",
            )(std::io::Error::other(e))
        })?;
    let Some(toml::Value::Table(connection)) = table.get_mut("connection") else {
        return Err(io(
            "read",
            path,
            "the record has no [connection]: remove it to stop the target",
        )(std::io::Error::other(
            "not a connected workspace's record",
        )));
    };
    connection.insert(
        "disconnected_at".into(),
        toml::Value::String(Utc::now().to_rfc3339()),
    );
    let text =
        toml::to_string(&table).map_err(|e| io("write", path, fix)(std::io::Error::other(e)))?;
    write_private_atomically(path, ".tmp-", text.as_bytes(), Kind::Connected.durability())
        .map_err(io("write", path, fix))?;
    Ok(())
}

fn io(
    action: &'static str,
    path: &Path,
    fix: &'static str,
) -> impl FnOnce(std::io::Error) -> ConnectError {
    let path = path.to_owned();
    move |source| ConnectError {
        action,
        path,
        fix,
        source,
    }
}

/// The target name of a workspace connection: the workspace's name as a slug, and 8 hex digits
/// of its id and bot id, so that two workspaces of one name differ and a reconnect matches.
pub fn target_name(workspace_name: Option<&str>, workspace_id: &str, bot_id: &str) -> String {
    let mut slug = String::new();
    for c in workspace_name.unwrap_or("").chars() {
        match c {
            c if c.is_ascii_alphanumeric() => slug.push(c.to_ascii_lowercase()),
            _ if !slug.is_empty() && !slug.ends_with('-') => slug.push('-'),
            _ => {}
        }
    }
    let slug: String = slug.trim_end_matches('-').chars().take(40).collect();
    let slug = slug.trim_end_matches('-');
    let slug = if slug.is_empty() { "workspace" } else { slug };
    let hash = crate::inbox::identity::fnv1a64(format!("{workspace_id}/{bot_id}").as_bytes());
    format!("{slug}-{:08x}", hash as u32)
}

/// `[connect]`: what a workspace that connects gets.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnect {
    listen: Option<Spanned<String>>,
    public_url: Option<Spanned<String>>,
    inbox_dir: Spanned<String>,
    database_title: Option<Spanned<String>>,
    dedupe_property: Option<Spanned<String>>,
    properties: Spanned<BTreeMap<String, Spanned<String>>>,
}

/// `[connect]`, validated.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// The connect page: where `notion-inbox run` serves it, and its public address behind the
    /// operator's reverse proxy (the redirect URI is `<public_url>/callback`).
    pub page: Option<ConnectPage>,
    /// Where connected workspaces' inboxes are created (`<inbox_dir>/<name>.jsonl`).
    pub inbox_dir: PathBuf,
    /// What their targets get.
    pub template: Template,
}

impl Cx<'_> {
    pub(super) fn connect(&self, raw: Spanned<RawConnect>) -> Result<ConnectConfig, ConfigError> {
        let span = raw.span();
        let raw = raw.into_inner();
        let properties: BTreeMap<String, String> = raw
            .properties
            .into_inner()
            .into_iter()
            .map(|(field, prop)| (field, prop.into_inner()))
            .collect();
        if properties.is_empty() || properties.contains_key("id") {
            return Err(self.invalid(
                span,
                "[connect.properties] must map record fields (not \"id\", the record's key) to properties",
                "add lines such as handle = \"title\" and tweet = \"tweet\" under [connect.properties]",
            ));
        }
        let dedupe_property = raw.dedupe_property.map(Spanned::into_inner);
        if let Some(dp) = &dedupe_property
            && properties.values().any(|p| p == dp)
        {
            return Err(self.invalid(
                span,
                format!("property {dp:?} is both mapped from a field and the dedupe_property"),
                "give the dedupe property a column of its own",
            ));
        }
        let page = match (raw.listen, raw.public_url) {
            (None, None) => None,
            (Some(listen), Some(public_url)) => Some(ConnectPage {
                listen: listen.get_ref().parse().map_err(|e| {
                    self.invalid(
                        listen.span(),
                        format!("[connect] listen {:?} is not an address: {e}", listen.get_ref()),
                        "write an address and port such as \"127.0.0.1:8766\" (the reverse proxy forwards to it)",
                    )
                })?,
                public_url: self.url(&public_url, "[connect] public_url", false)?,
            }),
            _ => {
                return Err(self.invalid(
                    span,
                    "[connect] sets only one of listen and public_url",
                    "set both: where notion-inbox listens, and the https address people open",
                ));
            }
        };
        Ok(ConnectConfig {
            page,
            inbox_dir: self.path_of(raw.inbox_dir.get_ref()),
            template: Template {
                properties,
                database_title: raw.database_title.map(Spanned::into_inner),
                dedupe_property,
            },
        })
    }
}

/// Where the connect page is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectPage {
    /// The local address `notion-inbox run` listens on.
    pub listen: std::net::SocketAddr,
    /// The address people use, without a trailing slash.
    pub public_url: url::Url,
}

impl ConnectPage {
    /// `<public_url>/callback`, the redirect URI to register with the integration.
    pub fn redirect_uri(&self) -> url::Url {
        let mut u = self.public_url.clone();
        let path = format!("{}/callback", u.path().trim_end_matches('/'));
        u.set_path(&path);
        u
    }
}

/// What a connected target gets, besides its name and inbox.
#[derive(Debug, Clone, Default)]
pub struct Template {
    /// Record field to Notion property, as in `[target.properties]`.
    pub properties: BTreeMap<String, String>,
    /// `database_title`, to break a tie in discovery.
    pub database_title: Option<String>,
    /// `dedupe_property`.
    pub dedupe_property: Option<String>,
}

/// What [`connect`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Connected {
    /// The target's name.
    pub name: String,
    /// Its inbox.
    pub inbox: PathBuf,
    /// Its record.
    pub record: PathBuf,
    /// Whether the workspace had connected before (the same target, inbox and checkpoint).
    pub reconnected: bool,
}

/// Why [`connect`] failed: a file it could not write, named with the fix.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}; {fix}", path.display())]
pub struct ConnectError {
    action: &'static str,
    path: PathBuf,
    fix: &'static str,
    #[source]
    source: std::io::Error,
}

#[derive(Serialize)]
struct RecordOut<'a> {
    target: TargetOut<'a>,
    connection: &'a Connection,
}

#[derive(Serialize)]
struct TargetOut<'a> {
    name: &'a str,
    inbox: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    database_title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dedupe_property: Option<&'a str>,
    properties: &'a BTreeMap<String, String>,
}

/// Connects the workspace of a token response: writes its token file
/// (`<state_dir>/tokens/<name>.toml`), creates its inbox `<inbox_dir>/<name>.jsonl` (empty, mode
/// 660, so that producers of the group may append) and writes its record last, so that the
/// daemon never sees a record without its token. A workspace that connected before keeps its
/// record's `[target]` (edits included) and gets a new token and `reconnected_at`.
pub fn connect(
    state_dir: &Path,
    inbox_dir: &Path,
    response: &TokenResponse,
    template: &Template,
) -> Result<Connected, ConnectError> {
    let name = target_name(
        response.workspace_name.as_deref(),
        &response.workspace_id,
        &response.bot_id,
    );
    let dir = targets_dir(state_dir);
    let record = dir.join(format!("{name}.toml"));
    let inbox = inbox_dir.join(format!("{name}.jsonl"));
    let token_file = crate::state::layout::StateDir(state_dir).token_file(&name);
    let fix_state = "check that the state directory exists and this user may write it";
    TokenFile::from_response(response, None)
        .write(&token_file)
        .map_err(io("write the token file", &token_file, fix_state))?;
    std::fs::create_dir_all(inbox_dir).map_err(io(
        "create the inbox directory",
        inbox_dir,
        "create it, writable by this user (and by the producers' group)",
    ))?;
    crate::inbox::open_inbox_for_append(&inbox).map_err(|e| ConnectError {
        action: "create the inbox",
        path: inbox.clone(),
        fix: "remove what is at that path: it must be a regular file or nothing",
        source: std::io::Error::other(e.to_string()),
    })?;
    create_private_dir(&dir).map_err(io("create", &dir, fix_state))?;
    let now = Utc::now();
    let previous = std::fs::read_to_string(&record)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok());
    let connection = Connection {
        workspace_id: response.workspace_id.clone(),
        workspace_name: response.workspace_name.clone(),
        bot_id: response.bot_id.clone(),
        owner: response.owner_name(),
        connected_at: previous
            .as_ref()
            .and_then(|p| {
                p.get("connection")?
                    .get("connected_at")?
                    .as_str()?
                    .parse()
                    .ok()
            })
            .unwrap_or(now),
        reconnected_at: previous.as_ref().map(|_| now),
        disconnected_at: None,
        database: None,
    };
    let text = match &previous {
        // Reconnected: its [target], as it is (an operator may have edited it), new [connection].
        Some(p) if p.contains_key("target") => {
            let mut p = p.clone();
            let connection = toml::Table::try_from(&connection)
                .map_err(|e| io("write", &record, fix_state)(std::io::Error::other(e)))?;
            p.insert("connection".into(), toml::Value::Table(connection));
            toml::to_string(&p)
        }
        _ => toml::to_string(&RecordOut {
            target: TargetOut {
                name: &name,
                inbox: inbox.display().to_string(),
                database_title: template.database_title.as_deref(),
                dedupe_property: template.dedupe_property.as_deref(),
                properties: &template.properties,
            },
            connection: &connection,
        }),
    }
    .map_err(|e| io("write", &record, fix_state)(std::io::Error::other(e)))?;
    let text = format!(
        "# A connected workspace's target, written by notion-inbox. Remove the file to stop it.\n{text}"
    );
    write_private_atomically(
        &record,
        ".tmp-",
        text.as_bytes(),
        Kind::Connected.durability(),
    )
    .map_err(io("write", &record, fix_state))?;
    let event = crate::state::events::Event {
        event: if previous.is_some() {
            "reconnected"
        } else {
            "connected"
        },
        target: &name,
        workspace_id: Some(&response.workspace_id),
        workspace_name: response.workspace_name.as_deref(),
        inbox: Some(&inbox),
        detail: None,
    };
    crate::state::events::note(state_dir, &event);
    Ok(Connected {
        name,
        inbox,
        record,
        reconnected: previous.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_slugs_with_a_hash_of_the_workspace_and_bot() {
        let a = target_name(Some("Acme Corp · Paris"), "w1", "b1");
        assert!(a.starts_with("acme-corp-paris-"), "{a}");
        assert_eq!(a, target_name(Some("Acme Corp · Paris"), "w1", "b1"));
        assert_ne!(a, target_name(Some("Acme Corp · Paris"), "w2", "b1"));
        assert!(target_name(None, "w", "b").starts_with("workspace-"));
        assert!(target_name(Some("東京"), "w", "b").starts_with("workspace-"));
        let long = target_name(Some(&"x".repeat(100)), "w", "b");
        assert!(long.len() <= 64, "{long}");
    }
}
