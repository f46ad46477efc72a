//! `notion-inbox status`: each target's position, backlog and health, from the state directory and
//! the inboxes. Read-only, so it is safe while the daemon runs.

use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, Target, TokenSource};
use crate::daemon::health::StatusSnapshot;
use crate::inbox::{Item, TailOptions, Tailer};
use crate::state::checkpoint::CheckpointStore;

/// How many backlog bytes `status` reads to count lines before it estimates the rest.
const COUNT_LIMIT: u64 = 64 << 20;

/// The status of one target.
#[derive(Debug, Serialize)]
pub struct TargetStatus {
    /// The target.
    pub target: String,
    /// The inbox file.
    pub inbox: String,
    /// The committed position: file (inode) and offset, if anything was committed.
    pub committed_offset: Option<u64>,
    /// Bytes in the inbox after the committed position.
    pub backlog_bytes: u64,
    /// Complete lines after the committed position (estimated past 64 MiB).
    pub backlog_lines: u64,
    /// Whether `backlog_lines` is an estimate.
    pub backlog_estimated: bool,
    /// Seconds to drain the backlog at the configured rate.
    pub eta_seconds: f64,
    /// Entries in the dead-letter file.
    pub dead_letters: usize,
    /// The token, in words: fixed, file present (and when written), or missing.
    pub token: String,
    /// The token, as fields.
    pub token_info: TokenInfo,
    /// What the daemon last published, if it ran.
    pub daemon: Option<StatusSnapshot>,
    /// Whether the daemon runs now (it holds `<state_dir>/daemon.pid` locked). While it runs,
    /// `daemon` is what it published, or None when it has not reported this target yet.
    pub daemon_running: bool,
    /// A problem reading this target's state, if any.
    pub problem: Option<String>,
}

/// What `status` concludes, and exits with (see [`crate::exit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The daemon runs and every target is healthy (delivering, idle or starting).
    Healthy,
    /// The daemon runs, but a target needs attention (its `why` or `problem` says what).
    Attention,
    /// The daemon is not running, or has published nothing for a target.
    NotRunning,
}

impl Verdict {
    /// The verdict over `statuses`: not running wins over a problem, which wins over healthy.
    pub fn of(statuses: &[TargetStatus]) -> Verdict {
        let healthy = |s: &TargetStatus| {
            let state = s.daemon.as_ref().and_then(|d| d.health.get("state"));
            // Running, and not reported yet: starting.
            let state = state.and_then(|v| v.as_str()).or(Some("starting"));
            s.problem.is_none() && matches!(state, Some("ok" | "idle" | "starting"))
        };
        if statuses.is_empty() || statuses.iter().any(|s| !s.daemon_running) {
            Verdict::NotRunning
        } else if statuses.iter().all(healthy) {
            Verdict::Healthy
        } else {
            Verdict::Attention
        }
    }

    /// The exit status.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Healthy => 0,
            Verdict::Attention => crate::exit::FAILURE,
            Verdict::NotRunning => crate::exit::NOT_RUNNING,
        }
    }
}

/// What `status` tells of a target's token (never the token itself).
#[derive(Debug, Default, Serialize)]
pub struct TokenInfo {
    /// `"fixed"` (in the configuration) or `"file"` (from `authorize` or the connect page).
    pub source: &'static str,
    /// The token file, if the token comes from one.
    pub path: Option<String>,
    /// Whether the token file exists.
    pub present: bool,
    /// The workspace's name and id, as Notion gave them.
    pub workspace_name: Option<String>,
    /// The workspace's id.
    pub workspace_id: Option<String>,
    /// Who authorized.
    pub owner: Option<String>,
    /// When the code was exchanged (RFC 3339).
    pub obtained_at: Option<String>,
    /// When the token was last refreshed (RFC 3339).
    pub refreshed_at: Option<String>,
    /// Whether Notion issued a refresh token, so that an expired token renews by itself.
    pub can_refresh: Option<bool>,
    /// Why the file could not be read (as another user than the daemon's, say).
    pub unreadable: Option<String>,
}

fn token_info(target: &Target) -> TokenInfo {
    let TokenSource::File(path) = &target.token else {
        return TokenInfo {
            source: "fixed",
            present: true,
            ..TokenInfo::default()
        };
    };
    let mut info = TokenInfo {
        source: "file",
        path: Some(path.display().to_string()),
        present: path.exists(),
        ..TokenInfo::default()
    };
    if !info.present {
        return info;
    }
    match crate::notion::token::TokenFile::read(path) {
        Ok(file) => {
            let time = |t: chrono::DateTime<chrono::Utc>| {
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            };
            info.workspace_name = file.workspace_name.as_deref().map(crate::text::label);
            info.workspace_id =
                Some(crate::text::label(&file.workspace_id)).filter(|w| !w.is_empty());
            info.owner = file.owner.as_deref().map(crate::text::label);
            info.obtained_at = Some(time(file.obtained_at));
            info.refreshed_at = file.refreshed_at.map(time);
            info.can_refresh = Some(file.refresh_token.is_some());
        }
        Err(e) => info.unreadable = Some(e.to_string()),
    }
    info
}

