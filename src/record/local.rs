//! The daemon's rules for one target's records that hold without the destination's schema: the
//! line's length, JSON, the record's key and which fields it may hold. `push` applies them before
//! it appends, and `requeue` before it moves a dead letter back (a line they refuse would only be
//! dead-lettered again). What needs the schema (a value's type) is checked by the daemon alone.

use serde_json::{Map, Value};

use super::RecordError;
use super::fields::{self, Fields};
use crate::config::Target;

/// A target's schema-free rules.
#[derive(Debug)]
pub struct LocalRules<'a> {
    target: &'a Target,
    names: Vec<String>,
    max_line_bytes: usize,
}

impl LocalRules<'_> {
    /// The rules of `target`, with the daemon's `max_line_bytes`.
    pub fn new(target: &Target, max_line_bytes: usize) -> LocalRules<'_> {
        LocalRules {
            target,
            names: target.properties.iter().map(|(f, _)| f.clone()).collect(),
            max_line_bytes,
        }
    }

    /// Checks one line of the inbox (without its newline) as the daemon will read it.
    pub fn line(&self, bytes: &[u8]) -> Result<(), RecordError> {
        self.length(bytes.len())?;
        self.record(&super::line::parse_line(bytes)?)
    }

    /// Checks a parsed record: its key and its fields.
    pub fn record(&self, record: &Map<String, Value>) -> Result<(), RecordError> {
        super::line::own_key(record)?;
        // The title's field is known here only when the mapping names the title by its alias
        // (the daemon also knows it by the schema).
        let title = self
            .target
            .properties
            .iter()
            .find(|(_, p)| p == "title")
            .map(|(f, _)| f.as_str());
        fields::check(
            record,
            Fields {
                target: &self.target.name,
                names: &self.names,
                title,
            },
        )
    }

    /// Checks a line's length (without its newline) against `max_line_bytes`: the daemon keeps
    /// only the length of a longer line, not its bytes.
    pub fn length(&self, bytes: usize) -> Result<(), RecordError> {
        if bytes > self.max_line_bytes {
            return Err(RecordError::TooLong {
                bytes,
                max: self.max_line_bytes,
            });
        }
        Ok(())
    }
}
