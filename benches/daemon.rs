//! Benchmarks 1-8 of BENCHMARKS.md: the real binary against the in-process emulator. Each prints a
//! markdown table. Run all: `cargo bench --bench daemon`; one: `cargo bench --bench daemon -- rate`
//! (rate, reaction, idle, memory, restart, scale, scale10k, connects, page). `BENCH_QUICK=1` shortens every measurement;
//! `BENCH_SCALE_RECORDS=n` sets the records per target of the scale benchmark (30).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use notion_emulator::{EmulatorOptions, Faults, RateLimit};
use support::*;

#[path = "daemon/scale10k.rs"]
mod scale10k;

#[path = "daemon/connects.rs"]
mod connects;

fn quick() -> bool {
    std::env::var_os("BENCH_QUICK").is_some()
}

/// CPU seconds (user + system) a process used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the ")".
    (ticks(11) + ticks(12)) / 100.0
}

/// A `/proc/<pid>/status` value in KiB (VmRSS, VmHWM).
fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn pid(w: &World) -> u32 {
    w.daemon.as_ref().unwrap().id()
}

fn emulator(rps: f64, burst: u32, latency_ms: u64) -> World {
    let mut w = World::new(EmulatorOptions {
        rate: RateLimit {
            requests_per_second: rps,
            burst,
        },
        workspace_rate: None,
        ..EmulatorOptions::default()
    });
    w.emu.set_faults(Faults {
        latency: Duration::from_millis(latency_ms),
        ..Faults::default()
    });
    w.log_filter = "warn".into();
    w
}

/// Writes the config with the client's rate and extra target settings. The daemon settings are the
/// production defaults (the tests' config polls faster; a benchmark must not).
fn config(w: &World, targets: &[TargetSpec], rps: f64, burst: u32) {
    let path = w.write_config(targets, "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(
            "version = \"2025-09-03\"\n",
            &format!("version = \"2025-09-03\"\nrequests_per_second = {rps}\nburst = {burst}\n"),
        )
        .replace("reconcile_interval = \"500ms\"\n", "");
    std::fs::write(&path, text).unwrap();
}

fn fill(path: &std::path::Path, from: usize, n: usize, tag: &str) {
    let mut f = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap(),
    );
    for i in from..from + n {
        f.write_all(
            rec(
                &format!("@{tag}{i}"),
                "benchmark record of typical size, a tweet",
            )
            .as_bytes(),
        )
        .unwrap();
    }
}

