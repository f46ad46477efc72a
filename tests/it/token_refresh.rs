//! Token refresh against the emulator's token endpoint, with its faults: a transient failure never
//! de-authorizes (only an OAuth refusal does), a late 401 never rotates the pair a second time, a
//! lost answer is transient, and a handle tells its own refresh from a change made elsewhere.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::support::*;
use notion_emulator::{EmulatorOptions, Faults, RateLimit};
use notion_inbox::config::Config;
use notion_inbox::notion::oauth::{Redirect, authorize_url, new_state, parse_redirect};
use notion_inbox::notion::{
    NotionClient, NotionError, RefreshError, TokenChange, TokenFile, TokenHandle,
};
use notion_inbox_core::answer::{Answer, Reply};
use secrecy::ExposeSecret;
use serde_json::json;

/// Where the consent page sends the browser: a loopback listener that answers 200 to anything
/// (the code is read from the URL the browser landed on).
async fn redirect_listener() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    format!("http://localhost:{port}/callback")
}

/// An emulator, a config with an OAuth target "t" whose token file holds a fresh authorization
/// (a code exchanged in-process, as `authorize` does), and a client.
struct Setup {
    w: World,
    config: Config,
    client: NotionClient,
    path: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let w = World::new(EmulatorOptions {
            rate: RateLimit {
                requests_per_second: 100.0,
                burst: 100,
            },
            workspace_rate: None,
            ..EmulatorOptions::default()
        });
        let redirect = w.rt.block_on(redirect_listener());
        w.emu.register_redirect_uri(&redirect);
        let info = w.emu.info().clone();
        std::fs::write(w.path("client_secret"), &info.client_secret).unwrap();
        std::fs::set_permissions(
            w.path("client_secret"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::fs::write(
            w.path("config.toml"),
            format!(
                "[notion]\napi_base = \"{}\"\nclient_id = \"{}\"\nclient_secret_file = \"client_secret\"\nredirect_uri = \"{redirect}\"\n\n[daemon]\nstate_dir = \"state\"\n\n[[target]]\nname = \"t\"\ninbox = \"t.jsonl\"\ndatabase_id = \"{}\"\n[target.properties]\nhandle = \"title\"\n",
                info.url, info.client_id, info.database_id
            ),
        )
        .unwrap();
        let config = Config::load(&w.path("config.toml")).unwrap();
        let client = NotionClient::new(&config.notion).unwrap();
        let path = w.path("state/tokens/t.toml");
        let s = Setup {
            w,
            config,
            client,
            path,
        };
        s.authorize();
        s
    }

    /// Plays `authorize`: consent, code exchange, a new token file.
    fn authorize(&self) {
        let n = &self.config.notion;
        let state = new_state();
        let url = authorize_url(
            &n.api_base,
            n.client_id.as_deref().unwrap(),
            &n.redirect_uri,
            &state,
        );
        self.w.rt.block_on(async {
            let landed = notion_emulator::consent(&url, true).await.unwrap();
            let Ok(Redirect::Code(code)) = parse_redirect(landed.query().unwrap(), &state) else {
                panic!("no code in {landed}");
            };
            let response = self
                .client
                .exchange_code(code.expose_secret(), &n.redirect_uri)
                .await
                .unwrap();
            TokenFile::from_response(&response, None)
                .write(&self.path)
                .unwrap();
        });
    }

    fn handle(&self) -> TokenHandle {
        TokenHandle::load(&self.config.targets[0], &self.config).unwrap()
    }

    fn on_disk(&self) -> TokenFile {
        TokenFile::read(&self.path).unwrap()
    }

    /// The token in the file stops working (401); its refresh token still works.
    fn expire(&self) {
        self.w
            .emu
            .expire_token(self.on_disk().access_token.expose_secret());
    }

    fn token_requests(&self) -> u64 {
        self.w.emu.stats().requests["POST /v1/oauth/token"]
    }

    /// A page create for the target's data source.
    fn page(&self) -> notion_inbox::notion::PageBody {
        (&json!({"parent": {"type": "data_source_id", "data_source_id": self.w.emu.info().data_source_id},
            "properties": {"title": {"title": [{"text": {"content": "@x"}}]}}}))
            .into()
    }

    /// No secret the emulator handed out appears in `text`.
    fn assert_no_secret(&self, text: &str) {
        for s in self.w.emu.secrets() {
            assert!(!text.contains(&s), "a secret leaked into: {text}");
        }
    }
}

#[test]
fn a_503_from_the_token_endpoint_is_transient_and_the_next_refresh_succeeds() {
    let s = Setup::new();
    let before = s.on_disk();
    s.expire();
    let a = s.handle();
    s.w.rt.block_on(async {
        let sent_with = match s.client.create_page(&a, &s.page()).await {
            Reply {
                generation,
                answer: Answer::Error(e),
            } if e.status == 401 => generation,
            other => panic!("{other:?}"),
        };
        assert_eq!(sent_with, a.generation());
        s.w.emu.set_faults(Faults {
            token_unavailable: 1.0,
            ..Faults::default()
        });
        let e = a.refresh_from(&s.client, sent_with).await.unwrap_err();
        assert!(matches!(e, RefreshError::Transient { .. }), "{e:?}");
        assert!(!e.needs_authorization(), "{e}");
        assert!(e.to_string().contains("503"), "{e}");
        s.assert_no_secret(&format!("{e} {e:?}"));
        // Nothing rotated: same generation, same file, the refresh token still good.
        assert_eq!(a.generation(), sent_with);
        assert_eq!(
            s.on_disk().refresh_token.unwrap().expose_secret(),
            before.refresh_token.as_ref().unwrap().expose_secret()
        );
        s.w.emu.set_faults(Faults::default());
        a.refresh_from(&s.client, sent_with)
            .await
            .expect("the second refresh works");
        assert_eq!(a.generation(), sent_with + 1);
        assert!(matches!(
            s.client.create_page(&a, &s.page()).await,
            Reply {
                answer: Answer::Ok(_),
                ..
            }
        ));
    });
    assert_eq!(s.w.emu.stats().faults["token_unavailable"], 1);
    // The code exchange, the 503, the refresh.
    assert_eq!(s.token_requests(), 3);
}

#[test]
fn only_a_refusal_needs_authorization() {
    let s = Setup::new();
    let a = s.handle();
    s.w.rt.block_on(async {
        // Someone else spent the refresh token (Notion rotates: the old one is void).
        let rt = s.on_disk().refresh_token.unwrap();
        s.client.refresh_token(&rt).await.unwrap();
        let e = a.refresh_from(&s.client, a.generation()).await.unwrap_err();
        assert!(matches!(e, RefreshError::Refused { .. }), "{e:?}");
        assert!(e.needs_authorization());
        assert!(
            e.to_string().contains("invalid_grant")
                && e.to_string().contains("notion-inbox authorize"),
            "{e}"
        );
        s.assert_no_secret(&format!("{e} {e:?}"));

        // No refresh token: a person must act, and the message says what to do.
        let mut file = s.on_disk();
        file.refresh_token = None;
        file.write(&s.path).unwrap();
        let e = s.handle().refresh_from(&s.client, 0).await.unwrap_err();
        assert!(
            e.needs_authorization() && e.to_string().contains("no refresh token"),
            "{e}"
        );

        // A fixed token cannot be refreshed.
        let fixed = TokenHandle::fixed(s.w.emu.info().token.clone().into());
        let e = fixed.refresh_from(&s.client, 0).await.unwrap_err();
        assert!(
            e.needs_authorization() && e.to_string().contains("fixed token"),
            "{e}"
        );

        // A token file others may read is an I/O problem with a fix, not a lost authorization.
        let h = s.handle();
        std::fs::set_permissions(&s.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = h.refresh_from(&s.client, 0).await.unwrap_err();
        assert!(
            matches!(e, RefreshError::Io { .. }) && !e.needs_authorization(),
            "{e:?}"
        );
        assert!(
            e.to_string().contains(&s.path.display().to_string())
                && e.to_string().contains("chmod 600"),
            "{e}"
        );
    });
}

#[test]
fn a_late_401_does_not_rotate_the_pair_again() {
    let s = Setup::new();
    s.expire();
    let a = s.handle();
    // Another process's handle, loaded before the refresh.
    let other = s.handle();
    s.w.rt.block_on(async {
        // Caller A sends with generation g; its 401 is late.
        let g = match s.client.create_page(&a, &s.page()).await {
            Reply {
                generation,
                answer: Answer::Error(e),
            } if e.status == 401 => generation,
            outcome => panic!("{outcome:?}"),
        };
        // Caller B, on the same handle, meets a 401 too and refreshes first.
        let (_, b_sent_with) = a.sending();
        a.clone()
            .refresh_from(&s.client, b_sent_with)
            .await
            .unwrap();
        assert_eq!(a.generation(), g + 1);
        let refreshed = s.on_disk();
        // Now A's 401 arrives: no second rotation, A retries with the newer token.
        a.refresh_from(&s.client, g).await.unwrap();
        assert_eq!(a.generation(), g + 1);
        assert!(matches!(
            s.client.create_page(&a, &s.page()).await,
            Reply {
                answer: Answer::Ok(_),
                ..
            }
        ));
        // The other process's handle still holds the old token: its refresh finds the rotated
        // file under the lock and adopts it instead of rotating again.
        let (old, other_sent_with) = other.sending();
        assert_ne!(old.expose_secret(), refreshed.access_token.expose_secret());
        other
            .refresh_from(&s.client, other_sent_with)
            .await
            .unwrap();
        assert_eq!(
            other.secret().expose_secret(),
            refreshed.access_token.expose_secret()
        );
        assert_eq!(
            s.on_disk().refresh_token.unwrap().expose_secret(),
            refreshed.refresh_token.as_ref().unwrap().expose_secret()
        );
    });
    // The code exchange and exactly one refresh.
    assert_eq!(s.token_requests(), 2);
}

#[test]
fn a_lost_answer_is_transient_and_then_notion_refuses_the_spent_refresh_token() {
    let s = Setup::new();
    s.expire();
    let a = s.handle();
    let before = s.on_disk();
    s.w.rt.block_on(async {
        s.w.emu.set_faults(Faults {
            token_drop_after_refresh: 1.0,
            ..Faults::default()
        });
        let g = a.generation();
        let e = a.refresh_from(&s.client, g).await.unwrap_err();
        assert!(matches!(e, RefreshError::Transient { .. }), "{e:?}");
        assert!(!e.needs_authorization(), "{e}");
        s.assert_no_secret(&format!("{e} {e:?}"));
        assert_eq!(a.generation(), g, "nothing was adopted");
        assert_eq!(
            s.on_disk().access_token.expose_secret(),
            before.access_token.expose_secret(),
            "nothing was written"
        );
        // What happens next: Notion carried the refresh out, so the refresh token in the file is
        // spent (notion-api.md §1: refresh tokens rotate, a second use gets invalid_grant; the
        // emulator does the same), and the new pair was never delivered. The retry is therefore
        // refused, and only then does the target need a person: `authorize` again. Nothing on
        // the client side can recover a lost rotation; what it must not do is give up on the
        // first, transient, failure (a 503 or a reset before Notion processed the grant leaves the
        // refresh token good, as the 503 test shows).
        s.w.emu.set_faults(Faults::default());
        let e = a.refresh_from(&s.client, g).await.unwrap_err();
        assert!(e.needs_authorization(), "{e:?}");
        assert!(e.to_string().contains("invalid_grant"), "{e}");
    });
    assert_eq!(s.w.emu.stats().faults["token_drop_after_refresh"], 1);
}

#[test]
fn a_handle_tells_its_own_refresh_from_one_elsewhere_and_from_a_new_authorization() {
    let s = Setup::new();
    s.expire();
    let a = s.handle();
    let other = s.handle();
    s.w.rt.block_on(async {
        a.refresh_from(&s.client, a.generation()).await.unwrap();
    });
    // The handle's own write is no change to it; another handle sees a refresh made elsewhere.
    assert_eq!(a.reload().unwrap(), TokenChange::Unchanged);
    assert!(!a.reload_if_changed().unwrap());
    assert_eq!(other.reload().unwrap(), TokenChange::Refreshed);
    assert_eq!(other.reload().unwrap(), TokenChange::Unchanged);
    // `authorize` again: a new code exchange, a new `obtained_at`.
    std::thread::sleep(std::time::Duration::from_millis(5));
    s.authorize();
    assert_eq!(a.reload().unwrap(), TokenChange::Reauthorized);
    assert_eq!(other.reload().unwrap(), TokenChange::Reauthorized);
    assert_eq!(
        a.secret().expose_secret(),
        s.on_disk().access_token.expose_secret()
    );
}

#[test]
fn a_client_secret_file_that_cannot_be_used_is_a_local_problem_and_read_again_at_each_refresh() {
    let s = Setup::new();
    s.expire();
    let a = s.handle();
    let secret = s.w.path("client_secret");
    let chmod = |mode| {
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    s.w.rt.block_on(async {
        chmod(0o644);
        let e = a.refresh_from(&s.client, a.generation()).await.unwrap_err();
        assert!(matches!(e, RefreshError::ClientSecret { .. }), "{e:?}");
        assert!(!e.needs_authorization(), "{e}");
        assert_eq!(e.local_file(), Some(secret.as_path()));
        let chain = NotionError::from(e).to_string();
        assert!(
            chain.contains("mode 0644")
                && chain.contains(&format!("chmod 600 {}", secret.display())),
            "{chain}"
        );
        s.assert_no_secret(&chain);
        chmod(0o600);
        let value = std::fs::read(&secret).unwrap();
        std::fs::write(&secret, "").unwrap();
        let e = a.refresh_from(&s.client, a.generation()).await.unwrap_err();
        assert!(matches!(e, RefreshError::ClientSecret { .. }), "{e:?}");
        std::fs::write(&secret, value).unwrap();
        // The same handle and client: the fixed file is read at the next attempt.
        let before = a.generation();
        a.refresh_from(&s.client, before).await.unwrap();
        assert_eq!(a.generation(), before + 1);
        assert!(matches!(
            s.client.create_page(&a, &s.page()).await,
            Reply {
                answer: Answer::Ok(_),
                ..
            }
        ));
    });
    // The code exchange and the one refresh that could load the secret.
    assert_eq!(s.token_requests(), 2);
}
