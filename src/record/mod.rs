//! A record: one JSON object of the inbox, defined here once for the daemon, `push`, `requeue` and
//! the fuzz target. [`line`] parses a line into a record and finds its key, [`fields`] says which
//! fields a record may hold, and [`Mapper`] turns it into the body of a Notion page create, through
//! the target's `[target.properties]` mapping and the destination's schema.
//!
//! Conversions (a value that does not convert is a per-record error with the reason):
//! - title, rich_text: a string (numbers and booleans are written as text), split into items of at
//!   most 2000 UTF-16 code units, never inside a character, at most 100 items;
//! - url (≤ 2000), email and phone_number (≤ 200): a string; an empty string clears the property;
//! - number: a JSON number or a string holding one; checkbox: a boolean;
//! - date: an ISO 8601 date or date-time string, or `{"start": …, "end": …}`;
//! - select: an option name; multi_select: an array of names (or one name);
//! - a missing or null field is left out, and so is a field that is not mapped; a record with none
//!   of the mapped fields, without a title, or with a misspelt field is refused ([`fields`]).

use serde_json::{Map, Value, json};

mod error;
pub(crate) mod fields;
pub mod line;
mod local;
pub mod prepare;

pub use error::{MappingError, RecordError};
pub use local::LocalRules;

use crate::config::Target;
use crate::notion::{Property, PropertyKind, Resolved};

/// Notion's limit on one rich-text item's `text.content`, counted here in UTF-16 code units (which
/// never undercounts, whatever Notion counts).
pub const TEXT_ITEM_MAX: usize = 2000;
/// Notion's limit on the items of one rich-text array.
pub const TEXT_ITEMS_MAX: usize = 100;
/// Notion's limit on a URL.
pub const URL_MAX: usize = 2000;
/// Notion's limit on an email address or phone number.
pub const SHORT_MAX: usize = 200;
/// Notion's limit on the options of one multi_select value.
pub const MULTI_MAX: usize = 100;

/// Maps records of one target onto its destination.
#[derive(Debug, Clone)]
pub struct Mapper {
    /// The target's name, for messages.
    target: String,
    /// The page's parent.
    parent: Value,
    /// (record field, property) in the order of the config.
    fields: Vec<(String, Property)>,
    /// The record fields of `fields`, for [`fields::check`].
    names: Vec<String>,
    /// The field mapped to the title property, if one is.
    title: Option<String>,
    /// The rich_text property receiving each record's key, if deduplicating.
    dedupe: Option<Property>,
}

