//! Groups lines into records: `multiline.line_start_pattern` blocks, and the
//! stack trace that follows a line the pattern library says expects one.
//!
//! A grouped record whose match is a runtime's exception (the pattern gave
//! `exception.type` or `exception.message`) also gets `exception.stacktrace`:
//! the block as the runtime printed it, from where its exception text
//! starts (after a logger's prefix; Python's `Traceback` header, which
//! comes before its exception line), when it has lines beyond that one.

use std::time::{Duration, Instant};

use regex::Regex;

use super::container::Stream;
use super::reader::Line;
use crate::patterns::{
    AttrValue, Library, EXCEPTION_MESSAGE, EXCEPTION_STACKTRACE, EXCEPTION_TYPE,
};

/// A pattern library match, owned (it outlives the line).
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedMatch {
    pub pattern: String,
    pub runtime: String,
    pub severity_number: i32,
    pub severity_text: String,
    pub attributes: Vec<(String, AttrValue)>,
    /// Byte offset in the record's text where the match begins.
    pub text_start: usize,
}

/// One record, or lines consumed without a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Assembled {
    pub text: String,
    /// File offset after the record's last line.
    pub end_offset: u64,
    /// The `end_offset` of the record's first line (the `journald` receiver
    /// numbers entries there, to find the entry a record started with).
    pub first_end_offset: u64,
    pub matched: Option<OwnedMatch>,
    pub truncated: bool,
    /// When the record's first line was written (0: unknown).
    pub time_unix_nano: u64,
    /// stdout or stderr of the record's first line, when known.
    pub stream: Option<Stream>,
}

#[derive(Debug)]
struct Held {
    rec: Assembled,
    /// When its first line came.
    since: Instant,
    /// When its last line came: `force_flush_period` runs from here, so a
    /// trace written slowly, line by line, stays whole.
    last: Instant,
    /// Grouping by the runtime's stack trace (not by line_start_pattern).
    trace: bool,
    /// A Go trace: function lines are not indented.
    go_trace: bool,
    /// A Python traceback: its exception line (e.g. `MemoryError`) comes
    /// after the frames and ends the block.
    python_traceback: bool,
}

#[derive(Debug)]
pub struct Assembler {
    line_start: Option<Regex>,
    max_size: usize,
    held: Option<Held>,
}

/// The longest a record that keeps taking lines is held (unless
/// `force_flush_period` is longer): an OOM record must not wait behind an
/// endless stream of indented lines.
const HOLD_LIMIT: Duration = Duration::from_secs(5);

/// Python's traceback header: it comes before the frames and the
/// exception line the pattern library matches.
pub const PYTHON_TRACEBACK: &str = "Traceback (most recent call last):";

/// Lines that continue a stack trace (Java, Python, Go, Node, .NET, Rust).
fn is_trace_line(line: &str, go_trace: bool) -> bool {
    line.is_empty()
        || line.starts_with([' ', '\t'])
        || is_numbered_frame(line)
        || (line.starts_with("----- ") && line.ends_with(" -----"))
        || line.starts_with("at ")
        || line.starts_with("Caused by:")
        || line.starts_with("Traceback")
        || line.starts_with("File \"")
        || line.starts_with("goroutine ")
        || line == "runtime stack:"
        || line == "stack backtrace:"
        || (go_trace && (line.ends_with(')') || line.starts_with("created by ")))
}

/// Node's numbered native frames (` 9: 0x...`, `10: 0x...`): only the
/// first nine are indented.
fn is_numbered_frame(line: &str) -> bool {
    let rest = line.trim_start_matches(|c: char| c.is_ascii_digit());
    rest.len() < line.len() && rest.starts_with(": 0x")
}

/// The match of `line`, which starts at byte `line_start` of its record.
fn owned(library: &Library, line: &str, line_start: usize) -> Option<(OwnedMatch, bool)> {
    library.match_line(line).map(|m| {
        (
            OwnedMatch {
                pattern: m.pattern.to_string(),
                runtime: m.runtime.to_string(),
                severity_number: m.severity_number,
                severity_text: m.severity_text.to_string(),
                attributes: m.attributes,
                text_start: line_start.saturating_add(m.start),
            },
            m.expects_stack_trace,
        )
    })
}

