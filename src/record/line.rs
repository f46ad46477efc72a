//! From a line of the inbox to a record: JSON parsing and the record's key.

use serde_json::{Map, Value};

use super::{RecordError, kind_of};
use crate::inbox::LinePos;

/// The longest record key accepted (it is stored in a rich_text property when deduplicating).
pub const MAX_KEY_CHARS: usize = 500;

/// Parses one line (without its newline) into a JSON object. A UTF-8 byte order mark and a trailing
/// `\r` are tolerated. The error is the reason written to the dead-letter file.
pub fn parse_line(bytes: &[u8]) -> Result<Map<String, Value>, RecordError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| RecordError::NotUtf8 {
        at: e.valid_up_to(),
    })?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(RecordError::NotAnObject {
            kind: kind_of(&other),
        }),
        Err(e) => Err(RecordError::NotJson(e.to_string())),
    }
}

/// The record's key: its `"id"` field when present, else one derived from where the line sits and
/// what it holds, which is the same after a restart.
pub fn record_key(
    record: &Map<String, Value>,
    pos: &LinePos,
    bytes: &[u8],
) -> Result<String, RecordError> {
    // The content hash keeps a rewritten file whose head and offsets repeat from reusing keys.
    Ok(own_key(record)?
        .unwrap_or_else(|| format!("{}-{:016x}", pos.key(), crate::hash::fnv1a64(bytes))))
}

/// The record's own key, its `"id"` field, if it has one; an error if the field is not usable as a
/// key (empty, too long, not a string or number).
pub fn own_key(record: &Map<String, Value>) -> Result<Option<String>, RecordError> {
    match record.get(super::fields::KEY_FIELD) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(RecordError::EmptyKey),
        Some(Value::String(s)) if s.chars().count() > MAX_KEY_CHARS => Err(RecordError::LongKey {
            chars: s.chars().count(),
            max: MAX_KEY_CHARS,
        }),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(RecordError::KeyType {
            kind: kind_of(other),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_or_say_why_not() {
        let cases: &[(&[u8], Result<&str, &str>)] = &[
            (b"{\"handle\":\"@a\"}", Ok("@a")),
            (b"\xEF\xBB\xBF{\"handle\":\"@bom\"}", Ok("@bom")),
            (b"{\"handle\":\"@crlf\"}\r", Ok("@crlf")),
            (b"{\"handle\":", Err("not valid JSON")),
            (b"[1,2]", Err("not an object (it is an array)")),
            (b"\"str\"", Err("not an object (it is a string)")),
            (
                b"{\"handle\":\"\xff\"}",
                Err("not valid UTF-8 (at byte 11)"),
            ),
        ];
        for (line, expected) in cases {
            let got = parse_line(line);
            match (expected, &got) {
                (Ok(handle), Ok(map)) => assert_eq!(map["handle"], *handle),
                (Err(piece), Err(reason)) => {
                    let reason = reason.to_string();
                    assert!(reason.contains(piece), "{reason:?} lacks {piece:?}")
                }
                _ => panic!("{:?}: got {got:?}", String::from_utf8_lossy(line)),
            }
        }
    }
}