impl Mapper {
    /// Checks the mapping against the schema: every property exists and has a type notion-inbox
    /// can write, and the dedupe property is rich_text.
    pub fn new(target: &Target, resolved: &Resolved) -> Result<Mapper, MappingError> {
        let listing = || {
            resolved
                .properties
                .iter()
                .map(|p| format!("\"{}\" ({})", p.name, p.kind.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut fields = Vec::new();
        for (field, prop) in &target.properties {
            let Some(p) = resolved.property(prop) else {
                let names = resolved.properties.iter().map(|p| p.name.as_str());
                return Err(MappingError::NoSuchProperty {
                    field: field.clone(),
                    property: prop.clone(),
                    destination: resolved.describe(),
                    near: crate::error::did_you_mean(prop, names).map(str::to_owned),
                    has: listing(),
                });
            };
            if let PropertyKind::Other(ty) = &p.kind {
                return Err(MappingError::Unwritable {
                    field: field.clone(),
                    property: p.name.clone(),
                    kind: ty.clone(),
                });
            }
            fields.push((field.clone(), p.clone()));
        }
        let dedupe = match &target.dedupe_property {
            None => None,
            Some(name) => match resolved.property(name) {
                Some(p) if p.kind == PropertyKind::RichText => Some(p.clone()),
                Some(p) => {
                    return Err(MappingError::DedupeType {
                        property: name.clone(),
                        kind: p.kind.as_str().to_owned(),
                    });
                }
                None => {
                    return Err(MappingError::NoDedupeProperty {
                        property: name.clone(),
                        destination: resolved.describe(),
                        has: listing(),
                    });
                }
            },
        };
        if let Some(d) = &dedupe
            && let Some((field, _)) = fields.iter().find(|(_, p)| p.id == d.id)
        {
            return Err(MappingError::DedupeMapped {
                property: d.name.clone(),
                field: field.clone(),
            });
        }
        let names = fields.iter().map(|(f, _)| f.clone()).collect();
        let title = fields
            .iter()
            .find(|(_, p)| p.kind == PropertyKind::Title)
            .map(|(f, _)| f.clone());
        Ok(Mapper {
            target: target.name.clone(),
            parent: resolved.parent(),
            fields,
            names,
            title,
            dedupe,
        })
    }

    /// Whether the mapper writes each record's key into a dedupe property.
    pub fn dedupes(&self) -> bool {
        self.dedupe.is_some()
    }

    /// The body of `POST /v1/pages` for `record`, whose key is `key`.
    pub fn page_body(&self, record: &Map<String, Value>, key: &str) -> Result<Value, RecordError> {
        fields::check(
            record,
            fields::Fields {
                target: &self.target,
                names: &self.names,
                title: self.title.as_deref(),
            },
        )?;
        let mut properties = Map::new();
        for (field, prop) in &self.fields {
            let Some(value) = record.get(field).filter(|v| !v.is_null()) else {
                continue;
            };
            let converted = convert(value, prop).map_err(|problem| RecordError::Convert {
                field: field.clone(),
                property: prop.name.clone(),
                kind: prop.kind.as_str().to_owned(),
                problem,
            })?;
            properties.insert(prop.id.clone(), converted);
        }
        if let Some(d) = &self.dedupe {
            let items = text_items(key).map_err(RecordError::DedupeKey)?;
            properties.insert(d.id.clone(), json!({"rich_text": items}));
        }
        Ok(json!({"parent": self.parent, "properties": properties}))
    }
}

/// Converts one JSON value to a property value of `prop`'s type.
fn convert(value: &Value, prop: &Property) -> Result<Value, String> {
    match &prop.kind {
        PropertyKind::Title => Ok(json!({"title": text_items(&as_text(value)?)?})),
        PropertyKind::RichText => Ok(json!({"rich_text": text_items(&as_text(value)?)?})),
        PropertyKind::Url => short(value, "url", URL_MAX),
        PropertyKind::Email => short(value, "email", SHORT_MAX),
        PropertyKind::PhoneNumber => short(value, "phone_number", SHORT_MAX),
        PropertyKind::Number => {
            let n = match value {
                Value::Number(n) => n.clone(),
                Value::String(s) => s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .and_then(serde_json::Number::from_f64)
                    .ok_or_else(|| format!("\"{s}\" is not a number"))?,
                other => return Err(format!("expected a number, got {}", kind_of(other))),
            };
            Ok(json!({"number": n}))
        }
        PropertyKind::Checkbox => match value {
            Value::Bool(b) => Ok(json!({"checkbox": b})),
            other => Err(format!("expected true or false, got {}", kind_of(other))),
        },
        PropertyKind::Date => {
            let (start, end) = match value {
                Value::String(s) => (s.clone(), None),
                Value::Object(o) => (
                    o.get("start")
                        .and_then(Value::as_str)
                        .ok_or("a date object needs a \"start\" string")?
                        .to_owned(),
                    o.get("end").and_then(Value::as_str).map(str::to_owned),
                ),
                other => return Err(format!("expected a date string, got {}", kind_of(other))),
            };
            for d in std::iter::once(&start).chain(end.as_ref()) {
                check_date(d)?;
            }
            Ok(match end {
                Some(end) => json!({"date": {"start": start, "end": end}}),
                None => json!({"date": {"start": start}}),
            })
        }
        PropertyKind::Select => Ok(json!({"select": {"name": option_name(value)?}})),
        PropertyKind::MultiSelect => {
            let names: Vec<String> = match value {
                Value::Array(items) => items.iter().map(option_name).collect::<Result<_, _>>()?,
                single => vec![option_name(single)?],
            };
            if names.len() > MULTI_MAX {
                return Err(format!(
                    "{} options, over Notion's limit of {MULTI_MAX}",
                    names.len()
                ));
            }
            let items: Vec<Value> = names.into_iter().map(|n| json!({"name": n})).collect();
            Ok(json!({"multi_select": items}))
        }
        PropertyKind::Other(ty) => Err(format!("notion-inbox cannot write a {ty} property")),
    }
}

/// What a JSON value is, for messages ("a number", "an array").
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Text of a string, number or boolean.
fn as_text(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("expected text, got {}", kind_of(other))),
    }
}

fn short(value: &Value, ty: &str, max: usize) -> Result<Value, String> {
    let Value::String(s) = value else {
        return Err(format!("expected a string, got {}", kind_of(value)));
    };
    if s.is_empty() {
        return Ok(json!({ ty: null }));
    }
    let len = s.encode_utf16().count();
    if len > max {
        return Err(format!("{len} characters, over Notion's limit of {max}"));
    }
    Ok(json!({ ty: s }))
}

fn option_name(value: &Value) -> Result<String, String> {
    let Value::String(s) = value else {
        return Err(format!("expected an option name, got {}", kind_of(value)));
    };
    if s.trim().is_empty() {
        return Err("an option name is empty".into());
    }
    if s.contains(',') {
        return Err(format!(
            "option \"{s}\" contains a comma, which Notion refuses"
        ));
    }
    if s.encode_utf16().count() > 100 {
        return Err("an option name is over 100 characters".into());
    }
    Ok(s.clone())
}

fn check_date(s: &str) -> Result<(), String> {
    let ok = chrono::DateTime::parse_from_rfc3339(s).is_ok()
        || chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").is_ok()
        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "\"{s}\" is not an ISO 8601 date such as 2026-01-31 or 2026-01-31T12:00:00Z"
        ))
    }
}

