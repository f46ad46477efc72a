//! Access tokens: a fixed one from the config, or a token file written by `authorize` and rewritten
//! on refresh. Secrets live in `SecretString`s, so no `Debug` or log line can show them.
//!
//! Generations: a handle numbers the access tokens it holds. A request takes the token and its
//! generation in one snapshot ([`TokenHandle::sending`]); after a 401 the caller passes that
//! generation to [`TokenHandle::refresh_from`], which rotates the pair only if no one (this process
//! or another) has done so since, so a late 401 never spends the new refresh token.
//!
//! Own writes: the handle keeps the stamp (inode, mtime, size) of the file as it last read or
//! wrote it, the stamp of its own write taken from the file it wrote, so [`TokenHandle::reload`]
//! never reports the handle's own refresh; it tells a refresh by someone else
//! ([`TokenChange::Refreshed`]: same `obtained_at`) from a new authorization
//! ([`TokenChange::Reauthorized`]: `authorize` exchanged a new code).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Target, TokenSource};
use crate::hash::fnv1a64;
use crate::notion::error::NotionError;
use crate::notion::oauth::{RefreshError, TokenResponse};
use crate::state::private::{
    PrivateFileError, private_options, read_private_file, write_private_atomically,
};

/// The token file of a target, as `authorize` writes it (TOML, mode 600).
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenFile {
    /// The access token.
    #[serde(serialize_with = "expose")]
    pub access_token: SecretString,
    /// The refresh token, if Notion issued one.
    #[serde(default, serialize_with = "expose_opt")]
    pub refresh_token: Option<SecretString>,
    /// Always "bearer".
    #[serde(default)]
    pub token_type: String,
    /// The bot user of this authorization.
    #[serde(default)]
    pub bot_id: String,
    /// The workspace the user authorized.
    #[serde(default)]
    pub workspace_id: String,
    /// Its name, if Notion gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_name: Option<String>,
    /// Who authorized: the user's name or email, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// When the code was exchanged.
    pub obtained_at: DateTime<Utc>,
    /// When the token was last refreshed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshed_at: Option<DateTime<Utc>>,
    /// The rest of Notion's token response (secrets removed), kept as Notion sent it, as JSON.
    #[serde(default)]
    pub response: String,
    /// The database chosen for this authorization, for a target configured without one (see
    /// `notion::discover`). Kept across refreshes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Chosen>,
}

fn expose<S: serde::Serializer>(s: &SecretString, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose_secret())
}

fn expose_opt<S: serde::Serializer>(s: &Option<SecretString>, ser: S) -> Result<S::Ok, S::Error> {
    match s {
        Some(s) => ser.serialize_some(s.expose_secret()),
        None => ser.serialize_none(),
    }
}

impl std::fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenFile")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("workspace_id", &self.workspace_id)
            .field("workspace_name", &self.workspace_name)
            .field("obtained_at", &self.obtained_at)
            .field("refreshed_at", &self.refreshed_at)
            .finish_non_exhaustive()
    }
}

impl TokenFile {
    /// The page the user duplicated from the integration's template at consent, if any.
    pub fn duplicated_template_id(&self) -> Option<String> {
        let rest: serde_json::Value = serde_json::from_str(&self.response).ok()?;
        rest.get("duplicated_template_id")?
            .as_str()
            .map(str::to_owned)
    }

    /// Builds the file content from a token response obtained now.
    pub fn from_response(response: &TokenResponse, previous: Option<&TokenFile>) -> TokenFile {
        let now = Utc::now();
        TokenFile {
            access_token: response.access_token.clone(),
            refresh_token: response.refresh_token.clone(),
            token_type: response.token_type.clone(),
            bot_id: response.bot_id.clone(),
            workspace_id: response.workspace_id.clone(),
            workspace_name: response.workspace_name.clone(),
            owner: response.owner_name(),
            obtained_at: previous.map_or(now, |p| p.obtained_at),
            refreshed_at: previous.map(|_| now),
            response: response.rest.to_string(),
            destination: previous.and_then(|p| p.destination.clone()),
        }
    }

