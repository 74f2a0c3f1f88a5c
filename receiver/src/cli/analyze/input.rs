//! What `oomscope analyze` reads: files (plain, gzip, zstd), every regular
//! file below a directory, standard input; read as lines of bounded length
//! whatever the size of the input, never whole.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Longest line kept; the rest of a longer line is skipped (and counted).
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Most files taken from the directories named on the command line.
pub const MAX_DIRECTORY_FILES: usize = 10_000;
/// Deepest directory level walked.
const MAX_DEPTH: usize = 32;
/// Bytes looked at to tell a binary file (a journal, wtmp) from text.
const SNIFF_BYTES: usize = 8192;
/// Bytes that tell a compressed input.
const MAGIC_BYTES: usize = 6;
/// Read buffer of every input.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// One input to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Stdin,
    File {
        path: PathBuf,
        /// Found in a directory (not named): skipped when it is binary.
        from_directory: bool,
    },
}

impl Input {
    /// How messages name it.
    pub fn display_name(&self) -> String {
        match self {
            Input::Stdin => "(standard input)".to_owned(),
            Input::File { path, .. } => path.display().to_string(),
        }
    }
}

/// The inputs named on the command line, directories expanded.
#[derive(Debug, Default)]
pub struct Expanded {
    pub inputs: Vec<Input>,
    /// What was not taken, for stderr: `(path, why)`.
    pub skipped: Vec<(String, String)>,
    /// Named inputs that do not exist or cannot be listed: `(path, error)`.
    pub failed: Vec<(String, String)>,
}

/// Expands the command line's arguments: none or `-` is standard input, a
/// directory is every regular file below it (sorted by name, at most
/// [`MAX_DIRECTORY_FILES`] in all; symbolic links inside it are not
/// followed).
pub fn expand(args: &[OsString]) -> Expanded {
    let mut expanded = Expanded::default();
    if args.is_empty() {
        expanded.inputs.push(Input::Stdin);
        return expanded;
    }
    let mut directory_files = 0;
    for arg in args {
        if arg == "-" {
            expanded.inputs.push(Input::Stdin);
            continue;
        }
        let path = PathBuf::from(arg);
        match std::fs::metadata(&path) {
            Err(e) => expanded
                .failed
                .push((path.display().to_string(), e.to_string())),
            Ok(meta) if meta.is_dir() => {
                walk(&path, 0, &mut directory_files, &mut expanded);
            }
            // Named files are read whatever they are (a FIFO, /dev/stdin).
            Ok(_) => expanded.inputs.push(Input::File {
                path,
                from_directory: false,
            }),
        }
    }
    expanded
}

fn walk(dir: &Path, depth: usize, taken: &mut usize, expanded: &mut Expanded) {
    let name = dir.display().to_string();
    if depth > MAX_DEPTH {
        expanded
            .skipped
            .push((name, format!("deeper than {MAX_DEPTH} levels")));
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            if depth == 0 {
                expanded.failed.push((name, e.to_string()));
            } else {
                expanded.skipped.push((name, format!("unreadable: {e}")));
            }
            return;
        }
    };
    let mut entries: Vec<_> = entries
        .filter_map(|entry| match entry {
            Ok(entry) => Some(entry),
            Err(e) => {
                expanded
                    .skipped
                    .push((name.clone(), format!("an entry is unreadable: {e}")));
                None
            }
        })
        .collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let file_type = match entry.file_type() {
            Ok(file_type) => file_type,
            Err(e) => {
                expanded
                    .skipped
                    .push((path.display().to_string(), format!("unreadable: {e}")));
                continue;
            }
        };
        if file_type.is_dir() {
            walk(&path, depth + 1, taken, expanded);
        } else if file_type.is_file() {
            if *taken >= MAX_DIRECTORY_FILES {
                expanded.skipped.push((
                    path.display().to_string(),
                    format!("more than {MAX_DIRECTORY_FILES} files in the directories named"),
                ));
                // One note for the rest.
                return;
            }
            *taken += 1;
            expanded.inputs.push(Input::File {
                path,
                from_directory: true,
            });
        } else if file_type.is_symlink() {
            expanded.skipped.push((
                path.display().to_string(),
                "a symbolic link (not followed inside a directory; name it to read it)".to_owned(),
            ));
        } else {
            expanded
                .skipped
                .push((path.display().to_string(), "not a regular file".to_owned()));
        }
    }
}

/// How an input was compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// An input opened for reading text.
pub struct Opened {
    pub reader: Box<dyn BufRead>,
    pub compression: Compression,
    /// The file's modification time (Unix seconds); `None` for stdin.
    pub modified: Option<i64>,
}

