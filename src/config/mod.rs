//! The configuration file: parsed from TOML into a validated, ready-to-use [`Config`].
//!
//! Two stages, as ripgrep does with its arguments: the file is deserialized into raw structs that keep
//! the source span of every value ([`toml::Spanned`]), then [`Config::from_toml`] checks everything and
//! resolves defaults, relative paths and ids. Nothing in the daemon sees the raw structs, and every
//! error names the file, the line and column, and the fix.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use toml::Spanned;
use url::Url;

use crate::state::private::{PrivateFileError, check_private_file, read_private_file};

pub mod connected;
mod explain;
mod validate;

use validate::{Cx, RawConfig, RawTarget};

/// The path used when neither `--config` nor `$NOTION_INBOX_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/notion-inbox/config.toml";
/// The state directory used when neither the file nor `$STATE_DIRECTORY` (systemd) names one.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/notion-inbox";
/// The Notion API's public address.
pub const DEFAULT_API_BASE: &str = "https://api.notion.com";
/// The redirect URI used when the file names none; it must be registered with the integration.
pub const DEFAULT_REDIRECT_URI: &str = "http://localhost:8765/callback";
/// Where the OAuth client secret comes from: the systemd credential `client_secret` if
/// `$CREDENTIALS_DIRECTORY` holds one (under the unit: systemd read the root-only file and handed
/// the daemon's user a copy), else what `[notion]` configures; `None` if neither. The one rule for
/// `check`, the audit and the client alike.
pub fn secret_source(configured: Option<&SecretSource>) -> Option<SecretSource> {
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join(CREDENTIAL_CLIENT_SECRET);
        if path.exists() {
            return Some(SecretSource::File(path));
        }
    }
    configured.cloned()
}

/// The name of the client secret inside systemd's `$CREDENTIALS_DIRECTORY` (`LoadCredential=`).
pub const CREDENTIAL_CLIENT_SECRET: &str = "client_secret";

/// An error met while reading or validating a configuration file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error(
        "cannot read config file {path}: {source}; create it (from the example in /usr/share/doc/notion-inbox/example.toml, or config/example.toml in the source; `man 5 notion-inbox.toml` describes every key) or pass --config"
    )]
    Read {
        /// The file that was read.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or has an unknown key, a missing field or a value of the wrong type.
    #[error("{location}: {message}")]
    Syntax {
        /// Where in the file.
        location: Location,
        /// What the TOML parser said, which names the key and what it expected.
        message: String,
    },
    /// The file parses but a value is not acceptable.
    #[error("{location}: {problem}; {fix}")]
    Invalid {
        /// Where in the file.
        location: Location,
        /// What is wrong.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// A command named a target the configuration does not have.
    #[error("{path}: there is no target named {name:?}; {fix}")]
    UnknownTarget {
        /// The configuration file.
        path: PathBuf,
        /// The name given.
        name: String,
        /// The names there are, or how to add one.
        fix: String,
    },
    /// A file that holds a secret (this config file, when it holds one, or the client secret
    /// file) is open to other users, missing, unreadable or empty.
    #[error(transparent)]
    Private(#[from] PrivateFileError),
}

/// A place in a configuration file, shown as `path:line:column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The configuration file.
    pub path: PathBuf,
    /// One-based line, or 0 when the place is the file as a whole.
    pub line: usize,
    /// One-based column.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.path.display())
        } else {
            write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
        }
    }
}

/// The Notion API versions this program speaks (the `Notion-Version` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum NotionVersion {
    /// The last version before data sources: databases hold the schema and the rows.
    V2022_06_28,
    /// Databases contain data sources; the default.
    #[default]
    V2025_09_03,
    /// As 2025-09-03, with `archived` renamed to `in_trash`.
    V2026_03_11,
}

