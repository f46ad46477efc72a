//! Focused tests of single rules of the core; the simulator (`tests/sim`) explores their
//! interleavings.

use std::time::Duration;

use super::*;
use crate::answer::{Answer, ErrorAnswer, Reply};
use crate::health::Health;
use crate::position::LinePos;
use crate::position::tests::TestFile;

const A: TestFile = TestFile(10);
const B: TestFile = TestFile(11);

fn core() -> Core<u32, TestFile> {
    let cfg = CoreConfig {
        name: "t".into(),
        window: 4,
        dedupe_property: Some("Inbox ID".into()),
        destination: "database \"T\"".into(),
        settle: Duration::from_millis(100),
    };
    Core::new(cfg, None, 7)
}

/// Notion's error answer `status` to a request sent with the token of generation 0.
fn error<T>(status: u16, retry_after: Option<Duration>) -> Reply<T> {
    Reply {
        generation: 0,
        answer: Answer::Error(ErrorAnswer {
            status,
            code: "code".into(),
            message: "m".into(),
            request_id: None,
            retry_after,
        }),
    }
}

/// A page created.
fn created() -> Reply<String> {
    Reply {
        generation: 0,
        answer: Answer::Ok("page".into()),
    }
}

fn record(file: TestFile, offset: u64) -> Input<u32, TestFile> {
    Input::Record {
        pos: LinePos {
            file,
            offset,
            end: offset + 10,
        },
        key: format!("k{offset}"),
        payload: offset as u32,
        line: b"{}".to_vec(),
    }
}

/// Performs every save and read at once (saves succeed, reads return `inputs` once), and returns
/// the sends and checks asked for.
fn run(
    core: &mut Core<u32, TestFile>,
    now: Now,
    mut inputs: Vec<Input<u32, TestFile>>,
) -> Vec<Action<u32, TestFile>> {
    let mut out = Vec::new();
    while let Some(action) = core.poll_action(now) {
        match action {
            Action::Save { .. } => core.handle(now, Event::Saved(Ok(()))),
            Action::Read { .. } => core.handle(
                now,
                Event::Read {
                    inputs: std::mem::take(&mut inputs),
                    caught_up: true,
                },
            ),
            Action::DeadLetter(_) => core.handle(now, Event::DeadLettered(Ok(()))),
            other => out.push(other),
        }
    }
    out
}

fn ticket_of(actions: &[Action<u32, TestFile>]) -> Ticket {
    match &actions[0] {
        Action::Send { ticket, .. } | Action::Check { ticket, .. } => *ticket,
        other => panic!("not a request: {other:?}"),
    }
}

#[test]
fn an_absurd_retry_after_waits_at_most_the_cap() {
    let mut c = core();
    let t = ticket_of(&run(&mut c, Now::ZERO, vec![record(A, 0)]));
    c.handle(Now::ZERO, Event::Sent(t, error(429, Some(Duration::MAX))));
    assert!(c.poll_action(Now::ZERO).is_none());
    assert_eq!(c.next_deadline(Now::ZERO), Some(MAX_WAIT));
    let again = run(&mut c, MAX_WAIT, vec![]);
    assert!(matches!(again[..], [Action::Send { .. }]), "{again:?}");
}

#[test]
fn a_refresh_held_up_by_a_local_file_is_retried_soon_and_the_health_names_the_fix() {
    let mut c = core();
    let t = ticket_of(&run(&mut c, Now::ZERO, vec![record(A, 0)]));
    let unauthorized = error(401, None);
    c.handle(Now::ZERO, Event::Sent(t, unauthorized));
    let mut now = Now::ZERO;
    // However often it fails, the next attempt is at most the local cap away, and the target
    // never waits for a person.
    for _ in 0..12 {
        let refresh = run(&mut c, now, vec![]);
        assert!(
            matches!(refresh[..], [Action::Refresh { sent_with: 0 }]),
            "{refresh:?}"
        );
        let fix = "the client secret file /s is mode 0644; run `chmod 600 /s`";
        c.handle(now, Event::Refreshed(RefreshResult::Local(fix.into())));
        let Health::Paused(message) = c.health() else {
            panic!("{:?}", c.health());
        };
        assert!(message.contains("chmod 600 /s"), "{message}");
        let next = c.next_deadline(now).expect("a retry is scheduled");
        assert!(next.saturating_sub(now) <= flight::LOCAL_REFRESH_RETRY_CAP);
        now = next;
    }
    let refresh = run(&mut c, now, vec![]);
    assert!(matches!(refresh[..], [Action::Refresh { sent_with: 0 }]));
    c.handle(now, Event::Refreshed(RefreshResult::Ok));
    let resent = run(&mut c, now, vec![]);
    assert!(matches!(resent[..], [Action::Send { .. }]), "{resent:?}");
    assert_eq!(c.health(), Health::Ok);
}

