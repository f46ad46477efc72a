//! A producer who may write the spool plants symlinks, FIFOs, sockets, directories and devices at
//! inbox paths, against the real binary. They must gain nothing: nothing is read through them,
//! nothing is dead-lettered from them, `requeue` writes nowhere else, and the daemon (healthy
//! targets, `status`, SIGTERM) never freezes.
//!
//! The producer is a throwaway unprivileged uid (`setpriv`), which needs root; where that is
//! impossible the tests that need it say so and return.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;

/// The uid and gid the producer runs as: not in /etc/passwd, owning nothing.
const PRODUCER: u32 = 47_111;

fn fast_world() -> World {
    World::new(fast())
}

/// A producer: a shell running as [`PRODUCER`] with no supplementary groups.
struct Producer;

impl Producer {
    /// The producer, if this process may become it; otherwise says why the test is skipped.
    fn get(test: &str) -> Option<Producer> {
        let ok = Command::new("setpriv")
            .args(setpriv_args())
            .arg("true")
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "SKIPPED {test}: cannot run as an unprivileged uid here (needs root and setpriv from util-linux)"
            );
        }
        ok.then_some(Producer)
    }

    /// Runs `script` with `sh -c` as the producer, in `dir`; panics if it fails.
    #[track_caller]
    fn sh(&self, dir: &Path, script: &str) {
        let out = self.try_sh(dir, script);
        assert!(
            out.status.success(),
            "producer script failed: {script}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn try_sh(&self, dir: &Path, script: &str) -> std::process::Output {
        Command::new("setpriv")
            .args(setpriv_args())
            .args(["sh", "-c", script])
            .current_dir(dir)
            .output()
            .unwrap()
    }
}

fn setpriv_args() -> Vec<String> {
    vec![
        format!("--reuid={PRODUCER}"),
        format!("--regid={PRODUCER}"),
        "--clear-groups".into(),
        "--".into(),
    ]
}

