//! One input's kernel OOM reports, each with what was found near it: the
//! `oom_reaper` line of its victim and the runtimes' own OOM messages (Java,
//! Go, Python, Node, ...) with their stack traces.
//!
//! The reports come from [`TextReports`]; the runtime messages from the
//! pattern library and the filelog receiver's multiline [`Assembler`], fed
//! the lines that are not the kernel's. A report is held until
//! [`NEARBY_LINES`] more lines (and, when its time is known,
//! [`NEARBY_SECONDS`] more of log time) have been read, so that messages
//! after it are found too; at most [`MAX_HOLD_LINES`] lines and
//! [`MAX_HELD`] reports. Every buffer is bounded.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::kernel_log::report_record::KERNEL_RUNTIME;
use crate::kernel_log::text::{split_prefix, unfold_rsyslog, PrefixForm, TextLine, TimeContext};
use crate::kernel_log::text_reports::{TextEvent, TextReport, TextReports};
use crate::kernel_log::Reaped;
use crate::patterns::{AttrValue, Library, EXCEPTION_STACKTRACE};
use crate::receivers::filelog::multiline::{Assembled, Assembler, PYTHON_TRACEBACK};
use crate::receivers::filelog::reader::Line;

/// A runtime message this many lines before or after a report is near it.
pub const NEARBY_LINES: u64 = 100;
/// ... or this close in time, when both times are known.
pub const NEARBY_SECONDS: u64 = 5;
const NEARBY_NANOS: u64 = NEARBY_SECONDS * 1_000_000_000;
/// A report is held at most this many lines for messages after it.
pub const MAX_HOLD_LINES: u64 = 10_000;
/// Reports held at once (the oldest is let go first): each holds up to
/// `text_reports::MAX_BODY_BYTES` of text.
pub const MAX_HELD: usize = 64;
/// Runtime messages remembered for reports to come.
pub const MAX_RECENT_MESSAGES: usize = 64;
/// Runtime messages shown per report (the closest).
pub const MAX_NEARBY: usize = 5;
/// Lines of a runtime message (its stack trace) kept.
pub const MAX_MESSAGE_LINES: usize = 20;
/// Bytes of a runtime message kept.
const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Bytes the multiline assembler groups per message before cutting.
const MAX_ASSEMBLED_BYTES: usize = 64 * 1024;

/// An input, as findings name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceName {
    /// The path as given (or found in a directory); `None` for stdin.
    pub path: Option<String>,
    /// How messages name it.
    pub display: String,
}

/// A runtime's OOM message (with its stack trace) found in the text.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeMessage {
    /// Unique within one run of `analyze`.
    pub id: u64,
    pub source: Arc<SourceName>,
    /// `oom.pattern`, `oom.runtime`.
    pub pattern: String,
    pub runtime: String,
    pub severity_number: i32,
    pub severity_text: String,
    /// The pattern's captures.
    pub attributes: Vec<(String, crate::patterns::AttrValue)>,
    pub first_line: u64,
    pub last_line: u64,
    /// From the first line's prefix.
    pub time_unix_nano: Option<u64>,
    /// Its first [`MAX_MESSAGE_LINES`] lines, prefixes removed.
    pub text: String,
    /// Lines it had (more than `text` holds when cut).
    pub total_lines: usize,
    /// Lines or bytes were left out.
    pub truncated: bool,
}

/// An `oom_reaper` line for a report's victim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReapedAt {
    pub reaped: Reaped,
    pub line: u64,
}

/// One kernel OOM report (a kill, or a report without one) with what was
/// found near it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub source: Arc<SourceName>,
    pub report: TextReport,
    pub reaped: Option<ReapedAt>,
    /// Closest first is not kept: in the order of the text.
    pub nearby: Vec<Arc<RuntimeMessage>>,
}

impl Finding {
    /// A kill (not a report that ended without one).
    pub fn is_kill(&self) -> bool {
        self.report.report.unfinished.is_none()
    }
}

/// Counts ids of runtime messages across inputs.
#[derive(Debug, Default)]
pub struct MessageIds(u64);

