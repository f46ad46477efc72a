//! notion-inbox: pushes JSONL records from inbox files into Notion databases.
//!
//! Module map (the flow of a record, left to right):
//! inbox (read) -> record (validate and map) -> notion (send) -> state (commit).
//!
//! - [`audit`]: the state directory, tokens and client secret that other users could read, write
//!   or own (it reads the configuration, so it sits above `config` and `state`).
//! - [`config`]: the TOML configuration, parsed and validated into [`config::Config`].
//! - [`cli`]: the command line, defined once with clap.
//! - [`commands`]: the commands around the daemon (`push`, …).
//! - [`exit`]: the exit statuses.
//! - [`discover`]: which shared database receives a target's rows, when none is configured
//!   (above `notion` and `record`: it asks whether the record's mapping fits the schemas found).
//! - [`error`]: how an error and its causes are shown.
//! - [`logging`]: log output for people, pipelines and journald.
//! - The Notion API emulator (tests, benchmarks, the demo) is the crate `notion_emulator`, which
//!   depends on nothing here.
//! - [`inbox`]: reads complete lines from inbox files (rotation, truncation, partial lines) and
//!   watches their directories.
//! - The delivery core, a synchronous state machine of every delivery rule, is the crate
//!   `notion_inbox_core`.
//! - [`state`]: the per-target checkpoint and the commit tracker.
//! - [`notion`]: the Notion API client: typed errors, rate limits, tokens, OAuth, schemas.
//! - [`record`]: a record's conversion into a page body through the target's mapping.
//! - [`tenants`]: connected workspaces: identity, lifecycle, the index by identity.
//! - [`text`]: text from Notion or a request made safe to print, log and render.
//! - [`serve`]: the HTTP server of `authorize`'s redirect listener and of `/metrics`, which
//!   anyone on the machine may connect to: bounded connections, each with deadlines.

pub mod audit;
pub mod cli;
pub mod commands;
pub mod config;
pub(crate) mod connect;
pub mod daemon;
pub mod discover;
pub mod error;
pub mod exit;
pub mod inbox;
pub mod logging;
pub mod notion;
pub mod record;
pub(crate) mod serve;
pub mod state;
pub mod tenants;
pub mod text;
