//! Performing the delivery core's actions: each [`Action`] becomes a future that does the I/O (off
//! the runtime's workers where it touches the disk) and yields the [`Event`] to feed back.
//!
//! Nothing here decides anything: an answer from Notion goes back to the core as it was received
//! ([`Reply`]), and the core reads it.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use crate::inbox::{FileIdentity, Tailer};
use crate::notion::{NotionClient, PageBody, Resolved, TokenHandle, answer_of};
use crate::record::Mapper;
use crate::record::prepare::{Preparation, read_batch};
use crate::state::checkpoint::CheckpointWriter;
use crate::state::deadletter::DeadLetterFile;
use notion_inbox_core::answer::{Answer, Reply};
use notion_inbox_core::delivery::{Action, DeadLetterRequest, Event, LocalError, RefreshResult};

/// The work of one action, yielding the event to feed back: a request to Notion (a future, run as
/// a task and abandoned after the grace period), or disk work (a closure run on the blocking pool:
/// one hop, no task in between, which is most of the latency of an idle target's first record).
pub enum Work {
    /// A request to Notion.
    Request(Pin<Box<dyn Future<Output = Event<PageBody, FileIdentity>> + Send>>),
    /// Reading the inbox, saving a checkpoint, writing dead letters.
    Local(Box<dyn FnOnce() -> Event<PageBody, FileIdentity> + Send>),
    /// Nothing to wait for: done as it was asked for.
    Done,
}

/// Everything the actions of one target need.
pub struct Io {
    /// The target's name, for messages.
    pub name: String,
    /// The inbox path, for dead-letter entries.
    pub inbox: PathBuf,
    /// `max_line_bytes`, for the message of an oversized line.
    pub max_line_bytes: u64,
    /// The process's Notion client.
    pub client: NotionClient,
    /// The target's credentials.
    pub token: TokenHandle,
    /// Where rows go.
    pub resolved: Arc<Resolved>,
    /// The record → page body mapping.
    pub mapper: Arc<Mapper>,
    /// The dedupe property, when set.
    pub dedupe_property: Option<String>,
    /// The tailer (used on the blocking pool only).
    pub tailer: Arc<Mutex<Tailer>>,
    /// The checkpoint writer (blocking pool only).
    pub writer: Arc<Mutex<CheckpointWriter>>,
    /// The dead-letter file (blocking pool only).
    pub dead: Arc<Mutex<DeadLetterFile>>,
    /// A connected workspace's target (its refused authorization means it was disconnected).
    pub connected: bool,
    /// The target's cached resolution, forgotten when Notion's answer says it may be stale.
    pub resolution: crate::notion::cache::ResolutionCache,
}

/// What the health says when Notion refuses a target's authorization for good: `authorize` for
/// a configured target; for a connected workspace, that it is disconnected until it connects
/// again.
pub fn refused_authorization(name: &str, connected: bool, why: &str) -> String {
    // The message names the target first: a reason that starts with it again only repeats it.
    let prefix = format!("target {name}: ");
    let why = why.strip_prefix(&prefix).unwrap_or(why);
    if connected {
        format!(
            "target {name} is disconnected: Notion refused its authorization ({why}); the workspace removed the integration or it was revoked. Records wait in its inbox, and delivery resumes when the workspace connects again (the connect page, or `notion-inbox connect`)"
        )
    } else {
        format!(
            "target {name} needs authorization: {why}; run `notion-inbox authorize --target {name}`; delivery resumes by itself when the token file changes"
        )
    }
}

impl Io {
    /// The work for `action`. A panic in it becomes the event of a failure of that action (the
    /// core then retries it), never a record stuck in flight.
    pub fn perform(self: &Arc<Self>, action: Action<PageBody, FileIdentity>) -> Work {
        let io = self.clone();
        match action {
            Action::Read { max_items } => local(
                io,
                "reader",
                move |io| io.read(max_items),
                Event::ReadFailed,
            ),
            // A look that crashed found nothing: the files it would have queued are read all the
            // same (the tailer holds them), only a restart before then would not know them.
            Action::Look => local(
                io,
                "reader",
                |io| {
                    let mut tailer = lock(&io.tailer);
                    Event::Looked(
                        crate::record::prepare::observe(&mut tailer, &io.name).unwrap_or_default(),
                    )
                },
                |_| Event::Looked(Vec::new()),
            ),
            Action::Save {
                checkpoint,
                durable,
            } => local(
                io,
                "checkpoint writer",
                move |io| {
                    let saved = lock(&io.writer).save(&checkpoint, durable);
                    Event::Saved(saved.map_err(|e| LocalError::Save {
                        target: io.name.clone(),
                        cause: crate::error::chain(&e),
                    }))
                },
                |e| Event::Saved(Err(e)),
            ),
            Action::DeadLetter(requests) => local(
                io,
                "dead-letter writer",
                move |io| Event::DeadLettered(io.write_dead_letters(requests)),
                |e| Event::DeadLettered(Err(e)),
            ),
            Action::Send { ticket, payload } => {
                let generation = io.token.generation();
                request(
                    async move { Event::Sent(ticket, io.client.create_page(&io.token, &payload).await) },
                    move || Event::Sent(ticket, lost(generation, "the sender crashed")),
                )
            }
            Action::Check { ticket, key } => request(
                async move {
                    let generation = io.token.generation();
                    let property = io.dedupe_property.clone().unwrap_or_default();
                    let answer = io
                        .client
                        .find_by_key(&io.token, &io.resolved, &property, &key)
                        .await;
                    let answer = answer_of(answer.map(|found| found.is_some()));
                    Event::Checked(ticket, Reply { generation, answer })
                },
                move || Event::Checked(ticket, lost(0, "the check crashed")),
            ),
            Action::ForgetResolution => {
                self.resolution.forget();
                Work::Done
            }
            Action::Refresh { sent_with } => request(
                async move { Event::Refreshed(io.refresh(sent_with).await) },
                || Event::Refreshed(RefreshResult::Transient("the refresh crashed".into())),
            ),
        }
    }