impl MessageIds {
    fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

/// Reads one input's lines; gives its findings.
pub struct InputAnalysis<'l> {
    source: Arc<SourceName>,
    ctx: TimeContext,
    reports: TextReports,
    library: &'l Library,
    runtime: Assembler,
    /// First line of the message the assembler holds.
    runtime_start: u64,
    recent: VecDeque<Arc<RuntimeMessage>>,
    held: VecDeque<Finding>,
    line: u64,
    /// The latest time a line's prefix stated.
    last_time: Option<u64>,
    events: Vec<TextEvent>,
    assembled: Vec<Assembled>,
}

impl<'l> InputAnalysis<'l> {
    /// Times without zone or year are read in `ctx`.
    pub fn new(source: Arc<SourceName>, ctx: TimeContext, library: &'l Library) -> Self {
        InputAnalysis {
            source,
            ctx,
            reports: TextReports::new(ctx),
            library,
            runtime: Assembler::new(None, MAX_ASSEMBLED_BYTES),
            runtime_start: 0,
            recent: VecDeque::new(),
            held: VecDeque::new(),
            line: 0,
            last_time: None,
            events: Vec::new(),
            assembled: Vec::new(),
        }
    }

    /// The next line (without its newline); findings whose neighbourhood
    /// has been read go to `out`.
    pub fn push_line(&mut self, text: &str, ids: &mut MessageIds, out: &mut Vec<Finding>) {
        self.line += 1;
        let parsed = split_prefix(text, &self.ctx);
        let time = parsed.time.and_then(|time| time.unix_nanos(&self.ctx));
        if time.is_some() {
            self.last_time = time;
        }
        let in_report = self.reports.push_line(text, &mut self.events);
        self.take_events();
        if !in_report && parsed.from_kernel() != Some(true) {
            self.push_runtime_line(text, &parsed, time, ids);
        }
        self.release(false, out);
    }

    /// The input ended: everything still held goes to `out`.
    pub fn finish(mut self, ids: &mut MessageIds, out: &mut Vec<Finding>) {
        self.reports.finish(&mut self.events);
        self.take_events();
        let was_holding = self.runtime.is_holding();
        self.runtime.flush(&mut self.assembled);
        self.take_assembled(was_holding, ids);
        self.release(true, out);
    }

    /// Lines read so far.
    pub fn lines(&self) -> u64 {
        self.line
    }

    fn take_events(&mut self) {
        for event in self.events.drain(..) {
            match event {
                TextEvent::Report(report) => self.held.push_back(Finding {
                    source: Arc::clone(&self.source),
                    report: *report,
                    reaped: None,
                    nearby: Vec::new(),
                }),
                TextEvent::Reaped { reaped, host, line } => {
                    // The reaper line of a held kill of the same host.
                    let victim = self.held.iter_mut().rev().find(|finding| {
                        finding.is_kill()
                            && finding.reaped.is_none()
                            && finding.report.report.killed.pid == reaped.pid
                            && finding.report.host == host
                    });
                    if let Some(finding) = victim {
                        finding.reaped = Some(ReapedAt { reaped, line });
                    }
                }
            }
        }
    }

    fn push_runtime_line(
        &mut self,
        text: &str,
        parsed: &TextLine<'_>,
        time: Option<u64>,
        ids: &mut MessageIds,
    ) {
        let message = indented_message(text, parsed);
        for piece in unfold_rsyslog(message) {
            let piece: &str = &piece;
            if !self.runtime.is_holding() && piece.trim_end() != PYTHON_TRACEBACK {
                // Most lines: no pattern, nothing grouped; skipped without
                // allocating.
                match self.library.match_line(piece) {
                    Some(matched) if matched.runtime != KERNEL_RUNTIME => {}
                    _ => continue,
                }
            }
            let was_holding = self.runtime.is_holding();
            self.runtime.push(
                self.library,
                Line {
                    text: piece.to_owned(),
                    end_offset: self.line,
                    time_unix_nano: time.unwrap_or(0),
                    ..Line::default()
                },
                &mut self.assembled,
            );
            let emitted = !self.assembled.is_empty();
            self.take_assembled(was_holding, ids);
            if self.runtime.is_holding() && (!was_holding || emitted) {
                self.runtime_start = self.line;
            }
        }
    }