/// Why an input was not read.
#[derive(Debug)]
pub enum OpenError {
    /// Cannot be opened or read: counts as a failed input.
    Unreadable(String),
    /// Binary (found in a directory): skipped.
    Binary,
}

/// Opens `input`, decompressing gzip and zstd (told by their magic bytes,
/// not by the name). A file found in a directory that is binary (a NUL in
/// its first 8 KiB, after decompression) is [`OpenError::Binary`].
pub fn open(input: &Input) -> Result<Opened, OpenError> {
    let (raw, modified, from_directory): (Box<dyn Read>, _, _) = match input {
        Input::Stdin => (Box::new(io::stdin()), None, false),
        Input::File {
            path,
            from_directory,
        } => {
            let file = File::open(path).map_err(|e| OpenError::Unreadable(e.to_string()))?;
            let modified = file
                .metadata()
                .ok()
                .and_then(|meta| meta.modified().ok())
                .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|age| i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
            (Box::new(file), modified, *from_directory)
        }
    };
    let (mut reader, compression) =
        decode(raw).map_err(|e| OpenError::Unreadable(e.to_string()))?;
    if from_directory {
        // The head is read whole (a decoder may hand out little per read),
        // then put back in front of the rest.
        let head = read_head(reader.as_mut(), SNIFF_BYTES)
            .map_err(|e| OpenError::Unreadable(e.to_string()))?;
        if head.contains(&0) {
            return Err(OpenError::Binary);
        }
        reader = Box::new(BufReader::with_capacity(
            READ_BUFFER_BYTES,
            io::Cursor::new(head).chain(reader),
        ));
    }
    Ok(Opened {
        reader,
        compression,
        modified,
    })
}

/// Up to `n` bytes from the start of `reader` (fewer only at its end).
fn read_head(reader: &mut dyn Read, n: usize) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; n];
    let mut len = 0;
    while len < n {
        match reader.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(read) => len += read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    head.truncate(len);
    Ok(head)
}

/// Wraps `raw` in a decompressor when its first bytes say it is compressed.
pub fn decode(mut raw: Box<dyn Read>) -> io::Result<(Box<dyn BufRead>, Compression)> {
    // The magic bytes are read whole first (a pipe may hand out a byte at a
    // time), then put back in front of the rest.
    let head = read_head(raw.as_mut(), MAGIC_BYTES)?;
    let rejoined: Box<dyn Read> = Box::new(io::Cursor::new(head.clone()).chain(raw));
    let head = head.as_slice();
    let buffered = BufReader::with_capacity(READ_BUFFER_BYTES, rejoined);
    if head.starts_with(&[0x1f, 0x8b]) {
        // Multi-member: `cat a.gz b.gz` and some rotators write several.
        let decoder = flate2::bufread::MultiGzDecoder::new(buffered);
        return Ok((
            Box::new(BufReader::with_capacity(READ_BUFFER_BYTES, decoder)),
            Compression::Gzip,
        ));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let decoder = zstd::stream::read::Decoder::with_buffer(buffered)?;
        return Ok((
            Box::new(BufReader::with_capacity(READ_BUFFER_BYTES, decoder)),
            Compression::Zstd,
        ));
    }
    let other = if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some(("xz", "xz -dc"))
    } else if head.starts_with(b"BZh") && head.get(3).is_some_and(u8::is_ascii_digit) {
        Some(("bzip2", "bzip2 -dc"))
    } else if head.starts_with(&[0x04, 0x22, 0x4d, 0x18]) {
        Some(("lz4", "lz4 -dc"))
    } else {
        None
    };
    if let Some((format, command)) = other {
        return Err(io::Error::other(format!(
            "{format}-compressed, which is not read here: `{command} FILE | oomscope analyze -`"
        )));
    }
    Ok((Box::new(buffered), Compression::None))
}

/// One line as read.
#[derive(Debug, PartialEq, Eq)]
pub struct RawLine<'a> {
    /// Without its newline; at most the reader's limit.
    pub bytes: &'a [u8],
    /// The line was longer: the rest was skipped.
    pub cut: bool,
}

