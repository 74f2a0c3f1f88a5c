//! The kernel OOM report assembler fed an arbitrary sequence of records.
//! Input: a page-size choice byte, then one record per line, either in
//! `/dev/kmsg` form (`6,1,2,-;message`) or a bare message. Sequence numbers
//! increase by one per record, as the kernel's do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oomscope::clock::Clock;
use oomscope::kernel_log::oom_report::{OomReportAssembler, MAX_REPORT_RECORDS, MAX_TASKS};
use oomscope::kernel_log::kmsg_record::KmsgRecord;
use oomscope::receivers::kmsg::kernel_records::oom_report_log;
use oomscope_fuzz::Input;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let page_size = [4096, 65536, 1, u64::MAX][usize::from(input.byte() & 3)];
    let mut assembler = OomReportAssembler::with_page_size(page_size);
    let clock = Clock { boot_unix_nano: 0 };
    for (i, line) in input.rest().split(|&b| b == b'\n').enumerate() {
        let seq = i as u64 + 1;
        let mut record = KmsgRecord::parse(line).unwrap_or_else(|_| KmsgRecord {
            level: 4,
            facility: 0,
            seq,
            monotonic_us: seq * 1000,
            continuation: false,
            message: String::from_utf8_lossy(line).into_owned(),
            dict: Vec::new(),
        });
        record.seq = seq;
        let report = assembler.push(&record);
        assert!(assembler.pending_records() <= MAX_REPORT_RECORDS);
        if let Some(first) = assembler.pending_first_seq() {
            assert!(
                first <= seq,
                "a pending report starts after the record just read"
            );
        }
        let Some(report) = report else { continue };
        assert_eq!(report.last_seq, seq);
        assert!(report.first_seq <= report.last_seq);
        assert_eq!(report.monotonic_us, record.monotonic_us);
        assert!(report.tasks.len() <= MAX_TASKS);
        assert!(report.task_count >= report.tasks.len());
        assert!(
            report
                .tasks
                .windows(2)
                .all(|w| w[0].rss_bytes >= w[1].rss_bytes),
            "tasks are not sorted by rss"
        );
        let log = oom_report_log(&report, record.message.clone(), &record, clock);
        assert!(!log.attributes.is_empty());
    }
});
