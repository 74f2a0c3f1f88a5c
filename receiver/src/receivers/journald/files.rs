//! A look at the headers of the journal files being read, so that a file
//! libsystemd leaves out without a word (truncated, not a journal file, an
//! unknown format) is reported: libsystemd logs such files at debug level
//! only and reads the others.
//!
//! The header layout is the journal file format's
//! (<https://systemd.io/JOURNAL_FILE_FORMAT/>): signature `LPKSHHRH`,
//! incompatible flags at 12, state at 16, `header_size` at 88, `arena_size`
//! at 96, `tail_object_offset` at 136.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

/// Incompatible flags libsystemd 252 knows: compressed XZ, LZ4, keyed
/// hash, compressed ZSTD, compact.
const KNOWN_INCOMPATIBLE_FLAGS: u32 = 0x1 | 0x2 | 0x4 | 0x8 | 0x10;
/// The smallest header of any format version.
const MIN_HEADER_SIZE: u64 = 208;
/// Most files remembered (a journal directory holds far fewer).
const MAX_TRACKED: usize = 16 * 1024;
/// Machine-id subdirectories looked into per directory.
const MAX_SUBDIRS: usize = 1024;

/// What is wrong with a file, if anything.
pub fn check_header(path: &Path) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let size = file
        .metadata()
        .map_err(|e| format!("cannot stat: {e}"))?
        .len();
    let mut header = [0u8; HEADER_READ];
    let n = read_full(&file, &mut header)?;
    check_header_bytes(&header[..n], size)
}

/// Bytes of the header looked at.
const HEADER_READ: usize = 144;

/// What is wrong with a journal file whose first bytes are `header` (at
/// most [`HEADER_READ`] are looked at) and whose size is `size`.
pub fn check_header_bytes(header: &[u8], size: u64) -> Result<(), String> {
    if header.len() < 16 || &header[..8] != b"LPKSHHRH" {
        return Err("not a journal file (no journal signature)".to_owned());
    }
    if header.len() < HEADER_READ {
        return Err(format!(
            "truncated: {size} bytes, shorter than a journal header"
        ));
    }
    let le32 = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let le64 = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let unknown = le32(12) & !KNOWN_INCOMPATIBLE_FLAGS;
    if unknown != 0 {
        return Err(format!("uses a newer journal format (incompatible flags {unknown:#x}) than this libsystemd reads"));
    }
    let header_size = le64(88);
    let arena_size = le64(96);
    if header_size < MIN_HEADER_SIZE || header_size > size {
        return Err(format!(
            "corrupt header (header size {header_size}, file size {size})"
        ));
    }
    let end = header_size.saturating_add(arena_size);
    if end > size {
        return Err(format!(
            "truncated: {size} bytes where its header says {end}; libsystemd ignores the whole file"
        ));
    }
    let tail = le64(136);
    if tail > size {
        return Err(format!(
            "truncated: its last object at {tail} is past its end ({size} bytes)"
        ));
    }
    Ok(())
}

fn read_full(file: &File, buf: &mut [u8]) -> Result<usize, String> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read: {e}")),
        }
    }
    Ok(n)
}

/// Journal files in `dir` and its machine-id subdirectories (as libsystemd
/// reads them), at most `MAX_TRACKED`.
pub fn journal_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        dirs.extend(
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .take(MAX_SUBDIRS),
        );
    }
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if (name.ends_with(".journal") || name.ends_with(".journal~"))
                && e.file_type().is_ok_and(|t| t.is_file())
            {
                out.push(e.path());
                if out.len() >= MAX_TRACKED {
                    return out;
                }
            }
        }
    }
    out
}

/// A file as last checked: changed files are checked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    size: u64,
    mtime_ns: i128,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        inode: m.ino(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

/// Files checked, and whether each was bad, so that each problem is
/// reported once.
#[derive(Debug, Default)]
pub struct FileChecks {
    seen: HashMap<PathBuf, (Stamp, bool)>,
}

/// A file found bad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFile {
    pub path: PathBuf,
    pub problem: String,
}

impl FileChecks {
    /// Checks the files not checked since they last changed; returns the
    /// newly bad ones.
    pub fn check(&mut self, files: &[PathBuf]) -> Vec<BadFile> {
        let mut bad = Vec::new();
        for path in files {
            let Some(now) = stamp(path) else {
                continue;
            };
            if let Some((before, was_bad)) = self.seen.get(path) {
                // An online file grows all the time: only a file that got
                // smaller, or was replaced, is looked at again (and a bad
                // one when it changed).
                let replaced = before.inode != now.inode || now.size < before.size;
                let bad_and_changed = *was_bad && *before != now;
                if !(replaced || bad_and_changed) {
                    continue;
                }
            }
            let result = check_header(path);
            let is_bad = result.is_err();
            if let Err(problem) = result {
                bad.push(BadFile {
                    path: path.clone(),
                    problem,
                });
            }
            if self.seen.len() >= MAX_TRACKED && !self.seen.contains_key(path) {
                self.seen.clear();
            }
            self.seen.insert(path.clone(), (now, is_bad));
        }
        // Forget files that are gone (vacuumed).
        if self.seen.len() > files.len() {
            let present: std::collections::HashSet<&PathBuf> = files.iter().collect();
            self.seen.retain(|p, _| present.contains(p));
        }
        bad
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let not = dir.path().join("x.journal");
        std::fs::write(&not, b"hello").unwrap();
        assert!(check_header(&not).unwrap_err().contains("not a journal"));
        let mut header = vec![0u8; 4096];
        header[..8].copy_from_slice(b"LPKSHHRH");
        header[88..96].copy_from_slice(&272u64.to_le_bytes());
        header[96..104].copy_from_slice(&(4096u64 - 272).to_le_bytes());
        let good = dir.path().join("g.journal");
        std::fs::write(&good, &header).unwrap();
        assert_eq!(check_header(&good), Ok(()));
        let short = dir.path().join("s.journal");
        std::fs::write(&short, &header[..2048]).unwrap();
        assert!(check_header(&short).unwrap_err().starts_with("truncated"));
        let mut checks = FileChecks::default();
        let files = journal_files(dir.path());
        assert_eq!(files.len(), 3);
        assert_eq!(checks.check(&files).len(), 2);
        assert!(checks.check(&files).is_empty(), "reported once");
    }
}