/// libstdc++'s verbose terminate handler prints the exception's `what()`
/// on the line after `terminate called after throwing an instance of ...`.
const CXX_WHAT: &str = "  what():  ";

/// Adds the exception details only a grouped record has: the stack trace
/// and, for C++, the message on its `what()` line.
fn complete_exception(matched: &mut OwnedMatch, text: &str) {
    let has = |key: &str| matched.attributes.iter().any(|(k, _)| k == key);
    let mut has_message = has(EXCEPTION_MESSAGE);
    if !(has(EXCEPTION_TYPE) || has_message) || has(EXCEPTION_STACKTRACE) {
        return;
    }
    // The match's line was cut off the record (size limit): no trace.
    let Some(matched_at) = text.get(matched.text_start..).map(|_| matched.text_start) else {
        return;
    };
    // Python prints its traceback before the exception line.
    let line_start = text[..matched_at].rfind('\n').map_or(0, |i| i + 1);
    let start = text[..line_start]
        .rmatch_indices(PYTHON_TRACEBACK)
        .map(|(i, _)| i)
        .find(|&i| i == 0 || text[..i].ends_with('\n'))
        .unwrap_or(matched_at);
    let trace = text[start..].trim_end();
    let mut frames = false;
    for line in trace.lines().skip(1) {
        if let Some(what) = line.strip_prefix(CXX_WHAT) {
            if !has_message && !what.is_empty() {
                matched.attributes.push((
                    EXCEPTION_MESSAGE.to_owned(),
                    AttrValue::Str(what.to_owned()),
                ));
                has_message = true;
            }
        } else if !line.trim().is_empty() {
            frames = true;
        }
    }
    if frames {
        matched.attributes.push((
            EXCEPTION_STACKTRACE.to_owned(),
            AttrValue::Str(trace.to_owned()),
        ));
    }
}

impl Assembler {
    pub fn new(line_start: Option<Regex>, max_size: usize) -> Self {
        Assembler {
            line_start,
            max_size,
            held: None,
        }
    }

    pub fn push(&mut self, library: &Library, line: Line, out: &mut Vec<Assembled>) {
        self.push_at(library, line, Instant::now(), out);
    }

    fn push_at(&mut self, library: &Library, line: Line, now: Instant, out: &mut Vec<Assembled>) {
        if let Some(held) = &mut self.held {
            let continues = match &self.line_start {
                Some(start) => !start.is_match(&line.text),
                None => held.trace && is_trace_line(&line.text, held.go_trace),
            };
            if held.python_traceback && !continues && self.line_start.is_none() {
                // The exception line: it belongs to the traceback and ends it.
                if held.rec.matched.is_none() {
                    held.rec.matched =
                        owned(library, &line.text, held.rec.text.len() + 1).map(|(m, _)| m);
                }
                append_bounded(&mut held.rec, &line, self.max_size);
                self.flush(out);
                return;
            }
            if continues {
                if line.text.starts_with("goroutine ") || line.text == "runtime stack:" {
                    held.go_trace = true;
                }
                if held.rec.matched.is_none() {
                    held.rec.matched =
                        owned(library, &line.text, held.rec.text.len() + 1).map(|(m, _)| m);
                }
                append_bounded(&mut held.rec, &line, self.max_size);
                held.last = now;
                return;
            }
        }
        self.flush(out);
        let matched = owned(library, &line.text, 0);
        let expects_trace = matched.as_ref().is_some_and(|(_, t)| *t);
        let rec = Assembled {
            text: line.text,
            end_offset: line.end_offset,
            first_end_offset: line.end_offset,
            matched: matched.map(|(m, _)| m),
            truncated: line.truncated,
            time_unix_nano: line.time_unix_nano,
            stream: line.stream,
        };
        let starts_block = self
            .line_start
            .as_ref()
            .is_some_and(|s| s.is_match(&rec.text));
        let python_traceback = self.line_start.is_none() && rec.text.trim_end() == PYTHON_TRACEBACK;
        if starts_block || (self.line_start.is_none() && expects_trace) || python_traceback {
            self.held = Some(Held {
                rec,
                since: now,
                last: now,
                trace: !starts_block,
                go_trace: false,
                python_traceback,
            });
        } else {
            out.push(rec);
        }
    }

