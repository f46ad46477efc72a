//! One target's runner: prepares the target (checkpoint, token, database), then drives its
//! delivery core ([`notion_inbox_core::delivery::Core`]): it performs the core's actions and feeds their
//! answers back, with the clock, the inbox's wake-ups and the stop. Every rule of delivery is in
//! the core; this file only does I/O.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Target};
use crate::daemon::health::{Health, TargetState};
use crate::daemon::perform::{Io, Work};
use crate::error::chain as error_chain;
use crate::inbox::{FileIdentity, Inlet, TailOptions, Tailer};
use crate::notion::cache::ResolutionCache;
use crate::notion::{NotionClient, NotionError, PageBody, Resolved, TokenHandle};
use crate::record::Mapper;
use crate::state::checkpoint::{Checkpoint, CheckpointStore, CheckpointWriter};
use crate::state::deadletter::DeadLetterFile;
use notion_inbox_core::backoff::Backoff;
use notion_inbox_core::delivery::{Core, CoreConfig, Event};
use notion_inbox_core::dormancy::{Cause, Dormant, Looks};

/// Runs one target until `stop` is cancelled; in-flight requests then get `grace` to finish.
pub struct TargetRunner {
    /// The whole configuration (the token handle needs the client credentials).
    pub config: Arc<Config>,
    /// This target.
    pub target: Target,
    /// The process's Notion client.
    pub client: NotionClient,
    /// Woken by the file watcher when the inbox's directory changes; holds the files it opened
    /// after they left the inbox path.
    pub inlet: Arc<Inlet>,
    /// Shared health and counters.
    pub state: Arc<TargetState>,
}

/// What `prepare` hands to `pump`.
struct Prepared {
    loaded: Option<Checkpoint>,
    /// Shared with the blocking pool, which does every save.
    writer: Arc<Mutex<CheckpointWriter>>,
    token: TokenHandle,
    resolved: Resolved,
    mapper: Mapper,
    tailer: Tailer,
}

/// Why `pump` returned.
#[derive(Debug, PartialEq)]
enum Ended {
    /// The daemon stops the target.
    Stopped,
    /// Idle for `close_idle_after`: everything is closed; wait for work again.
    Idle,
}

/// What `prepare` waits for before connecting again.
#[derive(Debug)]
enum Wait {
    /// The slow backoff, and at least this long.
    AtLeast(Duration),
    /// A new token: Notion refused this one and a person must authorize.
    NewToken,
    /// A change to this file on this machine (a `chmod`, a `chown`, a rewrite), or the slow
    /// backoff, whichever comes first.
    FileFixed(std::path::PathBuf),
}