impl NotionVersion {
    /// Every supported version, oldest first.
    pub const ALL: [NotionVersion; 3] = [Self::V2022_06_28, Self::V2025_09_03, Self::V2026_03_11];

    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2022_06_28 => "2022-06-28",
            Self::V2025_09_03 => "2025-09-03",
            Self::V2026_03_11 => "2026-03-11",
        }
    }

    /// Parses a header value.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether databases are containers of data sources in this version.
    pub fn has_data_sources(self) -> bool {
        self >= Self::V2025_09_03
    }
}

impl fmt::Display for NotionVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from; relative paths in it were resolved against its directory.
    pub path: PathBuf,
    /// How to reach Notion and as which integration.
    pub notion: NotionConfig,
    /// The daemon's own settings.
    pub daemon: DaemonConfig,
    /// The inboxes and where their records go: the configuration's in file order, then the
    /// connected workspaces' (see [`connected`]) by name.
    pub targets: Vec<Target>,
    /// `[connect]`: what a workspace that connects gets (its inbox's directory, the mapping).
    pub connect: Option<connected::ConnectConfig>,
    /// Records of connected workspaces that could not be used, each naming its file and the fix.
    /// They are skipped (the other targets run); the daemon logs them and `check` shows them.
    pub skipped: Vec<String>,
}

/// The `[notion]` table.
#[derive(Debug, Clone)]
pub struct NotionConfig {
    /// Base URL of the API: Notion's, or the emulator's in tests.
    pub api_base: Url,
    /// The `Notion-Version` sent with every request.
    pub version: NotionVersion,
    /// The public integration's OAuth client id (needed by `authorize` and token refresh).
    pub client_id: Option<String>,
    /// Where the OAuth client secret comes from, if configured.
    pub client_secret: Option<SecretSource>,
    /// The redirect URI registered with the integration.
    pub redirect_uri: Url,
    /// Steady request rate allowed per token.
    pub requests_per_second: f64,
    /// How many requests a token may send at once after an idle spell.
    pub burst: u32,
    /// Optional steady rate shared by all tokens of one workspace.
    pub workspace_requests_per_second: Option<f64>,
}

/// Where a secret is read from. The value itself is only read when needed, so that commands which do
/// not need it work without access to it.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// Written in the configuration file itself (which must then be private).
    Inline(SecretString),
    /// Read from a file (which must be private), trailing whitespace removed.
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret: a file is read again at each call, so a fixed file is used at once.
    pub fn load(&self) -> Result<SecretString, PrivateFileError> {
        match self {
            SecretSource::Inline(s) => Ok(s.clone()),
            SecretSource::File(path) => {
                const WHAT: &str = "client secret file";
                let text = read_private_file(path, WHAT)?;
                let secret = text.trim_end();
                if secret.is_empty() {
                    return Err(PrivateFileError::Empty {
                        what: WHAT,
                        path: path.clone(),
                    });
                }
                Ok(SecretString::from(secret.to_owned()))
            }
        }
    }

    /// The file the secret is read from, if it is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            SecretSource::Inline(_) => None,
            SecretSource::File(path) => Some(path),
        }
    }
}

/// The `[daemon]` table.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Checkpoints, token files and dead letters live here.
    pub state_dir: PathBuf,
    /// A line longer than this is dead-lettered without being held in memory.
    pub max_line_bytes: u64,
    /// How often each inbox is checked even without a file event (the safety net for missed events).
    pub reconcile_interval: Duration,
    /// A target idle this long closes its inbox and everything else it holds, and waits
    /// unprepared for its inbox to change (as a target with nothing to deliver at start does).
    pub close_idle_after: Duration,
    /// How long in-flight requests may finish after SIGTERM before the daemon exits anyway.
    pub shutdown_grace: Duration,
    /// The log filter when `RUST_LOG` is not set, such as `info` or `notion_inbox=debug`.
    pub log_level: String,
    /// Where to serve Prometheus metrics, if anywhere. A non-loopback address needs
    /// `metrics_public = true`: the metrics name the targets and carry error texts.
    pub metrics_listen: Option<SocketAddr>,
    /// How long after an unknown outcome to wait before asking Notion whether the row exists.
    pub dedupe_settle: Duration,
}

