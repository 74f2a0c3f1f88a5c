//! `oomscope analyze [FILE...|-]`: the kernel's OOM reports in log text
//! (`dmesg`, `dmesg -T`, kern.log / messages, `journalctl -k`, an sosreport,
//! a paste; also gzip'd or zstd'd files and whole directories), each kill
//! printed as one block with the runtime OOM messages found near it, then a
//! summary. `--json` writes one JSON object per report instead; `--otlp`
//! also sends them as OTLP logs. No root needed: it reads text.
//!
//! - [`input`]: which files, decompression, bounded lines.
//! - [`findings`]: reports of one input with what is near them.
//! - [`records`]: OTLP records and JSON lines.
//! - [`render`]: the human blocks and the summary.
//! - [`otlp`]: sending through the project's exporters.

pub mod findings;
pub mod input;
pub mod otlp;
pub mod records;
pub mod render;

use std::ffi::OsString;
use std::io::{self, Write};
use std::sync::Arc;

use crate::clock::{text_time_context, unix_now_seconds};
use crate::patterns::Library;
use findings::{Finding, InputAnalysis, MessageIds, SourceName};
use input::{Input, LineReader, OpenError, MAX_LINE_BYTES};
use otlp::{Endpoint, OtlpSink};
use render::{Style, Summary};

/// Exit code: every input was read (and sent, with `--otlp`).
pub const EXIT_OK: u8 = 0;
/// Some input could not be read, or the records could not be sent.
pub const EXIT_PARTIAL: u8 = 1;
/// Nothing could be read (or the options are wrong).
pub const EXIT_NOTHING_READ: u8 = 2;

/// What `oomscope analyze` was asked.
#[derive(Debug, Clone, Default)]
pub struct AnalyzeOptions {
    /// Files, directories, `-`; none: standard input.
    pub inputs: Vec<OsString>,
    /// JSON lines instead of blocks.
    pub json: bool,
    /// ANSI colours in the blocks.
    pub color: bool,
    /// Also send the records there.
    pub otlp: Option<Endpoint>,
}

/// Where output goes: `out` is the report (stdout), `err` the notes about
/// inputs (stderr). Writing stops quietly when `out`'s reader goes away.
struct Output<'a> {
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    out_closed: bool,
    /// A write error other than a closed pipe.
    out_error: Option<io::Error>,
}

impl Output<'_> {
    fn print(&mut self, text: &str) {
        if self.out_closed {
            return;
        }
        if let Err(e) = self.out.write_all(text.as_bytes()) {
            self.out_closed = true;
            if e.kind() != io::ErrorKind::BrokenPipe {
                self.out_error = Some(e);
            }
        }
    }

    fn note(&mut self, text: &str) {
        let _ = writeln!(self.err, "oomscope analyze: {text}");
    }
}

/// Runs the analysis; returns the exit code.
pub fn run(options: &AnalyzeOptions, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let mut output = Output {
        out,
        err,
        out_closed: false,
        out_error: None,
    };
    let library = match Library::new(&[], &[]) {
        Ok(library) => library,
        Err(e) => {
            output.note(&format!("the pattern library does not compile: {e}"));
            return EXIT_NOTHING_READ;
        }
    };
    let mut sink = match &options.otlp {
        Some(endpoint) => match OtlpSink::new(endpoint) {
            Ok(sink) => Some(sink),
            Err(e) => {
                output.note(&format!("--otlp: {e:#}"));
                return EXIT_NOTHING_READ;
            }
        },
        None => None,
    };
    let style = Style {
        color: options.color && !options.json,
    };
    let expanded = input::expand(&options.inputs);
    let mut summary = Summary::default();
    for (name, why) in &expanded.failed {
        output.note(&format!("{name}: {why}"));
        summary.inputs_failed += 1;
    }
    for (name, why) in &expanded.skipped {
        output.note(&format!("skipped {name}: {why}"));
        summary.inputs_skipped += 1;
    }
    if expanded.inputs.contains(&Input::Stdin) && io::IsTerminal::is_terminal(&io::stdin()) {
        output.note("reading log text from standard input (end with Ctrl-D)");
    }
    let mut ids = MessageIds::default();
    for input in &expanded.inputs {
        if output.out_closed && sink.is_none() {
            break;
        }
        read_input(
            input,
            &library,
            &mut ids,
            &mut output,
            &mut summary,
            sink.as_mut(),
            style,
            options.json,
        );
    }
    let mut code = if summary.inputs_read == 0 {
        EXIT_NOTHING_READ
    } else if summary.inputs_failed > 0 {
        EXIT_PARTIAL
    } else {
        EXIT_OK
    };
    if !options.json {
        if summary.kills == 0 && summary.without_kill == 0 && summary.inputs_read > 0 {
            output.print("No kernel OOM report found.\n");
        }
        let text = summary.render(style);
        output.print(&text);
    }
    if let Some(sink) = sink {
        match sink.finish() {
            Ok(sent) => output.note(&format!("sent {sent} records over OTLP")),
            Err(e) => {
                output.note(&format!("sending over OTLP failed: {e}"));
                code = code.max(EXIT_PARTIAL);
            }
        }
    }
    if let Some(e) = output.out_error.take() {
        output.note(&format!("cannot write the output: {e}"));
        code = code.max(EXIT_PARTIAL);
    }
    code
}

