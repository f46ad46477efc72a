//! The Notion client, OAuth and the `authorize`, `databases` and `check` commands, against the
//! emulator: the authorize flow driven as a browser would, token refresh with rotation, outcome
//! classification, Retry-After, destination resolution and property conversion.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use notion_emulator::{EmulatorOptions, Faults, RateLimit};
use notion_inbox::config::{Config, NotionVersion};
use notion_inbox::notion::{
    MAX_RETRY_AFTER, NotionClient, PageBody, ResolveError, TokenFile, TokenHandle,
};
use notion_inbox::record::Mapper;
use notion_inbox_core::answer::{Answer, Meaning, Reply, meaning};
use secrecy::ExposeSecret;
use serde_json::json;

/// What the core will read in a create's answer: `None` for a row, else the error's meaning
/// (`Unknown` for an answer that was lost).
fn meant(reply: &Reply<String>) -> Option<Meaning> {
    match &reply.answer {
        Answer::Ok(_) => None,
        Answer::Error(e) => Some(meaning(e)),
        Answer::Lost(_) => Some(Meaning::Unknown),
        other => panic!("not an answer of Notion's: {other:?}"),
    }
}

/// A world whose config has an OAuth target "t" (token file) and a registered loopback redirect.
fn oauth_world(version: &str) -> (World, String) {
    let w = World::new(EmulatorOptions {
        rate: RateLimit {
            requests_per_second: 50.0,
            burst: 50,
        },
        workspace_rate: None,
        ..EmulatorOptions::default()
    });
    let redirect = format!("http://localhost:{}/callback", free_port());
    w.emu.register_redirect_uri(&redirect);
    let info = w.emu.info().clone();
    std::fs::create_dir_all(w.path("spool")).unwrap();
    std::fs::write(w.path("client_secret"), &info.client_secret).unwrap();
    std::fs::set_permissions(
        w.path("client_secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(
        w.path("config.toml"),
        format!(
            "[notion]\napi_base = \"{}\"\nversion = \"{version}\"\nclient_id = \"{}\"\nclient_secret_file = \"client_secret\"\nredirect_uri = \"{redirect}\"\nrequests_per_second = 20\nburst = 20\n\n[daemon]\nstate_dir = \"state\"\n\n[[target]]\nname = \"t\"\ninbox = \"spool/t.jsonl\"\ndatabase_id = \"{}\"\ndedupe_property = \"Inbox ID\"\n[target.properties]\nhandle = \"title\"\ntweet = \"tweet\"\n",
            info.url, info.client_id, info.database_id
        ),
    )
    .unwrap();
    (w, redirect)
}

fn bin(w: &World) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_notion-inbox"));
    c.arg("--config")
        .arg(w.path("config.toml"))
        .env("NO_COLOR", "1");
    c
}

/// Starts `authorize`, returns the child and the URL it printed.
fn start_authorize(w: &World, extra: &[&str]) -> (std::process::Child, url::Url) {
    let mut child = bin(w)
        .args(["authorize", "--target", "t", "--no-browser"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    (
        child,
        url::Url::parse(line.trim()).expect("the first stdout line is the URL"),
    )
}

fn finish(child: std::process::Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn authorize_allow_writes_a_private_token_file_and_the_token_works() {
    let (w, redirect) = oauth_world("2025-09-03");
    let (child, url) = start_authorize(&w, &[]);
    let q: std::collections::BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["owner"], "user");
    assert_eq!(q["redirect_uri"], redirect);
    assert_eq!(q["state"].len(), 32);
    let landed = w.rt.block_on(notion_emulator::consent(&url, true)).unwrap();
    assert!(landed.as_str().starts_with(&redirect), "{landed}");
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("workspace Acme") && stderr.contains("databases --target t"),
        "{stderr}"
    );
    let path = w.path("state/tokens/t.toml");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let file = TokenFile::read(&path).unwrap();
    assert!(file.access_token.expose_secret().starts_with("ntn_"));
    assert!(file.refresh_token.is_some());
    assert_eq!(file.workspace_name.as_deref(), Some("Acme"));
    assert_eq!(file.owner.as_deref(), Some("Ada Lovelace"));
    assert!(
        !stderr.contains(file.access_token.expose_secret()),
        "the token was printed"
    );
    // The token can write: `check` passes.
    let out = bin(&w).arg("check").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("ready"), "{text}");
}

