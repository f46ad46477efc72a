//! Which file is this? The identity of an open inbox file ([`FileIdentity`], defined with the
//! core's positions in `notion_inbox_core::position`, which says what it is made of), read from
//! the file.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

pub use notion_inbox_core::position::{FileIdentity, HEAD_MAX};

/// The identity of an open file, or `None` while its head is not settled yet (no `\n` within the
/// first [`HEAD_MAX`] bytes and fewer than [`HEAD_MAX`] bytes in the file).
pub fn of(file: &File) -> io::Result<Option<FileIdentity>> {
    let meta = file.metadata()?;
    let mut head = [0u8; HEAD_MAX as usize];
    let n = read_full_at(file, &mut head, 0)?;
    Ok(FileIdentity::from_start(meta.dev(), meta.ino(), &head[..n]))
}

/// Whether the first `head_len` bytes of `file` still hash to `id`'s fingerprint. A file shorter
/// than the head does not match.
pub fn head_matches(id: &FileIdentity, file: &File) -> io::Result<bool> {
    let mut head = [0u8; HEAD_MAX as usize];
    let want = (id.head_len as usize).min(head.len());
    let n = read_full_at(file, &mut head[..want], 0)?;
    Ok(id.matches_head(&head[..n]))
}

/// Reads into `buf` from `offset` until it is full or the file ends; returns the bytes read.
pub(crate) fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn head_is_unsettled_until_a_newline_or_256_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = File::create(&path).unwrap();
        let r = File::open(&path).unwrap();
        assert_eq!(of(&r).unwrap(), None);
        w.write_all(b"{\"partial\":").unwrap();
        assert_eq!(of(&r).unwrap(), None);
        w.write_all(b"1}\nmore").unwrap();
        let id = of(&r).unwrap().unwrap();
        assert_eq!(id.head_len, 14);
        assert_eq!(
            id.head_hash,
            notion_inbox_core::position::fnv1a64(b"{\"partial\":1}\n")
        );
        // Appending never changes a settled identity.
        w.write_all(&[b'x'; 1000]).unwrap();
        assert_eq!(of(&r).unwrap(), Some(id));
        assert!(head_matches(&id, &r).unwrap());
    }

    #[test]
    fn a_long_first_line_settles_at_256_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![b'y'; 300]).unwrap();
        let id = of(&File::open(&path).unwrap()).unwrap().unwrap();
        assert_eq!(id.head_len, HEAD_MAX);
    }

    #[test]
    fn a_rewritten_head_no_longer_matches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"first\n").unwrap();
        let f = File::open(&path).unwrap();
        let id = of(&f).unwrap().unwrap();
        // Same inode (the file is rewritten in place, as after a truncation), different head.
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap()
            .write_all(b"other\n")
            .unwrap();
        assert!(!head_matches(&id, &f).unwrap());
        // A file shorter than the head does not match either.
        f.set_len(0).ok();
        std::fs::write(&path, b"fir").unwrap();
        assert!(!head_matches(&id, &f).unwrap());
    }
}
