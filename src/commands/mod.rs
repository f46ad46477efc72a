//! The commands around the daemon.

pub mod authorize;
pub mod check;
pub mod connect;
pub mod databases;
pub mod demo;
pub mod disconnect;
pub mod emulator;
pub mod push;
pub mod requeue;
pub mod status;
pub mod targets;