#[test]
fn authorize_cancel_and_timeout_fail_clearly() {
    let (w, _) = oauth_world("2025-09-03");
    // Cancel on the consent page.
    let (child, url) = start_authorize(&w, &[]);
    w.rt.block_on(notion_emulator::consent(&url, false))
        .unwrap();
    let (code, stderr) = finish(child);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("access was denied"), "{stderr}");
    // Nobody comes back. (A redirect with another state is refused and the flow goes on waiting:
    // tests/it/authorize.rs.)
    let (child, _url) = start_authorize(&w, &["--timeout", "1s"]);
    let (code, stderr) = finish(child);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("no redirect arrived within 1s"), "{stderr}");
    assert!(!w.path("state/tokens/t.toml").exists());
}

#[test]
fn authorize_paste_mode_reads_the_redirected_url() {
    let (w, _) = oauth_world("2025-09-03");
    let (mut child, url) = start_authorize(&w, &["--paste"]);
    // Play the browser without following the redirect; the user copies the address bar.
    let q: std::collections::BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    let location = w.rt.block_on(consent_location(
        &w.emu,
        &q["redirect_uri"],
        &q["state"],
        true,
    ));
    writeln!(child.stdin.as_mut().unwrap(), "{location}").unwrap();
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(TokenFile::read(&w.path("state/tokens/t.toml")).is_ok());
}

/// Authorizes target "t" in-process and returns the loaded config.
fn authorized(w: &World) -> Config {
    let (child, url) = start_authorize(w, &[]);
    w.rt.block_on(notion_emulator::consent(&url, true)).unwrap();
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(0), "{stderr}");
    Config::load(&w.path("config.toml")).unwrap()
}

#[test]
fn an_expired_token_is_refreshed_once_with_rotation_even_when_many_ask_at_once() {
    let (w, _) = oauth_world("2025-09-03");
    let config = authorized(&w);
    let target = &config.targets[0];
    let path = w.path("state/tokens/t.toml");
    let before = TokenFile::read(&path).unwrap();
    w.emu.expire_token(before.access_token.expose_secret());
    w.rt.block_on(async {
        let client = NotionClient::new(&config.notion).unwrap();
        // Two handles on one file stand for two processes; each is asked by several tasks.
        let a = TokenHandle::load(target, &config).unwrap();
        let b = TokenHandle::load(target, &config).unwrap();
        let err = client.users_me(&a).await.unwrap_err();
        assert!(err.is_unauthorized(), "{err}");
        // Every task saw the 401 with the generation its handle held then, as the daemon's
        // requests do; a task scheduled after another refreshed must not rotate the pair again.
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (h, c) = (
                if i % 2 == 0 { a.clone() } else { b.clone() },
                client.clone(),
            );
            let sent_with = h.generation();
            tasks.push(tokio::spawn(
                async move { h.refresh_from(&c, sent_with).await },
            ));
        }
        for t in tasks {
            t.await.unwrap().expect("every refresh call succeeds");
        }
        let after = TokenFile::read(&path).unwrap();
        assert_ne!(
            after.access_token.expose_secret(),
            before.access_token.expose_secret()
        );
        assert!(after.refreshed_at.is_some());
        assert_eq!(
            a.secret().expose_secret(),
            after.access_token.expose_secret()
        );
        assert_eq!(
            b.secret().expose_secret(),
            after.access_token.expose_secret()
        );
        client
            .users_me(&a)
            .await
            .expect("the refreshed token works");
        // Exactly one refresh reached Notion: the old refresh token is spent, the new one works.
        let stale = client
            .refresh_token(before.refresh_token.as_ref().unwrap())
            .await
            .unwrap_err();
        assert!(stale.is_invalid_grant(), "{stale}");
    });
    let stats = w.emu.stats();
    // One code exchange (authorize) + one refresh + the stale attempt above.
    assert_eq!(stats.requests["POST /v1/oauth/token"], 3, "{stats:?}");
}