/// One `[[target]]`: an inbox and the database its records go to.
#[derive(Debug, Clone)]
pub struct Target {
    /// Unique name, used in file names, logs and commands.
    pub name: String,
    /// The JSONL file producers append to.
    pub inbox: PathBuf,
    /// The database or data source that receives the rows.
    pub destination: Destination,
    /// Breaks a tie when several shared databases fit the mapping (discovery): the one whose
    /// title, or whose data source's name, is this.
    pub database_title: Option<String>,
    /// For a connected workspace: its record under `<state_dir>/targets/` (None: a `[[target]]`
    /// of the configuration file).
    pub record: Option<PathBuf>,
    /// For a connected workspace: the database chosen for it, as its record says (a change
    /// restarts the target, which then resolves the choice saved with its token).
    pub chosen: Option<String>,
    /// Where the target's access token comes from.
    pub token: TokenSource,
    /// How many page creates may be outstanding at once.
    pub max_in_flight: usize,
    /// A rich_text property that receives each record's key, for effectively-once delivery.
    pub dedupe_property: Option<String>,
    /// Record field to Notion property (name or id), in file order.
    pub properties: Vec<(String, String)>,
}

impl Target {
    /// The dead-letter file of this target.
    pub fn dead_letter_path(&self, daemon: &DaemonConfig) -> PathBuf {
        crate::state::layout::StateDir(&daemon.state_dir).dead_letter_file(&self.name)
    }
}

/// Which object of Notion receives the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A database id, resolved to its one data source under 2025-09-03 and later.
    Database(String),
    /// A data source id, used as it is.
    DataSource(String),
    /// Neither is configured: the one chosen after consent (saved in the token file), or else
    /// the one shared database that fits the mapping (see `notion::discover`).
    Discover,
}

/// Where a target's access token comes from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// A fixed token written in the configuration (an internal integration).
    Fixed(SecretString),
    /// A token file written by `notion-inbox authorize` and rewritten on refresh.
    File(PathBuf),
}

