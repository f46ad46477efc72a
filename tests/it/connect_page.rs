//! The connect page in a real browser: Debian's chromium, driven through chromedriver with
//! fantoccini, against the real daemon (which serves the page) and the emulator's consent page.
//! A user connects Globex (the result page names the workspace, the database and the connection
//! id; a line appended to the new inbox becomes a row), connects it again (the same target),
//! connects with two fitting databases (the choice form), and cancels. Screenshots of each page
//! go to `target/connect-screenshots/`.
//!
//! Needs /usr/bin/chromium and /usr/bin/chromedriver (`.ci/run` installs them); without them the
//! test says so and skips, unless NOTION_INBOX_REQUIRE_BROWSER=1 (CI) makes that a failure.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use fantoccini::{Client, ClientBuilder, Locator};

/// chromedriver on a port of its own, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn driver() -> Option<Driver> {
    let (chromium, chromedriver) = (
        Path::new("/usr/bin/chromium"),
        Path::new("/usr/bin/chromedriver"),
    );
    if !chromium.exists() || !chromedriver.exists() {
        let hint = "the connect page's browser test needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run installs them)";
        assert!(
            std::env::var_os("NOTION_INBOX_REQUIRE_BROWSER").is_none_or(|v| v != "1"),
            "{hint}"
        );
        eprintln!("SKIPPED: {hint}");
        return None;
    }
    let port = free_port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("chromedriver listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Some(Driver { child, port })
}

async fn browser(driver: &Driver, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1000,900",
                format!("--user-data-dir={}", profile.display())],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a chromium session")
}

