//! The configuration (being built).
