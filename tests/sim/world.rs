//! One simulated world: files, Notion, disk, clock and the daemon's core. See `main.rs`.

mod dormant;
mod end;
mod notion;
mod watcher;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notion_inbox::inbox::look::Stamp;
use notion_inbox::inbox::{Arrival, FileIdentity, TailOptions, Tailer};
use notion_inbox::record::prepare::{Preparation, observe, read_batch};
use notion_inbox::state::checkpoint::Checkpoint;
use notion_inbox::state::deadletter::{DeadLetterFile, entries_for};
use notion_inbox_core::answer::Answer;
use notion_inbox_core::commit::Ticket;
use notion_inbox_core::delivery::{Action, Core, CoreConfig, DeadLetterRequest, Event, LocalError};
use notion_inbox_core::dormancy::{Dormant, Looks};
use notion_inbox_core::health::{Health, Stats};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The simulated inboxes' max_line_bytes.
const MAX_LINE: u64 = 4096;

/// What a simulated full disk says.
const FULL: &str = "No space left on device (simulated)";

/// The payload: the record's key and its tweet.
type P = (String, String);

const WINDOW: usize = 8;
/// Whether the producer copytruncates while the daemon may be behind.
const COPYTRUNCATE_WHILE_RUNNING: bool = false;
/// Whether the watcher's queue overflows in some schedules. Off: at SIM_SEED=2634 a file born
/// in the same clock tick as the tailer's last look before the overflow, and rotated with its
/// events dropped, is not found by the rescan (file times are stamped at the coarse clock).
const OVERFLOWS: bool = false;
const SETTLE: Duration = Duration::from_millis(500);
const GRACE: Duration = Duration::from_secs(10);

/// What a line is meant to become.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Record,
    /// Notion refuses it (400): a dead letter.
    Reject,
    /// Not JSON: a dead letter.
    Bad,
}

/// A request the daemon has out, and when its answer comes.
enum Req {
    Send {
        ticket: Ticket,
        payload: Arc<P>,
        token_gen: u64,
    },
    Check {
        ticket: Ticket,
        key: String,
        token_gen: u64,
    },
    Refresh {
        sent_with: u64,
    },
    Read {
        max: usize,
    },
    Look,
    Save {
        cp: Checkpoint,
        durable: bool,
    },
    Dead(Vec<DeadLetterRequest<FileIdentity>>),
}

/// The simulated Notion.
#[derive(Default)]
struct Notion {
    /// Rows: key, tweet, when queries see it.
    rows: Vec<(String, String, Duration)>,
    /// The token generation Notion accepts.
    valid_gen: u64,
    /// The token expired: every request is refused until a refresh.
    expired: bool,
    /// A refresh answer was lost: the refresh token is void.
    void: bool,
    /// Notion refused a refresh since the last authorization: only then may the target say it
    /// needs a person.
    refused: bool,
    /// Creates refused with 400, 403 or 404 that reached a running core (each may come from a
    /// stale view of the database).
    refusals: u64,
}