#[test]
fn only_a_refused_refresh_needs_a_person() {
    let mut c = core();
    let t = ticket_of(&run(&mut c, Now::ZERO, vec![record(A, 0)]));
    let unauthorized = Reply::<String> {
        generation: 3,
        ..error(401, None)
    };
    c.handle(Now::ZERO, Event::Sent(t, unauthorized.clone()));
    let refresh = run(&mut c, Now::ZERO, vec![]);
    assert!(
        matches!(refresh[..], [Action::Refresh { sent_with: 3 }]),
        "{refresh:?}"
    );
    c.handle(
        Now::ZERO,
        Event::Refreshed(RefreshResult::Transient("503".into())),
    );
    let Health::Paused(message) = c.health() else {
        panic!("{:?}", c.health());
    };
    assert!(message.contains("retrying by itself"), "{message}");
    // Nothing goes out until the retry of the refresh, which comes by itself.
    assert!(run(&mut c, Now::ZERO, vec![]).is_empty());
    let later = c.next_deadline(Now::ZERO).expect("a retry is scheduled");
    let refresh = run(&mut c, later, vec![]);
    assert!(matches!(refresh[..], [Action::Refresh { sent_with: 3 }]));
    c.handle(
        later,
        Event::Refreshed(RefreshResult::Refused("invalid_grant".into())),
    );
    assert!(matches!(c.health(), Health::NeedsAuthorization(_)));
    assert!(run(&mut c, later, vec![]).is_empty(), "waits for a person");
    c.handle(later, Event::TokenChanged);
    let resent = run(&mut c, later, vec![]);
    assert!(matches!(resent[..], [Action::Send { .. }]), "{resent:?}");
    assert_eq!(c.health(), Health::Ok);
}

#[test]
fn a_failed_save_is_retried_and_the_target_recovers_by_itself() {
    let mut c = core();
    let Some(Action::Save { durable: true, .. }) = c.poll_action(Now::ZERO) else {
        panic!("the first action promises the window");
    };
    c.handle(
        Now::ZERO,
        Event::Saved(Err(super::LocalError::Save {
            target: "t".into(),
            cause: "No space left on device".into(),
        })),
    );
    let Health::Paused(message) = c.health() else {
        panic!("{:?}", c.health());
    };
    assert!(message.contains("state disk"), "{message}");
    assert!(
        c.poll_action(Now::ZERO).is_none(),
        "nothing before the retry"
    );
    let retry = c.next_deadline(Now::ZERO).expect("a retry is scheduled");
    assert!(retry > Now::ZERO && retry <= Duration::from_secs(60));
    let sends = run(&mut c, retry, vec![record(A, 0)]);
    assert!(matches!(
        sends[..],
        [Action::Check { .. }] | [Action::Send { .. }]
    ));
    assert_eq!(c.health(), Health::Ok);
}

#[test]
fn a_record_of_a_new_file_waits_for_a_durable_checkpoint_naming_it() {
    let mut c = core();
    let first = run(&mut c, Now::ZERO, vec![record(A, 0)]);
    assert_eq!(first.len(), 1);
    // A record of file B arrives; the durable checkpoint names only A.
    c.handle(Now::ZERO, Event::Wake);
    let Some(Action::Read { .. }) = c.poll_action(Now::ZERO) else {
        panic!("reads");
    };
    c.handle(
        Now::ZERO,
        Event::Read {
            inputs: vec![record(B, 0)],
            caught_up: true,
        },
    );
    let Some(Action::Save {
        checkpoint,
        durable: true,
    }) = c.poll_action(Now::ZERO)
    else {
        panic!("a durable save comes before B's record");
    };
    assert_eq!(checkpoint.file, Some(A));
    assert_eq!(checkpoint.next, vec![B]);
    assert!(
        c.poll_action(Now::ZERO).is_none(),
        "held until it is on disk"
    );
    c.handle(Now::ZERO, Event::Saved(Ok(())));
    assert!(matches!(
        c.poll_action(Now::ZERO),
        Some(Action::Send { .. })
    ));
}

