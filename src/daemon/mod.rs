//! `notion-inbox run`: one process serving every target.
//!
//! The supervisor loads the configuration, starts one [`target::TargetRunner`] per target, and turns
//! signals into intents: SIGTERM/SIGINT stop (in-flight requests get the grace period), SIGHUP reloads
//! the configuration and restarts only the targets that changed. A bad configuration on reload keeps
//! the old one running and says why.

pub mod health;
pub(crate) mod idle;
pub(crate) mod metrics;
pub(crate) mod perform;
pub(crate) mod setup;
pub(crate) mod signals;
pub(crate) mod target;
pub(crate) mod tenants;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Target};
use crate::daemon::health::TargetState;
use crate::daemon::signals::Intent;
use crate::inbox::watch::InboxWatcher;
use crate::notion::NotionClient;

/// How often the supervisor pings the watchdog, publishes status and logs progress (at most).
const HEARTBEAT: Duration = Duration::from_secs(5);

/// How often the supervisor looks for connected workspaces that came or went (one `stat` of
/// `<state_dir>/targets`).
const CONNECTIONS: Duration = Duration::from_secs(1);

/// A target that is running.
struct Running {
    /// Its configuration, to tell whether a reload changed it.
    fingerprint: String,
    /// Its inbox, to stop watching it.
    inbox: PathBuf,
    /// Cancelled to stop it.
    stop: CancellationToken,
    /// The runner's task.
    handle: JoinHandle<()>,
    /// Its shared health and counters.
    state: Arc<TargetState>,
}