    /// Reads and parses a token file, refusing one that others may read: a file that cannot be
    /// used as it is on this machine is [`NotionError::Local`].
    pub fn read(path: &Path) -> Result<TokenFile, NotionError> {
        let text = read_private_file(path, "token file")?;
        toml::from_str(&text).map_err(|e| {
            NotionError::Token(format!(
                "the token file {} is not valid ({}); run `notion-inbox authorize` again to rewrite it",
                path.display(),
                e.message()
            ))
        })
    }

    /// Writes the file atomically (temp file, fsync, rename, directory fsync), mode 600, creating
    /// directories as needed.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        self.write_stamped(path).map(|_| ())
    }

    /// Like [`TokenFile::write`], returning the stamp of the file written (see [`FileStamp`]).
    pub fn write_stamped(&self, path: &Path) -> std::io::Result<FileStamp> {
        let text = toml::to_string(self).map_err(std::io::Error::other)?;
        // The stamp is the temporary file's own: a write by someone else right after ours has
        // another stamp.
        let written = write_private_atomically(
            path,
            ".tmp-",
            text.as_bytes(),
            crate::state::layout::Kind::Token.durability(),
        )?;
        Ok(FileStamp::of(&written))
    }
}

/// Identifies one version of a file: inode, mtime (ns) and size. Every atomic write makes a new
/// inode, so two writes never share a stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    ino: u64,
    mtime_ns: i128,
    size: u64,
}

impl FileStamp {
    fn of(m: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            ino: m.ino(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            size: m.size(),
        }
    }

    /// The stamp of the file at `path` now.
    pub fn read(path: &Path) -> std::io::Result<FileStamp> {
        std::fs::metadata(path).map(|m| FileStamp::of(&m))
    }
}

/// What [`TokenHandle::reload`] found in the token file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenChange {
    /// Nothing new: the file is as this handle last read or wrote it (its own refreshes included),
    /// or it was rewritten with the same access token.
    Unchanged,
    /// Another handle or process (`check`, `databases`, a second daemon handle) refreshed the
    /// token: a new access token from the same authorization (`obtained_at` unchanged).
    Refreshed,
    /// The user authorized again (`authorize` wrote a new code exchange: `obtained_at` changed).
    Reauthorized,
}

/// Where a handle's token comes from, and its current value.
enum Source {
    Fixed,
    File {
        path: PathBuf,
        /// The file as this handle last read or wrote it.
        seen: Mutex<FileStamp>,
        /// A rotated pair in use that could not be saved yet (a full disk): the old pair on disk
        /// is void, so this one is written again at every look until it is on disk, and the file
        /// is not read meanwhile.
        unsaved: Mutex<Option<Box<TokenFile>>>,
    },
}

struct Inner {
    source: Source,
    current: Mutex<Current>,
    /// Serializes refreshes in this process (a file lock serializes them across processes).
    refresh: tokio::sync::Mutex<()>,
    /// Whether the OAuth client credentials are configured (refresh needs them).
    can_refresh_client: bool,
}

#[derive(Clone)]
struct Current {
    token: SecretString,
    refresh_token: Option<SecretString>,
    workspace_id: Option<String>,
    /// Bumped on every change, so concurrent refreshers can tell someone else refreshed.
    generation: u64,
    file: Option<TokenFile>,
}

/// A target's token, shared by its senders; cheap to clone.
#[derive(Clone)]
pub struct TokenHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHandle([redacted])")
    }
}

impl TokenHandle {
    /// A handle on a fixed token (tests, internal integrations).
    pub fn fixed(token: SecretString) -> TokenHandle {
        TokenHandle {
            inner: Arc::new(Inner {
                source: Source::Fixed,
                current: Mutex::new(Current {
                    token,
                    refresh_token: None,
                    workspace_id: None,
                    generation: 0,
                    file: None,
                }),
                refresh: tokio::sync::Mutex::new(()),
                can_refresh_client: false,
            }),
        }
    }