    /// Reads a batch and prepares each line (parse, key, map), on the blocking pool.
    fn read(&self, max_items: usize) -> Event<PageBody, FileIdentity> {
        let mut tailer = lock(&self.tailer);
        let mut payload = |record: &serde_json::Map<String, serde_json::Value>, key: &str| {
            Ok(PageBody::from(&self.mapper.page_body(record, key)?))
        };
        let mut how = Preparation {
            target: &self.name,
            max_line_bytes: self.max_line_bytes,
            payload: &mut payload,
        };
        match read_batch(&mut tailer, max_items, 8 << 20, &mut how) {
            Ok((inputs, caught_up)) => Event::Read { inputs, caught_up },
            Err(e) => Event::ReadFailed(LocalError::Read {
                target: self.name.clone(),
                cause: crate::error::chain(&e),
            }),
        }
    }

    /// Appends a batch of dead letters with one fsync (blocking pool).
    fn write_dead_letters(
        &self,
        requests: Vec<DeadLetterRequest<FileIdentity>>,
    ) -> Result<(), LocalError> {
        let mut dead = lock(&self.dead);
        let entries = crate::state::deadletter::entries_for(requests, &self.inbox);
        let written = dead
            .append_batch(&entries)
            .map_err(|e| LocalError::DeadLetter {
                target: self.name.clone(),
                path: dead.path().to_owned(),
                cause: e.to_string(),
            })?;
        for ((entry, _), wrote) in entries.iter().zip(written) {
            if wrote {
                tracing::warn!(target_name = %self.name, offset = entry.offset, file = %dead.path().display(), "dead-lettered: {}", entry.reason);
            } else {
                tracing::debug!(target_name = %self.name, offset = entry.offset, "already in the dead-letter file (read again after a restart)");
            }
        }
        Ok(())
    }

    async fn refresh(&self, sent_with: u64) -> RefreshResult {
        let name = &self.name;
        if !self.token.can_refresh() {
            return RefreshResult::Refused(refused_authorization(
                name,
                self.connected,
                "Notion refused its token and it cannot be refreshed; replace the token (then reload), or authorize again",
            ));
        }
        match self.token.refresh_from(&self.client, sent_with).await {
            Ok(()) => RefreshResult::Ok,
            Err(e) if e.needs_authorization() => RefreshResult::Refused(refused_authorization(
                name,
                self.connected,
                &format!("Notion refused to refresh its token ({e})"),
            )),
            // A file on this machine: fixable there, and the next attempt reads it again.
            Err(e) if e.local_file().is_some() => RefreshResult::Local(crate::error::chain(&e)),
            Err(e) => RefreshResult::Transient(crate::error::chain(&e)),
        }
    }
}

/// The answer of a request that never came back (its task panicked): it may have been carried out.
fn lost<T>(generation: u64, what: &str) -> Reply<T> {
    Reply {
        generation,
        answer: Answer::Lost(what.to_owned()),
    }
}

/// Disk work on `io`: `f`, or, if it panics, `failed` with the failure of `what`.
fn local(
    io: Arc<Io>,
    what: &'static str,
    f: impl FnOnce(&Io) -> Event<PageBody, FileIdentity> + Send + 'static,
    failed: fn(LocalError) -> Event<PageBody, FileIdentity>,
) -> Work {
    Work::Local(Box::new(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&io))).unwrap_or_else(|_| {
            failed(LocalError::Crashed {
                target: io.name.clone(),
                what,
            })
        })
    }))
}

/// A request, with the event to report if it panics.
fn request(
    f: impl Future<Output = Event<PageBody, FileIdentity>> + Send + 'static,
    crashed: impl FnOnce() -> Event<PageBody, FileIdentity> + Send + 'static,
) -> Work {
    Work::Request(Box::pin(async move {
        use futures::FutureExt;
        match std::panic::AssertUnwindSafe(f).catch_unwind().await {
            Ok(event) => event,
            Err(_) => crashed(),
        }
    }))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
