//! Delivering one record: send, classify the outcome, and act on it until the record is a row or a
//! dead letter. Transient trouble never drops a record: there is no attempt limit.

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::daemon::backoff::Backoff;
use crate::daemon::deadletter::NotionErrorInfo;
use crate::daemon::health::{Counters, Health, TargetState};
use crate::notion::{CreateOutcome, NotionClient, NotionError, Resolved, TokenHandle};
use crate::state::Ticket;

/// Everything the senders of one target share.
pub struct Sender {
    /// The process's Notion client.
    pub client: NotionClient,
    /// The target's credentials.
    pub token: TokenHandle,
    /// Where rows go, with the schema.
    pub resolved: Arc<Resolved>,
    /// The rich_text property holding keys, when deduplicating.
    pub dedupe_property: Option<String>,
    /// Wait before checking by key after an unknown outcome.
    pub settle: Duration,
    /// Health and counters.
    pub state: Arc<TargetState>,
    /// Cancelled when in-flight requests must stop (after the shutdown grace period).
    pub hard_stop: CancellationToken,
}

/// A record ready to send.
#[derive(Debug)]
pub struct Job {
    /// Its ticket in the commit tracker.
    pub ticket: Ticket,
    /// Its key.
    pub key: String,
    /// Its byte offset in the inbox, for messages.
    pub offset: u64,
    /// Where its line sits (file identity and offset): names its dead-letter entry.
    pub line_pos: String,
    /// The `POST /v1/pages` body.
    pub body: Value,
    /// The original line, for the dead-letter file if Notion refuses the record.
    pub line: Vec<u8>,
    /// Whether an earlier run may already have created it (it lies within the restart window).
    pub maybe_sent: bool,
}

/// How a job ended.
#[derive(Debug)]
pub enum Done {
    /// A row exists for it: created now, or found by key.
    Delivered {
        /// The ticket.
        ticket: Ticket,
    },
    /// Notion refused it for good; it goes to the dead-letter file.
    Refused {
        /// The ticket.
        ticket: Ticket,
        /// The record's offset in its inbox.
        offset: u64,
        /// Where its line sits.
        line_pos: String,
        /// The record's key.
        key: String,
        /// The original line.
        line: Vec<u8>,
        /// Why, and how to fix it.
        reason: String,
        /// What Notion said.
        error: NotionErrorInfo,
    },
    /// Stopped by shutdown before an outcome; it will be read and sent again after a restart.
    Abandoned {
        /// The ticket.
        ticket: Ticket,
    },
}

impl Sender {
    /// Delivers `job`, retrying for as long as it takes.
    pub async fn deliver(self: Arc<Self>, job: Job) -> Done {
        let ticket = job.ticket;
        Counters::bump(&self.state.counters.in_flight);
        let done = tokio::select! {
            done = self.attempt_until_done(job) => done,
            () = self.hard_stop.cancelled() => Done::Abandoned { ticket },
        };
        self.state
            .counters
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        done
    }

