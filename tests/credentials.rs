//! Under the systemd unit the client secret comes from the credential `client_secret`
//! (`LoadCredential=`), even when the configuration also names the root-only file it was loaded
//! from. A test binary of its own: it sets `CREDENTIALS_DIRECTORY` for its whole process.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use notion_inbox::config::Config;
use secrecy::ExposeSecret;

#[test]
fn the_systemd_credential_wins_over_client_secret_file() {
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
    // SAFETY: this test binary has no other thread reading the environment now.
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