#[test]
fn no_deadline_in_the_past_while_a_save_is_in_flight() {
    // The runner sleeps until the deadline: one in the past would make it spin on a worker.
    let mut c = core();
    let t = ticket_of(&run(&mut c, Now::ZERO, vec![record(A, 0)]));
    let now = Duration::from_millis(10);
    c.handle(now, Event::Sent(t, created()));
    // The periodic save comes a second later; answer nothing, so it stays in flight.
    let later = now + CHECKPOINT_EVERY;
    let Some(Action::Save { durable: false, .. }) = c.poll_action(later) else {
        panic!("a periodic save");
    };
    let t2 = {
        c.handle(later, Event::Wake);
        let Some(Action::Read { .. }) = c.poll_action(later) else {
            panic!("reads");
        };
        c.handle(
            later,
            Event::Read {
                inputs: vec![record(A, 10)],
                caught_up: true,
            },
        );
        ticket_of(&[c.poll_action(later).expect("the second record goes out")])
    };
    let much_later = later + 3 * CHECKPOINT_EVERY;
    c.handle(much_later, Event::Sent(t2, created()));
    assert!(
        c.poll_action(much_later).is_none(),
        "the save is still in flight"
    );
    if let Some(d) = c.next_deadline(much_later) {
        assert!(
            d > much_later,
            "a deadline in the past: {d:?} <= {much_later:?}"
        );
    }
    // While stopping, with a request in flight, no periodic deadline either.
    c.handle(much_later, Event::Saved(Ok(())));
    c.handle(much_later, Event::Stop);
    if let Some(d) = c.next_deadline(much_later + CHECKPOINT_EVERY * 5) {
        assert!(d > much_later + CHECKPOINT_EVERY * 5, "{d:?}");
    }
}

#[test]
fn a_file_rewritten_in_place_keeps_its_place_before_the_files_queued_behind_it() {
    let mut c = core();
    run(&mut c, Now::ZERO, vec![record(A, 0)]);
    // B is queued behind A; then A is rewritten in place (a new identity, same place).
    let rewritten = TestFile(12);
    c.handle(
        Now::ZERO,
        Event::Observed(vec![Input::Queued(B), Input::Order(vec![A, B])]),
    );
    c.handle(
        Now::ZERO,
        Event::Observed(vec![
            Input::Queued(rewritten),
            Input::Order(vec![rewritten, B]),
        ]),
    );
    let order: Vec<TestFile> = c.files().copied().collect();
    assert_eq!(order, vec![A, rewritten, B]);
}

#[test]
fn a_stopping_core_looks_at_the_inbox_once_more_before_its_final_checkpoint() {
    let mut c = core();
    let sends = run(&mut c, Now::ZERO, vec![record(A, 0)]);
    c.handle(Now::ZERO, Event::Sent(ticket_of(&sends), created()));
    // B was rotated into place just before the stop; the tailer holds it, and the core does not
    // know it yet.
    c.handle(Now::ZERO, Event::Stop);
    let Some(Action::Look) = c.poll_action(Now::ZERO) else {
        panic!("the last look comes before the final checkpoint");
    };
    assert!(c.poll_action(Now::ZERO).is_none(), "one look at a time");
    c.handle(
        Now::ZERO,
        Event::Looked(vec![Input::Queued(B), Input::Order(vec![A, B])]),
    );
    let Some(Action::Save {
        checkpoint,
        durable,
    }) = c.poll_action(Now::ZERO)
    else {
        panic!("the final checkpoint after the look");
    };
    assert!(durable);
    assert!(
        checkpoint.file == Some(B) || checkpoint.next.contains(&B),
        "the final checkpoint names the file the last look found: {checkpoint:?}"
    );
    c.handle(Now::ZERO, Event::Saved(Ok(())));
    assert!(c.finished());
    assert!(c.poll_action(Now::ZERO).is_none(), "one look per stop");
}