#[allow(clippy::too_many_arguments)]
fn read_input(
    input: &Input,
    library: &Library,
    ids: &mut MessageIds,
    output: &mut Output<'_>,
    summary: &mut Summary,
    mut sink: Option<&mut OtlpSink>,
    style: Style,
    json: bool,
) {
    let name = input.display_name();
    let opened = match input::open(input) {
        Ok(opened) => opened,
        Err(OpenError::Binary) => {
            output.note(&format!("skipped {name}: binary (not log text)"));
            summary.inputs_skipped += 1;
            return;
        }
        Err(OpenError::Unreadable(e)) => {
            output.note(&format!("{name}: {e}"));
            summary.inputs_failed += 1;
            return;
        }
    };
    let source = Arc::new(SourceName {
        path: match input {
            Input::Stdin => None,
            Input::File { path, .. } => Some(path.display().to_string()),
        },
        display: name.clone(),
    });
    // Year-less and zone-less times: the file's year and this host's zone.
    let ctx = text_time_context(opened.modified.unwrap_or_else(unix_now_seconds));
    let mut analysis = InputAnalysis::new(Arc::clone(&source), ctx, library);
    let mut reader = LineReader::new(opened.reader, MAX_LINE_BYTES);
    let mut findings: Vec<Finding> = Vec::new();
    summary.inputs_read += 1;
    loop {
        let line = match reader.next_line() {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                output.note(&format!(
                    "{name}: read error after line {}: {e}; the rest of it is not read",
                    analysis.lines()
                ));
                break;
            }
        };
        if line.cut {
            summary.lines_cut += 1;
        }
        let text = String::from_utf8_lossy(line.bytes);
        analysis.push_line(&text, ids, &mut findings);
        emit(
            &mut findings,
            output,
            summary,
            sink.as_deref_mut(),
            style,
            json,
        );
        if output.out_closed && sink.is_none() {
            break;
        }
    }
    summary.lines += analysis.lines();
    summary.bytes += reader.bytes_read;
    analysis.finish(ids, &mut findings);
    emit(&mut findings, output, summary, sink, style, json);
}

fn emit(
    findings: &mut Vec<Finding>,
    output: &mut Output<'_>,
    summary: &mut Summary,
    mut sink: Option<&mut OtlpSink>,
    style: Style,
    json: bool,
) {
    for finding in findings.drain(..) {
        summary.add(&finding);
        let record = records::finding_record(&finding);
        if json {
            match serde_json::to_string(&records::json_finding(&finding, &record)) {
                Ok(mut line) => {
                    line.push('\n');
                    output.print(&line);
                }
                Err(e) => output.note(&format!("cannot encode a report as JSON: {e}")),
            }
        } else {
            let mut block = render::finding_block(&finding, style);
            block.push('\n');
            output.print(&block);
        }
        if let Some(sink) = sink.as_deref_mut() {
            let host = finding.report.host.as_deref();
            sink.push(host, record);
            for message in &finding.nearby {
                if sink.first_time(message.id) {
                    sink.push(host, records::runtime_record(message));
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