    /// Loads the target's token from the config or its token file.
    pub fn load(target: &Target, config: &Config) -> Result<TokenHandle, NotionError> {
        let can_refresh_client = config.notion.client_id.is_some()
            && (config.notion.client_secret.is_some()
                || std::env::var_os("CREDENTIALS_DIRECTORY").is_some());
        match &target.token {
            TokenSource::Fixed(token) => Ok(TokenHandle::fixed(token.clone())),
            TokenSource::File(path) => {
                if !path.exists() {
                    return Err(NotionError::Token(format!(
                        "target {}: no token file at {}",
                        target.name,
                        path.display()
                    )));
                }
                let stamp = FileStamp::read(path).map_err(|e| {
                    NotionError::Token(format!("cannot read {}: {e}", path.display()))
                })?;
                let file = TokenFile::read(path)?;
                Ok(TokenHandle {
                    inner: Arc::new(Inner {
                        source: Source::File {
                            path: path.clone(),
                            seen: Mutex::new(stamp),
                            unsaved: Mutex::new(None),
                        },
                        current: Mutex::new(Current::from_file(file, 0)),
                        refresh: tokio::sync::Mutex::new(()),
                        can_refresh_client,
                    }),
                })
            }
        }
    }

    /// The current access token.
    pub fn secret(&self) -> SecretString {
        self.current().token
    }

    /// The generation of the current token: 0 when loaded, bumped each time the handle takes a new
    /// access token (its own refresh, or a change found in the file).
    pub fn generation(&self) -> u64 {
        self.inner.current.lock().expect("not poisoned").generation
    }

    /// The access token to send and its generation, read together (one snapshot): after a 401,
    /// pass the generation to [`TokenHandle::refresh_from`].
    pub fn sending(&self) -> (SecretString, u64) {
        let cur = self.inner.current.lock().expect("not poisoned");
        (cur.token.clone(), cur.generation)
    }

    /// A stable, non-secret key for this token (for rate limiting).
    pub fn key(&self) -> u64 {
        fnv1a64(self.current().token.expose_secret().as_bytes())
    }

    /// The workspace key, when the workspace is known (OAuth tokens).
    pub fn workspace_key(&self) -> Option<u64> {
        self.current()
            .workspace_id
            .filter(|w| !w.is_empty())
            .map(|w| fnv1a64(w.as_bytes()))
    }

    /// The token file's content, for OAuth tokens.
    pub fn file(&self) -> Option<TokenFile> {
        self.current().file
    }

    /// The token file's path, for OAuth tokens.
    pub fn path(&self) -> Option<&Path> {
        match &self.inner.source {
            Source::File { path, .. } => Some(path),
            Source::Fixed => None,
        }
    }

    /// Whether [`TokenHandle::refresh_from`] can work: a refresh token and the OAuth client credentials.
    pub fn can_refresh(&self) -> bool {
        self.inner.can_refresh_client && self.current().refresh_token.is_some()
    }

    fn current(&self) -> Current {
        self.inner.current.lock().expect("not poisoned").clone()
    }

    /// Re-reads the token file if it changed on disk (say, `authorize` rewrote it). True if the
    /// access token is now a different one: never for this handle's own refreshes (see
    /// [`TokenHandle::reload`], which also tells a refresh elsewhere from a new authorization).
    pub fn reload_if_changed(&self) -> Result<bool, NotionError> {
        Ok(self.reload()? != TokenChange::Unchanged)
    }

    /// Re-reads the token file if its stamp differs from the one this handle last read or wrote,
    /// and adopts it. The handle records the stamp of the file its own refresh wrote, so that write
    /// is [`TokenChange::Unchanged`]; a new access token with the same `obtained_at` is
    /// [`TokenChange::Refreshed`] (another process refreshed), with another `obtained_at` it is
    /// [`TokenChange::Reauthorized`].
    pub fn reload(&self) -> Result<TokenChange, NotionError> {
        let Source::File {
            path,
            seen,
            unsaved,
        } = &self.inner.source
        else {
            return Ok(TokenChange::Unchanged);
        };
        if save_unsaved(path, seen, unsaved).is_err() {
            return Ok(TokenChange::Unchanged);
        }
        let stamp = FileStamp::read(path)
            .map_err(|e| NotionError::Token(format!("cannot read {}: {e}", path.display())))?;
        if *seen.lock().expect("not poisoned") == stamp {
            return Ok(TokenChange::Unchanged);
        }
        let file = TokenFile::read(path)?;
        let obtained_before = self.current().file.map(|f| f.obtained_at);
        let obtained_now = file.obtained_at;
        *seen.lock().expect("not poisoned") = stamp;
        Ok(match self.adopt(file) {
            false => TokenChange::Unchanged,
            true if obtained_before == Some(obtained_now) => TokenChange::Refreshed,
            true => TokenChange::Reauthorized,
        })
    }

