//! TOML parse errors, said in the terms of this file: what serde reports (`unknown field`, `invalid
//! type: map, expected a sequence`, `expected f64`) becomes what to write instead.

/// The message for a TOML or serde error `message` met in `text`.
pub(super) fn explain(message: &str, text: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        return unknown_field(message, rest);
    }
    if message.starts_with("invalid type: map, expected a sequence") {
        let hint = if text.contains("[[targets]]") {
            "`[[targets]]` is not a section of this file: each target is a `[[target]]` table (singular, double brackets), with its `[target.properties]` after it"
        } else {
            "each target is a `[[target]]` table (double brackets), with its `[target.properties]` after it"
        };
        return format!("{message}: {hint}");
    }
    if let Some(rest) = message.strip_prefix("invalid type: string \"") {
        let (value, expected) = rest.split_once("\", expected ").unwrap_or((rest, ""));
        let (kind, parses) = match expected {
            "f64" | "f32" => ("a number", value.trim().parse::<f64>().is_ok()),
            "i64" | "u64" | "i32" | "u32" | "usize" | "u16" | "u8" => {
                ("a whole number", value.trim().parse::<i64>().is_ok())
            }
            "a boolean" => ("true or false", matches!(value, "true" | "false")),
            _ => return message.to_owned(),
        };
        return if parses {
            format!("\"{value}\" is a string, but {kind} is expected here: write it without quotes")
        } else {
            format!("\"{value}\" is a string, but {kind} is expected here")
        };
    }
    message.to_owned()
}

/// `unknown field `x`, expected one of `a`, `b`` with the likely one named.
fn unknown_field(message: &str, rest: &str) -> String {
    let Some((field, expected)) = rest.split_once('`') else {
        return message.to_owned();
    };
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    if field == "targets" && candidates.contains(&"target") {
        return format!(
            "{message}: each target is a `[[target]]` table (singular), with its `[target.properties]` after it"
        );
    }
    match crate::error::did_you_mean(field, candidates.iter().copied()) {
        Some(near) => format!(
            "unknown field `{field}`; did you mean `{near}`? (expected one of{})",
            expected.trim_start_matches(", expected one of")
        ),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::explain;

    #[test]
    fn serde_messages_become_what_to_write() {
        let cases = [
            (
                "unknown field `nmae`, expected one of `name`, `inbox`",
                "",
                "unknown field `nmae`; did you mean `name`? (expected one of `name`, `inbox`)",
            ),
            (
                "unknown field `demon`, expected one of `notion`, `daemon`, `target`",
                "",
                "did you mean `daemon`?",
            ),
            (
                "unknown field `targets`, expected one of `notion`, `daemon`, `target`",
                "",
                "each target is a `[[target]]` table (singular)",
            ),
            (
                "invalid type: map, expected a sequence",
                "[[targets]]\nname = \"t\"\n[target.properties]\n",
                "`[[targets]]` is not a section of this file",
            ),
            (
                "invalid type: string \"3\", expected f64",
                "",
                "\"3\" is a string, but a number is expected here: write it without quotes",
            ),
            (
                "invalid type: string \"yes\", expected a boolean",
                "",
                "\"yes\" is a string, but true or false is expected here",
            ),
            (
                "unknown field `zzz`, expected one of `name`",
                "",
                "unknown field `zzz`, expected one of `name`",
            ),
        ];
        for (message, text, want) in cases {
            let got = explain(message, text);
            assert!(got.contains(want), "{message}: {got:?} lacks {want:?}");
        }
    }
}
