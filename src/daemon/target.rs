//! One target's pipeline: inbox → record → Notion → checkpoint.
//!
//! The runner owns the tailer, the commit tracker and the checkpoint; senders run as tasks. The
//! reader never dispatches a record more than `window` records past the PERSISTED checkpoint, so after
//! a crash the only records that may already be rows are the first `window` records after the
//! checkpoint: those are checked by key (or counted as possible duplicates) before being sent again.
//! That bound is what lets a record go out without an fsync in front of it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Target};
use crate::daemon::backoff::Backoff;
use crate::daemon::deadletter::{DeadLetter, DeadLetterFile};
use crate::daemon::health::{Counters, Health, TargetState};
use crate::daemon::line::{parse_line, record_key};
use crate::daemon::send::{Done, Job, Sender};
use crate::inbox::{Item, Position, TailOptions, Tailer};
use crate::notion::{NotionClient, Resolved, TokenHandle};
use crate::record::Mapper;
use crate::state::Commit;
use crate::state::checkpoint::{Checkpoint, CheckpointStore, CheckpointWriter, InFlight};

/// How often a checkpoint is written at most while records finish (it is also written, durably,
/// when the reader is held back by the window and half of it has finished, and at shutdown).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Runs one target until `stop` is cancelled; in-flight requests then get `grace` to finish.
pub struct TargetRunner {
    /// The whole configuration (the token handle needs the client credentials).
    pub config: Arc<Config>,
    /// This target.
    pub target: Target,
    /// The process's Notion client.
    pub client: NotionClient,
    /// Woken by the file watcher when the inbox's directory changes.
    pub wake: Arc<Notify>,
    /// Shared health and counters.
    pub state: Arc<TargetState>,
}