    /// Emits a held record once `period` has passed without a line for
    /// it, or once it has been held for [`HOLD_LIMIT`] (or `period`, if
    /// longer) however many lines keep coming.
    pub fn flush_due(&mut self, period: Duration, out: &mut Vec<Assembled>) {
        self.flush_due_at(period, Instant::now(), out);
    }

    fn flush_due_at(&mut self, period: Duration, now: Instant, out: &mut Vec<Assembled>) {
        if self.held.as_ref().is_some_and(|h| {
            now.saturating_duration_since(h.last) >= period
                || now.saturating_duration_since(h.since) >= period.max(HOLD_LIMIT)
        }) {
            self.flush(out);
        }
    }

    pub fn flush(&mut self, out: &mut Vec<Assembled>) {
        if let Some(mut h) = self.held.take() {
            let trimmed = h.rec.text.trim_end_matches('\n').len();
            h.rec.text.truncate(trimmed);
            if let Some(matched) = &mut h.rec.matched {
                complete_exception(matched, &h.rec.text);
            }
            out.push(h.rec);
        }
    }

    /// Offset where the held record starts is not tracked: a held record
    /// keeps the file's acknowledged offset where it was.
    pub fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    /// The `end_offset` of the held record's first line.
    pub fn held_first_end_offset(&self) -> Option<u64> {
        self.held.as_ref().map(|h| h.rec.first_end_offset)
    }
}

