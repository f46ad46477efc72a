//! `notion-inbox check [--target NAME]`: is everything ready for `run`? One finding per line, each
//! problem with its fix; success only when there is no problem.

use serde::Serialize;

use crate::audit::{Exposure, audit};
use crate::config::{Config, Target};
use crate::notion::{NotionClient, ResolveError};
use crate::record::Mapper;

/// One finding.
#[derive(Debug, Serialize, PartialEq)]
pub struct Finding {
    /// The target, or none for the whole config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Whether this is fine.
    pub ok: bool,
    /// What was checked, stable across releases, for scripts: `config`, `no_targets`,
    /// `skipped_workspace`, `state_dir`, `exposure`, `client_secret`, `inbox`, `token`,
    /// `destination`, `mapping`.
    pub code: &'static str,
    /// What was checked and found, with the fix when not ok.
    pub message: String,
}

impl Finding {
    fn general(ok: bool, code: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            target: None,
            ok,
            code,
            message: crate::text::message(&message.into()),
        }
    }

    fn ok(target: &Target, code: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            target: Some(target.name.clone()),
            ok: true,
            code,
            message: crate::text::message(&message.into()),
        }
    }

    fn problem(target: &Target, code: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            target: Some(target.name.clone()),
            ok: false,
            code,
            message: crate::text::message(&message.into()),
        }
    }
}

/// What `check` is asked to check.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Only this target.
    #[arg(long, short)]
    pub target: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Check the configuration, files and permissions only, without a request to Notion (tokens
    /// are read, not tried; the databases and mappings are not looked at).
    #[arg(long)]
    pub offline: bool,
}

/// Checks the config's targets (or one of them). Creates nothing.
pub async fn run(config: &Config, args: &CheckArgs) -> anyhow::Result<Vec<Finding>> {
    let targets: Vec<&Target> = match args.target.as_deref() {
        Some(name) => vec![config.target(name)?],
        None => config.targets.iter().collect(),
    };
    let mut findings = vec![Finding::general(
        true,
        "config",
        format!(
            "config {} is valid ({} target(s), Notion-Version {})",
            config.path.display(),
            config.targets.len(),
            config.notion.version
        ),
    )];
    if config.targets.is_empty() {
        findings.push(match config.connect.as_ref().and_then(|c| c.page.as_ref()) {
            Some(page) => Finding::general(
                true,
                "no_targets",
                format!(
                    "no targets yet: each workspace that connects at {} gets one",
                    page.public_url
                ),
            ),
            None => Finding::general(
                false,
                "no_targets",
                format!(
                    "no targets: the daemon would deliver nothing; add a [[target]] to {}, or run `notion-inbox connect`",
                    config.path.display()
                ),
            ),
        });
    }
    findings.extend(config.skipped.iter().map(|skipped| {
        Finding::general(
            false,
            "skipped_workspace",
            format!("a connected workspace's target is skipped: {skipped}"),
        )
    }));
    if let Some(usage) = crate::tenants::usage::Usage::of(config) {
        findings.push(Finding::general(
            !usage.full(),
            "connect_caps",
            usage.describe(),
        ));
    }
    findings.push(check_state_dir(config));
    let exposures = audit(config);
    findings.extend(exposures.iter().map(|e| Finding {
        target: e.target.clone(),
        ok: false,
        code: "exposure",
        message: e.to_string(),
    }));
    findings.extend(check_client_secret(config, &exposures));
    let client = NotionClient::new(&config.notion)?.sharing_budget(&config.daemon.state_dir, false);
    for target in targets {
        // A token file that cannot be used as it is was reported above, with its fix.
        if exposures
            .iter()
            .any(|e| e.target.as_deref() == Some(&target.name))
        {
            continue;
        }
        check_target(config, &client, target, args.offline, &mut findings).await;
    }
    Ok(findings)
}

/// Loads the OAuth client secret, if one is configured (the daemon needs it for every refresh).
/// A secret file whose mode or owner the audit reported is not reported again.
fn check_client_secret(config: &Config, exposures: &[Exposure]) -> Option<Finding> {
    let source = config.client_secret_source()?;
    let finding = |ok, message| Finding::general(ok, "client_secret", message);
    match (source.load(), source.path()) {
        (Ok(_), Some(path)) => Some(finding(
            true,
            format!("the client secret loads from {}", path.display()),
        )),
        (Ok(_), None) => Some(finding(
            true,
            format!("the client secret is set in {}", config.path.display()),
        )),
        (Err(_), _)
            if exposures
                .iter()
                .any(|x| Some(x.path.as_path()) == source.path()) =>
        {
            None
        }
        (Err(e), _) => Some(finding(
            false,
            format!("{e} (the daemon needs the client secret to refresh tokens)"),
        )),
    }
}