/// Why the daemon could not start (or reload). Each names what failed and the fix.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The signal handlers could not be installed.
    #[error("cannot listen for signals: {0}")]
    Signals(#[source] std::io::Error),
    /// A directory of the state directory could not be created.
    #[error(
        "cannot create {}: {source}; create the state directory and make it writable by this user, or set [daemon] state_dir",
        path.display()
    )]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// Another daemon runs on the same state directory.
    #[error(transparent)]
    Running(#[from] crate::state::running::LockError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] crate::notion::NotionError),
    /// inotify could not be set up.
    #[error(transparent)]
    Watch(#[from] crate::inbox::InboxError),
    /// A listener (`metrics_listen`, the connect page) could not be opened.
    #[error("cannot serve {what}: {source}")]
    Listen {
        /// Which listener.
        what: &'static str,
        /// What the system said (it names the address).
        #[source]
        source: std::io::Error,
    },
}

/// Runs the daemon with the configuration at `config_path` until a stop signal arrives.
pub async fn run(config_path: PathBuf) -> Result<(), DaemonError> {
    setup::raise_open_files_limit();
    setup::limit_malloc_arenas();
    let intents = signals::listen().map_err(DaemonError::Signals)?;
    run_with(config_path, intents).await
}

/// Runs the daemon, taking intents from `intents` (tests inject them).
pub async fn run_with(
    config_path: PathBuf,
    mut intents: mpsc::Receiver<Intent>,
) -> Result<(), DaemonError> {
    // The configuration file's settings and targets; runners share this one `Config`, and the
    // connected workspaces' targets are kept by `tenants`, one by one.
    let config = Arc::new(Config::load_file(&config_path)?);
    let mut tenants = tenants::Tenants::new(&config.daemon.state_dir);
    setup::prepare_state_dir(&config.daemon.state_dir)?;
    // Held until the daemon returns: `status` reads "running" from it.
    let _running = crate::state::running::lock(&config.daemon.state_dir)?;
    let targets = all_targets(&config, &mut tenants);
    setup::warn_exposures_of(&config, &targets);
    let mut client =
        NotionClient::new(&config.notion)?.sharing_budget(&config.daemon.state_dir, true);
    let watcher = std::sync::Mutex::new(InboxWatcher::new()?);
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    let mut current = config;
    apply(&current, &targets, &client, &watcher, &mut running).await;
    drop(targets);
    let metric_targets = metrics::Targets::default();
    metric_targets.set(running.values().map(|r| r.state.clone()));
    let metrics_server = match current.daemon.metrics_listen {
        Some(addr) => Some(metrics::serve(addr, metric_targets.clone()).await.map_err(
            |source| DaemonError::Listen {
                what: "metrics",
                source,
            },
        )?),
        None => None,
    };
    // The connect page: its settings are read at start (a change needs a restart).
    let connect_server = match current.connect.as_ref().and_then(|c| c.page.clone()) {
        Some(page) => {
            let url = page.public_url.clone();
            let server = crate::connect::serve(current.clone(), client.clone(), page)
                .await
                .map_err(|source| DaemonError::Listen {
                    what: "the connect page",
                    source,
                })?;
            tracing::info!(public_url = %url, "serving the connect page");
            Some(server)
        }
        None => None,
    };
    notify_systemd(&[sd_notify::NotifyState::Ready]);
    tracing::info!(targets = running.len(), config = %config_path.display(), "notion-inbox is running");

    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    // The heartbeat pings the watchdog, publishes STATUS= and status.json, and logs progress.
    let mut heartbeat = tokio::time::interval(watchdog.unwrap_or(HEARTBEAT).min(HEARTBEAT));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_delivered: u64 = 0;
    let status_file = Arc::new(std::sync::Mutex::new(health::StatusWriter::new(
        &current.daemon.state_dir,
    )));
    let mut last_status_write: Option<JoinHandle<()>> = None;
    let mut attention = Attention::default();
    let mut connections = tokio::time::interval(CONNECTIONS);
    connections.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            intent = intents.recv() => match intent {
                Some(Intent::Reload) => {
                    notify_systemd(&[sd_notify::NotifyState::Reloading]);
                    let mut s = Supervisor { current: &mut current, tenants: &mut tenants, client: &mut client, watcher: &watcher, running: &mut running };
                    s.reload(&config_path).await?;
                    metric_targets.set(running.values().map(|r| r.state.clone()));
                    notify_systemd(&[sd_notify::NotifyState::Ready]);
                }
                Some(Intent::Shutdown) | None => break,
            },
            _ = connections.tick() => {
                // A workspace connected, reconnected or left: those targets alone.
                let changes = tenants.changes(&current);
                if !changes.is_empty() {
                    let changed = apply_changes(&current, changes, &client, &watcher, &mut running).await;
                    metric_targets.update(changed.iter().map(|name| (name.as_str(), running.get(name).map(|r| r.state.clone()))));
                }
            },
            _ = heartbeat.tick() => {
                if watchdog.is_some() {
                    notify_systemd(&[sd_notify::NotifyState::Watchdog]);
                }
                let delivered: u64 = running.values().map(|r| r.state.counters.delivered.load(std::sync::atomic::Ordering::Relaxed)).sum();
                let status = status_line(&running);
                let snapshots = running.values().map(|r| r.state.snapshot()).collect();
                let status_file = status_file.clone();
                let events = attention.news(&running);
                let state_dir = current.daemon.state_dir.clone();
                // Off the runtime: a file write must not stall the targets' tasks.
                last_status_write = Some(tokio::task::spawn_blocking(move || {
                    if let Err(e) = status_file.lock().unwrap_or_else(|e| e.into_inner()).write(snapshots) {
                        tracing::debug!("cannot write the status file: {e}");
                    }
                    Attention::log(&state_dir, &events);
                }));
                notify_systemd(&[sd_notify::NotifyState::Status(&status)]);
                if delivered != last_delivered {
                    tracing::info!(delivered_since_last = delivered.saturating_sub(last_delivered), "{status}");
                    last_delivered = delivered;
                }
            }
        }
    }
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("stopping: letting in-flight requests finish");
    for r in running.values() {
        r.stop.cancel();
    }
    let mut snapshots = Vec::with_capacity(running.len());
    for (_, r) in running {
        let _ = r.handle.await;
        let mut snapshot = r.state.snapshot();
        // Marks the clean stop; the writer stamps its time.
        snapshot.stopped = Some(String::new());
        snapshots.push(snapshot);
    }
    // The final status must not be overtaken by a heartbeat's write still in progress.
    if let Some(write) = last_status_write {
        let _ = write.await;
    }
    let _ = tokio::task::spawn_blocking(move || {
        status_file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write(snapshots)
    })
    .await;
    if let Some(server) = metrics_server {
        server.shutdown().await;
    }
    if let Some(server) = connect_server {
        server.shutdown().await;
    }
    tracing::info!("stopped; checkpoints saved");
    Ok(())
}

/// The targets that wait for a person (a refused authorization, a stop), as last put in the
/// event log, so that each episode is logged once.
#[derive(Default)]
struct Attention {
    reported: BTreeMap<String, String>,
}

impl Attention {
    /// The `needs_attention` events to log now: (target, why) of each target whose trouble is
    /// new. A target that recovered is forgotten, so a later episode is logged again.
    fn news(&mut self, running: &BTreeMap<String, Running>) -> Vec<(String, String)> {
        let mut news = Vec::new();
        self.reported.retain(|name, _| running.contains_key(name));
        for (name, r) in running {
            match r.state.health() {
                health::Health::NeedsAuthorization(why) | health::Health::Stopped(why) => {
                    if self.reported.get(name) != Some(&why) {
                        self.reported.insert(name.clone(), why.clone());
                        news.push((name.clone(), why));
                    }
                }
                _ => {
                    self.reported.remove(name);
                }
            }
        }
        news
    }

