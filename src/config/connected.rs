//! The configuration's side of connected workspaces: `[connect]` (what a workspace that
//! connects gets, the page, the caps) and the `[target]` of a tenant's record
//! (`<state_dir>/targets/<id>.toml`), validated by the same code as a `[[target]]`.
//! [`Config::load`] reads every record after the configuration file ([`load_into`]); the daemon
//! reads just the ones that changed ([`load_record`]). The lifecycle of tenants (connecting,
//! their identity, disconnecting) is `crate::tenants`', which this module does not know.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{Config, ConfigError, Cx, RawTarget, Target};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    target: Spanned<RawTarget>,
    /// Read by `tenants`; here only whether it is disconnected, and its choice.
    connection: toml::Table,
}

/// The `*.toml` files of the records' directory, sorted (none when it does not exist).
pub fn record_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
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

/// Whether `name` may be a connected workspace's target name (it names its files): 1 to 80
/// ASCII letters, digits, `-` and `_`, not starting with `-`.
pub fn is_record_name(name: &str) -> bool {
    (1..=80).contains(&name.len())
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Adds the records of `<state_dir>/targets/` to `config.targets`; a record that cannot be used
/// (unreadable, invalid, a name or inbox already taken) goes to `config.skipped` instead.
pub fn load_into(config: &mut Config) {
    let dir = crate::state::layout::StateDir(&config.daemon.state_dir).targets();
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
        match load_record(config, &path) {
            // Disconnected: listed by `targets`, not run.
            Ok(None) => {}
            Ok(Some(t)) if names.contains(&t.name) || inboxes.contains(&t.inbox) => {
                config.skipped.push(taken(config, &path, &t));
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

/// Why the record at `path` is skipped when its target's name or inbox is taken.
pub fn taken(config: &Config, path: &Path, t: &Target) -> String {
    ConfigError::Invalid {
        location: super::Location {
            path: path.to_owned(),
            line: 0,
            column: 0,
        },
        problem: format!(
            "target {:?} (inbox {}) is also in {}",
            t.name,
            t.inbox.display(),
            config.path.display()
        ),
        fix: "remove one of the two; a connected workspace keeps its own name and inbox".into(),
    }
    .to_string()
}

/// The target of the record at `path`, validated with `config`'s settings; None when it is
/// disconnected. (Whether its name or inbox is taken is the caller's to check.)
pub fn load_record(config: &Config, path: &Path) -> Result<Option<Target>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let cx = Cx { path, text: &text };
    let raw: RawRecord = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
        location: cx.at(e.span().unwrap_or(0..0)),
        message: e.message().trim_end().to_owned(),
    })?;
    if raw.connection.contains_key("disconnected_at") {
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
    let chosen = raw.connection.get("database").map(ToString::to_string);
    Ok(Some(Target {
        record: Some(path.to_owned()),
        chosen,
        ..target
    }))
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
    max_targets: Option<Spanned<i64>>,
    max_new_per_client_per_hour: Option<Spanned<i64>>,
    trusted_proxies: Option<Vec<Spanned<String>>>,
}

/// The limits on what strangers at the connect page may create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectCaps {
    /// The most connected targets in all, disconnected ones included (`max_targets`, default
    /// 10 000): past it, only workspaces that connected before may connect again.
    pub max_targets: usize,
    /// The most new workspaces one client address may connect in an hour
    /// (`max_new_per_client_per_hour`, default 10; reconnects are not counted).
    pub new_per_client_per_hour: u32,
    /// Reverse proxies whose `X-Forwarded-For` names the client (`trusted_proxies`, default
    /// none: the client is the address that connected).
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for ConnectCaps {
    fn default() -> ConnectCaps {
        ConnectCaps {
            max_targets: 10_000,
            new_per_client_per_hour: 10,
            trusted_proxies: Vec::new(),
        }
    }
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
    /// What strangers may create.
    pub caps: ConnectCaps,
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
        let caps = self.connect_caps(
            raw.max_targets,
            raw.max_new_per_client_per_hour,
            raw.trusted_proxies,
        )?;
        Ok(ConnectConfig {
            page,
            caps,
            inbox_dir: self.path_of(raw.inbox_dir.get_ref()),
            template: Template {
                properties,
                database_title: raw.database_title.map(Spanned::into_inner),
                dedupe_property,
            },
        })
    }
}

impl Cx<'_> {
    fn connect_caps(
        &self,
        max_targets: Option<Spanned<i64>>,
        per_client: Option<Spanned<i64>>,
        proxies: Option<Vec<Spanned<String>>>,
    ) -> Result<ConnectCaps, ConfigError> {
        let mut caps = ConnectCaps::default();
        let positive = |v: &Spanned<i64>, key: &str| {
            u32::try_from(*v.get_ref())
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    self.invalid(
                        v.span(),
                        format!("[connect] {key} must be a positive whole number"),
                        format!(
                            "write {key} = {}",
                            if key == "max_targets" { 10_000 } else { 10 }
                        ),
                    )
                })
        };
        if let Some(v) = &max_targets {
            caps.max_targets = positive(v, "max_targets")? as usize;
        }
        if let Some(v) = &per_client {
            caps.new_per_client_per_hour = positive(v, "max_new_per_client_per_hour")?;
        }
        for p in proxies.unwrap_or_default() {
            let ip =
                p.get_ref().parse::<IpAddr>().map_err(|_| {
                    self.invalid(
                    p.span(),
                    format!("[connect] trusted_proxies: {:?} is not an IP address", p.get_ref()),
                    "list the addresses your reverse proxy connects from, such as \"127.0.0.1\"",
                )
                })?;
            caps.trusted_proxies.push(ip);
        }
        Ok(caps)
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