pub struct World {
    seed: u64,
    rng: StdRng,
    dedupe: bool,
    _dir: tempfile::TempDir,
    inbox: PathBuf,
    dead_path: PathBuf,
    now: Duration,
    notion: Notion,
    /// The daemon's token generation.
    token_gen: u64,
    /// Checkpoint disk: the last fsynced one, and a newer one that may survive a crash.
    durable: Option<Checkpoint>,
    volatile: Option<Checkpoint>,
    disk_full: bool,
    /// What every run of the core counted.
    stats: Stats,
    /// How often the core asked to forget the cached resolution.
    forgotten: u64,
    core: Option<Core<P, FileIdentity>>,
    tailer: Option<Tailer>,
    dead: DeadLetterFile,
    pending: Vec<Req>,
    /// Every line written: tweet/text → (kind, file number).
    lines: BTreeMap<String, (Kind, usize)>,
    /// The rest of a partial line, to complete.
    partial: Option<String>,
    /// Files created (by number), and whether each was deleted.
    deleted: Vec<bool>,
    /// The file number now at the inbox path, if any; rotated files by path.
    current: Option<usize>,
    rotated: Vec<(PathBuf, usize)>,
    next_line: u64,
    next_rotation: u64,
    /// A hostile producer left a symlink (to a file of records it may not read) or a FIFO at the
    /// inbox path after a rotation; the next append replaces it with a regular file.
    planted: bool,
    /// The file the planted symlinks point at.
    secret: PathBuf,
    faults: bool,
    crashes: u32,
    /// A clean stop is in progress, since when.
    stopping: Option<Duration>,
    /// The running target's looks (when it closes), or the closed target's.
    looks: Looks,
    /// The target is closed: no core, no tailer; what its looks remember.
    dormant: Option<Dormant<Stamp>>,
    /// The stop in progress closes the target (it ends dormant, not in a restart).
    closing: bool,
    /// How often the target closed, and woke.
    closes: u32,
    wakes: u32,
    /// Files rewritten in place (to the same length, or truncated) while the target was closed, and those of them
    /// rotated away before it woke (their lines may be lost, with a report: see `dormant`).
    rewritten_while_closed: std::collections::BTreeSet<usize>,
    lost_ok: std::collections::BTreeSet<usize>,
    /// The daemon process's watcher of the inbox's directory.
    watch: watcher::SimWatch,
    /// How likely the watcher's queue overflows at an event, in this schedule.
    overflow: f64,
    /// When the durable and the newer checkpoint were written (real time: birth times of real
    /// files are compared with it).
    durable_at: Option<SystemTime>,
    volatile_at: Option<SystemTime>,
    /// When the newest file of the directory was created (real time).
    last_birth: Option<SystemTime>,
    /// Files created while the target was closed and rotated away when the daemon restarted:
    /// the watcher that held them died, so if they are deleted before the target wakes, nothing
    /// can read them and nothing reports them (README, "What is not promised").
    unseen_ok: std::collections::BTreeSet<usize>,
    /// Files rotated away while the daemon was stopping, not held: the final checkpoint does not
    /// name them, and a restart scans only for files created after it (README, "What is not
    /// promised").
    stop_window: std::collections::BTreeSet<usize>,
    /// Files created since the target closed.
    created_while_closed: std::collections::BTreeSet<usize>,
    /// Steps left in which the producer writes nothing.
    lull: u32,
    /// Something was written since the target closed (copytruncate would race it).
    appended_while_closed: bool,
    grace_sent: bool,
}

impl World {
    pub fn new(seed: u64, dedupe: bool) -> World {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        let dead_path = dir.path().join("dead.jsonl");
        let secret = dir.path().join("secret.jsonl");
        std::fs::write(
            &secret,
            "{\"handle\":\"@secret\",\"tweet\":\"secret\"}\nsecret not json\n",
        )
        .unwrap();
        let mut w = World {
            seed,
            rng: StdRng::seed_from_u64(seed),
            dedupe,
            inbox: spool.join("inbox.jsonl"),
            dead: DeadLetterFile::new(dead_path.clone()),
            dead_path,
            _dir: dir,
            now: Duration::ZERO,
            notion: Notion::default(),
            token_gen: 0,
            durable: None,
            volatile: None,
            disk_full: false,
            stats: Stats::default(),
            forgotten: 0,
            core: None,
            tailer: None,
            pending: Vec::new(),
            lines: BTreeMap::new(),
            partial: None,
            deleted: Vec::new(),
            current: None,
            rotated: Vec::new(),
            next_line: 0,
            next_rotation: 0,
            planted: false,
            secret,
            faults: true,
            crashes: 0,
            stopping: None,
            looks: Looks::new(dormant::LOOK_EVERY, Duration::ZERO),
            dormant: None,
            closing: false,
            closes: 0,
            wakes: 0,
            appended_while_closed: false,
            lull: 0,
            rewritten_while_closed: Default::default(),
            lost_ok: Default::default(),
            watch: watcher::SimWatch::new(0.0),
            overflow: 0.0,
            durable_at: None,
            volatile_at: None,
            last_birth: None,
            unseen_ok: Default::default(),
            stop_window: Default::default(),
            created_while_closed: Default::default(),
            grace_sent: false,
        };
        if w.rng.random_bool(0.1) && OVERFLOWS {
            w.overflow = 0.05;
        }
        w.watch = watcher::SimWatch::new(w.overflow);
        w.start(None);
        w
    }