/// Lines of at most `max` bytes from a reader, in one reused buffer.
pub struct LineReader<R> {
    inner: R,
    line: Vec<u8>,
    max: usize,
    /// Bytes consumed from `inner`.
    pub bytes_read: u64,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            line: Vec::new(),
            max,
            bytes_read: 0,
        }
    }

    /// The next line; `None` at the end of the input. A last line without
    /// a newline is a line.
    pub fn next_line(&mut self) -> io::Result<Option<RawLine<'_>>> {
        self.line.clear();
        let mut cut = false;
        let mut any = false;
        loop {
            let buf = match self.inner.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                return Ok(any.then_some(RawLine {
                    bytes: &self.line,
                    cut,
                }));
            }
            any = true;
            let (chunk, used, ended) = match memchr::memchr(b'\n', buf) {
                Some(end) => (&buf[..end], end + 1, true),
                None => (buf, buf.len(), false),
            };
            let room = self.max.saturating_sub(self.line.len());
            if chunk.len() > room {
                self.line.extend_from_slice(&chunk[..room]);
                cut = true;
            } else {
                self.line.extend_from_slice(chunk);
            }
            self.inner.consume(used);
            self.bytes_read += used as u64;
            if ended {
                return Ok(Some(RawLine {
                    bytes: &self.line,
                    cut,
                }));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn lines(data: &[u8], max: usize) -> Vec<(Vec<u8>, bool)> {
        // A one-byte buffer: lines are assembled across many reads.
        let mut reader = LineReader::new(BufReader::with_capacity(1, data), max);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            out.push((line.bytes.to_vec(), line.cut));
        }
        assert_eq!(reader.bytes_read, data.len() as u64);
        out
    }

    #[test]
    fn lines_are_cut_at_the_limit_and_the_rest_skipped() {
        assert_eq!(
            lines(b"ab\n\nabcdefgh\nxyz", 4),
            [
                (b"ab".to_vec(), false),
                (b"".to_vec(), false),
                (b"abcd".to_vec(), true),
                (b"xyz".to_vec(), false),
            ]
        );
        assert!(lines(b"", 4).is_empty());
        assert_eq!(lines(b"\n", 4), [(b"".to_vec(), false)]);
    }

    fn decoded(data: Vec<u8>) -> (Vec<u8>, Compression) {
        let (mut reader, compression) = decode(Box::new(io::Cursor::new(data))).unwrap();
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        (out, compression)
    }

    #[test]
    fn compressed_inputs_are_told_by_their_magic_bytes() {
        let text = b"line one\nline two\n".to_vec();
        assert_eq!(decoded(text.clone()), (text.clone(), Compression::None));
        // Two gzip members, as `cat a.gz b.gz` makes.
        let mut gz = Vec::new();
        for part in [&text[..9], &text[9..]] {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), Default::default());
            encoder.write_all(part).unwrap();
            gz.extend(encoder.finish().unwrap());
        }
        assert_eq!(decoded(gz), (text.clone(), Compression::Gzip));
        let zst = zstd::encode_all(&text[..], 3).unwrap();
        assert_eq!(decoded(zst), (text.clone(), Compression::Zstd));
        // Shorter than any magic.
        assert_eq!(decoded(vec![0x1f]), (vec![0x1f], Compression::None));
        let xz = decode(Box::new(io::Cursor::new(
            b"\xfd7zXZ\x00\x00\x04rest".to_vec(),
        )));
        let message = xz.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("xz-compressed"), "{message}");
    }

    #[test]
    fn directories_are_expanded_sorted_and_binary_files_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("b/inner.log"), "x\n").unwrap();
        std::fs::write(dir.path().join("a.log"), "x\n").unwrap();
        // The NUL after the first read of the head.
        std::fs::write(dir.path().join("c.bin"), b"some text first\x00\x01binary").unwrap();
        std::os::unix::fs::symlink(dir.path().join("a.log"), dir.path().join("d.link")).unwrap();
        let expanded = expand(&[
            dir.path().as_os_str().to_owned(),
            OsString::from("/nonexistent/oomscope-analyze"),
        ]);
        let names: Vec<String> = expanded
            .inputs
            .iter()
            .map(|input| match input {
                Input::File { path, .. } => {
                    path.strip_prefix(dir.path()).unwrap().display().to_string()
                }
                Input::Stdin => "-".to_owned(),
            })
            .collect();
        assert_eq!(names, ["a.log", "b/inner.log", "c.bin"]);
        assert_eq!(expanded.failed.len(), 1);
        assert!(expanded.failed[0].0.contains("/nonexistent/"));
        assert_eq!(expanded.skipped.len(), 1, "{:?}", expanded.skipped);
        assert!(expanded.skipped[0].1.contains("symbolic link"));
        assert!(matches!(open(&expanded.inputs[2]), Err(OpenError::Binary)));
        assert!(open(&expanded.inputs[0]).is_ok());
        // Named, a binary file is read.
        let named = Input::File {
            path: dir.path().join("c.bin"),
            from_directory: false,
        };
        assert!(open(&named).is_ok());
        assert_eq!(expand(&[]).inputs, [Input::Stdin]);
    }
}
