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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::inbox::{FileIdentity, LinePos};
    use crate::record::Mapper;
    use crate::record::line::{parse_line, record_key};
    use crate::record::tests::{resolved, target};

    const MAX: usize = 300;

    /// What the daemon does with a line (without its newline): the reader's length limit, then
    /// parse, key and page body, as `daemon::perform` prepares a line.
    fn daemon(mapper: &Mapper, bytes: &[u8]) -> Result<(), RecordError> {
        if bytes.len() > MAX {
            return Err(RecordError::TooLong {
                bytes: bytes.len(),
                max: MAX,
            });
        }
        let pos = LinePos {
            file: FileIdentity {
                dev: 1,
                ino: 2,
                head_len: 3,
                head_hash: 4,
            },
            offset: 0,
            end: bytes.len() as u64 + 1,
        };
        let record = parse_line(bytes)?;
        let key = record_key(&record, &pos, bytes)?;
        mapper.page_body(&record, &key).map(|_| ())
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z @]{0,12}".prop_map(Value::from),
            Just(Value::from(" ")),
            (490usize..510).prop_map(|n| Value::from("k".repeat(n))),
            Just(serde_json::json!(["a", 1])),
            Just(serde_json::json!({"a": 1})),
        ]
    }

    fn line() -> impl Strategy<Value = Vec<u8>> {
        let field = prop::sample::select(vec![
            "handle", "tweet", "twet", "tweets", "Tweet", "hnadle", "id", "ID", "x", "",
        ]);
        let object = prop::collection::btree_map(field, value(), 0..5).prop_map(|m| {
            let map: Map<String, Value> = m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            serde_json::to_vec(&Value::Object(map)).unwrap()
        });
        prop_oneof![
            4 => object,
            1 => prop::collection::vec(any::<u8>(), 0..40),
            1 => "[\\[\\]{}\",:a-z0-9 ]{0,30}".prop_map(String::into_bytes),
        ]
    }

    proptest! {
        /// `requeue` holds back only lines the daemon would refuse: whatever the line and the
        /// mapping, a line the schema-free rules refuse is refused by the daemon's whole pipeline
        /// too. (The converse does not hold: the daemon also judges values by the schema.)
        #[test]
        fn the_local_rules_refuse_only_what_the_daemon_refuses(
            bytes in line(),
            title_by_alias in any::<bool>(),
            dedupe in any::<bool>(),
        ) {
            let title = if title_by_alias { "title" } else { "handle" };
            let t = target(&[("handle", title), ("tweet", "tweet")], dedupe.then_some("Inbox ID"));
            let mapper = Mapper::new(&t, &resolved()).unwrap();
            if let Err(local) = LocalRules::new(&t, MAX).line(&bytes) {
                prop_assert!(
                    daemon(&mapper, &bytes).is_err(),
                    "refused locally ({local}) but accepted by the daemon: {:?}",
                    String::from_utf8_lossy(&bytes)
                );
            }
        }
    }
}
