//! Following the files that leave an inbox path by rename, within its directory, until they are
//! opened: the directory's inotify stream names every rename, with its two names joined by a
//! cookie, so a file rotated away before anything opened it (a producer rotating faster than the
//! tailer looks, or a closed target's inbox rotated twice) is found under its new name and opened
//! there.
//!
//! Sans-IO: [`Follow`] takes one directory's events ([`DirEvent`]) and says, at the end of each
//! buffer of events, which names to open for which inbox ([`Outcome::Open`]) and which files were
//! lost before they could be opened ([`Outcome::Lost`]). The watcher thread feeds it the kernel's
//! events and does the opens; the tailer drops a file it already holds (by device and inode).
//!
//! Why a name opened is followed one buffer more: the open happens after the events were read,
//! and a rename that happened before the open may only be read with the next buffer. A followed
//! name that the next buffer does not touch held, at the open, the file the events say; one it
//! touches is opened again where the events now say the file is. An extra open finds a file
//! already held, or another file that came through the same rotation names.

use std::ffi::{OsStr, OsString};

/// At most this many files followed per directory; past it the oldest are given up, reported.
pub const MAX_FOLLOWED: usize = 4096;

/// One event of a watched directory, by file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirEvent<'a> {
    /// `IN_DELETE`.
    Deleted(&'a OsStr),
    /// `IN_MOVED_FROM`, with its cookie.
    MovedFrom(&'a OsStr, u32),
    /// `IN_MOVED_TO`, with its cookie.
    MovedTo(&'a OsStr, u32),
}

/// What the watcher does at the end of a buffer of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Open `name` (in the directory) for the targets reading `inbox`.
    Open {
        /// The inbox file name the file left.
        inbox: OsString,
        /// Where it is now.
        name: OsString,
    },
    /// A file that left `inbox` was deleted, replaced or moved out of the directory before it
    /// could be opened: whatever it held is not read.
    Lost {
        /// The inbox file name the file left.
        inbox: OsString,
        /// The last name it had.
        name: OsString,
        /// What happened to it.
        why: &'static str,
    },
}

/// A file that left an inbox path.
#[derive(Debug, Clone)]
struct Followed {
    inbox: OsString,
    name: OsString,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// To open at the end of this buffer.
    ToOpen,
    /// Opened at the end of the last buffer; given up at the end of this one unless touched.
    Opened,
    /// Not there when opened: a rename or deletion the next buffers hold says where it went.
    Missing,
}

/// One directory's followed files. See the module docs.
#[derive(Debug, Default)]
pub struct Follow {
    /// `IN_MOVED_FROM` names waiting for their `IN_MOVED_TO`: cookie, name, and whether a buffer
    /// ended since (a pair may be split across two reads; one left over after that was moved out
    /// of the directory).
    moving: Vec<(u32, OsString, bool)>,
    followed: Vec<Followed>,
}

impl Follow {
    /// Whether nothing is followed or waiting for its pair.
    pub fn is_empty(&self) -> bool {
        self.moving.is_empty() && self.followed.is_empty()
    }

    /// Takes one event; `is_inbox` says whether a name is an inbox path of the directory.
    pub fn event(
        &mut self,
        event: DirEvent<'_>,
        is_inbox: &dyn Fn(&OsStr) -> bool,
        out: &mut Vec<Outcome>,
    ) {
        match event {
            DirEvent::MovedFrom(name, cookie) => {
                self.moving.push((cookie, name.to_owned(), false));
            }
            DirEvent::Deleted(name) => self.gone(name, "deleted", out),
            DirEvent::MovedTo(to, cookie) => {
                // Whatever was at `to` is unlinked by the rename.
                self.gone(to, "replaced by another file", out);
                let Some(i) = self.moving.iter().position(|(c, ..)| *c == cookie) else {
                    return;
                };
                let (_, from, _) = self.moving.swap_remove(i);
                for f in self.followed.iter_mut().filter(|f| f.name == from) {
                    f.name = to.to_owned();
                    f.state = State::ToOpen;
                }
                if is_inbox(&from) {
                    self.followed.push(Followed {
                        inbox: from,
                        name: to.to_owned(),
                        state: State::ToOpen,
                    });
                }
                self.bound(out);
            }
        }
    }

    /// The end of a buffer of events: what to open now, and what was lost.
    pub fn end_batch(&mut self, out: &mut Vec<Outcome>) {
        // A `IN_MOVED_FROM` whose pair did not come in this buffer or the one before: moved out.
        let mut i = 0;
        while i < self.moving.len() {
            if self.moving[i].2 {
                let (_, name, _) = self.moving.swap_remove(i);
                self.gone(&name, "moved out of the inbox's directory", out);
            } else {
                self.moving[i].2 = true;
                i += 1;
            }
        }
        let moving = &self.moving;
        self.followed.retain_mut(|f| match f.state {
            State::Opened => false,
            State::Missing => true,
            // Renamed again, the other half of the rename not read yet: opened where it lands.
            State::ToOpen if moving.iter().any(|(_, name, _)| *name == f.name) => true,
            State::ToOpen => {
                out.push(Outcome::Open {
                    inbox: f.inbox.clone(),
                    name: f.name.clone(),
                });
                f.state = State::Opened;
                true
            }
        });
    }

    /// The open of `name` (asked by [`Outcome::Open`]) found nothing there: the events that
    /// follow say where it went.
    pub fn not_there(&mut self, name: &OsStr) {
        for f in self.followed.iter_mut().filter(|f| f.name == name) {
            f.state = State::Missing;
        }
    }

    /// The file at `name` is unlinked: a followed one that was never opened is lost.
    fn gone(&mut self, name: &OsStr, why: &'static str, out: &mut Vec<Outcome>) {
        self.followed.retain(|f| {
            if f.name != name {
                return true;
            }
            if f.state != State::Opened {
                out.push(Outcome::Lost {
                    inbox: f.inbox.clone(),
                    name: f.name.clone(),
                    why,
                });
            }
            false
        });
    }

    /// Gives up the oldest followed files past [`MAX_FOLLOWED`], reported.
    fn bound(&mut self, out: &mut Vec<Outcome>) {
        while self.followed.len() > MAX_FOLLOWED {
            let f = self.followed.remove(0);
            if f.state != State::Opened {
                out.push(Outcome::Lost {
                    inbox: f.inbox,
                    name: f.name,
                    why: "given up: more files were rotated at once than can be followed",
                });
            }
        }
        debug_assert!(self.followed.len() <= MAX_FOLLOWED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    fn inbox(name: &OsStr) -> bool {
        name == "t.jsonl"
    }

    fn feed(f: &mut Follow, events: &[DirEvent<'_>]) -> Vec<Outcome> {
        let mut out = Vec::new();
        for e in events {
            f.event(*e, &inbox, &mut out);
        }
        f.end_batch(&mut out);
        out
    }

    fn open(name: &str) -> Outcome {
        Outcome::Open {
            inbox: "t.jsonl".into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_file_renamed_away_is_opened_where_it_went_after_every_rename() {
        let mut f = Follow::default();
        let out = feed(
            &mut f,
            &[
                DirEvent::MovedFrom(os("t.jsonl"), 1),
                DirEvent::MovedTo(os("t.jsonl.1"), 1),
                DirEvent::MovedFrom(os("t.jsonl.1"), 2),
                DirEvent::MovedTo(os("t.jsonl.2"), 2),
                DirEvent::MovedFrom(os("t.jsonl"), 3),
                DirEvent::MovedTo(os("t.jsonl.1"), 3),
            ],
        );
        assert_eq!(out, vec![open("t.jsonl.2"), open("t.jsonl.1")]);
        // A rename read with the next buffer: opened again where it went.
        let out = feed(
            &mut f,
            &[
                DirEvent::MovedFrom(os("t.jsonl.2"), 4),
                DirEvent::MovedTo(os("t.jsonl.3"), 4),
            ],
        );
        assert_eq!(out, vec![open("t.jsonl.3")]);
        assert!(feed(&mut f, &[]).is_empty());
        assert!(f.is_empty(), "confirmed files are given up");
    }

    #[test]
    fn a_followed_file_deleted_replaced_or_moved_out_before_its_open_is_lost() {
        let mut f = Follow::default();
        let mut out = Vec::new();
        for (cookie, to) in [(1, "a"), (2, "b"), (3, "c")] {
            f.event(DirEvent::MovedFrom(os("t.jsonl"), cookie), &inbox, &mut out);
            f.event(DirEvent::MovedTo(os(to), cookie), &inbox, &mut out);
        }
        f.event(DirEvent::Deleted(os("a")), &inbox, &mut out);
        f.event(DirEvent::MovedFrom(os("other"), 9), &inbox, &mut out);
        f.event(DirEvent::MovedTo(os("b"), 9), &inbox, &mut out);
        f.event(DirEvent::MovedFrom(os("c"), 4), &inbox, &mut out);
        f.end_batch(&mut out);
        f.end_batch(&mut out);
        let lost: Vec<(&str, &str)> = out
            .iter()
            .filter_map(|o| match o {
                Outcome::Lost { name, why, .. } => Some((name.to_str().unwrap(), *why)),
                Outcome::Open { .. } => None,
            })
            .collect();
        assert_eq!(
            lost,
            vec![
                ("a", "deleted"),
                ("b", "replaced by another file"),
                ("c", "moved out of the inbox's directory")
            ]
        );
        assert!(f.is_empty());
    }

    #[test]
    fn an_opened_file_deleted_later_is_no_loss_and_a_missing_one_waits_for_its_rename() {
        let mut f = Follow::default();
        feed(
            &mut f,
            &[
                DirEvent::MovedFrom(os("t.jsonl"), 1),
                DirEvent::MovedTo(os("x"), 1),
            ],
        );
        assert!(feed(&mut f, &[DirEvent::Deleted(os("x"))]).is_empty());
        let out = feed(
            &mut f,
            &[
                DirEvent::MovedFrom(os("t.jsonl"), 2),
                DirEvent::MovedTo(os("y"), 2),
            ],
        );
        assert_eq!(out, vec![open("y")]);
        f.not_there(os("y"));
        assert!(feed(&mut f, &[]).is_empty(), "missing: nothing to open");
        let out = feed(
            &mut f,
            &[
                DirEvent::MovedFrom(os("y"), 3),
                DirEvent::MovedTo(os("z"), 3),
            ],
        );
        assert_eq!(out, vec![open("z")]);
    }

    #[test]
    fn only_files_that_left_an_inbox_path_are_followed_and_their_number_is_bounded() {
        let mut f = Follow::default();
        let out = feed(
            &mut f,
            &[
                DirEvent::MovedFrom(os("other.jsonl"), 1),
                DirEvent::MovedTo(os("other.jsonl.1"), 1),
            ],
        );
        assert!(out.is_empty() && f.is_empty());
        let mut out = Vec::new();
        let names: Vec<String> = (0..=MAX_FOLLOWED).map(|i| format!("t.{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            f.event(
                DirEvent::MovedFrom(os("t.jsonl"), i as u32),
                &inbox,
                &mut out,
            );
            f.event(DirEvent::MovedTo(os(name), i as u32), &inbox, &mut out);
        }
        assert!(
            matches!(&out[..], [Outcome::Lost { name, .. }] if name == "t.0"),
            "{out:?}"
        );
    }
}
