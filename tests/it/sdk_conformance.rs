//! Fidelity of the emulator, judged by the two official SDKs, clients nobody here wrote.
//!
//! - JS: `@notionhq/client` (pinned in tests/sdk/package-lock.json, installed with `npm ci`)
//!   exchanges an OAuth code, searches, retrieves the database and data source, creates, reads
//!   and updates pages with every property type and rich-text kind, queries them back, and checks
//!   errors; then `tsc --strict` type-checks every response against the SDK's own types.
//! - Python: `notion-client` (pinned in tests/sdk_py/requirements.txt, installed into a
//!   virtualenv under target/) drives OAuth, search, data sources, pages, filtered, sorted and
//!   paginated queries, the trash, and error objects, including a 429 its own retry waits out.
//!
//! Needs Node.js with npm, and Python 3 with venv (the CI machines have them; `.ci/run` sets
//! NOTION_INBOX_REQUIRE_SDKS=1, which turns a missing one from a skip into a failure).

use std::path::{Path, PathBuf};
use std::process::Command;

use notion_emulator::{Emulator, EmulatorOptions, RateLimit};

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

/// Runs a command in tests/sdk, panicking with its output (and `hint`) if it fails.
fn run(cmd: &mut Command, hint: &str) -> String {
    let out = cmd
        .current_dir(sdk_dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}; {hint}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed: {text}\n{hint}");
    text
}

/// `npm ci` unless node_modules matches package-lock.json already.
fn install() {
    let dir = sdk_dir();
    let installed = dir.join("node_modules/.package-lock.json");
    let fresh = match (
        std::fs::metadata(&installed),
        std::fs::metadata(dir.join("package-lock.json")),
    ) {
        (Ok(i), Ok(l)) => i.modified().unwrap() >= l.modified().unwrap(),
        _ => false,
    };
    if !fresh {
        run(
            Command::new("npm").args(["ci", "--no-audit", "--no-fund"]),
            "the SDK conformance test needs Node.js, npm and the npm registry (it installs the pinned @notionhq/client and typescript into tests/sdk/node_modules)",
        );
    }
}

