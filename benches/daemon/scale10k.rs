//! Benchmark 7, ten thousand targets in one process (`cargo bench --bench daemon -- scale10k`):
//! each with a token of its own at Notion's 3 requests/s, a tenth of them with a backlog, the
//! rest idle. `BENCH_QUICK=1` makes it 2000 targets (200 busy); `BENCH_SCALE10K=n` sets the number;
//! `BENCH_MAX_IN_FLIGHT=n` sets every target's `max_in_flight`.

use std::time::{Duration, Instant, SystemTime};

use super::*;

/// Descriptors the process holds open now, and what they are (`socket`, `file`, `anon_inode`…).
fn open_descriptors(pid: u32) -> (usize, String) {
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let link = std::fs::read_link(entry.path()).unwrap_or_default();
        let link = link.to_string_lossy();
        let kind = match link.split_once(':') {
            Some((kind, _)) if !link.starts_with('/') => kind.to_owned(),
            _ => "file".to_owned(),
        };
        *kinds.entry(kind).or_default() += 1;
    }
    let total = kinds.values().sum();
    let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    (total, list.join(", "))
}

/// Requests the emulator answered, other than row creates.
fn other_requests(w: &World) -> u64 {
    w.emu
        .stats()
        .requests
        .iter()
        .filter(|(k, _)| k.as_str() != "POST /v1/pages")
        .map(|(_, v)| v)
        .sum()
}

/// Wall seconds of a one-shot command on the world's config, and whether it succeeded.
fn timed_cli(w: &World, args: &[&str]) -> (f64, Option<i32>) {
    let start = Instant::now();
    let out = w
        .command()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    (start.elapsed().as_secs_f64(), out.code())
}

/// Waits for `n` rows; returns the wall time from `since` to the first of the new rows.
fn first_create_after(w: &World, before: usize, since: SystemTime) -> Option<f64> {
    if !wait_rows(w, before + 1, Duration::from_secs(300)) {
        return None;
    }
    let got = w.emu.pages_from(before)[0].received_at;
    Some(got.duration_since(since).unwrap_or_default().as_secs_f64())
}

/// Rows per second over the middle 80 % of the rows created since `from`.
fn steady_rate(w: &World, from: usize) -> f64 {
    let mut times: Vec<SystemTime> = w
        .emu
        .pages_from(from)
        .iter()
        .map(|p| p.received_at)
        .collect();
    times.sort();
    let (a, b) = (times.len() / 10, times.len() * 9 / 10);
    let span = times[b]
        .duration_since(times[a])
        .unwrap_or_default()
        .as_secs_f64();
    (b - a) as f64 / span.max(1e-9)
}

