//! The commands around the daemon.

pub mod push;