/// Lays the world out as a deployment does: the test directory is traversable, the spool is
/// writable by the producers' group (setgid), the state directory is the daemon's alone.
fn share_spool(w: &World) {
    std::fs::set_permissions(w.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let spool = w.path("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::os::unix::fs::chown(&spool, None, Some(PRODUCER)).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o2770)).unwrap();
}

/// The health the daemon last published for `target`, as `state: message`.
fn health(w: &World, target: &str) -> String {
    let (_, out, _) = w.cli(&["status", "--json", "--target", target]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let h = &v[0]["daemon"]["health"];
    format!(
        "{}: {}",
        h["state"].as_str().unwrap_or(""),
        h["message"].as_str().unwrap_or("")
    )
}

fn requeue(w: &World, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["requeue", "--target", "t"];
    args.extend_from_slice(extra);
    let (code, _, err) = w.cli(&args);
    (code, err)
}

#[test]
fn a_symlinked_inbox_discloses_nothing_and_requeue_writes_only_the_inbox() {
    let Some(producer) = Producer::get("a_symlinked_inbox_discloses_nothing") else {
        return;
    };
    let mut w = fast_world();
    share_spool(&w);
    let t = w.target("t");
    w.write_config(&[t], "");
    // Files a producer must not reach: a secret, and root-owned files such as /etc/cron.d/x.
    std::fs::write(w.path("secret.txt"), "TOPSECRET-LINE\n").unwrap();
    std::fs::set_permissions(w.path("secret.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir_all(w.path("cron")).unwrap();
    std::fs::write(w.path("cron/x"), "orig\n").unwrap();
    let spool = w.path("spool");
    let secret = w.path("secret.txt").display().to_string();
    let cron_x = w.path("cron/x").display().to_string();
    let cron_y = w.path("cron/y").display().to_string();

    w.start();
    producer.sh(
        &spool,
        "printf '%s\\n' '{\"handle\":\"@ok\",\"tweet\":\"x\"}' '{\"handle\":\"@cron\",\"tweet\":{\"x\":\"* * * * * root touch /tmp/x\"}}' >> t.jsonl",
    );
    w.wait_for(
        "the record is delivered and the bad line dead-lettered",
        || w.handles() == ["@ok"] && w.dead_letters("t").len() == 1,
    );

    // The inbox becomes a symlink to a secret: nothing is read from it.
    producer.sh(
        &spool,
        &format!("mv t.jsonl t.old && ln -s {secret} t.jsonl"),
    );
    w.wait_for("the health names the symlink", || {
        health(&w, "t").contains("is a symbolic link")
    });
    let dead = std::fs::read_to_string(w.path("state/dead-letter/t.jsonl")).unwrap();
    assert!(!dead.contains("TOPSECRET"), "the secret was dead-lettered");
    assert_eq!(w.handles(), ["@ok"]);

    // push refuses the symlink as the daemon does.
    let (code, _, err) = w.cli(&["push", "--target", "t", "--handle", "@x", "--tweet", "y"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("is a symbolic link"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "TOPSECRET-LINE\n"
    );

    // requeue as root is refused; with --allow-root it refuses the symlink.
    let (code, err) = requeue(&w, &[]);
    assert_ne!(code, Some(0));
    assert!(err.contains("refusing to requeue as root"), "{err}");
    for (link, victim) in [(&secret, &secret), (&cron_x, &cron_x), (&cron_y, &cron_y)] {
        producer.sh(&spool, &format!("ln -sfn {link} t.jsonl"));
        let (code, err) = requeue(&w, &["--allow-root"]);
        assert_ne!(code, Some(0), "requeue through a symlink to {victim}");
        assert!(err.contains("symbolic link"), "{err}");
        assert!(err.contains("dead letters are unchanged"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&cron_x).unwrap(), "orig\n");
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "TOPSECRET-LINE\n"
    );
    assert!(
        !Path::new(&cron_y).exists(),
        "requeue created a file through a dangling symlink"
    );
    assert_eq!(
        w.dead_letters("t").len(),
        1,
        "the dead letter is still there"
    );

    // A hard link to a root-owned file (where the kernel allows one) is refused as well.
    let linked = producer.try_sh(&spool, &format!("rm -f t.jsonl && ln {cron_x} t.jsonl"));
    if linked.status.success() {
        let (code, err) = requeue(&w, &["--allow-root"]);
        assert_ne!(code, Some(0));
        assert!(err.contains("hard links"), "{err}");
        assert_eq!(std::fs::read_to_string(&cron_x).unwrap(), "orig\n");
    } else {
        eprintln!(
            "fs.protected_hardlinks forbids the producer's hard link: that case is moot here"
        );
    }
    assert!(w.logs().matches("is a symbolic link").count() >= 1);
    assert_eq!(w.stop(), Some(0));

    // A regular file of the producer's that the daemon has not read: not requeued into.
    producer.sh(&spool, "rm -f t.jsonl && : > t.jsonl");
    let (code, err) = requeue(&w, &["--allow-root"]);
    assert_ne!(code, Some(0));
    assert!(err.contains(&format!("owned by uid {PRODUCER}")), "{err}");
    // Once the daemon has read it, it is the inbox: the line goes back, once.
    w.start();
    producer.sh(
        &spool,
        "printf '%s\\n' '{\"handle\":\"@new\",\"tweet\":\"y\"}' >> t.jsonl",
    );
    w.wait_for("the new file is read", || {
        w.handles().contains(&"@new".to_string())
    });
    w.wait_for("the checkpoint names the new file", || {
        let (code, err) = requeue(&w, &["--allow-root", "--dry-run"]);
        code == Some(0) && err.contains("would move 1")
    });
    let (code, err) = requeue(&w, &["--allow-root"]);
    assert_eq!(code, Some(0), "{err}");
    let inbox = std::fs::read_to_string(w.inbox("t")).unwrap();
    // (A record the daemon refuses by the schema: requeue's own checks pass it.)
    assert!(
        inbox.ends_with("{\"x\":\"* * * * * root touch /tmp/x\"}}\n"),
        "{inbox}"
    );
    w.wait_for("the requeued line is dead-lettered again", || {
        w.dead_letters("t").len() == 1
    });
    assert_eq!(w.stop(), Some(0));
    let logs = w.logs();
    assert!(!logs.contains("TOPSECRET"), "the secret reached the log");
}

/// Creates a character device (`/dev/zero`'s numbers) at `path`; false if this machine forbids it.
fn make_device(path: &Path) -> bool {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mknod(2) with a valid path; makedev(1, 5) is /dev/zero.
    unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 5)) == 0 }
}

fn make_fifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo(3) with a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0, "mkfifo");
}

#[test]
fn fifos_sockets_directories_and_devices_at_inbox_paths_freeze_nothing() {
    let mut w = fast_world();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let fifos: Vec<String> = (0..cores + 1).map(|i| format!("fifo{i}")).collect();
    let mut names: Vec<String> = fifos.clone();
    names.extend(["sock", "dir", "dev", "late", "huge", "good"].map(String::from));
    let specs: Vec<TargetSpec> = names.iter().map(|n| w.target(n)).collect();
    let port = free_port();
    w.write_config(&specs, &format!("metrics_listen = \"127.0.0.1:{port}\"\n"));
    for n in &names {
        w.append(&w.inbox(n), &rec(&format!("@{n}"), "first"));
    }
    // A first run, so that every checkpoint names a regular file that will be replaced.
    w.start();
    w.wait_for("one row per target", || w.pages().len() == names.len());
    assert_eq!(w.stop(), Some(0));

    let mut planted = vec![];
    for n in &fifos {
        std::fs::remove_file(w.inbox(n)).unwrap();
        make_fifo(&w.inbox(n));
        planted.push((n.clone(), "a FIFO"));
    }
    std::fs::remove_file(w.inbox("sock")).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(w.inbox("sock")).unwrap();
    planted.push(("sock".into(), "a socket"));
    std::fs::remove_file(w.inbox("dir")).unwrap();
    std::fs::create_dir(w.inbox("dir")).unwrap();
    planted.push(("dir".into(), "a directory"));
    std::fs::remove_file(w.inbox("dev")).unwrap();
    if make_device(&w.inbox("dev")) {
        planted.push(("dev".into(), "a device"));
    } else {
        eprintln!("this machine forbids mknod: the device case is not checked here");
        std::fs::write(w.inbox("dev"), "").unwrap();
    }

    // A sparse file of 512 MiB of NULs, then a record: read in bounded slices, it holds up nothing.
    let huge = std::fs::OpenOptions::new()
        .append(true)
        .open(w.inbox("huge"))
        .unwrap();
    huge.set_len(512 << 20).unwrap();
    drop(huge);
    w.append(
        &w.inbox("huge"),
        &format!("\n{}", rec("@huge", "after the hole")),
    );

    w.start();
    w.append(&w.inbox("good"), &rec("@good", "second"));
    w.wait_for("the healthy target keeps delivering", || {
        w.handles().iter().filter(|h| *h == "@good").count() == 2
    });
    for (n, what) in &planted {
        w.wait_for(&format!("the health of {n} says what is there"), || {
            health(&w, n).contains(&format!("is {what}, not a regular file"))
        });
    }
    // The running daemon meets a FIFO too: a file replaced between its look and its open.
    std::fs::remove_file(w.inbox("late")).unwrap();
    make_fifo(&w.inbox("late"));
    w.append(&w.inbox("good"), &rec("@good", "third"));
    w.wait_for("the late FIFO is reported", || {
        health(&w, "late").contains("is a FIFO")
    });
    w.wait_for("the healthy target still delivers", || {
        w.handles().iter().filter(|h| *h == "@good").count() == 3
    });
    // Several reconcile ticks (500 ms each) later, each problem was still logged only once. No
    // event marks a tick, so this lets time pass: with fewer ticks the check is weaker, never
    // wrong.
    std::thread::sleep(Duration::from_secs(3));
    let logs = w.logs();
    for (n, what) in &planted {
        let line = format!("inbox {} is {what}", w.inbox(n).display());
        let said: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains(&line) && (l.contains("ERROR") || l.contains("WARN")))
            .collect();
        assert_eq!(said.len(), 1, "{line} logged once:\n{}", said.join("\n"));
    }
    w.wait_for("the record after the hole arrives", || {
        w.handles().iter().filter(|h| *h == "@huge").count() == 2
    });
    // push neither blocks on a FIFO nor writes into one.
    let (code, _, err) = w.cli(&[
        "push", "--target", "fifo0", "--handle", "@x", "--tweet", "y",
    ]);
    assert_ne!(code, Some(0));
    assert!(err.contains("is a FIFO"), "{err}");
    let metrics =
        w.rt.block_on(async {
            let get = reqwest::get(format!("http://127.0.0.1:{port}/metrics"));
            tokio::time::timeout(Duration::from_secs(10), get).await
        })
        .expect("/metrics answers")
        .unwrap();
    let metrics = w.rt.block_on(metrics.text()).unwrap();
    assert!(
        metrics.contains("notion_inbox_delivered_total{target=\"good\"} 2"),
        "{metrics}"
    );
    // The daemon runs, but the targets at FIFOs need attention: exit 1, and they are named.
    let (code, out, _) = w.cli(&["status"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("fifo0"), "{out}");

    let start = Instant::now();
    assert_eq!(w.stop(), Some(0));
    // shutdown_grace is 5 s in the test config; a frozen worker would keep it past that.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(w.dead_letters("fifo0").is_empty());
    assert_eq!(w.pages().len(), names.len() + 3);
}

#[test]
fn a_producer_appending_in_a_tight_loop_does_not_hold_up_a_reload() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut w = fast_world();
    let busy = w.target("busy");
    w.write_config(std::slice::from_ref(&busy), "");
    w.start();
    w.append(&w.inbox("busy"), &rec("@busy", "first"));
    w.wait_for("the busy target delivers", || {
        w.handles().contains(&"@busy".to_string())
    });
    // Blank lines: a stream of inotify events that costs Notion nothing.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, path) = (Arc::clone(&stop), w.inbox("busy"));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                append_bytes(&path, b"\n");
            }
        })
    };
    // The added target's inbox is in a directory not watched yet: the reload must add a watch.
    let added = w.target("added");
    let path = w.write_config(&[busy, added], "");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("spool/added.jsonl", "other/added.jsonl"),
    )
    .unwrap();
    std::fs::create_dir_all(w.path("other")).unwrap();
    w.signal(libc::SIGHUP);
    w.append(
        &w.path("other/added.jsonl"),
        &rec("@added", "after the reload"),
    );
    w.wait_for("the target added by the reload delivers", || {
        w.handles().contains(&"@added".to_string())
    });
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(w.stop(), Some(0));
}