    /// Takes `file` as the current token; true if the access token changed.
    fn adopt(&self, file: TokenFile) -> bool {
        let mut cur = self.inner.current.lock().expect("not poisoned");
        if cur.token.expose_secret() == file.access_token.expose_secret() {
            cur.file = Some(file);
            return false;
        }
        let generation = cur.generation + 1;
        *cur = Current::from_file(file, generation);
        true
    }

    /// Refreshes the token after a 401 to a request sent with `secret()` of generation `sent_with`
    /// (from [`TokenHandle::sending`] or [`TokenHandle::generation`], read before the request).
    ///
    /// Refreshes only if the token is still that generation: checked on entry, again under the
    /// single-flight lock (callers that waited find it done), and again after re-reading the token
    /// file under an exclusive lock on `<token file>.lock` (another process, `check` or
    /// `authorize`, may have rotated it). Otherwise returns `Ok` at once: the caller retries with
    /// the newer token. So a late 401 never rotates the pair a second time. The rotated pair is
    /// written to disk before it is used.
    pub async fn refresh_from(
        &self,
        client: &super::NotionClient,
        sent_with: u64,
    ) -> Result<(), RefreshError> {
        let Source::File {
            path,
            seen,
            unsaved,
        } = &self.inner.source
        else {
            return Err(RefreshError::refused(
                "a fixed token cannot be refreshed: replace it in the configuration",
                None,
            ));
        };
        if self.generation() != sent_with {
            return Ok(());
        }
        let _guard = self.inner.refresh.lock().await;
        if self.generation() != sent_with {
            return Ok(());
        }
        let lock = lock_token_file(path).await?;
        // A pair this handle could not save is the valid one: save it before anything else.
        save_unsaved(path, seen, unsaved).map_err(|source| RefreshError::Io {
            action: "save the refreshed token to",
            path: path.clone(),
            fix: "the pair in use is held in memory until it is saved: free space or fix the permissions of the directory",
            source,
        })?;
        // Another process may have refreshed (or `authorize` rewritten the file) meanwhile.
        let on_disk = read_for_refresh(path)?;
        if self.adopt(on_disk.clone()) || self.generation() != sent_with {
            return Ok(());
        }
        let Some(refresh_token) = on_disk.refresh_token.clone() else {
            return Err(RefreshError::refused(
                format!(
                    "the token in {} has no refresh token, so it cannot be refreshed: run `notion-inbox authorize` for this target again",
                    path.display()
                ),
                None,
            ));
        };
        let response = client
            .refresh_token(&refresh_token)
            .await
            .map_err(RefreshError::from_token_endpoint)?;
        let file = TokenFile::from_response(&response, Some(&on_disk));
        match file.write_stamped(path) {
            // The stamp of our own write, taken from the file we wrote: `reload` does not report it.
            Ok(stamp) => *seen.lock().expect("not poisoned") = stamp,
            // Notion rotated the pair, so the one on disk is void: use the new one and keep
            // trying to save it (each reconcile tick and each refresh).
            Err(error) => {
                tracing::error!(token_file = %path.display(), %error, "cannot save the refreshed token; the new pair is used from memory and saved again until it is on disk: free space or fix the permissions of the directory");
                *unsaved.lock().expect("not poisoned") = Some(Box::new(file.clone()));
            }
        }
        self.adopt(file);
        drop(lock);
        tracing::info!(token_file = %path.display(), "refreshed the access token and saved the rotated pair");
        Ok(())
    }
}