#[test]
fn create_outcomes_are_classified() {
    let w = World::new(EmulatorOptions {
        rate: RateLimit {
            requests_per_second: 100.0,
            burst: 100,
        },
        workspace_rate: None,
        ..EmulatorOptions::default()
    });
    let info = w.emu.info().clone();
    let config = Config::from_toml(
        &w.path("c.toml"),
        &format!(
            "[notion]\napi_base = \"{}\"\nrequests_per_second = 100\nburst = 100\n",
            info.url
        ),
    )
    .unwrap();
    w.rt.block_on(async {
        let client = NotionClient::new(&config.notion).unwrap();
        let token = TokenHandle::fixed(info.token.clone().into());
        let parent = json!({"type": "data_source_id", "data_source_id": info.data_source_id});
        let good: PageBody = (&json!({"parent": parent, "properties": {"title": {"title": [{"text": {"content": "@x"}}]}}})).into();
        assert_eq!(meant(&client.create_page(&token, &good).await), None);
        let bad: PageBody = (&json!({"parent": parent, "properties": {"Nope": {"rich_text": []}}})).into();
        match client.create_page(&token, &bad).await.answer {
            Answer::Error(api) => {
                assert_eq!(meaning(&api), Meaning::Invalid);
                assert_eq!(api.code.as_str(), "validation_error");
                assert!(api.message.contains("Nope is not a property that exists"), "{}", api.message);
                assert!(api.request_id.is_some());
            }
            other => panic!("{other:?}"),
        }
        for (faults, what) in [
            (Faults { timeout_after_write: 1.0, ..Faults::default() }, "504 after write"),
            (Faults { drop_after_write: 1.0, ..Faults::default() }, "dropped connection"),
            (Faults { error_before_write: 1.0, seed: Some(3), ..Faults::default() }, "5xx before write"),
        ] {
            w.emu.set_faults(faults);
            let outcome = client.create_page(&token, &good).await;
            assert_eq!(meant(&outcome), Some(Meaning::Unknown), "{what}: {outcome:?}");
        }
        w.emu.set_faults(Faults { storm_529: 1.0, ..Faults::default() });
        let overloaded = meant(&client.create_page(&token, &good).await);
        assert!(matches!(overloaded, Some(Meaning::Overloaded(_))), "{overloaded:?}");
        w.emu.set_faults(Faults::default());
        w.emu.unshare(&info.database_id);
        assert_eq!(meant(&client.create_page(&token, &good).await), Some(Meaning::NotFound));
        w.emu.share(&info.database_id);
        w.emu.revoke_token(&info.token);
        assert_eq!(meant(&client.create_page(&token, &good).await), Some(Meaning::Unauthorized));
    });
    // 1 good + 2 stored-then-failed; the error before the write stored nothing.
    assert_eq!(w.emu.pages().len(), 3);
}

#[test]
fn retry_after_is_honoured_before_the_next_request() {
    // Notion allows 1 request per second; the client is configured far above that.
    let w = World::new(EmulatorOptions {
        rate: RateLimit {
            requests_per_second: 1.0,
            burst: 1,
        },
        workspace_rate: None,
        ..EmulatorOptions::default()
    });
    let info = w.emu.info().clone();
    let config = Config::from_toml(
        &w.path("c.toml"),
        &format!(
            "[notion]\napi_base = \"{}\"\nrequests_per_second = 50\nburst = 50\n",
            info.url
        ),
    )
    .unwrap();
    w.rt.block_on(async {
        let client = NotionClient::new(&config.notion).unwrap();
        let token = TokenHandle::fixed(info.token.clone().into());
        client.users_me(&token).await.unwrap();
        let start = Instant::now();
        // One attempt (`users_me` itself would wait out the 429 and retry).
        let err = client
            .request(&token, reqwest::Method::GET, "/v1/users/me", None)
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(429), "{err}");
        assert_eq!(err.api().unwrap().retry_after, Some(Duration::from_secs(1)));
        // The next request waits out Retry-After instead of provoking another 429.
        client.users_me(&token).await.expect("sent after the pause");
        assert!(
            start.elapsed() >= Duration::from_millis(900),
            "{:?}",
            start.elapsed()
        );
    });
    assert_eq!(w.emu.stats().rate_limited_total(), 1);
}

