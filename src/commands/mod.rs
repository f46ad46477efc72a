//! The commands around the daemon.

pub mod push;
pub mod requeue;
pub mod status;
