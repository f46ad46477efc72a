//! `notion-inbox check [--target NAME]`: is everything ready for `run`? One finding per line, each
//! problem with its fix; success only when there is no problem.

use serde::Serialize;

use crate::config::{Config, Target};
use crate::notion::{NotionClient, ResolveError};
use crate::record::Mapper;
use crate::state::audit::{Exposure, audit};
use crate::state::private::create_private_dir;

/// One finding.
#[derive(Debug, Serialize, PartialEq)]
pub struct Finding {
    /// The target, or none for the whole config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Whether this is fine.
    pub ok: bool,
    /// What was checked and found, with the fix when not ok.
    pub message: String,
}

impl Finding {
    fn ok(target: &Target, message: impl Into<String>) -> Finding {
        Finding {
            target: Some(target.name.clone()),
            ok: true,
            message: message.into(),
        }
    }

    fn problem(target: &Target, message: impl Into<String>) -> Finding {
        Finding {
            target: Some(target.name.clone()),
            ok: false,
            message: message.into(),
        }
    }
}

/// Checks the config's targets (or one of them).
pub async fn run(config: &Config, only: Option<&str>) -> anyhow::Result<Vec<Finding>> {
    let targets: Vec<&Target> = match only {
        Some(name) => vec![config.target(name)?],
        None => config.targets.iter().collect(),
    };
    let mut findings = vec![Finding {
        target: None,
        ok: true,
        message: format!(
            "config {} is valid ({} target(s), Notion-Version {})",
            config.path.display(),
            config.targets.len(),
            config.notion.version
        ),
    }];
    findings.extend(config.skipped.iter().map(|skipped| Finding {
        target: None,
        ok: false,
        message: format!("a connected workspace's target is skipped: {skipped}"),
    }));
    findings.push(check_state_dir(config));
    let exposures = audit(config);
    findings.extend(exposures.iter().map(|e| Finding {
        target: e.target.clone(),
        ok: false,
        message: e.to_string(),
    }));
    findings.extend(check_client_secret(config, &exposures));
    let client = NotionClient::new(&config.notion)?;
    for target in targets {
        // A token file that cannot be used as it is was reported above, with its fix.
        if exposures
            .iter()
            .any(|e| e.target.as_deref() == Some(&target.name))
        {
            continue;
        }
        check_target(config, &client, target, &mut findings).await;
    }
    Ok(findings)
}

/// Loads the OAuth client secret, if one is configured (the daemon needs it for every refresh).
/// A secret file whose mode or owner the audit reported is not reported again.
fn check_client_secret(config: &Config, exposures: &[Exposure]) -> Option<Finding> {
    let source = config.client_secret_source()?;
    let finding = |ok, message| Finding {
        target: None,
        ok,
        message,
    };
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

fn check_state_dir(config: &Config) -> Finding {
    let dir = &config.daemon.state_dir;
    let probe = create_private_dir(dir).and_then(|()| tempfile::tempfile_in(dir).map(drop));
    match probe {
        Ok(()) => Finding {
            target: None,
            ok: true,
            message: format!("state directory {} is writable", dir.display()),
        },
        Err(e) => Finding {
            target: None,
            ok: false,
            message: format!(
                "state directory {} is not writable ({e}); create it and give the daemon's user write access, or set [daemon] state_dir",
                dir.display()
            ),
        },
    }
}

async fn check_target(
    config: &Config,
    client: &NotionClient,
    target: &Target,
    findings: &mut Vec<Finding>,
) {
    let name = &target.name;
    match target.inbox.parent() {
        Some(dir) if dir.is_dir() => findings.push(Finding::ok(
            target,
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
            format!(
                "the inbox's directory {} does not exist; create it (producers need write access to it)",
                target.inbox.parent().unwrap_or(&target.inbox).display()
            ),
        )),
    }
    let token = match super::databases::usable_token(client, target, config).await {
        Ok(t) => t,
        Err(e) => {
            findings.push(Finding::problem(target, format!("{e:#}")));
            return;
        }
    };
    findings.push(Finding::ok(
        target,
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
                format!(
                    "the destination is not visible to the token ({e}); share the database with the integration (its ••• menu, Connections) or run `notion-inbox authorize --target {name}` and pick it; `notion-inbox databases --target {name}` lists what the token sees"
                ),
            ));
            return;
        }
        Err(e) => {
            findings.push(Finding::problem(target, e.to_string()));
            return;
        }
    };
    findings.push(Finding::ok(
        target,
        format!("writes to {}", resolved.describe()),
    ));
    match Mapper::new(target, &resolved) {
        Ok(m) => findings.push(Finding::ok(
            target,
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
            format!("{e}; fix [target.properties] in {}", config.path.display()),
        )),
    }
}

/// Prints findings for people.
pub fn print_text(findings: &[Finding]) {
    for f in findings {
        let mark = if f.ok { "ok     " } else { "PROBLEM" };
        match &f.target {
            Some(t) => println!("{mark} [{t}] {}", f.message),
            None => println!("{mark} {}", f.message),
        }
    }
    let problems = findings.iter().filter(|f| !f.ok).count();
    if problems == 0 {
        println!("ready: `notion-inbox run` can deliver every target");
    } else {
        println!("{problems} problem(s) to fix before `notion-inbox run`");
    }
}
