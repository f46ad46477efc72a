//! The command-line interface, defined once with clap so that completions and the man page can be
//! generated from it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::logging::LogFormat;

mod complete;
pub mod man;

/// Pushes JSONL records from inbox files into Notion databases, at the rate limit, without loss.
#[derive(Debug, Parser)]
#[command(name = "notion-inbox", version, about, long_about = None)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        env = "NOTION_INBOX_CONFIG",
        default_value = crate::config::DEFAULT_CONFIG_PATH,
        value_name = "PATH"
    )]
    pub config: PathBuf,

    /// How log lines are written: text for people, json for log pipelines; auto drops timestamps and
    /// colours under journald.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: deliver every inbox record to Notion until stopped.
    Run,
    /// Authorize the integration for a target through Notion's OAuth consent screen.
    Authorize(crate::commands::authorize::AuthorizeArgs),
    /// List the databases and data sources a target's token can see, with their properties.
    Databases(TargetArgs),
    /// Check the configuration, tokens, database access and property mapping.
    Check(crate::commands::check::CheckArgs),
    /// Show each target's progress, backlog and health.
    Status(OptionalTargetArgs),
    /// Connect a workspace as a target of its own (consent, then inbox, database, token).
    Connect(crate::commands::connect::ConnectArgs),
    /// List every target, configured or connected: workspace, database, state, backlog.
    Targets(crate::commands::targets::TargetsArgs),
    /// End a connected workspace's target: revoke its token, stop it, keep its inbox.
    Disconnect(TargetArgs),
    /// Append records to a target's inbox safely (validated, one locked O_APPEND write).
    Push(crate::commands::push::PushArgs),
    /// Move a target's dead letters back into its inbox, exactly once (after fixing their cause).
    Requeue(crate::commands::requeue::RequeueArgs),
    /// Start a Notion API emulator on loopback.
    Emulator(crate::commands::emulator::EmulatorArgs),
    /// Run a self-contained demonstration against the emulator.
    Demo(DemoArgs),
    /// Print a shell completion script (for packagers; `dist/completions` holds them).
    #[command(hide = true)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page in roff, or write every page into a directory (for packagers;
    /// `dist/man` holds them).
    #[command(hide = true)]
    Manpage {
        /// Write notion-inbox(1), a page per command and notion-inbox.toml(5) here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

impl Command {
    /// Whether the command was asked for JSON output (then errors are JSON on stdout too).
    pub fn json(&self) -> bool {
        match self {
            Command::Databases(a) | Command::Disconnect(a) => a.json,
            Command::Check(a) => a.json,
            Command::Status(a) => a.json,
            Command::Targets(a) => a.json,
            Command::Push(a) => a.json,
            Command::Requeue(a) => a.json,
            _ => false,
        }
    }
}

pub use complete::completions;

/// Writes notion-inbox(1) (the pages of the commands and of the file are in `dist/man`).
pub fn manpage(out: &mut dyn std::io::Write, dir: Option<&std::path::Path>) -> std::io::Result<()> {
    let pages = man::pages()?;
    let Some(dir) = dir else {
        return out.write_all(&pages[0].1);
    };
    std::fs::create_dir_all(dir)?;
    for (name, page) in pages {
        std::fs::write(dir.join(name), page)?;
    }
    Ok(())
}

/// Arguments of `demo`, which makes its own configuration.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Shadows the global `--config`, which the demo does not read, so that its help does not
    /// offer it (accepted and ignored).
    #[arg(id = "config", long = "config", hide = true, value_name = "PATH")]
    pub ignored_config: Option<PathBuf>,
}

/// Arguments of commands that act on one target.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The target's name, as in its [[target]] table.
    #[arg(long, short)]
    pub target: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of commands whose only option is JSON output.
#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of commands that act on one target or all of them.
#[derive(Debug, Args)]
pub struct OptionalTargetArgs {
    /// Only this target.
    #[arg(long, short)]
    pub target: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}
