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
    cpu: f64,
    idle_cpu: f64,
}

fn one(n: usize, connects: usize) -> Row {
    let mut w = World::new(notion_emulator::EmulatorOptions::default());
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
    // The control: as long, without connects (what the daemon's RSS does by itself).
    let control = std::env::var_os("BENCH_CONNECT_CONTROL").is_some();
    for i in 0..connects {
        if !control {
            add(n + i);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let connects = if control { 0 } else { connects };
    assert!(
        wait_published(&w, n + connects, Duration::from_secs(120)),
        "the connected targets were not started"
    );
    let cpu = cpu_seconds(pid(&w)) - cpu_from;
    let idle_cpu = idle_rate * started.elapsed().as_secs_f64();
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
        cpu_per_connect_ms: (cpu - idle_cpu).max(0.0) / connects.max(1) as f64 * 1e3,
        cpu,
        idle_cpu,
    }
}

pub fn connects() {
    let connects = std::env::var("BENCH_CONNECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick() { 20 } else { 100 });
    let sizes: Vec<usize> = match std::env::var("BENCH_CONNECT_TARGETS") {
        Ok(v) => v.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
        Err(_) if quick() => vec![1000],
        Err(_) => vec![1000, 10_000],
    };
    println!(
        "\n### 8. {connects} workspaces connect (two a second) while many tenants run: daemon RSS and CPU\n"
    );
    println!(
        "| targets | RSS before | RSS after {connects} connects | RSS of a restart on the same targets | after − restart | daemon CPU while they connect (idle rate × as long) | CPU per connect (beyond idle) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &sizes {
        let r = one(n, connects);
        println!(
            "| {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:+.1} MiB | {:.2} s ({:.2} s) | {:.2} ms |",
            r.targets,
            r.before,
            r.after,
            r.restart,
            r.after - r.restart,
            r.cpu,
            r.idle_cpu,
            r.cpu_per_connect_ms
        );
    }
}

/// A user at `source` connects Globex through the page; whether the result page says so.
async fn connect_once(w: &World, public: &str, source: &str) -> bool {
    let info = w.emu.info().clone();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let Ok(start) = http.get(format!("{public}/start")).send().await else {
        return false;
    };
    let (Some(cookie), Some(location)) = (
        start
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok()),
        start
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    let cookie = cookie.split(';').next().unwrap_or("").to_owned();
    let state = url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let back = consent_in(
        &w.emu,
        &format!("{public}/callback"),
        &state,
        Some(&info.other_workspace_id),
        &[&info.other_database_id],
        true,
    )
    .await;
    match http.get(back).header("cookie", cookie).send().await {
        Ok(r) => r.text().await.is_ok_and(|t| t.contains("Connected")),
        Err(_) => false,
    }
}

/// Times `n` connects of real users, two a second, each from an address of its own
/// (`127.0.1.<i>`): (p50, p99 in ms, how many succeeded).
fn time_connects(w: &World, public: &str, n: usize) -> (f64, f64, usize) {
    let mut times = Vec::with_capacity(n);
    let mut ok = 0;
    let begun = Instant::now();
    for i in 0..n {
        let due = begun + Duration::from_millis(500) * i as u32;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let start = Instant::now();
        let source = format!("127.0.1.{}", i % 250 + 1);
        ok += usize::from(w.rt.block_on(connect_once(w, public, &source)));
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), ok)
}

/// Benchmark 8b: the connect page's answers to a real user, alone, while 64 idle sockets are
/// held, and while one client floods `/callback` with made-up states.
pub fn page() {
    let n = if quick() { 10 } else { 30 };
    let (mut w, public) = connect_page_world(&[], "");
    w.log_filter = "warn".into();
    let port = public.rsplit(':').next().unwrap().to_owned();
    w.start();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_until("the page listens", || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    println!(
        "\n### 8b. The connect page: {n} real users' whole connects, two a second, p50 / p99\n"
    );
    println!("| load | p50 | p99 | connected |");
    println!("|---|---:|---:|---:|");
    let row = |what: &str, (p50, p99, ok): (f64, f64, usize)| {
        println!("| {what} | {p50:.1} ms | {p99:.1} ms | {ok} of {n} |");
    };
    row("none", time_connects(&w, &public, n));
    let held: Vec<_> = (0..64)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    row("64 idle sockets held", time_connects(&w, &public, n));
    drop(held);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let (stop, public) = (stop.clone(), public.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let http = reqwest::Client::builder()
                    .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
                    .build()
                    .unwrap();
                let mut sent = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = http
                        .get(format!("{public}/callback?state=x&code=y"))
                        .send()
                        .await;
                    sent += 1;
                }
                sent
            })
        })
    };
    let started = Instant::now();
    let timed = time_connects(&w, &public, n);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flood.join().unwrap();
    let rate = sent as f64 / started.elapsed().as_secs_f64();
    row(
        &format!("one client flooding `/callback` ({rate:.0} requests/s)"),
        timed,
    );
    w.stop();
}
