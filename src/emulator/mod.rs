//! A stand-in for the Notion API on loopback (being built).
