//! The daemon's rules for one target's records that hold without the destination's schema: the
//! line's length, JSON, the record's key and which fields it may hold. `push` applies them before
//! it appends, and `requeue` before it moves a dead letter back (a line they refuse would only be
//! dead-lettered again). What needs the schema (a value's type) is checked by the daemon alone.

use serde_json::{Map, Value};

use super::RecordError;
use super::fields::{self, Fields};
use crate::config::Target;
use crate::notion::{PropertyKind, Resolved};

/// A target's schema-free rules.
#[derive(Debug)]
pub struct LocalRules<'a> {
    target: &'a Target,
    names: Vec<String>,
    /// The field known to fill the title, if one is.
    title: Option<String>,
    max_line_bytes: usize,
}

impl LocalRules<'_> {
    /// The rules of `target`, with the daemon's `max_line_bytes`. The title's field is known
    /// without the schema only when the first mapped field names the title by its alias
    /// (`handle = "title"`): the daemon's title field is the first one whose property is the
    /// title, and a field before it could name the title property by its own name. (A database
    /// whose other property is literally named "title" is the one case where this guess is wrong:
    /// the alias then names that property; [`LocalRules::knowing`] corrects it.)
    pub fn new(target: &Target, max_line_bytes: usize) -> LocalRules<'_> {
        LocalRules {
            target,
            names: target.properties.iter().map(|(f, _)| f.clone()).collect(),
            title: target
                .properties
                .first()
                .filter(|(_, p)| p == "title")
                .map(|(f, _)| f.clone()),
            max_line_bytes,
        }
    }

    /// The same rules, knowing the destination's schema (a cached resolution): the title's
    /// field is then the daemon's, the first field whose property is the title.
    pub fn knowing(mut self, resolved: &Resolved) -> Self {
        self.title = self
            .target
            .properties
            .iter()
            .find(|(_, p)| {
                resolved
                    .property(p)
                    .is_some_and(|p| p.kind == PropertyKind::Title)
            })
            .map(|(f, _)| f.clone());
        self
    }

    /// Checks one line of the inbox (without its newline) as the daemon will read it.
    pub fn line(&self, bytes: &[u8]) -> Result<(), RecordError> {
        self.length(bytes.len())?;
        self.record(&super::line::parse_line(bytes)?)
    }

    /// Checks a parsed record: its key and its fields.
    pub fn record(&self, record: &Map<String, Value>) -> Result<(), RecordError> {
        super::line::own_key(record)?;
        fields::check(
            record,
            Fields {
                target: &self.target.name,
                names: &self.names,
                title: self.title.as_deref(),
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
            1 => Just(Value::Null),
            1 => any::<bool>().prop_map(Value::Bool),
            1 => any::<i64>().prop_map(Value::from),
            4 => "[a-z @]{0,12}".prop_map(Value::from),
            1 => Just(Value::from(" ")),
            1 => (490usize..510).prop_map(|n| Value::from("k".repeat(n))),
            1 => Just(serde_json::json!(["a", 1])),
            1 => Just(serde_json::json!({"a": 1})),
        ]
    }

    fn line() -> impl Strategy<Value = Vec<u8>> {
        let field = prop::sample::select(vec![
            "handle", "tweet", "twet", "tweets", "Tweet", "hnadle", "id", "ID", "x", "a", "",
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

    /// Mappings that name the title by its alias or by its name ("handle"), first or not (in the
    /// order the configuration gives them), once or twice.
    const MAPPINGS: &[&[(&str, &str)]] = &[
        &[("handle", "title"), ("tweet", "tweet")],
        &[("handle", "handle"), ("tweet", "tweet")],
        &[("tweet", "tweet"), ("handle", "title")],
        &[("a", "handle"), ("handle", "title"), ("tweet", "tweet")],
        &[("handle", "title"), ("a", "handle"), ("tweet", "tweet")],
    ];

    /// The test schema, with (`named_title`) a rich_text property literally named "title".
    fn schema(named_title: bool) -> Resolved {
        let mut r = resolved();
        if named_title {
            r.properties.push(crate::notion::Property {
                name: "title".into(),
                id: "tl".into(),
                kind: PropertyKind::RichText,
                options: vec![],
            });
        }
        r
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// `requeue` holds back only lines the daemon would refuse: whatever the line and the
        /// mapping, a line the schema-free rules refuse is refused by the daemon's whole pipeline
        /// too. Knowing the schema, this holds for every schema; without it, for every schema
        /// without another property literally named "title" (see [`LocalRules::new`]). (The
        /// converse does not hold: the daemon also judges values by the schema.)
        #[test]
        fn the_local_rules_refuse_only_what_the_daemon_refuses(
            bytes in line(),
            mapping in prop::sample::select(MAPPINGS),
            named_title in any::<bool>(),
            dedupe in any::<bool>(),
        ) {
            let t = target(mapping, dedupe.then_some("Inbox ID"));
            let schema = schema(named_title);
            let mapper = Mapper::new(&t, &schema).unwrap();
            let mut rules = vec![("knowing the schema", LocalRules::new(&t, MAX).knowing(&schema))];
            if !named_title {
                rules.push(("without the schema", LocalRules::new(&t, MAX)));
            }
            for (how, rules) in rules {
                if let Err(local) = rules.line(&bytes) {
                    prop_assert!(
                        daemon(&mapper, &bytes).is_err(),
                        "refused locally {how} ({local}) but accepted by the daemon: {:?}",
                        String::from_utf8_lossy(&bytes)
                    );
                }
            }
        }
    }

    #[test]
    fn the_title_is_known_without_the_schema_only_from_an_alias_in_first_place() {
        let no_title = br#"{"tweet":"hi"}"#;
        let first = target(MAPPINGS[0], None);
        assert!(matches!(
            LocalRules::new(&first, MAX).line(no_title),
            Err(RecordError::NoTitle { .. })
        ));
        // Fields are taken in the order the configuration gives them (`a` before `handle`): `a`
        // may name the title by its own name.
        let t = target(MAPPINGS[3], None);
        let r = LocalRules::new(&t, MAX).line(no_title);
        assert!(r.is_ok(), "{r:?}");
        // Knowing the schema, a title named by its own name is known too.
        let by_name = target(MAPPINGS[1], None);
        assert!(
            LocalRules::new(&by_name, MAX)
                .knowing(&schema(false))
                .line(no_title)
                .is_err()
        );
    }
}
