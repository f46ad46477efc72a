//! A tenant's lifecycle: connect (first time or again), the database chosen, disconnect. Each
//! runs under the lifecycle lock ([`Lock`], `flock` on `targets/.lock`), which every process
//! takes, so two changes of tenants never interleave: a reconnect that arrives while a
//! disconnect revokes waits for it, then resumes the tenant with its fresh token; a disconnect
//! that arrives after a reconnect revokes the token that reconnect wrote.
//!
//! The files of a connect are written in an order that leaves nothing half-made: the inbox
//! first (it may be refused: something else at its path), then the token file, then the record
//! (the daemon never sees a record without its token), then the index entry. A first connect
//! that fails after its token file was written removes it again.

use std::path::{Path, PathBuf};

use chrono::Utc;
use serde::Serialize;

use super::index::Index;
use super::{Connection, Identity, Record, new_id, record_path, targets_dir};
use crate::config::connected::Template;
use crate::notion::TokenFile;
use crate::notion::oauth::TokenResponse;
use crate::state::layout::{Kind, StateDir};
use crate::state::private::{create_private_dir, private_options, write_private_atomically};

/// The lifecycle lock, held until dropped.
#[derive(Debug)]
pub struct Lock(#[allow(dead_code)] std::fs::File);

/// Takes the lifecycle lock of `state_dir`, waiting for whoever holds it (blocking: call it
/// off the async runtime).
pub fn lock(state_dir: &Path) -> Result<Lock, ConnectError> {
    let dir = targets_dir(state_dir);
    let fix = "check that the state directory exists and this user may write it";
    create_private_dir(&dir).map_err(io("create", &dir, fix))?;
    let path = StateDir(state_dir).lifecycle_lock();
    let file = private_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io("open", &path, fix))?;
    file.lock().map_err(io("lock", &path, fix))?;
    Ok(Lock(file))
}

/// What [`connect`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Connected {
    /// The target's name: the tenant's id.
    pub name: String,
    /// Its inbox.
    pub inbox: PathBuf,
    /// Its record.
    pub record: PathBuf,
    /// Whether the workspace had connected before (the same target, inbox and checkpoint).
    pub reconnected: bool,
}

/// What [`connect`] may not do.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caps {
    /// The most tenants in all (records, disconnected ones included); None: no limit.
    pub max_targets: Option<usize>,
    /// Whether a tenant may be created (false: only a reconnect is allowed, as when the client
    /// address reached its limit of new connections).
    pub refuse_new: bool,
}

/// Why a lifecycle change failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A file could not be read or written, named with the fix.
    #[error("cannot {action} {}: {source}; {fix}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What to do about it.
        fix: &'static str,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// Notion's answer cannot identify a tenant.
    #[error("{0}")]
    Identity(String),
    /// Connecting would make a new tenant past `[connect] max_targets`.
    #[error(
        "{count} workspaces are connected, the most [connect] max_targets allows; nothing was created (raise the limit, or remove the records of disconnected workspaces)"
    )]
    Full {
        /// Tenants there are.
        count: usize,
    },
    /// A new tenant was refused (the client's limit of new connections).
    #[error("no new workspace may connect from there now; nothing was created")]
    NewRefused,
    /// The target is not a connected workspace, or is disconnected already.
    #[error("{0}")]
    NotConnected(String),
}

fn io(
    action: &'static str,
    path: &Path,
    fix: &'static str,
) -> impl FnOnce(std::io::Error) -> ConnectError {
    let path = path.to_owned();
    move |source| ConnectError::Io {
        action,
        path,
        fix,
        source,
    }
}

const FIX_STATE: &str = "check that the state directory exists and this user may write it";

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
    properties: &'a std::collections::BTreeMap<String, String>,
}

