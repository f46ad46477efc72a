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
    /// The record's key does not fit the dedupe property.
    #[error("the record's key cannot be stored in the dedupe property: {0}")]
    DedupeKey(String),
}
