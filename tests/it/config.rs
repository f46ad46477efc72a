//! The configuration contract: good files resolve as documented, bad files fail with an error that
//! names the place and the fix.

use std::path::Path;

use notion_inbox::config::{Config, Destination, NotionVersion, TokenSource, normalize_notion_id};

const DB: &str = "0123456789abcdef0123456789abcdef";

fn minimal(extra_target: &str) -> String {
    format!(
        "[daemon]\nstate_dir = \"/var/lib/ni\"\n\n[[target]]\nname = \"tweets\"\ninbox = \"in/tweets.jsonl\"\ndatabase_id = \"{DB}\"\n{extra_target}[target.properties]\nhandle = \"title\"\ntweet = \"tweet\"\n"
    )
}

/// Parses `text` as `/etc/ni/config.toml` and checks that the error message contains every piece.
#[track_caller]
fn check_err(text: &str, expected: &[&str]) {
    let err = Config::from_toml(Path::new("/etc/ni/config.toml"), text)
        .expect_err("the config should be refused")
        .to_string();
    for piece in expected {
        assert!(err.contains(piece), "error {err:?} lacks {piece:?}");
    }
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = Config::from_toml(Path::new("/etc/ni/config.toml"), &minimal("")).unwrap();
    assert_eq!(c.notion.api_base.as_str(), "https://api.notion.com/");
    assert_eq!(c.notion.version, NotionVersion::V2025_09_03);
    assert_eq!(c.notion.requests_per_second, 3.0);
    assert_eq!(c.notion.burst, 3);
    assert_eq!(
        c.notion.redirect_uri.as_str(),
        "http://localhost:8765/callback"
    );
    let t = &c.targets[0];
    assert_eq!(t.inbox, Path::new("/etc/ni/in/tweets.jsonl"));
    assert_eq!(
        t.destination,
        Destination::Database("01234567-89ab-cdef-0123-456789abcdef".into())
    );
    match &t.token {
        TokenSource::File(p) => assert_eq!(p, Path::new("/var/lib/ni/tokens/tweets.toml")),
        TokenSource::Fixed(_) => panic!("expected a token file"),
    }
    assert_eq!(t.max_in_flight, 18);
    assert_eq!(
        t.properties,
        vec![
            ("handle".into(), "title".into()),
            ("tweet".into(), "tweet".into())
        ]
    );
    assert_eq!(c.daemon.max_line_bytes, 1 << 20);
    assert_eq!(c.daemon.reconcile_interval.as_secs(), 5);
}

#[test]
fn example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let c = Config::from_toml(&path, &text).unwrap();
    assert_eq!(c.targets.len(), 1);
    assert_eq!(
        c.notion.client_id.as_deref(),
        Some("00000000-0000-0000-0000-000000000000")
    );
}

#[test]
fn full_config_resolves_every_key() {
    let text = r#"
[notion]
api_base = "http://127.0.0.1:9999"
version = "2022-06-28"
client_id = "cid"
client_secret_file = "secret"
redirect_uri = "http://localhost:7000/cb"
requests_per_second = 2.5
burst = 5
workspace_requests_per_second = 10

[daemon]
state_dir = "state"
max_line_bytes = 4096
reconcile_interval = "250ms"
shutdown_grace = "3s"
log_level = "notion_inbox=debug"
metrics_listen = "127.0.0.1:9464"
dedupe_settle = "1s"

[[target]]
name = "a"
inbox = "/spool/a.jsonl"
database_id = "https://www.notion.so/acme/Twitter-0123456789abcdef0123456789abcdef?v=1"
token_file = "tok/a.toml"
max_in_flight = 7
dedupe_property = "Inbox ID"
[target.properties]
handle = "title"
"#;
    let c = Config::from_toml(Path::new("/cfg/c.toml"), text).unwrap();
    assert_eq!(c.notion.api_base.as_str(), "http://127.0.0.1:9999/");
    assert_eq!(c.notion.version, NotionVersion::V2022_06_28);
    assert_eq!(c.notion.burst, 5);
    assert_eq!(c.notion.workspace_requests_per_second, Some(10.0));
    assert_eq!(c.daemon.state_dir, Path::new("/cfg/state"));
    assert_eq!(c.daemon.reconcile_interval.as_millis(), 250);
    assert_eq!(c.daemon.metrics_listen.unwrap().port(), 9464);
    let t = &c.targets[0];
    assert_eq!(t.max_in_flight, 7);
    assert_eq!(t.dedupe_property.as_deref(), Some("Inbox ID"));
    match &t.token {
        TokenSource::File(p) => assert_eq!(p, Path::new("/cfg/tok/a.toml")),
        TokenSource::Fixed(_) => panic!("expected a token file"),
    }
    assert_eq!(
        t.destination,
        Destination::Database("01234567-89ab-cdef-0123-456789abcdef".into())
    );
}

