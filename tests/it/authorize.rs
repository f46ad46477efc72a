//! `notion-inbox authorize`'s loopback listener against requests from others on the machine:
//! forged or incomplete redirects, two redirects at once, half-sent requests, both loopbacks of
//! `localhost`, and a token file of another workspace. The real binary, against the emulator.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;
use notion_inbox::notion::TokenFile;
use secrecy::ExposeSecret;

/// Whether this machine has an IPv6 loopback to bind.
fn has_ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// One test's setting: the emulator, a config whose OAuth target "t" redirects to
/// `http://{host}:{port}/callback`, and the token endpoint at `api_base` (the emulator's unless a
/// test puts something in front of it).
struct Auth {
    w: World,
    redirect: String,
    port: u16,
}

impl Auth {
    fn new(host: &str) -> Auth {
        let w = World::new(fast());
        let port = free_port();
        let redirect = format!("http://{host}:{port}/callback");
        w.emu.register_redirect_uri(&redirect);
        let info = w.emu.info().clone();
        std::fs::create_dir_all(w.path("spool")).unwrap();
        std::fs::write(w.path("client_secret"), &info.client_secret).unwrap();
        std::fs::set_permissions(
            w.path("client_secret"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let auth = Auth { w, redirect, port };
        auth.write_config(&info.url);
        auth
    }

    fn write_config(&self, api_base: &str) {
        let info = self.w.emu.info();
        std::fs::write(
            self.w.path("config.toml"),
            format!(
                "[notion]\napi_base = \"{api_base}\"\nclient_id = \"{}\"\nclient_secret_file = \"client_secret\"\nredirect_uri = \"{}\"\n\n[daemon]\nstate_dir = \"state\"\n\n[[target]]\nname = \"t\"\ninbox = \"spool/t.jsonl\"\ndatabase_id = \"{}\"\n[target.properties]\nhandle = \"title\"\ntweet = \"tweet\"\n",
                info.client_id, self.redirect, info.database_id
            ),
        )
        .unwrap();
    }

    fn token_path(&self) -> std::path::PathBuf {
        self.w.path("state/tokens/t.toml")
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_notion-inbox"));
        c.arg("--config")
            .arg(self.w.path("config.toml"))
            .args(["authorize", "--target", "t", "--no-browser"])
            .args(extra)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Starts `authorize`; returns it, once it listens, with the URL and `state` it printed.
    fn start(&self, extra: &[&str]) -> (Child, url::Url, String) {
        let mut child = self.command(extra).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = url::Url::parse(line.trim()).expect("the first stdout line is the URL");
        let state = url
            .query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .expect("the URL has a state");
        (child, url, state)
    }

    /// Waits for `authorize` to exit; returns its exit code and stderr, checked for secrets.
    fn finish(&self, child: Child) -> (Option<i32>, String) {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        for secret in self.w.emu.secrets() {
            assert!(!stderr.contains(&secret), "a secret was printed: {stderr}");
        }
        (out.status.code(), stderr)
    }

    /// A GET to `url` (no redirects followed): status and body, checked for secrets.
    fn get(&self, url: &str) -> (u16, String) {
        let (status, page) = self.w.rt.block_on(get(url));
        self.assert_no_secret(&page);
        (status, page)
    }

    /// Panics if `text` holds a token, code or the client secret of the emulator.
    fn assert_no_secret(&self, text: &str) {
        for secret in self.w.emu.secrets() {
            assert!(!text.contains(&secret), "a secret was shown: {text}");
        }
    }

    /// Plays the user (Allow) and follows the redirect to the listener; returns the page's status
    /// and body.
    fn consent(&self, state: &str) -> (u16, String) {
        let location = self.location(state);
        self.get(&location)
    }

    /// The address Notion redirects the browser to after Allow, not followed.
    fn location(&self, state: &str) -> String {
        self.w
            .rt
            .block_on(consent_location(&self.w.emu, &self.redirect, state, true))
    }

    fn tokens_written(&self) -> TokenFile {
        TokenFile::read(&self.token_path()).expect("a token file was written")
    }
}

async fn get(url: &str) -> (u16, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[test]
fn forged_redirects_get_400_and_the_real_one_still_completes_the_flow() {
    let a = Auth::new("127.0.0.1");
    let (child, _url, state) = a.start(&[]);
    for forged in [
        format!("{}?code=forgedcode42&state=0123", a.redirect),
        format!("{}?code=forgedcode42", a.redirect),
        format!("{}?error=access_denied&state=0123", a.redirect),
        format!("{}?code=forgedcode42&state={state}&state=0123", a.redirect),
    ] {
        let (status, page) = a.get(&forged);
        assert_eq!(status, 400, "{forged}: {page}");
        assert!(page.contains("keeps waiting"), "{page}");
        assert!(!page.contains("forgedcode42"), "the page echoes the code");
    }
    let (status, page) = a.get(&format!("{}?code=x&state=0123", a.redirect));
    assert!(page.contains("state does not match"), "{status} {page}");
    let (status, page) = a.consent(&state);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("notion-inbox is authorized"), "{page}");
    let (code, stderr) = a.finish(child);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("Ignored a request"), "{stderr}");
    assert_eq!(a.tokens_written().workspace_name.as_deref(), Some("Acme"));
}

#[test]
fn a_redirect_without_a_code_gets_400_and_the_flow_continues() {
    let a = Auth::new("127.0.0.1");
    let (child, _url, state) = a.start(&[]);
    for query in [format!("state={state}"), format!("code=&state={state}")] {
        let (status, page) = a.get(&format!("{}?{query}", a.redirect));
        assert_eq!(status, 400, "{page}");
        assert!(page.contains("neither a code nor an error"), "{page}");
    }
    let (status, page) = a.consent(&state);
    assert_eq!(status, 200, "{page}");
    let (code, stderr) = a.finish(child);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(a.token_path().exists());
}

/// Whether `text` holds a control character other than a line feed.
fn has_controls(text: &str) -> bool {
    text.chars().any(|c| c.is_control() && c != '\n')
}

/// A refusal with the right `state` ends the flow: Cancel on the consent page, or an error of
/// Notion's, whose text is printed and shown with its control characters escaped.
#[test]
fn a_refusal_with_the_right_state_ends_the_flow() {
    let a = Auth::new("127.0.0.1");
    for (query, said) in [
        ("error=access_denied", "access was denied"),
        (
            "error=server_error%1B%5B2J&error_description=try%0D%0Aagain%07",
            "server_error\\u{1b}[2J (try\\u{d}\\u{a}again\\u{7})",
        ),
    ] {
        let (child, _url, state) = a.start(&[]);
        let (status, page) = a.get(&format!("{}?{query}&state={state}", a.redirect));
        assert_eq!(status, 200, "{page}");
        assert!(
            page.contains("Authorization not granted") && page.contains(said),
            "{page}"
        );
        assert!(!has_controls(&page), "{page:?}");
        let (code, stderr) = a.finish(child);
        assert_ne!(code, Some(0), "{stderr}");
        assert!(stderr.contains(said), "{stderr}");
        assert!(!has_controls(&stderr), "{stderr:?}");
        assert!(!a.token_path().exists());
    }
}

/// The code someone who read the `state` makes up.
const FORGED_CODE: &str = "forgedcode42";

/// What the token endpoint in front of the emulator's answers for [`FORGED_CODE`]: Notion's
/// refusal, with control characters that would clear a terminal and fake a prompt.
const REFUSAL: &str = "{\"error\":\"invalid_grant\",\"error_description\":\"no such code\\u001b[2J\\u0007\\r\\nuser@host$ \"}";

/// A token endpoint in front of the emulator's. It refuses [`FORGED_CODE`] with [`REFUSAL`], and
/// holds every other request until the test releases it (when started held), so that a second
/// redirect can arrive while the first one's code is being exchanged.
struct TokenEndpoint {
    url: String,
    arrived: Arc<AtomicUsize>,
    release: Arc<tokio::sync::Semaphore>,
}

impl TokenEndpoint {
    fn start(rt: &tokio::runtime::Runtime, emulator: String, held: bool) -> TokenEndpoint {
        let arrived = Arc::new(AtomicUsize::new(0));
        let permits = if held {
            0
        } else {
            tokio::sync::Semaphore::MAX_PERMITS
        };
        let release = Arc::new(tokio::sync::Semaphore::new(permits));
        let (a, r) = (arrived.clone(), release.clone());
        let forward = move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (a, r, emulator) = (a.clone(), r.clone(), emulator.clone());
            async move {
                let json = [("content-type", "application/json")];
                let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
                if request["code"] == FORGED_CODE {
                    let refusal = axum::body::Bytes::from_static(REFUSAL.as_bytes());
                    return (axum::http::StatusCode::BAD_REQUEST, json, refusal);
                }
                a.fetch_add(1, Ordering::SeqCst);
                r.acquire().await.unwrap().forget();
                let mut req = reqwest::Client::new()
                    .post(format!("{emulator}/v1/oauth/token"))
                    .body(body);
                for name in ["authorization", "content-type", "notion-version"] {
                    if let Some(v) = headers.get(name) {
                        req = req.header(name, v.to_str().unwrap());
                    }
                }
                let answer = req.send().await.unwrap();
                let status = axum::http::StatusCode::from_u16(answer.status().as_u16()).unwrap();
                (status, json, answer.bytes().await.unwrap())
            }
        };
        let app = axum::Router::new().route("/v1/oauth/token", axum::routing::post(forward));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
        TokenEndpoint {
            url,
            arrived,
            release,
        }
    }
}

/// Anyone who read the authorize URL (on the browser's command line) knows its `state`. A
/// redirect with that `state` and a code Notion refuses gets a page saying so, and the flow waits
/// on: the real redirect still completes it. Notion's refusal reaches the page and the terminal
/// without its control characters.
#[test]
fn a_refused_code_with_the_right_state_leaves_the_flow_waiting_for_the_real_redirect() {
    let a = Auth::new("127.0.0.1");
    let front = TokenEndpoint::start(&a.w.rt, a.w.emu.url(), false);
    a.write_config(&front.url);
    let (child, _url, state) = a.start(&[]);
    let forged = format!("{}?code={FORGED_CODE}&state={state}", a.redirect);
    for _ in 0..2 {
        let (status, page) = a.get(&forged);
        assert_eq!(status, 400, "{page}");
        assert!(
            page.contains("keeps waiting") && page.contains("no such code"),
            "{page}"
        );
        assert!(!page.contains(FORGED_CODE), "the page echoes the code");
        assert!(!has_controls(&page), "{page:?}");
    }
    let (status, page) = a.consent(&state);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("notion-inbox is authorized"), "{page}");
    let (code, stderr) = a.finish(child);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("still waiting") && stderr.contains("no such code"),
        "{stderr}"
    );
    assert!(!has_controls(&stderr), "{stderr:?}");
    assert!(!stderr.contains(FORGED_CODE), "{stderr}");
    assert_eq!(front.arrived.load(Ordering::SeqCst), 1, "the real code");
    assert_eq!(a.tokens_written().workspace_name.as_deref(), Some("Acme"));
}