    fn start(&mut self, loaded: Option<Checkpoint>) {
        assert!(
            self.pending.is_empty(),
            "a new run starts with nothing in flight"
        );
        let cfg = CoreConfig {
            name: "sim".into(),
            window: WINDOW,
            dedupe_property: self.dedupe.then(|| "Inbox ID".to_owned()),
            destination: "database \"Sim\"".into(),
            settle: SETTLE,
        };
        let seed = self.rng.random();
        self.core = Some(Core::new(cfg, loaded.as_ref(), seed));
        let opts = TailOptions {
            max_line: MAX_LINE as usize,
            chunk: 64,
            rotate_grace: Duration::ZERO,
        };
        // As the daemon's prepare: files rotated away while no run held them are looked for.
        if let Some(since) = loaded.as_ref().and_then(|c| self.written_at(c)) {
            self.watch.inlet.push(Arrival::Rescan {
                since,
                restart: true,
            });
        }
        let start = loaded.as_ref().and_then(Checkpoint::position);
        let next = loaded.map(|c| c.next).unwrap_or_default();
        let inlet = Some(self.watch.inlet.clone());
        self.tailer =
            Some(Tailer::resume_attached(self.inbox.clone(), opts, start, &next, inlet).unwrap());
        self.stopping = None;
        self.grace_sent = false;
        // Each run opens the dead-letter file afresh, as the daemon does.
        self.dead = DeadLetterFile::new(self.dead_path.clone());
    }

    /// When `cp` (the durable or the newer checkpoint) was written.
    fn written_at(&self, cp: &Checkpoint) -> Option<SystemTime> {
        if self.volatile.as_ref() == Some(cp) {
            self.volatile_at
        } else if self.durable.as_ref() == Some(cp) {
            self.durable_at
        } else {
            None
        }
    }

    /// Runs the schedule and checks the invariants; returns how often the target closed and
    /// woke.
    pub fn run(mut self) -> (u32, u32) {
        let steps = 150 + self.rng.random_range(0..250);
        for _ in 0..steps {
            self.step();
        }
        self.settle_down();
        self.check();
        (self.closes, self.wakes)
    }

    fn core(&mut self) -> &mut Core<P, FileIdentity> {
        self.core.as_mut().expect("running")
    }

    /// Feeds one event and performs what the core asks for.
    fn feed(&mut self, event: Event<P, FileIdentity>) {
        if self.dormant.is_some() {
            // A closed target has no core: it sees nothing until its looks wake it.
            return;
        }
        if self.core().finished() {
            // The daemon has exited: it sees nothing more; the next run looks afresh.
            return self.exited();
        }
        let now = self.now;
        self.core().handle(now, event);
        self.drain_actions();
        // After the actions: handing them out counts too (a possible duplicate is counted as it
        // is sent).
        let stats = self.core().take_stats();
        self.stats.absorb(stats);
        if matches!(self.core().health(), Health::NeedsAuthorization(_)) {
            assert!(
                self.notion.refused,
                "needs authorization although Notion refused nothing (seed {})",
                self.seed
            );
        }
        let held = self.core().unfinished();
        assert!(
            held <= 2 * WINDOW + 4,
            "the core holds {held} records, over its windows (seed {})",
            self.seed
        );
    }

