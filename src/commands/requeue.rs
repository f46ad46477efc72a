//! `notion-inbox requeue`: after the cause is fixed, move a target's dead letters back into its
//! inbox, exactly once, without giving anyone who may write the spool a way to make it write
//! elsewhere.
//!
//! 1. Under the dead-letter file's lock, the selected entries (all that hold a line, or those the
//!    filters pick) are written to a batch file in `<state_dir>/requeue/`, then the dead-letter
//!    file is rewritten without them. A batch is removed from the dead-letter file before anything
//!    else happens to it, so an interrupted split is finished by the next run: nothing is both
//!    requeued and kept.
//! 2. The batch's original lines are appended to the inbox with one locked write (the lock `push`
//!    takes). Under that lock, on the descriptor about to be written, the inbox is checked (see
//!    [`check_inbox`]), and a journal records the file and the offset the lines will start at.
//! 3. The batch and its journal are removed.
//!
//! A crash between any two steps is repaired by the next `requeue`: a batch without a journal was
//! not appended; a batch with a journal was appended if the inbox holds its bytes at the journal's
//! offset, and is appended otherwise. So no record is lost and none is appended twice.

mod batch;
mod select;

pub(crate) use select::Selection;
pub use select::{EntryOutcome, Verdict};

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, Target};
use crate::record::LocalRules;
use crate::state::checkpoint::{Checkpoint, CheckpointStore};
use crate::state::deadletter::{self, DeadLetter};

/// Arguments of `requeue`.
#[derive(Debug, Default, clap::Args)]
pub struct RequeueArgs {
    /// The target's name, as in its [[target]] table.
    #[arg(long, short)]
    pub target: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// List the dead letters, numbered, and change nothing.
    #[arg(long)]
    pub list: bool,
    /// Say what would be requeued (or purged) and into which file, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only the entries whose reason contains TEXT.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Only entry N of `--list` (repeatable).
    #[arg(long = "line", value_name = "N")]
    pub lines: Vec<usize>,
    /// Remove the selected entries instead of requeueing them (for records that can never
    /// succeed); they are kept in `<state_dir>/purged/<target>.jsonl`.
    #[arg(long)]
    pub purge: bool,
    /// Run even as root. `requeue` appends to a path that producers control; run it as the
    /// daemon's user instead (`sudo -u notion-inbox notion-inbox requeue …`).
    #[arg(long)]
    pub allow_root: bool,
}

/// Errors of `requeue`.
#[derive(Debug, thiserror::Error)]
pub enum RequeueError {
    /// Running as root without `--allow-root`.
    #[error(
        "refusing to requeue as root: requeue appends to {inbox}, a path that producers may replace; run it as the daemon's user (sudo -u <daemon user> notion-inbox requeue --target {target}), or pass --allow-root"
    )]
    Root {
        /// The target.
        target: String,
        /// Its inbox.
        inbox: PathBuf,
    },
    /// The inbox is not a file requeue may append to.
    #[error(
        "refusing to append to inbox {path}: {why}; nothing was requeued and the dead letters are unchanged"
    )]
    Inbox {
        /// The inbox path.
        path: PathBuf,
        /// What is wrong, and the fix.
        why: String,
    },
    /// A batch was taken from the dead-letter file but could not be appended.
    #[error(
        "{source}; {appended} line(s) were appended before this, and the entries taken wait in {batch}: the next requeue appends them (they are not in the dead-letter file meanwhile)"
    )]
    Waiting {
        /// The batch file.
        batch: PathBuf,
        /// Lines appended by this run before it stopped.
        appended: usize,
        /// Why it was not appended.
        source: Box<RequeueError>,
    },
    /// The checkpoint cannot be read.
    #[error(
        "cannot read the checkpoint of target {target} ({why}); requeue needs it to tell which dead-lettered lines the daemon is done with: run notion-inbox status, and fix the checkpoint first"
    )]
    Checkpoint {
        /// The target.
        target: String,
        /// Why.
        why: String,
    },
    /// `--line` names an entry that does not exist.
    #[error(
        "the dead-letter file of target {target} has {count} entries; there is no entry {line} (see requeue --list)"
    )]
    NoSuchLine {
        /// The target.
        target: String,
        /// How many entries there are.
        count: usize,
        /// The number asked for.
        line: usize,
    },
    /// The state directory could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Appending to the inbox failed.
    #[error(transparent)]
    Append(#[from] crate::commands::push::PushError),
}