fn append_bounded(rec: &mut Assembled, line: &Line, max: usize) {
    rec.end_offset = line.end_offset;
    if rec.truncated || rec.text.len() >= max {
        rec.truncated = true;
        return;
    }
    rec.text.push('\n');
    let room = max.saturating_sub(rec.text.len());
    if line.text.len() <= room {
        rec.text.push_str(&line.text);
        rec.truncated |= line.truncated;
    } else {
        let mut cut = room;
        while !line.text.is_char_boundary(cut) {
            cut -= 1;
        }
        rec.text.push_str(&line.text[..cut]);
        rec.truncated = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, end: u64) -> Line {
        Line {
            text: text.to_string(),
            end_offset: end,
            ..Default::default()
        }
    }

    #[test]
    fn line_start_pattern_groups_blocks() {
        let lib = Library::builtin();
        let mut a = Assembler::new(Regex::new(r"^\d{4}-").ok(), 1000);
        let mut out = Vec::new();
        for (i, t) in ["orphan", "2024-01 a", "  cont", "2024-01 b"]
            .iter()
            .enumerate()
        {
            a.push(&lib, line(t, i as u64 + 1), &mut out);
        }
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].text, "orphan");
        assert_eq!(out[1].text, "2024-01 a\n  cont");
        assert_eq!(out[1].end_offset, 3);
        assert!(a.is_holding());
        a.flush_due(Duration::ZERO, &mut out);
        assert_eq!(out[2].text, "2024-01 b");
    }

    /// An assembler holding a Java OOM line that came at `t0`.
    fn holding_an_oom_line(lib: &Library, t0: Instant) -> (Assembler, Vec<Assembled>) {
        let mut a = Assembler::new(None, 100_000);
        let mut out = Vec::new();
        a.push_at(
            lib,
            line("java.lang.OutOfMemoryError: Java heap space", 1),
            t0,
            &mut out,
        );
        assert!(out.is_empty() && a.is_holding());
        (a, out)
    }

    /// `force_flush_period` runs from the last line: a trace written slowly
    /// stays whole; a pause as long as the period ends it; one that never
    /// ends goes after `HOLD_LIMIT`.
    #[test]
    fn the_flush_period_runs_from_the_last_line_up_to_the_hold_limit() {
        let lib = Library::builtin();
        let period = Duration::from_millis(500);
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let (mut a, mut out) = holding_an_oom_line(&lib, t0);
        // One frame every 400 ms: 2 s in all, each gap under the period.
        for i in 1..=5u32 {
            let at = t0 + ms(400) * i;
            a.flush_due_at(period, at, &mut out);
            assert!(out.is_empty(), "split at frame {i}");
            a.push_at(
                &lib,
                line(&format!("\tat A.f{i}(A.java:{i})"), u64::from(i) + 1),
                at,
                &mut out,
            );
        }
        let last = t0 + ms(2000);
        a.flush_due_at(period, last + ms(499), &mut out);
        assert!(
            out.is_empty(),
            "held until the period passed after the last frame"
        );
        a.flush_due_at(period, last + ms(500), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].text.lines().count(), 6, "{}", out[0].text);
        assert!(out[0].matched.is_some());

        // Frames that never stop: out at the hold limit, not later.
        let (mut a, mut out) = holding_an_oom_line(&lib, t0);
        let mut at = t0;
        while out.is_empty() {
            at += ms(100);
            assert!(at <= t0 + HOLD_LIMIT, "still held at {:?}", at - t0);
            a.flush_due_at(period, at, &mut out);
            a.push_at(&lib, line("\tat A.f(A.java:1)", 2), at, &mut out);
        }
        assert_eq!(at - t0, HOLD_LIMIT);
        assert!(out[0].matched.is_some());

        // A period longer than the limit is kept.
        let (mut a, mut out) = holding_an_oom_line(&lib, t0);
        a.push_at(&lib, line("\tat A.f(A.java:1)", 2), t0 + ms(9000), &mut out);
        a.flush_due_at(ms(10_000), t0 + ms(9999), &mut out);
        assert!(out.is_empty());
        a.flush_due_at(ms(10_000), t0 + ms(10_000), &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn blocks_are_bounded() {
        let lib = Library::builtin();
        let mut a = Assembler::new(Regex::new("^S").ok(), 10);
        let mut out = Vec::new();
        a.push(&lib, line("S2345", 1), &mut out);
        a.push(&lib, line(" 789012345", 2), &mut out);
        a.flush(&mut out);
        assert_eq!(out[0].text, "S2345\n 789");
        assert!(out[0].truncated);
        assert_eq!(out[0].end_offset, 2);
    }

    fn assemble(lines: &[&str]) -> Vec<Assembled> {
        let lib = Library::builtin();
        let mut a = Assembler::new(None, 10_000);
        let mut out = Vec::new();
        for (i, t) in lines.iter().enumerate() {
            a.push(&lib, line(t, i as u64 + 1), &mut out);
        }
        a.flush(&mut out);
        out
    }

    #[test]
    fn python_traceback_is_one_record_ending_at_its_exception_line() {
        let out = assemble(&[
            "Traceback (most recent call last):",
            "  File \"<string>\", line 3, in grow",
            "MemoryError",
            "next entry",
        ]);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(
            out[0].text,
            "Traceback (most recent call last):\n  File \"<string>\", line 3, in grow\nMemoryError"
        );
        assert_eq!(out[0].end_offset, 3);
        let matched = out[0].matched.as_ref().map(|m| m.pattern.as_str());
        assert_eq!(matched, Some("python.memory_error"));
        assert_eq!(out[1].text, "next entry");
        assert!(out[1].matched.is_none());
    }

    #[test]
    fn python_traceback_of_another_exception_is_unmatched() {
        let out = assemble(&[
            "Traceback (most recent call last):",
            "  File \"x.py\", line 1, in <module>",
            "ValueError: nope",
        ]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].matched.is_none());
    }

    #[test]
    fn node_native_stack_stays_with_the_fatal_error() {
        let out = assemble(&[
            "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
            "----- Native stack trace -----",
            "",
            " 9: 0x15247d6 v8::internal::Runtime_AllocateInYoungGeneration [node]",
            "10: 0x195e476  [node]",
            "next entry",
        ]);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].text.ends_with("10: 0x195e476  [node]"), "{out:?}");
        assert_eq!(out[1].text, "next entry");
    }

    #[test]
    fn go_fatal_error_keeps_its_runtime_stack_and_goroutines() {
        let out = assemble(&[
            "fatal error: runtime: out of memory",
            "",
            "runtime stack:",
            "runtime.throw({0x4b0a1e?, 0x400000?})",
            "\t/usr/lib/go-1.19/src/runtime/panic.go:1047 +0x5d",
            "",
            "goroutine 1 [running]:",
            "main.main()",
            "\t/tmp/grow.go:9 +0x45",
            "next entry",
        ]);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].text.ends_with("/tmp/grow.go:9 +0x45"), "{out:?}");
        assert_eq!(out[1].text, "next entry");
    }

    /// (`exception.type`, `exception.message`, `exception.stacktrace`) of a record.
    fn exception(a: &Assembled) -> [Option<&str>; 3] {
        let get = |key: &str| {
            a.matched.as_ref().and_then(|m| {
                m.attributes.iter().find_map(|(k, v)| match v {
                    AttrValue::Str(s) if k == key => Some(s.as_str()),
                    _ => None,
                })
            })
        };
        [
            get(EXCEPTION_TYPE),
            get(EXCEPTION_MESSAGE),
            get(EXCEPTION_STACKTRACE),
        ]
    }

    /// The records of a real sample (tests/data/runtime-oom/) with a match.
    fn matched_records(sample: &str) -> Vec<Assembled> {
        let lines: Vec<&str> = sample.lines().collect();
        assemble(&lines)
            .into_iter()
            .filter(|a| a.matched.is_some())
            .collect()
    }

    fn pattern(a: &Assembled) -> &str {
        a.matched.as_ref().map_or("", |m| m.pattern.as_str())
    }

    const JAVA: &str = include_str!("../../../../tests/data/runtime-oom/java-heap-space.txt");

    #[test]
    fn java_heap_space_sample_has_type_message_and_its_printed_trace() {
        let out = matched_records(JAVA);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(pattern(&out[0]), "java.heap_space");
        assert_eq!(
            exception(&out[0]),
            [
                Some("java.lang.OutOfMemoryError"),
                Some("Java heap space"),
                Some(JAVA.trim_end()),
            ]
        );
        // The pattern's own attributes are kept.
        let m = out[0].matched.as_ref().map(|m| &m.attributes);
        assert!(
            m.is_some_and(|a| a.contains(&(
                "oom.java.error".to_owned(),
                AttrValue::Str("Java heap space".to_owned())
            ))),
            "{m:?}"
        );
    }

    #[test]
    fn a_loggers_prefix_is_not_part_of_the_stack_trace() {
        // The real sample after a logging framework's prefix.
        let prefixed = format!("2026-12-06 00:00:00.000 ERROR [main] {JAVA}");
        let out = matched_records(&prefixed);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(exception(&out[0])[2], Some(JAVA.trim_end()));
        // The body keeps the whole text.
        assert_eq!(out[0].text, prefixed.trim_end());
    }

    #[test]
    fn python_sample_has_its_whole_traceback() {
        let sample = include_str!("../../../../tests/data/runtime-oom/python-memory-error.txt");
        let out = matched_records(sample);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(pattern(&out[0]), "python.memory_error");
        // A bare `MemoryError` has no message.
        assert_eq!(
            exception(&out[0]),
            [Some("MemoryError"), None, Some(sample.trim_end())]
        );
    }

    #[test]
    fn node_heap_limit_sample_has_a_message_and_the_native_stack() {
        let sample = include_str!("../../../../tests/data/runtime-oom/node-heap-limit.txt");
        let out = matched_records(sample);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(pattern(&out[0]), "node.heap_out_of_memory");
        let start = sample.find("FATAL ERROR: ").unwrap_or_default();
        assert_eq!(
            exception(&out[0]),
            [
                None,
                Some("Reached heap limit Allocation failed - JavaScript heap out of memory"),
                Some(sample[start..].trim_end()),
            ]
        );
    }

    #[test]
    fn node_worker_sample_has_its_code_as_type_and_its_js_stack() {
        let sample =
            include_str!("../../../../tests/data/runtime-oom/node-worker-memory-limit.txt");
        let out = matched_records(sample);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(pattern(&out[0]), "node.worker_out_of_memory");
        let trace: Vec<&str> = sample
            .lines()
            .skip_while(|l| !l.starts_with("Error ["))
            .take(3)
            .collect();
        assert!(trace[2].starts_with("    at "), "{trace:?}");
        assert_eq!(
            exception(&out[0]),
            [
                Some("ERR_WORKER_OUT_OF_MEMORY"),
                Some("Worker terminated due to reaching memory limit: JS heap out of memory"),
                Some(trace.join("\n").as_str()),
            ]
        );
    }

    #[test]
    fn go_sample_has_the_throw_as_message_and_the_goroutines_as_trace() {
        let sample = include_str!("../../../../tests/data/runtime-oom/go-cannot-allocate.txt");
        let out = matched_records(sample);
        assert_eq!(out.len(), 2, "{out:#?}");
        // The allocator's line before the throw is no exception of its own.
        assert_eq!(pattern(&out[0]), "go.cannot_allocate");
        assert_eq!(exception(&out[0]), [None, None, None]);
        assert_eq!(pattern(&out[1]), "go.fatal_out_of_memory");
        let start = sample.find("fatal error: ").unwrap_or_default();
        assert_eq!(
            exception(&out[1]),
            [
                None,
                Some("out of memory"),
                Some(sample[start..].trim_end())
            ]
        );
    }

    #[test]
    fn cpp_sample_has_type_and_what_but_no_stack_trace() {
        let sample = include_str!("../../../../tests/data/runtime-oom/cpp-bad-alloc.txt");
        let out = matched_records(sample);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(pattern(&out[0]), "cpp.bad_alloc");
        // libstdc++ prints no frames: the `what()` line is the message.
        assert_eq!(
            exception(&out[0]),
            [Some("std::bad_alloc"), Some("std::bad_alloc"), None]
        );
    }

    #[test]
    fn rust_sample_has_its_backtrace() {
        let sample =
            include_str!("../../../../tests/data/runtime-oom/rust-alloc-failed-backtrace.txt");
        let out = matched_records(sample);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(pattern(&out[0]), "rust.alloc_failed");
        let end = sample.find("\nnote: ").unwrap_or(sample.len());
        assert_eq!(
            exception(&out[0]),
            [
                None,
                Some("memory allocation of 1099511627776 bytes failed"),
                Some(&sample[..end]),
            ]
        );
    }

    #[test]
    fn dotnet_trace_starts_at_the_exception_type() {
        // Constructed in the format .NET prints an unhandled exception
        // (no .NET runtime here to capture a real one).
        let out = assemble(&[
            "Unhandled exception. System.OutOfMemoryException: Exception of type 'System.OutOfMemoryException' was thrown.",
            "   at Program.Main(String[] args) in /app/Program.cs:line 5",
            "next entry",
        ]);
        assert_eq!(out.len(), 2, "{out:#?}");
        assert_eq!(
            exception(&out[0]),
            [
                Some("System.OutOfMemoryException"),
                Some("Exception of type 'System.OutOfMemoryException' was thrown."),
                Some(
                    "System.OutOfMemoryException: Exception of type 'System.OutOfMemoryException' was thrown.\n   at Program.Main(String[] args) in /app/Program.cs:line 5"
                ),
            ]
        );
    }

    #[test]
    fn a_single_line_has_no_stack_trace_and_a_cut_trace_is_the_cut_text() {
        let first = JAVA.lines().next().unwrap_or_default();
        let out = assemble(&[first, "next entry"]);
        assert_eq!(
            exception(&out[0]),
            [
                Some("java.lang.OutOfMemoryError"),
                Some("Java heap space"),
                None
            ]
        );
        // The record's size limit bounds the trace as it bounds the body.
        let lib = Library::builtin();
        let mut a = Assembler::new(None, 100);
        let mut out = Vec::new();
        for (i, l) in JAVA.lines().enumerate() {
            a.push(&lib, line(l, i as u64 + 1), &mut out);
        }
        a.flush(&mut out);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert!(out[0].truncated);
        assert_eq!(exception(&out[0])[2], Some(out[0].text.as_str()));
        // A match whose line was cut off entirely gives no trace.
        let mut a = Assembler::new(Regex::new("^S").ok(), 10);
        let mut out = Vec::new();
        a.push(&lib, line("S 12345678", 1), &mut out);
        a.push(&lib, line(first, 2), &mut out);
        a.push(&lib, line(" at x", 3), &mut out);
        a.flush(&mut out);
        assert_eq!(
            exception(&out[0]),
            [
                Some("java.lang.OutOfMemoryError"),
                Some("Java heap space"),
                None
            ]
        );
    }

    #[test]
    fn trace_lines_are_recognised() {
        assert!(is_trace_line("10: 0x195e476  [node]", false));
        assert!(!is_trace_line("10: done", false));
        assert!(is_trace_line("\tat com.x.Y(Y.java:1)", false));
        assert!(is_trace_line(
            "Caused by: java.lang.OutOfMemoryError",
            false
        ));
        assert!(is_trace_line("main.main()", true));
        assert!(!is_trace_line("main.main()", false));
        assert!(!is_trace_line("2024-01-01 next entry", false));
    }
}
