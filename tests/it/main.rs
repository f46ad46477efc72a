//! The integration tests, one binary: the real binary, the emulator, files in temporary
//! directories and a browser, scenario by scenario, one module per area. (One binary links once;
//! 25 of them took most of a cold `cargo test`.) The simulator (`tests/sim`) and the tests that
//! set process-wide environment (`tests/credentials.rs`) are binaries of their own.

#[path = "../support/mod.rs"]
mod support;

mod authorize;
mod chaos;
mod client;
mod config;
mod connect_page;
mod connected;
mod copytruncate;
mod daemon;
mod discovery;
mod dist;
mod emulator;
mod hardening;
mod hostile;
mod inbox;
mod layering;
mod operator;
mod ops;
mod permissions;
mod push;
mod recovery;
mod requeue;
mod resolution;
mod rotation_patterns;
mod sdk_conformance;
mod systemd_notify;
mod tenants;
mod token_refresh;