impl RequeueError {
    fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RequeueError {
        let path = path.to_owned();
        move |source| RequeueError::Io { what, path, source }
    }
}

/// One dead letter as `--list` shows it.
#[derive(Debug, Serialize)]
pub struct Listed {
    /// Its number, for `--line`.
    pub number: usize,
    /// Whether `requeue` can move it back (it holds the line's bytes and is not a loss report).
    pub requeueable: bool,
    /// Whether it is the report of a lost file rather than a record.
    pub lost: bool,
    /// The byte offset in the inbox file it came from.
    pub offset: u64,
    /// Why it was dead-lettered.
    pub reason: String,
    /// When.
    pub time: String,
    /// Why the daemon would refuse its line again, with the configuration as it is now (then
    /// `requeue` leaves it: fix this first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_now: Option<String>,
    /// Whether a batch of an interrupted run holds it: the next `requeue` appends it (whatever
    /// it selects) and removes it from here.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub in_batch: bool,
}

/// What `requeue` did, or would do with `--dry-run`.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Requeued {
    /// Lines appended to the inbox (with `--dry-run`: that would be), including those of a batch
    /// an interrupted run left.
    pub appended: usize,
    /// Selected entries that cannot be requeued (a line over max_line_bytes, whose bytes were not
    /// kept, or the report of a lost file); they stay in the dead-letter file.
    pub kept: usize,
    /// Selected entries left for a later run: the daemon has not yet committed past their line,
    /// so a restart could read and dead-letter it again (requeued, it would then be there twice).
    pub unsettled: usize,
    /// Selected entries the daemon's rules refuse again with the configuration as it is now; they
    /// stay in the dead-letter file.
    pub refused: usize,
    /// Entries removed by `--purge`.
    pub purged: usize,
    /// Whether nothing was changed (`--dry-run`).
    pub dry_run: bool,
    /// Each selected entry, numbered as `--list` shows it, and what became of it.
    pub entries: Vec<EntryOutcome>,
}

impl Requeued {
    /// The totals of `entries` (plus `pending` lines of an interrupted run's batches).
    fn of(entries: Vec<EntryOutcome>, pending: usize, dry_run: bool) -> Requeued {
        let count = |v: Verdict| entries.iter().filter(|e| e.outcome == v).count();
        Requeued {
            appended: count(Verdict::Requeued) + pending,
            kept: count(Verdict::Kept),
            unsettled: count(Verdict::Unsettled),
            refused: count(Verdict::Refused),
            purged: count(Verdict::Purged),
            dry_run,
            entries,
        }
    }
}

/// Lists target `args.target`'s dead letters.
pub fn list(config: &Config, args: &RequeueArgs) -> Result<Vec<Listed>, RequeueError> {
    let target = config
        .target(&args.target)
        .map_err(|e| RequeueError::Inbox {
            path: PathBuf::new(),
            why: e.to_string(),
        })?;
    let path = target.dead_letter_path(&config.daemon);
    let contents =
        deadletter::read_contents(&path).map_err(RequeueError::io("cannot read", &path))?;
    for u in &contents.unparsed {
        tracing::warn!("{}", u.to_error(&path));
    }
    let rules = rules_of(config, target);
    let dir = crate::state::layout::StateDir(&config.daemon.state_dir).requeue();
    let batches = batch::pending(&dir, &target.name)?;
    let in_batch = batch::Held::of(&batches)?.mark(
        batch::identity(&path),
        contents.entries.iter().map(|e| e.text.as_str()),
    );
    let entries: Vec<DeadLetter> = contents.entries.into_iter().map(|e| e.entry).collect();
    Ok(entries
        .iter()
        .zip(in_batch)
        .enumerate()
        .map(|(i, (e, in_batch))| Listed {
            number: i + 1,
            requeueable: requeueable(e),
            lost: e.lost,
            offset: e.offset,
            reason: e.reason.clone(),
            time: e.time.clone(),
            refused_now: requeueable(e)
                .then(|| rules.line(&e.original_bytes()).err())
                .flatten()
                .map(|r| r.to_string()),
            in_batch,
        })
        .collect())
}