/// Collects every target's status (or one target's).
pub fn collect(config: &Config, only: Option<&str>) -> anyhow::Result<Vec<TargetStatus>> {
    let targets: Vec<&Target> = match only {
        Some(name) => vec![config.target(name)?],
        None => config.targets.iter().collect(),
    };
    let state_dir = &config.daemon.state_dir;
    let mut published = crate::daemon::health::read_status(state_dir);
    let daemon = crate::state::running::running(state_dir);
    if let Some(pid) = daemon {
        // What an earlier daemon published is not the running one's: its targets are starting.
        published.retain(|_, s| s.pid == pid);
    }
    let silent = daemon.and_then(|_| heartbeat_age(state_dir));
    // Read only: nothing under the state directory is created by status.
    let store = CheckpointStore::existing(state_dir);
    Ok(targets
        .into_iter()
        .map(|t| {
            let mut s = one(config, t, store.as_ref(), &published);
            s.daemon_running = daemon.is_some();
            if let (Some(pid), Some(age)) = (daemon, silent)
                && s.problem.is_none()
            {
                s.problem = Some(format!(
                    "the daemon (pid {pid}) has published no status for {age} s: it may be hung; `journalctl -u notion-inbox` says what it does"
                ));
            }
            s
        })
        .collect())
}

/// How long the running daemon has published nothing, when that is longer than its heartbeat
/// allows (it rewrites `status.json` at least once a minute).
fn heartbeat_age(state_dir: &std::path::Path) -> Option<u64> {
    let path = crate::state::layout::StateDir(state_dir).status();
    let age = std::fs::metadata(path)
        .ok()?
        .modified()
        .ok()?
        .elapsed()
        .ok()?;
    (age > Duration::from_secs(150)).then_some(age.as_secs())
}

fn one(
    config: &Config,
    target: &Target,
    store: Option<&CheckpointStore>,
    published: &std::collections::HashMap<String, StatusSnapshot>,
) -> TargetStatus {
    let daemon = &config.daemon;
    let mut problem = None;
    let checkpoint = match store.map(|s| s.load(&target.name)) {
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            problem = Some(e.to_string());
            None
        }
        None => None,
    };
    let start = checkpoint.as_ref().and_then(|c| c.position());
    let (backlog_bytes, backlog_lines, backlog_estimated) = match backlog(target, config, start) {
        Ok(b) => b,
        Err(e) => {
            problem.get_or_insert(e);
            (0, 0, false)
        }
    };
    let dead_path = target.dead_letter_path(daemon);
    let dead_letters = count_lines(&dead_path).unwrap_or_else(|e| {
        problem.get_or_insert(format!("cannot read {}: {e}", dead_path.display()));
        0
    });
    let token = match &target.token {
        TokenSource::Fixed(_) => "fixed token in the configuration".to_owned(),
        TokenSource::File(path) => match std::fs::metadata(path) {
            Ok(meta) => {
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .map(|d| {
                        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
                    })
                    .unwrap_or_default();
                format!("{} (written {age} ago)", path.display())
            }
            Err(_) => format!(
                "missing: {}; run `notion-inbox authorize --target {}`",
                path.display(),
                target.name
            ),
        },
    };
    let snapshot = published.get(&target.name).cloned();
    TargetStatus {
        target: target.name.clone(),
        inbox: target.inbox.display().to_string(),
        committed_offset: start.map(|p| p.offset),
        backlog_bytes,
        backlog_lines,
        backlog_estimated,
        eta_seconds: backlog_lines as f64 / config.notion.requests_per_second,
        dead_letters,
        token,
        token_info: token_info(target),
        daemon_running: false,
        daemon: snapshot,
        problem,
    }
}