/// A second redirect arriving while the first one's code is being exchanged waits for it, and
/// is turned away once the first completed the flow: the code is exchanged once.
#[test]
fn two_redirects_at_once_exchange_the_code_once() {
    let a = Auth::new("127.0.0.1");
    let held = TokenEndpoint::start(&a.w.rt, a.w.emu.url(), true);
    a.write_config(&held.url);
    let (child, _url, state) = a.start(&[]);
    let location = a.location(&state);
    let send = |location: &str| {
        let location = location.to_owned();
        a.w.rt.spawn(async move { get(&location).await })
    };
    let first = send(&location);
    wait_until("the first redirect's code exchange", || {
        held.arrived.load(Ordering::SeqCst) == 1
    });
    // While the first one's exchange is held, the same redirect again: it waits for the first
    // and is turned away. It must have been accepted before the first is let go: one arriving
    // after the flow ended finds the listener closed (a reset, not a 409). Accepted shows as one
    // more open descriptor of the authorize process.
    let fds = || std::fs::read_dir(format!("/proc/{}/fd", child.id())).map_or(0, |d| d.count());
    let before = fds();
    let second = send(&location);
    wait_until("authorize accepted the second redirect", || fds() > before);
    held.release.add_permits(10);
    let (status, page) = a.w.rt.block_on(first).unwrap();
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("notion-inbox is authorized"), "{page}");
    let (status, page) = a.w.rt.block_on(second).unwrap();
    assert_eq!(status, 409, "{page}");
    a.assert_no_secret(&page);
    assert!(page.contains("already completed"), "{page}");
    let (code, stderr) = a.finish(child);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(held.arrived.load(Ordering::SeqCst), 1, "exchanged twice");
    assert_eq!(a.w.emu.stats().requests["POST /v1/oauth/token"], 1);
    assert!(a.token_path().exists());
}

