//! `oomscope analyze` on one input: decompression by magic bytes, bounded
//! line reading, the reports with what is near them, and their output
//! (blocks, JSON lines, OTLP records).
//!
//! Input: a byte for the line limit (16..=271 bytes), then the input's bytes
//! (plain, or gzip/zstd when they start so).
//!
//! Checked: no panic; lines read are the decoded text's lines (each cut at
//! the limit); every report's line range lies within what was read; at most
//! `MAX_NEARBY` runtime messages per report, each of at most
//! `MAX_MESSAGE_LINES` lines, none found twice for one report; every JSON
//! line parses back.
#![no_main]

use std::io::Read as _;
use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use oomscope::cli::analyze::findings::{
    Finding, InputAnalysis, MessageIds, SourceName, MAX_MESSAGE_LINES, MAX_NEARBY,
};
use oomscope::cli::analyze::input::{decode, LineReader};
use oomscope::cli::analyze::{records, render};
use oomscope::kernel_log::text::TimeContext;
use oomscope::patterns::Library;
use oomscope_fuzz::Input;

static LIBRARY: LazyLock<Library> = LazyLock::new(Library::builtin);

fn check(finding: &Finding, lines: u64) {
    let report = &finding.report;
    assert!(report.first_line <= report.last_line, "{report:?}");
    assert!(report.last_line <= lines, "{} > {lines}", report.last_line);
    assert!(finding.nearby.len() <= MAX_NEARBY);
    for pair in finding.nearby.windows(2) {
        assert!(pair[0].id < pair[1].id, "a message twice or out of order");
    }
    for message in &finding.nearby {
        assert!(message.text.lines().count() <= MAX_MESSAGE_LINES);
        assert!(message.first_line <= message.last_line && message.last_line <= lines);
    }
    let _ = render::finding_block(finding, render::Style { color: true });
    let record = records::finding_record(finding);
    let json = serde_json::to_string(&records::json_finding(finding, &record)).expect("json");
    let _: serde_json::Value = serde_json::from_str(&json).expect("json parses back");
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let max = 16 + usize::from(input.byte());
    let raw = input.take(usize::MAX).to_vec();
    let Ok((mut reader, _)) = decode(Box::new(std::io::Cursor::new(raw))) else {
        return;
    };
    // The decoded text, read once whole to know its lines (inputs are small).
    let mut text = Vec::new();
    if reader.read_to_end(&mut text).is_err() {
        return;
    }
    let source = Arc::new(SourceName {
        path: Some("/fuzz/input.log".to_owned()),
        display: "/fuzz/input.log".to_owned(),
    });
    let mut analysis = InputAnalysis::new(source, TimeContext::utc(2024), &LIBRARY);
    let mut lines = LineReader::new(&text[..], max);
    let (mut ids, mut findings, mut read) = (MessageIds::default(), Vec::new(), 0u64);
    let mut summary = render::Summary::default();
    while let Some(line) = lines.next_line().expect("reading a slice") {
        read += 1;
        assert!(line.bytes.len() <= max);
        let text = String::from_utf8_lossy(line.bytes).into_owned();
        analysis.push_line(&text, &mut ids, &mut findings);
        for finding in findings.drain(..) {
            check(&finding, read);
            summary.add(&finding);
        }
    }
    let newlines = text.iter().filter(|&&b| b == b'\n').count() as u64;
    let expected = newlines + u64::from(!text.is_empty() && !text.ends_with(b"\n"));
    assert_eq!(read, expected, "lines read");
    assert_eq!(analysis.lines(), read);
    analysis.finish(&mut ids, &mut findings);
    for finding in findings.drain(..) {
        check(&finding, read);
        summary.add(&finding);
    }
    let _ = summary.render(render::Style { color: false });
});
