//! How errors are shown: one chain of causes, without repeating a cause that the message above it
//! already quotes.

/// The error and its causes, joined with ": ". A cause whose text the message so far already
/// contains is left out: many errors quote their source in their own message (`cannot read
/// {path}: {source}`), and printing the source again only repeats it.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}

/// The candidate closest to `word`, if one is close enough to be a likely misspelling: compared
/// without case and surrounding spaces, by normalized Damerau-Levenshtein similarity of at least 0.7 (as
/// cargo and clap suggest).
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let norm = |s: &str| s.trim().to_lowercase();
    let word = norm(word);
    candidates
        .into_iter()
        .map(|c| (strsim::normalized_damerau_levenshtein(&word, &norm(c)), c))
        .filter(|(score, _)| *score >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::{chain, did_you_mean};

    #[test]
    fn near_misses_are_suggested_and_strangers_are_not() {
        let names = ["handle", "tweet", "id"];
        assert_eq!(did_you_mean("twet", names), Some("tweet"));
        assert_eq!(did_you_mean("Tweet ", names), Some("tweet"));
        assert_eq!(did_you_mean("handel", names), Some("handle"));
        assert_eq!(did_you_mean("timestamp", names), None);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read /etc/x: {source}; create it")]
    struct Quoting {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("target t")]
    struct Plain {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_quoted_cause_is_not_repeated_and_an_unquoted_one_is_added() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        assert_eq!(
            chain(&Quoting { source: io() }),
            "cannot read /etc/x: no such file; create it"
        );
        assert_eq!(chain(&Plain { source: io() }), "target t: no such file");
    }
}
