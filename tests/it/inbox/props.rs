//! The same bytes give the same records however they are written and read.

use std::fs::OpenOptions;
use std::io::Write;

use notion_inbox::inbox::{Item, TailOptions, Tailer};
use proptest::prelude::*;

use super::Fixture;

/// A record as the model sees it: (offset, end, Some(text) or None for oversized, length).
type Rec = (u64, u64, Option<Vec<u8>>, u64);

/// The specification, written the obvious way over the whole content: split at `\n`, skip a NUL
/// run at a line's start, skip blank lines, strip one `\r`, flag lines over `max_line`.
fn model(content: &[u8], max_line: usize) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(i) = content[start..].iter().position(|&b| b == b'\n') {
        let end = start + i + 1;
        let mut offset = start;
        while content[offset] == 0 {
            offset += 1;
        }
        let line = &content[offset..end - 1];
        if !line.iter().all(|&b| matches!(b, b' ' | b'\t' | b'\r')) {
            let text =
                (line.len() <= max_line).then(|| line.strip_suffix(b"\r").unwrap_or(line).to_vec());
            out.push((offset as u64, end as u64, text, line.len() as u64));
        }
        start = end;
    }
    out
}

fn records(items: &[Item]) -> Vec<Rec> {
    items
        .iter()
        .filter_map(|item| match item {
            Item::Line { pos, text } => Some((pos.offset, pos.end, Some(text.clone()), u64::MAX)),
            Item::Oversized { pos, len } => Some((pos.offset, pos.end, None, *len)),
            Item::Event(_) => None,
        })
        .map(|(o, e, t, l)| (o, e, t.clone(), if t.is_some() { u64::MAX } else { l }))
        .collect()
}

fn normalise(model: Vec<Rec>) -> Vec<Rec> {
    model
        .into_iter()
        .map(|(o, e, t, l)| (o, e, t.clone(), if t.is_some() { u64::MAX } else { l }))
        .collect()
}

/// Bytes drawn mostly from JSON-ish text, with newlines, CRs, NULs and blanks mixed in.
fn content() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            6 => prop::sample::select(b"{}\":abcxyz0123".to_vec()),
            2 => Just(b'\n'),
            1 => Just(b'\r'),
            1 => Just(0u8),
            1 => Just(b' '),
            1 => any::<u8>(),
        ],
        0..600,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_write_chunking_and_read_budget_gives_the_model_records(
        content in content(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        chunk in 1usize..40,
        max_line in 1usize..30,
        items in 1usize..5,
        bytes in 1usize..50,
    ) {
        let fx = Fixture::new();
        let opts = TailOptions { max_line, chunk, ..super::quick() };
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(content.len() + 1)).collect();
        cuts.push(content.len());
        cuts.sort_unstable();

        let mut file = OpenOptions::new().append(true).create(true).open(&fx.path).unwrap();
        let mut t = Tailer::new(fx.path.clone(), opts, None).unwrap();
        let mut got = Vec::new();
        let mut written = 0;
        for cut in cuts {
            file.write_all(&content[written..cut]).unwrap();
            written = cut;
            // Read some, not necessarily all, between writes.
            got.extend(t.next_batch(items, bytes).unwrap());
        }
        got.extend(super::drain_with(&mut t, items, bytes));

        let want = normalise(model(&content, max_line));
        prop_assert_eq!(&records(&got), &want);

        // One read of the whole file, with other buffer sizes, gives the same.
        let whole = TailOptions { max_line, chunk: 4096, ..super::quick() };
        let mut t = Tailer::new(fx.path.clone(), whole, None).unwrap();
        prop_assert_eq!(records(&super::drain(&mut t)), want);
    }
}