/// Connects the workspace of a token response (blocking: it takes the lifecycle lock). A
/// workspace whose identity has a tenant resumes it: its record's `[target]` (edits included)
/// is kept, with a new token, label and `reconnected_at`. Otherwise, within `caps`, a tenant is
/// created with a new id: an empty inbox `<inbox_dir>/<id>.jsonl` (mode 660, so that producers
/// of the group may append), its token file and its record.
pub fn connect(
    state_dir: &Path,
    inbox_dir: &Path,
    response: &TokenResponse,
    template: &Template,
    caps: Caps,
) -> Result<Connected, ConnectError> {
    let identity =
        Identity::new(&response.workspace_id, &response.bot_id).map_err(ConnectError::Identity)?;
    let _lock = lock(state_dir)?;
    let index = Index::open(state_dir).map_err(io(
        "index",
        &StateDir(state_dir).identities(),
        FIX_STATE,
    ))?;
    let connected = match index.find(&identity) {
        Some(previous) => reconnect(state_dir, response, previous)?,
        None => {
            if caps.refuse_new {
                return Err(ConnectError::NewRefused);
            }
            if let Some(max) = caps.max_targets {
                let count = count(state_dir);
                if count >= max {
                    return Err(ConnectError::Full { count });
                }
            }
            let connected = create(state_dir, inbox_dir, response, template)?;
            if let Err(e) = index.insert(&identity, &connected.name) {
                // The record exists but cannot be found by identity: undo it, so that the next
                // connect does not make a second tenant.
                let _ = std::fs::remove_file(&connected.record);
                let _ = std::fs::remove_file(StateDir(state_dir).token_file(&connected.name));
                return Err(io("index", &StateDir(state_dir).identities(), FIX_STATE)(e));
            }
            connected
        }
    };
    let event = crate::state::events::Event {
        event: if connected.reconnected {
            "reconnected"
        } else {
            "connected"
        },
        target: &connected.name,
        workspace_id: Some(&response.workspace_id),
        workspace_name: response.workspace_name.as_deref(),
        inbox: Some(&connected.inbox),
        detail: None,
    };
    crate::state::events::note(state_dir, &event);
    Ok(connected)
}

/// How many tenants there are (records, disconnected ones included).
pub fn count(state_dir: &Path) -> usize {
    crate::config::connected::record_files(&targets_dir(state_dir)).map_or(0, |f| f.len())
}

fn connection_of(response: &TokenResponse, previous: Option<&Connection>) -> Connection {
    let now = Utc::now();
    Connection {
        workspace_id: response.workspace_id.clone(),
        workspace_name: response.workspace_name.clone(),
        bot_id: response.bot_id.clone(),
        owner: response.owner_name(),
        connected_at: previous.map_or(now, |p| p.connected_at),
        reconnected_at: previous.map(|_| now),
        disconnected_at: None,
        database: None,
    }
}

/// A new tenant: its inbox, token file and record.
fn create(
    state_dir: &Path,
    inbox_dir: &Path,
    response: &TokenResponse,
    template: &Template,
) -> Result<Connected, ConnectError> {
    let layout = StateDir(state_dir);
    let name = loop {
        let id = new_id();
        if !record_path(state_dir, &id).exists() && !layout.token_file(&id).exists() {
            break id;
        }
    };
    let record = record_path(state_dir, &name);
    let inbox = inbox_dir.join(format!("{name}.jsonl"));
    create_inbox(inbox_dir, &inbox)?;
    let token_file = layout.token_file(&name);
    TokenFile::from_response(response, None)
        .write(&token_file)
        .map_err(io("write the token file", &token_file, FIX_STATE))?;
    let connection = connection_of(response, None);
    let text = toml::to_string(&RecordOut {
        target: TargetOut {
            name: &name,
            inbox: inbox.display().to_string(),
            database_title: template.database_title.as_deref(),
            dedupe_property: template.dedupe_property.as_deref(),
            properties: &template.properties,
        },
        connection: &connection,
    })
    .map_err(|e| io("write", &record, FIX_STATE)(std::io::Error::other(e)));
    let written = text.and_then(|text| write_record(&record, &text));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&token_file);
        return Err(e);
    }
    Ok(Connected {
        name,
        inbox,
        record,
        reconnected: false,
    })
}

/// A tenant connecting again: a new token, its label and times in its record.
fn reconnect(
    state_dir: &Path,
    response: &TokenResponse,
    previous: Record,
) -> Result<Connected, ConnectError> {
    let inbox = PathBuf::from(&previous.inbox);
    if let Some(dir) = inbox.parent() {
        create_inbox(dir, &inbox)?;
    }
    let token_file = StateDir(state_dir).token_file(&previous.name);
    TokenFile::from_response(response, None)
        .write(&token_file)
        .map_err(io("write the token file", &token_file, FIX_STATE))?;
    let connection = connection_of(response, Some(&previous.connection));
    let mut table = read_table(&previous.path)?;
    let connection = toml::Table::try_from(&connection)
        .map_err(|e| io("write", &previous.path, FIX_STATE)(std::io::Error::other(e)))?;
    table.insert("connection".into(), toml::Value::Table(connection));
    let text = toml::to_string(&table)
        .map_err(|e| io("write", &previous.path, FIX_STATE)(std::io::Error::other(e)))?;
    write_record(&previous.path, &text)?;
    Ok(Connected {
        name: previous.name,
        inbox,
        record: previous.path,
        reconnected: true,
    })
}

