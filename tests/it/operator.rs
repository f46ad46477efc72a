//! What an operator meets at the command line: exit statuses, JSON errors, `check` without
//! targets, offline, and while the daemon drains against a strict emulator.

use crate::support::*;
use notion_emulator::Faults;

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn a_broken_config_exits_78_and_says_so_in_json_when_asked() {
    let w = World::default_world();
    let t = w.target("tweets");
    let path = w.write_config(&[t], "");
    // `[[targets]]` instead of `[[target]]`.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[[target]]", "[[targets]]");
    std::fs::write(&path, text).unwrap();
    for args in [
        &["check"][..],
        &["status"],
        &["run"],
        &["push", "--target", "tweets", "--tweet", "x"],
    ] {
        let (code, out, err) = w.cli(args);
        assert_eq!(code, Some(78), "{args:?}: {out}{err}");
        assert!(err.contains("config.toml:"), "{args:?}: {err}");
        assert!(out.is_empty(), "no JSON asked: {out}");
    }
    let (code, out, _) = w.cli(&["status", "--json"]);
    assert_eq!(code, Some(78));
    let e = json(&out);
    assert_eq!(e["error"]["kind"], "config", "{e}");
    assert_eq!(e["error"]["exit_code"], 78, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("config.toml:"),
        "{e}"
    );
    // A missing config file: its message does not repeat the system's error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_notion-inbox"))
        .args(["--config", "/nonexistent/notion-inbox.toml", "check"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    // A target the config does not have is a usage error, with a suggestion.
    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .unwrap()
            .replace("[[targets]]", "[[target]]"),
    )
    .unwrap();
    let (code, _, err) = w.cli(&["status", "--target", "twets"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("did you mean \"tweets\"?"), "{err}");
}

#[test]
fn check_without_targets_is_a_problem_and_creates_nothing() {
    let w = World::default_world();
    w.write_config(&[], "state_dir = \"not/yet/state\"\n");
    let (code, out, err) = w.cli(&["check", "--json"]);
    assert_eq!(code, Some(1), "{out}{err}");
    let findings = json(&out);
    let by_code = |c: &str| {
        findings
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == c)
            .cloned()
            .unwrap_or_else(|| panic!("no finding {c}: {findings}"))
    };
    assert_eq!(by_code("no_targets")["ok"], false, "{findings}");
    let state = by_code("state_dir");
    assert_eq!(state["ok"], true, "{findings}");
    assert!(
        state["message"]
            .as_str()
            .unwrap()
            .contains("does not exist yet; the daemon creates it"),
        "{state}"
    );
    assert!(!w.path("not").exists(), "check created the state directory");
    let (code, out, _) = w.cli(&["check"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("PROBLEM no targets"), "{out}");
}

#[test]
fn check_offline_sends_nothing_and_still_finds_file_problems() {
    let w = World::default_world();
    let good = w.target("good");
    let mut oauth = w.target("oauth");
    oauth.token = String::new();
    w.write_config(&[good], "");
    let before = w.emu.stats().requests.values().sum::<u64>();
    let (code, out, err) = w.cli(&["check", "--offline", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let findings = json(&out);
    let codes: Vec<&str> = findings
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        ["config", "state_dir", "inbox", "token"],
        "{findings}"
    );
    assert_eq!(
        w.emu.stats().requests.values().sum::<u64>(),
        before,
        "--offline sent a request"
    );
}

/// `check` and `databases` wait out Notion's 429s (its `Retry-After`) instead of failing: first
/// two answered 429 on purpose, then while the daemon drains a backlog on the same token against
/// an emulator that enforces the rate limit.
#[test]
fn check_and_databases_wait_out_429s_also_during_a_drain() {
    let mut w = World::default_world();
    let t = w.target("t");
    w.write_config(&[t], "");
    w.emu.set_faults(Faults {
        rate_limit_next: 2,
        ..Faults::default()
    });
    let (code, out, err) = w.cli(&["check"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("ready"), "{out}");
    assert_eq!(
        w.emu.stats().faults.get("rate_limit_next").copied(),
        Some(2)
    );
    w.emu.set_faults(Faults {
        rate_limit_next: 1,
        ..Faults::default()
    });
    let (code, out, err) = w.cli(&["databases", "--target", "t"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Twitter"), "{out}");

    let inbox = w.inbox("t");
    let mut backlog = String::new();
    for i in 0..40 {
        backlog.push_str(&rec(&format!("@d{i}"), "draining"));
    }
    w.append(&inbox, &backlog);
    w.start();
    w.wait_for("the drain begins", || !w.pages().is_empty());
    let mut during = 0;
    while w.pages().len() < 40 && during < 3 {
        let (code, out, err) = w.cli(&["check", "--target", "t"]);
        assert_eq!(code, Some(0), "check during the drain: {out}{err}");
        during += 1;
    }
    assert!(during > 0, "the drain ended before check ran");
    w.wait_for("the drain ends", || w.pages().len() == 40);
    assert_eq!(w.stop(), Some(0));
}

/// `emulator --help` and `demo --help` do not offer `--config`, which they do not read (it is
/// still accepted); the other commands do.
#[test]
fn help_offers_config_only_where_it_is_read() {
    let help = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_notion-inbox"))
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for command in ["emulator", "demo"] {
        let text = help(&[command]);
        assert!(!text.contains("--config"), "{command} --help: {text}");
        assert!(text.contains("--log-format"), "{command} --help: {text}");
    }
    for command in ["run", "check", "status", "push"] {
        assert!(help(&[command]).contains("--config"), "{command}");
    }
}

/// With `metrics_listen` on port 0, the log names the port the daemon bound, and it serves there.
#[test]
fn the_metrics_log_names_the_bound_port() {
    let mut w = World::default_world();
    let t = w.target("t");
    w.write_config(&[t], "metrics_listen = \"127.0.0.1:0\"\n");
    w.start();
    let mut addr = String::new();
    w.wait_for("the metrics address in the log", || {
        let logs = w.logs();
        let Some(line) = logs
            .lines()
            .find(|l| l.contains("serving Prometheus metrics"))
        else {
            return false;
        };
        addr = line
            .split("addr=")
            .nth(1)
            .and_then(|a| a.split_whitespace().next())
            .unwrap_or_default()
            .to_owned();
        true
    });
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    let body = w.rt.block_on(async {
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(body.contains("notion_inbox_up"), "{body}");
    assert_eq!(w.stop(), Some(0));
}

/// One-shot commands share the daemon's budget: `check` run again and again while the daemon
/// drains a backlog on the same token provokes no 429 from an emulator that enforces the rate
/// limit (the daemon and `check` take their turns from one budget per token, kept in the state
/// directory).
#[test]
fn check_during_a_drain_shares_the_daemons_budget() {
    let mut w = World::default_world();
    let t = w.target("t");
    w.write_config(&[t], "");
    let inbox = w.inbox("t");
    let mut backlog = String::new();
    for i in 0..45 {
        backlog.push_str(&rec(&format!("@s{i}"), "sharing"));
    }
    w.append(&inbox, &backlog);
    w.start();
    w.wait_for("the drain begins", || !w.pages().is_empty());
    let mut checks = 0;
    while w.pages().len() < 40 {
        let (code, out, err) = w.cli(&["check", "--target", "t"]);
        assert_eq!(code, Some(0), "{out}{err}");
        checks += 1;
    }
    assert!(checks >= 3, "the drain ended after {checks} checks");
    w.wait_for("the drain ends", || w.pages().len() == 45);
    assert_eq!(w.stop(), Some(0));
    let stats = w.emu.stats();
    assert_eq!(
        stats.rate_limited_total(),
        0,
        "429s with {checks} checks during the drain: {stats:?}"
    );
}

/// `status --json` tells of an authorized token in fields: workspace, owner, when obtained,
/// whether it renews by itself; never the token.
#[test]
fn status_gives_the_tokens_facts_as_fields() {
    let w = World::default_world();
    w.write_oauth_config(&[w.target("t")], 0o600, "");
    let file = w.authorize("t");
    let (_, out, err) = w.cli(&["status", "--json", "--target", "t"]);
    let s = json(&out);
    let token = &s[0]["token_info"];
    assert_eq!(token["source"], "file", "{s}{err}");
    assert_eq!(token["present"], true, "{s}");
    assert_eq!(
        token["workspace_name"].as_str(),
        file.workspace_name.as_deref(),
        "{s}"
    );
    assert_eq!(token["owner"].as_str(), file.owner.as_deref(), "{s}");
    assert!(token["obtained_at"].is_string(), "{s}");
    assert_eq!(token["can_refresh"], file.refresh_token.is_some(), "{s}");
    use secrecy::ExposeSecret;
    assert!(
        !out.contains(file.access_token.expose_secret()),
        "the token leaked"
    );
}
