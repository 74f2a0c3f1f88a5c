//! One open file: fingerprint, offset, and line splitting with bounded memory.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Bytes read from a file per read call.
const CHUNK: usize = 64 * 1024;

/// The first `size` bytes of a file (fewer when it is shorter): its identity.
pub fn fingerprint(file: &File, size: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size];
    let mut filled = 0;
    while filled < size {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// One line (or a flushed partial line), `\n` and a trailing `\r` removed,
/// invalid UTF-8 replaced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Line {
    pub text: String,
    /// File offset just after this line: where reading resumes once it is
    /// acknowledged.
    pub end_offset: u64,
    /// Cut at `max_log_size`.
    pub truncated: bool,
    /// When the line was written, from a container runtime's log format
    /// (0: unknown).
    pub time_unix_nano: u64,
    /// stdout or stderr, from a container runtime's log format.
    pub stream: Option<super::container::Stream>,
}

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Read to the end of the file.
    Eof,
    /// Stopped at the byte budget; more is waiting.
    Budget,
    /// The file is shorter than what was read (copytruncate).
    Truncated,
}

#[derive(Debug)]
pub struct FileReader {
    pub file: File,
    pub path: PathBuf,
    /// Next byte to read.
    pub offset: u64,
    /// An unfinished line (at most `max_log_size` bytes).
    partial: Vec<u8>,
    /// Since when `partial` has not grown.
    partial_since: Option<Instant>,
    /// Inside an over-long line: bytes are dropped up to its `\n`.
    skipping: bool,
    max_log_size: usize,
    /// (device, inode) of the open file.
    pub dev_ino: (u64, u64),
}

impl FileReader {
    pub fn new(file: File, path: PathBuf, offset: u64, max_log_size: usize) -> io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata()?;
        Ok(FileReader {
            file,
            path,
            offset,
            partial: Vec::new(),
            partial_since: None,
            skipping: false,
            max_log_size,
            dev_ino: (meta.dev(), meta.ino()),
        })
    }

    /// Offset before the unfinished line: everything before it has been
    /// handed out as lines.
    pub fn line_offset(&self) -> u64 {
        self.offset - self.partial.len() as u64
    }

    pub fn file_len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// The file was deleted (its last name removed).
    pub fn is_deleted(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        self.file.metadata().map(|m| m.nlink() == 0).unwrap_or(true)
    }

    /// Reads up to `budget` bytes, appending complete lines to `out`.
    pub fn read(&mut self, budget: usize, out: &mut Vec<Line>) -> io::Result<ReadOutcome> {
        if self.file_len()? < self.offset {
            return Ok(ReadOutcome::Truncated);
        }
        let mut buf = vec![0u8; CHUNK.min(budget.max(1))];
        let mut read_total = 0usize;
        loop {
            if read_total >= budget {
                return Ok(ReadOutcome::Budget);
            }
            let n = match self.file.read_at(&mut buf, self.offset) {
                Ok(0) => return Ok(ReadOutcome::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            read_total += n;
            self.consume(&buf[..n], out);
        }
    }

    fn consume(&mut self, mut data: &[u8], out: &mut Vec<Line>) {
        self.partial_since = Some(Instant::now());
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            let (piece, rest, complete) = match newline {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &data[data.len()..], false),
            };
            let consumed = piece.len() as u64 + u64::from(complete);
            if self.skipping {
                self.offset += consumed;
                if complete {
                    self.skipping = false;
                }
                data = rest;
                continue;
            }
            let room = self.max_log_size - self.partial.len();
            if piece.len() > room || (piece.len() == room && !complete) {
                // Too long: emit the first max_log_size bytes and skip the
                // rest of the line. A `\r` at the cut is kept (it is text).
                self.partial.extend_from_slice(&piece[..room]);
                self.offset += room as u64;
                let text = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                out.push(Line {
                    text,
                    end_offset: self.offset,
                    truncated: true,
                    ..Default::default()
                });
                self.skipping = true;
                // The skipped remainder of this piece.
                let skipped = piece.len() - room;
                self.offset += skipped as u64 + u64::from(complete);
                if complete {
                    self.skipping = false;
                }
                data = rest;
                continue;
            }
            self.partial.extend_from_slice(piece);
            self.offset += consumed;
            if complete {
                out.push(self.take_line());
            }
            data = rest;
        }
        if self.partial.is_empty() {
            self.partial_since = None;
        }
    }

    fn take_line(&mut self) -> Line {
        let mut bytes = std::mem::take(&mut self.partial);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        Line {
            text: match String::from_utf8(bytes) {
                Ok(s) => s,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            },
            end_offset: self.offset,
            ..Default::default()
        }
    }

    /// Emits an unfinished line that has waited `period` (a writer that does
    /// not end its last line), or any unfinished line when `period` is zero.
    pub fn flush_partial(&mut self, period: Duration, out: &mut Vec<Line>) {
        if self.partial.is_empty() {
            return;
        }
        if let Some(since) = self.partial_since {
            if since.elapsed() < period {
                return;
            }
        }
        self.partial_since = None;
        out.push(self.take_line());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn reader(content: &[u8], max: usize) -> (tempfile::TempDir, FileReader) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        std::fs::write(&path, content).expect("write");
        let file = File::open(&path).expect("open");
        let r = FileReader::new(file, path, 0, max).expect("reader");
        (dir, r)
    }

    #[test]
    fn splits_lines_strips_cr_and_replaces_invalid_utf8() {
        let (_d, mut r) = reader(b"one\r\ntw\xffo\nthree", 100);
        let mut out = Vec::new();
        assert_eq!(r.read(1 << 20, &mut out).ok(), Some(ReadOutcome::Eof));
        let texts: Vec<_> = out.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["one", "tw\u{fffd}o"]);
        assert_eq!(out[1].end_offset, 10);
        assert_eq!(r.line_offset(), 10);
        r.flush_partial(Duration::ZERO, &mut out);
        assert_eq!(out[2].text, "three");
        assert_eq!(out[2].end_offset, 15);
    }

    #[test]
    fn long_lines_are_cut_and_the_rest_skipped() {
        let mut content = vec![b'x'; 100_000];
        content.extend_from_slice(b"\nnext\n");
        let (_d, mut r) = reader(&content, 1000);
        let mut out = Vec::new();
        assert_eq!(r.read(1 << 20, &mut out).ok(), Some(ReadOutcome::Eof));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].text.len(), 1000);
        assert!(out[0].truncated);
        assert_eq!(out[1].text, "next");
        assert_eq!(out[1].end_offset, content.len() as u64);
    }

    #[test]
    fn truncation_is_detected() {
        let (d, mut r) = reader(b"a\nb\n", 100);
        let mut out = Vec::new();
        let _ = r.read(100, &mut out);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(d.path().join("a.log"))
            .expect("open");
        f.write_all(b"c").expect("write");
        assert_eq!(r.read(100, &mut out).ok(), Some(ReadOutcome::Truncated));
    }
}
