//! Under the systemd unit the client secret comes from the credential `client_secret`
//! (`LoadCredential=`), even when the configuration also names the root-only file it was loaded
//! from. A test binary of its own: it sets `CREDENTIALS_DIRECTORY` for its whole process.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use notion_inbox::config::Config;
use secrecy::ExposeSecret;

/// The tests of this binary change the process's environment: one at a time.
static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn the_systemd_credential_wins_over_client_secret_file() {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("client_secret"), "from-credential\n").unwrap();
    std::fs::set_permissions(
        creds.join("client_secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    // The file the config names is what systemd read as root; the daemon's user cannot.
    let text = "[notion]\nclient_secret_file = \"/nonexistent/client_secret\"\n[daemon]\nstate_dir = \"/var/lib/ni\"\n";
    let config = Config::from_toml(Path::new("/etc/ni/config.toml"), text).unwrap();
    assert!(
        config.client_secret().is_err(),
        "without the credential the file is used"
    );
    // SAFETY: `ENV` keeps the other tests of this binary from reading the environment now.
    unsafe { std::env::set_var("CREDENTIALS_DIRECTORY", &creds) };
    assert_eq!(
        config.client_secret().unwrap().expose_secret(),
        "from-credential"
    );
    std::fs::remove_file(creds.join("client_secret")).unwrap();
    assert!(
        config.client_secret().is_err(),
        "no credential: back to the file"
    );
}

#[test]
fn the_client_sends_the_credential_to_the_token_endpoint() {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    use notion_emulator::{Emulator, EmulatorOptions};
    use notion_inbox::notion::NotionClient;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt
        .block_on(Emulator::start(EmulatorOptions::default()))
        .unwrap();
    let info = emu.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    let text = format!(
        "[notion]\napi_base = \"{}\"\nclient_id = \"{}\"\nclient_secret_file = \"/nonexistent/client_secret\"\n[daemon]\nstate_dir = \"/var/lib/ni\"\n",
        emu.url(),
        info.client_id
    );
    let config = Config::from_toml(Path::new("/etc/ni/config.toml"), &text).unwrap();
    let client = NotionClient::new(&config.notion).unwrap();
    let refresh = secrecy::SecretString::from("not-a-refresh-token".to_owned());
    // No credential: the configured file is used, and it is missing: nothing is sent.
    let err = rt.block_on(client.refresh_token(&refresh)).unwrap_err();
    assert!(!err.is_invalid_grant(), "{err}");
    assert_eq!(emu.stats().requests.get("POST /v1/oauth/token"), None);
    // With the credential: the client authenticates with it, and Notion judges the grant.
    std::fs::write(creds.join("client_secret"), &info.client_secret).unwrap();
    std::fs::set_permissions(
        creds.join("client_secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    // SAFETY: `ENV` keeps the other tests of this binary from reading the environment now.
    unsafe { std::env::set_var("CREDENTIALS_DIRECTORY", &creds) };
    let err = rt.block_on(client.refresh_token(&refresh)).unwrap_err();
    // SAFETY: as above.
    unsafe { std::env::remove_var("CREDENTIALS_DIRECTORY") };
    assert!(err.is_invalid_grant(), "{err}");
}