#[test]
fn destinations_resolve_per_version_and_several_data_sources_are_an_error() {
    // Each config below gets a client (and limiter) of its own: give them room.
    let w = World::new(EmulatorOptions {
        rate: RateLimit {
            requests_per_second: 100.0,
            burst: 100,
        },
        workspace_rate: None,
        ..EmulatorOptions::default()
    });
    let info = w.emu.info().clone();
    let cfg = |version: &str, dest: &str| {
        Config::from_toml(
            &w.path("c.toml"),
            &format!(
                "[notion]\napi_base = \"{}\"\nversion = \"{version}\"\n[[target]]\nname = \"t\"\ninbox = \"i.jsonl\"\n{dest}\ntoken = \"x\"\n[target.properties]\nhandle = \"title\"\ntweet = \"tweet\"\n",
                info.url
            ),
        )
        .unwrap()
    };
    w.rt.block_on(async {
        let token = TokenHandle::fixed(info.token.clone().into());
        for version in ["2025-09-03", "2026-03-11"] {
            let c = cfg(version, &format!("database_id = \"{}\"", info.database_id));
            let r = NotionClient::new(&c.notion)
                .unwrap()
                .resolve(&c.targets[0], &token)
                .await
                .unwrap();
            assert_eq!(
                r.data_source_id.as_deref(),
                Some(info.data_source_id.as_str())
            );
            assert_eq!(r.title, "Twitter");
            assert_eq!(r.property("tweet").unwrap().kind.as_str(), "rich_text");
            assert_ne!(
                r.property("tweet").unwrap().id,
                "tweet",
                "property ids are not names"
            );
        }
        let c = cfg(
            "2022-06-28",
            &format!("database_id = \"{}\"", info.database_id),
        );
        let r = NotionClient::new(&c.notion)
            .unwrap()
            .resolve(&c.targets[0], &token)
            .await
            .unwrap();
        assert_eq!(r.version, NotionVersion::V2022_06_28);
        assert_eq!(r.data_source_id, None);
        assert_eq!(
            r.parent(),
            json!({"type": "database_id", "database_id": info.database_id})
        );
        assert_eq!(r.properties.len(), 11);
        let c = cfg(
            "2025-09-03",
            &format!("database_id = \"{}\"", info.multi_source_database_id),
        );
        match NotionClient::new(&c.notion)
            .unwrap()
            .resolve(&c.targets[0], &token)
            .await
        {
            Err(e @ ResolveError::Ambiguous { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("\"Tasks\"")
                        && text.contains("\"Bugs\"")
                        && text.contains("data_source_id"),
                    "{text}"
                );
            }
            other => panic!("{other:?}"),
        }
        // data_source_id under 2022-06-28 is refused when the config is read.
        let e = Config::from_toml(
            &w.path("c.toml"),
            &format!(
                "[notion]\napi_base = \"{}\"\nversion = \"2022-06-28\"\n[[target]]\nname = \"t\"\ninbox = \"i.jsonl\"\ndata_source_id = \"{}\"\ntoken = \"x\"\n[target.properties]\nhandle = \"title\"\n",
                info.url, info.data_source_id
            ),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("2025-09-03") && e.contains("c.toml"), "{e}");
    });
}

