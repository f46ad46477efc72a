//! `notion-inbox emulator`: the emulator as a process, for scripts and trials.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use notion_emulator::{Emulator, EmulatorOptions, Faults, RateLimit};

/// Options of `notion-inbox emulator`.
#[derive(Debug, clap::Args)]
pub struct EmulatorArgs {
    /// Shadows the global `--config`, which the emulator does not read, so that its help does not
    /// offer it (accepted and ignored).
    #[arg(id = "config", long = "config", hide = true, value_name = "PATH")]
    pub ignored_config: Option<std::path::PathBuf>,
    /// Where to listen (loopback; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// Seed of the workspace's ids and secrets, and of the faults.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Requests per second per token.
    #[arg(long, default_value_t = 3.0)]
    pub rps: f64,
    /// Burst per token.
    #[arg(long, default_value_t = 3)]
    pub burst: u32,
    /// Requests per second per workspace (0: no workspace limit).
    #[arg(long, default_value_t = 3.0)]
    pub workspace_rps: f64,
    /// Latency of every request.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    pub latency: Duration,
    /// Random extra latency, uniform up to this.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    pub latency_jitter: Duration,
    /// Probability of a 5xx before a page is stored.
    #[arg(long, default_value_t = 0.0)]
    pub error_before_write: f64,
    /// Probability of a 504 after a page is stored.
    #[arg(long, default_value_t = 0.0)]
    pub timeout_after_write: f64,
    /// Probability of a dropped connection after a page is stored.
    #[arg(long, default_value_t = 0.0)]
    pub drop_after_write: f64,
    /// Probability of a 429 on any request.
    #[arg(long, default_value_t = 0.0)]
    pub storm_429: f64,
    /// Probability of a 529 on any request.
    #[arg(long, default_value_t = 0.0)]
    pub storm_529: f64,
    /// How long new pages stay invisible to queries.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    pub query_lag: Duration,
    /// A registered OAuth redirect URI (repeatable; default http://localhost:8765/callback).
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    /// OAuth access tokens stop working after this long.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub access_token_ttl: Option<Duration>,
    /// The integration has a template the consent page offers to duplicate.
    #[arg(long)]
    pub template: bool,
}

impl EmulatorArgs {
    /// The options these arguments describe.
    pub fn options(&self) -> EmulatorOptions {
        let defaults = EmulatorOptions::default();
        EmulatorOptions {
            listen: self.listen,
            rate: RateLimit {
                requests_per_second: self.rps,
                burst: self.burst,
            },
            workspace_rate: (self.workspace_rps > 0.0).then_some(RateLimit {
                requests_per_second: self.workspace_rps,
                burst: self.burst,
            }),
            faults: Faults {
                seed: Some(self.seed),
                latency: self.latency,
                latency_jitter: self.latency_jitter,
                error_before_write: self.error_before_write,
                timeout_after_write: self.timeout_after_write,
                drop_after_write: self.drop_after_write,
                storm_429: self.storm_429,
                storm_529: self.storm_529,
                storm_retry_after: None,
                query_lag: self.query_lag,
                ..Faults::default()
            },
            redirect_uris: if self.redirect_uris.is_empty() {
                defaults.redirect_uris
            } else {
                self.redirect_uris.clone()
            },
            access_token_ttl: self.access_token_ttl,
            template: self.template,
            seed: self.seed,
        }
    }
}

/// Runs the emulator until SIGINT or SIGTERM. The first line on stdout is the JSON info.
pub async fn run_command(args: EmulatorArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() {
        anyhow::bail!(
            "--listen {} is not a loopback address; the emulator serves this machine only (use 127.0.0.1)",
            args.listen
        );
    }
    let emu = Emulator::start(args.options()).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {}: {e}; pick another --listen port",
            args.listen
        )
    })?;
    let info = emu.info().clone();
    // Caught before anything is printed: a caller that reads the credentials and at once sends
    // SIGINT/SIGTERM gets a clean shutdown, not the default action.
    let mut interrupt = crate::daemon::signals::Interrupt::new()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(&info)?)?;
    out.flush()?;
    drop(out);
    eprintln!("Notion API emulator listening on {}", info.url);
    eprintln!(
        "  workspace       {} ({})",
        info.workspace_name, info.workspace_id
    );
    eprintln!("  internal token  {}", info.token);
    eprintln!(
        "  OAuth client    {} (secret {})",
        info.client_id, info.client_secret
    );
    eprintln!(
        "  database        \"Twitter\" {} (data source {})",
        info.database_id, info.data_source_id
    );
    eprintln!(
        "  two sources     \"Projects\" {}",
        info.multi_source_database_id
    );
    eprintln!(
        "  inspect         {}/_emulator/pages, /_emulator/stats",
        info.url
    );
    eprintln!("Ctrl-C stops it.");
    interrupt.recv().await;
    emu.shutdown().await;
    Ok(())
}