    async fn attempt_until_done(&self, mut job: Job) -> Done {
        let name = &self.state.name;
        let mut rng = rand::rngs::StdRng::from_os_rng();
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        let mut slow = Backoff::new(Duration::from_secs(5), Duration::from_secs(300));
        let mut check_first = job.maybe_sent;
        let mut refreshed = false;
        loop {
            self.wait_until_sending().await;
            if check_first {
                match &self.dedupe_property {
                    Some(property) => {
                        tokio::time::sleep(self.settle).await;
                        match self
                            .client
                            .find_by_key(&self.token, &self.resolved, property, &job.key)
                            .await
                        {
                            Ok(Some(page_id)) => {
                                tracing::info!(target_name = %name, offset = job.offset, key = %job.key, %page_id,
                                    "row already in Notion after an unknown outcome; not creating it again");
                                Counters::bump(&self.state.counters.found_existing);
                                self.delivered();
                                return Done::Delivered { ticket: job.ticket };
                            }
                            Ok(None) => check_first = false,
                            Err(e) => {
                                let wait = backoff.next_delay(&mut rng);
                                tracing::warn!(target_name = %name, offset = job.offset, "cannot check whether the row exists yet ({e}); asking again in {wait:?}");
                                Counters::bump(&self.state.counters.retried);
                                tokio::time::sleep(wait).await;
                                continue;
                            }
                        }
                    }
                    None => {
                        tracing::warn!(target_name = %name, offset = job.offset, key = %job.key,
                            "possible duplicate: sending a record whose earlier attempt may have created a row; set dedupe_property for effectively-once delivery");
                        Counters::bump(&self.state.counters.possible_duplicates);
                        check_first = false;
                    }
                }
            }
            match self.client.create_page(&self.token, &job.body).await {
                CreateOutcome::Created { page_id } => {
                    tracing::debug!(target_name = %name, offset = job.offset, %page_id, "delivered");
                    self.delivered();
                    return Done::Delivered { ticket: job.ticket };
                }
                CreateOutcome::RetryAfter { wait, error } => {
                    Counters::bump(&self.state.counters.rate_limited);
                    tracing::debug!(target_name = %name, offset = job.offset, "Notion asked to wait {wait:?}: {error}");
                    tokio::time::sleep(wait).await;
                }
                CreateOutcome::Unknown { error } => {
                    Counters::bump(&self.state.counters.outcome_unknown);
                    let wait = backoff.next_delay(&mut rng);
                    tracing::warn!(target_name = %name, offset = job.offset, "outcome unknown ({error}); checking and resending in {wait:?}");
                    self.state
                        .record_error(format!("offset {}: {error}", job.offset));
                    check_first = true;
                    tokio::time::sleep(wait).await;
                }
                CreateOutcome::Unauthorized { error, generation } => {
                    Counters::bump(&self.state.counters.retried);
                    if !refreshed && self.token.can_refresh() {
                        refreshed = true;
                        match self.token.refresh_from(&self.client, generation).await {
                            Ok(()) => continue,
                            Err(e) => self.needs_authorization(&e.into()),
                        }
                    } else if !self.token.reload_if_changed().unwrap_or(false) {
                        self.needs_authorization(&error);
                    }
                }
                CreateOutcome::Forbidden { error } | CreateOutcome::NotFound { error } => {
                    Counters::bump(&self.state.counters.retried);
                    let wait = slow.next_delay(&mut rng).max(Duration::from_secs(1));
                    self.state.set_health(Health::Paused(format!(
                        "target {name}: Notion refuses access to {} ({error}); share the database with the integration \
                         (or re-run `notion-inbox authorize --target {name}` and pick it), or fix database_id; retrying in {wait:?}",
                        self.resolved.describe()
                    )));
                    tokio::time::sleep(wait).await;
                }
                CreateOutcome::Invalid { error } => {
                    let info = NotionErrorInfo::from(&error);
                    return Done::Refused {
                        ticket: job.ticket,
                        offset: job.offset,
                        line_pos: std::mem::take(&mut job.line_pos),
                        key: std::mem::take(&mut job.key),
                        line: std::mem::take(&mut job.line),
                        reason: format!(
                            "Notion refused the record: {}; fix the record or the database, then `notion-inbox requeue --target {name}`",
                            info.message
                        ),
                        error: info,
                    };
                }
            }
        }
    }

    fn delivered(&self) {
        Counters::bump(&self.state.counters.delivered);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.state
            .counters
            .last_delivery_ms
            .store(now, std::sync::atomic::Ordering::Relaxed);
        if matches!(self.state.health(), Health::Paused(_)) {
            self.state.set_health(Health::Ok);
        }
    }

    fn needs_authorization(&self, error: &NotionError) {
        let name = &self.state.name;
        self.state.set_health(Health::NeedsAuthorization(format!(
            "target {name} needs authorization: Notion refused its token ({error}); run `notion-inbox authorize --target {name}`; \
             delivery resumes by itself when the token file changes"
        )));
    }

    /// Waits while the target may not send (it needs authorization or is stopped).
    async fn wait_until_sending(&self) {
        let mut rx = self.state.health.subscribe();
        let _ = rx.wait_for(|h| h.may_send()).await;
    }
}