    fn drain_actions(&mut self) {
        let now = self.now;
        while let Some(action) = self.core().poll_action(now) {
            let req = match action {
                Action::Read { max_items } => Req::Read { max: max_items },
                Action::Look => Req::Look,
                Action::Send { ticket, payload } => Req::Send {
                    ticket,
                    payload,
                    token_gen: self.token_gen,
                },
                Action::Check { ticket, key } => Req::Check {
                    ticket,
                    key,
                    token_gen: self.token_gen,
                },
                Action::Refresh { sent_with } => Req::Refresh { sent_with },
                Action::DeadLetter(batch) => Req::Dead(batch),
                // The simulated Notion's schema never changes: there is no cached view to drop.
                Action::ForgetResolution => {
                    self.forgotten += 1;
                    continue;
                }
                Action::Save {
                    checkpoint,
                    durable,
                } => Req::Save {
                    cp: checkpoint,
                    durable,
                },
            };
            self.pending.push(req);
        }
    }

    fn step(&mut self) {
        if self.dormant.is_some() {
            return self.dormant_step();
        }
        let roll = self.rng.random_range(0..100);
        // Producers fall quiet now and then, long enough for the target to close.
        if self.lull == 0 && self.rng.random_bool(0.02) {
            self.lull = self.rng.random_range(10..80);
        }
        match roll {
            0..=24 if self.lull > 0 => {
                self.lull -= 1;
                self.answer_one();
            }
            0..=24 => self.produce(),
            25..=64 => self.answer_one(),
            65..=79 => self.advance(),
            // Known limit (README): a restart forgets the files seen since the last durable
            // checkpoint (milliseconds, or as long as the state disk is full); a file rotated away
            // in that time is not read again.
            // The same window holds the files the watcher opened and not handed over yet, and the
            // files created since (a restart scans for those from the checkpoint's writing, and
            // would read one already read and rotated in that window again).
            80..=81 if self.crash_forgets_nothing() => self.crash(),
            // (A stop while the state disk stays full past the grace period is the same limit.)
            82 if !self.disk_full => self.begin_stop(),
            // A close waits for its final save, so the disk may free meanwhile.
            83..=84 if self.stopping.is_none() || self.closing => self.disk_full = !self.disk_full,
            85..=86 => self.notion.expired = true,
            _ => {
                self.observe();
                self.feed(Event::Wake);
            }
        }
        self.maybe_finish_stop();
    }

    // ---- the producer -------------------------------------------------------------------------

    fn append(&mut self, text: &str) {
        use std::io::Write;
        self.appended_while_closed |= self.dormant.is_some();
        if std::mem::take(&mut self.planted) {
            std::fs::remove_file(&self.inbox).unwrap();
        }
        if self.current.is_none() || !self.inbox.exists() {
            self.deleted.push(false);
            self.current = Some(self.deleted.len() - 1);
            if self.dormant.is_some() {
                self.created_while_closed.insert(self.deleted.len() - 1);
            }
            self.last_birth = Some(SystemTime::now());
            if std::env::var("SIM_TRACE").is_ok() {
                std::fs::write(&self.inbox, b"").unwrap();
                use std::os::unix::fs::MetadataExt;
                eprintln!(
                    "{:?} file {} is inode {}",
                    self.now,
                    self.deleted.len() - 1,
                    std::fs::metadata(&self.inbox).unwrap().ino()
                );
            }
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.inbox)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
        if std::env::var("SIM_TRACE").is_ok() {
            eprintln!("{:?} append {text:?} to file {:?}", self.now, self.current);
        }
    }

