//! Findings as OTLP log records (the attributes of the `kmsg` receiver's
//! report record, plus where in the text it was found) and as the JSON
//! lines of `--json`.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde::Serialize;

use super::findings::{Finding, RuntimeMessage, SourceName};
use crate::clock::unix_now_nanos;
use crate::kernel_log::report_record::report_log;
use crate::patterns::AttrValue;
use crate::pipeline::data::{kv, kv_int, kv_str};

fn kb_bytes(kb: u64) -> i64 {
    i64::try_from(kb.saturating_mul(1024)).unwrap_or(i64::MAX)
}

fn line_number(line: u64) -> i64 {
    i64::try_from(line).unwrap_or(i64::MAX)
}

/// `log.file.path` and `log.file.name` of a file (none for stdin).
fn file_attributes(source: &SourceName) -> Vec<KeyValue> {
    let Some(path) = &source.path else {
        return Vec::new();
    };
    let mut attributes = vec![kv_str("log.file.path", path)];
    if let Some(name) = std::path::Path::new(path).file_name() {
        attributes.push(kv_str("log.file.name", &name.to_string_lossy()));
    }
    attributes
}

fn line_attributes(first: u64, last: u64) -> [KeyValue; 2] {
    [
        kv_int("oom.text.line.first", line_number(first)),
        kv_int("oom.text.line.last", line_number(last)),
    ]
}

/// The report's record: what `report_log` gives for it (as the `kmsg` and
/// `filelog` receivers send it), the input's file and line range, and the
/// victim's memory after the `oom_reaper` freed it, when that line is there.
pub fn finding_record(finding: &Finding) -> LogRecord {
    let text = &finding.report;
    let mut extra = file_attributes(&finding.source);
    extra.extend(line_attributes(text.first_line, text.last_line));
    let mut record = report_log(
        &text.report,
        text.body.clone(),
        text.time_unix_nano.unwrap_or(0),
        extra,
    );
    if let Some(reaped) = &finding.reaped {
        for (key, kb) in [
            ("oom.reaped.anon_rss", reaped.reaped.anon_rss_kb),
            ("oom.reaped.file_rss", reaped.reaped.file_rss_kb),
            ("oom.reaped.shmem_rss", reaped.reaped.shmem_rss_kb),
        ] {
            if let Some(kb) = kb {
                record.attributes.push(kv_int(key, kb_bytes(kb)));
            }
        }
    }
    record
}

/// A runtime's OOM message as the `filelog` receiver sends a matched line:
/// `oom.pattern`, `oom.runtime`, the pattern's captures, the message and its
/// stack trace as the body.
pub fn runtime_record(message: &RuntimeMessage) -> LogRecord {
    let mut attributes = file_attributes(&message.source);
    attributes.push(kv_str("oom.pattern", &message.pattern));
    attributes.push(kv_str("oom.runtime", &message.runtime));
    for (key, value) in &message.attributes {
        attributes.push(kv(key, value.clone().into()));
    }
    attributes.extend(line_attributes(message.first_line, message.last_line));
    if message.truncated {
        attributes.push(kv(
            "oomscope.log.truncated",
            any_value::Value::BoolValue(true),
        ));
    }
    LogRecord {
        time_unix_nano: message.time_unix_nano.unwrap_or(0),
        observed_time_unix_nano: unix_now_nanos(),
        severity_number: message.severity_number,
        severity_text: message.severity_text.clone(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(message.text.clone())),
        }),
        attributes,
        ..Default::default()
    }
}

/// OTLP attributes as a JSON object: ints stay numbers, arrays arrays.
pub fn flatten(attributes: &[KeyValue]) -> BTreeMap<String, serde_json::Value> {
    attributes
        .iter()
        .map(|attribute| {
            let value = attribute
                .value
                .as_ref()
                .and_then(|value| value.value.as_ref())
                .map_or(serde_json::Value::Null, json_value);
            (attribute.key.clone(), value)
        })
        .collect()
}

fn json_value(value: &any_value::Value) -> serde_json::Value {
    use any_value::Value;
    match value {
        Value::StringValue(s) => serde_json::Value::String(s.clone()),
        Value::BoolValue(b) => serde_json::Value::Bool(*b),
        Value::IntValue(i) => serde_json::Value::from(*i),
        Value::DoubleValue(d) => serde_json::Value::from(*d),
        Value::ArrayValue(array) => serde_json::Value::Array(
            array
                .values
                .iter()
                .map(|v| v.value.as_ref().map_or(serde_json::Value::Null, json_value))
                .collect(),
        ),
        Value::KvlistValue(list) => {
            serde_json::Value::Object(flatten(&list.values).into_iter().collect())
        }
        Value::BytesValue(bytes) => {
            serde_json::Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect())
        }
        Value::StringValueStrindex(index) => serde_json::Value::from(*index),
    }
}

