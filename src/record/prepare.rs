//! What the tailer hands out, as the delivery core's input: one definition, used by the daemon's
//! runner and by the simulator, so that the simulator drives the same preparation.
//!
//! A line becomes a record (parsed, keyed, and turned into its payload by the caller's mapping)
//! or a bad line with its reason; an oversized line a bad line; a file gone or overwritten before
//! it was read a loss report; a rotation seen while behind a queued file, followed by the order
//! of every file the tailer holds. Other events of the tailer are logged.

use serde_json::{Map, Value};

use super::RecordError;
use super::line::{parse_line, record_key};
use crate::inbox::{FileIdentity, InboxError, Item, TailEvent, Tailer};
use notion_inbox_core::delivery::Input;

/// A parsed record and its key → what the core sends, or why it cannot be a row.
pub type Payload<'a, P> = dyn FnMut(&Map<String, Value>, &str) -> Result<P, RecordError> + 'a;

/// How the lines of one target become inputs.
pub struct Preparation<'a, P> {
    /// The target, for messages.
    pub target: &'a str,
    /// `max_line_bytes`, for the reason of an oversized line.
    pub max_line_bytes: u64,
    /// What a record becomes.
    pub payload: &'a mut Payload<'a, P>,
}

/// Reads one batch (at most `max_items` lines, `max_bytes` bytes) and prepares it; also whether
/// the reader has caught up with the end of what is there.
pub fn read_batch<P>(
    tailer: &mut Tailer,
    max_items: usize,
    max_bytes: usize,
    how: &mut Preparation<'_, P>,
) -> Result<(Vec<Input<P, FileIdentity>>, bool), InboxError> {
    let items = tailer.next_batch(max_items, max_bytes)?;
    let mut inputs: Vec<Input<P, FileIdentity>> = items
        .into_iter()
        .filter_map(|item| prepare(item, how))
        .collect();
    if inputs.iter().any(|i| matches!(i, Input::Queued(_))) {
        inputs.push(Input::Order(tailer.order()));
    }
    let caught_up = !tailer.more()
        && !inputs
            .iter()
            .any(|i| matches!(i, Input::Record { .. } | Input::Bad { .. }));
    Ok((inputs, caught_up))
}

/// One item as the core's input (`None` for an event that is only logged).
pub fn prepare<P>(item: Item, how: &mut Preparation<'_, P>) -> Option<Input<P, FileIdentity>> {
    let target = how.target;
    match item {
        Item::Event(event) => event_input(event, target),
        Item::Oversized { pos, len } => Some(Input::Bad {
            pos,
            line: Vec::new(),
            reason: RecordError::Oversized {
                bytes: len,
                max: how.max_line_bytes,
            }
            .to_string(),
        }),
        Item::Line { pos, text } => {
            let prepared = parse_line(&text).and_then(|record| {
                let key = record_key(&record, &pos, &text)?;
                let payload = (how.payload)(&record, &key)?;
                Ok((key, payload))
            });
            Some(match prepared {
                Ok((key, payload)) => Input::Record {
                    pos,
                    key,
                    payload,
                    line: text,
                },
                Err(reason) => Input::Bad {
                    pos,
                    line: text,
                    reason: reason.to_string(),
                },
            })
        }
    }
}

/// A tailer's event as the core's input: a loss report, a queued file, or `None` for an event
/// that is only logged.
fn event_input<P>(event: TailEvent, target: &str) -> Option<Input<P, FileIdentity>> {
    match event {
        event @ TailEvent::PreviousGone { file, offset } => Some(Input::Lost {
            file,
            offset,
            reason: format!(
                "target {target}: {event}; keep rotated files until they are read (logrotate: delaycompress, no olddir)"
            ),
        }),
        // The same inode with another head: a copytruncate, or the file deleted and its inode
        // reused. Either way what it held after the offset cannot be read: report it.
        event @ TailEvent::Overwritten { file, offset } => Some(Input::Lost {
            file,
            offset,
            reason: format!(
                "target {target}: {event}; if nothing was appended to it after everything was delivered, nothing is missing"
            ),
        }),
        event @ TailEvent::OverwrittenElsewhere { .. } => {
            let TailEvent::OverwrittenElsewhere {
                file,
                offset,
                ref found,
            } = event
            else {
                unreachable!("matched above")
            };
            Some(Input::Lost {
                file,
                offset,
                reason: format!(
                    "target {target}: {event}; if it holds inbox lines, deliver them with `notion-inbox push --target {target} < {}`",
                    found.display()
                ),
            })
        }
        event @ TailEvent::LostUnopened { .. } => Some(Input::Lost {
            file: FileIdentity::unopened(&event.to_string()),
            offset: 0,
            reason: format!(
                "target {target}: {event}; keep rotated files in the inbox's directory until they are read"
            ),
        }),
        event @ TailEvent::CutUnread { file, from, .. } => Some(Input::Lost {
            file,
            offset: from,
            reason: format!(
                "target {target}: {event}; with logrotate, rotate by rename (no copytruncate); if a copy holds them, deliver them with `notion-inbox push --target {target}`"
            ),
        }),
        TailEvent::Queued { file } => Some(Input::Queued(file)),
        event => {
            tracing::info!(target_name = %target, "{event}");
            None
        }
    }
}

/// Looks at the inbox path without reading ([`Tailer::observe`]): the files a rotation queued,
/// with the order of every file the tailer holds, and the files the watcher lost before it could
/// open them (reported now: no read may come before a stop), as the core's inputs; `None` if
/// there is nothing.
pub fn observe<P>(tailer: &mut Tailer, target: &str) -> Option<Vec<Input<P, FileIdentity>>> {
    let queued = tailer.observe();
    let mut inputs: Vec<Input<P, FileIdentity>> = tailer
        .take_unopened()
        .into_iter()
        .filter_map(|event| event_input(event, target))
        .collect();
    if !queued.is_empty() {
        inputs.extend(queued.into_iter().map(Input::Queued));
        inputs.push(Input::Order(tailer.order()));
    }
    (!inputs.is_empty()).then_some(inputs)
}
