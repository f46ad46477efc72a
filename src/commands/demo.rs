//! `notion-inbox demo`: the whole product in one command, against the in-process emulator. Starts
//! the emulator on a free loopback port, writes a config and state directory under a temporary
//! directory, authorizes a target through the emulator's OAuth consent page, appends sample
//! records, runs the daemon, shows progress, prints the rows as a table, connects a second
//! workspace through the connect page the daemon serves, then keeps watching for
//! records the user pushes until Ctrl-C. Nothing outside the temporary directory is touched.

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::daemon::signals::{Intent, Interrupt};
use notion_emulator::{Emulator, EmulatorOptions, StoredPage};

/// The sample records the demo appends.
const SAMPLES: &[(&str, &str)] = &[
    (
        "@rustlang",
        "Rust 1.95 is out: faster builds, and more const everywhere.",
    ),
    ("@NotionHQ", "Databases now hold several data sources."),
    (
        "@tokio_rs",
        "An async runtime for reliable network applications.",
    ),
    ("@ferris", "Click click. 🦀"),
    (
        "@systemd",
        "Type=notify, WatchdogSec=, LoadCredential=: use them.",
    ),
    (
        "@vectordotdev",
        "At-least-once is a promise; effectively-once is a proof.",
    ),
    ("@SomeHandle", "Here is a tweet"),
    (
        "@unicode",
        "Émojis 😀, accents é and CJK 漢字 survive the trip.",
    ),
];

/// Runs the demo until Ctrl-C (or until `stop` fires, for tests). Returns the rows it saw.
pub async fn run(
    mut stop: Option<tokio::sync::oneshot::Receiver<()>>,
) -> anyhow::Result<Vec<StoredPage>> {
    // Caught from the start, so that Ctrl-C at any step stops the demo cleanly.
    let mut interrupt = Interrupt::new()?;
    let dir = tempfile::Builder::new()
        .prefix("notion-inbox-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let root = dir.path();
    let callback_port = free_port()?;
    let redirect = format!("http://localhost:{callback_port}/callback");
    let page_port = free_port()?;
    let public = format!("http://127.0.0.1:{page_port}");
    let emu = Emulator::start(EmulatorOptions {
        redirect_uris: vec![redirect.clone(), format!("{public}/callback")],
        ..EmulatorOptions::default()
    })
    .await
    .context("cannot start the emulator")?;
    let info = emu.info().clone();
    println!("notion-inbox demo");
    println!(
        "  Notion API emulator   {}  (workspace \"{}\")",
        info.url, info.workspace_name
    );
    println!("  working directory     {}", root.display());

    // The config, as a user would write it.
    std::fs::create_dir_all(root.join("spool"))?;
    let secret_file = root.join("client_secret");
    crate::state::private::write_private(&secret_file, info.client_secret.as_bytes())?;
    let config_path = root.join("config.toml");
    std::fs::write(
        &config_path,
        format!(
            "[notion]\napi_base = \"{}\"\nclient_id = \"{}\"\nclient_secret_file = \"client_secret\"\nredirect_uri = \"{redirect}\"\n\n[daemon]\nstate_dir = \"state\"\nlog_level = \"warn\"\n\n[[target]]\nname = \"tweets\"\ninbox = \"spool/tweets.jsonl\"\ndedupe_property = \"Inbox ID\"\n\n[target.properties]\nhandle = \"title\"\ntweet = \"tweet\"\n\n[connect]\nlisten = \"127.0.0.1:{page_port}\"\npublic_url = \"{public}\"\ninbox_dir = \"spool\"\ndedupe_property = \"Inbox ID\"\n\n[connect.properties]\nhandle = \"title\"\ntweet = \"tweet\"\n",
            info.url, info.client_id
        ),
    )?;
    let config = Config::load(&config_path)?;
    let inbox = config.target("tweets")?.inbox.clone();

    // OAuth, with the emulator's consent page clicked by a stand-in browser.
    println!("\n1. Authorizing target \"tweets\" through the OAuth consent page ...");
    let args = super::authorize::AuthorizeArgs {
        target: "tweets".into(),
        no_browser: true,
        paste: false,
        timeout: Duration::from_secs(30),
        force: false,
        database: None,
    };
    let (url_tx, mut url_rx) = mpsc::channel::<url::Url>(1);
    let browser = tokio::spawn(async move {
        let url = url_rx.recv().await.context("no authorize URL")?;
        anyhow::Ok(notion_emulator::consent(&url, true).await?)
    });
    let done = super::authorize::run_with(&config, &args, &mut std::io::empty(), &mut |url| {
        let _ = url_tx.try_send(url.clone());
    })
    .await?;
    browser.await??;
    println!(
        "   authorized for workspace \"{}\"; token saved to {}",
        done.workspace,
        done.token_file.display()
    );
    // The config names no database: the one shared that fits the mapping was found.
    match &done.database {
        super::authorize::DatabaseOutcome::Chosen(label) => {
            println!("   rows go to {label}, found among the databases shared at consent")
        }
        super::authorize::DatabaseOutcome::Configured => {}
        super::authorize::DatabaseOutcome::NotChosen(why) => anyhow::bail!("{why}"),
    }

    // Records, then the daemon.
    println!(
        "\n2. Appending {} records to {} ...",
        SAMPLES.len(),
        inbox.display()
    );
    let lines: Vec<Vec<u8>> = SAMPLES
        .iter()
        .map(|(h, t)| {
            let mut l =
                serde_json::to_vec(&serde_json::json!({"handle": h, "tweet": t})).expect("json");
            l.push(b'\n');
            l
        })
        .collect();
    super::push::append_lines(&inbox, &lines)?;
    println!("\n3. Running the daemon (at Notion's rate limit: 3 requests per second) ...");
    let (intents_tx, intents_rx) = mpsc::channel(4);
    let daemon = tokio::spawn(crate::daemon::run_with(config_path.clone(), intents_rx));
    let start = Instant::now();
    let mut shown = 0;
    let mut interrupted = false;
    while emu.pages().len() < SAMPLES.len() {
        let n = emu.pages().len();
        if n != shown {
            println!(
                "   delivered {n}/{} ({:.1} s)",
                SAMPLES.len(),
                start.elapsed().as_secs_f64()
            );
            shown = n;
        }
        if daemon.is_finished() {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(120),
            "the sample records were not delivered within 2 minutes; see {}",
            root.join("state").display()
        );
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            () = interrupt.recv() => {
                interrupted = true;
                break;
            }
        }
    }
    println!(
        "   delivered {}/{} in {:.1} s; Notion answered 429 (rate limited) {} time(s)\n",
        emu.pages().len(),
        SAMPLES.len(),
        start.elapsed().as_secs_f64(),
        emu.stats().rate_limited_total()
    );
    print_table(&emu.pages());

    if !interrupted {
        println!("\n4. The connect page, where other workspaces connect themselves: {public}");
        println!("   A user of workspace \"Globex\" connects through it (a stand-in browser) ...");
        let name = connect_through_page(&public, &info).await?;
        let before = emu.page_count();
        let line = b"{\"handle\":\"@globex\",\"tweet\":\"Connected through the page\"}\n".to_vec();
        super::push::append_lines(&root.join("spool").join(format!("{name}.jsonl")), &[line])?;
        let waited = Instant::now();
        while emu.page_count() == before && waited.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::ensure!(
            emu.page_count() > before,
            "the connected workspace's record was not delivered within 30 s"
        );
        println!(
            "   connected through the page as target {name}; its first record is a row of Globex's \"Tweets\""
        );
        println!(
            "   Open {public} in a browser to connect a workspace yourself (the emulator's consent page offers Acme and Globex)."
        );
        println!("\n5. Watching. Add a record from another terminal, and watch it arrive:\n");
        println!(
            "   {} --config {} push --target tweets --handle @you --tweet 'Hello from the demo'",
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "notion-inbox".into()),
            config_path.display()
        );
        println!(
            "   or: echo '{{\"handle\":\"@you\",\"tweet\":\"hi\"}}' >> {}",
            inbox.display()
        );
        println!("\n   Ctrl-C ends the demo and removes {}.", root.display());
        let mut seen = emu.pages().len();
        loop {
            tokio::select! {
                () = interrupt.recv() => break,
                _ = async { match stop.as_mut() { Some(rx) => { let _ = rx.await; } None => std::future::pending().await } } => break,
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    let pages = emu.pages();
                    for p in &pages[seen..] {
                        println!("   new row: {:<16} {}", text_of(p, "handle"), text_of(p, "tweet"));
                    }
                    seen = pages.len();
                }
            }
        }
    }
    println!("\nStopping ...");
    let _ = intents_tx.send(Intent::Shutdown).await;
    daemon.await??;
    let pages = emu.pages();
    emu.shutdown().await;
    dir.close()?;
    println!(
        "Done: {} rows delivered; the temporary directory is removed.",
        pages.len()
    );
    Ok(pages)
}

