//! The daemon speaks systemd's notify protocol: READY, STATUS and WATCHDOG while running,
//! RELOADING then READY around SIGHUP, STOPPING on SIGTERM. The real binary runs with
//! `NOTIFY_SOCKET` pointing at a datagram socket of the test.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// Reads datagrams until one holds `wanted` (a `KEY=value` line); returns everything read.
fn wait_for(sock: &UnixDatagram, wanted: &str, seen: &mut Vec<String>) {
    wait_line(sock, wanted, |l| l.starts_with(wanted), seen)
}

/// Reads datagrams until a line satisfies `pred` (`wanted` describes it).
fn wait_line(
    sock: &UnixDatagram,
    wanted: &str,
    pred: impl Fn(&str) -> bool,
    seen: &mut Vec<String>,
) {
    let start = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if seen.iter().any(|m| m.lines().any(&pred)) {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no {wanted} within {DEADLINE:?}; got {seen:?}"
        );
        match sock.recv(&mut buf) {
            Ok(n) => seen.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
}

#[test]
fn ready_status_watchdog_reloading_and_stopping_arrive_when_they_should() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("spool")).unwrap();
    // A record to deliver (a target with nothing to deliver does not connect at all).
    std::fs::write(
        dir.path().join("spool/tweets.jsonl"),
        "{\"handle\":\"@a\"}\n",
    )
    .unwrap();
    // Nothing listens on the API port: the target keeps retrying, which must not hold READY back.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api = format!("http://{}", unused.local_addr().unwrap());
    drop(unused);
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[notion]\napi_base = \"{api}\"\n\n[daemon]\nstate_dir = \"state\"\n\n[[target]]\nname = \"tweets\"\ninbox = \"spool/tweets.jsonl\"\ndatabase_id = \"0123456789abcdef0123456789abcdef\"\ntoken = \"ntn_test\"\n[target.properties]\nhandle = \"title\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_notion-inbox"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut seen = Vec::new();
    wait_for(&sock, "READY=1", &mut seen);
    wait_for(&sock, "STATUS=", &mut seen);
    wait_for(&sock, "WATCHDOG=1", &mut seen);
    // The status line counts the targets, and names the one in trouble (nothing listens at its
    // API address) once it has tried.
    wait_line(
        &sock,
        "a STATUS= naming target tweets",
        |l| l.starts_with("STATUS=1 target") && l.contains("tweets"),
        &mut seen,
    );

    // SIGHUP: RELOADING=1, then READY=1 again.
    seen.clear();
    // SAFETY: kill(2) on our child.
    assert_eq!(unsafe { kill(pid, 1) }, 0);
    wait_for(&sock, "RELOADING=1", &mut seen);
    seen.clear();
    wait_for(&sock, "READY=1", &mut seen);

    // SIGTERM: STOPPING=1 and a clean exit.
    seen.clear();
    assert_eq!(unsafe { kill(pid, 15) }, 0);
    wait_for(&sock, "STOPPING=1", &mut seen);
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        assert!(start.elapsed() < DEADLINE, "the daemon did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert_eq!(code, Some(0), "exit status; log:\n{log}");
    assert!(
        !log.contains("ntn_test"),
        "the token leaked into the log:\n{log}"
    );
}