impl TargetRunner {
    /// Runs the target until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let name = self.target.name.clone();
        // Boxed: a target waiting for work holds a small task, not the pump's state.
        while self.wait_for_work(&stop).await
            && let Some(prepared) = Box::pin(self.prepare(&stop)).await
            && Box::pin(self.pump(prepared, &stop)).await == Ended::Idle
        {
            tracing::debug!(target_name = %name, "idle for {:?}: closed until the inbox changes", self.config.daemon.close_idle_after);
        }
        tracing::debug!(target_name = %name, "target stopped");
    }

    /// Waits, unprepared, while the target has nothing to deliver: looks at its inbox at each
    /// file event in its directory and at [`Looks`]' slowing interval, comparing what
    /// [`Dormant`] says (a stat, or the checkpoint against the file). False when stopped first.
    async fn wait_for_work(&self, stop: &CancellationToken) -> bool {
        let epoch = tokio::time::Instant::now();
        let mut looks = Looks::new(self.config.daemon.reconcile_interval, Duration::ZERO);
        let mut dormant = Dormant::new();
        let mut cause = Cause::First;
        let mut idle_shown = false;
        loop {
            let (state_dir, name, inbox) = (
                self.config.daemon.state_dir.clone(),
                self.target.name.clone(),
                self.target.inbox.clone(),
            );
            let seen = dormant;
            // Files the watcher opened after they left the inbox path are work, whatever the
            // path shows.
            let arrived = self.inlet.has_arrivals();
            // The look stats and may open the inbox path, which producers control: never on a
            // worker.
            let (idle, whole, now) = tokio::task::spawn_blocking(move || {
                let now = crate::inbox::look::stamp(&inbox);
                let whole = seen.whole_look(cause, now);
                let idle = !arrived
                    && (!whole || {
                        let store = CheckpointStore::existing(&state_dir);
                        super::idle::nothing_to_deliver(store.as_ref(), &name, &inbox)
                    });
                (idle, whole, now)
            })
            .await
            .unwrap_or((false, true, None));
            dormant.looked(now, whole);
            if !idle {
                if idle_shown {
                    tracing::info!(target_name = %self.target.name, "the inbox has records; connecting");
                    self.state.set_health(Health::Starting);
                }
                return true;
            }
            if !idle_shown {
                self.state.set_health(Health::Idle);
                idle_shown = true;
            }
            looks.looked(epoch.elapsed(), true, &mut rand::rng());
            cause = tokio::select! {
                () = self.inlet.notified() => Cause::FileEvent,
                () = tokio::time::sleep_until(epoch + looks.next()) => Cause::Timer,
                () = stop.cancelled() => return false,
            };
        }
    }

    /// Sleeps `wait` or until the inbox wakes; false when stopped.
    async fn pause(&self, stop: &CancellationToken, wait: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = self.inlet.notified() => true,
            () = stop.cancelled() => false,
        }
    }

    /// Loads the checkpoint, the token and the schema and opens the inbox, retrying what can be
    /// retried. Returns `None` when stopped before ready.
    async fn prepare(&self, stop: &CancellationToken) -> Option<Prepared> {
        let name = self.target.name.clone();
        let daemon = &self.config.daemon;
        let mut slow = Backoff::new(Duration::from_secs(2), Duration::from_secs(300));
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
        let state_dir = daemon.state_dir.clone();
        let (loaded, writer) = loop {
            let dir = state_dir.clone();
            let n = name.clone();
            let opened = tokio::task::spawn_blocking(move || {
                CheckpointStore::open(&dir).and_then(|store| store.writer(&n))
            })
            .await;
            match opened {
                Ok(Ok(ok)) => break ok,
                Ok(Err(e)) => {
                    // A damaged checkpoint needs a person; a full or read-only disk heals.
                    let health = if matches!(e, crate::state::StateError::Write { .. }) {
                        Health::Paused(format!(
                            "target {name}: {}; retrying by itself",
                            error_chain(&e)
                        ))
                    } else {
                        Health::Stopped(format!("target {name}: {}", error_chain(&e)))
                    };
                    self.state.set_health(health);
                }
                Err(e) => self.state.set_health(Health::Paused(format!(
                    "target {name}: the checkpoint reader crashed: {e}"
                ))),
            }
            if !self
                .pause(stop, slow.next_delay(&mut rng).max(Duration::from_secs(1)))
                .await
            {
                return None;
            }
        };
        let opts = TailOptions {
            max_line: daemon.max_line_bytes as usize,
            ..TailOptions::default()
        };
        let start = loaded.as_ref().and_then(Checkpoint::position);
        let next = loaded.as_ref().map(|c| c.next.clone()).unwrap_or_default();
        // With the files it holds, in reading order, once their identities settled (for a first
        // checkpoint, when there is none).
        // Files rotated away while no run held them are looked for (see `inbox::reader::scan`).
        if let Some(since) = writer.loaded_written() {
            self.inlet.push(crate::inbox::Arrival::Rescan {
                since,
                restart: true,
            });
        }
        let (tailer, held) = loop {
            let (inbox, next) = (self.target.inbox.clone(), next.clone());
            let inlet = self.inlet.clone();
            // Opening touches the inbox's directory, which producers control: never on a worker.
            let opened = tokio::task::spawn_blocking(move || {
                Tailer::resume_attached(inbox, opts, start, &next, Some(inlet)).map(|mut t| {
                    t.observe();
                    let held = t.order();
                    (t, held)
                })
            })
            .await;
            match opened {
                Ok(Ok(t)) => break t,
                Ok(Err(e)) => self.state.set_health(Health::Paused(format!(
                    "target {name}: {}",
                    error_chain(&e)
                ))),
                Err(e) => self.state.set_health(Health::Paused(format!(
                    "target {name}: the reader crashed: {e}"
                ))),
            }
            if !self.pause(stop, daemon.reconcile_interval).await {
                return None;
            }
        };
        // The inbox is held from here on, and a checkpoint names it, before connecting (which
        // may wait for Notion or a person): a file rotated away meanwhile, or across a restart,
        // is then still read.
        let writer = Arc::new(Mutex::new(writer));
        let loaded = match loaded {
            Some(cp) => Some(cp),
            None => self.first_sight(&held, &writer).await,
        };
        let (token, resolved, mapper) = self.connect_until_ready(stop).await?;
        tracing::info!(target_name = %self.target.name, "rows go to {}", resolved.describe());
        self.state.set_health(Health::Ok);
        Some(Prepared {
            loaded,
            writer,
            token,
            resolved,
            mapper,
            tailer,
        })
    }

    /// For a target without a checkpoint: saves one that names `held`, the files its tailer
    /// holds, at their start, and returns it (the core then starts from it as from none).
    /// Without it a restart would know nothing of a file rotated away before the first record
    /// was read. If the save fails, the core's own first save names them.
    async fn first_sight(
        &self,
        held: &[crate::inbox::FileIdentity],
        writer: &Arc<Mutex<CheckpointWriter>>,
    ) -> Option<Checkpoint> {
        let (&first, rest) = held.split_first()?;
        let mut cp = Checkpoint::new(
            Some(crate::inbox::Position {
                file: first,
                offset: 0,
            }),
            Vec::new(),
        );
        cp.next = rest.to_vec();
        let writer = writer.clone();
        let saved = tokio::task::spawn_blocking(move || {
            let result = writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .save(&cp, true);
            result.map(|()| cp)
        })
        .await;
        match saved {
            Ok(Ok(cp)) => Some(cp),
            Ok(Err(e)) => {
                tracing::debug!(target_name = %self.target.name, "cannot save the first checkpoint yet: {}", error_chain(&e));
                None
            }
            Err(e) => {
                tracing::warn!(target_name = %self.target.name, "the first checkpoint's save crashed: {e}");
                None
            }
        }
    }

    /// Connects (see [`TargetRunner::connect`]) until it works, showing in the health why not yet
    /// and waiting as the failure says. `None` when stopped first.
    async fn connect_until_ready(
        &self,
        stop: &CancellationToken,
    ) -> Option<(TokenHandle, Resolved, Mapper)> {
        let mut slow = Backoff::new(Duration::from_secs(2), Duration::from_secs(300));
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
        loop {
            let (health, wait) = match self.connect().await {
                Ok(ready) => return Some(ready),
                Err(not_ready) => not_ready,
            };
            self.state.set_health(health);
            let go_on = match wait {
                // Asking Notion again would only spend the budget: wait until the token changes
                // (`authorize` rewrites the file; a fixed token changes by reload).
                Wait::NewToken => self.wait_for_new_token(stop).await,
                // A file on this machine must be fixed: try again as soon as it changes, or after
                // the backoff.
                Wait::FileFixed(path) => {
                    let limit = slow.next_delay(&mut rng).max(Duration::from_secs(1));
                    self.wait_for_change(&path, stop, Some(limit)).await
                }
                Wait::AtLeast(least) => {
                    self.pause(stop, slow.next_delay(&mut rng).max(least)).await
                }
            };
            if !go_on {
                return None;
            }
        }
    }

    /// Waits until the target's token file is written anew or its mode or owner change (false if
    /// stopped first). A fixed token only changes with the configuration, which restarts the
    /// target, so this waits for the stop.
    async fn wait_for_new_token(&self, stop: &CancellationToken) -> bool {
        let crate::config::TokenSource::File(path) = &self.target.token else {
            stop.cancelled().await;
            return false;
        };
        self.wait_for_change(path, stop, None).await
    }

    /// Waits until the file at `path` changes (content, inode, mode or owner: a rewrite, a
    /// `chmod` or a `chown`), or `limit` passes; checked every `reconcile_interval`. False if
    /// stopped first.
    async fn wait_for_change(
        &self,
        path: &std::path::Path,
        stop: &CancellationToken,
        limit: Option<Duration>,
    ) -> bool {
        let stamp = |p: &std::path::Path| {
            std::fs::metadata(p).ok().map(|m| {
                use std::os::unix::fs::MetadataExt;
                // ctime moves with chmod and chown; mtime and size with a rewrite in place.
                (
                    m.ino(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec(),
                    m.size(),
                )
            })
        };
        let before = stamp(path);
        let until = limit.map(|l| tokio::time::Instant::now() + l);
        loop {
            let tick = self.config.daemon.reconcile_interval;
            let tick = until.map_or(tick, |u| {
                tick.min(u.saturating_duration_since(tokio::time::Instant::now()))
            });
            tokio::select! {
                () = tokio::time::sleep(tick) => {}
                () = stop.cancelled() => return false,
            }
            if stamp(path) != before {
                tracing::info!(target_name = %self.target.name, file = %path.display(), "the file changed; trying again");
                return true;
            }
            if until.is_some_and(|u| u <= tokio::time::Instant::now()) {
                return true;
            }
        }
    }

    /// Loads the token, resolves the destination and checks the mapping. On failure, the health to
    /// show and what to wait for before trying again.
    async fn connect(&self) -> Result<(TokenHandle, Resolved, Mapper), (Health, Wait)> {
        let name = &self.target.name;
        let needs_auth = |why: String| {
            let message =
                super::perform::refused_authorization(name, self.target.record.is_some(), &why);
            (Health::NeedsAuthorization(message), Wait::NewToken)
        };
        let fix_file = |why: String, path: &std::path::Path| {
            (
                Health::Paused(format!("target {name}: {why}")),
                Wait::FileFixed(path.to_owned()),
            )
        };
        let token = match TokenHandle::load(&self.target, &self.config) {
            Ok(token) => token,
            Err(NotionError::Local(e)) => {
                let why = format!("{e}; delivery resumes by itself once it is fixed");
                return Err(fix_file(why, e.path()));
            }
            Err(e) => return Err(needs_auth(e.to_string())),
        };
        let cache = self.resolution_cache();
        let key = self.resolution_key(&token);
        let now = std::time::SystemTime::now();
        if let Some(key) = &key
            && let Some(resolved) = cache.load(key, self.client.version(), now)
        {
            // A mapping changed since no longer fits the cached schema: ask Notion again.
            if let Ok(mapper) = Mapper::new(&self.target, &resolved) {
                tracing::debug!(target_name = %name, "the resolution is cached; no request");
                return Ok((token, resolved, mapper));
            }
        }
        let mut refreshed = false;
        let resolved = loop {
            let sent_with = token.generation();
            match self.client.resolve(&self.target, &token).await {
                Ok(r) => break r,
                Err(e) if e.is_unauthorized() && token.can_refresh() && !refreshed => {
                    refreshed = true;
                    match token.refresh_from(&self.client, sent_with).await {
                        Ok(()) => continue,
                        Err(e) if e.needs_authorization() => {
                            return Err(needs_auth(error_chain(&e)));
                        }
                        Err(e) => {
                            return Err(match e.local_file() {
                                // A file on this machine: its fix is picked up when it changes.
                                Some(path) => fix_file(error_chain(&e), path),
                                // The token endpoint failed for now: try again later, not a
                                // person's job.
                                None => (
                                    Health::Paused(format!(
                                        "target {name}: the token could not be refreshed for now ({}); retrying by itself",
                                        error_chain(&e)
                                    )),
                                    Wait::AtLeast(Duration::ZERO),
                                ),
                            });
                        }
                    }
                }
                Err(e) if e.is_unauthorized() => {
                    return Err(needs_auth(format!(
                        "Notion refused its token ({e}); replace the token (then reload) or authorize again"
                    )));
                }
                Err(e) => {
                    return Err((
                        Health::Paused(format!("target {name}: {e}")),
                        Wait::AtLeast(Duration::ZERO),
                    ));
                }
            }
        };
        let mapper = Mapper::new(&self.target, &resolved).map_err(|e| {
            (
                Health::Paused(format!(
                    "target {name}: the mapping does not fit {}: {e}; fix [target.properties] or the database (checked again periodically)",
                    resolved.describe()
                )),
                Wait::AtLeast(Duration::from_secs(30)),
            )
        })?;
        // Keyed again: discovery may have saved a choice with the token meanwhile.
        if let Some(key) = self.resolution_key(&token) {
            cache.save(&key, &resolved, now);
        }
        Ok((token, resolved, mapper))
    }

    fn resolution_cache(&self) -> ResolutionCache {
        ResolutionCache::new(&self.config.daemon.state_dir, &self.target.name)
    }

    /// The cache key of what this target resolves with `token`; `None` while it must discover.
    fn resolution_key(&self, token: &TokenHandle) -> Option<String> {
        let destination = NotionClient::destination(&self.target, token)?;
        Some(ResolutionCache::key(
            self.client.base().as_str(),
            self.client.version(),
            &format!("{destination:?}"),
        ))
    }

    /// Drives the core until it has finished after the stop.
    async fn pump(&self, p: Prepared, stop: &CancellationToken) -> Ended {
        let daemon = &self.config.daemon;
        let cfg = CoreConfig {
            name: self.target.name.clone(),
            window: self.target.max_in_flight,
            dedupe_property: self.target.dedupe_property.clone(),
            destination: p.resolved.describe(),
            settle: daemon.dedupe_settle,
        };
        let mut core: Core<PageBody, FileIdentity> =
            Core::new(cfg, p.loaded.as_ref(), rand::random());
        let token = p.token.clone();
        let io = Arc::new(Io {
            name: self.target.name.clone(),
            inbox: self.target.inbox.clone(),
            max_line_bytes: daemon.max_line_bytes,
            client: self.client.clone(),
            token: p.token,
            resolved: Arc::new(p.resolved),
            mapper: Arc::new(p.mapper),
            dedupe_property: self.target.dedupe_property.clone(),
            connected: self.target.record.is_some(),
            resolution: self.resolution_cache(),
            tailer: Arc::new(Mutex::new(p.tailer)),
            writer: p.writer,
            dead: Arc::new(Mutex::new(DeadLetterFile::new(
                self.target.dead_letter_path(daemon),
            ))),
        });
        let epoch = tokio::time::Instant::now();
        let mut requests: JoinSet<Event<PageBody, FileIdentity>> = JoinSet::new();
        let mut local: JoinSet<Event<PageBody, FileIdentity>> = JoinSet::new();
        let mut looks = Looks::new(daemon.reconcile_interval, Duration::ZERO);
        let mut grace: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        let mut stopped = false;
        let mut closing = false;
        let mut look = false;
        loop {
            while let Some(action) = core.poll_action(epoch.elapsed()) {
                match io.perform(action) {
                    Work::Request(work) => requests.spawn(work),
                    Work::Local(work) => local.spawn_blocking(work),
                    Work::Done => continue,
                };
            }
            // What the core counted while handling the last event and handing out its actions.
            self.state.absorb(core.take_stats());
            self.state
                .counters
                .in_flight
                .store(requests.len() as u64, std::sync::atomic::Ordering::Relaxed);
            if core.finished() {
                break;
            }
            // A wake-up reads first (the read looks at the path too); only a core that cannot
            // read now (the window is full) looks at the path without reading.
            if std::mem::take(&mut look) && !core.is_reading() {
                local.spawn_blocking(Self::observe(&io));
            }
            let deadline = core.next_deadline(epoch.elapsed()).map(|d| epoch + d);
            let event = tokio::select! {
                Some(done) = requests.join_next() => match done {
                    Ok(event) => event,
                    Err(_) => continue, // aborted after the grace period
                },
                Some(done) = local.join_next() => match done {
                    Ok(event) => event,
                    Err(_) => continue,
                },
                () = self.inlet.notified() => {
                    looks.active(epoch.elapsed());
                    look = true;
                    Event::Wake
                }
                () = tokio::time::sleep_until(epoch + looks.next()) => {
                    if self.reconcile(&io, &token) {
                        self.feed(&mut core, epoch.elapsed(), Event::TokenChanged);
                    }
                    // Quiet, no look of the runner's own out, and nothing left to read.
                    let now = epoch.elapsed();
                    let idle = core.quiet(now)
                        && local.is_empty()
                        && io.tailer.try_lock().is_ok_and(|t| t.settled());
                    looks.looked(now, idle, &mut rand::rng());
                    if !stopped && looks.idle_for(now) >= daemon.close_idle_after {
                        // Stopping with nothing in flight ends at once, with a durable save at
                        // the committed position; `run` then waits unprepared. No grace period:
                        // a close waits for that save however long the state disk needs, as the
                        // save names the files the tailer holds, which a closed target does not.
                        stopped = true;
                        closing = true;
                        Event::Stop
                    } else {
                        look = true;
                        Event::Wake
                    }
                }
                () = sleep_until(deadline) => Event::Tick,
                () = stop.cancelled(), if !stopped || closing => {
                    closing = false;
                    stopped = true;
                    grace = Some(Box::pin(tokio::time::sleep(daemon.shutdown_grace)));
                    Event::Stop
                }
                () = async { grace.as_mut().expect("armed").await }, if grace.is_some() => {
                    grace = None;
                    requests.abort_all();
                    Event::GraceOver
                }
            };
            self.feed(&mut core, epoch.elapsed(), event);
        }
        if closing { Ended::Idle } else { Ended::Stopped }
    }

    /// Feeds the core one event and publishes its health until it has finished (what it counted
    /// is taken once its actions are handed out).
    fn feed(
        &self,
        core: &mut Core<PageBody, FileIdentity>,
        now: std::time::Duration,
        event: Event<PageBody, FileIdentity>,
    ) {
        core.handle(now, event);
        if !core.finished() {
            self.state.set_health(core.health());
        }
    }

    /// Looks at the inbox path for new files without reading (a rotation seen while the window
    /// is full must not wait for the next read); run on the blocking pool.
    fn observe(io: &Arc<Io>) -> impl FnOnce() -> Event<PageBody, FileIdentity> + Send + 'static {
        let io = io.clone();
        move || {
            let mut tailer = io.tailer.lock().unwrap_or_else(|e| e.into_inner());
            // Nothing queued is a plain wake-up (the inbox may have grown).
            crate::record::prepare::observe(&mut tailer, &io.name)
                .map_or(Event::Wake, Event::Observed)
        }
    }

    /// The periodic look without a file event: the backlog for status and whether someone wrote a
    /// new token. Both are `stat`s of files whose type is known (the tailer's open file, the
    /// token file in the state directory), so they run here, without a trip to the blocking pool;
    /// the backlog is skipped when a read holds the tailer.
    fn reconcile(&self, io: &Arc<Io>, token: &TokenHandle) -> bool {
        if let Ok(tailer) = io.tailer.try_lock()
            && let Ok(b) = tailer.backlog()
        {
            self.state
                .counters
                .backlog_bytes
                .store(b.bytes, std::sync::atomic::Ordering::Relaxed);
        }
        let rate = self.client.effective_rate(&io.token);
        self.state
            .counters
            .effective_rate_milli
            .store((rate * 1000.0) as u64, std::sync::atomic::Ordering::Relaxed);
        token.reload_if_changed().unwrap_or(false)
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