/// A code still being exchanged when `--timeout` is up is waited for, and when Notion refuses it
/// the flow ends with the refusal: there is no more time to wait for another redirect.
#[test]
fn a_code_refused_after_the_timeout_ends_the_flow_with_the_refusal() {
    let a = Auth::new("127.0.0.1");
    let held = TokenEndpoint::start(&a.w.rt, a.w.emu.url(), true);
    a.write_config(&held.url);
    let (mut child, _url, state) = a.start(&["--timeout", "5s"]);
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    // A code Notion does not know, held at the token endpoint past the timeout.
    let redirect = format!("{}?code=unknowncode7&state={state}", a.redirect);
    let answer = a.w.rt.spawn(async move { get(&redirect).await });
    wait_until("the code exchange", || {
        held.arrived.load(Ordering::SeqCst) == 1
    });
    let mut said = Vec::new();
    let start = Instant::now();
    while !said.iter().any(|l: &String| l.contains("The time is up")) {
        assert!(
            start.elapsed() < DEADLINE,
            "no word of the timeout: {said:?}"
        );
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
            said.push(line);
        }
    }
    held.release.add_permits(10);
    let (status, page) = a.w.rt.block_on(answer).unwrap();
    assert_eq!(status, 500, "{page}");
    assert!(!page.contains("unknowncode7"), "the page echoes the code");
    a.assert_no_secret(&page);
    let status = child.wait().unwrap();
    said.extend(lines.iter());
    let stderr = said.join("\n");
    assert_ne!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("exchanging the code for a token failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("unknowncode7"), "{stderr}");
    a.assert_no_secret(&stderr);
    assert!(!a.token_path().exists());
}