    /// Appends them to the event log (on the blocking pool).
    fn log(state_dir: &Path, events: &[(String, String)]) {
        for (target, why) in events {
            let event = crate::state::events::Event {
                event: "needs_attention",
                target,
                workspace_id: None,
                workspace_name: None,
                inbox: None,
                detail: Some(why),
            };
            crate::state::events::note(state_dir, &event);
        }
    }
}

/// The targets to run: the configuration file's, then every connected workspace's.
fn all_targets(config: &Config, tenants: &mut tenants::Tenants) -> Vec<Target> {
    let mut targets = config.targets.clone();
    targets.extend(tenants.all(config));
    targets
}

/// What a reload changes.
struct Supervisor<'a> {
    current: &'a mut Arc<Config>,
    tenants: &'a mut tenants::Tenants,
    client: &'a mut NotionClient,
    watcher: &'a std::sync::Mutex<InboxWatcher>,
    running: &'a mut BTreeMap<String, Running>,
}

impl Supervisor<'_> {
    /// Loads the configuration and every connected workspace's record again and makes the running
    /// targets match: only the targets that changed are stopped or started. A configuration that
    /// does not load leaves the old one in force, and says why.
    async fn reload(&mut self, config_path: &Path) -> Result<(), DaemonError> {
        match Config::load_file(config_path) {
            Ok(new) => {
                let new = Arc::new(new);
                if format!("{:?}", new.notion) != format!("{:?}", self.current.notion) {
                    *self.client =
                        NotionClient::new(&new.notion)?.sharing_budget(&new.daemon.state_dir, true);
                    stop_all(std::mem::take(self.running).into_iter().collect()).await;
                }
                *self.current = new;
                let targets = all_targets(self.current, self.tenants);
                setup::warn_exposures_of(self.current, &targets);
                apply(
                    self.current,
                    &targets,
                    self.client,
                    self.watcher,
                    self.running,
                )
                .await;
                tracing::info!(targets = self.running.len(), "configuration reloaded");
            }
            Err(e) => {
                tracing::error!("configuration not reloaded, the old one stays in force: {e}");
            }
        }
        Ok(())
    }
}

/// Applies the changes of some connected workspaces: each one's target is stopped, restarted
/// or started; no other target is touched. Returns the names of those that were.
async fn apply_changes(
    config: &Arc<Config>,
    changes: Vec<tenants::Change>,
    client: &NotionClient,
    watcher: &std::sync::Mutex<InboxWatcher>,
    running: &mut BTreeMap<String, Running>,
) -> Vec<String> {
    let (mut restarting, mut ending) = (Vec::new(), Vec::new());
    let mut starting = Vec::new();
    let mut touched = Vec::new();
    for (name, target) in changes {
        let same = match (&target, running.get(&name)) {
            (Some(t), Some(r)) => fingerprint(t) == r.fingerprint,
            _ => false,
        };
        if same {
            continue;
        }
        touched.push(name.clone());
        if let Some(r) = running.remove(&name) {
            match target {
                Some(_) => restarting.push((name, r)),
                None => ending.push((name, r)),
            }
        }
        starting.extend(target);
    }
    let (restarted, ended) = futures::join!(stop_all(restarting), stop_all(ending));
    unwatch_stopped(
        watcher,
        restarted,
        "its workspace's record changed; starting it again",
    );
    unwatch_stopped(
        watcher,
        ended,
        "its workspace's record was removed, is disconnected or cannot be used",
    );
    for target in &starting {
        start(config, target, client, watcher, running);
    }
    touched
}

fn unwatch_stopped(
    watcher: &std::sync::Mutex<InboxWatcher>,
    stopped: Vec<(String, PathBuf)>,
    why: &str,
) {
    for (name, inbox) in stopped {
        if let Err(e) = lock(watcher).unwatch(&inbox) {
            tracing::debug!(target_name = %name, "unwatch: {e}");
        }
        tracing::info!(target_name = %name, "target stopped: {why}");
    }
}

