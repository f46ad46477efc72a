//! The `notion-inbox` binary: the command line (`cli`), the commands around the daemon
//! (`commands`), the daemon (`daemon`), the connect page it serves (`connect`), the server under
//! every listener (`serve`), logging (`logging`) and the permission audit (`audit`), over the
//! library. The library's modules are imported at the root, so `crate::config` names the same
//! module here as in the library.

mod audit;
mod cli;
mod commands;
mod connect;
mod daemon;
mod logging;
mod serve;

use notion_inbox::{config, discover, error, exit, inbox, notion, record, state, tenants, text};

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::commands::requeue::RequeueArgs;
use crate::config::Config;
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The blocking pool runs the daemon's file work (opening inboxes, reading, checkpoints): at a
    // start with 10 000 targets every one of them asks for it at once, and tokio's default of 512
    // threads cost memory and thread creation for no gain on a few cores. Nothing on the pool
    // waits for long (inboxes are opened non-blocking; a dead-letter write waits only for
    // `requeue`'s brief lock).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(64)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = cli.command.json();
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            let message = notion_inbox::error::chain(e.as_ref());
            let code = exit_code(&e);
            eprintln!("error: {message}");
            if json {
                // Whoever asked for JSON parses stdout: the error is there too, as one object.
                let kind = match code {
                    exit::CONFIG => "config",
                    exit::USAGE => "usage",
                    _ => "failure",
                };
                let object = serde_json::json!({
                    "error": {"kind": kind, "message": message, "exit_code": code}
                });
                println!("{object}");
            }
            ExitCode::from(code)
        }
    }
}

