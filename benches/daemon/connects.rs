//! Benchmark 8, connects while many tenants run: the daemon's memory before and after 100 workspaces
//! connect (two a second, as a stranger at the connect page could), against a restart with the
//! same targets, and the daemon's CPU per connect. The records are written as `notion-inbox
//! connect` writes them (`tenants::connect`, from this process); the daemon picks each up by
//! itself. Every target is idle (an empty inbox), so no request reaches the emulator.

use std::time::{Duration, Instant};

use notion_inbox::config::connected::Template;
use notion_inbox::notion::oauth::TokenResponse;
use notion_inbox::tenants::connect;

use super::{cpu_seconds, pid, quick, status_kib};
use crate::support::*;

fn response(i: usize) -> TokenResponse {
    TokenResponse::parse(serde_json::json!({
        "access_token": format!("secret-{i}"),
        "refresh_token": format!("refresh-{i}"),
        "token_type": "bearer",
        "bot_id": format!("bot-{i}"),
        "workspace_id": format!("workspace-{i}"),
        "workspace_name": format!("Workspace {i}"),
    }))
    .unwrap()
}

/// How many targets the daemon published in `status.json`.
fn published(w: &World) -> usize {
    w.status().len()
}

/// Waits (at most `limit`) until the daemon published `n` targets.
fn wait_published(w: &World, n: usize, limit: Duration) -> bool {
    let start = Instant::now();
    while published(w) < n {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    true
}

/// RSS (MiB) once it has not changed by more than 1 MiB over 3 s, or after 30 s.
fn settled_rss(w: &World) -> f64 {
    let mut last = status_kib(pid(w), "VmRSS");
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(3));
        let now = status_kib(pid(w), "VmRSS");
        if now.abs_diff(last) < 1024 || start.elapsed() > Duration::from_secs(30) {
            return now as f64 / 1024.0;
        }
        last = now;
    }
}

struct Row {
    targets: usize,
    before: f64,
    after: f64,
    restart: f64,
    cpu_per_connect_ms: f64,
}

fn one(n: usize, connects: usize) -> Row {
    let mut w = World::new(notion_inbox::emulator::EmulatorOptions::default());
    w.log_filter = "warn".into();
    let path = w.write_config_with(
        &[],
        "client_id = \"c\"\nclient_secret_file = \"secret\"\n",
        "",
    );
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("[connect]\ninbox_dir = \"spool\"\nmax_targets = 100000\n[connect.properties]\nhandle = \"title\"\ntweet = \"tweet\"\n");
    std::fs::write(&path, text).unwrap();
    std::fs::write(w.path("secret"), "s").unwrap();
    std::fs::set_permissions(
        w.path("secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let template = Template {
        properties: [("handle", "title"), ("tweet", "tweet")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        ..Template::default()
    };
    let (state, spool) = (w.path("state"), w.path("spool"));
    let add = |i: usize| {
        connect(&state, &spool, &response(i), &template, Default::default()).unwrap();
    };
    for i in 0..n {
        add(i);
    }
    w.start();
    assert!(
        wait_published(&w, n, Duration::from_secs(300)),
        "the daemon did not start {n} targets"
    );
    let before = settled_rss(&w);
    // Idle CPU, to take out of the connects' CPU.
    let idle_from = cpu_seconds(pid(&w));
    std::thread::sleep(Duration::from_secs(5));
    let idle_rate = (cpu_seconds(pid(&w)) - idle_from) / 5.0;
    let cpu_from = cpu_seconds(pid(&w));
    let started = Instant::now();
    for i in 0..connects {
        add(n + i);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        wait_published(&w, n + connects, Duration::from_secs(120)),
        "the connected targets were not started"
    );
    let cpu = cpu_seconds(pid(&w)) - cpu_from - idle_rate * started.elapsed().as_secs_f64();
    let after = settled_rss(&w);
    w.stop();
    w.start();
    assert!(wait_published(&w, n + connects, Duration::from_secs(300)));
    let restart = settled_rss(&w);
    w.stop();
    Row {
        targets: n,
        before,
        after,
        restart,
        cpu_per_connect_ms: cpu.max(0.0) / connects as f64 * 1e3,
    }
}

pub fn connects() {
    let connects = if quick() { 20 } else { 100 };
    let sizes: &[usize] = if quick() { &[1000] } else { &[1000, 10_000] };
    println!(
        "\n### 8. {connects} workspaces connect (two a second) while many tenants run: daemon RSS and CPU\n"
    );
    println!(
        "| targets | RSS before | RSS after {connects} connects | RSS of a restart on the same targets | after − restart | CPU per connect |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for &n in sizes {
        let r = one(n, connects);
        println!(
            "| {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:+.1} MiB | {:.1} ms |",
            r.targets,
            r.before,
            r.after,
            r.restart,
            r.after - r.restart,
            r.cpu_per_connect_ms
        );
    }
}
