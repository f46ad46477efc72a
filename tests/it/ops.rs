//! Operations: `status` (also while the daemon runs), `requeue` after fixing the cause, the metrics
//! endpoint after a run, the log formats, and the demo end to end.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn fast_world() -> World {
    World::new(fast())
}

fn cli(w: &World, args: &[&str]) -> (Option<i32>, String, String) {
    w.cli(args)
}

#[test]
fn status_requeue_and_metrics_tell_the_truth_about_a_run() {
    let mut w = fast_world();
    let port = free_port();
    // The mapping also maps `kind` to the select property "Kind": a record whose kind has a comma
    // cannot be written and goes to the dead-letter file, as does a line that is not JSON.
    let listen = format!("metrics_listen = \"127.0.0.1:{port}\"\n");
    let t = w.target("t");
    let with_kind = t
        .clone()
        .mapping(&[("handle", "title"), ("tweet", "tweet"), ("kind", "Kind")]);
    w.write_config(&[with_kind], &listen);
    let inbox = w.inbox("t");
    for i in 0..5 {
        w.append(&inbox, &rec(&format!("@ok{i}"), "fine"));
    }
    w.append(
        &inbox,
        "{\"handle\":\"@bad\",\"tweet\":\"t\",\"kind\":\"a,b\"}\n",
    );
    w.append(&inbox, "not json\n");

    // Before the daemon ever ran: status reads the inbox and says nothing was delivered yet, and
    // exits 3, not running.
    let (code, out, err) = cli(&w, &["status", "--json"]);
    assert_eq!(code, Some(3), "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(s[0]["backlog_bytes"].as_u64().unwrap() > 0, "{s}");

    w.start();
    wait_until("rows and dead letters", || {
        w.pages().len() == 5 && w.dead_letters("t").len() == 2
    });
    // While it runs: status is read-only and current.
    wait_until("the status file shows the deliveries", || {
        let (_, out, _) = cli(&w, &["status", "--json"]);
        serde_json::from_str::<serde_json::Value>(&out)
            .map(|s| {
                s[0]["backlog_bytes"] == 0
                    && s[0]["dead_letters"] == 2
                    && s[0]["daemon"]["delivered"] == 5
                    && s[0]["daemon"]["dead_lettered"] == 2
            })
            .unwrap_or(false)
    });
    let (code, out, _) = cli(&w, &["status"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("t") && out.contains("dead letters"), "{out}");
    assert!(out.contains("daemon         pid"), "{out}");
    let (_, out, _) = cli(&w, &["status", "--json"]);
    assert!(out.contains("\"daemon_running\": true"), "{out}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s[0]["token_info"]["source"], "fixed", "{s}");
    assert_eq!(s[0]["token_info"]["present"], true, "{s}");

    // Metrics.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let metrics = rt.block_on(async {
        reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    for needle in [
        "notion_inbox_delivered_total{target=\"t\"} 5",
        "notion_inbox_dead_lettered_total{target=\"t\"} 2",
        "notion_inbox_backlog_bytes{target=\"t\"}",
        "notion_inbox_in_flight{target=\"t\"} 0",
        "notion_inbox_up{target=\"t\"} 1",
        // Latency per endpoint and outcome, and the limiter's wait.
        "notion_inbox_request_duration_seconds_count{endpoint=\"POST /v1/pages\",outcome=\"2xx\"} 5",
        "notion_inbox_request_duration_seconds_bucket{le=",
        "notion_inbox_limiter_wait_seconds_count ",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    assert!(
        metrics.contains("notion_inbox_last_success_timestamp_seconds{target=\"t\"} 1"),
        "{metrics}"
    );
    assert_eq!(w.stop(), Some(0));
    // Stopped: status says so, and that the stop was clean, and exits 3.
    let (code, out, _) = cli(&w, &["status"]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("daemon         not running: pid"), "{out}");
    assert!(out.contains("stopped cleanly at"), "{out}");
    let (_, out, _) = cli(&w, &["status", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s[0]["daemon_running"], false, "{s}");
    assert!(s[0]["daemon"]["stopped"].is_string(), "{s}");
    // The counters of the last status write are the run's final ones.
    assert_eq!(s[0]["daemon"]["delivered"], 5, "{s}");
    assert_eq!(s[0]["daemon"]["dead_lettered"], 2, "{s}");

    // The user fixes the cause (drops the `kind` mapping), then requeues: exactly once. The line
    // that is not JSON stays: nothing fixes it, and requeued it would only be dead again.
    w.write_config(&[t], &listen);
    let (code, _, err) = cli(&w, &["requeue", "--target", "t", "--allow-root"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("moved 1 dead letter(s)"), "{err}");
    assert!(
        err.contains("1 selected entry refused again") && err.contains("not valid JSON"),
        "{err}"
    );
    let (_, _, err) = cli(&w, &["requeue", "--target", "t", "--allow-root"]);
    assert!(
        err.contains("moved 0 dead letter(s)"),
        "requeue twice moves nothing twice: {err}"
    );
    w.start();
    wait_until("the requeued record arrives", || {
        w.handles().contains(&"@bad".to_string())
    });
    assert_eq!(w.stop(), Some(0));
    assert_eq!(
        w.dead_letters("t").len(),
        1,
        "the bad JSON is still there, once"
    );
    assert_eq!(w.pages().len(), 6);
}

/// Idle connections to `/metrics`, which any local user can open, cost the daemon only a bounded
/// number of descriptors: it serves a few connections at once, closes the others as soon as it
/// accepts them, and closes the idle ones after the header timeout. Meanwhile it opens the new
/// file after a rotation and delivers from it, and `/metrics` answers. The daemon runs with few
/// descriptors (soft limit 100, hard 160: it raises the soft limit to the hard one), fewer than
/// the idle connections.
#[test]
fn idle_connections_to_metrics_take_no_descriptors_from_delivery() {
    use std::io::Read;
    let mut w = fast_world();
    let port = free_port();
    let t = w.target("t");
    w.write_config(&[t], &format!("metrics_listen = \"127.0.0.1:{port}\"\n"));
    w.open_files = Some((100, 160));
    let inbox = w.inbox("t");
    w.append(&inbox, &rec("@before", "x"));
    w.start();
    w.wait_for("the first row", || w.handles() == ["@before"]);
    w.wait_for("the raised limit in the log", || {
        w.logs().contains("the limit of open files is 160")
    });

    let idle: Vec<std::net::TcpStream> = (0..200)
        .map(|i| {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}"))
        })
        .collect();
    // A rotation while they are open: the daemon needs a descriptor for the new file.
    std::fs::rename(&inbox, w.path("spool/t.jsonl.1")).unwrap();
    w.append(&inbox, &rec("@during", "y"));
    w.wait_for("the row from the new inbox", || {
        w.handles().iter().any(|h| h == "@during")
    });
    let url = format!("http://127.0.0.1:{port}/metrics");
    let start = Instant::now();
    let metrics = loop {
        // A scrape arriving while every connection slot is taken is closed: it is tried again.
        let got = w.rt.block_on(async {
            let get = async { reqwest::get(&url).await?.error_for_status()?.text().await };
            tokio::time::timeout(Duration::from_secs(10), get).await
        });
        match got {
            Ok(Ok(text)) => break text,
            other => assert!(
                start.elapsed() < DEADLINE,
                "/metrics did not answer within {DEADLINE:?}: {other:?}\nlogs:\n{}",
                w.logs()
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        metrics.contains("notion_inbox_delivered_total{target=\"t\"} 2"),
        "{metrics}"
    );
    for (i, mut c) in idle.into_iter().enumerate() {
        c.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest)
            .unwrap_or_else(|e| panic!("idle connection {i} was not closed by the daemon: {e}"));
    }
    let logs = w.logs();
    assert!(
        !logs.contains("Too many open files"),
        "the daemon ran out of descriptors:\n{logs}"
    );
    assert_eq!(w.stop(), Some(0));
}

#[test]
fn log_formats_json_for_pipelines_and_plain_under_journald() {
    let mut w = fast_world();
    let t = w.target("t");
    w.write_config(&[t], "");
    w.append(&w.inbox("t"), &rec("@log", "x"));
    // JSON: every line parses, with a level and the target name.
    let child = Command::new(env!("CARGO_BIN_EXE_notion-inbox"))
        .arg("--config")
        .arg(w.path("config.toml"))
        .args(["--log-format", "json", "run"])
        .env("RUST_LOG", "notion_inbox=debug")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    w.daemon = Some(child);
    wait_until("the row", || w.pages().len() == 1);
    let child = w.daemon.take().unwrap();
    // SAFETY: kill(2) on our child.
    unsafe { kill(child.id() as i32, 15) };
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    let mut delivered = false;
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        delivered |= v["message"] == "delivered" && v["target_name"] == "t";
    }
    assert!(delivered, "{text}");
}

/// Under journald (`JOURNAL_STREAM` names stderr's device and inode), every line starts with its
/// syslog priority (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug), so that `journalctl -p`
/// filters; no timestamps and no colours. With `JOURNAL_STREAM` naming another file (stderr was
/// redirected since), lines are plain text with timestamps.
#[test]
fn under_journald_every_line_carries_its_priority() {
    use std::os::unix::fs::MetadataExt;
    let mut w = fast_world();
    let good = w.target("t");
    let mut refused = w.target("refused");
    refused.token = "ntn_not_a_token".into();
    w.write_config(&[good, refused], "");
    // A warning (a dead letter), an error (a refused token), and info and debug lines.
    w.append(&w.inbox("t"), "{\"handle\":\"@c\",\"twet\":\"typo\"}\n");
    w.append(&w.inbox("t"), &rec("@fine", "x"));
    w.append(&w.inbox("refused"), &rec("@r", "x"));
    let log_path = w.path("journal.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let meta = log.metadata().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_notion-inbox"))
        .arg("--config")
        .arg(w.path("config.toml"))
        .arg("run")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env("RUST_LOG", "notion_inbox=debug")
        .stderr(log)
        .spawn()
        .unwrap();
    w.daemon = Some(child);
    w.wait_for("the row, the dead letter and the refusal", || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        w.pages().len() == 1
            && w.dead_letters("t").len() == 1
            && text.contains("needs authorization")
    });
    assert_eq!(w.stop(), Some(0));
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.contains('\u{1b}'), "colours under journald: {text}");
    for line in text.lines() {
        let p = line
            .strip_prefix('<')
            .and_then(|l| l.split_once('>'))
            .map(|(p, _)| p);
        assert!(
            matches!(p, Some("3" | "4" | "6" | "7")),
            "a line without its priority: {line:?}"
        );
        assert!(
            !line[3..].starts_with("20"),
            "a timestamp under journald: {line}"
        );
    }
    let with = |prefix: &str, needle: &str| {
        text.lines()
            .any(|l| l.starts_with(prefix) && l.contains(needle))
    };
    assert!(with("<3>", "needs authorization"), "{text}");
    // The message names the target once.
    assert!(!text.contains("target refused: target refused"), "{text}");
    assert!(!text.contains("authorization: target refused"), "{text}");
    assert!(with("<4>", "dead-lettered"), "{text}");
    assert!(with("<6>", "notion-inbox is running"), "{text}");
    assert!(with("<7>", "target_name"), "{text}");

    // JOURNAL_STREAM naming another file: stderr is not the journal.
    let out = Command::new(env!("CARGO_BIN_EXE_notion-inbox"))
        .arg("--config")
        .arg(w.path("config.toml"))
        .args(["check"])
        .env("JOURNAL_STREAM", "8:12345")
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.is_empty(), "check logs at debug");
    for line in err.lines() {
        assert!(
            line.starts_with("20"),
            "no timestamp, or a priority: {line}"
        );
    }
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// `notion-inbox demo` as a user runs it, its stdout read line by line on a thread.
struct Demo {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    fn start() -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_notion-inbox"))
            .arg("demo")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Demo {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line (so far or within 60 s) that contains `needle`.
    fn wait_for(&mut self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no {needle:?} in:\n{}",
                self.seen.join("\n")
            );
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.seen.push(l);
            }
        }
    }

    /// Sends SIGINT (Ctrl-C) and returns the exit code and the lines printed after it. Fails
    /// (killing the demo) if it has not exited within 60 s.
    fn interrupt(mut self) -> (Option<i32>, Vec<String>) {
        // SAFETY: kill(2) on our own child.
        unsafe { kill(self.child.id() as i32, 2) };
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the demo ignored SIGINT for 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut rest = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
            rest.push(l);
        }
        (status.code(), rest)
    }
}

