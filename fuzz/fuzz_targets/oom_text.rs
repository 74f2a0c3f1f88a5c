//! Kernel OOM reports from arbitrary log text: prefixes, rsyslog folding,
//! wrapped lines, hosts, report fragments in any order. The reports that
//! come out stay within their bounds and become records without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oomscope::kernel_log::report_record::report_log;
use oomscope::kernel_log::text::TimeContext;
use oomscope::kernel_log::text_reports::{
    TextEvent, TextReports, MAX_BODY_BYTES, MAX_BODY_LINES,
};
use oomscope::kernel_log::oom_report::MAX_TASKS;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut reports = TextReports::with_page_size(TimeContext::utc(2024), 4096);
    let mut events = Vec::new();
    let mut lines = 0u64;
    for line in text.split('\n') {
        lines += 1;
        reports.push_line(line, &mut events);
        check(&mut events, lines);
    }
    reports.finish(&mut events);
    check(&mut events, lines);
});

fn check(events: &mut Vec<TextEvent>, lines: u64) {
    for event in events.drain(..) {
        let TextEvent::Report(r) = event else { continue };
        assert!(r.body.len() <= MAX_BODY_BYTES + 4096 * 2);
        assert!(r.body.lines().count() <= MAX_BODY_LINES + 2);
        assert!(r.first_line <= r.last_line && r.last_line <= lines);
        assert!(r.report.tasks.len() <= MAX_TASKS);
        let log = report_log(&r.report, r.body, r.time_unix_nano.unwrap_or(0), Vec::new());
        assert!(!log.attributes.is_empty());
    }
}
