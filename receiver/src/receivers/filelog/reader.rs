//! One open file: fingerprint, offset, and line splitting with bounded memory.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aho_corasick::AhoCorasick;

/// Bytes read from a file per read call.
const CHUNK: usize = 64 * 1024;

/// What a file's metadata says about its content: the same file (device,
/// inode), its length and its modification time. Equal twice means nothing
/// was written in between (a rewrite to the same length within one
/// timestamp tick aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub dev_ino: (u64, u64),
    pub len: u64,
    pub mtime: (i64, i64),
}

impl FileStat {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileStat {
            dev_ino: (meta.dev(), meta.ino()),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

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
    /// [`FileReader::read_filtered`] handed on a line in which the finder
    /// found something and stopped after it.
    Hit,
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

    /// Nothing of a line is held: every byte read went out in a line (or
    /// was skipped).
    pub fn is_between_lines(&self) -> bool {
        self.partial.is_empty() && !self.skipping
    }

    pub fn file_len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// The file was deleted (its last name removed).
    pub fn is_deleted(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        self.file.metadata().map(|m| m.nlink() == 0).unwrap_or(true)
    }

    /// Reads up to `budget` bytes or `max_lines` lines, appending complete
    /// lines to `out`.
    pub fn read(
        &mut self,
        budget: usize,
        max_lines: usize,
        out: &mut Vec<Line>,
    ) -> io::Result<ReadOutcome> {
        if self.file_len()? < self.offset {
            return Ok(ReadOutcome::Truncated);
        }
        let mut buf = vec![0u8; CHUNK.min(budget.max(1))];
        let mut read_total = 0usize;
        let mut lines_left = max_lines;
        loop {
            if read_total >= budget || lines_left == 0 {
                return Ok(ReadOutcome::Budget);
            }
            let n = match self.read_chunk(&mut buf)? {
                0 => return Ok(ReadOutcome::Eof),
                n => n,
            };
            let before = out.len();
            read_total += self.consume(&buf[..n], out, lines_left);
            lines_left -= out.len() - before;
        }
    }

    /// Reads up to `budget` bytes into `buf`-sized chunks, skipping every
    /// complete line in which `finder` finds nothing: such lines are neither
    /// copied nor decoded, only counted in the offset (the whole point: an
    /// OOM pattern occurs in a handful of lines among millions). Stops after
    /// the first line in which it finds something, handed on in `out`
    /// ([`ReadOutcome::Hit`]). Returns the offset up to which everything
    /// before the lines in `out` was consumed.
    pub fn read_filtered(
        &mut self,
        budget: usize,
        buf: &mut [u8],
        finder: &AhoCorasick,
        out: &mut Vec<Line>,
    ) -> io::Result<(ReadOutcome, u64)> {
        if self.file_len()? < self.offset {
            return Ok((ReadOutcome::Truncated, self.line_offset()));
        }
        let start = self.offset;
        while self.offset - start < budget as u64 {
            let n = match self.read_chunk(buf)? {
                0 => return Ok((ReadOutcome::Eof, self.line_offset())),
                n => n,
            };
            let data = &buf[..n];
            let pending = !self.partial.is_empty() || self.skipping;
            let complete_end = if pending {
                // Finish the unfinished line the ordinary way.
                memchr::memchr(b'\n', data).map(|i| i + 1)
            } else {
                memchr::memrchr(b'\n', data).map(|i| i + 1)
            };
            let Some(complete_end) = complete_end.filter(|_| !pending) else {
                // An unfinished line, an over-long one, or the end of a line
                // begun in an earlier read: line by line.
                let end = complete_end.unwrap_or(n);
                let before = out.len();
                let skipped_to = self.line_offset();
                self.consume(&data[..end], out, usize::MAX);
                let mut i = before;
                while i < out.len() {
                    if finder.is_match(out[i].text.as_bytes()) {
                        i += 1;
                    } else {
                        out.remove(i);
                    }
                }
                if out.len() > before {
                    return Ok((ReadOutcome::Hit, skipped_to));
                }
                continue;
            };
            let complete = &data[..complete_end];
            let Some(found) = finder.find(complete) else {
                // The unfinished rest (if any) is read again next time.
                self.offset += complete_end as u64;
                if n < buf.len() && complete_end == n {
                    // A short read of a regular file ends at its end, and
                    // it ended with a line: the read that would return 0
                    // is saved (one syscall per file and poll).
                    return Ok((ReadOutcome::Eof, self.line_offset()));
                }
                continue;
            };
            let line_start =
                memchr::memrchr(b'\n', &complete[..found.start()]).map_or(0, |i| i + 1);
            let line_end = memchr::memchr(b'\n', &complete[found.start()..])
                .map_or(complete_end, |i| found.start() + i + 1);
            self.offset += line_start as u64;
            let skipped_to = self.offset;
            let before = out.len();
            self.consume(&complete[line_start..line_end], out, usize::MAX);
            // Found beyond `max_log_size`: cut away with the rest of the line.
            if out[before..]
                .iter()
                .any(|l| finder.is_match(l.text.as_bytes()))
            {
                return Ok((ReadOutcome::Hit, skipped_to));
            }
            out.truncate(before);
        }
        Ok((ReadOutcome::Budget, self.line_offset()))
    }