/// The demo's temporary directory, from its "working directory" line.
fn demo_dir(demo: &mut Demo) -> std::path::PathBuf {
    let line = demo.wait_for("working directory");
    std::path::PathBuf::from(line.split_whitespace().last().unwrap())
}

#[test]
fn the_demo_delivers_every_sample_accepts_a_push_and_exits_cleanly_on_sigint() {
    let mut demo = Demo::start();
    let dir = demo_dir(&mut demo);
    assert!(dir.is_dir(), "{}", dir.display());
    let delivered = demo.wait_for("delivered 8/8");
    assert!(
        delivered.contains("429 (rate limited) 0 time(s)"),
        "{delivered}"
    );
    // The printed push command works.
    let push = demo.wait_for("push --target tweets");
    let config = push
        .split("--config ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    assert!(std::path::Path::new(&config).starts_with(&dir), "{config}");
    let out = Command::new(env!("CARGO_BIN_EXE_notion-inbox"))
        .args([
            "--config",
            &config,
            "push",
            "--target",
            "tweets",
            "--handle",
            "@tester",
            "--tweet",
            "pushed during the demo",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    demo.wait_for("new row: @tester");
    // A second workspace connected through the connect page, and its record was delivered.
    demo.wait_for("connected through the page as target ws-");
    let (code, rest) = demo.interrupt();
    assert_eq!(code, Some(0), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("Done: 10 rows delivered")),
        "{rest:?}"
    );
    assert!(!dir.exists(), "the demo removes its temporary directory");
}

/// Ctrl-C while the samples are still being delivered stops the demo cleanly too (the signal
/// is caught from the start, not only once the demo is watching).
#[test]
fn ctrl_c_during_delivery_stops_the_demo_cleanly() {
    let mut demo = Demo::start();
    let dir = demo_dir(&mut demo);
    demo.wait_for("3. Running the daemon");
    let (code, rest) = demo.interrupt();
    assert_eq!(code, Some(0), "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("Done: ") && l.contains("rows delivered")),
        "{rest:?}"
    );
    assert!(
        !rest.iter().any(|l| l.contains("5. Watching")),
        "went on to watch after Ctrl-C: {rest:?}"
    );
    assert!(!dir.exists(), "the demo removes its temporary directory");
}

#[test]
fn status_says_a_killed_daemon_is_not_running() {
    let mut w = fast_world();
    let t = w.target("t");
    w.write_config(&[t], "");
    w.start();
    w.append(&w.inbox("t"), &rec("@k", "x"));
    w.wait_for("a row, and the status file naming the daemon", || {
        let (_, out, _) = cli(&w, &["status", "--json"]);
        w.pages().len() == 1 && out.contains("\"daemon_running\": true")
    });
    let (code, out, _) = cli(&w, &["status"]);
    assert_eq!(code, Some(0), "running and healthy: {out}");
    w.kill();
    let (code, out, _) = cli(&w, &["status"]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("daemon         not running"), "{out}");
    assert!(
        out.contains("did not stop cleanly (killed or crashed"),
        "{out}"
    );
    let (_, out, _) = cli(&w, &["status", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(s[0]["daemon"].get("stopped").is_none(), "{s}");
}