/// Stops targets all at once (each gets its shutdown grace at the same time, not one after the
/// other) and pings the systemd watchdog while waiting, so that a reload of many targets is not
/// taken for a hung daemon. Returns the names and inbox paths of the stopped targets.
async fn stop_all(targets: Vec<(String, Running)>) -> Vec<(String, std::path::PathBuf)> {
    for (_, r) in &targets {
        r.stop.cancel();
    }
    let mut stopped = Vec::with_capacity(targets.len());
    let mut handles = Vec::with_capacity(targets.len());
    for (name, r) in targets {
        stopped.push((name, r.inbox));
        handles.push(r.handle);
    }
    let all = futures::future::join_all(handles);
    tokio::pin!(all);
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    let mut ping = tokio::time::interval(watchdog.unwrap_or(HEARTBEAT).min(HEARTBEAT));
    loop {
        tokio::select! {
            _ = &mut all => break,
            _ = ping.tick() => {
                if watchdog.is_some() {
                    notify_systemd(&[sd_notify::NotifyState::Watchdog]);
                }
            }
        }
    }
    stopped
}

/// Starts, restarts and stops targets so that `running` matches `targets`.
async fn apply(
    config: &Arc<Config>,
    targets: &[Target],
    client: &NotionClient,
    watcher: &std::sync::Mutex<InboxWatcher>,
    running: &mut BTreeMap<String, Running>,
) {
    let wanted: BTreeMap<&str, &Target> = targets.iter().map(|t| (t.name.as_str(), t)).collect();
    let stale: Vec<String> = running
        .iter()
        .filter(|(name, r)| {
            wanted
                .get(name.as_str())
                .is_none_or(|t| fingerprint(t) != r.fingerprint)
        })
        .map(|(name, _)| name.clone())
        .collect();
    let stopping: Vec<(String, Running)> = stale
        .into_iter()
        .map(|name| {
            let r = running.remove(&name).expect("listed above");
            (name, r)
        })
        .collect();
    unwatch_stopped(watcher, stop_all(stopping).await, "reload");
    for target in targets {
        if !running.contains_key(&target.name) {
            start(config, target, client, watcher, running);
        }
    }
}

/// Starts `target`'s runner. `config` is shared by every runner: it is the configuration
/// file's, never one rebuilt per tenant.
fn start(
    config: &Arc<Config>,
    target: &Target,
    client: &NotionClient,
    watcher: &std::sync::Mutex<InboxWatcher>,
    running: &mut BTreeMap<String, Running>,
) {
    let inlet = Arc::new(crate::inbox::Inlet::new());
    if let Err(e) = lock(watcher).watch_with(&target.inbox, inlet.clone()) {
        tracing::error!(target_name = %target.name, "{e}; the inbox is still checked every {:?}", config.daemon.reconcile_interval);
    }
    let state = Arc::new(TargetState::new(target.name.clone()));
    let stop = CancellationToken::new();
    let runner = target::TargetRunner {
        config: config.clone(),
        target: target.clone(),
        client: client.clone(),
        inlet,
        state: state.clone(),
    };
    match &target.chosen {
        Some(db) => tracing::debug!(target_name = %target.name, chosen = %db, "target started"),
        None => tracing::debug!(target_name = %target.name, "target started"),
    }
    let handle = tokio::spawn(runner.run(stop.clone()));
    running.insert(
        target.name.clone(),
        Running {
            fingerprint: fingerprint(target),
            inbox: target.inbox.clone(),
            stop,
            handle,
            state,
        },
    );
}

/// What identifies a target's configuration. A fixed token is compared by a hash, never by value.
fn fingerprint(t: &Target) -> String {
    use secrecy::ExposeSecret;
    let token = match &t.token {
        crate::config::TokenSource::Fixed(s) => format!(
            "fixed:{:016x}",
            notion_inbox::hash::fnv1a64(s.expose_secret().as_bytes())
        ),
        crate::config::TokenSource::File(p) => format!("file:{}", p.display()),
    };
    format!(
        "{:?}|{:?}|{:?}|{}|{:?}|{:?}|{token}",
        t.inbox, t.destination, t.chosen, t.max_in_flight, t.dedupe_property, t.properties
    )
}

fn status_line(running: &BTreeMap<String, Running>) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let mut delivered = 0;
    let mut dead = 0;
    let mut troubled = Vec::new();
    for (name, r) in running {
        delivered += r.state.counters.delivered.load(Relaxed);
        dead += r.state.counters.dead_lettered.load(Relaxed);
        match r.state.health() {
            health::Health::Ok | health::Health::Idle | health::Health::Starting => {}
            other => troubled.push(format!("{name}: {other:?}")),
        }
    }
    let n = running.len();
    let mut s = format!(
        "{n} target{}, {delivered} delivered, {dead} dead-lettered",
        if n == 1 { "" } else { "s" }
    );
    if !troubled.is_empty() {
        s.push_str("; ");
        s.push_str(&troubled.join("; "));
    }
    s
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn notify_systemd(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify failed: {e}");
    }
}