impl TokenHandle {
    /// Saves the database chosen for this authorization in the token file, under the file's lock
    /// and re-read under it, so that a refresh by another process meanwhile is kept. A fixed token
    /// has no file: nothing is saved.
    pub async fn save_destination(&self, chosen: Chosen) -> Result<(), RefreshError> {
        let Source::File { path, seen, .. } = &self.inner.source else {
            return Ok(());
        };
        let lock = lock_token_file(path).await?;
        let mut file = read_for_refresh(path)?;
        file.destination = Some(chosen);
        let stamp = file
            .write_stamped(path)
            .map_err(|source| RefreshError::Io {
                action: "write",
                path: path.clone(),
                fix: "check the permissions and free space of its directory",
                source,
            })?;
        *seen.lock().expect("not poisoned") = stamp;
        self.adopt(file);
        drop(lock);
        Ok(())
    }
}

/// Writes the pair a refresh could not save, if any; the error if it still cannot.
fn save_unsaved(
    path: &Path,
    seen: &Mutex<FileStamp>,
    unsaved: &Mutex<Option<Box<TokenFile>>>,
) -> std::io::Result<()> {
    let mut pending = unsaved.lock().expect("not poisoned");
    let Some(file) = pending.as_ref() else {
        return Ok(());
    };
    let stamp = file.write_stamped(path)?;
    *seen.lock().expect("not poisoned") = stamp;
    *pending = None;
    tracing::info!(token_file = %path.display(), "saved the refreshed token");
    Ok(())
}

/// Takes the exclusive lock on `<path>.lock` (blocking, on the blocking pool).
async fn lock_token_file(path: &Path) -> Result<std::fs::File, RefreshError> {
    let lock_path = path.with_extension("lock");
    let io = |source| RefreshError::Io {
        action: "lock",
        path: path.to_owned(),
        fix: "check the permissions and free space of its directory (the lock is <token file>.lock)",
        source,
    };
    tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let f = private_options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        f.lock()?;
        Ok(f)
    })
    .await
    .map_err(|e| io(std::io::Error::other(e.to_string())))?
    .map_err(io)
}

/// Reads the token file for a refresh: I/O trouble is [`RefreshError::Io`], content that is not
/// a token file needs `authorize` ([`RefreshError::Refused`]).
fn read_for_refresh(path: &Path) -> Result<TokenFile, RefreshError> {
    let text = read_private_file(path, "token file").map_err(|e| {
        let fix = match &e {
            PrivateFileError::Exposed { .. } => {
                "it must be private to the service user (chmod 600)"
            }
            _ => "check that it exists and that the service user may read it",
        };
        RefreshError::Io {
            action: "read",
            path: path.to_owned(),
            fix,
            source: std::io::Error::other(e),
        }
    })?;
    toml::from_str(&text).map_err(|e| {
        RefreshError::refused(
            format!(
                "the token file {} is not valid ({}); run `notion-inbox authorize` for this target again to rewrite it",
                path.display(),
                e.message()
            ),
            None,
        )
    })
}

impl Current {
    fn from_file(file: TokenFile, generation: u64) -> Current {
        Current {
            token: file.access_token.clone(),
            refresh_token: file.refresh_token.clone(),
            workspace_id: Some(file.workspace_id.clone()),
            generation,
            file: Some(file),
        }
    }
}

/// The destination chosen for an authorization, kept in its token file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chosen {
    /// The database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_id: Option<String>,
    /// Its data source (none under 2022-06-28).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source_id: Option<String>,
    /// The database's title, and the data source's name when it differs, for people.
    #[serde(default)]
    pub title: String,
}

impl Chosen {
    /// Where rows go: the data source, else the database.
    pub fn destination(&self) -> Option<crate::config::Destination> {
        use crate::config::Destination;
        match (&self.data_source_id, &self.database_id) {
            (Some(ds), _) => Some(Destination::DataSource(ds.clone())),
            (None, Some(db)) => Some(Destination::Database(db.clone())),
            (None, None) => None,
        }
    }
}