/// Seconds to load a configuration whose `n` targets are all connected workspaces' records
/// (`<state_dir>/targets/*.toml`, as the connect page writes them), in process.
fn connected_load(n: usize) -> f64 {
    use notion_inbox::config::connected::{Template, load_into};
    use notion_inbox::notion::oauth::TokenResponse;
    use notion_inbox::tenants::connect;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.toml");
    std::fs::write(
        &config_path,
        "[notion]\nclient_id = \"c\"\nclient_secret_file = \"secret\"\nredirect_uri = \"https://example.com/callback\"\n\n[daemon]\nstate_dir = \"state\"\n",
    )
    .unwrap();
    let template = Template {
        properties: [("handle", "title"), ("tweet", "tweet")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        ..Template::default()
    };
    for i in 0..n {
        let response = TokenResponse::parse(serde_json::json!({
            "access_token": format!("secret-{i}"),
            "refresh_token": format!("refresh-{i}"),
            "token_type": "bearer",
            "bot_id": format!("bot-{i}"),
            "workspace_id": format!("workspace-{i}"),
            "workspace_name": format!("Workspace {i}"),
        }))
        .unwrap();
        connect(
            &dir.path().join("state"),
            &dir.path().join("spool"),
            &response,
            &template,
            Default::default(),
        )
        .unwrap();
    }
    let start = Instant::now();
    let mut config = notion_inbox::config::Config::load_file(&config_path).unwrap();
    load_into(&mut config);
    let took = start.elapsed().as_secs_f64();
    assert_eq!(
        config.targets.len(),
        n,
        "skipped: {:?}",
        config.skipped.first()
    );
    took
}

pub fn scale10k() {
    let n: usize = std::env::var("BENCH_SCALE10K")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick() { 2000 } else { 10_000 });
    let busy = n / 10;
    let per = if quick() { 10 } else { 30 };
    println!(
        "\n### 7. Scale to {n} targets: own token each at 3 requests/s, {busy} with {per} records, the rest idle\n"
    );
    let mut w = emulator(3.0, 3, 20);
    let mut targets = many_targets(&w, n, true);
    if let Ok(m) = std::env::var("BENCH_MAX_IN_FLIGHT") {
        for t in &mut targets {
            t.extra = format!("max_in_flight = {m}\n");
        }
    }
    config(&w, &targets, 3.0, 3);
    let config_path = w.path("config.toml");
    let start = Instant::now();
    let loaded = notion_inbox::config::Config::load_file(&config_path).expect("the config loads");
    let config_load = start.elapsed().as_secs_f64();
    assert_eq!(loaded.targets.len(), n);
    let connected = connected_load(n);
    for t in &targets[..busy] {
        fill(&w.inbox(&t.name), 0, per, &format!("{}-", t.name));
    }

    // First run: nothing cached. Resolution, then the drain of the busy targets.
    let started = SystemTime::now();
    w.start();
    let first = first_create_after(&w, 0, started);
    // The drain, sampling the daemon's descriptors (connections, mostly) every 200 ms.
    let (mut drained, mut most) = (false, 0);
    let until = Instant::now() + Duration::from_secs(per as u64 * 3 + 300);
    while Instant::now() < until {
        most = most.max(open_descriptors(pid(&w)).0);
        if w.emu.page_count() >= busy * per {
            drained = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let rate = steady_rate(&w, 0);
    let limited = w.emu.stats().rate_limited_total();
    std::thread::sleep(Duration::from_secs(2));
    let before = cpu_seconds(pid(&w));
    let idle_secs = if quick() { 5 } else { 20 };
    std::thread::sleep(Duration::from_secs(idle_secs));
    let idle_cpu = cpu_seconds(pid(&w)) - before;
    let fds = open_descriptors(pid(&w));
    let rss = status_kib(pid(&w), "VmHWM") as f64 / 1024.0;
    let rss_now = status_kib(pid(&w), "VmRSS") as f64 / 1024.0;
    let requests_first = other_requests(&w);
    w.stop();
    // After the stop: exit 3, "not running", is the answer expected.
    let (status_time, status_code) = timed_cli(&w, &["status", "--json"]);

    // Restart: one record for one of the busy targets (its resolution is cached); the idle ones
    // were never resolved and must not be now.
    let rows = w.emu.page_count();
    let requests_before = other_requests(&w);
    w.append(&w.inbox(&targets[0].name), &rec("@restart", "x"));
    let restarted = SystemTime::now();
    w.start();
    let first_again = first_create_after(&w, rows, restarted);
    std::thread::sleep(Duration::from_secs(3));
    let requests_restart = other_requests(&w) - requests_before;
    let rss_restart = status_kib(pid(&w), "VmHWM") as f64 / 1024.0;
    let fds_restart = open_descriptors(pid(&w));
    w.stop();

    let secs = |s: Option<f64>| s.map_or("never".to_owned(), |s| format!("{s:.2} s"));
    println!("| figure | value |");
    println!("|---|---:|");
    println!("| config load ({n} targets, in process) | {config_load:.3} s |");
    println!("| config load ({n} connected workspaces' records, in process) | {connected:.3} s |");
    println!(
        "| `status --json` after the run | {status_time:.2} s{} |",
        if status_code == Some(3) {
            String::new()
        } else {
            format!(" (failed: exit {status_code:?})")
        }
    );
    println!(
        "| first start → first create (nothing cached) | {} |",
        secs(first)
    );
    println!(
        "| restart → first create (cached resolution) | {} |",
        secs(first_again)
    );
    println!("| requests other than creates, first run | {requests_first} |");
    println!(
        "| requests other than creates, restart (3 s after the first create) | {requests_restart} |"
    );
    println!("| peak RSS (VmHWM), first run | {rss:.1} MiB |");
    println!("| RSS after the drain (VmRSS) | {rss_now:.1} MiB |");
    println!("| peak RSS after a restart (cached resolution) | {rss_restart:.1} MiB |");
    println!("| open descriptors, most seen during the drain | {most} |");
    println!(
        "| open descriptors after the drain | {} ({}) |",
        fds.0, fds.1
    );
    println!(
        "| open descriptors after the restart (all idle, one delivered) | {} ({}) |",
        fds_restart.0, fds_restart.1
    );
    println!("| idle CPU after the drain | {idle_cpu:.2} s over {idle_secs} s |");
    println!(
        "| busy targets: rows, aggregate rows/s / summed limits | {}{}, {rate:.0} / {} = {:.3} |",
        busy * per,
        if drained { "" } else { " (timed out)" },
        busy * 3,
        rate / (busy * 3) as f64
    );
    println!("| 429s during the first run | {limited} |");
}
