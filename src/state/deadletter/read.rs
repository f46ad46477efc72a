//! Reading a dead-letter file: every entry for the commands, and the names of the last entries for
//! the writer.
//!
//! A line that is not an entry is kept, never dropped: a write torn by a crash or a full disk leaves
//! the start of an entry, and a person may have edited the file. [`read_contents`] hands such lines
//! back verbatim beside the entries, so a command that rewrites the file can keep them.
//!
//! A writer before the repair in [`super::DeadLetterFile`] appended right after a torn fragment, so
//! its first entry was glued to the fragment on one line. An entry is the only place where
//! [`ENTRY_START`] occurs in an entry's JSON (`line` is its first field and every `"` inside a
//! string is escaped), so such a line is cut before each occurrence and every piece that is a whole
//! entry is read as one.

use std::fs::File;
use std::path::Path;

use serde::Deserialize;

use super::DeadLetter;

/// How every entry's JSON begins.
pub(super) const ENTRY_START: &[u8] = b"{\"line\":";

/// What a dead-letter file holds, in file order within each list.
#[derive(Debug, Default)]
pub struct Contents {
    /// The lines that are entries.
    pub entries: Vec<EntryLine>,
    /// The lines that are not, kept so that a rewrite of the file loses nothing.
    pub unparsed: Vec<UnparsedLine>,
}

/// One entry and the exact line it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryLine {
    /// The line's number in the file (from 1, counting blank lines). A line that held a torn
    /// fragment with an entry glued to it gives an [`UnparsedLine`] and an entry of the same number.
    pub number: usize,
    /// The entry's JSON exactly as in the file, without the newline.
    pub text: String,
    /// The entry.
    pub entry: DeadLetter,
}

/// A line (or the part of one before a glued entry) that is not an entry.
#[derive(Debug, Clone, PartialEq)]
pub struct UnparsedLine {
    /// The line's number in the file (from 1, counting blank lines).
    pub number: usize,
    /// The exact bytes, without the newline (a torn write may end inside a UTF-8 sequence).
    pub bytes: Vec<u8>,
    /// Why it is not an entry.
    pub reason: String,
}

impl UnparsedLine {
    /// The error [`read_all`] gives for this line of `path`, with the fix.
    pub fn to_error(&self, path: &Path) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{}:{}: not a dead-letter entry: {}; a write cut short by a crash or a full disk \
                 leaves such a line: move it out of the file to read the other entries",
                path.display(),
                self.number,
                self.reason
            ),
        )
    }
}

/// Reads a dead-letter file (a missing file holds nothing), keeping every line: the entries, and
/// verbatim the lines that are not entries. Blank lines are skipped.
pub fn read_contents(path: &Path) -> std::io::Result<Contents> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(parse_contents(&bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Contents::default()),
        Err(e) => Err(e),
    }
}

/// Reads every entry of a dead-letter file (a missing file has none). A line that is not an entry
/// is an error naming the file and line ([`read_contents`] keeps such lines instead).
pub fn read_all(path: &Path) -> std::io::Result<Vec<DeadLetter>> {
    let contents = read_contents(path)?;
    if let Some(bad) = contents.unparsed.first() {
        return Err(bad.to_error(path));
    }
    Ok(contents.entries.into_iter().map(|e| e.entry).collect())
}

/// The lines of a dead-letter file's bytes.
pub(super) fn parse_contents(bytes: &[u8]) -> Contents {
    let mut contents = Contents::default();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        // As `str::lines` does, for files edited on another system.
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        parse_line(i + 1, line, &mut contents);
    }
    contents
}

/// Adds one non-blank line to `contents`.
fn parse_line(number: usize, line: &[u8], contents: &mut Contents) {
    let whole = match parse_entry(number, line) {
        Ok(entry) => {
            contents.entries.push(entry);
            return;
        }
        Err(reason) => reason,
    };
    // Maybe entries glued to torn fragments: keep each piece that is an entry, and the bytes
    // between them verbatim, merged.
    let mut entries = Vec::new();
    let mut rest: Vec<(usize, usize)> = Vec::new();
    for (start, end) in pieces(line) {
        match parse_entry(number, &line[start..end]) {
            Ok(entry) => entries.push((start, entry)),
            Err(_) => match rest.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ => rest.push((start, end)),
            },
        }
    }
    if entries.is_empty() {
        contents.unparsed.push(UnparsedLine {
            number,
            bytes: line.to_vec(),
            reason: whole,
        });
        return;
    }
    for (start, end) in rest {
        let bytes = &line[start..end];
        let reason = if entries.iter().any(|(s, _)| *s == end) {
            "cut short, and an entry was appended right after it".to_owned()
        } else {
            parse_entry(number, bytes).err().unwrap_or_default()
        };
        contents.unparsed.push(UnparsedLine {
            number,
            bytes: bytes.to_vec(),
            reason,
        });
    }
    contents.entries.extend(entries.into_iter().map(|(_, e)| e));
}

/// Line `number` as an entry, or why `bytes` is not one.
fn parse_entry(number: usize, bytes: &[u8]) -> Result<EntryLine, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let entry = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(EntryLine {
        number,
        text: text.to_owned(),
        entry,
    })
}

/// The ranges of `line` cut before each [`ENTRY_START`] after its first byte.
pub(super) fn pieces(line: &[u8]) -> Vec<(usize, usize)> {
    let mut cuts: Vec<usize> = memchr::memmem::find_iter(line, ENTRY_START)
        .filter(|&i| i > 0)
        .collect();
    cuts.insert(0, 0);
    cuts.push(line.len());
    cuts.windows(2).map(|w| (w[0], w[1])).collect()
}

/// The `position`s of the last `max` entries of a dead-letter file, reading it backwards in chunks
/// (a missing file has none). Lines that do not parse are skipped: they are not this run's; an entry
/// glued to a torn fragment counts.
pub(super) fn recent_positions(
    path: &Path,
    max: usize,
) -> std::io::Result<std::collections::HashSet<String>> {
    use std::os::unix::fs::FileExt;
    let mut found = std::collections::HashSet::new();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    let mut end = file.metadata()?.len();
    let mut carry: Vec<u8> = Vec::new();
    let mut seen = 0;
    while end > 0 && seen < max {
        // At least as much as the line carried over: across a long line the reads double, so
        // the copies into `chunk` cost the line's length, not its square.
        let start = end.saturating_sub((64 * 1024).max(carry.len() as u64));
        let mut chunk = vec![0u8; (end - start) as usize];
        file.read_exact_at(&mut chunk, start)?;
        chunk.extend_from_slice(&carry);
        let mut lines: Vec<&[u8]> = chunk.split(|b| *b == b'\n').collect();
        // The first piece may be the end of a line that starts in the previous chunk.
        let first = if start > 0 {
            lines.remove(0).to_vec()
        } else {
            Vec::new()
        };
        for line in lines.iter().rev() {
            if line.is_empty() {
                continue;
            }
            seen += 1;
            match serde_json::from_slice::<PositionOnly>(line) {
                Ok(entry) => found.extend(entry.position),
                Err(_) => {
                    for (s, e) in pieces(line) {
                        if let Ok(entry) = serde_json::from_slice::<PositionOnly>(&line[s..e]) {
                            found.extend(entry.position);
                        }
                    }
                }
            }
            if seen >= max {
                break;
            }
        }
        carry = first;
        end = start;
    }
    Ok(found)
}

/// The one field of an entry that [`recent_positions`] needs.
#[derive(Deserialize)]
struct PositionOnly {
    #[serde(default)]
    position: Option<String>,
}