impl Config {
    /// Reads and validates the file at `path`, then adds the connected workspaces' targets (see
    /// [`connected`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let mut config = Config::load_file(path)?;
        connected::load_into(&mut config);
        Ok(config)
    }

    /// Reads and validates the file at `path` alone. Its relative paths are resolved against its
    /// directory made absolute, so that they name the same files whatever the working directory
    /// of whoever uses them later (a connected workspace's record stores its inbox's path).
    pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
        let absolute = std::path::absolute(path);
        let path = absolute.as_deref().unwrap_or(path);
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Config::from_toml(path, &text)?;
        if config.holds_inline_secret() {
            check_private_file(path, "config file")?;
        }
        Ok(config)
    }

    /// Validates `text` as if read from `path` (which is used for messages and relative paths).
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let cx = Cx { path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            location: cx.at(e.span().unwrap_or(0..0)),
            message: explain::explain(e.message().trim_end(), text),
        })?;
        let base_dir = path.parent().unwrap_or(Path::new(".")).to_owned();
        let notion = cx.notion(raw.notion)?;
        let daemon = cx.daemon(raw.daemon, &base_dir)?;
        let mut targets: Vec<Target> = Vec::with_capacity(raw.targets.len());
        // Names and inboxes seen so far, to their index: duplicates are found in one pass (with
        // `iter().find` over the targets, 10 000 targets took seconds).
        let mut names: std::collections::HashMap<String, usize> = Default::default();
        let mut inboxes: std::collections::HashMap<PathBuf, usize> = Default::default();
        for spanned in raw.targets {
            let span = spanned.span();
            let raw_target = spanned.into_inner();
            let name_span = raw_target.name.span();
            let inbox_span = raw_target.inbox.span();
            let t = cx.target(raw_target, span, &base_dir, &notion, &daemon)?;
            if names.insert(t.name.clone(), targets.len()).is_some() {
                return Err(cx.invalid(
                    name_span,
                    format!("a second target is named {:?}", t.name),
                    "give every [[target]] a name of its own",
                ));
            }
            if let Some(&i) = inboxes.get(&t.inbox) {
                let o = &targets[i];
                return Err(cx.invalid(
                    inbox_span,
                    format!(
                        "targets {:?} and {:?} read the same inbox {}",
                        o.name,
                        t.name,
                        t.inbox.display()
                    ),
                    "give each target its own inbox file",
                ));
            }
            inboxes.insert(t.inbox.clone(), targets.len());
            targets.push(t);
        }
        let connect = match raw.connect {
            Some(c) => Some(cx.connect(c)?),
            None => None,
        };
        Ok(Config {
            path: path.to_owned(),
            notion,
            daemon,
            targets,
            connect,
            skipped: Vec::new(),
        })
    }

    /// The target called `name`, or an error listing the names there are.
    pub fn target(&self, name: &str) -> Result<&Target, ConfigError> {
        self.targets.iter().find(|t| t.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.targets.iter().map(|t| t.name.as_str()).collect();
            let fix = match crate::error::did_you_mean(name, names.iter().copied()) {
                _ if names.is_empty() => "add a [[target]] table to the config".to_owned(),
                Some(near) => format!("did you mean {near:?}? (targets: {})", names.join(", ")),
                None => format!("use one of: {}", names.join(", ")),
            };
            ConfigError::UnknownTarget {
                path: self.path.clone(),
                name: name.to_owned(),
                fix,
            }
        })
    }

    /// The OAuth client secret: from the file, `client_secret_file`, or systemd's credentials.
    pub fn client_secret(&self) -> Result<SecretString, ConfigError> {
        if let Some(source) = self.client_secret_source() {
            return Ok(source.load()?);
        }
        Err(ConfigError::Invalid {
            location: Location {
                path: self.path.clone(),
                line: 0,
                column: 0,
            },
            problem: "no OAuth client secret is configured".to_owned(),
            fix: "set client_secret_file (a file of mode 600 holding the secret) in [notion], \
                  or pass it as the systemd credential `client_secret`"
                .to_owned(),
        })
    }

    /// Where the OAuth client secret comes from (see [`secret_source`]).
    pub fn client_secret_source(&self) -> Option<SecretSource> {
        secret_source(self.notion.client_secret.as_ref())
    }

    fn holds_inline_secret(&self) -> bool {
        matches!(self.notion.client_secret, Some(SecretSource::Inline(_)))
            || self
                .targets
                .iter()
                .any(|t| matches!(t.token, TokenSource::Fixed(_)))
    }
}

/// Extracts a Notion id (32 hex digits) from an id with or without dashes, or from a Notion URL
/// (`https://www.notion.so/Title-<id>?v=…`), and returns it in the dashed 8-4-4-4-12 form.
pub fn normalize_notion_id(input: &str) -> Option<String> {
    let trimmed = input.trim();
    let candidate = if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        let url = Url::parse(trimmed).ok()?;
        let last = url.path_segments()?.next_back()?.to_owned();
        last.rsplit('-').next()?.to_owned()
    } else {
        trimmed.to_owned()
    };
    let hex: String = candidate.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// Whether a URL's host is this machine, where plain `http` is acceptable.
pub fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    /// The emulator registers notion-inbox's default redirect URI by default (it names its own
    /// constant: it imports nothing of the product), so that `authorize` works against it.
    #[test]
    fn the_emulator_registers_the_default_redirect_uri() {
        assert_eq!(
            super::DEFAULT_REDIRECT_URI,
            notion_emulator::DEFAULT_REDIRECT_URI
        );
    }
}