/// Splits `text` into rich-text items of at most [`TEXT_ITEM_MAX`] UTF-16 code units each, never
/// inside a character; refuses text that needs more than [`TEXT_ITEMS_MAX`] items.
pub fn text_items(text: &str) -> Result<Vec<Value>, String> {
    let pieces = split_text(text, TEXT_ITEM_MAX);
    if pieces.len() > TEXT_ITEMS_MAX {
        return Err(format!(
            "the text is {} characters (UTF-16 code units), over what Notion holds in one property ({} items of {})",
            text.encode_utf16().count(),
            TEXT_ITEMS_MAX,
            TEXT_ITEM_MAX
        ));
    }
    Ok(pieces
        .into_iter()
        .map(|p| json!({"type": "text", "text": {"content": p}}))
        .collect())
}

/// Splits `text` into pieces of at most `max` UTF-16 code units, at character boundaries. Empty
/// text gives no pieces.
pub fn split_text(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut units = 0;
    for (i, c) in text.char_indices() {
        let w = c.len_utf16();
        if units + w > max {
            out.push(&text[start..i]);
            start = i;
            units = 0;
        }
        units += w;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NotionVersion;

    fn prop(name: &str, id: &str, kind: &str) -> Property {
        Property {
            name: name.into(),
            id: id.into(),
            kind: PropertyKind::parse(kind),
            options: vec![],
        }
    }

    pub(super) fn resolved() -> Resolved {
        Resolved {
            version: NotionVersion::V2025_09_03,
            database_id: Some("db".into()),
            data_source_id: Some("ds".into()),
            title: "Twitter".into(),
            properties: vec![
                prop("handle", "title", "title"),
                prop("tweet", "tw", "rich_text"),
                prop("Inbox ID", "ib", "rich_text"),
                prop("Score", "sc", "number"),
                prop("When", "wh", "date"),
                prop("Tags", "tg", "multi_select"),
                prop("Done", "dn", "checkbox"),
                prop("Link", "ln", "url"),
                prop("Who", "pp", "people"),
            ],
        }
    }

    pub(super) fn target(map: &[(&str, &str)], dedupe: Option<&str>) -> Target {
        let text = format!(
            "[[target]]\nname = \"t\"\ninbox = \"i.jsonl\"\ndatabase_id = \"0123456789abcdef0123456789abcdef\"\ntoken = \"x\"\n{}[target.properties]\n{}",
            dedupe
                .map(|d| format!("dedupe_property = \"{d}\"\n"))
                .unwrap_or_default(),
            map.iter()
                .map(|(f, p)| format!("\"{f}\" = \"{p}\"\n"))
                .collect::<String>()
        );
        crate::config::Config::from_toml(std::path::Path::new("/x/c.toml"), &text)
            .unwrap()
            .targets
            .remove(0)
    }

    fn record(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_tweet_becomes_a_page_keyed_by_property_id() {
        let m = Mapper::new(
            &target(&[("handle", "title"), ("tweet", "tweet")], Some("Inbox ID")),
            &resolved(),
        )
        .unwrap();
        let body = m
            .page_body(&record(json!({"handle":"@a","tweet":"hi","extra":1})), "k1")
            .unwrap();
        assert_eq!(
            body,
            json!({"parent":{"type":"data_source_id","data_source_id":"ds"},"properties":{
                "title":{"title":[{"type":"text","text":{"content":"@a"}}]},
                "tw":{"rich_text":[{"type":"text","text":{"content":"hi"}}]},
                "ib":{"rich_text":[{"type":"text","text":{"content":"k1"}}]}}})
        );
    }

    #[test]
    fn typed_fields_convert_or_say_why_not() {
        let m = Mapper::new(
            &target(
                &[
                    ("handle", "title"),
                    ("s", "Score"),
                    ("w", "When"),
                    ("t", "Tags"),
                    ("d", "Done"),
                    ("l", "Link"),
                ],
                None,
            ),
            &resolved(),
        )
        .unwrap();
        let ok = m
            .page_body(
                &record(
                    json!({"handle":"@a","s":"4.5","w":"2026-01-31","t":["x","y"],"d":true,"l":""}),
                ),
                "k",
            )
            .unwrap();
        assert_eq!(ok["properties"]["sc"], json!({"number": 4.5}));
        assert_eq!(
            ok["properties"]["tg"],
            json!({"multi_select":[{"name":"x"},{"name":"y"}]})
        );
        assert_eq!(ok["properties"]["ln"], json!({"url": null}));
        for (rec, needle) in [
            (
                json!({"handle":"@a","s": "many"}),
                "\"many\" is not a number",
            ),
            (
                json!({"handle":"@a","w": "yesterday"}),
                "not an ISO 8601 date",
            ),
            (json!({"handle":"@a","d": "yes"}), "expected true or false"),
            (json!({"handle":"@a","t": ["a,b"]}), "comma"),
            (json!({"handle": {"x": 1}}), "expected text, got an object"),
            (json!({"other": 1}), "none of the fields target t maps"),
            (json!({"handle":"@a","S": 1}), "did you mean \"s\"?"),
            (
                json!({"s": 1}),
                "no \"handle\", which fills the row's title",
            ),
        ] {
            let e = m
                .page_body(&record(rec.clone()), "k")
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{rec}: {e}");
        }
    }

    #[test]
    fn a_mapping_that_does_not_fit_the_schema_is_refused() {
        let e = Mapper::new(&target(&[("handle", "Tweet ")], None), &resolved())
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean \"tweet\"?"), "{e}");
        let e = Mapper::new(&target(&[("handle", "Nope")], None), &resolved())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"Nope\"") && e.contains("\"tweet\" (rich_text)"),
            "{e}"
        );
        let e = Mapper::new(&target(&[("handle", "Who")], None), &resolved())
            .unwrap_err()
            .to_string();
        assert!(e.contains("people"), "{e}");
        let e = Mapper::new(&target(&[("handle", "title")], Some("Score")), &resolved())
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be a rich_text"), "{e}");
    }

    #[test]
    fn long_text_is_split_at_2000_utf16_units_and_capped_at_100_items() {
        let text = "é".repeat(1999) + "😀" + "abc";
        let pieces = split_text(&text, 2000);
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].encode_utf16().count(), 1999);
        assert_eq!(pieces.concat(), text);
        assert!(text_items(&"x".repeat(200_000)).is_ok());
        let e = text_items(&"x".repeat(200_001)).unwrap_err();
        assert!(e.contains("200001"), "{e}");
        assert!(split_text("", 2000).is_empty());
    }

    proptest::proptest! {
        /// Joined pieces equal the input, no piece is over the limit, none is empty, and each ends
        /// on a character boundary (slicing would have panicked otherwise).
        #[test]
        fn splitting_keeps_the_text_and_respects_the_limit(
            text in "(\\PC|[\u{1F600}-\u{1F64F}]|e\u{301}){0,300}",
            max in 2usize..40,
        ) {
            let pieces = split_text(&text, max);
            proptest::prop_assert_eq!(pieces.concat(), text.clone());
            for p in &pieces {
                proptest::prop_assert!(!p.is_empty());
                proptest::prop_assert!(p.encode_utf16().count() <= max);
            }
            // Greedy: every piece but the last is full enough that the next character would not fit.
            for w in pieces.windows(2) {
                let next = w[1].chars().next().unwrap().len_utf16();
                proptest::prop_assert!(w[0].encode_utf16().count() + next > max);
            }
        }
    }
}