/// Saves a screenshot of the page as `target/connect-screenshots/<name>.png`.
async fn shoot(c: &Client, name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/connect-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Waits (up to 30 s) until the page has an element matching `css`, and returns the page's
/// text. A navigation in progress can replace the page between two commands: they are tried
/// again until both see the same page.
async fn page_with(c: &Client, css: &str) -> String {
    let start = Instant::now();
    loop {
        let text = async {
            c.find(Locator::Css(css)).await?;
            c.find(Locator::Css("body")).await?.text().await
        };
        match text.await {
            Ok(text) => return text,
            Err(e) if start.elapsed() > Duration::from_secs(30) => {
                panic!("no {css} on the page: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// On the emulator's consent page: picks `workspace` and exactly `databases`, then `decision`.
async fn consent(c: &Client, workspace: &str, databases: &[&str], decision: &str) {
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("select[name=workspace]"))
        .await
        .unwrap()
        .select_by_value(workspace)
        .await
        .unwrap();
    for b in c
        .find_all(Locator::Css("input[name=database]"))
        .await
        .unwrap()
    {
        let value = b.attr("value").await.unwrap().unwrap_or_default();
        let checked = b.prop("checked").await.unwrap().as_deref() == Some("true");
        if checked != databases.contains(&value.as_str()) {
            b.click().await.unwrap();
        }
    }
    shoot(c, &format!("consent-{decision}")).await;
    c.find(Locator::Css(&format!("button[value={decision}]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Allows Globex's "Tweets" on the consent page; the result page's facts, shot as `shot`.
async fn allow_globex_tweets(
    c: &Client,
    info: &notion_emulator::EmulatorInfo,
    shot: &str,
) -> String {
    consent(
        c,
        &info.other_workspace_id,
        &[&info.other_database_id],
        "allow",
    )
    .await;
    let text = page_with(c, "dl.facts").await;
    shoot(c, shot).await;
    text
}

fn rows_in(w: &World, db: &str) -> Vec<String> {
    w.pages()
        .iter()
        .filter(|p| p.database_id == db)
        .map(page_title)
        .collect()
}

#[test]
fn a_user_connects_a_workspace_through_the_page_in_a_real_browser() {
    let Some(driver) = driver() else { return };
    let (mut w, public) = connect_page_world(&["tweets"], "");
    let info = w.emu.info().clone();
    w.start();
    w.wait_for("the connect page is served", || {
        w.logs().contains("serving the connect page")
    });
    let profile = tempfile::tempdir().unwrap();
    let rt = w.rt.handle().clone();
    let c = rt.block_on(browser(&driver, profile.path()));
    let started = Instant::now();

    // 1. Landing, Add to Notion, consent for Globex's Tweets, the result page.
    let text = rt.block_on(async {
        c.goto(&public).await.unwrap();
        let landing = page_with(&c, "a.button").await;
        assert!(
            landing.contains("Connect your Notion workspace"),
            "{landing}"
        );
        assert!(landing.contains("column named “tweet”"), "{landing}");
        shoot(&c, "landing").await;
        c.find(Locator::LinkText("Add to Notion"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        allow_globex_tweets(&c, &info, "connected").await
    });
    assert!(
        text.contains("Connected") && text.contains("Globex"),
        "{text}"
    );
    assert!(text.contains("\"Tweets\""), "{text}");
    let name = text
        .split_whitespace()
        .find(|w| w.starts_with("ws-"))
        .unwrap_or_else(|| panic!("no connection id: {text}"))
        .to_owned();
    for secret in w.emu.secrets() {
        assert!(!text.contains(&secret), "a secret is on the page");
    }
    w.append(
        &w.path(&format!("spool/{name}.jsonl")),
        &rec("@browser", "via the page"),
    );
    w.wait_for("the row", || {
        rows_in(&w, &info.other_database_id) == ["@browser"]
    });

    // 2. The same workspace again: the same target.
    let text = rt.block_on(async {
        c.goto(&format!("{public}/start")).await.unwrap();
        allow_globex_tweets(&c, &info, "connected-again").await
    });
    assert!(
        text.contains("Connected again") && text.contains(&name),
        "{text}"
    );

    // 3. Two databases fit: the choice form; the archive is chosen.
    let text = rt.block_on(async {
        c.goto(&format!("{public}/start")).await.unwrap();
        let both = [
            info.other_database_id.as_str(),
            info.other_archive_database_id.as_str(),
        ];
        consent(&c, &info.other_workspace_id, &both, "allow").await;
        let form = page_with(&c, "form input[type=radio]").await;
        assert!(
            form.contains("Choose a database") && form.contains("Tweets archive"),
            "{form}"
        );
        shoot(&c, "choose").await;
        for label in c.find_all(Locator::Css("label.choice")).await.unwrap() {
            if label.text().await.unwrap().contains("archive") {
                label.click().await.unwrap();
            }
        }
        c.find(Locator::Css("button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let text = page_with(&c, "dl.facts").await;
        shoot(&c, "chosen").await;
        text
    });
    assert!(
        text.contains("Tweets archive") && text.contains(&name),
        "{text}"
    );
    // The daemon restarts the target with the choice (its record changed) within a second, idle
    // until its next line; a line appended before that would still go to "Tweets".
    w.wait_for("the target restarted with the choice", || {
        w.logs().lines().any(|l| {
            l.contains("target started")
                && l.contains(&format!("target_name={name}"))
                && l.contains(&info.other_archive_database_id)
        })
    });
    w.append(
        &w.path(&format!("spool/{name}.jsonl")),
        &rec("@archived", "after the choice"),
    );
    let record = w.path(&format!("state/targets/{name}.toml"));
    w.wait_for(
        &format!(
            "the row in the archive (record: {})",
            std::fs::read_to_string(&record).unwrap_or_default()
        ),
        || rows_in(&w, &info.other_archive_database_id) == ["@archived"],
    );

    // 4. Cancel on the consent page: a kind page, nothing connected.
    let text = rt.block_on(async {
        c.goto(&format!("{public}/start")).await.unwrap();
        consent(&c, &info.workspace_id, &[&info.database_id], "cancel").await;
        let text = page_with(&c, "a.button.secondary").await;
        shoot(&c, "denied").await;
        text
    });
    assert!(
        text.contains("Nothing was connected") && text.contains("Cancel"),
        "{text}"
    );
    // The callback's address, code and all, opened a second time: refused.
    rt.block_on(async {
        c.goto(&format!("{public}/callback?code=x&state=y"))
            .await
            .unwrap();
        let text = page_with(&c, "h1").await;
        assert!(text.contains("This link has expired"), "{text}");
    });
    rt.block_on(c.close()).unwrap();
    assert_eq!(w.stop(), Some(0));
    eprintln!("browser test: {:?}", started.elapsed());
}

/// Without a browser: every answer carries the security headers; a `state` used by someone
/// without its cookie is refused and stays usable by its owner; a large body is refused.
#[test]
fn the_page_binds_state_to_its_browser_and_sends_strict_headers() {
    let (mut w, public) = connect_page_world(&["tweets"], "");
    let info = w.emu.info().clone();
    w.start();
    w.wait_for("the connect page is served", || {
        w.logs().contains("serving the connect page")
    });
    w.rt.block_on(async {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let landing = http.get(&public).send().await.unwrap();
        let h = landing.headers();
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        assert!(
            !h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src")
        );
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["x-content-type-options"], "nosniff");
        let start = http.get(format!("{public}/start")).send().await.unwrap();
        assert_eq!(start.status().as_u16(), 303);
        let cookie = start.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
        let authorize = url::Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
        let state = authorize
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into_owned();
        // Someone who read the state, without the cookie: refused, and the state survives.
        let foreign = http
            .get(format!(
                "{public}/callback?state={state}&error=access_denied"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(foreign.status().as_u16(), 400);
        let callback = consent_in(
            &w.emu,
            &format!("{public}/callback"),
            &state,
            Some(&info.other_workspace_id),
            &[&info.other_database_id],
            true,
        )
        .await;
        let own = cookie.split(';').next().unwrap().to_owned();
        let page = http
            .get(&callback)
            .header("cookie", &own)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status().as_u16(), 200);
        let text = page.text().await.unwrap();
        assert!(
            text.contains("Connected") && text.contains("Globex"),
            "{text}"
        );
        for secret in w.emu.secrets() {
            assert!(!text.contains(&secret), "a secret is on the page");
        }
        // The same callback again (single use), and an oversized form.
        let again = http
            .get(&callback)
            .header("cookie", &own)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status().as_u16(), 400);
        let big = http
            .post(format!("{public}/choose"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={}&database=x", "a".repeat(20_000)))
            .send()
            .await
            .unwrap();
        assert_eq!(big.status().as_u16(), 413);
    });
    assert_eq!(w.stop(), Some(0));
}