#[test]
fn a_half_sent_request_does_not_hold_up_the_flow() {
    let a = Auth::new("127.0.0.1");
    let (child, _url, state) = a.start(&["--timeout", "60s"]);
    // Two connections that never finish a request, held open until the end of the test.
    let mut half = std::net::TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    half.write_all(b"GET /callback?state=").unwrap();
    let _silent = std::net::TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    let started = Instant::now();
    let (status, page) = a.consent(&state);
    assert_eq!(status, 200, "{page}");
    let (code, stderr) = a.finish(child);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "authorize took {:?} with a half-sent request open (timeout 60s)",
        started.elapsed()
    );
    assert!(a.token_path().exists());
}

#[test]
fn a_localhost_redirect_is_served_on_both_loopbacks() {
    let a = Auth::new("localhost");
    let (child, _url, state) = a.start(&[]);
    let (status, _) = a.get(&format!("http://127.0.0.1:{}/callback?state=x", a.port));
    assert_eq!(status, 400, "127.0.0.1 answers");
    if has_ipv6_loopback() {
        let (status, _) = a.get(&format!("http://[::1]:{}/callback?state=x", a.port));
        assert_eq!(status, 400, "[::1] answers");
    } else {
        eprintln!("skipped the [::1] part: this machine has no IPv6 loopback");
    }
    let (status, page) = a.consent(&state);
    assert_eq!(status, 200, "{page}");
    let (code, stderr) = a.finish(child);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_localhost_redirect_whose_ipv6_port_is_taken_fails_naming_it() {
    if !has_ipv6_loopback() {
        eprintln!("skipped: this machine has no IPv6 loopback");
        return;
    }
    let a = Auth::new("localhost");
    // Someone else holds [::1]:PORT, where the browser may well send the code.
    let _other = std::net::TcpListener::bind(("::1", a.port)).unwrap();
    let out = a.command(&[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(out.stdout.is_empty(), "the URL was printed");
    let port = a.port;
    assert!(
        stderr.contains(&format!("[::1]:{port}")) && stderr.contains(&format!("port {port}")),
        "{stderr}"
    );
}

/// A token file of workspace "Elsewhere", with a recognizable access token.
fn other_workspace_file(a: &Auth) {
    let path = a.token_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        "access_token = \"ntn_elsewhere_secret\"\ntoken_type = \"bearer\"\nworkspace_id = \"0badc0de-0000-4000-8000-000000000000\"\nworkspace_name = \"Elsewhere\"\nobtained_at = \"2026-01-01T00:00:00Z\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn a_token_file_of_another_workspace_is_replaced_only_with_force() {
    let a = Auth::new("127.0.0.1");
    other_workspace_file(&a);
    let (child, _url, state) = a.start(&[]);
    let (status, page) = a.consent(&state);
    assert_eq!(status, 500, "{page}");
    let (code, stderr) = a.finish(child);
    assert_ne!(code, Some(0), "{stderr}");
    let path = a.token_path().display().to_string();
    for part in ["\"Elsewhere\"", "\"Acme\"", "--force", path.as_str()] {
        assert!(stderr.contains(part), "no {part} in: {stderr}");
    }
    assert!(!stderr.contains("ntn_elsewhere_secret"), "{stderr}");
    let kept = a.tokens_written();
    assert_eq!(kept.access_token.expose_secret(), "ntn_elsewhere_secret");

    let (child, _url, state) = a.start(&["--force"]);
    let (status, page) = a.consent(&state);
    assert_eq!(status, 200, "{page}");
    let (code, stderr) = a.finish(child);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("\"Elsewhere\"") && stderr.contains(&path),
        "{stderr}"
    );
    assert!(!stderr.contains("ntn_elsewhere_secret"), "{stderr}");
    let replaced = a.tokens_written();
    assert_eq!(replaced.workspace_name.as_deref(), Some("Acme"));
    assert_ne!(
        replaced.access_token.expose_secret(),
        "ntn_elsewhere_secret"
    );
}

#[test]
fn authorizing_the_same_workspace_again_replaces_the_file_without_a_word() {
    let a = Auth::new("127.0.0.1");
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let (child, _url, state) = a.start(&[]);
        let (status, page) = a.consent(&state);
        assert_eq!(status, 200, "{page}");
        let (code, stderr) = a.finish(child);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(!stderr.contains("warning"), "{stderr}");
        tokens.push(a.tokens_written().access_token.expose_secret().to_owned());
    }
    assert_ne!(
        tokens[0], tokens[1],
        "the second authorization was not written"
    );
}
