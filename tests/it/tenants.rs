//! The connect page as strangers use it, against the real daemon and the emulator, over plain
//! HTTP from several loopback addresses (each one a client of its own): a workspace whose names
//! and titles are hostile, sockets held open, one client flooding `/callback`, the caps, a
//! reconnect after a rename, and `status` while workspaces connect.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::*;

/// Characters that must never reach a terminal or a log as they are.
fn hidden(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}' | '\u{feff}')
}

/// A daemon serving the connect page, with the target "tweets" and `extra` in `[connect]`.
fn world(extra: &str) -> (World, String) {
    connect_page_world(&["tweets"], extra)
}

/// An HTTP client whose connections come from `source` (a loopback address).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(source.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A user at `source` connects `workspace` (None: Acme) sharing `databases`, through the page:
/// the status and text of the last page.
async fn connect_through_page(
    w: &World,
    public: &str,
    source: &str,
    workspace: Option<&str>,
    databases: &[&str],
) -> (u16, String) {
    let http = client_from(source);
    let start = http.get(format!("{public}/start")).send().await.unwrap();
    if start.status().as_u16() != 303 {
        let status = start.status().as_u16();
        return (status, start.text().await.unwrap());
    }
    let cookie = start.headers()["set-cookie"].to_str().unwrap().to_owned();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let location = url::Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
    let state = location
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let redirect = format!("{public}/callback");
    let back = consent_in(&w.emu, &redirect, &state, workspace, databases, true).await;
    let r = http
        .get(back)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn wait_page(public: &str) {
    let addr: SocketAddr = public.trim_start_matches("http://").parse().unwrap();
    wait_until("the connect page listens", || {
        TcpStream::connect(addr).is_ok()
    });
}

fn records(w: &World) -> Vec<notion_inbox::tenants::Record> {
    notion_inbox::tenants::records(&w.path("state"))
}

#[test]
fn a_hostile_workspace_stays_one_plain_line_in_every_output_and_the_log() {
    let (mut w, public) = world("");
    let info = w.emu.info().clone();
    w.emu.rename_workspace(
        &info.other_workspace_id,
        "Victim\u{1b}]0;pwned\u{7}\u{1b}[2J Corp\r\n<3>forged\u{202e}cnI",
        Some("Eve\u{1b}[31m\u{2066}Admin\u{2069}\u{200b}"),
    );
    w.emu.retitle_database(
        &info.other_database_id,
        "Tweets\n<3>forged title\u{202e}",
        "Tweets\r\n<2>forged ds",
    );
    w.start();
    wait_page(&public);
    let (status, page) = w.rt.block_on(connect_through_page(
        &w,
        &public,
        "127.0.0.1",
        Some(&info.other_workspace_id),
        &[&info.other_database_id],
    ));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Connected"), "{page}");
    assert!(!page.chars().any(|c| hidden(c) && c != '\n'), "{page:?}");
    let name = records(&w)[0].name.clone();
    w.append(
        &w.path(&format!("spool/{name}.jsonl")),
        &rec("@eve", "hello"),
    );
    w.wait_for("the row", || {
        w.pages().iter().any(|p| page_title(p) == "@eve")
    });
    for args in [
        vec!["targets"],
        vec!["targets", "--json"],
        vec!["status"],
        vec!["status", "--json"],
        vec!["databases", "--target", &name],
        vec!["databases", "--target", &name, "--json"],
    ] {
        let (_, out, err) = w.cli(&args);
        for text in [&out, &err] {
            let bad: Vec<char> = text.chars().filter(|c| hidden(*c)).collect();
            assert!(bad.is_empty(), "{args:?} printed {bad:?}:\n{text}");
            for line in text.lines() {
                assert!(
                    !line.trim_start().starts_with("<3>") && !line.starts_with("<2>"),
                    "{args:?}: a forged line: {line}"
                );
            }
        }
        assert!(
            out.contains("forged") || args[0] != "targets",
            "{args:?}: the name is not shown:\n{out}"
        );
    }
    w.stop();
    let log = w.logs();
    assert!(!log.chars().any(hidden), "the log holds a hidden character");
    for line in log.lines() {
        assert!(!line.starts_with('<'), "a forged log line: {line}");
        if line.contains("forged") {
            assert!(
                line.contains("Victim") || line.contains("Tweets"),
                "a log line split off: {line}"
            );
        }
    }
}

/// Idle sockets that hold places, and a client flooding `/callback` with made-up states, do not
/// keep a real user from connecting; the flooder is the one refused.
#[test]
fn the_page_serves_real_users_while_sockets_are_held_and_a_client_floods() {
    let (mut w, public) = world("");
    let info = w.emu.info().clone();
    w.start();
    wait_page(&public);
    let addr: SocketAddr = public.trim_start_matches("http://").parse().unwrap();
    // 64 idle connections, and 16 more sending their headers one byte at a time.
    let mut held: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for _ in 0..16 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"POST /choose HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\nto")
            .unwrap();
        held.push(s);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let (stop, public) = (stop.clone(), public.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let http = client_from("127.0.0.2");
                let (mut sent, mut refused) = (0u32, 0u32);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = http
                        .get(format!("{public}/callback?state=x&code=y"))
                        .send()
                        .await;
                    sent += 1;
                    if r.is_ok_and(|r| r.status().as_u16() == 429) {
                        refused += 1;
                    }
                }
                (sent, refused)
            })
        })
    };
    let started = Instant::now();
    let mut connected = 0;
    for _ in 0..3 {
        let (status, page) = w.rt.block_on(connect_through_page(
            &w,
            &public,
            "127.0.0.1",
            Some(&info.other_workspace_id),
            &[&info.other_database_id],
        ));
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("Connected"), "{page}");
        connected += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, refused) = flood.join().unwrap();
    eprintln!(
        "{connected} connects in {:?} while 80 sockets were held and one client sent {sent} callbacks ({refused} refused)",
        started.elapsed()
    );
    assert!(
        refused > 0,
        "the flooding client was never refused ({sent} sent)"
    );
    assert_eq!(records(&w).len(), 1, "connecting again made another tenant");
    drop(held);
    w.stop();
}

