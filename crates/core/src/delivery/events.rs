//! The core's vocabulary: what the runner feeds in ([`Event`], [`Input`]) and what it must do
//! ([`Action`]).

use std::sync::Arc;
use std::time::Duration;

use super::RefreshResult;
use crate::answer::Reply;
use crate::checkpoint::Checkpoint;
use crate::commit::Ticket;
use crate::position::LinePos;

/// What the core needs to know about its target.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The target's name, for messages.
    pub name: String,
    /// `max_in_flight`: records dispatched past the durable checkpoint at most.
    pub window: usize,
    /// The property records carry their key in, if any (then unknown outcomes are checked by key).
    pub dedupe_property: Option<String>,
    /// Where rows go, for people ("database \"Tweets\" (…)").
    pub destination: String,
    /// Wait before checking by key after an unknown outcome.
    pub settle: Duration,
}

/// A line read from the inbox, prepared by the runner (parsed, keyed and mapped off the core).
#[derive(Debug)]
pub enum Input<P, S> {
    /// A record ready to send.
    Record {
        /// Where its line is.
        pos: LinePos<S>,
        /// Its key.
        key: String,
        /// What to send (the page body).
        payload: P,
        /// The original line, for the dead-letter file if Notion refuses it.
        line: Vec<u8>,
    },
    /// A line that can never become a row.
    Bad {
        /// Where it is.
        pos: LinePos<S>,
        /// Its bytes (empty when too long to keep).
        line: Vec<u8>,
        /// Why, and the fix.
        reason: String,
    },
    /// A file the checkpoint named is gone: its unread part is lost, and this says so in the
    /// dead-letter file and in the target's health.
    Lost {
        /// The file.
        file: S,
        /// Everything before this offset was finished.
        offset: u64,
        /// What happened and what to do.
        reason: String,
    },
    /// The tailer will read this file after the ones before it (a rotation seen while behind).
    Queued(S),
    /// The order in which the tailer will read the files it holds (sent with [`Input::Queued`]):
    /// a file rewritten in place gets a new identity but keeps its place, which noting files in
    /// the order they are reported would not give.
    Order(Vec<S>),
}

/// Why the runner could not carry out a local action: read the inbox, write the checkpoint, or
/// append to the dead-letter file. The core tries each again after a backoff (a full disk frees
/// up, a permission is fixed); the text names the target, the file and the fix, for the log and
/// the target's health.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalError {
    /// Reading the inbox failed (the cause names the file and the fix).
    #[error("target {target}: {cause}")]
    Read {
        /// The target.
        target: String,
        /// What the reader said.
        cause: String,
    },
    /// Writing the checkpoint failed.
    #[error(
        "target {target}: {cause}; free space or fix permissions in the state directory (delivery resumes by itself)"
    )]
    Save {
        /// The target.
        target: String,
        /// What the writer said (it names the file).
        cause: String,
    },
    /// Appending to the dead-letter file failed.
    #[error(
        "target {target}: cannot write the dead-letter file {}: {cause}; free space or fix permissions (delivery resumes by itself)",
        path.display()
    )]
    DeadLetter {
        /// The target.
        target: String,
        /// The dead-letter file.
        path: std::path::PathBuf,
        /// What the system said.
        cause: String,
    },
    /// The work panicked (a bug); it is tried again like any other failure.
    #[error("target {target}: the {what} crashed; it is tried again (a bug: please report it)")]
    Crashed {
        /// The target.
        target: String,
        /// Which work: "reader", "checkpoint writer", "dead-letter writer".
        what: &'static str,
    },
}

/// What happened, for [`Core::handle`](super::Core::handle).
#[derive(Debug)]
pub enum Event<P, S> {
    /// The answer to [`Action::Read`]. `caught_up`: the reader reached the end of what is there.
    Read {
        /// What was read, in order.
        inputs: Vec<Input<P, S>>,
        /// Whether the end was reached.
        caught_up: bool,
    },
    /// [`Action::Read`] failed.
    ReadFailed(LocalError),
    /// Inputs observed without a read (files queued by a rotation), or a file event.
    Observed(Vec<Input<P, S>>),
    /// The answer to [`Action::Look`]: what the look found (empty if nothing was queued).
    Looked(Vec<Input<P, S>>),
    /// The inbox may have grown.
    Wake,
    /// The answer to [`Action::Send`]: the new page's id, or what went wrong.
    Sent(Ticket, Reply<String>),
    /// The answer to [`Action::Check`]: whether a row with the key exists, or what went wrong.
    Checked(Ticket, Reply<bool>),
    /// The answer to [`Action::Refresh`].
    Refreshed(RefreshResult),
    /// Someone wrote a new token (authorize, or a reload): a refused token may work now.
    TokenChanged,
    /// The answer to [`Action::DeadLetter`]: written durably, or why not.
    DeadLettered(Result<(), LocalError>),
    /// The answer to [`Action::Save`].
    Saved(Result<(), LocalError>),
    /// Time passed (see [`Core::next_deadline`](super::Core::next_deadline)).
    Tick,
    /// Stop: read nothing more; what was read is still delivered until [`Event::GraceOver`].
    Stop,
    /// The shutdown grace period is over: requests still in flight are abandoned.
    GraceOver,
}

/// What the runner must do.
#[derive(Debug)]
pub enum Action<P, S> {
    /// Read at most this many lines and answer with [`Event::Read`].
    Read {
        /// The room in the window.
        max_items: usize,
    },
    /// Create the record's row; answer with [`Event::Sent`].
    Send {
        /// The record.
        ticket: Ticket,
        /// The page body.
        payload: Arc<P>,
    },
    /// Ask Notion whether a row with this key exists; answer with [`Event::Checked`].
    Check {
        /// The record.
        ticket: Ticket,
        /// Its key.
        key: String,
    },
    /// Refresh the token if it is still the generation a request was refused with; answer with
    /// [`Event::Refreshed`].
    Refresh {
        /// The token generation the refused request was sent with.
        sent_with: u64,
    },
    /// Append these entries durably; answer with [`Event::DeadLettered`].
    DeadLetter(Vec<DeadLetterRequest<S>>),
    /// Forget the cached resolution of the destination: Notion refused a row in a way a stale
    /// view of the database explains (403, 404, the trash, a refused record). No answer.
    ForgetResolution,
    /// Look at the inbox for files a rotation queued, without reading; answer with
    /// [`Event::Looked`]. A stopping core asks once, before its final checkpoint.
    Look,
    /// Write this checkpoint (fsynced when `durable`); answer with [`Event::Saved`].
    Save {
        /// The checkpoint.
        checkpoint: Checkpoint<S>,
        /// Whether it must survive a power loss.
        durable: bool,
    },
}

/// A dead-letter entry to write.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterRequest<S> {
    /// Where the line is.
    pub pos: LinePos<S>,
    /// Its bytes.
    pub line: Vec<u8>,
    /// Why, and the fix.
    pub reason: String,
    /// The record's key, when it had one.
    pub key: Option<String>,
    /// What Notion said, when Notion refused it.
    pub error: Option<NotionErrorInfo>,
    /// Whether an earlier run may have written this entry already (look before appending).
    pub maybe_written: bool,
    /// Whether it reports a lost file rather than a line.
    pub lost: bool,
}

/// What Notion said when it refused a record.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct NotionErrorInfo {
    /// HTTP status.
    pub status: u16,
    /// Notion's error code, such as `validation_error`.
    pub code: String,
    /// Notion's message.
    pub message: String,
    /// Notion's request id, for support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}
