//! notion-inbox: pushes JSONL records from inbox files into Notion databases.
//!
//! Module map (the flow of a record, left to right):
//! inbox (read) -> record (validate and map) -> notion (send) -> state (commit).
//!
//! The library: what the binary (`src/main.rs`, with the command line, the commands, the daemon,
//! the connect page, the listeners' server, logging and the permission audit) is built on.
//!
//! - [`config`]: the TOML configuration, parsed and validated into [`config::Config`].
//! - [`discover`]: which shared database receives a target's rows, when none is configured
//!   (above `notion` and `record`: it asks whether the record's mapping fits the schemas found).
//! - [`error`]: how an error and its causes are shown.
//! - [`exit`]: the exit statuses.
//! - [`hash`]: FNV-1a 64, the stable fingerprint.
//! - [`inbox`]: reads complete lines from inbox files (rotation, truncation, partial lines) and
//!   watches their directories.
//! - [`notion`]: the Notion API client: typed errors, rate limits, tokens, OAuth, schemas.
//! - [`record`]: a record's conversion into a page body through the target's mapping, and what
//!   the tailer hands out as the delivery core's input.
//! - [`state`]: the per-target checkpoint, dead letters and everything else under the state
//!   directory.
//! - [`tenants`]: connected workspaces: identity, lifecycle, the index by identity.
//! - [`text`]: text from Notion or a request made safe to print, log and render.
//!
//! The delivery core, a synchronous state machine of every delivery rule, is the crate
//! `notion_inbox_core`; the Notion API emulator (tests, benchmarks, the demo) is the crate
//! `notion_emulator`, which depends on nothing here.

#![warn(missing_docs, unreachable_pub)]

pub mod config;
pub mod discover;
pub mod error;
pub mod exit;
pub mod hash;
pub mod inbox;
pub mod notion;
pub mod record;
pub mod state;
pub mod tenants;
pub mod text;