    /// Messages the assembler completed; the first one is the message it
    /// held when `was_holding`.
    fn take_assembled(&mut self, was_holding: bool, ids: &mut MessageIds) {
        for (i, assembled) in self.assembled.drain(..).enumerate() {
            let Some(matched) = assembled.matched else {
                continue;
            };
            if matched.runtime == KERNEL_RUNTIME {
                continue;
            }
            let first_line = if was_holding && i == 0 {
                self.runtime_start
            } else {
                assembled.end_offset
            };
            let (text, total_lines, cut) = first_lines(&assembled.text);
            let mut attributes = matched.attributes;
            // The stack trace within this command's bounds, as `text`.
            for (key, value) in &mut attributes {
                if let (EXCEPTION_STACKTRACE, AttrValue::Str(trace)) = (key.as_str(), value) {
                    *trace = first_lines(trace).0;
                }
            }
            if self.recent.len() >= MAX_RECENT_MESSAGES {
                self.recent.pop_front();
            }
            self.recent.push_back(Arc::new(RuntimeMessage {
                id: ids.next(),
                source: Arc::clone(&self.source),
                pattern: matched.pattern,
                runtime: matched.runtime,
                severity_number: matched.severity_number,
                severity_text: matched.severity_text,
                attributes,
                first_line,
                last_line: assembled.end_offset,
                time_unix_nano: (assembled.time_unix_nano != 0).then_some(assembled.time_unix_nano),
                text,
                total_lines,
                truncated: cut || assembled.truncated,
            }));
        }
        let line = self.line;
        while self
            .recent
            .front()
            .is_some_and(|m| m.last_line + MAX_HOLD_LINES < line)
        {
            self.recent.pop_front();
        }
    }

    /// Lets go of the reports whose neighbourhood has been read (all of
    /// them when `all`).
    fn release(&mut self, all: bool, out: &mut Vec<Finding>) {
        while let Some(front) = self.held.front() {
            let ready = all || self.held.len() > MAX_HELD || self.neighbourhood_read(front);
            if !ready {
                break;
            }
            let Some(mut finding) = self.held.pop_front() else {
                break;
            };
            finding.nearby = self.nearby(&finding.report);
            out.push(finding);
        }
    }

    fn neighbourhood_read(&self, finding: &Finding) -> bool {
        let last = finding.report.last_line;
        let after = self.line.saturating_sub(last);
        if after > MAX_HOLD_LINES {
            return true;
        }
        if after <= NEARBY_LINES {
            return false;
        }
        if self.runtime.is_holding() && self.runtime_start <= last + NEARBY_LINES {
            // A message that started near it is still being read.
            return false;
        }
        match finding.report.time_unix_nano {
            None => true,
            Some(time) => self
                .last_time
                .is_some_and(|now| now > time.saturating_add(NEARBY_NANOS)),
        }
    }

    /// The runtime messages near a report, closest first chosen, in the
    /// order of the text.
    fn nearby(&self, report: &TextReport) -> Vec<Arc<RuntimeMessage>> {
        let (first, last) = (report.first_line, report.last_line);
        let mut near: Vec<(u64, &Arc<RuntimeMessage>)> = self
            .recent
            .iter()
            .filter_map(|message| {
                let by_line = message.last_line + NEARBY_LINES >= first
                    && message.first_line <= last + NEARBY_LINES;
                let by_time = matches!(
                    (report.time_unix_nano, message.time_unix_nano),
                    (Some(a), Some(b)) if a.abs_diff(b) <= NEARBY_NANOS
                );
                let distance = if message.last_line < first {
                    first - message.last_line
                } else {
                    message.first_line.saturating_sub(last)
                };
                (by_line || by_time).then_some((distance, message))
            })
            .collect();
        near.sort_by_key(|(distance, message)| (*distance, message.id));
        near.truncate(MAX_NEARBY);
        let mut chosen: Vec<Arc<RuntimeMessage>> =
            near.into_iter().map(|(_, m)| Arc::clone(m)).collect();
        chosen.sort_by_key(|message| message.id);
        chosen
    }
}