/// The exit status of a failed command: a configuration that cannot be used is `EX_CONFIG`, a
/// target the configuration does not have is a usage error, anything else a failure.
fn exit_code(e: &anyhow::Error) -> u8 {
    use crate::daemon::DaemonError;
    use notion_inbox::config::ConfigError;
    // A transparent wrapper forwards its source past the wrapped error, so the daemon's is
    // looked into.
    fn config_error<'a>(c: &'a (dyn std::error::Error + 'static)) -> Option<&'a ConfigError> {
        match c.downcast_ref::<DaemonError>() {
            Some(DaemonError::Config(e)) => Some(e),
            _ => c.downcast_ref::<ConfigError>(),
        }
    }
    match e.chain().find_map(config_error) {
        Some(ConfigError::UnknownTarget { .. }) => exit::USAGE,
        Some(_) => exit::CONFIG,
        None => exit::FAILURE,
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Emulator(args) => {
            crate::logging::init(cli.log_format, "info");
            crate::commands::emulator::run_command(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Push(args) => {
            let config = Config::load(&cli.config)?;
            let n = crate::commands::push::run(&config, &args, &mut std::io::stdin().lock())?;
            let inbox = config.target(&args.target)?.inbox.display().to_string();
            if args.json {
                let done =
                    serde_json::json!({"target": args.target, "inbox": inbox, "appended": n});
                println!("{done}");
            } else {
                eprintln!("appended {n} record(s) to {inbox}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(_) => {
            crate::logging::init(cli.log_format, "warn");
            crate::commands::demo::run(None).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            crate::cli::completions(shell, &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Manpage { dir } => {
            crate::cli::manpage(&mut std::io::stdout(), dir.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run => {
            // The daemon re-reads the config itself (and on SIGHUP); load it here for the log level.
            let config = Config::load(&cli.config)?;
            crate::logging::init(cli.log_format, &config.daemon.log_level);
            crate::daemon::run(cli.config.clone()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Authorize(args) => {
            let config = Config::load(&cli.config)?;
            crate::logging::init(cli.log_format, &config.daemon.log_level);
            let done = crate::commands::authorize::run(
                &config,
                &args,
                &mut std::io::BufReader::new(std::io::stdin()),
            )
            .await?;
            eprintln!(
                "Authorized: workspace {}{}; token saved to {}",
                done.workspace,
                done.owner.map(|o| format!(", by {o}")).unwrap_or_default(),
                done.token_file.display()
            );
            use crate::commands::authorize::DatabaseOutcome;
            match done.database {
                DatabaseOutcome::Configured => eprintln!(
                    "Next: `notion-inbox databases --target {}` to see what it can write to, then `notion-inbox check`",
                    args.target
                ),
                DatabaseOutcome::Chosen(label) => eprintln!(
                    "Rows of target {} go to {label} (found among what you shared; saved with the token). Next: `notion-inbox check`",
                    args.target
                ),
                DatabaseOutcome::NotChosen(why) => {
                    eprintln!("{why}");
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Databases(args) => {
            let config = Config::load(&cli.config)?;
            crate::logging::init(cli.log_format, &config.daemon.log_level);
            let dbs = crate::commands::databases::collect(&config, &args.target).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&dbs)?);
            } else {
                crate::commands::databases::print_text(&args.target, &dbs);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => {
            let config = Config::load(&cli.config)?;
            crate::logging::init(cli.log_format, &config.daemon.log_level);
            let findings = crate::commands::check::run(&config, &args).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&findings)?);
            } else {
                crate::commands::check::print_text(&findings);
            }
            Ok(if findings.iter().all(|f| f.ok) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Status(args) => {
            let config = Config::load(&cli.config)?;
            let statuses = crate::commands::status::collect(&config, args.target.as_deref())?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&statuses)?);
            } else if statuses.is_empty() {
                println!(
                    "no targets: add a [[target]] to {}, or let a workspace connect",
                    config.path.display()
                );
            } else {
                if let Some(usage) = notion_inbox::tenants::usage::Usage::of(&config) {
                    println!("connect page: {}\n", usage.describe());
                }
                crate::commands::status::print_text(&statuses);
            }
            let verdict = crate::commands::status::Verdict::of(&statuses);
            Ok(ExitCode::from(verdict.exit_code()))
        }
        Command::Connect(args) => {
            use crate::commands::authorize::DatabaseOutcome;
            let config = Config::load(&cli.config)?;
            crate::logging::init(cli.log_format, &config.daemon.log_level);
            let no_browser = args.no_browser;
            let done = crate::commands::connect::run_with(
                &config,
                &args,
                &mut std::io::BufReader::new(std::io::stdin()),
                &mut |url| {
                    println!("{url}");
                    if !no_browser {
                        crate::commands::authorize::open_browser(url.as_str());
                    }
                },
            )
            .await?;
            let c = &done.connected;
            eprintln!(
                "{} workspace {} as target {}; producers append to {} (the daemon starts it within a second)",
                if c.reconnected {
                    "Reconnected"
                } else {
                    "Connected"
                },
                done.workspace,
                c.name,
                c.inbox.display()
            );
            match done.database {
                DatabaseOutcome::Chosen(label) => eprintln!("Rows go to {label}."),
                DatabaseOutcome::Configured => {}
                DatabaseOutcome::NotChosen(why) => {
                    eprintln!("{why}");
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Targets(args) if args.names => {
            // For shell completions: quiet, fast, and without reading any state.
            let config = Config::load(&cli.config)?;
            for t in &config.targets {
                println!("{}", t.name);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Targets(args) => {
            let config = Config::load(&cli.config)?;
            let targets = crate::commands::targets::collect(&config)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&targets)?);
            } else {
                crate::commands::targets::print_text(&targets);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Disconnect(args) => {
            let config = Config::load(&cli.config)?;
            crate::logging::init(cli.log_format, &config.daemon.log_level);
            let done = crate::commands::disconnect::run(&config, &args.target).await?;
            match done.revoked {
                Ok(()) => eprintln!(
                    "Disconnected target {}: its token is revoked and the daemon stops it within a second; its inbox and dead letters stay, and the workspace connecting again resumes it.",
                    args.target
                ),
                Err(e) => eprintln!(
                    "Disconnected target {} here (the daemon stops it within a second), but Notion did not revoke its token ({e}); the workspace can remove the integration in Notion (Settings, Connections).",
                    args.target
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Requeue(args) => {
            let config = Config::load(&cli.config)?;
            requeue(&config, &args)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `requeue`: list, dry-run, purge or requeue, and say what was done.
fn requeue(config: &Config, args: &RequeueArgs) -> anyhow::Result<()> {
    use crate::commands::requeue;
    if args.list {
        let entries = requeue::list(config, args)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&entries)?);
        } else {
            requeue::print_list(&args.target, &entries);
        }
        return Ok(());
    }
    let done = requeue::run(config, args)?;
    if args.json {
        println!("{}", serde_json::to_string(&done)?);
        return Ok(());
    }
    requeue::print_done(config, args, &done);
    Ok(())
}