/// Bytes and lines after `start`, reading at most [`COUNT_LIMIT`] bytes to count lines.
fn backlog(
    target: &Target,
    config: &Config,
    start: Option<crate::inbox::Position>,
) -> Result<(u64, u64, bool), String> {
    let opts = TailOptions {
        max_line: config.daemon.max_line_bytes as usize,
        rotate_grace: Duration::ZERO,
        ..TailOptions::default()
    };
    let mut tailer = Tailer::new(target.inbox.clone(), opts, start).map_err(|e| e.to_string())?;
    let bytes = tailer.backlog().map_err(|e| e.to_string())?.bytes;
    let (mut lines, mut counted) = (0u64, 0u64);
    loop {
        let items = tailer
            .next_batch(4096, 8 << 20)
            .map_err(|e| e.to_string())?;
        let mut any = false;
        for item in items {
            if let Item::Line { pos, .. } | Item::Oversized { pos, .. } = item {
                lines += 1;
                counted += pos.end - pos.offset;
                any = true;
            }
        }
        if !any {
            // Stopped by the tailer's scan limit (a file of NULs, an endless line): what was
            // counted is a lower bound.
            return Ok((bytes, lines, tailer.more()));
        }
        if counted >= COUNT_LIMIT {
            let estimate = (lines as f64 * bytes as f64 / counted as f64).round() as u64;
            return Ok((bytes, estimate.max(lines), true));
        }
    }
}

/// Prints the status as text.
pub fn print_text(statuses: &[TargetStatus]) {
    for s in statuses {
        println!("target {}", s.target);
        println!("  inbox          {}", s.inbox);
        match s.committed_offset {
            Some(o) => println!("  committed      byte {o}"),
            None => println!("  committed      nothing yet"),
        }
        let approx = if s.backlog_estimated { "about " } else { "" };
        println!(
            "  backlog        {approx}{} lines, {} bytes (ETA {})",
            s.backlog_lines,
            s.backlog_bytes,
            humantime::format_duration(Duration::from_secs(s.eta_seconds.ceil() as u64))
        );
        println!("  dead letters   {}", s.dead_letters);
        println!("  token          {}", s.token);
        let t = &s.token_info;
        if let Some(obtained) = &t.obtained_at {
            println!(
                "                 workspace {}{}, obtained {obtained}{}; {}",
                t.workspace_name
                    .as_deref()
                    .or(t.workspace_id.as_deref())
                    .unwrap_or("?"),
                t.owner
                    .as_deref()
                    .map(|o| format!(" (by {o})"))
                    .unwrap_or_default(),
                t.refreshed_at
                    .as_deref()
                    .map(|r| format!(", refreshed {r}"))
                    .unwrap_or_default(),
                if t.can_refresh == Some(true) {
                    "renews by itself"
                } else {
                    "no refresh token: when it stops working, authorize again"
                }
            );
        }
        match &s.daemon {
            Some(d) => {
                let state = d
                    .health
                    .get("state")
                    .and_then(|v| v.as_str())
                    .unwrap_or("?");
                if s.daemon_running {
                    println!(
                        "  daemon         pid {}, {state} (as of {})",
                        d.pid, d.updated
                    );
                } else if let Some(at) = &d.stopped {
                    println!(
                        "  daemon         not running: pid {} stopped cleanly at {at}; start it with `systemctl start notion-inbox`",
                        d.pid
                    );
                } else {
                    println!(
                        "  daemon         not running: pid {} was last seen {state} at {}, and did not stop cleanly (killed or crashed; `journalctl -u notion-inbox` says why); start it with `systemctl start notion-inbox`",
                        d.pid, d.updated
                    );
                }
                if let Some(m) = d.health.get("message").and_then(|v| v.as_str()) {
                    println!("  why            {m}");
                }
                println!(
                    "  since start    {} delivered, {} dead-lettered, {} rate-limited, {} unknown outcomes",
                    d.delivered, d.dead_lettered, d.rate_limited, d.outcome_unknown
                );
                if d.effective_rate > 0.0 {
                    println!("  rate now       {:.2} requests/s", d.effective_rate);
                }
                println!(
                    "  last delivery  {}",
                    d.last_delivery.as_deref().unwrap_or("none")
                );
                if let Some(e) = &d.last_error {
                    println!("  last error     {e}");
                }
            }
            None if s.daemon_running => {
                println!("  daemon         running, starting this target (not reported yet)")
            }
            None => println!(
                "  daemon         not running: no status published for this target (the daemon has not run since it was added); start it with `systemctl start notion-inbox`"
            ),
        }
        if let Some(p) = &s.problem {
            println!("  problem        {p}");
        }
    }
}

/// The non-empty lines of a file (a missing one has none), counted as it streams by: producers
/// decide how large a dead-letter file grows, so it is never held in memory.
fn count_lines(path: &std::path::Path) -> std::io::Result<usize> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut buf = vec![0u8; 64 * 1024];
    let (mut count, mut in_line) = (0, false);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(count + usize::from(in_line));
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                count += usize::from(in_line);
                in_line = false;
            } else if !b.is_ascii_whitespace() {
                in_line = true;
            }
        }
    }
}