/// Past `max_targets` or the client's hourly limit the page says so and nothing is created; a
/// workspace that connected before still may, renamed, and keeps its target.
#[test]
fn the_caps_refuse_new_workspaces_politely_and_let_known_ones_back() {
    let (mut w, public) = world("max_targets = 1\nmax_new_per_client_per_hour = 1\n");
    let info = w.emu.info().clone();
    let twitter = info.database_id.clone();
    w.start();
    wait_page(&public);
    let globex = Some(info.other_workspace_id.as_str());
    let (status, page) = w.rt.block_on(connect_through_page(
        &w,
        &public,
        "127.0.0.1",
        globex,
        &[&info.other_database_id],
    ));
    assert_eq!(status, 200, "{page}");
    let first = records(&w)[0].name.clone();
    // The same client, another workspace: its hourly limit (and max_targets too).
    let (status, page) = w.rt.block_on(connect_through_page(
        &w,
        &public,
        "127.0.0.1",
        None,
        &[&twitter],
    ));
    assert_eq!(status, 503, "{page}");
    assert!(page.contains("Nothing was connected"), "{page}");
    // Another client: max_targets.
    let (status, page) = w.rt.block_on(connect_through_page(
        &w,
        &public,
        "127.0.0.3",
        None,
        &[&twitter],
    ));
    assert_eq!(status, 503, "{page}");
    assert!(page.contains("as many workspaces as it can take"), "{page}");
    assert_eq!(records(&w).len(), 1, "a refused workspace was created");
    let tokens: Vec<_> = std::fs::read_dir(w.path("state/tokens"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".toml"))
        .collect();
    assert_eq!(
        tokens.len(),
        1,
        "a refused workspace left a token file: {tokens:?}"
    );
    // Globex, renamed, connects again at the cap: the same target.
    w.emu
        .rename_workspace(&info.other_workspace_id, "Globex Renamed", None);
    let (status, page) = w.rt.block_on(connect_through_page(
        &w,
        &public,
        "127.0.0.1",
        globex,
        &[&info.other_database_id],
    ));
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Connected again") && page.contains(&first),
        "{page}"
    );
    let all = records(&w);
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].connection.workspace_name.as_deref(),
        Some("Globex Renamed")
    );
    let (_, out, _) = w.cli(&["check", "--offline", "--json"]);
    assert!(
        out.contains("connect_caps") && out.contains("1 of 1 connected workspaces"),
        "{out}"
    );
    w.stop();
}

/// While the daemon runs, `status` says so, also right after a workspace connected (its target
/// is starting); once it stopped, `status` exits 3.
#[test]
fn status_knows_the_daemon_runs_while_workspaces_connect() {
    let (mut w, public) = world("");
    let info = w.emu.info().clone();
    w.start();
    wait_page(&public);
    wait_until("the daemon reports", || w.status().contains_key("tweets"));
    let (status, page) = w.rt.block_on(connect_through_page(
        &w,
        &public,
        "127.0.0.1",
        Some(&info.other_workspace_id),
        &[&info.other_database_id],
    ));
    assert_eq!(status, 200, "{page}");
    // Right after the connect: the new target is not reported yet.
    let (code, out, _) = w.cli(&["status"]);
    assert_ne!(
        code,
        Some(3),
        "status says the running daemon is not running:\n{out}"
    );
    w.stop();
    let (code, out, _) = w.cli(&["status"]);
    assert_eq!(code, Some(3), "{out}");
    // A second daemon on the same state directory is refused while one runs.
    w.start();
    wait_page(&public);
    let (code, _, err) = w.cli(&["run"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("another notion-inbox run"), "{err}");
    w.stop();
}

/// Under an https `public_url` the state's cookie is `__Host-` prefixed (Secure, Path=/, no
/// Domain), so that a sibling subdomain cannot plant one.
#[test]
fn the_state_cookie_is_host_prefixed_under_https() {
    let (mut w, public) = world("");
    let path = w.path("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(
            &format!("public_url = \"{public}\""),
            "public_url = \"https://connect.example\"",
        ),
    )
    .unwrap();
    w.start();
    wait_page(&public);
    let start =
        w.rt.block_on(async {
            let http = client_from("127.0.0.1");
            http.get(format!("{public}/start")).send().await
        })
        .unwrap();
    assert_eq!(start.status().as_u16(), 303);
    let cookie = start.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-ni_state="), "{cookie}");
    assert!(
        cookie.contains("; Secure") && cookie.contains("Path=/") && !cookie.contains("Domain"),
        "{cookie}"
    );
    w.stop();
}
