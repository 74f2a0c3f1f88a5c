//! Kernel records as OTLP: one LogRecord per record kept, per grouped OOM
//! report and per gap, and the receiver's counters.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;

use super::metrics;
use crate::kernel_log::{report_record, KmsgRecord, OomReport};
use crate::metric_catalog::{self, MetricsBuilder};
use crate::patterns::match_counts::MatchCounts;
use crate::patterns::Match;
use crate::pipeline::data::{kv, scoped_metrics};

pub const SCOPE_NAME: &str = "oomscope/kmsg";

use crate::kernel_log::report_record::{int, string, uint};
pub use crate::kernel_log::report_record::{KERNEL_RUNTIME, OOM_REPORT_PATTERN};

pub use crate::clock::{unix_now_nanos, Clock};

/// The OTLP severity of a syslog level (as the collector's syslog parser
/// maps them).
pub fn severity(level: u8) -> (SeverityNumber, &'static str) {
    match level {
        0 => (SeverityNumber::Fatal2, "FATAL2"),
        1 => (SeverityNumber::Fatal, "FATAL"),
        2 => (SeverityNumber::Error2, "ERROR2"),
        3 => (SeverityNumber::Error, "ERROR"),
        4 => (SeverityNumber::Warn, "WARN"),
        5 => (SeverityNumber::Info2, "INFO2"),
        6 => (SeverityNumber::Info, "INFO"),
        _ => (SeverityNumber::Debug, "DEBUG"),
    }
}

/// `oomscope.kmsg.*` attributes of one record, dictionary lines included
/// (`SUBSYSTEM=memory` as `oomscope.kmsg.subsystem`).
fn kmsg_attributes(record: &KmsgRecord) -> Vec<KeyValue> {
    let mut attributes = vec![
        kv("oomscope.kmsg.sequence", uint(record.seq)),
        kv("oomscope.kmsg.priority", int(i64::from(record.level))),
        kv("oomscope.kmsg.facility", int(i64::from(record.facility))),
        kv(
            "oomscope.kmsg.timestamp_monotonic_us",
            uint(record.monotonic_us),
        ),
    ];
    if record.continuation {
        attributes.push(kv(
            "oomscope.kmsg.continuation",
            any_value::Value::BoolValue(true),
        ));
    }
    for (key, value) in &record.dict {
        attributes.push(kv(
            &format!("oomscope.kmsg.{}", key.to_ascii_lowercase()),
            string(value),
        ));
    }
    attributes
}

/// One kernel record as it is (`include_all`), or with what a pattern of the
/// library found in it.
pub fn record_log(record: &KmsgRecord, matched: Option<&Match<'_>>, clock: Clock) -> LogRecord {
    let mut attributes = kmsg_attributes(record);
    let (mut severity_number, severity_text) = severity(record.level);
    let mut severity_text = severity_text.to_owned();
    if let Some(matched) = matched {
        attributes.push(kv("oom.pattern", string(matched.pattern)));
        attributes.push(kv("oom.runtime", string(matched.runtime)));
        for (key, value) in &matched.attributes {
            attributes.push(kv(key, value.clone().into()));
        }
        severity_number =
            SeverityNumber::try_from(matched.severity_number).unwrap_or(SeverityNumber::Error);
        severity_text = matched.severity_text.to_owned();
    }
    LogRecord {
        time_unix_nano: clock.unix_nano(record.monotonic_us),
        observed_time_unix_nano: unix_now_nanos(),
        severity_number: severity_number as i32,
        severity_text,
        body: Some(AnyValue {
            value: Some(string(&record.message)),
        }),
        attributes,
        ..Default::default()
    }
}

/// The grouped OOM report: `body` is the report's text block, `last` the
/// record that completed it ("Killed process").
pub fn oom_report_log(
    report: &OomReport,
    body: String,
    last: &KmsgRecord,
    clock: Clock,
) -> LogRecord {
    let mut attributes = kmsg_attributes(last);
    attributes.push(kv("oomscope.kmsg.sequence.first", uint(report.first_seq)));
    report_record::report_log(
        report,
        body,
        clock.unix_nano(report.monotonic_us),
        attributes,
    )
}

/// Records overwritten in the ring buffer before they were read.
pub fn gap_log(missed: Option<u64>) -> LogRecord {
    let now = unix_now_nanos();
    let body = match missed {
        Some(n) => format!("{n} kernel log records were overwritten before they were read"),
        None => "kernel log records were overwritten before they were read".to_owned(),
    };
    let mut attributes = Vec::new();
    if let Some(n) = missed {
        attributes.push(kv("oomscope.kmsg.gap.missed", uint(n)));
    }
    LogRecord {
        time_unix_nano: now,
        observed_time_unix_nano: now,
        severity_number: SeverityNumber::Warn as i32,
        severity_text: "WARN".to_owned(),
        body: Some(AnyValue {
            value: Some(string(&body)),
        }),
        attributes,
        ..Default::default()
    }
}

/// The receiver's cumulative counters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Records lost to ring-buffer overwrites (an overwrite of unknown size
    /// counts one: at least one record was lost).
    pub records_lost: u64,
    pub matches: MatchCounts,
}

impl Counters {
    pub fn count_match(&mut self, pattern: &str, runtime: &str) {
        self.matches.count(pattern, runtime);
    }

    /// `oomscope.kmsg.records.lost` and `oom.log.matches` (cumulative since
    /// `start_unix_nano`).
    pub fn metrics(&self, start_unix_nano: u64) -> ResourceMetrics {
        let mut b = MetricsBuilder::new(unix_now_nanos());
        b.int(
            &metrics::KMSG_RECORDS_LOST,
            start_unix_nano,
            metric_catalog::int(self.records_lost),
            Vec::new(),
        );
        self.matches.record(&mut b, start_unix_nano);
        scoped_metrics(SCOPE_NAME, None, b.into_metrics())
    }
}