/// Plays the user on the consent page, granting `databases`, and returns the authorization code.
async fn code(emu: &Emulator, redirect: &str, databases: &[&str]) -> String {
    let info = emu.info();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", &info.client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("state", "sdk")
        .extend_pairs(databases.iter().map(|d| ("database", d)))
        .append_pair("decision", "allow")
        .finish();
    let r = http
        .post(format!("{}/v1/oauth/authorize", info.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code in the redirect")
}

const REDIRECT: &str = "http://localhost:9/callback";

/// An emulator with limits out of the way, on its own runtime.
fn emulator(redirect: &str) -> (tokio::runtime::Runtime, Emulator) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let emu = rt
        .block_on(Emulator::start(EmulatorOptions {
            rate: RateLimit {
                requests_per_second: 100.0,
                burst: 100,
            },
            workspace_rate: None,
            redirect_uris: vec![redirect.to_owned()],
            ..EmulatorOptions::default()
        }))
        .unwrap();
    (rt, emu)
}

/// Whether a missing toolchain fails the test (CI) rather than skipping it.
fn required() -> bool {
    std::env::var_os("NOTION_INBOX_REQUIRE_SDKS").is_some_and(|v| v == "1")
}

#[test]
fn the_official_sdk_works_against_the_emulator_and_its_types_accept_every_response() {
    install();
    run(
        Command::new("node").args(["node_modules/typescript/bin/tsc", "-p", "tsconfig.json"]),
        "compiling conformance.ts",
    );
    let (rt, emu) = emulator(REDIRECT);
    let redirect = REDIRECT;
    let code = rt.block_on(code(&emu, redirect, &[&emu.info().database_id]));
    let info = emu.info().clone();
    let out = sdk_dir().join("out");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let log = run(
        Command::new("node")
            .arg("build/conformance.js")
            .env("EMU_URL", &info.url)
            .env("OUT_DIR", &out)
            .env("CLIENT_ID", &info.client_id)
            .env("CLIENT_SECRET", &info.client_secret)
            .env("DATA_SOURCE_ID", &info.data_source_id)
            .env("DATABASE_ID", &info.database_id)
            .env("HIDDEN_DATABASE_ID", &info.hidden_database_id)
            .env("REDIRECT_URI", redirect)
            .env("CODE", &code),
        "the SDK refused an emulator response (above)",
    );
    assert!(log.contains("responses recorded"), "{log}");

    // What the SDK wrote arrived, field by field.
    let pages = emu.pages();
    assert_eq!(pages.len(), 2, "two pages created through the SDK");
    let p = &pages[0].properties;
    assert_eq!(p["handle"]["title"][0]["plain_text"], "@sdk");
    assert_eq!(p["Inbox ID"]["rich_text"][0]["plain_text"], "sdk-1");
    assert_eq!(p["Score"]["number"], 5, "the update landed");
    assert_eq!(p["Tags"]["multi_select"][1]["name"], "sdk");
    assert_eq!(p["When"]["date"]["start"], "2026-01-31T12:00:00Z");

    // tsc: every recorded response against the SDK's response types.
    let check = out.join("check.ts");
    let text = std::fs::read_to_string(&check).unwrap();
    for ty in [
        "OauthTokenResponse",
        "DataSourceObjectResponse",
        "DatabaseObjectResponse",
        "PageObjectResponse",
        "QueryDataSourceResponse",
        "SearchResponse",
        "PropertyItemListResponse",
        "NumberPropertyItemObjectResponse",
    ] {
        assert!(
            text.contains(&format!(": {ty} =")),
            "check.ts does not check {ty}"
        );
    }
    run(
        Command::new("node")
            .args([
                "node_modules/typescript/bin/tsc",
                "--noEmit",
                "--strict",
                "--target",
                "ES2022",
                "--moduleResolution",
                "node",
                "--types",
                "node",
            ])
            .arg(&check),
        "an emulator response does not fit the SDK's types (tsc's messages above name the file, line and field)",
    );
}

/// The virtualenv of the Python SDK: created under target/ and filled from requirements.txt
/// unless it holds that very file already. None (after saying why) where Python 3 with venv is
/// missing and the SDKs are not required.
fn python_sdk() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let requirements = root.join("tests/sdk_py/requirements.txt");
    let venv = root.join("target/sdk-py");
    let python = venv.join("bin/python");
    let stamp = venv.join("requirements.txt");
    let wanted = std::fs::read(&requirements).unwrap();
    if std::fs::read(&stamp).ok().as_ref() == Some(&wanted) && python.exists() {
        return Some(python);
    }
    let made = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .output();
    match made {
        Ok(out) if out.status.success() => {}
        other => {
            let why = match other {
                Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            let hint = format!(
                "the Python SDK conformance test needs Python 3 with venv (Debian: apt-get install python3 python3-venv): {why}"
            );
            assert!(!required(), "{hint}");
            eprintln!("SKIPPED: {hint}");
            return None;
        }
    }
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pip install -r tests/sdk_py/requirements.txt failed (it needs PyPI): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&stamp, wanted).unwrap();
    Some(python)
}

#[test]
fn the_official_python_sdk_works_against_the_emulator() {
    let Some(python) = python_sdk() else { return };
    let (rt, emu) = emulator(REDIRECT);
    let info = emu.info().clone();
    let code = rt.block_on(code(
        &emu,
        REDIRECT,
        &[&info.database_id, &info.multi_source_database_id],
    ));
    let out = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk_py/conformance.py"))
        .env("EMU_URL", &info.url)
        .env("CLIENT_ID", &info.client_id)
        .env("CLIENT_SECRET", &info.client_secret)
        .env("DATA_SOURCE_ID", &info.data_source_id)
        .env("DATABASE_ID", &info.database_id)
        .env("HIDDEN_DATABASE_ID", &info.hidden_database_id)
        .env("REDIRECT_URI", REDIRECT)
        .env("CODE", &code)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the Python SDK refused the emulator: {log}"
    );
    assert!(log.contains("checks passed"), "{log}");
    // What the SDK wrote arrived: three rows, one of them in the trash.
    let pages = emu.pages();
    assert_eq!(pages.len(), 3, "{log}");
    assert_eq!(
        pages[0].properties["Score"]["number"], 4,
        "the update landed"
    );
    assert_eq!(
        pages[2].properties["tweet"]["rich_text"][2]["equation"]["expression"],
        "x^2"
    );
}
