//! Why a record cannot become a row. Its text is the reason written to the dead-letter file (and
//! shown by `push`), so each says what is wrong and how to write it instead.

/// A record refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The line is not UTF-8.
    #[error("the line is not valid UTF-8 (at byte {at}); producers must write UTF-8 JSON")]
    NotUtf8 {
        /// The first byte that is not.
        at: usize,
    },
    /// The line is not JSON.
    #[error("the line is not valid JSON: {0}")]
    NotJson(String),
    /// The line is JSON but not an object.
    #[error(
        "the line is JSON but not an object (it is {kind}); write one object per line, such as {{\"handle\":\"@x\",\"tweet\":\"…\"}}"
    )]
    NotAnObject {
        /// What it is.
        kind: &'static str,
    },
    /// The `"id"` field is an empty string.
    #[error("the \"id\" field is empty; give each record a non-empty id or leave the field out")]
    EmptyKey,
    /// The `"id"` field is too long.
    #[error("the \"id\" field is {chars} characters long, over the limit of {max}")]
    LongKey {
        /// Its length.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// The `"id"` field is neither a string nor a number.
    #[error("the \"id\" field is {kind}, not a string; use a string key or leave the field out")]
    KeyType {
        /// What it is.
        kind: &'static str,
    },
    /// A field looks like a misspelling of a mapped field the record lacks.
    #[error(
        "field \"{field}\" is not mapped by target {target}; did you mean \"{meant}\"? (it maps {mapped}): correct the field's name, or map it in [target.properties]"
    )]
    Misspelt {
        /// The field.
        field: String,
        /// The target.
        target: String,
        /// The mapped field it resembles.
        meant: String,
        /// The mapped fields, joined.
        mapped: String,
    },
    /// No mapped field is present.
    #[error("the record has none of the fields target {target} maps ({mapped})")]
    NoMappedField {
        /// The target.
        target: String,
        /// The mapped fields, joined.
        mapped: String,
    },
    /// The title's field is missing or empty.
    #[error(
        "the record has no \"{field}\", which fills the row's title; give every record a non-empty \"{field}\""
    )]
    NoTitle {
        /// The field mapped to the title.
        field: String,
    },
    /// A value does not convert to its property's type.
    #[error("field \"{field}\" (property \"{property}\", {kind}): {problem}")]
    Convert {
        /// The field.
        field: String,
        /// The property's name.
        property: String,
        /// The property's type.
        kind: String,
        /// What is wrong with the value.
        problem: String,
    },
    /// The line is longer than `max_line_bytes`.
    #[error(
        "the line is {bytes} bytes, over max_line_bytes ({max}); split the record, or raise max_line_bytes in [daemon]"
    )]
    TooLong {
        /// Its length, without the newline.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The line was longer than `max_line_bytes` when the daemon read it: only its length was
    /// kept.
    #[error(
        "the line is {bytes} bytes, over max_line_bytes ({max}); its bytes were not kept: split the record, or raise max_line_bytes"
    )]
    Oversized {
        /// Its length, without the newline.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// The record's key does not fit the dedupe property.
    #[error("the record's key cannot be stored in the dedupe property: {0}")]
    DedupeKey(String),
}

/// A target's `[target.properties]` mapping that does not fit its destination's schema. Its text
/// names the field, the property and what the destination has instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// A mapped property does not exist.
    #[error(
        "field \"{field}\" maps to property \"{property}\", which {destination} does not have; {}(it has {has})",
        near.as_ref().map(|n| format!("did you mean \"{n}\"? ")).unwrap_or_default()
    )]
    NoSuchProperty {
        /// The record field.
        field: String,
        /// The property named.
        property: String,
        /// The destination, described.
        destination: String,
        /// A property of a near name, if any.
        near: Option<String>,
        /// The destination's properties and their types.
        has: String,
    },
    /// A mapped property is of a type notion-inbox cannot write.
    #[error(
        "field \"{field}\" maps to property \"{property}\" of type {kind}, which notion-inbox cannot write; map it to a title, rich_text, url, email, phone_number, number, checkbox, date, select or multi_select property"
    )]
    Unwritable {
        /// The record field.
        field: String,
        /// The property.
        property: String,
        /// Its type.
        kind: String,
    },
    /// The dedupe property is not rich_text.
    #[error(
        "dedupe_property \"{property}\" is of type {kind}, but it must be a rich_text (Text) property; change its type in Notion or pick another"
    )]
    DedupeType {
        /// The property.
        property: String,
        /// Its type.
        kind: String,
    },
    /// The dedupe property does not exist.
    #[error(
        "dedupe_property \"{property}\" is not a property of {destination}; add a Text property named \"{property}\" to it (it has {has})"
    )]
    NoDedupeProperty {
        /// The property named.
        property: String,
        /// The destination, described.
        destination: String,
        /// The destination's properties and their types.
        has: String,
    },
    /// The dedupe property also receives a field.
    #[error(
        "dedupe_property \"{property}\" is also the target of field \"{field}\"; it must be a property of its own"
    )]
    DedupeMapped {
        /// The property.
        property: String,
        /// The field mapped to it.
        field: String,
    },
}