fn create_inbox(inbox_dir: &Path, inbox: &Path) -> Result<(), ConnectError> {
    std::fs::create_dir_all(inbox_dir).map_err(io(
        "create the inbox directory",
        inbox_dir,
        "create it, writable by this user (and by the producers' group)",
    ))?;
    crate::inbox::open_inbox_for_append(inbox).map_err(|e| ConnectError::Io {
        action: "create the inbox",
        path: inbox.to_owned(),
        fix: "remove what is at that path: it must be a regular file or nothing",
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(())
}

fn read_table(path: &Path) -> Result<toml::Table, ConnectError> {
    std::fs::read_to_string(path)
        .map_err(io("read", path, FIX_STATE))?
        .parse()
        .map_err(|e| {
            io(
                "read",
                path,
                "the record is not valid TOML: remove it to stop the target",
            )(std::io::Error::other(e))
        })
}

fn write_record(path: &Path, text: &str) -> Result<(), ConnectError> {
    let text = format!(
        "# A connected workspace's target, written by notion-inbox. Remove the file to stop it.\n{text}"
    );
    write_private_atomically(path, ".tmp-", text.as_bytes(), Kind::Connected.durability())
        .map_err(io("write", path, FIX_STATE))?;
    Ok(())
}

/// Notes in the record of target `name` the database chosen for its workspace, so that the
/// daemon restarts the target with it (blocking: it takes the lifecycle lock). A record
/// disconnected meanwhile stays disconnected.
pub fn record_choice(
    state_dir: &Path,
    name: &str,
    chosen: &crate::notion::token::Chosen,
) -> Result<(), ConnectError> {
    let _lock = lock(state_dir)?;
    let path = record_path(state_dir, name);
    let mut table = read_table(&path)?;
    let value = toml::Value::try_from(chosen)
        .map_err(|e| io("write", &path, FIX_STATE)(std::io::Error::other(e)))?;
    if let Some(toml::Value::Table(connection)) = table.get_mut("connection") {
        connection.insert("database".into(), value);
    }
    let text = toml::to_string(&table)
        .map_err(|e| io("write", &path, FIX_STATE)(std::io::Error::other(e)))?;
    write_record(&path, &text)
}

/// What [`disconnect`] did.
#[derive(Debug)]
pub struct Disconnected {
    /// Whether Notion revoked the token; if not, why (the target is disconnected all the same).
    pub revoked: Result<(), String>,
    /// The record, as it was before.
    pub record: Record,
}

/// Disconnects target `name`: under the lifecycle lock, `revoke` is given its token file and
/// revokes that token, then the record is marked disconnected (the daemon stops the target at
/// its next look; connecting again resumes it). Both see the same connection: a reconnect
/// meanwhile waits for the lock.
pub async fn disconnect<F, Fut>(
    state_dir: &Path,
    name: &str,
    revoke: F,
) -> Result<Disconnected, ConnectError>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let dir = state_dir.to_owned();
    let lock = tokio::task::spawn_blocking(move || lock(&dir))
        .await
        .map_err(|e| io("lock", state_dir, FIX_STATE)(std::io::Error::other(e)))??;
    let Some(record) = super::record(state_dir, name) else {
        return Err(ConnectError::NotConnected(format!(
            "target {name} is not a connected workspace"
        )));
    };
    if record.connection.disconnected_at.is_some() {
        return Err(ConnectError::NotConnected(format!(
            "target {name} is disconnected already; a workspace connecting again resumes it"
        )));
    }
    let revoked = revoke(StateDir(state_dir).token_file(name)).await;
    let mut table = read_table(&record.path)?;
    let Some(toml::Value::Table(connection)) = table.get_mut("connection") else {
        return Err(ConnectError::NotConnected(format!(
            "{} has no [connection]: remove it to stop the target",
            record.path.display()
        )));
    };
    connection.insert(
        "disconnected_at".into(),
        toml::Value::String(Utc::now().to_rfc3339()),
    );
    let text = toml::to_string(&table)
        .map_err(|e| io("write", &record.path, FIX_STATE)(std::io::Error::other(e)))?;
    write_record(&record.path, &text)?;
    drop(lock);
    Ok(Disconnected { revoked, record })
}
