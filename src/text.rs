//! Text that comes from elsewhere, made safe to show: a workspace's or owner's name, a database's
//! title, a property's name, an error description from Notion, a value from a request. Whoever
//! connects a workspace chooses all of these, so none may reach a terminal, a log line or a page
//! as it is: an ESC retitles a terminal, a CR or LF forges a log line (journald reads `<3>` at
//! the start of a line as a priority), and a bidi override (U+202E) makes a table row read as
//! another.
//!
//! [`untrusted`] is the one definition: every character of the Unicode general categories Cc
//! (controls: C0, DEL, C1), Cf (format: bidi embeddings, overrides and isolates, zero-width
//! spaces and joiners, the BOM, tags) and Zl/Zp (line and paragraph separators) is shown escaped
//! as `\u{…}`, and the result is bounded. What it returns is one line, prints as it reads, and is
//! the same on a terminal, in a log and on a page (where it is HTML-escaped as well).

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// The most characters a name or title keeps (a longer one ends with `…`).
pub const LABEL_CHARS: usize = 120;

/// The most characters a longer text keeps, such as an error's description.
pub const MESSAGE_CHARS: usize = 2000;

/// `text` made safe to print, log and render, at most `max_chars` characters (escapes count as
/// the characters they take; a cut text ends with `…`).
pub fn untrusted(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    let mut count = 0;
    for c in text.chars() {
        let piece: std::borrow::Cow<'static, str> = if is_hidden(c) {
            format!("\\u{{{:x}}}", c as u32).into()
        } else {
            let mut buf = [0u8; 4];
            String::from(&*c.encode_utf8(&mut buf)).into()
        };
        out.push_str(&piece);
        count += piece.chars().count();
        if count > max_chars {
            return cut(out, max_chars);
        }
    }
    out
}

/// `text` cut to `max_chars - 1` characters and `…` (an escape is never cut in half: the cut
/// may fall inside one only when it is the last piece, which is dropped whole).
fn cut(text: String, max_chars: usize) -> String {
    let keep = max_chars.saturating_sub(1);
    let mut out: String = text.chars().take(keep).collect();
    if let Some(at) = out.rfind("\\u{")
        && !out[at..].contains('}')
    {
        out.truncate(at);
    }
    out.push('…');
    out
}

/// A name or title from elsewhere, made safe ([`untrusted`] within [`LABEL_CHARS`]).
pub fn label(text: &str) -> String {
    untrusted(text, LABEL_CHARS)
}

/// A message from elsewhere, made safe ([`untrusted`] within [`MESSAGE_CHARS`]).
pub fn message(text: &str) -> String {
    untrusted(text, MESSAGE_CHARS)
}

/// Whether `c` changes how the text around it is shown, or is not shown at all.
fn is_hidden(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_people_write_are_kept() {
        for s in [
            "Acme · 東京 ✓",
            "Café Müller",
            "שלום",
            "🚀 Launch",
            "a\"b'c<d>",
        ] {
            assert_eq!(untrusted(s, 100), s);
        }
    }

    #[test]
    fn controls_bidi_and_format_characters_are_escaped() {
        assert_eq!(label("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(label("x\r\n<3>forged"), "x\\u{d}\\u{a}<3>forged");
        assert_eq!(label("Victim\u{202e}proC"), "Victim\\u{202e}proC");
        assert_eq!(
            label("zero\u{200b}width\u{feff}"),
            "zero\\u{200b}width\\u{feff}"
        );
        assert_eq!(
            label("line\u{2028}para\u{2029}"),
            "line\\u{2028}para\\u{2029}"
        );
        assert_eq!(
            label("bell\x07nul\0del\x7fc1\u{85}"),
            "bell\\u{7}nul\\u{0}del\\u{7f}c1\\u{85}"
        );
        assert_eq!(
            label("iso\u{2066}late\u{2069}"),
            "iso\\u{2066}late\\u{2069}"
        );
    }

    #[test]
    fn length_is_bounded() {
        let long = "x".repeat(10_000);
        let l = label(&long);
        assert_eq!(l.chars().count(), LABEL_CHARS);
        assert!(l.ends_with('…'));
        let escapes = "\u{202e}".repeat(1000);
        assert!(label(&escapes).chars().count() <= LABEL_CHARS);
        assert_eq!(untrusted("abc", 3), "abc");
        assert_eq!(untrusted("abcd", 3), "ab…");
    }

    proptest! {
        /// Whatever the input: one line, no character that hides or moves text, bounded.
        #[test]
        fn the_result_is_one_plain_bounded_line(s in any::<String>(), max in 1usize..300) {
            let out = untrusted(&s, max);
            prop_assert!(out.chars().count() <= max);
            prop_assert!(!out.chars().any(is_hidden), "{out:?}");
            prop_assert!(!out.contains('\n') && !out.contains('\r'));
        }
    }
}