/// The message of a line with its indentation (a stack trace's frames are
/// told by it): the whole line without a prefix, else what follows the
/// prefix and its one separating blank.
fn indented_message<'a>(line: &'a str, parsed: &TextLine<'a>) -> &'a str {
    let line = line.trim_end_matches(['\r', '\n']);
    if parsed.form == PrefixForm::None {
        return line.strip_prefix('\u{feff}').unwrap_or(line);
    }
    let message = parsed.message;
    // The message is a slice of the line: find where it starts.
    let start = (message.as_ptr() as usize).wrapping_sub(line.as_ptr() as usize);
    if start > line.len() || !line.is_char_boundary(start) {
        return message;
    }
    let before = &line[..start];
    let blanks = before.len() - before.trim_end_matches([' ', '\t']).len();
    line.get(start - blanks.saturating_sub(1)..)
        .unwrap_or(message)
}

/// The first [`MAX_MESSAGE_LINES`] lines (and [`MAX_MESSAGE_BYTES`]) of
/// `text`, the count of its lines, and whether some were left out.
fn first_lines(text: &str) -> (String, usize, bool) {
    let total = text.lines().count().max(1);
    let mut kept = String::new();
    let mut cut = false;
    for (i, line) in text.lines().enumerate() {
        if i >= MAX_MESSAGE_LINES || kept.len() + line.len() + 1 > MAX_MESSAGE_BYTES {
            cut = true;
            break;
        }
        if i > 0 {
            kept.push('\n');
        }
        kept.push_str(line);
    }
    (kept, total, cut)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn analyse(text: &str) -> Vec<Finding> {
        let library = Library::builtin();
        let source = Arc::new(SourceName {
            path: None,
            display: "test".to_owned(),
        });
        let mut analysis = InputAnalysis::new(source, TimeContext::utc(2024), &library);
        let mut ids = MessageIds::default();
        let mut out = Vec::new();
        for line in text.lines() {
            analysis.push_line(line, &mut ids, &mut out);
        }
        analysis.finish(&mut ids, &mut out);
        out
    }

    #[test]
    fn indentation_is_kept_after_a_prefix() {
        let ctx = TimeContext::utc(2024);
        for (line, want) in [
            (
                "Mar  2 03:04:05 host java[12]:     at Foo.main(Foo.java:3)",
                "    at Foo.main(Foo.java:3)",
            ),
            (
                "Mar  2 03:04:05 host java[12]: Exception in thread",
                "Exception in thread",
            ),
            ("\tat Foo.main(Foo.java:3)", "\tat Foo.main(Foo.java:3)"),
            ("[  12.000000]  indented", " indented"),
        ] {
            let parsed = split_prefix(line, &ctx);
            assert_eq!(indented_message(line, &parsed), want, "{line}");
        }
    }

    /// A memcg kill in a syslog file with a Java OOM and its stack trace
    /// before it and the reaper line after it (the kernel lines of a real
    /// report on this machine's kernel, the Java lines as the JVM prints them).
    #[test]
    fn a_kill_comes_with_the_runtime_message_and_reaper_line_near_it() {
        let text = "\
Mar  2 03:04:01 web1 java[11976]: Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space
Mar  2 03:04:01 web1 java[11976]: \tat Grow.main(Grow.java:5)
Mar  2 03:04:01 web1 java[11976]: \tat java.base/java.lang.Thread.run(Thread.java:840)
Mar  2 03:04:02 web1 sshd[1]: unrelated
Mar  2 03:04:05 web1 kernel: [  518.050606] java invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0
Mar  2 03:04:05 web1 kernel: [  518.050610] CPU: 1 UID: 0 PID: 11976 Comm: java Not tainted 6.18.44 #1
Mar  2 03:04:05 web1 kernel: [  518.050700] memory: usage 51200kB, limit 51200kB, failcnt 941
Mar  2 03:04:05 web1 kernel: [  518.050800] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/oomtest,task_memcg=/oomtest,task=java,pid=11976,uid=0
Mar  2 03:04:05 web1 kernel: [  518.050900] Memory cgroup out of memory: Killed process 11976 (java) total-vm:67784kB, anon-rss:50816kB, file-rss:4096kB, shmem-rss:0kB, UID:0 pgtables:160kB oom_score_adj:0
Mar  2 03:04:05 web1 kernel: [  518.060000] oom_reaper: reaped process 11976 (java), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB
Mar  2 03:09:05 web1 sshd[1]: much later
";
        let findings = analyse(text);
        assert_eq!(findings.len(), 1, "{findings:#?}");
        let finding = &findings[0];
        assert!(finding.is_kill());
        assert_eq!(finding.report.report.killed.pid, 11976);
        assert_eq!(finding.report.host.as_deref(), Some("web1"));
        assert_eq!(
            finding.reaped.as_ref().map(|r| (r.reaped.pid, r.line)),
            Some((11976, 10))
        );
        assert_eq!(finding.nearby.len(), 1, "{:#?}", finding.nearby);
        let message = &finding.nearby[0];
        assert_eq!(
            (message.pattern.as_str(), message.runtime.as_str()),
            ("java.heap_space", "java")
        );
        assert_eq!((message.first_line, message.last_line), (1, 3));
        assert_eq!(message.text.lines().count(), 3);
        assert!(message.text.contains("\tat Grow.main"), "{}", message.text);
        // The exception attributes, the stack trace without the syslog
        // prefixes, as the record and `--json` carry them.
        let attribute = |key: &str| {
            message.attributes.iter().find_map(|(k, v)| match v {
                AttrValue::Str(s) if k == key => Some(s.as_str()),
                _ => None,
            })
        };
        assert_eq!(
            attribute("exception.type"),
            Some("java.lang.OutOfMemoryError")
        );
        assert_eq!(attribute("exception.message"), Some("Java heap space"));
        assert_eq!(
            attribute("exception.stacktrace"),
            Some(message.text.as_str())
        );
        let record = super::super::records::runtime_record(message);
        let exported = super::super::records::flatten(&record.attributes);
        assert_eq!(
            exported.get("exception.stacktrace"),
            Some(&serde_json::Value::from(message.text.as_str()))
        );
        assert_eq!(
            exported.get("oom.java.error"),
            Some(&serde_json::Value::from("Java heap space"))
        );
    }

    #[test]
    fn a_nearby_stack_trace_is_cut_as_its_text_is() {
        let mut text = String::from(
            "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space\n",
        );
        for i in 0..30 {
            text.push_str(&format!("\tat Frame{i}.run(Frame.java:{i})\n"));
        }
        text.push_str("[  518.050900] Out of memory: Killed process 42 (x) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB\n");
        let findings = analyse(&text);
        assert_eq!(findings.len(), 1);
        let message = &findings[0].nearby[0];
        assert!(message.truncated);
        let trace = message
            .attributes
            .iter()
            .find(|(k, _)| k == EXCEPTION_STACKTRACE)
            .map(|(_, v)| v.to_string());
        assert_eq!(trace.as_deref(), Some(message.text.as_str()));
        assert_eq!(message.text.lines().count(), MAX_MESSAGE_LINES);
    }

    #[test]
    fn far_messages_are_not_nearby_and_long_traces_are_cut() {
        let mut text = String::from(
            "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space\n",
        );
        for i in 0..30 {
            text.push_str(&format!("\tat Frame{i}.run(Frame.java:{i})\n"));
        }
        text.push_str("end of trace\n");
        for _ in 0..200 {
            text.push_str("filler\n");
        }
        text.push_str("[  518.050900] Out of memory: Killed process 42 (x) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB\n");
        text.push_str("fatal error: runtime: out of memory\n");
        let findings = analyse(&text);
        assert_eq!(findings.len(), 1);
        let nearby = &findings[0].nearby;
        assert_eq!(nearby.len(), 1, "{nearby:#?}");
        assert_eq!(nearby[0].runtime, "go");
        // The first message, far away, is not near; its cut is checked on
        // its own.
        let (kept, total, cut) = first_lines(&"l\n".repeat(30));
        assert_eq!(
            (kept.lines().count(), total, cut),
            (MAX_MESSAGE_LINES, 30, true)
        );
    }
}