/// Whether the daemon can use the state directory, without creating it: an existing one must be
/// writable (a temporary file is made and removed); a missing one is made by the daemon (or by
/// systemd's `StateDirectory=`), so its nearest existing parent must be writable.
fn check_state_dir(config: &Config) -> Finding {
    let dir = &config.daemon.state_dir;
    let finding = |ok, message| Finding::general(ok, "state_dir", message);
    if dir.is_dir() {
        return match tempfile::tempfile_in(dir) {
            Ok(_) => finding(
                true,
                format!("state directory {} is writable", dir.display()),
            ),
            Err(e) => finding(
                false,
                format!(
                    "state directory {} is not writable ({e}); give the daemon's user write access to it, or set [daemon] state_dir",
                    dir.display()
                ),
            ),
        };
    }
    let parent = dir.ancestors().skip(1).find(|a| a.is_dir());
    let writable = parent.is_some_and(|p| {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap_or_default();
        // SAFETY: access(2) reads a NUL-terminated path and changes nothing.
        unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
    });
    if writable {
        finding(
            true,
            format!(
                "state directory {} does not exist yet; the daemon creates it (mode 700)",
                dir.display()
            ),
        )
    } else {
        finding(
            false,
            format!(
                "state directory {} does not exist and cannot be created here; create it for the daemon's user (the unit's StateDirectory= does), or set [daemon] state_dir",
                dir.display()
            ),
        )
    }
}

async fn check_target(
    config: &Config,
    client: &NotionClient,
    target: &Target,
    offline: bool,
    findings: &mut Vec<Finding>,
) {
    let name = &target.name;
    match target.inbox.parent() {
        Some(dir) if dir.is_dir() => findings.push(Finding::ok(
            target,
            "inbox",
            if target.inbox.exists() {
                format!("inbox {} exists", target.inbox.display())
            } else {
                format!(
                    "inbox {} does not exist yet (the daemon waits for it)",
                    target.inbox.display()
                )
            },
        )),
        _ => findings.push(Finding::problem(
            target,
            "inbox",
            format!(
                "the inbox's directory {} does not exist; create it (producers need write access to it)",
                target.inbox.parent().unwrap_or(&target.inbox).display()
            ),
        )),
    }
    // The finding is shown under the target's name: a message that starts with it again only
    // repeats it.
    let prefix = format!("target {name}: ");
    let unprefixed = |m: String| m.strip_prefix(&prefix).map(str::to_owned).unwrap_or(m);
    if offline {
        match crate::notion::TokenHandle::load(target, config) {
            Ok(_) => findings.push(Finding::ok(
                target,
                "token",
                "token loads (not tried: --offline)",
            )),
            Err(e) => findings.push(Finding::problem(
                target,
                "token",
                unprefixed(format!(
                    "{}; run `notion-inbox authorize --target {name}` first",
                    crate::error::chain(&e)
                )),
            )),
        }
        return;
    }
    let token = match super::databases::usable_token(client, target, config).await {
        Ok(t) => t,
        Err(e) => {
            let message = crate::error::chain(e.as_ref());
            findings.push(Finding::problem(target, "token", unprefixed(message)));
            return;
        }
    };
    findings.push(Finding::ok(
        target,
        "token",
        match token.file() {
            Some(f) => format!(
                "token accepted (workspace {}, obtained {})",
                f.workspace_name.as_deref().unwrap_or(&f.workspace_id),
                f.obtained_at.format("%Y-%m-%d %H:%M UTC")
            ),
            None => "token accepted".to_owned(),
        },
    ));
    let resolved = match client.resolve(target, &token).await {
        Ok(r) => r,
        Err(ResolveError::Notion(e)) if e.status() == Some(404) => {
            findings.push(Finding::problem(
                target,
                "destination",
                format!(
                    "the destination is not visible to the token ({e}); share the database with the integration (its ••• menu, Connections) or run `notion-inbox authorize --target {name}` and pick it; `notion-inbox databases --target {name}` lists what the token sees"
                ),
            ));
            return;
        }
        Err(e) => {
            let message = unprefixed(crate::error::chain(&e));
            findings.push(Finding::problem(target, "destination", message));
            return;
        }
    };
    findings.push(Finding::ok(
        target,
        "destination",
        format!("writes to {}", resolved.describe()),
    ));
    match Mapper::new(target, &resolved) {
        Ok(m) => findings.push(Finding::ok(
            target,
            "mapping",
            format!(
                "mapping fits the schema ({}){}",
                target
                    .properties
                    .iter()
                    .map(|(f, p)| format!("{f} -> {p}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if m.dedupes() {
                    "; effectively-once delivery with dedupe_property"
                } else {
                    "; at-least-once delivery (set dedupe_property for effectively-once)"
                }
            ),
        )),
        Err(e) => findings.push(Finding::problem(
            target,
            "mapping",
            format!("{e}; fix [target.properties] in {}", config.path.display()),
        )),
    }
}

/// Prints findings for people.
pub fn print_text(findings: &[Finding]) {
    for f in findings {
        let mark = if f.ok { "ok     " } else { "PROBLEM" };
        // Findings quote names from Notion (properties, workspaces): shown made safe.
        let message = crate::text::message(&f.message);
        match &f.target {
            Some(t) => println!("{mark} [{t}] {message}"),
            None => println!("{mark} {message}"),
        }
    }
    let problems = findings.iter().filter(|f| !f.ok).count();
    if problems == 0 {
        println!("ready: `notion-inbox run` can deliver every target");
    } else if problems == 1 {
        println!("1 problem to fix before `notion-inbox run`");
    } else {
        println!("{problems} problems to fix before `notion-inbox run`");
    }
}
