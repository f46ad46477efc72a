//! The commands around the daemon.

pub mod push;
pub mod status;
