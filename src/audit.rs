//! The permission audit: state and secrets that other users could read, write or own. `check`
//! lists what it finds as problems and the daemon logs each as a warning when it starts (and on a
//! reload); each finding names the path and the `chmod` or `chown` that fixes it.
//!
//! What is audited: the state directory and its `tokens/` directory (writable by group or others:
//! anyone could swap a token or a checkpoint), every target's token file and the
//! `client_secret_file` (readable or writable by group or others), and the owner of each.
//!
//! The owner expected is the user notion-inbox runs as (its effective uid): the daemon must read
//! its tokens, which a `sudo notion-inbox authorize` would leave owned by root. When it runs as
//! root (who may read everything), the expected owner is the state directory's owner, the user the
//! daemon normally runs as.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::{Config, SecretSource, TokenSource};
use crate::state::private::effective_uid;
pub use crate::state::private::{describe_uid, name_or_uid};

/// One path that is more open than it should be, or owned by someone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    /// The target whose token file this is, if it is one.
    pub target: Option<String>,
    /// What the path is: "state directory", "token file", …
    pub what: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What is wrong with an [`Exposure`]'s path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// A directory group or others may write to (its mode).
    Writable {
        /// The permission bits.
        mode: u32,
    },
    /// A secret that group or others may read or write (its mode).
    Open {
        /// The permission bits.
        mode: u32,
    },
    /// The directory above an inbox's directory, writable by group or others (its mode): they
    /// could replace the inbox's directory with a symlink, and only an inbox's last path
    /// component is opened without following links.
    AboveInbox {
        /// The permission bits.
        mode: u32,
    },
    /// Owned by another user than the one expected.
    Owner {
        /// The owner's uid.
        owner: u32,
        /// The uid expected (see the module's documentation).
        expected: u32,
    },
}

impl fmt::Display for Exposure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, path) = (self.what, self.path.display());
        match self.problem {
            Problem::Writable { mode } => write!(
                f,
                "the {what} {path} is writable by group or others (mode {mode:04o}); run `chmod 700 {path}`"
            ),
            Problem::Open { mode } => write!(
                f,
                "the {what} {path} is {} group or others (mode {mode:04o}); run `chmod 600 {path}`",
                if mode & 0o044 != 0 {
                    "readable by"
                } else {
                    "writable by"
                }
            ),
            Problem::AboveInbox { mode } => write!(
                f,
                "the directory {path}, which holds the {what}, is writable by group or others (mode {mode:04o}): they could replace that directory with a symlink (only an inbox's last path component is opened without following links); keep inboxes directly in the shared spool directory, or run `chmod go-w {path}`"
            ),
            Problem::Owner { owner, expected } => write!(
                f,
                "the {what} {path} belongs to {}, but notion-inbox {} {}; run `chown {} {path}`",
                describe_uid(owner),
                if expected == effective_uid() {
                    "runs as"
                } else {
                    "keeps its state as"
                },
                describe_uid(expected),
                name_or_uid(expected),
            ),
        }
    }
}

/// Audits the state directory, the tokens and the client secret file of `config`.
pub fn audit(config: &Config) -> Vec<Exposure> {
    let state_dir = &config.daemon.state_dir;
    let me = effective_uid();
    let state_owner = std::fs::metadata(state_dir).ok().map(|m| m.uid());
    // Root may read anything: the owner that matters is then the daemon's, the state's owner.
    let expected = if me == 0 { state_owner } else { Some(me) };
    let mut found = Vec::new();
    let mut look = |target: Option<&str>, what, path: &Path, dir: bool| {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let mode = meta.mode() & 0o777;
        let problem = if dir && mode & 0o022 != 0 {
            Some(Problem::Writable { mode })
        } else if !dir && mode & 0o077 != 0 {
            Some(Problem::Open { mode })
        } else {
            None
        };
        let owner = expected
            .filter(|&e| meta.uid() != e)
            .map(|e| Problem::Owner {
                owner: meta.uid(),
                expected: e,
            });
        for problem in problem.into_iter().chain(owner) {
            let e = Exposure {
                target: target.map(str::to_owned),
                what,
                path: path.to_owned(),
                problem,
            };
            if !found.contains(&e) {
                found.push(e);
            }
        }
    };
    look(None, "state directory", state_dir, true);
    look(
        None,
        "tokens directory",
        &crate::state::layout::StateDir(state_dir).tokens(),
        true,
    );
    for target in &config.targets {
        if let TokenSource::File(path) = &target.token {
            look(Some(&target.name), "token file", path, false);
        }
    }
    // Only the configured file when it is the one used: under the unit systemd's copy is (systemd
    // makes it readable by the service), and the root-only file it read must stay root's.
    if let Some(SecretSource::File(path)) = &config.notion.client_secret
        && matches!(config.client_secret_source(), Some(SecretSource::File(used)) if used == *path)
    {
        look(None, "client secret file", path, false);
    }
    for target in &config.targets {
        found.extend(above_inbox(&target.name, &target.inbox));
    }
    found
}

/// The directory above `inbox`'s directory, if group or others may write it (without the sticky
/// bit, which keeps them from renaming what they do not own).
fn above_inbox(target: &str, inbox: &Path) -> Option<Exposure> {
    let above = inbox.parent()?.parent()?;
    let above = if above.as_os_str().is_empty() {
        Path::new(".")
    } else {
        above
    };
    let mode = std::fs::metadata(above).ok()?.mode();
    (mode & 0o022 != 0 && mode & 0o1000 == 0).then(|| Exposure {
        target: Some(target.to_owned()),
        what: "directory of its inbox",
        path: above.to_owned(),
        problem: Problem::AboveInbox {
            mode: mode & 0o7777,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_path_and_the_fix() {
        let e = |problem| {
            Exposure {
                target: None,
                what: "state directory",
                path: "/var/lib/x".into(),
                problem,
            }
            .to_string()
        };
        let w = e(Problem::Writable { mode: 0o775 });
        assert!(
            w.contains("mode 0775") && w.contains("chmod 700 /var/lib/x"),
            "{w}"
        );
        let o = e(Problem::Open { mode: 0o644 });
        assert!(
            o.contains("readable by") && o.contains("chmod 600 /var/lib/x"),
            "{o}"
        );
        let me = effective_uid();
        let c = e(Problem::Owner {
            owner: 4_000_000_000,
            expected: me,
        });
        assert!(c.contains("uid 4000000000"), "{c}");
        assert!(
            c.contains(&format!("chown {} /var/lib/x", name_or_uid(me))),
            "{c}"
        );
    }
}
