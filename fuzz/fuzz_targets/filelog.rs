//! The filelog receiver's line path on one file: the reader's line splitting
//! (plain and skipping reads), the container decoders (CRI, docker
//! json-file) and multiline grouping, with the pattern library.
//!
//! Input: a flags byte (format, path layout, multiline pattern, read budget),
//! a size byte (`max_log_size`), a crash point byte, then the file's content.
//!
//! Checked:
//! - lines are the file's bytes (newline and a trailing `\r` removed, over-long
//!   lines cut at `max_log_size`), read in one go or in small steps alike;
//! - the skipping read hands on exactly the lines in which the library's
//!   literals occur, and the offsets it reports are line boundaries;
//! - at least once: the offset a crash would resume at (the end of the last
//!   record handed on) loses no application line: what a run stopped there
//!   handed on, plus what a run resumed there reads, holds every line.
#![no_main]

use std::fs::File;
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use aho_corasick::AhoCorasick;
use libfuzzer_sys::fuzz_target;
use oomscope::patterns::Library;
use oomscope::receivers::filelog::container::Decoder;
use oomscope::receivers::filelog::finder_literals;
use oomscope::receivers::filelog::multiline::{Assembled, Assembler};
use oomscope::receivers::filelog::reader::{FileReader, Line, ReadOutcome};
use oomscope::receivers::filelog::LogFormat;
use oomscope_fuzz::{memfd, Input};
use regex::Regex;

static LIBRARY: LazyLock<Library> = LazyLock::new(Library::builtin);

/// The literals the receiver's finder looks for (the library's, Python's
/// traceback header, the kernel report's first lines).
static LITERALS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    finder_literals(&LIBRARY, true)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect()
});

/// The receiver's finder, built as the receiver builds it (over the
/// literals without those that contain another).
static FINDER: LazyLock<AhoCorasick> =
    LazyLock::new(|| oomscope::patterns::literal_finder(LITERALS.iter()).expect("finder"));

/// The oracle: whether `text` holds any of all the literals.
fn holds_literal(text: &[u8]) -> bool {
    LITERALS
        .iter()
        .any(|l| text.windows(l.len()).any(|w| w == l.as_slice()))
}

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn reader(file: &File, offset: u64, max: usize) -> FileReader {
    let file = file.try_clone().expect("dup");
    FileReader::new(file, "/fuzz/file.log".into(), offset, max).expect("reader")
}

/// Every line from `offset` on, read with `read` in steps of `budget` bytes
/// and `max_lines` lines, then the unfinished last line.
fn read_all(file: &File, offset: u64, max: usize, budget: usize, max_lines: usize) -> Vec<Line> {
    let mut r = reader(file, offset, max);
    let mut lines = Vec::new();
    loop {
        match r.read(budget, max_lines, &mut lines).expect("read") {
            ReadOutcome::Eof => break,
            ReadOutcome::Budget => {}
            other => panic!("unexpected {other:?} from read"),
        }
    }
    r.flush_partial(Duration::ZERO, &mut lines);
    lines
}