impl TargetRunner {
    /// Runs the target until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let name = self.target.name.clone();
        let Some(prepared) = self.prepare(&stop).await else {
            return;
        };
        if let Err(message) = self.pump(prepared, &stop).await {
            self.state.set_health(Health::Stopped(message));
            stop.cancelled().await;
        }
        tracing::debug!(target_name = %name, "target stopped");
    }

    /// Loads the checkpoint, the token and the schema, retrying what can be retried. Returns `None`
    /// when stopped before ready.
    async fn prepare(&self, stop: &CancellationToken) -> Option<Prepared> {
        let name = &self.target.name;
        let daemon = &self.config.daemon;
        let loaded = match CheckpointStore::open(&daemon.state_dir).and_then(|store| {
            let (loaded, writer) = store.writer(name)?;
            Ok((writer, loaded))
        }) {
            Ok(ok) => ok,
            Err(e) => {
                self.state.set_health(Health::Stopped(format!(
                    "target {name}: {}",
                    error_chain(&e)
                )));
                stop.cancelled().await;
                return None;
            }
        };
        let (writer, loaded) = loaded;
        let mut slow = Backoff::new(Duration::from_secs(2), Duration::from_secs(300));
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
        let (token, resolved, mapper) = loop {
            match self.connect().await {
                Ok(ready) => break ready,
                Err((health, retry)) => {
                    let needs_auth = matches!(health, Health::NeedsAuthorization(_));
                    self.state.set_health(health);
                    if needs_auth {
                        // Asking Notion again would only spend the budget: wait until the token
                        // changes (`authorize` rewrites the file; a fixed token changes by reload).
                        if !self.wait_for_new_token(stop).await {
                            return None;
                        }
                        continue;
                    }
                    let wait = slow.next_delay(&mut rng).max(retry);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.wake.notified() => {}
                        () = stop.cancelled() => return None,
                    }
                }
            }
        };
        let start = loaded.as_ref().and_then(Checkpoint::position);
        let restart_window = loaded.as_ref().map_or(0, |c| c.window as usize);
        let opts = TailOptions {
            max_line: daemon.max_line_bytes as usize,
            ..TailOptions::default()
        };
        let tailer = loop {
            match Tailer::new(self.target.inbox.clone(), opts, start) {
                Ok(t) => break t,
                Err(e) => {
                    self.state
                        .set_health(Health::Paused(format!("target {name}: {e}")));
                    tokio::select! {
                        () = tokio::time::sleep(daemon.reconcile_interval) => {}
                        () = self.wake.notified() => {}
                        () = stop.cancelled() => return None,
                    }
                }
            }
        };
        self.state.set_health(Health::Ok);
        Some(Prepared {
            writer: Arc::new(Mutex::new(writer)),
            token,
            resolved: Arc::new(resolved),
            mapper,
            tailer: Arc::new(Mutex::new(tailer)),
            start,
            restart_window,
        })
    }

    /// Waits until the target's token file is written anew (false if stopped first). A fixed token
    /// only changes with the configuration, which restarts the target, so this waits for the stop.
    async fn wait_for_new_token(&self, stop: &CancellationToken) -> bool {
        let crate::config::TokenSource::File(path) = &self.target.token else {
            stop.cancelled().await;
            return false;
        };
        let stamp = |p: &std::path::Path| {
            std::fs::metadata(p).ok().map(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.ino(), m.mtime(), m.mtime_nsec(), m.size())
            })
        };
        let before = stamp(path);
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.config.daemon.reconcile_interval) => {}
                () = stop.cancelled() => return false,
            }
            if stamp(path) != before {
                tracing::info!(target_name = %self.target.name, token_file = %path.display(), "the token file changed; trying it");
                return true;
            }
        }
    }

    /// Loads the token, resolves the destination and checks the mapping. On failure, the health to
    /// show and the least time to wait before trying again.
    async fn connect(&self) -> Result<(TokenHandle, Resolved, Mapper), (Health, Duration)> {
        let name = &self.target.name;
        let token = TokenHandle::load(&self.target, &self.config).map_err(|e| {
            (
                Health::NeedsAuthorization(format!(
                    "target {name} needs authorization: {e}; run `notion-inbox authorize --target {name}`"
                )),
                self.config.daemon.reconcile_interval,
            )
        })?;
        let resolved = match self.client.resolve(&self.target, &token).await {
            Ok(r) => r,
            Err(e) if e.is_unauthorized() && token.can_refresh() => {
                token.refresh(&self.client).await.map_err(|e| {
                    (
                        Health::NeedsAuthorization(format!(
                            "target {name} needs authorization: {e}; run `notion-inbox authorize --target {name}`"
                        )),
                        self.config.daemon.reconcile_interval,
                    )
                })?;
                self.client
                    .resolve(&self.target, &token)
                    .await
                    .map_err(|e| {
                        (
                            Health::Paused(format!("target {name}: {e}")),
                            Duration::ZERO,
                        )
                    })?
            }
            Err(e) if e.is_unauthorized() => {
                return Err((
                    Health::NeedsAuthorization(format!(
                        "target {name} needs authorization: Notion refused its token ({e}); replace the token (then reload), or run `notion-inbox authorize --target {name}`"
                    )),
                    self.config.daemon.reconcile_interval,
                ));
            }
            Err(e) => {
                return Err((
                    Health::Paused(format!("target {name}: {e}")),
                    Duration::ZERO,
                ));
            }
        };
        let mapper = Mapper::new(&self.target, &resolved).map_err(|e| {
            (
                Health::Paused(format!(
                    "target {name}: the mapping does not fit {}: {e}; fix [target.properties] or the database (checked again periodically)",
                    resolved.describe()
                )),
                Duration::from_secs(30),
            )
        })?;
        Ok((token, resolved, mapper))
    }

    /// Reads, dispatches and commits until stopped. An error stops the target (its text says why).
    async fn pump(&self, p: Prepared, stop: &CancellationToken) -> Result<(), String> {
        let name = self.target.name.clone();
        let daemon = &self.config.daemon;
        let window = self.target.max_in_flight;
        // The persisted window must cover both this run's and the last run's unchecked records.
        let persisted_window = window.max(p.restart_window) as u32;
        // Records still in flight below which a held-back reader gets a new durable checkpoint.
        let low_water = window / 2;
        let mut dead = DeadLetterFile::new(self.target.dead_letter_path(daemon));
        let hard_stop = CancellationToken::new();
        let sender = Arc::new(Sender {
            client: self.client.clone(),
            token: p.token.clone(),
            resolved: p.resolved.clone(),
            dedupe_property: self.target.dedupe_property.clone(),
            settle: daemon.dedupe_settle,
            state: self.state.clone(),
            hard_stop: hard_stop.clone(),
        });
        let mut commit: Commit<Pending> = Commit::new(p.start);
        // Records still to dispatch that lie within the last run's window.
        let mut unchecked_left = p.restart_window;
        // Records registered so far, and how many of them the checkpoint on disk covers.
        let mut registered: u64 = 0;
        let mut persisted: u64 = 0;
        // The checkpoint is built here and written on the blocking pool: a durable save is two
        // fsyncs, and with many targets those must not stall the runtime's workers.
        let save = |commit: &Commit<Pending>, durable: bool, window: u32| {
            let in_flight = commit
                .in_flight()
                .map(|(pos, pending)| InFlight {
                    key: pending.key.clone(),
                    file: pos.file,
                    offset: pos.offset,
                    end: pos.end,
                })
                .collect();
            let mut cp = Checkpoint::new(commit.resume_position(), in_flight);
            cp.window = window;
            let writer = p.writer.clone();
            let name = name.clone();
            async move {
                let written = tokio::task::spawn_blocking(move || {
                    writer
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .save(&cp, durable)
                })
                .await
                .map_err(|e| format!("target {name}: the checkpoint writer crashed: {e}"))?;
                written.map_err(|e| {
                    format!(
                        "target {name}: {}; free space or fix permissions in the state directory, then restart",
                        error_chain(&e)
                    )
                })
            }
        };
        // Before anything is sent, the checkpoint must promise the window this run uses.
        save(&commit, true, persisted_window).await?;
        let mut disk_names_file = p.start.is_some();
        let mut in_flight: JoinSet<Done> = JoinSet::new();
        let mut reconcile = tokio::time::interval(daemon.reconcile_interval);
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dirty_since: Option<Instant> = None;
        let mut caught_up = false;
        loop {
            // Read and dispatch while the window allows: never more than `window` records past
            // the checkpoint on disk.
            let room = (persisted + window as u64).saturating_sub(registered) as usize;
            if !caught_up && room > 0 && self.state.health().may_send() {
                let tailer = p.tailer.clone();
                let batch = tokio::task::spawn_blocking(move || {
                    tailer
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .next_batch(room, 8 << 20)
                })
                .await
                .map_err(|e| format!("target {name}: the reader crashed: {e}"))?;
                let items = match batch {
                    Ok(items) => items,
                    Err(e) => {
                        self.state.record_error(format!("target {name}: {e}"));
                        tracing::error!(target_name = %name, "{e}");
                        Vec::new()
                    }
                };
                caught_up = !items.iter().any(|i| !matches!(i, Item::Event(_)));
                for item in items {
                    let (pos, text, oversized) = match item {
                        Item::Event(event) => {
                            tracing::info!(target_name = %name, "{event}");
                            continue;
                        }
                        Item::Oversized { pos, len } => (pos, Vec::new(), Some(len)),
                        Item::Line { pos, text } => (pos, text, None),
                    };
                    registered += 1;
                    let maybe_sent = unchecked_left > 0;
                    unchecked_left = unchecked_left.saturating_sub(1);
                    let prepared = match oversized {
                        Some(len) => Err(format!(
                            "the line is {len} bytes, over max_line_bytes ({}); its bytes were not kept: split the record, or raise max_line_bytes",
                            daemon.max_line_bytes
                        )),
                        None => parse_line(&text).and_then(|record| {
                            let key = record_key(&record, &pos, &text)?;
                            let body = p
                                .mapper
                                .page_body(&record, &key)
                                .map_err(|e| e.to_string())?;
                            Ok((key, body))
                        }),
                    };
                    match prepared {
                        Ok((key, body)) => {
                            let ticket = commit.begin(pos, Pending { key: key.clone() });
                            if !disk_names_file {
                                // The checkpoint on disk must name the file being read before a
                                // record of it is sent: a rotation followed by a crash must not
                                // make the restart skip the rest of this file.
                                save(&commit, true, persisted_window).await?;
                                disk_names_file = true;
                            }
                            let job = Job {
                                ticket,
                                key,
                                offset: pos.offset,
                                line_pos: pos.key(),
                                body,
                                line: text,
                                maybe_sent,
                            };
                            in_flight.spawn(sender.clone().deliver(job));
                        }
                        Err(reason) => {
                            let entry =
                                DeadLetter::new(&text, pos.offset, &self.target.inbox, reason)
                                    .at(pos.key());
                            self.dead_letter(&mut dead, &entry)?;
                            let ticket = commit.begin(pos, Pending { key: String::new() });
                            commit.finish(ticket);
                            dirty_since.get_or_insert_with(Instant::now);
                        }
                    }
                }
                if !caught_up {
                    continue;
                }
            }
            // The reader is held back by the checkpoint on disk: write it once at most half the
            // window is still in flight (group commit: one fsync pair per half window rather than
            // one per record, and the reader then dispatches half a window at once).
            let committed_now = registered - commit.len() as u64;
            let held_back = room == 0 && committed_now > persisted && commit.len() <= low_water;
            if held_back || dirty_since.is_some_and(|t| t.elapsed() >= CHECKPOINT_EVERY) {
                // Only a durable checkpoint may extend the window (the reader's room is counted
                // from it). A periodic one just shortens the re-reading after a crash: it needs no
                // fsync, because whichever checkpoint survives, the records sent lie within the
                // window of the durable one, hence of any later one.
                save(&commit, held_back, persisted_window).await?;
                if held_back {
                    persisted = committed_now;
                }
                dirty_since = None;
                caught_up = false;
                continue;
            }
            let flush_in = dirty_since.map(|t| CHECKPOINT_EVERY.saturating_sub(t.elapsed()));
            tokio::select! {
                Some(joined) = in_flight.join_next() => {
                    let done = joined.map_err(|e| format!("target {name}: a sender crashed: {e}"))?;
                    self.finish(done, &mut commit, &mut dead)?;
                    dirty_since.get_or_insert_with(Instant::now);
                    caught_up = false;
                }
                () = self.wake.notified() => caught_up = false,
                _ = reconcile.tick() => {
                    caught_up = false;
                    if let Ok(b) = p.tailer.lock().unwrap_or_else(|e| e.into_inner()).backlog() {
                        self.state.counters.backlog_bytes.store(b.bytes, std::sync::atomic::Ordering::Relaxed);
                    }
                    if matches!(self.state.health(), Health::NeedsAuthorization(_))
                        && p.token.reload_if_changed().unwrap_or(false)
                    {
                        tracing::info!(target_name = %name, "the token file changed; resuming");
                        self.state.set_health(Health::Ok);
                    }
                }
                () = sleep_opt(flush_in) => {}
                () = stop.cancelled() => break,
            }
        }
        // Shutdown: no more reading; in-flight requests get the grace period.
        let deadline = tokio::time::sleep(daemon.shutdown_grace);
        tokio::pin!(deadline);
        while !in_flight.is_empty() {
            tokio::select! {
                Some(joined) = in_flight.join_next() => {
                    if let Ok(done) = joined {
                        self.finish(done, &mut commit, &mut dead)?;
                    }
                }
                () = &mut deadline => {
                    tracing::warn!(target_name = %name, in_flight = in_flight.len(),
                        "shutdown grace period over; unfinished records will be sent again after restart");
                    hard_stop.cancel();
                    while let Some(joined) = in_flight.join_next().await {
                        if let Ok(done) = joined {
                            self.finish(done, &mut commit, &mut dead)?;
                        }
                    }
                }
            }
        }
        // The window this checkpoint promises covers the records that may be rows already: with
        // nothing unfinished, none of this run's (every record sent was answered and the position
        // is past it), only the last run's that this run has not reached. Promising the whole
        // window would make the next run check its first new records by key for nothing.
        let final_window = if commit.is_empty() {
            unchecked_left as u32
        } else {
            persisted_window
        };
        save(&commit, true, final_window).await?;
        Ok(())
    }

    fn finish(
        &self,
        done: Done,
        commit: &mut Commit<Pending>,
        dead: &mut DeadLetterFile,
    ) -> Result<(), String> {
        match done {
            Done::Delivered { ticket } => {
                commit.finish(ticket);
            }
            Done::Refused {
                ticket,
                offset,
                line_pos,
                key,
                line,
                reason,
                error,
            } => {
                let mut entry =
                    DeadLetter::new(&line, offset, &self.target.inbox, reason).at(line_pos);
                entry.key = Some(key);
                entry.notion_error = Some(error);
                self.dead_letter(dead, &entry)?;
                commit.finish(ticket);
            }
            Done::Abandoned { .. } => {}
        }
        Ok(())
    }

    fn dead_letter(&self, dead: &mut DeadLetterFile, entry: &DeadLetter) -> Result<(), String> {
        let name = &self.target.name;
        let written = dead.append(entry).map_err(|e| {
            format!(
                "target {name}: cannot write the dead-letter file {}: {e}; free space or fix permissions, then restart",
                dead.path().display()
            )
        })?;
        if written {
            tracing::warn!(target_name = %name, offset = entry.offset, file = %dead.path().display(), "dead-lettered: {}", entry.reason);
            Counters::bump(&self.state.counters.dead_lettered);
        } else {
            tracing::debug!(target_name = %name, offset = entry.offset, "already in the dead-letter file (read again after a restart)");
        }
        Ok(())
    }
}

/// What the commit tracker keeps about a record until it is finished.
#[derive(Debug)]
struct Pending {
    /// The record's key (for the checkpoint's in-flight list).
    key: String,
}

/// The error and its causes, joined with ": ".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// What `prepare` hands to `pump`.
struct Prepared {
    writer: Arc<Mutex<CheckpointWriter>>,
    token: TokenHandle,
    resolved: Arc<Resolved>,
    mapper: Mapper,
    tailer: Arc<Mutex<Tailer>>,
    start: Option<Position>,
    restart_window: usize,
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