/// Requeues (or purges) target `args.target`'s selected dead letters.
pub fn run(config: &Config, args: &RequeueArgs) -> anyhow::Result<Requeued> {
    let target = config.target(&args.target)?;
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } == 0 && !args.allow_root {
        return Err(RequeueError::Root {
            target: target.name.clone(),
            inbox: target.inbox.clone(),
        }
        .into());
    }
    let select = Selection::of(args);
    if args.dry_run {
        return Ok(dry_run(config, target, &select, args.purge)?);
    }
    let dir = crate::state::layout::StateDir(&config.daemon.state_dir).requeue();
    crate::state::private::create_private_dir(&dir)
        .map_err(RequeueError::io("cannot create", &dir))?;
    let _run = lock_run(&dir, &target.name)?;
    let dead = target.dead_letter_path(&config.daemon);
    if args.purge {
        let purged_file =
            crate::state::layout::StateDir(&config.daemon.state_dir).purged_file(&target.name);
        let purged = purged_file.parent().unwrap_or(&purged_file).to_owned();
        crate::state::private::create_private_dir(&purged)
            .map_err(RequeueError::io("cannot create", &purged))?;
        let held = batch::Held::of(&batch::pending(&dir, &target.name)?)?;
        let purged = batch::purge(&dead, &purged_file, &select, &target.name, &held)?;
        return Ok(Requeued::of(purged, 0, false));
    }
    let rules = rules_of(config, target);
    // Refuse a bad inbox before anything moves; the check is made again on the descriptor that is
    // written, under its lock.
    let checkpoint = checkpoint_of(config, target)?;
    let known = known_files(checkpoint.as_ref().map(|(c, _)| c));
    precheck(target, &known)?;
    let select = select.settled_by(checkpoint.as_ref().map(|(c, at)| (c, *at)));
    // Finish batches a crashed run left, then take the selected dead letters.
    let mut batches = batch::pending(&dir, &target.name)?;
    let held = batch::Held::of(&batches)?;
    let taken = batch::take(&dead, &dir, &target.name, &select, &rules, &held)?;
    batches.extend(taken.batch);
    let mut appended = 0;
    for b in batches {
        appended +=
            batch::append(target, &b, |file| check_inbox(target, file, &known)).map_err(|e| {
                RequeueError::Waiting {
                    batch: b.clone(),
                    appended,
                    source: Box::new(e),
                }
            })?;
    }
    let mut done = Requeued::of(taken.entries, 0, false);
    // With the lines of batches an interrupted run left.
    done.appended = appended;
    Ok(done)
}

/// Whether an entry holds a record's bytes that can go back into the inbox.
pub(crate) fn requeueable(e: &DeadLetter) -> bool {
    !e.lost && (!e.line.is_empty() || e.line_base64.is_some())
}