    /// One read at the current offset; 0 at the end of the file.
    fn read_chunk(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.file.read_at(buf, self.offset) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Splits `data` (read at `self.offset`) into lines, at most `max_lines`
    /// of them; returns the bytes consumed (the rest is read again).
    fn consume(&mut self, data: &[u8], out: &mut Vec<Line>, max_lines: usize) -> usize {
        self.partial_since = Some(Instant::now());
        let total = data.len();
        let mut data = data;
        let mut lines = 0usize;
        while !data.is_empty() && lines < max_lines {
            let before = out.len();
            self.consume_piece(&mut data, out);
            lines += out.len() - before;
        }
        if self.partial.is_empty() {
            self.partial_since = None;
        }
        total - data.len()
    }

    /// Consumes `data` up to and including its first `\n` (or all of it).
    fn consume_piece(&mut self, data: &mut &[u8], out: &mut Vec<Line>) {
        let (piece, rest, complete) = match memchr::memchr(b'\n', data) {
            Some(i) => (&data[..i], &data[i + 1..], true),
            None => (*data, &data[data.len()..], false),
        };
        *data = rest;
        let consumed = piece.len() as u64 + u64::from(complete);
        if self.skipping {
            self.offset += consumed;
            if complete {
                self.skipping = false;
            }
            return;
        }
        let room = self.max_log_size - self.partial.len();
        // A piece that exactly fills the room without its `\n` is kept: the
        // `\n` may come next (a line of exactly max_log_size bytes is whole),
        // and whether it does must not depend on where a read ended.
        if piece.len() > room {
            // Too long: emit the first max_log_size bytes and skip the rest
            // of the line. A `\r` at the cut is kept (it is text).
            self.partial.extend_from_slice(&piece[..room]);
            let text = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            self.offset += room as u64;
            out.push(Line {
                text,
                end_offset: self.offset,
                truncated: true,
                ..Default::default()
            });
            // The skipped remainder of this piece; the rest of the line
            // (when it goes on) in later pieces.
            self.offset += (piece.len() - room) as u64 + u64::from(complete);
            self.skipping = !complete;
            return;
        }
        self.partial.extend_from_slice(piece);
        self.offset += consumed;
        if complete {
            out.push(self.take_line());
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
        assert_eq!(
            r.read(1 << 20, usize::MAX, &mut out).ok(),
            Some(ReadOutcome::Eof)
        );
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
        assert_eq!(
            r.read(1 << 20, usize::MAX, &mut out).ok(),
            Some(ReadOutcome::Eof)
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].text.len(), 1000);
        assert!(out[0].truncated);
        assert_eq!(out[1].text, "next");
        assert_eq!(out[1].end_offset, content.len() as u64);
    }

    /// Found by the `filelog` fuzz target: a line of exactly max_log_size
    /// bytes was cut (and its offset left before its `\n`) when a read
    /// ended right before the `\n`, and kept whole otherwise.
    #[test]
    fn a_line_of_exactly_max_log_size_is_whole_wherever_reads_end() {
        let content = b"0123456789\nnext\n";
        for budget in 1..=content.len() {
            let (_d, mut r) = reader(content, 10);
            let mut out = Vec::new();
            while r.read(budget, usize::MAX, &mut out).expect("read") != ReadOutcome::Eof {}
            let lines: Vec<_> = out
                .iter()
                .map(|l| (l.text.as_str(), l.end_offset, l.truncated))
                .collect();
            assert_eq!(
                lines,
                [("0123456789", 11, false), ("next", 16, false)],
                "reads of {budget} bytes"
            );
        }
        // One byte more is cut, wherever the reads end.
        let content = b"0123456789A\nnext\n";
        for budget in 1..=content.len() {
            let (_d, mut r) = reader(content, 10);
            let mut out = Vec::new();
            while r.read(budget, usize::MAX, &mut out).expect("read") != ReadOutcome::Eof {}
            let lines: Vec<_> = out
                .iter()
                .map(|l| (l.text.as_str(), l.end_offset, l.truncated))
                .collect();
            assert_eq!(
                lines,
                [("0123456789", 10, true), ("next", 17, false)],
                "reads of {budget} bytes"
            );
        }
    }

    fn finder(words: &[&str]) -> AhoCorasick {
        AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .build(words)
            .expect("finder")
    }

    /// Runs `read_filtered` with a `chunk`-byte buffer to the end; returns
    /// the lines handed on and the consumed offset reported with each.
    fn read_all_filtered(
        r: &mut FileReader,
        chunk: usize,
        f: &AhoCorasick,
    ) -> (Vec<Line>, Vec<u64>) {
        let mut buf = vec![0u8; chunk];
        let (mut lines, mut skipped) = (Vec::new(), Vec::new());
        loop {
            let before = lines.len();
            let (outcome, to) = r
                .read_filtered(1 << 20, &mut buf, f, &mut lines)
                .expect("read");
            assert!(
                to <= r.offset,
                "consumed offset {to} beyond the read offset"
            );
            if lines.len() > before {
                skipped.push(to);
            }
            match outcome {
                ReadOutcome::Hit | ReadOutcome::Budget => {}
                ReadOutcome::Eof => break,
                ReadOutcome::Truncated => panic!("not truncated"),
            }
        }
        r.flush_partial(Duration::ZERO, &mut lines);
        (lines, skipped)
    }

    #[test]
    fn filtered_read_hands_on_only_lines_with_a_hit() {
        let content = b"a plain line\nKilled process 12 (x)\r\nanother\nfatal error: runtime: out of memory\nlast";
        let (_d, mut r) = reader(content, 100);
        let f = finder(&["Killed process", "out of memory"]);
        let (lines, skipped) = read_all_filtered(&mut r, 1 << 16, &f);
        let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Killed process 12 (x)",
                "fatal error: runtime: out of memory",
                "last"
            ]
        );
        // Each hit line's end offset, and where the skipped lines before it ended.
        assert_eq!(lines[0].end_offset, 36);
        assert_eq!(skipped, [13, 44]);
        assert_eq!(lines[1].end_offset, 80);
        assert_eq!(r.line_offset(), content.len() as u64);
    }

