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
        daemon
            .state_dir
            .join("dead-letter")
            .join(format!("{}.jsonl", self.name))
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    notion: Option<RawNotion>,
    #[serde(default)]
    daemon: Option<RawDaemon>,
    #[serde(default, rename = "target")]
    targets: Vec<Spanned<RawTarget>>,
    #[serde(default)]
    connect: Option<Spanned<connected::RawConnect>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotion {
    api_base: Option<Spanned<String>>,
    version: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    client_secret_file: Option<Spanned<String>>,
    client_secret: Option<Spanned<SecretString>>,
    redirect_uri: Option<Spanned<String>>,
    requests_per_second: Option<Spanned<f64>>,
    burst: Option<Spanned<i64>>,
    workspace_requests_per_second: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    state_dir: Option<Spanned<String>>,
    max_line_bytes: Option<Spanned<i64>>,
    reconcile_interval: Option<Spanned<String>>,
    close_idle_after: Option<Spanned<String>>,
    shutdown_grace: Option<Spanned<String>>,
    log_level: Option<Spanned<String>>,
    metrics_listen: Option<Spanned<String>>,
    metrics_public: Option<Spanned<bool>>,
    dedupe_settle: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: Spanned<String>,
    inbox: Spanned<String>,
    database_id: Option<Spanned<String>>,
    data_source_id: Option<Spanned<String>>,
    database_title: Option<Spanned<String>>,
    token: Option<Spanned<SecretString>>,
    token_file: Option<Spanned<String>>,
    max_in_flight: Option<Spanned<i64>>,
    dedupe_property: Option<Spanned<String>>,
    properties: Spanned<BTreeMap<String, Spanned<String>>>,
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

/// The validation context: the file being validated, to turn spans into locations.
struct Cx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Cx<'_> {
    fn at(&self, span: Range<usize>) -> Location {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(start, |i| start - i - 1) + 1;
        Location {
            path: self.path.to_owned(),
            line,
            column,
        }
    }

    fn invalid(
        &self,
        span: Range<usize>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            location: self.at(span),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    fn notion(&self, raw: Option<RawNotion>) -> Result<NotionConfig, ConfigError> {
        let Some(raw) = raw else {
            return Ok(NotionConfig {
                api_base: Url::parse(DEFAULT_API_BASE).expect("valid constant"),
                version: NotionVersion::default(),
                client_id: None,
                client_secret: None,
                redirect_uri: Url::parse(DEFAULT_REDIRECT_URI).expect("valid constant"),
                requests_per_second: 3.0,
                burst: 3,
                workspace_requests_per_second: None,
            });
        };
        let api_base = match raw.api_base {
            Some(s) => self.url(&s, "api_base", true)?,
            None => Url::parse(DEFAULT_API_BASE).expect("valid constant"),
        };
        let version = match raw.version {
            Some(s) => NotionVersion::parse(s.get_ref()).ok_or_else(|| {
                self.invalid(
                    s.span(),
                    format!("unsupported Notion version {:?}", s.get_ref()),
                    "use one of 2022-06-28, 2025-09-03 (the default) or 2026-03-11",
                )
            })?,
            None => NotionVersion::default(),
        };
        let client_secret = match (raw.client_secret, raw.client_secret_file) {
            (Some(_), Some(file)) => {
                return Err(self.invalid(
                    file.span(),
                    "both client_secret and client_secret_file are set",
                    "keep only one of them (client_secret_file is preferred)",
                ));
            }
            (Some(s), None) => Some(SecretSource::Inline(s.into_inner())),
            (None, Some(f)) => Some(SecretSource::File(self.path_of(f.get_ref()))),
            (None, None) => None,
        };
        let redirect_uri = match raw.redirect_uri {
            Some(s) => self.url(&s, "redirect_uri", false)?,
            None => Url::parse(DEFAULT_REDIRECT_URI).expect("valid constant"),
        };
        let requests_per_second = match raw.requests_per_second {
            Some(r) => self.positive_rate(&r, "requests_per_second")?,
            None => 3.0,
        };
        let burst = match raw.burst {
            Some(b) if (1..=1000).contains(b.get_ref()) => *b.get_ref() as u32,
            Some(b) => {
                return Err(self.invalid(
                    b.span(),
                    format!("burst must be between 1 and 1000, not {}", b.get_ref()),
                    "use the default of 3 unless Notion granted more",
                ));
            }
            None => 3,
        };
        let workspace_requests_per_second = raw
            .workspace_requests_per_second
            .map(|r| self.positive_rate(&r, "workspace_requests_per_second"))
            .transpose()?;
        let client_id = match raw.client_id {
            Some(c) if c.get_ref().trim().is_empty() => {
                return Err(self.invalid(
                    c.span(),
                    "client_id is empty",
                    "copy the OAuth client id from the integration's settings page, or remove the key",
                ));
            }
            Some(c) => Some(c.into_inner()),
            None => None,
        };
        Ok(NotionConfig {
            api_base,
            version,
            client_id,
            client_secret,
            redirect_uri,
            requests_per_second,
            burst,
            workspace_requests_per_second,
        })
    }

    fn positive_rate(&self, r: &Spanned<f64>, key: &str) -> Result<f64, ConfigError> {
        let v = *r.get_ref();
        if v.is_finite() && v > 0.0 && v <= 10_000.0 {
            Ok(v)
        } else {
            Err(self.invalid(
                r.span(),
                format!("{key} must be a number above 0, not {v}"),
                "Notion allows an average of 3 requests per second per token; use 3",
            ))
        }
    }

    fn url(&self, s: &Spanned<String>, key: &str, is_api: bool) -> Result<Url, ConfigError> {
        let mut url = Url::parse(s.get_ref()).map_err(|e| {
            self.invalid(
                s.span(),
                format!("{key} {:?} is not a URL: {e}", s.get_ref()),
                "write a full URL such as https://api.notion.com",
            )
        })?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_url(&url) => {}
            "http" => {
                return Err(self.invalid(
                    s.span(),
                    format!(
                        "{key} uses plain http to {}, so tokens would travel in clear",
                        url.host_str().unwrap_or("?")
                    ),
                    "use https, or http only to localhost/127.0.0.1",
                ));
            }
            other => {
                return Err(self.invalid(
                    s.span(),
                    format!("{key} has the scheme {other:?}"),
                    "use an https URL (or http to localhost)",
                ));
            }
        }
        if is_api {
            if url.path() != "/" && !url.path().is_empty() {
                return Err(self.invalid(
                    s.span(),
                    format!("api_base {:?} has a path", s.get_ref()),
                    "give only scheme, host and port, such as https://api.notion.com (the /v1 is added)",
                ));
            }
            url.set_path("");
        }
        Ok(url)
    }

    fn path_of(&self, s: &str) -> PathBuf {
        let p = Path::new(s);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }

    fn duration(&self, s: &Spanned<String>, key: &str) -> Result<Duration, ConfigError> {
        humantime::parse_duration(s.get_ref()).map_err(|e| {
            self.invalid(
                s.span(),
                format!("{key} {:?} is not a duration: {e}", s.get_ref()),
                "write a duration such as \"5s\", \"500ms\" or \"2m\"",
            )
        })
    }

    fn daemon(&self, raw: Option<RawDaemon>, _base: &Path) -> Result<DaemonConfig, ConfigError> {
        let raw = raw.unwrap_or(RawDaemon {
            state_dir: None,
            max_line_bytes: None,
            reconcile_interval: None,
            close_idle_after: None,
            shutdown_grace: None,
            log_level: None,
            metrics_listen: None,
            metrics_public: None,
            dedupe_settle: None,
        });
        let state_dir = match raw.state_dir {
            Some(s) => self.path_of(s.get_ref()),
            None => match std::env::var_os("STATE_DIRECTORY") {
                // systemd's StateDirectory= may list several, separated by ':'; the first is ours.
                Some(v) => PathBuf::from(v.to_string_lossy().split(':').next().unwrap_or_default()),
                None => PathBuf::from(DEFAULT_STATE_DIR),
            },
        };
        let max_line_bytes = match raw.max_line_bytes {
            Some(m) if (1024..=(1 << 30)).contains(m.get_ref()) => *m.get_ref() as u64,
            Some(m) => {
                return Err(self.invalid(
                    m.span(),
                    format!(
                        "max_line_bytes must be between 1024 and 1073741824, not {}",
                        m.get_ref()
                    ),
                    "the default, 1048576 (1 MiB), suits most records",
                ));
            }
            None => 1 << 20,
        };
        let reconcile_interval = match raw.reconcile_interval {
            Some(s) => self.duration(&s, "reconcile_interval")?,
            None => Duration::from_secs(5),
        };
        let close_idle_after = match raw.close_idle_after {
            Some(s) => self.duration(&s, "close_idle_after")?,
            None => Duration::from_secs(120),
        };
        let shutdown_grace = match raw.shutdown_grace {
            Some(s) => self.duration(&s, "shutdown_grace")?,
            None => Duration::from_secs(10),
        };
        let dedupe_settle = match raw.dedupe_settle {
            Some(s) => self.duration(&s, "dedupe_settle")?,
            None => Duration::from_secs(2),
        };
        let log_level = match raw.log_level {
            Some(s) => {
                tracing_subscriber::EnvFilter::try_new(s.get_ref()).map_err(|e| {
                    self.invalid(
                        s.span(),
                        format!("log_level {:?} is not a valid filter: {e}", s.get_ref()),
                        "use error, warn, info, debug or trace (or a RUST_LOG-style filter)",
                    )
                })?;
                s.into_inner()
            }
            None => "info".to_owned(),
        };
        let public = raw.metrics_public.as_ref().is_some_and(|p| *p.get_ref());
        let metrics_listen = raw
            .metrics_listen
            .map(|s| self.metrics_listen(&s, public))
            .transpose()?;
        Ok(DaemonConfig {
            state_dir,
            max_line_bytes,
            reconcile_interval,
            close_idle_after,
            shutdown_grace,
            log_level,
            metrics_listen,
            dedupe_settle,
        })
    }

    /// Parses `metrics_listen`; an address other than loopback needs `metrics_public = true`.
    fn metrics_listen(&self, s: &Spanned<String>, public: bool) -> Result<SocketAddr, ConfigError> {
        let addr = s.get_ref().parse::<SocketAddr>().map_err(|e| {
            self.invalid(
                s.span(),
                format!("metrics_listen {:?} is not an address: {e}", s.get_ref()),
                "write an address and port such as \"127.0.0.1:9464\"",
            )
        })?;
        if !addr.ip().is_loopback() && !public {
            return Err(self.invalid(
                s.span(),
                format!(
                    "metrics_listen {addr} is not a loopback address, and the metrics show target names, workspace counts and error texts to anyone who can reach the port"
                ),
                "set metrics_public = true in [daemon] if that is intended, or listen on 127.0.0.1",
            ));
        }
        Ok(addr)
    }

    fn target(
        &self,
        raw: RawTarget,
        span: Range<usize>,
        _base: &Path,
        notion: &NotionConfig,
        daemon: &DaemonConfig,
    ) -> Result<Target, ConfigError> {
        let name = raw.name.get_ref().clone();
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(self.invalid(
                raw.name.span(),
                format!("target name {name:?} is not usable in file names"),
                "use 1 to 64 letters, digits, '-' or '_'",
            ));
        }
        let destination = match (raw.database_id, raw.data_source_id) {
            (Some(_), Some(ds)) => {
                return Err(self.invalid(
                    ds.span(),
                    format!("target {name:?} sets both database_id and data_source_id"),
                    "keep only one: data_source_id when the database has several data sources",
                ));
            }
            (Some(db), None) => Destination::Database(self.id(&db, "database_id")?),
            (None, Some(ds)) => Destination::DataSource(self.id(&ds, "data_source_id")?),
            (None, None) => Destination::Discover,
        };
        if matches!(destination, Destination::DataSource(_)) && !notion.version.has_data_sources() {
            return Err(self.invalid(
                span,
                format!("target {name:?} sets data_source_id, but Notion-Version {} has no data sources", notion.version),
                "use database_id, or set [notion] version = \"2025-09-03\"",
            ));
        }
        let token = match (raw.token, raw.token_file) {
            (Some(_), Some(f)) => {
                return Err(self.invalid(
                    f.span(),
                    format!("target {name:?} sets both token and token_file"),
                    "keep only one of them",
                ));
            }
            (Some(t), None) => TokenSource::Fixed(t.into_inner()),
            (None, Some(f)) => TokenSource::File(self.path_of(f.get_ref())),
            (None, None) => {
                TokenSource::File(daemon.state_dir.join("tokens").join(format!("{name}.toml")))
            }
        };
        let max_in_flight = match raw.max_in_flight {
            Some(m) if (1..=1000).contains(m.get_ref()) => *m.get_ref() as usize,
            Some(m) => {
                return Err(self.invalid(
                    m.span(),
                    format!(
                        "max_in_flight must be between 1 and 1000, not {}",
                        m.get_ref()
                    ),
                    "remove it to use the default, which reaches the rate limit at 1 s latency",
                ));
            }
            // Little's law gives rate × latency requests in flight, but the window also holds the
            // records queued at the rate limiter and finished ones not yet checkpointed. Measured
            // (BENCHMARKS.md, 1): 3 × rate left the limiter idle now and then at 1 s latency (0.97
            // of the rate); 6 × rate keeps it busy.
            None => ((notion.requests_per_second * 6.0).ceil() as usize).clamp(8, 1000),
        };
        let dedupe_property = match raw.dedupe_property {
            Some(p) if p.get_ref().trim().is_empty() => {
                return Err(self.invalid(
                    p.span(),
                    "dedupe_property is empty",
                    "name a rich_text property of the database, or remove the key",
                ));
            }
            Some(p) => Some(p.into_inner()),
            None => None,
        };
        let props_span = raw.properties.span();
        let properties: Vec<(String, String)> = raw
            .properties
            .into_inner()
            .into_iter()
            .map(|(field, prop)| (field, prop.into_inner()))
            .collect();
        if properties.is_empty() {
            return Err(self.invalid(
                props_span,
                format!("target {name:?} maps no record field to a property"),
                "add lines such as handle = \"title\" and tweet = \"tweet\" under [target.properties]",
            ));
        }
        if let Some((field, _)) = properties.iter().find(|(f, _)| f == "id") {
            return Err(self.invalid(
                props_span,
                format!(
                    "target {name:?} maps the record field {field:?}, which is the record's key"
                ),
                "use dedupe_property to store the key in Notion",
            ));
        }
        if let Some(dp) = &dedupe_property
            && properties.iter().any(|(_, p)| p == dp)
        {
            return Err(self.invalid(
                props_span,
                format!("property {dp:?} is both mapped from a field and the dedupe_property"),
                "give the dedupe property a column of its own",
            ));
        }
        let inbox = self.path_of(raw.inbox.get_ref());
        if raw.inbox.get_ref().ends_with('/') || inbox.file_name().is_none() {
            return Err(self.invalid(
                raw.inbox.span(),
                format!("inbox {:?} is a directory, not a file", raw.inbox.get_ref()),
                "name the JSONL file, such as /var/spool/notion-inbox/tweets.jsonl",
            ));
        }
        let database_title = raw.database_title.map(Spanned::into_inner);
        Ok(Target {
            name,
            inbox,
            destination,
            database_title,
            record: None,
            chosen: None,
            token,
            max_in_flight,
            dedupe_property,
            properties,
        })
    }

    fn id(&self, s: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
        normalize_notion_id(s.get_ref()).ok_or_else(|| {
            self.invalid(
                s.span(),
                format!("{key} {:?} is not a Notion id", s.get_ref()),
                "use the 32-hex-digit id (with or without dashes) or the database's URL; \
                 `notion-inbox databases --target NAME` lists them",
            )
        })
    }
}