fn dry_run(
    config: &Config,
    target: &Target,
    select: &Selection,
    purge: bool,
) -> Result<Requeued, RequeueError> {
    let dead = target.dead_letter_path(&config.daemon);
    let contents =
        deadletter::read_contents(&dead).map_err(RequeueError::io("cannot read", &dead))?;
    select.check_lines(&target.name, contents.entries.len())?;
    let dir = crate::state::layout::StateDir(&config.daemon.state_dir).requeue();
    let batches = batch::pending(&dir, &target.name)?;
    // Entries an interrupted run took are its batch's, as the run itself would see them.
    let batched = batch::Held::of(&batches)?.mark(
        batch::identity(&dead),
        contents.entries.iter().map(|e| e.text.as_str()),
    );
    let entries = || {
        contents
            .entries
            .iter()
            .zip(&batched)
            .map(|(e, b)| (&e.entry, *b))
    };
    if purge {
        return Ok(Requeued::of(select.plan(entries(), None).outcomes, 0, true));
    }
    let mut waiting = 0;
    for b in &batches {
        waiting += deadletter::read_all(b)
            .map_err(RequeueError::io("cannot read", b))?
            .len();
    }
    let checkpoint = checkpoint_of(config, target)?;
    let select = select
        .clone()
        .settled_by(checkpoint.as_ref().map(|(c, at)| (c, *at)));
    let rules = rules_of(config, target);
    let judged = select.plan(entries(), Some(&rules)).outcomes;
    // As a run does, whatever it would move.
    precheck(target, &known_files(checkpoint.as_ref().map(|(c, _)| c)))?;
    Ok(Requeued::of(judged, waiting, true))
}

/// The daemon's schema-free rules for `target`, knowing the schema the daemon last resolved
/// (which tells the title's field) when it has cached one.
fn rules_of<'a>(config: &Config, target: &'a Target) -> LocalRules<'a> {
    let rules = LocalRules::new(target, config.daemon.max_line_bytes as usize);
    match crate::notion::cache::ResolutionCache::new(&config.daemon.state_dir, &target.name)
        .last(config.notion.version)
    {
        Some(resolved) => rules.knowing(&resolved),
        None => rules,
    }
}

/// The target's checkpoint, if it has one, and when it was written. One that cannot be read stops
/// the run: without it, requeue cannot tell which lines the daemon is done with.
fn checkpoint_of(
    config: &Config,
    target: &Target,
) -> Result<Option<(Checkpoint, chrono::DateTime<chrono::Utc>)>, RequeueError> {
    let Some(store) = CheckpointStore::existing(&config.daemon.state_dir) else {
        return Ok(None);
    };
    store
        .load_stamped(&target.name)
        .map_err(|e| RequeueError::Checkpoint {
            target: target.name.clone(),
            why: crate::error::chain(&e),
        })
}

/// Takes `<dir>/<target>.lock` for the whole run: two runs at once would both append a batch the
/// first one took.
fn lock_run(dir: &Path, target: &str) -> Result<std::fs::File, RequeueError> {
    let path = dir.join(format!("{target}.lock"));
    let file = crate::state::private::private_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(RequeueError::io("cannot open", &path))?;
    file.lock()
        .map_err(RequeueError::io("cannot lock", &path))?;
    Ok(file)
}

/// The files (device, inode) the checkpoint names: the daemon has read them as this target's
/// inbox, so they are the inbox whoever owns them.
fn known_files(checkpoint: Option<&Checkpoint>) -> Vec<(u64, u64)> {
    checkpoint
        .into_iter()
        .flat_map(|c| c.file.iter().chain(&c.next))
        .map(|f| (f.dev, f.ino))
        .collect()
}

/// Checks the inbox as it is now, opened as the daemon opens it; a missing inbox is fine (it is
/// created).
fn precheck(target: &Target, known: &[(u64, u64)]) -> Result<(), RequeueError> {
    use crate::inbox::InboxError;
    match crate::inbox::open_inbox(&target.inbox) {
        Ok(file) => check_inbox(target, &file, known),
        Err(InboxError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(())
        }
        Err(InboxError::NotAFile { what, .. }) => Err(RequeueError::Inbox {
            path: target.inbox.clone(),
            why: format!(
                "it is {what}, not a regular file (a producer may have planted it): remove it, and let producers create the file by appending"
            ),
        }),
        Err(e) => Err(RequeueError::Inbox {
            path: target.inbox.clone(),
            why: e.to_string(),
        }),
    }
}