#[test]
fn bad_files_name_the_place_and_the_fix() {
    let cases: &[(&str, &[&str])] = &[
        // Syntax and shape errors come from the TOML parser, with line and column.
        ("[notion\n", &["/etc/ni/config.toml:1:"]),
        (
            "[notion]\nverison = \"2025-09-03\"\n",
            &["config.toml:2:1", "unknown field `verison`"],
        ),
        (
            "[[target]]\nname = \"x\"\n",
            &["config.toml:1:", "missing field `inbox`"],
        ),
        (
            "[notion]\nburst = \"three\"\n",
            &[
                "config.toml:2:9",
                "\"three\" is a string, but a whole number is expected here",
            ],
        ),
        // Values that parse but are not acceptable.
        (
            "[notion]\nversion = \"2024-01-01\"\n",
            &[
                "config.toml:2:11",
                "unsupported Notion version",
                "2025-09-03",
            ],
        ),
        (
            "[notion]\napi_base = \"http://api.example.com\"\n",
            &["config.toml:2:12", "in clear", "use https"],
        ),
        (
            "[notion]\napi_base = \"not a url\"\n",
            &["config.toml:2", "is not a URL"],
        ),
        (
            "[notion]\napi_base = \"https://api.notion.com/v1\"\n",
            &["has a path", "/v1 is added"],
        ),
        (
            "[notion]\nrequests_per_second = 0\n",
            &["config.toml:2", "above 0"],
        ),
        (
            "[notion]\nburst = 0\n",
            &["burst must be between 1 and 1000"],
        ),
        (
            "[notion]\nclient_secret = \"s\"\nclient_secret_file = \"f\"\n",
            &["config.toml:3", "keep only one"],
        ),
        (
            "[daemon]\nreconcile_interval = \"soon\"\n",
            &["config.toml:2", "not a duration", "\"5s\""],
        ),
        (
            "[daemon]\nmetrics_listen = \"nine\"\n",
            &["not an address", "127.0.0.1:9464"],
        ),
        (
            "[daemon]\nmax_line_bytes = 10\n",
            &["max_line_bytes must be between"],
        ),
        (
            "[daemon]\nlog_level = \"info,[\"\n",
            &["not a valid filter"],
        ),
    ];
    for (text, expected) in cases {
        check_err(text, expected);
    }
}

#[test]
fn metrics_on_a_public_address_need_metrics_public() {
    let at = |listen: &str, public: &str| {
        minimal("").replacen(
            "[daemon]\n",
            &format!("[daemon]\nmetrics_listen = \"{listen}\"\n{public}"),
            1,
        )
    };
    for listen in ["0.0.0.0:9464", "192.0.2.7:9464", "[::]:9464"] {
        check_err(
            &at(listen, ""),
            &[
                "config.toml:2:18",
                "not a loopback address",
                "target names, workspace counts and error texts",
                "set metrics_public = true",
                "or listen on 127.0.0.1",
            ],
        );
        check_err(
            &at(listen, "metrics_public = false\n"),
            &["metrics_public = true"],
        );
        let c = Config::from_toml(
            Path::new("/etc/ni/config.toml"),
            &at(listen, "metrics_public = true\n"),
        )
        .unwrap();
        assert_eq!(c.daemon.metrics_listen.unwrap().port(), 9464, "{listen}");
    }
    for listen in ["127.0.0.1:9464", "127.1.2.3:9464", "[::1]:9464"] {
        let c = Config::from_toml(Path::new("/etc/ni/config.toml"), &at(listen, "")).unwrap();
        assert!(
            c.daemon.metrics_listen.unwrap().ip().is_loopback(),
            "{listen}"
        );
    }
    check_err(
        &at("127.0.0.1:9464", "metrics_public = \"yes\"\n"),
        &[
            "config.toml:3",
            "\"yes\" is a string, but true or false is expected here",
        ],
    );
}

