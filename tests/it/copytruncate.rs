//! logrotate's `copytruncate` while the daemon is behind, against the binary: the lines it had not
//! read yet exist only in the copy. They are read from the copy, once; with the copy deleted at
//! once, their loss is reported with its range. A restart in between finds the copy too.

use std::time::Duration;

use crate::support::*;
use notion_emulator::Faults;

/// Lines in the backlog: at 4 in flight and 400 ms a request, 7 s of sending, while the copy and
/// the truncation take well under a millisecond.
const BACKLOG: usize = 70;

fn world() -> World {
    let w = World::new(fast());
    let t = TargetSpec {
        extra: "max_in_flight = 4\n".into(),
        ..w.target("t")
    };
    w.write_config_with(&[t], "requests_per_second = 100\nburst = 100\n", "");
    w
}

fn handles(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("@{prefix}-{i}")).collect()
}

fn lines(hs: &[String]) -> String {
    hs.iter().map(|h| rec(h, "x")).collect()
}

/// Makes the daemon fall behind on `t`'s inbox (each request takes 400 ms, 4 at a time, and it
/// reads no further ahead than that), then copies the inbox to `t.jsonl.1` and truncates it, as
/// `copytruncate` does. Returns the backlog's handles, in order.
fn behind_then_copytruncate(w: &mut World) -> Vec<String> {
    behind_then_cut(w, true)
}

/// [`behind_then_copytruncate`], with the copy deleted before the truncation if not `keep_copy`
/// (as if deleted at once: the daemon cannot look between the two).
fn behind_then_cut(w: &mut World, keep_copy: bool) -> Vec<String> {
    let inbox = w.inbox("t");
    w.start();
    append_bytes(&inbox, rec("@warm", "x").as_bytes());
    wait_until("the first row", || w.pages().len() == 1);
    w.emu.set_faults(Faults {
        latency: Duration::from_millis(400),
        ..Faults::default()
    });
    let backlog = handles("backlog", BACKLOG);
    append_bytes(&inbox, lines(&backlog).as_bytes());
    wait_until("the backlog's first row", || w.pages().len() >= 2);
    std::fs::copy(&inbox, w.path("spool/t.jsonl.1")).unwrap();
    if !keep_copy {
        std::fs::remove_file(w.path("spool/t.jsonl.1")).unwrap();
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&inbox)
        .unwrap()
        .set_len(0)
        .unwrap();
    let rows = w.pages().len();
    assert!(
        rows < 1 + BACKLOG / 2,
        "the daemon was not behind at the copytruncate ({rows} rows): the test proves nothing"
    );
    backlog
}

#[test]
fn a_copytruncate_while_behind_reads_the_unread_lines_from_the_copy_once() {
    let mut w = world();
    let backlog = behind_then_copytruncate(&mut w);
    let after = handles("after", 3);
    append_bytes(&w.inbox("t"), lines(&after).as_bytes());
    let all: Vec<String> = std::iter::once("@warm".to_owned())
        .chain(backlog)
        .chain(after)
        .collect();
    wait_until("every line a row", || w.pages().len() >= all.len());
    assert_eq!(w.stop(), Some(0));
    assert_rows_once(&w, &all);
    assert!(w.lost_reports("t").is_empty(), "{:?}", w.lost_reports("t"));
    assert!(
        w.logs().contains("from its copy"),
        "the log says the lines came from the copy:\n{}",
        w.logs()
    );
}

#[test]
fn a_restart_while_the_copy_is_being_read_goes_on_from_the_copy() {
    let mut w = world();
    let backlog = behind_then_copytruncate(&mut w);
    let after = handles("after", 3);
    append_bytes(&w.inbox("t"), lines(&after).as_bytes());
    // Stop while the copy is still being read (at 10 rows a second, seconds of it are left).
    wait_until("some of the copy delivered", || w.pages().len() >= 12);
    assert_eq!(w.stop(), Some(0));
    assert!(
        w.pages().len() < 1 + BACKLOG,
        "the copy was read before the stop"
    );
    w.emu.set_faults(Faults::default());
    w.start();
    let all: Vec<String> = std::iter::once("@warm".to_owned())
        .chain(backlog)
        .chain(after)
        .collect();
    wait_until("every line a row", || w.pages().len() >= all.len());
    assert_eq!(w.stop(), Some(0));
    assert_rows_once(&w, &all);
    assert!(w.lost_reports("t").is_empty(), "{:?}", w.lost_reports("t"));
}

#[test]
fn a_copytruncate_whose_copy_is_deleted_at_once_reports_the_unread_range_as_lost() {
    let mut w = world();
    let backlog = behind_then_cut(&mut w, false);
    let after = handles("after", 3);
    append_bytes(&w.inbox("t"), lines(&after).as_bytes());
    wait_until("the new lines are rows and the loss is reported", || {
        let rows = w.handles();
        after.iter().all(|h| rows.contains(h)) && !w.lost_reports("t").is_empty()
    });
    assert_eq!(w.stop(), Some(0));
    // What was read before the truncation is delivered (a prefix of the backlog); the rest is
    // reported lost from where that prefix ends.
    let rows = w.handles();
    let delivered = backlog.iter().take_while(|h| rows.contains(h)).count();
    let expected: Vec<String> = std::iter::once("@warm".to_owned())
        .chain(backlog[..delivered].iter().cloned())
        .chain(after)
        .collect();
    assert_rows_once(&w, &expected);
    let lost = w.lost_reports("t");
    assert_eq!(lost.len(), 1, "one report of the loss: {lost:?}");
    let offset = lost[0]["offset"].as_u64().expect("an offset");
    let read = (rec("@warm", "x") + &lines(&backlog[..delivered])).len() as u64;
    assert_eq!(
        offset, read,
        "the loss starts where delivery stopped: {:?}",
        lost[0]
    );
}