/// Whether `file`, opened at the inbox path without following links, may receive the batch: a
/// regular file with one link (a hard link to another file would be written through), that is a
/// file the checkpoint names or is owned by the user running `requeue`.
fn check_inbox(
    target: &Target,
    file: &std::fs::File,
    known: &[(u64, u64)],
) -> Result<(), RequeueError> {
    let refuse = |why: String| RequeueError::Inbox {
        path: target.inbox.clone(),
        why,
    };
    let meta = file
        .metadata()
        .map_err(RequeueError::io("cannot stat", &target.inbox))?;
    if !meta.is_file() {
        return Err(refuse("it is not a regular file".into()));
    }
    if meta.nlink() != 1 {
        return Err(refuse(format!(
            "it has {} hard links, so it may be another file as well; move it away and let producers create a new one",
            meta.nlink()
        )));
    }
    if known.contains(&(meta.dev(), meta.ino())) {
        return Ok(());
    }
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let me = unsafe { libc::geteuid() };
    if meta.uid() == me {
        return Ok(());
    }
    Err(refuse(format!(
        "it is owned by uid {} and is not the file the daemon's checkpoint names (a producer may have replaced it); let the daemon read it first (then its checkpoint names it), or run requeue as uid {}",
        meta.uid(),
        meta.uid()
    )))
}

/// Prints `--list` as text.
pub fn print_list(target: &str, entries: &[Listed]) {
    if entries.is_empty() {
        eprintln!("target {target} has no dead letters");
        return;
    }
    for e in entries {
        let tag = if e.in_batch {
            " [taken by an interrupted run: the next requeue appends it]".to_owned()
        } else if e.lost {
            " [lost file report: kept]".to_owned()
        } else if !e.requeueable {
            " [line not kept: cannot be requeued]".to_owned()
        } else if let Some(why) = &e.refused_now {
            format!(" [refused now too: {}]", crate::text::message(why))
        } else {
            String::new()
        };
        // A reason may quote Notion (a property's name) or the record: shown made safe.
        println!(
            "{:>5}  {}  offset {}  {}{tag}",
            e.number,
            e.time,
            e.offset,
            crate::text::message(&e.reason)
        );
    }
}

/// Prints what a run did (or would do) as text: the totals, then each selected entry that stays
/// and why.
pub fn print_done(config: &Config, args: &RequeueArgs, done: &Requeued) {
    let target = args.target.as_str();
    let would = if done.dry_run { "would " } else { "" };
    let plural = |n: usize| if n == 1 { "entry" } else { "entries" };
    if args.purge {
        let file = crate::state::layout::StateDir(&config.daemon.state_dir).purged_file(target);
        eprintln!(
            "{would}purge {} dead letter(s) of target {target} (kept in {})",
            done.purged,
            file.display()
        );
        return;
    }
    let inbox = config
        .target(target)
        .map(|t| t.inbox.display().to_string())
        .unwrap_or_default();
    let verb = if done.dry_run { "would move" } else { "moved" };
    eprintln!(
        "{verb} {} dead letter(s) of target {target} back into {inbox}",
        done.appended
    );
    let stay: Vec<&EntryOutcome> = done
        .entries
        .iter()
        .filter(|e| e.outcome != Verdict::Requeued)
        .collect();
    for (what, verdict, fix) in [
        (
            "refused again by the configuration as it is now",
            Verdict::Refused,
            "fix the cause (see each reason), or remove them with --purge --line N",
        ),
        (
            "kept",
            Verdict::Kept,
            "they hold no record to requeue; remove them with --purge --line N",
        ),
        (
            "left for now",
            Verdict::Unsettled,
            "the daemon has not yet saved a checkpoint past their line; run requeue again in a few seconds",
        ),
    ] {
        let n = stay.iter().filter(|e| e.outcome == verdict).count();
        if n > 0 {
            eprintln!("{n} selected {} {what}: {fix}", plural(n));
        }
    }
    for e in stay {
        let number = match e.now {
            Some(now) if now != e.number => format!("{now} (was {})", e.number),
            _ => e.number.to_string(),
        };
        eprintln!("  entry {number}: {}", e.why.as_deref().unwrap_or("stays"));
    }
}