/// RFC 3339 in UTC with nanoseconds, for JSON.
pub fn rfc3339(unix_nanos: u64) -> Option<String> {
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_nanos)).ok()?;
    time.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// One line of `--json`: a kill, or a report without one.
#[derive(Debug, Serialize)]
pub struct JsonFinding<'a> {
    /// `kill` or `report_without_kill`.
    pub kind: &'static str,
    /// The path read, `-` for standard input.
    pub file: &'a str,
    pub first_line: u64,
    pub last_line: u64,
    pub host: Option<&'a str>,
    /// RFC 3339, UTC; times without zone were read in this host's zone.
    pub time: Option<String>,
    pub time_unix_nano: Option<u64>,
    /// The kernel's timestamp (time since boot), microseconds.
    pub kernel_time_us: Option<u64>,
    pub severity: &'a str,
    /// Why a report has no kill.
    pub note: Option<String>,
    /// The OTLP record's attributes (as `--otlp` sends them).
    pub attributes: BTreeMap<String, serde_json::Value>,
    pub reaped: Option<JsonReaped<'a>>,
    pub nearby: Vec<JsonRuntimeMessage<'a>>,
    /// The report's kernel lines, prefixes removed.
    pub body: &'a str,
}

#[derive(Debug, Serialize)]
pub struct JsonReaped<'a> {
    pub pid: i32,
    pub comm: &'a str,
    pub anon_rss: Option<i64>,
    pub file_rss: Option<i64>,
    pub shmem_rss: Option<i64>,
    pub line: u64,
}

#[derive(Debug, Serialize)]
pub struct JsonRuntimeMessage<'a> {
    pub pattern: &'a str,
    pub runtime: &'a str,
    pub severity: &'a str,
    pub first_line: u64,
    pub last_line: u64,
    pub time: Option<String>,
    /// Typed as the pattern library types them (ints stay numbers).
    pub attributes: BTreeMap<&'a str, serde_json::Value>,
    /// The message and its stack trace, at most 20 lines.
    pub text: &'a str,
    /// Lines the message had.
    pub lines: usize,
    pub truncated: bool,
}

/// The JSON line of a finding whose record is `record`.
pub fn json_finding<'a>(finding: &'a Finding, record: &'a LogRecord) -> JsonFinding<'a> {
    let text = &finding.report;
    JsonFinding {
        kind: if finding.is_kill() {
            "kill"
        } else {
            "report_without_kill"
        },
        file: finding.source.path.as_deref().unwrap_or("-"),
        first_line: text.first_line,
        last_line: text.last_line,
        host: text.host.as_deref(),
        time: text.time_unix_nano.and_then(rfc3339),
        time_unix_nano: text.time_unix_nano,
        kernel_time_us: text.kernel_time_us,
        severity: &record.severity_text,
        note: text.report.unfinished.as_ref().map(|u| u.note()),
        attributes: flatten(&record.attributes),
        reaped: finding.reaped.as_ref().map(|r| JsonReaped {
            pid: r.reaped.pid,
            comm: &r.reaped.comm,
            anon_rss: r.reaped.anon_rss_kb.map(kb_bytes),
            file_rss: r.reaped.file_rss_kb.map(kb_bytes),
            shmem_rss: r.reaped.shmem_rss_kb.map(kb_bytes),
            line: r.line,
        }),
        nearby: finding
            .nearby
            .iter()
            .map(|m| JsonRuntimeMessage {
                pattern: &m.pattern,
                runtime: &m.runtime,
                severity: &m.severity_text,
                first_line: m.first_line,
                last_line: m.last_line,
                time: m.time_unix_nano.and_then(rfc3339),
                attributes: m
                    .attributes
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            AttrValue::Str(s) => serde_json::Value::from(s.as_str()),
                            AttrValue::Int(i) => serde_json::Value::from(*i),
                        };
                        (k.as_str(), v)
                    })
                    .collect(),
                text: &m.text,
                lines: m.total_lines,
                truncated: m.truncated,
            })
            .collect(),
        body: &text.body,
    }
}
