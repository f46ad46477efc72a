//! Which fields a record may hold, checked the same way by the daemon (with the destination's
//! schema) and by `push` (before anything is appended, with the mapping alone).

use serde_json::{Map, Value};

use super::RecordError;

/// The field that holds a record's own key.
pub(crate) const KEY_FIELD: &str = "id";

/// A target's mapped fields as the record check sees them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'a> {
    /// The target's name, for messages.
    pub target: &'a str,
    /// The mapped record fields, in the order of the config.
    pub names: &'a [String],
    /// The field mapped to the title property, if known (every row needs a title).
    pub title: Option<&'a str>,
}

/// Checks `record` against `fields`: at least one mapped field, a non-empty title when the title
/// field is known, and no misspelt field. A field that is not mapped is ignored (producers may
/// send more than the database keeps), unless it looks like a misspelling of a mapped field that
/// the record lacks (`"twet"` without `"tweet"`): that record would land with an empty property
/// without a word, so it is refused. The error is the reason written to the dead-letter file, or
/// shown by `push`.
pub(crate) fn check(record: &Map<String, Value>, fields: Fields<'_>) -> Result<(), RecordError> {
    let listing = || fields.names.join(", ");
    let present = |f: &str| record.get(f).is_some_and(|v| !v.is_null());
    for name in record.keys() {
        if name == KEY_FIELD || fields.names.iter().any(|f| f == name) {
            continue;
        }
        let missing = fields
            .names
            .iter()
            .map(String::as_str)
            .filter(|f| !record.contains_key(*f));
        if let Some(meant) = crate::error::did_you_mean(name, missing) {
            return Err(RecordError::Misspelt {
                field: name.clone(),
                target: fields.target.to_owned(),
                meant: meant.to_owned(),
                mapped: listing(),
            });
        }
    }
    if !fields.names.iter().any(|f| present(f)) {
        return Err(RecordError::NoMappedField {
            target: fields.target.to_owned(),
            mapped: listing(),
        });
    }
    if let Some(title) = fields.title {
        let empty = match record.get(title) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.trim().is_empty(),
            Some(_) => false,
        };
        if empty {
            return Err(RecordError::NoTitle {
                field: title.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn checked(record: Value) -> Result<(), String> {
        let Value::Object(map) = record else {
            unreachable!()
        };
        check(
            &map,
            Fields {
                target: "tweets",
                names: &["handle".to_owned(), "tweet".to_owned()],
                title: Some("handle"),
            },
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn records_are_refused_with_the_reason_and_the_fix() {
        assert_eq!(
            checked(json!({"handle": "@a", "tweet": "t", "id": "k"})),
            Ok(())
        );
        assert_eq!(checked(json!({"handle": "@a"})), Ok(()));
        // Other fields are ignored, a near-miss too when its look-alike is present.
        assert_eq!(checked(json!({"handle": "@a", "when": 1})), Ok(()));
        assert_eq!(
            checked(json!({"handle": "@a", "tweet": "t", "tweets": 1})),
            Ok(())
        );
        let cases = [
            (
                json!({"handle": "@c", "twet": "typo"}),
                "did you mean \"tweet\"?",
            ),
            (
                json!({"tweet": "hi"}),
                "no \"handle\", which fills the row's title",
            ),
            (json!({"handle": " ", "tweet": "hi"}), "no \"handle\""),
            (
                json!({"handle": null, "tweet": null}),
                "none of the fields target tweets maps (handle, tweet)",
            ),
            (json!({}), "none of the fields"),
        ];
        for (record, piece) in cases {
            let err = checked(record.clone()).expect_err(&record.to_string());
            assert!(err.contains(piece), "{record}: {err:?} lacks {piece:?}");
        }
    }
}