    #[test]
    fn filtered_read_cuts_an_over_long_hit_line_and_skips_long_plain_ones() {
        let mut content = vec![b'x'; 5000];
        content.extend_from_slice(b"\n");
        content.extend_from_slice(b"Killed process ");
        content.extend(std::iter::repeat_n(b'y', 5000));
        content.extend_from_slice(b"\nend Killed process\n");
        let (_d, mut r) = reader(&content, 100);
        let f = finder(&["Killed process"]);
        let (lines, _) = read_all_filtered(&mut r, 64, &f);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].truncated && lines[0].text.starts_with("Killed process yyy"));
        assert_eq!(lines[0].text.len(), 100);
        assert_eq!(lines[1].text, "end Killed process");
        assert_eq!(lines[1].end_offset, content.len() as u64);
    }

    /// The fast read hands on exactly the lines the ordinary read gives
    /// that contain a word, at the same offsets, whatever the chunk size
    /// (lines and words cut at chunk boundaries, long lines, `\r\n`).
    #[test]
    fn filtered_read_agrees_with_the_ordinary_read() {
        let words = ["Killed process", "MemoryError", "out of memory"];
        let f = finder(&words);
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..40 {
            let mut content = Vec::new();
            for _ in 0..(next() % 300) {
                let len = (next() % 120) as usize;
                for _ in 0..len {
                    content.push(
                        [b'a', b'b', b'c', b' ', b'd', b'e', b'f', b'x', b'\r', 0xff]
                            [(next() % 10) as usize],
                    );
                }
                if next() % 6 == 0 {
                    let w = words[(next() % 3) as usize].as_bytes();
                    let at = content.len() - (next() as usize % (len + 1));
                    content.splice(at..at, w.iter().copied());
                }
                if next() % 5 == 0 {
                    content.push(b'\r');
                }
                content.push(b'\n');
            }
            if next() % 2 == 0 {
                content.extend_from_slice(b"unfinished out of memory");
            }
            let max = 20 + (next() % 200) as usize;
            let chunk = 1 + (next() % 300) as usize;
            let (_d, mut plain) = reader(&content, max);
            let mut expected = Vec::new();
            while plain
                .read(1 << 20, usize::MAX, &mut expected)
                .expect("read")
                != ReadOutcome::Eof
            {}
            plain.flush_partial(Duration::ZERO, &mut expected);
            expected.retain(|l| f.is_match(l.text.as_bytes()));
            let (_d2, mut fast) = reader(&content, max);
            let (got, _) = read_all_filtered(&mut fast, chunk, &f);
            assert_eq!(got, expected, "round {round}, max {max}, chunk {chunk}");
            assert_eq!(fast.offset, content.len() as u64);
        }
    }

    #[test]
    fn truncation_is_detected() {
        let (d, mut r) = reader(b"a\nb\n", 100);
        let mut out = Vec::new();
        let _ = r.read(100, usize::MAX, &mut out);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(d.path().join("a.log"))
            .expect("open");
        f.write_all(b"c").expect("write");
        assert_eq!(
            r.read(100, usize::MAX, &mut out).ok(),
            Some(ReadOutcome::Truncated)
        );
    }
}
