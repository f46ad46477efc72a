//! The core with a source that is not a file: a partition of a log, whose offsets count records
//! (each record's `end` is its offset + 1) and whose segment names a topic and a partition. It
//! plugs in from outside the crate, through the public [`Segment`] trait alone: the rules of
//! delivery (the window, the commit over finished records, checkpoints, crash recovery by key)
//! do not change with the source.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use notion_inbox_core::answer::{Answer, Reply};
use notion_inbox_core::checkpoint::Checkpoint;
use notion_inbox_core::commit::Ticket;
use notion_inbox_core::delivery::{Action, Core, CoreConfig, Event, Input, Now};
use notion_inbox_core::position::{LinePos, Position, Segment};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Partition {
    topic: u16,
    partition: u32,
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "topic {} partition {}", self.topic, self.partition)
    }
}

impl Segment for Partition {
    fn key_prefix(&self) -> String {
        format!("t{}p{}", self.topic, self.partition)
    }
}

const P0: Partition = Partition {
    topic: 1,
    partition: 0,
};

fn core(loaded: Option<&Checkpoint<Partition>>) -> Core<u64, Partition> {
    let cfg = CoreConfig {
        name: "log".into(),
        window: 4,
        dedupe_property: Some("Inbox ID".into()),
        destination: "database \"Log\"".into(),
        settle: Duration::from_millis(100),
    };
    Core::new(cfg, loaded, 11)
}

fn record(offset: u64) -> Input<u64, Partition> {
    let pos = LinePos {
        file: P0,
        offset,
        end: offset + 1,
    };
    Input::Record {
        key: pos.key(),
        pos,
        payload: offset,
        line: format!("{{\"n\":{offset}}}").into_bytes(),
    }
}

/// The log and the runner: reads hand out the partition's records from `next`; saves succeed and
/// are kept; requests are collected for the test to answer.
struct Log {
    next: u64,
    end: u64,
    saved: Option<Checkpoint<Partition>>,
    sends: BTreeMap<Ticket, u64>,
    checks: Vec<(Ticket, String)>,
}

impl Log {
    fn pump(&mut self, core: &mut Core<u64, Partition>, now: Now) {
        while let Some(action) = core.poll_action(now) {
            match action {
                Action::Read { max_items } => {
                    let upto = (self.next + max_items as u64).min(self.end);
                    let inputs = (self.next..upto).map(record).collect();
                    self.next = upto;
                    let caught_up = self.next == self.end;
                    core.handle(now, Event::Read { inputs, caught_up });
                }
                Action::Save { checkpoint, .. } => {
                    self.saved = Some(checkpoint);
                    core.handle(now, Event::Saved(Ok(())));
                }
                Action::Send { ticket, payload } => {
                    self.sends.insert(ticket, *payload);
                }
                Action::Check { ticket, key } => self.checks.push((ticket, key)),
                Action::DeadLetter(_) => core.handle(now, Event::DeadLettered(Ok(()))),
                // A partition has no rotation: a look finds nothing queued.
                Action::Look => core.handle(now, Event::Looked(Vec::new())),
                Action::Refresh { .. } | Action::ForgetResolution => {}
            }
        }
    }
}

fn created(n: u64) -> Reply<String> {
    Reply {
        generation: 0,
        answer: Answer::Ok(format!("page-{n}")),
    }
}

#[test]
fn a_partition_of_a_log_is_delivered_and_committed_by_the_same_rules() {
    let mut c = core(None);
    let mut log = Log {
        next: 100,
        end: 110,
        saved: None,
        sends: BTreeMap::new(),
        checks: Vec::new(),
    };
    let mut now = Duration::ZERO;
    let mut delivered = Vec::new();
    for _ in 0..100 {
        log.pump(&mut c, now);
        // Answer the sends newest first: the commit must still wait for the oldest.
        let Some((&ticket, &n)) = log.sends.iter().next_back() else {
            if c.settled() {
                break;
            }
            now += Duration::from_secs(1);
            continue;
        };
        log.sends.remove(&ticket);
        c.handle(now, Event::Sent(ticket, created(n)));
        delivered.push(n);
        if let Some(saved) = &log.saved {
            // Never past a record not yet delivered.
            let committed = saved.position().map_or(100, |p| p.offset);
            assert!(
                (100..committed).all(|o| delivered.contains(&o)),
                "{saved:?}"
            );
        }
        now += Duration::from_millis(10);
    }
    delivered.sort_unstable();
    assert_eq!(delivered, (100..110).collect::<Vec<_>>());
    log.pump(&mut c, now + Duration::from_secs(60));
    let saved = log.saved.expect("a checkpoint");
    assert_eq!(
        saved.position(),
        Some(Position {
            file: P0,
            offset: 110
        })
    );
}

#[test]
fn after_a_crash_the_records_a_partition_may_have_sent_are_checked_by_key() {
    // The last checkpoint promised a window of 4 past offset 100 of the partition.
    let mut cp = Checkpoint::new(
        Some(Position {
            file: P0,
            offset: 100,
        }),
        vec![],
    );
    cp.window = 4;
    let mut c = core(Some(&cp));
    let mut log = Log {
        next: 100,
        end: 106,
        saved: None,
        sends: BTreeMap::new(),
        checks: Vec::new(),
    };
    log.pump(&mut c, Duration::ZERO);
    // A check waits for the settle time (Notion's search may lag a create).
    log.pump(&mut c, Duration::from_secs(1));
    let keys: Vec<&str> = log.checks.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(keys, ["t1p0-100", "t1p0-101", "t1p0-102", "t1p0-103"]);
    assert!(log.sends.is_empty(), "nothing sent before its check");
}
