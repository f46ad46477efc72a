//! Shared test harness: an in-process Notion API emulator, a temporary directory with a config, and
//! the real `notion-inbox` binary running against them.

#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use notion_emulator::{Emulator, EmulatorOptions, StoredPage};

/// A generous deadline for anything the tests wait on.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `cond` every 20 ms until it holds or `DEADLINE` passes; panics with `what` on timeout.
#[track_caller]
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > DEADLINE {
            panic!("timed out after {DEADLINE:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback port that nothing listens on, for a test to hand to a server it starts later.
///
/// The port comes from below the kernel's ephemeral range (`ip_local_port_range`, 32768 and up on
/// Linux), so the outgoing connections a test makes meanwhile (to chromedriver, to the emulator)
/// cannot be given it between this check and the server's bind, as happened with `bind(":0")`.
/// Each call takes the next port of a per-process sequence that starts at a place drawn from the
/// pid, so that tests running at once in one binary never pick the same port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        let v4 = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        // Where the machine has an IPv6 loopback, the port must be free there too ("localhost").
        let v6 = match std::net::TcpListener::bind(("::1", port)) {
            Ok(_) => true,
            Err(e) => e.kind() != std::io::ErrorKind::AddrInUse,
        };
        if v4 && v6 {
            return port;
        }
    }
    panic!("no free loopback port between {LOW} and {}", LOW + SPAN);
}

/// One test's world.
pub struct World {
    /// Holds every file of the test.
    pub dir: tempfile::TempDir,
    /// The emulator (its runtime lives in `rt`).
    pub emu: Emulator,
    /// The runtime the emulator runs on.
    pub rt: tokio::runtime::Runtime,
    /// The running daemon, if started.
    pub daemon: Option<Child>,
    /// How many times the daemon was started (names its log files).
    pub starts: usize,
    /// `RUST_LOG` of the daemon.
    pub log_filter: String,
    /// The umask the binary runs with ([`World::command`]), if not the test's own.
    pub umask: Option<u32>,
    /// The soft and hard limits of open files the binary runs with ([`World::command`]), if
    /// not the test's own.
    pub open_files: Option<(u64, u64)>,
}

/// Settings of one target in the generated config.
#[derive(Clone)]
pub struct TargetSpec {
    pub name: String,
    /// The token (no `token` line when empty: an OAuth target's token file, or none).
    pub token: String,
    pub database_id: String,
    pub dedupe: bool,
    /// More lines of the `[[target]]` table.
    pub extra: String,
    /// `[target.properties]`: (record field, property), in order.
    pub properties: Vec<(String, String)>,
}

impl TargetSpec {
    /// The same target with `[target.properties]` set to `mapping`.
    pub fn mapping(self, mapping: &[(&str, &str)]) -> TargetSpec {
        TargetSpec {
            properties: mapping
                .iter()
                .map(|(f, p)| (f.to_string(), p.to_string()))
                .collect(),
            ..self
        }
    }
}