fn wait_rows(w: &World, n: usize, limit: Duration) -> bool {
    let start = Instant::now();
    while w.emu.page_count() < n {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// 1. Rate utilization at 50/300/1000 ms latency, max_in_flight 1 vs the default.
fn rate() {
    println!("\n### 1. Rate utilization (configured and emulated limit: 3 requests/s, burst 3)\n");
    println!("| latency | max_in_flight | rows | rows/s (steady) | utilization | 429s |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let n = if quick() { 20 } else { 60 };
    let latencies: Vec<u64> = std::env::var("BENCH_LATENCIES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![50, 300, 1000]);
    for latency in latencies {
        let mut cases = vec![
            ("1".to_string(), "max_in_flight = 1\n".to_string()),
            ("default (18)".to_string(), String::new()),
        ];
        if let Ok(more) = std::env::var("BENCH_MAX_IN_FLIGHT") {
            cases.push((more.clone(), format!("max_in_flight = {more}\n")));
        }
        for (label, extra) in cases {
            let mut w = emulator(3.0, 3, latency);
            let t = TargetSpec {
                extra: extra.clone(),
                ..w.target("t")
            };
            config(&w, &[t], 3.0, 3);
            fill(&w.inbox("t"), 0, n, "r");
            w.start();
            let limit = Duration::from_secs(n as u64 * 2 + 30);
            let done = wait_rows(&w, n, limit);
            let pages = w.pages();
            // Steady state: from the 6th row (after the initial burst) to the last.
            let times: Vec<SystemTime> = pages.iter().map(|p| p.received_at).collect();
            let skip = 5.min(times.len().saturating_sub(2));
            let span = times
                .last()
                .unwrap()
                .duration_since(times[skip])
                .unwrap_or_default()
                .as_secs_f64();
            let rate = (times.len() - 1 - skip) as f64 / span.max(1e-9);
            println!(
                "| {latency} ms | {label} | {}{} | {rate:.2} | {:.3} | {} |",
                pages.len(),
                if done { "" } else { " (timed out)" },
                rate / 3.0,
                w.emu.stats().rate_limited_total()
            );
            w.stop();
        }
    }
}

/// 2. Reaction time: append → the emulator receiving the create, on an idle daemon.
fn reaction() {
    println!("\n### 2. Reaction time on an idle daemon (write() returned → create received)\n");
    let n = if quick() { 50 } else { 200 };
    let mut w = emulator(1000.0, 1000, 0);
    let t = w.target("t");
    config(&w, &[t], 1000.0, 1000);
    w.append(&w.inbox("t"), &rec("@warmup", "x"));
    w.start();
    wait_rows(&w, 1, Duration::from_secs(30));
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        std::thread::sleep(Duration::from_millis(30));
        let line = rec(&format!("@react{i}"), "x");
        append_bytes(&w.inbox("t"), line.as_bytes());
        let written = SystemTime::now();
        if !wait_rows(&w, i + 2, Duration::from_secs(10)) {
            println!("(append {i} never arrived)");
            break;
        }
        let got = w.pages()[i + 1].received_at;
        lat.push(got.duration_since(written).unwrap_or_default());
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    println!("| appends | p50 | p90 | p99 | max |");
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
        lat.len(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.9).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3
    );
    w.stop();
}

fn many_targets(w: &World, n: usize, own_tokens: bool) -> Vec<TargetSpec> {
    (0..n)
        .map(|i| {
            let mut t = w.target(&format!("t{i}"));
            if own_tokens {
                t.token = w.emu.mint_token();
            }
            t
        })
        .collect()
}

/// 3. Idle cost: CPU seconds over a quiet period with 1 and 100 targets.
fn idle() {
    let secs = if quick() { 10 } else { 60 };
    println!("\n### 3. Idle cost (CPU time used while idle for {secs} s)\n");
    println!("| targets | CPU seconds | % of one core |");
    println!("|---:|---:|---:|");
    for n in [1usize, 100] {
        let mut w = emulator(1000.0, 1000, 0);
        let targets = many_targets(&w, n, false);
        config(&w, &targets, 1000.0, 1000);
        for t in &targets {
            w.append(&w.inbox(&t.name), &rec("@one", "x"));
        }
        w.start();
        wait_rows(&w, n, Duration::from_secs(60));
        std::thread::sleep(Duration::from_secs(2));
        let before = cpu_seconds(pid(&w));
        std::thread::sleep(Duration::from_secs(secs));
        let used = cpu_seconds(pid(&w)) - before;
        println!("| {n} | {used:.2} | {:.3}% |", used / secs as f64 * 100.0);
        w.stop();
    }
}

/// Makes an inbox of about `bytes` bytes quickly.
fn big_inbox(path: &std::path::Path, bytes: u64) -> usize {
    let line = rec(
        "@bulk",
        "benchmark record of typical size, a tweet of about this length",
    );
    let per_chunk = 10_000;
    let chunk: String = line.repeat(per_chunk);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut written = 0u64;
    let mut n = 0;
    while written < bytes {
        f.write_all(chunk.as_bytes()).unwrap();
        written += chunk.len() as u64;
        n += per_chunk;
    }
    n
}

/// 4. Memory: peak RSS idle, while draining a small and a 1 GB backlog, and with 1000 targets.
fn memory() {
    println!("\n### 4. Memory (peak RSS of the daemon, VmHWM)\n");
    println!("| case | peak RSS |");
    println!("|---|---:|");
    let drain_secs = if quick() { 5 } else { 20 };
    {
        let mut w = emulator(1000.0, 1000, 0);
        let t = w.target("t");
        config(&w, &[t], 1000.0, 1000);
        w.append(&w.inbox("t"), &rec("@one", "x"));
        w.start();
        wait_rows(&w, 1, Duration::from_secs(30));
        std::thread::sleep(Duration::from_secs(3));
        println!(
            "| 1 target, idle | {:.1} MiB |",
            status_kib(pid(&w), "VmHWM") as f64 / 1024.0
        );
        w.stop();
    }
    let gb = if quick() { 100 << 20 } else { 1 << 30 };
    for (label, bytes) in [
        ("10 MB", 10u64 << 20),
        (if quick() { "100 MB" } else { "1 GB" }, gb),
    ] {
        // 500 rows/s (far above Notion's 3) to move through the file; 32 creates in flight.
        let mut w = emulator(500.0, 100, 5);
        let t = TargetSpec {
            extra: "max_in_flight = 32\n".into(),
            ..w.target("t")
        };
        config(&w, &[t], 500.0, 100);
        std::fs::create_dir_all(w.path("spool")).unwrap();
        big_inbox(&w.inbox("t"), bytes);
        w.start();
        std::thread::sleep(Duration::from_secs(drain_secs));
        println!(
            "| 1 target draining a {label} backlog for {drain_secs} s ({} rows) | {:.1} MiB |",
            w.emu.page_count(),
            status_kib(pid(&w), "VmHWM") as f64 / 1024.0
        );
        w.kill();
    }
    {
        let n = if quick() { 200 } else { 1000 };
        let mut w = emulator(1000.0, 1000, 0);
        let targets = many_targets(&w, n, false);
        config(&w, &targets, 1000.0, 1000);
        for t in &targets {
            w.append(&w.inbox(&t.name), &rec("@one", "x"));
        }
        w.start();
        wait_rows(&w, n, Duration::from_secs(120));
        std::thread::sleep(Duration::from_secs(3));
        println!(
            "| {n} targets, idle | {:.1} MiB |",
            status_kib(pid(&w), "VmHWM") as f64 / 1024.0
        );
        w.stop();
    }
}

/// 5. Restart: start → first create, with the checkpoint at the end of a large inbox.
fn restart() {
    use notion_inbox::inbox::Position;
    use notion_inbox::state::checkpoint::{Checkpoint, CheckpointStore};
    println!(
        "\n### 5. Restart with the checkpoint at the end of the inbox (start → first create)\n"
    );
    println!("| inbox size | start → first create (median of 5) |");
    println!("|---:|---:|");
    let gb = if quick() { 100 << 20 } else { 1 << 30 };
    for (label, bytes) in [
        ("1 MB", 1u64 << 20),
        (if quick() { "100 MB" } else { "1 GB" }, gb),
    ] {
        let mut times = Vec::new();
        let mut w = emulator(1000.0, 1000, 0);
        let t = w.target("t");
        config(&w, &[t], 1000.0, 1000);
        std::fs::create_dir_all(w.path("spool")).unwrap();
        big_inbox(&w.inbox("t"), bytes);
        for round in 0..5 {
            let file = std::fs::File::open(w.inbox("t")).unwrap();
            let len = file.metadata().unwrap().len();
            let identity = notion_inbox::inbox::identity::of(&file).unwrap().unwrap();
            let store = CheckpointStore::open(&w.path("state")).unwrap();
            let mut cp = Checkpoint::new(
                Some(Position {
                    file: identity,
                    offset: len,
                }),
                vec![],
            );
            cp.window = 0;
            store.save("t", &cp).unwrap();
            w.append(&w.inbox("t"), &rec(&format!("@after{round}"), "x"));
            let before = w.emu.page_count();
            let start = SystemTime::now();
            w.start();
            wait_rows(&w, before + 1, Duration::from_secs(60));
            let got = w.pages()[before].received_at;
            times.push(got.duration_since(start).unwrap_or_default());
            w.stop();
        }
        times.sort();
        println!("| {label} | {:.1} ms |", times[2].as_secs_f64() * 1e3);
    }
}

/// 6. Scale: 1000 targets, each with its own token at the default 3/s, draining together.
fn scale() {
    let n = if quick() { 200 } else { 1000 };
    let per = std::env::var("BENCH_SCALE_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick() { 10 } else { 30 });
    println!(
        "\n### 6. Scale: {n} targets, own token each, 3 requests/s per token ({per} records each)\n"
    );
    let mut w = emulator(3.0, 3, 20);
    let targets = many_targets(&w, n, true);
    config(&w, &targets, 3.0, 3);
    for t in &targets {
        fill(&w.inbox(&t.name), 0, per, &format!("{}-", t.name));
    }
    w.start();
    let total = n * per;
    let start = Instant::now();
    // The start-up (1000 tokens loaded, 1000 databases resolved, 1000 inboxes opened) is measured
    // apart: CPU until every target has delivered its first row.
    let limit = Duration::from_secs((per as u64) * 3 + 120);
    let mut started = wait_rows(&w, 1, limit);
    // Only the new pages are looked at: cloning them all under the emulator's lock, every few
    // milliseconds, stalled the emulator (and made 429s by bunching its answers).
    let mut seen = 0;
    let mut targets_started = std::collections::HashSet::new();
    while started && targets_started.len() < n {
        let new = w.emu.pages_from(seen);
        seen += new.len();
        targets_started.extend(
            new.iter()
                .filter_map(|p| page_title(p).split_once('-').map(|(t, _)| t.to_owned())),
        );
        if start.elapsed() > limit {
            started = false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let startup_wall = start.elapsed().as_secs_f64();
    let startup_cpu = cpu_seconds(pid(&w));
    let rows_at_startup = w.emu.page_count();
    let limited_at_startup = w.emu.stats().rate_limited_total();
    let done = started && wait_rows(&w, total, limit);
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid(&w));
    let pages = w.pages();
    let times: Vec<SystemTime> = pages.iter().map(|p| p.received_at).collect();
    // Steady state: the middle 80% of the rows.
    let (a, b) = (times.len() / 10, times.len() * 9 / 10);
    let mut sorted = times.clone();
    sorted.sort();
    let span = sorted[b]
        .duration_since(sorted[a])
        .unwrap_or_default()
        .as_secs_f64();
    let rate = (b - a) as f64 / span.max(1e-9);
    let sum = 3.0 * n as f64;
    println!(
        "| rows | wall time | aggregate rows/s (steady) | sum of limits | ratio | daemon CPU per row (drain) | start-up: wall, daemon CPU | 429s (start-up + drain) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {}{} | {elapsed:.1} s | {rate:.0} | {sum:.0} | {:.3} | {:.0} µs | {startup_wall:.1} s, {startup_cpu:.2} s | {limited_at_startup} + {} |",
        pages.len(),
        if done { "" } else { " (timed out)" },
        rate / sum,
        (cpu - startup_cpu) / (pages.len() - rows_at_startup).max(1) as f64 * 1e6,
        w.emu.stats().rate_limited_total() - limited_at_startup
    );
    w.stop();
}

fn main() {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    println!(
        "notion-inbox daemon benchmarks ({} cores){}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if quick() { ", quick mode" } else { "" }
    );
    if want("rate") {
        rate();
    }
    if want("reaction") {
        reaction();
    }
    if want("idle") {
        idle();
    }
    if want("memory") {
        memory();
    }
    if want("restart") {
        restart();
    }
    if want("scale") {
        scale();
    }
    if want("scale10k") {
        scale10k::scale10k();
    }
    if want("connects") {
        connects::connects();
    }
    if want("page") {
        connects::page();
    }
}
