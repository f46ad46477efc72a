//! OS signals, turned into a small closed set of intents for the daemon's main loop.

use futures::StreamExt;
use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio::sync::mpsc;

/// What a signal asks the daemon to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Stop reading, let in-flight requests finish within the grace period, persist, exit 0.
    Shutdown,
    /// Read the configuration again and apply it without a restart.
    Reload,
}

/// Starts listening for SIGTERM, SIGINT and SIGHUP. A second SIGTERM or SIGINT exits the process at
/// once with status 130: the state on disk is crash-safe, so nothing is lost by not waiting.
pub fn listen() -> std::io::Result<mpsc::Receiver<Intent>> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut stopping = false;
        while let Some(signal) = signals.next().await {
            let intent = match signal {
                SIGHUP => Intent::Reload,
                _ if stopping => {
                    tracing::warn!(
                        "second stop signal: exiting now; the checkpoints on disk are safe"
                    );
                    std::process::exit(130);
                }
                _ => {
                    stopping = true;
                    Intent::Shutdown
                }
            };
            if tx.send(intent).await.is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

/// SIGINT (Ctrl-C) or SIGTERM, as one thing to await, for the commands that are not the daemon
/// (`demo`, `emulator`). Create it before telling the user how to stop: a tokio `Signal` stream
/// keeps a signal that arrives while nobody awaits it, whereas a fresh `tokio::signal::ctrl_c()`
/// per loop turn lost one arriving between two turns (the demo then ignored that Ctrl-C and hung
/// a test on a loaded machine), and before the first one the default action kills the process.
pub struct Interrupt {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Interrupt {
    /// Starts catching both signals (needs a tokio runtime).
    pub fn new() -> std::io::Result<Interrupt> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Interrupt {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next SIGINT or SIGTERM (or returns at once for one already caught).
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