/// The generated config's defaults for one table, as `key = value` lines, followed by `extra`;
/// a key that `extra` sets replaces its default.
fn table(defaults: &[(&str, &str)], extra: &str) -> String {
    let sets = |key: &str| {
        extra
            .lines()
            .any(|l| l.split('=').next().is_some_and(|k| k.trim() == key))
    };
    let mut text: String = defaults
        .iter()
        .filter(|(k, _)| !sets(k))
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    text.push_str(extra);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

impl World {
    /// Starts an emulator with `opts` in a runtime of its own.
    pub fn new(opts: EmulatorOptions) -> World {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let emu = rt.block_on(Emulator::start(opts)).expect("emulator starts");
        World {
            dir: tempfile::tempdir().unwrap(),
            emu,
            rt,
            daemon: None,
            starts: 0,
            log_filter: "notion_inbox=debug,info".into(),
            umask: None,
            open_files: None,
        }
    }

    /// A world with the emulator's defaults.
    pub fn default_world() -> World {
        World::new(EmulatorOptions::default())
    }

    /// The default target: the seeded database, the internal token.
    pub fn target(&self, name: &str) -> TargetSpec {
        let info = self.emu.info();
        TargetSpec {
            name: name.into(),
            token: info.token.clone(),
            database_id: info.database_id.clone(),
            dedupe: false,
            extra: String::new(),
            properties: vec![
                ("handle".into(), "title".into()),
                ("tweet".into(), "tweet".into()),
            ],
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn inbox(&self, name: &str) -> PathBuf {
        self.path(&format!("spool/{name}.jsonl"))
    }

    /// Writes the config for `targets` (mode 600: it holds tokens).
    pub fn write_config(&self, targets: &[TargetSpec], daemon_extra: &str) -> PathBuf {
        self.write_config_with(targets, "", daemon_extra)
    }

    /// Like [`World::write_config`], with `notion_extra` (such as `requests_per_second = 3\n`)
    /// added to `[notion]`.
    pub fn write_config_with(
        &self,
        targets: &[TargetSpec],
        notion_extra: &str,
        daemon_extra: &str,
    ) -> PathBuf {
        std::fs::create_dir_all(self.path("spool")).unwrap();
        let api = format!("\"{}\"", self.emu.url());
        let notion = [("api_base", api.as_str()), ("version", "\"2025-09-03\"")];
        let daemon = [
            ("state_dir", "\"state\""),
            ("reconcile_interval", "\"500ms\""),
            ("shutdown_grace", "\"5s\""),
            ("dedupe_settle", "\"50ms\""),
        ];
        let mut text = format!(
            "[notion]\n{}\n[daemon]\n{}\n",
            table(&notion, notion_extra),
            table(&daemon, daemon_extra)
        );
        for t in targets {
            text.push_str(&format!(
                "[[target]]\nname = \"{}\"\ninbox = \"spool/{}.jsonl\"\ndatabase_id = \"{}\"\n",
                t.name, t.name, t.database_id
            ));
            if !t.token.is_empty() {
                text.push_str(&format!("token = \"{}\"\n", t.token));
            }
            if t.dedupe {
                text.push_str("dedupe_property = \"Inbox ID\"\n");
            }
            text.push_str(&t.extra);
            text.push_str("[target.properties]\n");
            for (field, property) in &t.properties {
                text.push_str(&format!("{field} = \"{property}\"\n"));
            }
            text.push('\n');
        }
        let path = self.path("config.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// Writes the config for `targets` as OAuth targets (token files in `state/tokens/`, the
    /// emulator's client id), and the emulator's client secret in `client_secret` with `mode`.
    pub fn write_oauth_config(
        &self,
        targets: &[TargetSpec],
        secret_mode: u32,
        daemon_extra: &str,
    ) -> PathBuf {
        let info = self.emu.info();
        let secret = self.path("client_secret");
        std::fs::write(&secret, &info.client_secret).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(secret_mode)).unwrap();
        let notion = format!(
            "client_id = \"{}\"\nclient_secret_file = \"client_secret\"\nredirect_uri = \"{}\"\nrequests_per_second = 50\nburst = 50\n",
            info.client_id, info.redirect_uris[0]
        );
        let targets: Vec<TargetSpec> = targets
            .iter()
            .map(|t| TargetSpec {
                token: String::new(),
                ..t.clone()
            })
            .collect();
        self.write_config_with(&targets, &notion, daemon_extra)
    }

    /// Plays `authorize` for target `name` in-process (the consent form, the code exchange) and
    /// writes its token file; returns what was written.
    pub fn authorize(&self, name: &str) -> notion_inbox::notion::TokenFile {
        use notion_inbox::notion::TokenFile;
        use notion_inbox::notion::oauth::TokenResponse;
        let info = self.emu.info().clone();
        let redirect = info.redirect_uris[0].clone();
        let response: serde_json::Value = self.rt.block_on(async {
            let location = consent_location(&self.emu, &redirect, "s", true).await;
            let location = url::Url::parse(&location).unwrap();
            let code = location
                .query_pairs()
                .find(|(k, _)| k == "code")
                .unwrap()
                .1
                .into_owned();
            reqwest::Client::new()
                .post(format!("{}/v1/oauth/token", info.url))
                .basic_auth(&info.client_id, Some(&info.client_secret))
                .json(&serde_json::json!({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        let file = TokenFile::from_response(&TokenResponse::parse(response).unwrap(), None);
        file.write(&self.path(&format!("state/tokens/{name}.toml")))
            .unwrap();
        file
    }

    /// The binary on this world's config (`--config`, `NO_COLOR`), run with [`World::umask`] and
    /// [`World::open_files`] if set.
    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_notion-inbox"));
        c.arg("--config")
            .arg(self.path("config.toml"))
            .env("NO_COLOR", "1");
        if let Some(mask) = self.umask {
            use std::os::unix::process::CommandExt;
            // SAFETY: umask(2) is async-signal-safe and cannot fail.
            unsafe {
                c.pre_exec(move || {
                    libc::umask(mask as libc::mode_t);
                    Ok(())
                });
            }
        }
        if let Some((soft, hard)) = self.open_files {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            };
            // SAFETY: setrlimit(2) is async-signal-safe; lowering a limit needs no privilege.
            unsafe {
                c.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        c
    }

    /// The daemon's view of every target (`<state_dir>/status.json`), by name.
    pub fn status(&self) -> std::collections::HashMap<String, serde_json::Value> {
        std::fs::read(self.path("state/status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<serde_json::Value>>(&b).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s["target"].as_str().unwrap_or_default().to_owned(), s))
            .collect()
    }

    /// Starts the daemon on the config; its log goes to `daemon-N.log`. With
    /// `NOTION_INBOX_WRAP` set (benchmarks: `heaptrack`), the daemon runs under that program.
    pub fn start(&mut self) {
        assert!(self.daemon.is_none(), "the daemon is already running");
        self.starts += 1;
        let log = std::fs::File::create(self.path(&format!("daemon-{}.log", self.starts))).unwrap();
        let mut command = self.command();
        if let Some(wrap) = std::env::var_os("NOTION_INBOX_WRAP") {
            let mut wrapped = Command::new(wrap);
            wrapped.arg(command.get_program()).args(command.get_args());
            for (k, v) in command.get_envs() {
                match v {
                    Some(v) => wrapped.env(k, v),
                    None => wrapped.env_remove(k),
                };
            }
            command = wrapped;
        }
        let child = command
            .arg("--log-format")
            .arg("text")
            .arg("run")
            .env("RUST_LOG", &self.log_filter)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the binary starts");
        self.daemon = Some(child);
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: i32) {
        let pid = self.daemon.as_ref().expect("running").id() as i32;
        // SAFETY: kill(2) with a pid we own.
        unsafe { libc_kill(pid, signal) };
    }

    /// SIGTERM, then waits for exit; returns the exit status code. Also scans every log so far
    /// for the emulator's secrets (tokens, codes, the client secret): none may appear.
    pub fn stop(&mut self) -> Option<i32> {
        self.signal(15);
        let code = self.wait_exit();
        self.assert_no_secrets();
        code
    }

    /// Panics if a log of the daemon contains a token, code or the client secret.
    pub fn assert_no_secrets(&self) {
        let logs = self.logs();
        for secret in self.emu.secrets() {
            assert!(
                !logs.contains(&secret),
                "a secret ({}…) reached the daemon's log",
                &secret[..secret.len().min(6)]
            );
        }
    }

    /// SIGKILL, then reaps.
    pub fn kill(&mut self) {
        let mut child = self.daemon.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Waits for the daemon to exit.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let mut child = self.daemon.take().expect("running");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if start.elapsed() > DEADLINE {
                let _ = child.kill();
                panic!(
                    "the daemon did not exit within {DEADLINE:?}:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a one-shot command of the real binary on the config; returns its exit code, stdout
    /// and stderr. A command that has not exited within [`DEADLINE`] is killed and fails the test
    /// (a hung `status` is a defect, not a slow test).
    pub fn cli(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_notion-inbox"))
            .arg("--config")
            .arg(self.path("config.toml"))
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        // Drained by threads, so a full pipe never stalls the command.
        let drain = |mut r: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = r.read_to_string(&mut text);
                text
            })
        };
        let out = drain(Box::new(child.stdout.take().unwrap()));
        let err = drain(Box::new(child.stderr.take().unwrap()));
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > DEADLINE {
                let _ = child.kill();
                panic!("notion-inbox {args:?} did not exit within {DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status.code(), out.join().unwrap(), err.join().unwrap())
    }

    /// Appends `text` to `path` with one write on an O_APPEND descriptor.
    pub fn append(&self, path: &Path, text: &str) {
        append_bytes(path, text.as_bytes());
    }

    /// Like [`wait_until`], with the daemon's logs in the panic message.
    #[track_caller]
    pub fn wait_for(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            if start.elapsed() > DEADLINE {
                panic!(
                    "timed out after {DEADLINE:?} waiting for: {what}\nlogs:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The rows the emulator holds, in creation order.
    pub fn pages(&self) -> Vec<StoredPage> {
        self.emu.pages()
    }

    /// The `handle` title of every row, in creation order.
    pub fn handles(&self) -> Vec<String> {
        self.pages().iter().map(page_title).collect()
    }

    /// Every daemon log so far.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|i| {
                std::fs::read_to_string(self.path(&format!("daemon-{i}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n---- restart ----\n")
    }

    /// The dead-letter entries of target `name` (records; reports of a lost file excluded, see
    /// [`World::lost_reports`]).
    pub fn dead_letters(&self, name: &str) -> Vec<serde_json::Value> {
        self.dead_letter_file(name)
            .into_iter()
            .filter(|e| e["lost"] != serde_json::Value::Bool(true))
            .collect()
    }

    /// The reports of lost files in target `name`'s dead-letter file.
    pub fn lost_reports(&self, name: &str) -> Vec<serde_json::Value> {
        self.dead_letter_file(name)
            .into_iter()
            .filter(|e| e["lost"] == serde_json::Value::Bool(true))
            .collect()
    }

    fn dead_letter_file(&self, name: &str) -> Vec<serde_json::Value> {
        let path = self.path(&format!("state/dead-letter/{name}.jsonl"));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        // Read while the daemon may be appending: only lines with their `\n` are entries (a
        // large entry is more than one write).
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        whole
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Plays the user on the emulator's consent page (picking the "Twitter" database) without following
/// the redirect, as a user who copies the address bar would; returns the redirect's location.
pub async fn consent_location(emu: &Emulator, redirect: &str, state: &str, allow: bool) -> String {
    let twitter = emu.info().database_id.clone();
    consent_in(emu, redirect, state, None, &[&twitter], allow).await
}

/// Like [`consent_location`], in `workspace` (its id; None: "Acme") picking `databases`.
pub async fn consent_in(
    emu: &Emulator,
    redirect: &str,
    state: &str,
    workspace: Option<&str>,
    databases: &[&str],
    allow: bool,
) -> String {
    let info = emu.info();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("client_id", &info.client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("state", state)
        .append_pair("decision", if allow { "allow" } else { "cancel" });
    if let Some(w) = workspace {
        form.append_pair("workspace", w);
    }
    for db in databases {
        form.append_pair("database", db);
    }
    let r = http
        .post(format!("{}/v1/oauth/authorize", info.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.finish())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302, "the consent form redirects");
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// Asserts that the rows are exactly `expected` (as a multiset: each exactly once).
#[track_caller]
pub fn assert_rows_once(w: &World, expected: &[String]) {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for h in w.handles() {
        *counts.entry(h).or_default() += 1;
    }
    let want: std::collections::BTreeMap<String, usize> =
        expected.iter().map(|h| (h.clone(), 1)).collect();
    assert_eq!(
        counts,
        want,
        "rows differ from the records appended\nlogs:\n{}",
        w.logs()
    );
}

/// Appends with one write() on an O_APPEND descriptor, as producers should.
pub fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

/// The plain text of a stored page's title property.
pub fn page_title(p: &StoredPage) -> String {
    prop_text(p, "title")
}

/// The plain text of a stored page's text property, found by id or name.
pub fn prop_text(p: &StoredPage, id_or_name: &str) -> String {
    let props = p.properties.as_object().expect("properties is an object");
    let value = props
        .iter()
        .find(|(name, v)| {
            *name == id_or_name || v.get("id").and_then(|i| i.as_str()) == Some(id_or_name)
        })
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no property {id_or_name} in {props:?}"));
    let items = value
        .get("title")
        .or_else(|| value.get("rich_text"))
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    items
        .iter()
        .map(|i| i["text"]["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A record line for handle `h`.
pub fn rec(h: &str, tweet: &str) -> String {
    serde_json::json!({"handle": h, "tweet": tweet}).to_string() + "\n"
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// An emulator fast enough that tests do not wait on the rate limit, unless they test it: 200
/// requests per second per token, no workspace limit.
pub fn fast() -> EmulatorOptions {
    limited_to(200.0)
}

/// An emulator that allows `per_second` requests per second per token (a burst as large), with
/// no workspace limit.
pub fn limited_to(per_second: f64) -> EmulatorOptions {
    EmulatorOptions {
        rate: notion_emulator::RateLimit {
            requests_per_second: per_second,
            burst: per_second as u32,
        },
        workspace_rate: None,
        ..EmulatorOptions::default()
    }
}

/// A world whose daemon serves the connect page at `http://127.0.0.1:<port>` (the public URL
/// too): the emulator's OAuth client (its secret in a file, the callback registered), the
/// targets named, and `connect_extra` in `[connect]`, whose workspaces get the handle/tweet
/// mapping. Returns the world and the page's address.
#[allow(dead_code)]
pub fn connect_page_world(targets: &[&str], connect_extra: &str) -> (World, String) {
    let w = World::new(fast());
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let info = w.emu.info().clone();
    w.emu.register_redirect_uri(&format!("{public}/callback"));
    std::fs::write(w.path("client_secret"), &info.client_secret).unwrap();
    std::fs::set_permissions(
        w.path("client_secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let notion = format!(
        "client_id = \"{}\"\nclient_secret_file = \"client_secret\"\nrequests_per_second = 50\nburst = 50\n",
        info.client_id
    );
    let specs: Vec<TargetSpec> = targets.iter().map(|t| w.target(t)).collect();
    let path = w.write_config_with(&specs, &notion, "");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "[connect]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"{public}\"\ninbox_dir = \"spool\"\n{connect_extra}\n[connect.properties]\nhandle = \"title\"\ntweet = \"tweet\"\n"
    ));
    std::fs::write(&path, text).unwrap();
    (w, public)
}