    fn new_line(&mut self) -> (String, Kind) {
        let n = self.next_line;
        self.next_line += 1;
        let kind = match self.rng.random_range(0..20) {
            0 => Kind::Bad,
            1 => Kind::Reject,
            _ => Kind::Record,
        };
        let line = match kind {
            Kind::Bad => format!("not json {n}"),
            Kind::Reject => format!("{{\"handle\":\"@s\",\"tweet\":\"x{n}\"}}"),
            Kind::Record => format!("{{\"handle\":\"@s\",\"tweet\":\"t{n}\"}}"),
        };
        let id = match kind {
            Kind::Bad => line.clone(),
            Kind::Reject => format!("x{n}"),
            Kind::Record => format!("t{n}"),
        };
        let file = self.current.unwrap_or(self.deleted.len());
        self.lines.insert(id, (kind, file));
        (line, kind)
    }

    fn produce(&mut self) {
        let op = self.rng.random_range(0..100);
        if let Some(rest) = self.partial.take() {
            self.append(&rest);
        } else if op < 60 || self.next_line < 3 {
            for _ in 0..self.rng.random_range(1..5) {
                let (line, _) = self.new_line();
                self.append(&format!("{line}\n"));
            }
        } else if op < 70 {
            let (line, _) = self.new_line();
            let cut = self.rng.random_range(1..line.len());
            self.append(&line[..cut]);
            self.partial = Some(format!("{}\n", &line[cut..]));
        } else if op < 85 && self.inbox.exists() && !self.planted {
            // Rotation by rename (several in a row when it comes up again soon).
            let to = self
                .inbox
                .with_extension(format!("jsonl.{}", self.next_rotation));
            self.next_rotation += 1;
            std::fs::rename(&self.inbox, &to).unwrap();
            if std::env::var("SIM_TRACE").is_ok() {
                eprintln!(
                    "{:?} rotate file {:?} to {}",
                    self.now,
                    self.current,
                    to.display()
                );
            }
            let file = self.current.take().expect("a file");
            if self.rewritten_while_closed.contains(&file) {
                self.lost_ok.insert(file);
            }
            let from = self.inbox.clone();
            self.watch_renamed(&from, &to);
            if self.stopping.is_some() && !self.closing {
                self.stop_window.insert(file);
            }
            self.rotated.push((to, file));
            if self.rng.random_bool(0.2) {
                self.plant();
            }
        } else if op < 88 && !self.rotated.is_empty() {
            // A rotated file renamed again (logrotate shifts `.1` to `.2`).
            let i = self.rng.random_range(0..self.rotated.len());
            let to = self
                .inbox
                .with_extension(format!("jsonl.{}", self.next_rotation));
            self.next_rotation += 1;
            let from = std::mem::replace(&mut self.rotated[i].0, to.clone());
            std::fs::rename(&from, &to).unwrap();
            self.watch_renamed(&from, &to);
            if std::env::var("SIM_TRACE").is_ok() {
                eprintln!(
                    "{:?} rename {} to {}",
                    self.now,
                    from.display(),
                    to.display()
                );
            }
        } else if op < 92 && !self.rotated.is_empty() {
            // Compress-and-delete of a rotated file (logrotate without delaycompress).
            let i = self.rng.random_range(0..self.rotated.len());
            let (path, file) = self.rotated.remove(i);
            std::fs::remove_file(&path).unwrap();
            self.watch_deleted(&path);
            if std::env::var("SIM_TRACE").is_ok() {
                eprintln!("{:?} delete file {file} at {}", self.now, path.display());
            }
            self.deleted[file] = true;
        } else if op < 96
            && COPYTRUNCATE_WHILE_RUNNING
            && !self.planted
            && self.partial.is_none()
            && self.dormant.is_none()
            && self.inbox.exists()
        {
            self.copytruncate_while_running();
        } else if !self.planted && self.inbox.exists() && self.looked_and_everything_read() {
            // copytruncate, once everything in the file was delivered (otherwise copytruncate
            // itself loses what was written between its copy and its truncation).
            let to = self
                .inbox
                .with_extension(format!("jsonl.{}", self.next_rotation));
            self.next_rotation += 1;
            std::fs::copy(&self.inbox, &to).unwrap();
            self.last_birth = Some(SystemTime::now());
            std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&self.inbox)
                .unwrap();
            // The copy is not the daemon's to read: its lines were delivered from the original.
            if std::env::var("SIM_TRACE").is_ok() {
                eprintln!("{:?} copytruncate to {}", self.now, to.display());
            }
            if self.dormant.is_some() {
                // Truncated while closed: what is written to it next is a rewrite while closed
                // (rotated before a look sees it, its lines are lost, reported).
                self.deleted.push(false);
                let file = self.deleted.len() - 1;
                self.current = Some(file);
                self.rewritten_while_closed.insert(file);
            }
        }
        // The tailer looks when its wake-up comes; several changes may come first.
        if self.rng.random_bool(0.6) {
            self.observe();
            self.feed(Event::Wake);
        }
    }

    /// copytruncate while the daemon may be behind: what it had not read is in the copy, and is
    /// read from there (the copy's lines belong to the file they were written to; if the copy
    /// is deleted before they are read, they are lost, with a report).
    fn copytruncate_while_running(&mut self) {
        // The file has been there long enough to be held (logrotate runs daily; a file created
        // and copytruncated within a millisecond, before any look, is not read: nothing knew it).
        self.observe();
        self.feed(Event::Wake);
        if self.dormant.is_some() || self.tailer.is_none() {
            return;
        }
        let to = self
            .inbox
            .with_extension(format!("jsonl.{}", self.next_rotation));
        self.next_rotation += 1;
        std::fs::copy(&self.inbox, &to).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&self.inbox)
            .unwrap();
        self.last_birth = Some(SystemTime::now());
        if std::env::var("SIM_TRACE").is_ok() {
            eprintln!("{:?} copytruncate (running) to {}", self.now, to.display());
        }
        let Some(file) = self.current else {
            return;
        };
        self.rotated.push((to, file));
        // What is written next is another file for the check.
        self.deleted.push(false);
        self.current = Some(self.deleted.len() - 1);
    }

    /// Puts a symlink to the secret file, or a FIFO, where the inbox was.
    fn plant(&mut self) {
        if self.rng.random_bool(0.5) {
            std::os::unix::fs::symlink(&self.secret, &self.inbox).unwrap();
        } else {
            let c = std::ffi::CString::new(self.inbox.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: mkfifo(3) with a valid path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        }
        self.planted = true;
    }

    /// [`World::everything_read`], after the look a change of the file brings (the tailer wakes
    /// within milliseconds of a write; a copytruncate does not come between them).
    fn looked_and_everything_read(&mut self) -> bool {
        if self.dormant.is_none() {
            self.observe();
            self.feed(Event::Wake);
        }
        self.dormant.is_none() == self.tailer.is_some() && self.everything_read()
    }

    fn everything_read(&mut self) -> bool {
        if self.dormant.is_some() {
            // It closed with everything read and delivered.
            return !self.appended_while_closed && self.partial.is_none();
        }
        let backlog = self.tailer.as_ref().map(|t| t.backlog().map(|b| b.bytes));
        matches!(backlog, Some(Ok(0))) && self.core().unfinished() == 0 && self.partial.is_none()
    }

    fn observe(&mut self) {
        // The watcher's thread reads its events within milliseconds: before any look.
        self.watch_batch();
        let Some(tailer) = self.tailer.as_mut() else {
            return;
        };
        if let Some(inputs) = observe(tailer, "sim") {
            if std::env::var("SIM_TRACE").is_ok() {
                eprintln!("{:?} queued {}", self.now, inputs.len() - 1);
            }
            self.feed(Event::Observed(inputs));
        }
    }

    // ---- the daemon's I/O ---------------------------------------------------------------------

    fn advance(&mut self) {
        if self.dormant.is_some() {
            return self.dormant_wait();
        }
        let now = self.now;
        let next = self.core().next_deadline(now);
        self.now = match next {
            Some(t) if t > self.now && self.rng.random_bool(0.7) => t,
            _ => self.now + Duration::from_millis(self.rng.random_range(1..1500)),
        };
        self.feed(Event::Tick);
        self.running_look();
    }

    fn answer_one(&mut self) {
        if self.pending.is_empty() {
            return self.advance();
        }
        let i = self.rng.random_range(0..self.pending.len());
        let req = self.pending.swap_remove(i);
        let event = self.answer(req);
        self.feed(event);
    }

    fn answer(&mut self, req: Req) -> Event<P, FileIdentity> {
        match req {
            Req::Read { max } => self.read(max),
            Req::Look => {
                // The watcher's thread reads its events within milliseconds: before any look.
                self.watch_batch();
                let tailer = self.tailer.as_mut().expect("a running target looks");
                Event::Looked(observe(tailer, "sim").unwrap_or_default())
            }
            Req::Save { cp, durable } => {
                if self.faults && self.disk_full {
                    return Event::Saved(Err(LocalError::Save {
                        target: "sim".into(),
                        cause: FULL.into(),
                    }));
                }
                if durable {
                    self.durable = Some(cp);
                    self.durable_at = Some(SystemTime::now());
                    self.volatile = None;
                } else {
                    self.volatile = Some(cp);
                    self.volatile_at = Some(SystemTime::now());
                }
                Event::Saved(Ok(()))
            }
            Req::Dead(batch) => {
                if self.faults && self.disk_full {
                    return Event::DeadLettered(Err(LocalError::DeadLetter {
                        target: "sim".into(),
                        path: "dead-letter/sim.jsonl".into(),
                        cause: FULL.into(),
                    }));
                }
                if std::env::var("SIM_TRACE").is_ok() {
                    for r in &batch {
                        eprintln!(
                            "{:?} dead-letter {:?} at {}:{} maybe_written {}",
                            self.now,
                            String::from_utf8_lossy(&r.line),
                            notion_inbox_core::position::Segment::key_prefix(&r.pos.file),
                            r.pos.offset,
                            r.maybe_written
                        );
                    }
                }
                let entries = entries_for(batch, &self.inbox);
                self.dead.append_batch(&entries).unwrap();
                Event::DeadLettered(Ok(()))
            }
            Req::Send {
                ticket,
                payload,
                token_gen,
            } => {
                let r = self.create(&payload, token_gen);
                let refused =
                    matches!(&r.answer, Answer::Error(e) if matches!(e.status, 400 | 403 | 404));
                if refused && !self.core().finished() {
                    self.notion.refusals += 1;
                }
                if std::env::var("SIM_TRACE").is_ok() {
                    eprintln!("{:?} send {} -> {r:?}", self.now, payload.1);
                }
                Event::Sent(ticket, r)
            }
            Req::Check {
                ticket,
                key,
                token_gen,
            } => Event::Checked(ticket, self.query(&key, token_gen)),
            Req::Refresh { sent_with } => Event::Refreshed(self.refresh(sent_with)),
        }
    }

    fn read(&mut self, max: usize) -> Event<P, FileIdentity> {
        self.watch_batch();
        let tailer = self.tailer.as_mut().expect("running");
        let mut payload = |record: &serde_json::Map<String, serde_json::Value>, key: &str| {
            let tweet = record["tweet"].as_str().unwrap_or_default().to_owned();
            Ok((key.to_owned(), tweet))
        };
        let mut how = Preparation {
            target: "sim",
            max_line_bytes: MAX_LINE,
            payload: &mut payload,
        };
        match read_batch(tailer, max, 1 << 20, &mut how) {
            Ok((inputs, caught_up)) => Event::Read { inputs, caught_up },
            Err(e) => Event::ReadFailed(LocalError::Read {
                target: "sim".into(),
                cause: e.to_string(),
            }),
        }
    }

    // ---- crashes and stops --------------------------------------------------------------------

    /// Whether a crash now falls outside the documented window (see `step`).
    fn crash_forgets_nothing(&mut self) -> bool {
        self.watch_batch();
        // (and a report of a file lost before it was opened, not written yet: no checkpoint names
        // such a file, so a restart cannot report it again)
        self.core().files_saved()
            && !self.watch.inlet.has_arrivals()
            && !self.pending.iter().any(|r| matches!(r, Req::Dead(_)))
            && self
                .last_birth
                .is_none_or(|b| self.durable_at.is_some_and(|d| d > b))
    }

    fn crash(&mut self) {
        self.crashes += 1;
        self.closing = false;
        if std::env::var("SIM_TRACE").is_ok() {
            eprintln!(
                "{:?} crash; durable {:?} volatile {:?}",
                self.now,
                self.durable
                    .as_ref()
                    .map(|c| (c.file.map(|f| f.ino), c.offset, c.next.len())),
                self.volatile
                    .as_ref()
                    .map(|c| (c.file.map(|f| f.ino), c.offset, c.next.len()))
            );
        }
        self.abandon_in_flight();
        self.core = None;
        self.tailer = None;
        // A new process: a new watcher, which follows nothing yet.
        self.watch = watcher::SimWatch::new(self.overflow);
        self.now += Duration::from_secs(1);
        let loaded = self.loaded_after_crash();
        self.start(loaded);
    }

    /// The process is gone: the requests it had out may or may not have been carried out.
    fn abandon_in_flight(&mut self) {
        for req in std::mem::take(&mut self.pending) {
            if let Req::Send {
                payload, token_gen, ..
            } = req
                && self.authorized(token_gen)
                && !payload.1.starts_with('x')
                && self.rng.random_bool(0.5)
            {
                let (key, tweet) = (*payload).clone();
                self.notion.rows.push((key, tweet, self.now));
            }
        }
    }

    /// What a restart after a crash finds: the last durable checkpoint, or a newer one that
    /// happened to reach the disk.
    fn loaded_after_crash(&mut self) -> Option<Checkpoint> {
        match (&self.volatile, self.rng.random_bool(0.5)) {
            (Some(v), true) => Some(v.clone()),
            _ => self.durable.clone(),
        }
    }

    fn begin_stop(&mut self) {
        if self.stopping.is_none() {
            if std::env::var("SIM_TRACE").is_ok() {
                let summary = self.core().summary();
                eprintln!("{:?} stop; core {summary}", self.now);
            }
            self.stopping = Some(self.now);
            self.feed(Event::Stop);
        }
    }

    fn maybe_finish_stop(&mut self) {
        let Some(since) = self.stopping else {
            return;
        };
        if self.dormant.is_some() {
            return;
        }
        // A close has no grace period: it waits for its final save (see `dormant`).
        if !self.grace_sent && !self.closing && self.now >= since + GRACE {
            self.grace_sent = true;
            // Requests still out are abandoned (they may have been carried out).
            self.feed(Event::GraceOver);
        }
        if self.core().finished() {
            self.exited();
        }
    }

    /// The core finished after a stop: the target closes, or the daemon starts again.
    fn exited(&mut self) {
        if self.closing {
            self.go_dormant();
        } else {
            self.crash_free_restart();
        }
    }

    fn crash_free_restart(&mut self) {
        if std::env::var("SIM_TRACE").is_ok() {
            let summary = self.core().summary();
            eprintln!(
                "{:?} restart after stop; {} pending; core {summary}",
                self.now,
                self.pending.len()
            );
        }
        self.abandon_in_flight();
        self.core = None;
        self.tailer = None;
        self.watch = watcher::SimWatch::new(self.overflow);
        // After a clean stop, the final checkpoint (if it was written) is the newest.
        let loaded = self.volatile.clone().or_else(|| self.durable.clone());
        self.start(loaded);
    }
}