#[test]
fn every_property_type_converts_and_notion_accepts_it() {
    let w = World::default_world();
    let info = w.emu.info().clone();
    let c = Config::from_toml(
        &w.path("c.toml"),
        &format!(
            "[notion]\napi_base = \"{}\"\n[[target]]\nname = \"t\"\ninbox = \"i.jsonl\"\ndatabase_id = \"{}\"\ntoken = \"x\"\ndedupe_property = \"Inbox ID\"\n[target.properties]\nhandle = \"title\"\ntweet = \"tweet\"\nlink = \"Link\"\nwhen = \"When\"\nscore = \"Score\"\nkind = \"Kind\"\ntags = \"Tags\"\ndone = \"Done\"\nemail = \"Email\"\nphone = \"Phone\"\n",
            info.url, info.database_id
        ),
    )
    .unwrap();
    let long: String = "ab😀".repeat(1500); // 6000 UTF-16 units: 3 items of 2000
    w.rt.block_on(async {
        let client = NotionClient::new(&c.notion).unwrap();
        let token = TokenHandle::fixed(info.token.clone().into());
        let resolved = client.resolve(&c.targets[0], &token).await.unwrap();
        let mapper = Mapper::new(&c.targets[0], &resolved).unwrap();
        let record = json!({"handle": "@all", "tweet": long, "link": "https://example.com/x",
            "when": "2026-01-31T12:00:00Z", "score": 4.5, "kind": "quote", "tags": ["rust", "new"],
            "done": true, "email": "a@example.com", "phone": "+1 555 0100"});
        let body = mapper
            .page_body(record.as_object().unwrap(), "key-1")
            .unwrap();
        assert_eq!(
            body["properties"][resolved.property("tweet").unwrap().id.as_str()]["rich_text"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        let outcome = client.create_page(&token, &PageBody::from(&body)).await;
        assert_eq!(meant(&outcome), None, "{outcome:?}");
    });
    let page = &w.emu.pages()[0];
    let p = &page.properties;
    assert_eq!(prop_text(page, "tweet"), long);
    assert_eq!(prop_text(page, "Inbox ID"), "key-1");
    assert_eq!(p["Link"]["url"], "https://example.com/x");
    assert_eq!(p["When"]["date"]["start"], "2026-01-31T12:00:00Z");
    assert_eq!(p["Score"]["number"], 4.5);
    assert_eq!(p["Kind"]["select"]["name"], "quote");
    assert_eq!(p["Tags"]["multi_select"][1]["name"], "new");
    assert_eq!(p["Done"]["checkbox"], true);
    assert_eq!(p["Email"]["email"], "a@example.com");
    assert_eq!(p["Phone"]["phone_number"], "+1 555 0100");
}

#[test]
fn databases_and_check_describe_good_and_broken_targets() {
    let (w, _) = oauth_world("2025-09-03");
    authorized(&w);
    let out = bin(&w)
        .args(["databases", "--target", "t"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("database \"Twitter\"")
            && text.contains("fits target t's mapping (configured for this target)"),
        "{text}"
    );
    assert!(
        !text.contains("Hidden"),
        "the token sees only what was picked: {text}"
    );
    let out = bin(&w)
        .args(["databases", "--target", "t", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["data_sources"][0]["fits"], true);

    // Break the mapping: a property that does not exist.
    let cfg = std::fs::read_to_string(w.path("config.toml")).unwrap();
    std::fs::write(
        w.path("config.toml"),
        cfg.replace("tweet = \"tweet\"", "tweet = \"Tweet text\""),
    )
    .unwrap();
    let out = bin(&w).arg("check").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("PROBLEM [t]")
            && text.contains("\"Tweet text\"")
            && text.contains("fix [target.properties]"),
        "{text}"
    );
    // Lose the token.
    let token = TokenFile::read(&w.path("state/tokens/t.toml")).unwrap();
    std::fs::remove_file(w.path("state/tokens/t.toml")).unwrap();
    let out = bin(&w).arg("check").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("authorize --target t"), "{text}");
    assert!(!text.contains(token.access_token.expose_secret()));
}

#[test]
fn an_absurd_retry_after_is_capped_and_does_not_panic() {
    let w = World::new(EmulatorOptions {
        rate: RateLimit {
            requests_per_second: 100.0,
            burst: 100,
        },
        workspace_rate: None,
        ..EmulatorOptions::default()
    });
    let info = w.emu.info().clone();
    let config = Config::from_toml(
        &w.path("c.toml"),
        &format!(
            "[notion]\napi_base = \"{}\"\nrequests_per_second = 100\nburst = 100\n",
            info.url
        ),
    )
    .unwrap();
    w.rt.block_on(async {
        let token = TokenHandle::fixed(info.token.clone().into());
        let parent = json!({"type": "data_source_id", "data_source_id": info.data_source_id});
        let good: PageBody = (&json!({"parent": parent, "properties": {"title": {"title": [{"text": {"content": "@x"}}]}}})).into();
        for (storm, value) in [
            ((1.0, 0.0), "10000000000000000000"),
            ((0.0, 1.0), "Fri, 31 Dec 9999 23:59:59 GMT"),
        ] {
            w.emu.set_faults(Faults {
                storm_429: storm.0,
                storm_529: storm.1,
                storm_retry_after: Some(value.into()),
                ..Faults::default()
            });
            // A client per case: each is paused for the cap afterwards.
            let client = NotionClient::new(&config.notion).unwrap();
            let err = client
                .request(&token, reqwest::Method::GET, "/v1/users/me", None)
                .await
                .unwrap_err();
            assert_eq!(err.api().unwrap().retry_after, Some(MAX_RETRY_AFTER), "{value}");
            let client = NotionClient::new(&config.notion).unwrap();
            let reply = client.create_page(&token, &good).await;
            assert_eq!(
                meant(&reply).and_then(Meaning::wait),
                Some(MAX_RETRY_AFTER),
                "{value}: {reply:?}"
            );
        }
    });
    assert_eq!(w.emu.pages().len(), 0);
}

/// A world whose server bucket (1/s, burst 1) is smaller than the client's (3/s, burst 3).
fn small_server_world() -> (World, Config) {
    let w = World::new(EmulatorOptions {
        rate: RateLimit {
            requests_per_second: 1.0,
            burst: 1,
        },
        workspace_rate: None,
        ..EmulatorOptions::default()
    });
    let info = w.emu.info().clone();
    let config = Config::from_toml(
        &w.path("c.toml"),
        &format!(
            "[notion]\napi_base = \"{}\"\nrequests_per_second = 3\nburst = 3\n[[target]]\nname = \"t\"\ninbox = \"i.jsonl\"\ndatabase_id = \"{}\"\ntoken = \"x\"\n[target.properties]\nhandle = \"title\"\ntweet = \"tweet\"\n",
            info.url, info.database_id
        ),
    )
    .unwrap();
    (w, config)
}

#[test]
fn resolve_waits_out_429s_when_the_server_burst_is_smaller_than_configured() {
    let (w, config) = small_server_world();
    let info = w.emu.info().clone();
    w.rt.block_on(async {
        let client = NotionClient::new(&config.notion).unwrap();
        let token = TokenHandle::fixed(info.token.clone().into());
        let r = client
            .resolve(&config.targets[0], &token)
            .await
            .expect("resolve retries each rate-limited request");
        assert_eq!(
            r.data_source_id.as_deref(),
            Some(info.data_source_id.as_str())
        );
        // The 429 taught the client that Notion's limit is lower than configured.
        let rate = client.effective_rate(&token);
        assert!((0.1..3.0).contains(&rate), "{rate}");
        assert_eq!(
            client.effective_rates().into_values().collect::<Vec<_>>(),
            vec![rate]
        );
        assert_eq!(client.configured_rate(), 3.0);
    });
    let stats = w.emu.stats();
    assert!(stats.rate_limited_total() >= 1, "{stats:?}");
    // Each request was retried alone: the database was fetched once.
    assert_eq!(stats.requests["GET /v1/databases/{id}"], 1, "{stats:?}");
}

#[test]
fn every_read_waits_out_429s_and_retries_that_request() {
    let (w, config) = small_server_world();
    let info = w.emu.info().clone();
    w.rt.block_on(async {
        let client = NotionClient::new(&config.notion).unwrap();
        let token = TokenHandle::fixed(info.token.clone().into());
        let r = client.resolve(&config.targets[0], &token).await.unwrap();
        for _ in 0..2 {
            client.users_me(&token).await.expect("users_me retries");
            assert!(
                !client
                    .search_all(&token, "data_source")
                    .await
                    .unwrap()
                    .is_empty()
            );
            let found = client.find_by_key(&token, &r, "Inbox ID", "nope").await;
            assert_eq!(found.expect("find_by_key retries"), None);
        }
        // A 529 is retried too.
        w.emu.set_faults(Faults {
            storm_529: 1.0,
            ..Faults::default()
        });
        let me = tokio::spawn({
            let (client, token) = (client.clone(), token.clone());
            async move { client.users_me(&token).await }
        });
        let start = Instant::now();
        while w.emu.stats().faults.get("storm_529").copied().unwrap_or(0) < 2 {
            assert!(start.elapsed() < DEADLINE, "no 529 was sent");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!me.is_finished(), "a 529 is waited out, not returned");
        w.emu.set_faults(Faults::default());
        me.await.unwrap().expect("answered once the storm ends");
    });
    let stats = w.emu.stats();
    assert!(stats.rate_limited_total() >= 3, "{stats:?}");
    assert!(stats.faults["storm_529"] >= 2, "{stats:?}");
}