/// Decoded and grouped: the records handed on. `finish` flushes what is held
/// (a file closed); without it what is held stays held (a crash).
fn records(
    lines: &[Line],
    format: LogFormat,
    path: &Path,
    offset: u64,
    line_start: Option<&Regex>,
    max: usize,
    finish: bool,
) -> (Vec<Line>, Vec<Assembled>) {
    let mut decoder = Decoder::new(format, max);
    decoder.attach(path, offset);
    let mut decoded = Vec::new();
    for line in lines {
        decoder.push(line.clone(), &mut decoded);
    }
    if finish {
        decoder.flush_due(Duration::ZERO, &mut decoded);
    }
    let mut assembler = Assembler::new(line_start.cloned(), max);
    let mut out = Vec::new();
    for line in &decoded {
        assembler.push(&LIBRARY, line.clone(), &mut out);
    }
    if finish {
        assembler.flush(&mut out);
    }
    (decoded, out)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let max = 16 + usize::from(input.byte()) * 4;
    let crash = input.byte();
    let content = input.rest();
    let format = [
        LogFormat::Auto,
        LogFormat::Plain,
        LogFormat::Cri,
        LogFormat::Docker,
    ][usize::from(flags & 3)];
    let path = match (flags >> 2) & 3 {
        0 => "/var/log/app.log".to_owned(),
        1 => "/var/log/pods/default_web-1_0f1e2d3c/app/0.log".to_owned(),
        2 => format!("/var/lib/docker/containers/{ID}/{ID}-json.log"),
        _ => format!("/var/log/containers/web-1_default_app-{ID}.log"),
    };
    let path = Path::new(&path);
    let line_start = match (flags >> 4) & 3 {
        2 => Some(Regex::new(r"^\S").expect("regex")),
        3 => Some(Regex::new(r"^\d{4}-").expect("regex")),
        _ => None,
    };
    let step = 1 + usize::from(flags >> 6) * 13;
    let file = memfd(content);
    let len = content.len() as u64;

    // Lines, in one read and in small steps.
    let lines = read_all(&file, 0, max, usize::MAX, usize::MAX);
    assert_eq!(
        read_all(&file, 0, max, step, step),
        lines,
        "lines depend on the read size"
    );
    let mut start = 0usize;
    // Offsets a reader may stop at: line starts and ends, and anywhere in
    // the skipped rest of a cut line (which is then read as a line of its
    // own, as the collector splits long lines).
    let mut boundaries = vec![0u64];
    let mut skipped: Vec<(u64, u64)> = Vec::new();
    for line in &lines {
        let end = usize::try_from(line.end_offset).expect("offset");
        assert!(start <= end && end <= content.len(), "offsets out of order");
        let raw = &content[start..end];
        let expected = if line.truncated {
            assert_eq!(raw.len(), max, "a cut line is not max_log_size long");
            raw
        } else {
            let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
            raw.strip_suffix(b"\r").unwrap_or(raw)
        };
        assert_eq!(
            line.text,
            String::from_utf8_lossy(expected),
            "line text is not the file's"
        );
        boundaries.push(line.end_offset);
        // After a cut line the rest of it is skipped.
        start = if line.truncated {
            content[end..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(content.len(), |i| end + i + 1)
        } else {
            end
        };
        if line.truncated {
            skipped.push((line.end_offset, start as u64));
        }
        boundaries.push(start as u64);
    }
    boundaries.push(len);
    let is_boundary =
        |at: u64| boundaries.contains(&at) || skipped.iter().any(|&(a, b)| a <= at && at <= b);

    // The skipping read: the lines with a literal in them, and only those.
    let mut r = reader(&file, 0, max);
    let mut buf = vec![0u8; 1 + usize::from(flags) * 3];
    let mut filtered = Vec::new();
    loop {
        let before = filtered.len();
        let (outcome, skipped_to) = r
            .read_filtered(step * 7, &mut buf, &FINDER, &mut filtered)
            .expect("read_filtered");
        assert!(
            is_boundary(skipped_to),
            "skipped to {skipped_to}, not a line boundary"
        );
        if let Some(first) = filtered.get(before) {
            assert!(
                skipped_to < first.end_offset,
                "skipped past a line handed on"
            );
        }
        match outcome {
            ReadOutcome::Eof => break,
            ReadOutcome::Budget | ReadOutcome::Hit => {}
            ReadOutcome::Truncated => panic!("the file did not shrink"),
        }
    }
    let mut tail = Vec::new();
    r.flush_partial(Duration::ZERO, &mut tail);
    // An unfinished last line is handed on by the flush, found or not.
    let partial = lines
        .last()
        .filter(|l| !l.truncated && !content.ends_with(b"\n") && l.end_offset == len);
    let complete = lines.len() - usize::from(partial.is_some());
    let expected: Vec<&Line> = lines[..complete]
        .iter()
        .filter(|l| holds_literal(l.text.as_bytes()))
        .collect();
    assert_eq!(
        filtered.iter().collect::<Vec<_>>(),
        expected,
        "the skipping read differs"
    );
    assert_eq!(tail.first(), partial, "the unfinished last line differs");

    // Decoding and grouping, and a crash after `crash` lines: nothing lost.
    let (decoded, all) = records(&lines, format, path, 0, line_start.as_ref(), max, true);
    for line in &decoded {
        assert!(
            line.text.len() <= 3 * max + 3,
            "a decoded line outgrew max_log_size"
        );
    }
    for record in &all {
        assert!(
            record.text.len() <= 3 * max + 3,
            "a record outgrew max_log_size"
        );
    }
    if format == LogFormat::Auto {
        // The format is decided by the first line read, which a resumed
        // run does not share: not comparable.
        return;
    }
    let k = usize::from(crash) % (lines.len() + 1);
    let (_, before_crash) = records(
        &lines[..k],
        format,
        path,
        0,
        line_start.as_ref(),
        max,
        false,
    );
    let resume_at = before_crash.iter().map(|r| r.end_offset).max().unwrap_or(0);
    assert!(
        is_boundary(resume_at),
        "a checkpoint at {resume_at} is not a line boundary"
    );
    let rest = read_all(&file, resume_at, max, usize::MAX, usize::MAX);
    let (_, after) = records(
        &rest,
        format,
        path,
        resume_at,
        line_start.as_ref(),
        max,
        true,
    );
    let delivered: Vec<&Assembled> = before_crash.iter().chain(&after).collect();
    if delivered.iter().any(|r| r.truncated) {
        return;
    }
    for line in decoded.iter().filter(|l| !l.truncated) {
        // A record's trailing newlines are trimmed when it is handed on
        // (`Assembler::flush`): a decoded line may end in one (a docker
        // `log` value ending in "\n\n" keeps one after decoding).
        let text = line.text.trim_end_matches('\n');
        if text.is_empty() {
            continue;
        }
        assert!(
            delivered.iter().any(|r| r.text.contains(text)),
            "line {:?} lost by a restart at {resume_at} (crash after {k} lines)",
            line.text
        );
    }
});
