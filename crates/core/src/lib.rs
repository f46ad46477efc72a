//! The delivery core of notion-inbox: every rule of one target's delivery, as a synchronous state
//! machine over data ([`delivery::Core`]), with the values it works on.
//!
//! This crate does no I/O and reads no clock: time is passed in ([`delivery::Now`]), randomness is
//! a seeded generator, and what it decides comes back as [`delivery::Action`]s for a runner to
//! perform (`notion_inbox::daemon` in production, `tests/sim` under a seeded schedule of faults).
//! Its dependencies are data-only (serde, thiserror, rand's seeded generator, memchr, tracing's
//! macros); a test (`tests/it/layering.rs` of the workspace root) fails if it gains tokio, an HTTP
//! client or server, a clock crate or libc.
//!
//! - [`answer`]: Notion's answers as received, and the one reading of what each means.
//! - [`position`]: a file's identity, a line's place in it, the committed position.
//! - [`commit`]: the committed position over the contiguous prefix of finished records.
//! - [`checkpoint`]: the durable progress the core builds (the runner writes it).
//! - [`backoff`]: exponential backoff with full jitter, from the core's seeded generator.
//! - [`health`]: the health the core reports and the counts it keeps, as values.
//! - [`delivery`]: the state machine.
//! - [`dormancy`]: when a target closes, what a closed target compares at a look, when it wakes.

#![warn(missing_docs, unreachable_pub)]

pub mod answer;
pub mod backoff;
pub mod checkpoint;
pub mod commit;
pub mod delivery;
pub mod dormancy;
pub mod health;
pub mod position;
