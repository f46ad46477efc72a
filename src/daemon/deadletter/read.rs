//! Reading a dead-letter file: every entry for the commands, and the names of the last entries for
//! the writer.

use std::fs::File;
use std::path::Path;

use serde::Deserialize;

use super::DeadLetter;

/// Reads every entry of a dead-letter file (a missing file has none). A line that does not parse is
/// returned as an error naming the file and line.
pub fn read_all(path: &Path) -> std::io::Result<Vec<DeadLetter>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}:{}: not a dead-letter entry: {e}", path.display(), i + 1),
                )
            })
        })
        .collect()
}

/// The `position`s of the last `max` entries of a dead-letter file, reading it backwards in chunks
/// (a missing file has none). Lines that do not parse are skipped: they are not this run's.
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
        let start = end.saturating_sub(64 * 1024);
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
            if let Ok(entry) = serde_json::from_slice::<PositionOnly>(line)
                && let Some(p) = entry.position
            {
                found.insert(p);
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
