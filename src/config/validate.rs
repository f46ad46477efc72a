//! The second stage of reading a configuration: the raw structs serde fills (each value with
//! its span) and `Cx`, which checks them and resolves defaults, relative paths and ids into the
//! values of [`super::Config`], with `file:line:column` and the fix for every refusal.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) notion: Option<RawNotion>,
    #[serde(default)]
    pub(super) daemon: Option<RawDaemon>,
    #[serde(default, rename = "target")]
    pub(super) targets: Vec<Spanned<RawTarget>>,
    #[serde(default)]
    pub(super) connect: Option<Spanned<connected::RawConnect>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotion {
    pub(super) api_base: Option<Spanned<String>>,
    pub(super) version: Option<Spanned<String>>,
    pub(super) client_id: Option<Spanned<String>>,
    pub(super) client_secret_file: Option<Spanned<String>>,
    pub(super) client_secret: Option<Spanned<SecretString>>,
    pub(super) redirect_uri: Option<Spanned<String>>,
    pub(super) requests_per_second: Option<Spanned<f64>>,
    pub(super) burst: Option<Spanned<i64>>,
    pub(super) workspace_requests_per_second: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub(super) state_dir: Option<Spanned<String>>,
    pub(super) max_line_bytes: Option<Spanned<i64>>,
    pub(super) reconcile_interval: Option<Spanned<String>>,
    pub(super) close_idle_after: Option<Spanned<String>>,
    pub(super) shutdown_grace: Option<Spanned<String>>,
    pub(super) log_level: Option<Spanned<String>>,
    pub(super) metrics_listen: Option<Spanned<String>>,
    pub(super) metrics_public: Option<Spanned<bool>>,
    pub(super) dedupe_settle: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub(super) name: Spanned<String>,
    pub(super) inbox: Spanned<String>,
    pub(super) database_id: Option<Spanned<String>>,
    pub(super) data_source_id: Option<Spanned<String>>,
    pub(super) database_title: Option<Spanned<String>>,
    pub(super) token: Option<Spanned<SecretString>>,
    pub(super) token_file: Option<Spanned<String>>,
    pub(super) max_in_flight: Option<Spanned<i64>>,
    pub(super) dedupe_property: Option<Spanned<String>>,
    pub(super) properties: Spanned<BTreeMap<String, Spanned<String>>>,
}

/// The validation context: the file being validated, to turn spans into locations.
pub(super) struct Cx<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Cx<'_> {
    pub(super) fn at(&self, span: Range<usize>) -> Location {
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

    pub(super) fn invalid(
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

    pub(super) fn notion(&self, raw: Option<RawNotion>) -> Result<NotionConfig, ConfigError> {
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

    pub(super) fn positive_rate(&self, r: &Spanned<f64>, key: &str) -> Result<f64, ConfigError> {
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

    pub(super) fn url(
        &self,
        s: &Spanned<String>,
        key: &str,
        is_api: bool,
    ) -> Result<Url, ConfigError> {
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

    pub(super) fn path_of(&self, s: &str) -> PathBuf {
        let p = Path::new(s);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }

    pub(super) fn duration(&self, s: &Spanned<String>, key: &str) -> Result<Duration, ConfigError> {
        humantime::parse_duration(s.get_ref()).map_err(|e| {
            self.invalid(
                s.span(),
                format!("{key} {:?} is not a duration: {e}", s.get_ref()),
                "write a duration such as \"5s\", \"500ms\" or \"2m\"",
            )
        })
    }

    pub(super) fn daemon(
        &self,
        raw: Option<RawDaemon>,
        _base: &Path,
    ) -> Result<DaemonConfig, ConfigError> {
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
    pub(super) fn metrics_listen(
        &self,
        s: &Spanned<String>,
        public: bool,
    ) -> Result<SocketAddr, ConfigError> {
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

    pub(super) fn target(
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
            (None, None) => TokenSource::File(
                crate::state::layout::StateDir(&daemon.state_dir).token_file(&name),
            ),
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

    pub(super) fn id(&self, s: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
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