#[test]
fn bad_targets_name_the_place_and_the_fix() {
    let cases: &[(String, &[&str])] = &[
        (
            minimal("").replace(DB, "nope"),
            &[
                "config.toml:7:15",
                "is not a Notion id",
                "notion-inbox databases",
            ],
        ),
        (
            minimal("data_source_id = \"0123456789abcdef0123456789abcdef\"\n"),
            &["keep only one"],
        ),
        (
            minimal("").replace("\"tweets\"", "\"my tweets\""),
            &["config.toml:5:8", "not usable in file names"],
        ),
        (
            minimal("max_in_flight = 0\n"),
            &["max_in_flight must be between 1 and 1000"],
        ),
        (
            minimal("token = \"t\"\ntoken_file = \"f\"\n"),
            &["config.toml:9", "keep only one"],
        ),
        (
            minimal("dedupe_property = \"tweet\"\n"),
            &["both mapped from a field and the dedupe_property"],
        ),
        (
            minimal("").replace("tweet = \"tweet\"\n", "id = \"Inbox ID\"\n"),
            &["record's key"],
        ),
        (
            format!(
                "{}{}",
                minimal(""),
                minimal("")
                    .replace("[daemon]\nstate_dir = \"/var/lib/ni\"\n", "")
                    .replace("tweets.jsonl", "other.jsonl")
            ),
            &["config.toml:13:8", "a second target is named \"tweets\""],
        ),
        (
            format!(
                "{}{}",
                minimal(""),
                minimal("")
                    .replace("[daemon]\nstate_dir = \"/var/lib/ni\"\n", "")
                    .replace("name = \"tweets\"", "name = \"b\"")
            ),
            &["config.toml:14:9", "read the same inbox"],
        ),
        (
            format!(
                "[notion]\nversion = \"2022-06-28\"\n{}",
                minimal("").replace("database_id", "data_source_id")
            ),
            &["has no data sources", "use database_id"],
        ),
    ];
    for (text, expected) in cases {
        check_err(text, expected);
    }
}

#[test]
fn inline_secrets_need_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, minimal("token = \"ntn_secret_value\"\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains(&format!("chmod 600 {}", path.display())),
        "{err}"
    );
    assert!(!err.contains("ntn_secret_value"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let c = Config::load(&path).unwrap();
    assert!(matches!(c.targets[0].token, TokenSource::Fixed(_)));
    // No secret in Debug output.
    assert!(!format!("{c:?}").contains("ntn_secret_value"));
}

#[test]
fn client_secret_file_is_read_only_when_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "s3cr3t\n").unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!("[notion]\nclient_secret_file = \"secret\"\n{}", minimal("")),
    )
    .unwrap();
    let c = Config::load(&path).unwrap();
    std::fs::set_permissions(
        dir.path().join("secret"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let err = c.client_secret().unwrap_err().to_string();
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(
        dir.path().join("secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(c.client_secret().unwrap().expose_secret(), "s3cr3t");
}

#[test]
fn missing_file_says_how_to_start() {
    let err = Config::load(Path::new("/nonexistent/notion-inbox.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/notion-inbox.toml"), "{err}");
    assert!(err.contains("config/example.toml"), "{err}");
}

#[test]
fn unknown_target_lists_the_known_ones() {
    let c = Config::from_toml(Path::new("/etc/ni/config.toml"), &minimal("")).unwrap();
    let err = c.target("tweet").unwrap_err().to_string();
    assert!(
        err.contains("no target named \"tweet\"") && err.contains("tweets"),
        "{err}"
    );
}

#[test]
fn notion_ids_are_normalized() {
    let dashed = "01234567-89ab-cdef-0123-456789abcdef";
    for input in [
        "0123456789abcdef0123456789abcdef",
        "0123456789ABCDEF0123456789ABCDEF",
        dashed,
        "https://www.notion.so/acme/Twitter-0123456789abcdef0123456789abcdef?v=abc",
        "https://www.notion.so/0123456789abcdef0123456789abcdef",
    ] {
        assert_eq!(
            normalize_notion_id(input).as_deref(),
            Some(dashed),
            "{input}"
        );
    }
    for input in [
        "",
        "abc",
        "0123456789abcdef0123456789abcdeg",
        "https://example.com/x",
    ] {
        assert_eq!(normalize_notion_id(input), None, "{input}");
    }
}

/// A target without database_id or data_source_id is valid: its database is discovered after
/// consent (or is the one shared database that fits), with `database_title` breaking a tie.
#[test]
fn a_target_without_a_database_discovers_it() {
    let text = minimal("database_title = \"Twitter\"\n").replace("database_id", "# database_id");
    let c = Config::from_toml(Path::new("/etc/ni/config.toml"), &text).unwrap();
    let t = c.target("tweets").unwrap();
    assert_eq!(t.destination, Destination::Discover);
    assert_eq!(t.database_title.as_deref(), Some("Twitter"));
}