/// Plays a user on the connect page: Add to Notion, consent for Globex's "Tweets" on the
/// emulator's page, back to the result page. Returns the connection id it shows.
async fn connect_through_page(
    public: &str,
    info: &notion_emulator::EmulatorInfo,
) -> anyhow::Result<String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let start = http.get(format!("{public}/start")).send().await?;
    let location = |r: &reqwest::Response| -> anyhow::Result<url::Url> {
        let l = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .context("no redirect")?;
        Ok(url::Url::parse(l)?)
    };
    let cookie = start
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .context("the page set no cookie")?
        .to_owned();
    let authorize = location(&start)?;
    let state = authorize
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", &info.client_id)
        .append_pair("redirect_uri", &format!("{public}/callback"))
        .append_pair("state", &state)
        .append_pair("workspace", &info.other_workspace_id)
        .append_pair("database", &info.other_database_id)
        .append_pair("decision", "allow")
        .finish();
    let consented = http
        .post(format!("{}/v1/oauth/authorize", info.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await?;
    let callback = location(&consented)?;
    let page = http
        .get(callback)
        .header("cookie", cookie)
        .send()
        .await?
        .text()
        .await?;
    page.split("<code>")
        .nth(1)
        .and_then(|rest| rest.split("</code>").next())
        .map(str::to_owned)
        .context("the result page shows no connection id")
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The plain text of a title or rich_text property of a stored page, by name.
pub fn text_of(p: &StoredPage, name: &str) -> String {
    let Some(v) = p.properties.get(name) else {
        return String::new();
    };
    v.get("title")
        .or_else(|| v.get("rich_text"))
        .and_then(|a| a.as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["text"]["content"].as_str())
                .collect::<String>()
        })
        .unwrap_or_default()
}

fn print_table(pages: &[StoredPage]) {
    println!("   {:<16} | {:<60} | Inbox ID", "handle", "tweet");
    println!(
        "   {}-+-{}-+-{}",
        "-".repeat(16),
        "-".repeat(60),
        "-".repeat(20)
    );
    for p in pages {
        let tweet: String = text_of(p, "tweet").chars().take(60).collect();
        println!(
            "   {:<16} | {:<60} | {}",
            text_of(p, "handle"),
            tweet,
            text_of(p, "Inbox ID")
        );
    }
}
