//! Journal entries as OTLP: the facts of an entry that a record carries,
//! the record (body, severity, attributes) and its resource.
//!
//! Names follow the OpenTelemetry semantic conventions where they have
//! one (`process.*`, `container.*`), else the collector's proposal for its
//! journald receiver (`syslog.identifier`, `journald.<FIELD>`).

use super::journal::Journal;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::journal::{field_int, field_string};
use crate::clock::unix_now_nanos;
use crate::pipeline::data::{agent_scope, kv, kv_int, kv_str};
use crate::receivers::filelog::multiline::Assembled;
use crate::receivers::oom::enrich::container_ids;
use crate::redact::redact_args;

pub use super::SCOPE_NAME;

/// Longest value kept of a field other than the message.
const MAX_FIELD: usize = 4096;
/// Longest command line kept.
const MAX_CMDLINE: usize = 16 * 1024;

/// What a record says about the entry it came from (its first entry, for
/// a grouped stack trace).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntryFacts {
    pub realtime_usec: u64,
    pub priority: Option<i64>,
    pub facility: Option<i64>,
    pub identifier: Option<String>,
    pub pid: Option<i64>,
    pub comm: Option<String>,
    pub exe: Option<String>,
    pub cmdline: Option<String>,
    pub uid: Option<i64>,
    pub cgroup: Option<String>,
    pub container_id: Option<String>,
    pub container_name: Option<String>,
    /// Every other field, as `journald.<FIELD>` (or a semantic-convention
    /// name where one fits), sorted by field name.
    pub other: Vec<(String, String)>,
}

/// Fields mapped to named attributes above, or not repeated as
/// `journald.<FIELD>` (`_CMDLINE` only redacted, as `process.command_line`).
const MAPPED_FIELDS: &[&str] = &[
    "MESSAGE",
    "PRIORITY",
    "SYSLOG_FACILITY",
    "SYSLOG_IDENTIFIER",
    "_PID",
    "_UID",
    "_EXE",
    "_CMDLINE",
    "CONTAINER_ID",
    "CONTAINER_ID_FULL",
    "CONTAINER_NAME",
];
/// Other fields kept per record at most (an entry may have up to 1024).
const MAX_OTHER_FIELDS: usize = 64;

/// The attribute name of another field: the semantic conventions' where one
/// fits, the collector's proposal (`syslog.pid`, `journald.<FIELD>`) else.
fn other_field_key(field: &str) -> String {
    match field {
        "SYSLOG_PID" => "syslog.pid".to_owned(),
        "SYSLOG_TIMESTAMP" => "syslog.timestamp".to_owned(),
        "CODE_FILE" => "code.file.path".to_owned(),
        "CODE_LINE" => "code.line.number".to_owned(),
        "CODE_FUNC" => "code.function.name".to_owned(),
        _ => format!("journald.{field}"),
    }
}

impl EntryFacts {
    /// The facts of the journal's current entry.
    pub fn read(journal: &mut Journal) -> EntryFacts {
        let s = |j: &mut Journal, name: &str| {
            field_string(j, name, MAX_FIELD).filter(|v| !v.is_empty())
        };
        EntryFacts {
            realtime_usec: journal.timestamp_usec().unwrap_or(0),
            priority: field_int(journal, "PRIORITY\0"),
            facility: field_int(journal, "SYSLOG_FACILITY\0"),
            identifier: s(journal, "SYSLOG_IDENTIFIER\0"),
            pid: field_int(journal, "_PID\0"),
            comm: s(journal, "_COMM\0"),
            exe: s(journal, "_EXE\0"),
            cmdline: field_string(journal, "_CMDLINE\0", MAX_CMDLINE).filter(|v| !v.is_empty()),
            uid: field_int(journal, "_UID\0"),
            cgroup: s(journal, "_SYSTEMD_CGROUP\0"),
            container_id: s(journal, "CONTAINER_ID_FULL\0")
                .or_else(|| s(journal, "CONTAINER_ID\0")),
            container_name: s(journal, "CONTAINER_NAME\0"),
            other: other_fields(journal),
        }
    }

    /// The resource: the process and its container.
    pub fn resource_attributes(&self, secret_keys: &[String]) -> Vec<KeyValue> {
        let mut out = Vec::new();
        if let Some(pid) = self.pid {
            out.push(kv_int("process.pid", pid));
        }
        let exe_name = self
            .exe
            .as_deref()
            .and_then(|e| e.rsplit('/').next())
            .filter(|n| !n.is_empty())
            .or(self.comm.as_deref());
        if let Some(name) = exe_name {
            out.push(kv_str("process.executable.name", name));
        }
        if let Some(exe) = &self.exe {
            out.push(kv_str("process.executable.path", exe));
        }
        if let Some(cmdline) = &self.cmdline {
            // journald joins the arguments with spaces: split back the same way.
            let args: Vec<String> = cmdline.split(' ').map(str::to_owned).collect();
            out.push(kv_str(
                "process.command_line",
                &redact_args(&args, secret_keys).join(" "),
            ));
        }
        if let Some(uid) = self.uid {
            out.push(kv_int("process.real_user.id", uid));
        }
        let from_cgroup = self.cgroup.as_deref().map(container_ids);
        let container_id = self.container_id.clone().or_else(|| {
            from_cgroup
                .as_ref()
                .and_then(|ids| ids.container_id.clone())
        });
        if let Some(id) = &container_id {
            out.push(kv_str("container.id", id));
        }
        if let Some(name) = &self.container_name {
            out.push(kv_str("container.name", name));
        }
        if let Some(uid) = from_cgroup.and_then(|ids| ids.pod_uid) {
            out.push(kv_str("k8s.pod.uid", &uid));
        }
        out
    }

    /// The record's own attributes.
    pub(crate) fn attributes(&self, out: &mut Vec<KeyValue>) {
        if let Some(id) = &self.identifier {
            out.push(kv_str("syslog.identifier", id));
        }
        if let Some(facility) = self.facility {
            out.push(kv_int("syslog.facility.code", facility));
        }
        for (field, value) in &self.other {
            let key = other_field_key(field);
            match (field.as_str(), value.trim().parse::<i64>()) {
                ("SYSLOG_PID" | "CODE_LINE", Ok(n)) => out.push(kv_int(&key, n)),
                _ => out.push(kv_str(&key, value)),
            }
        }
    }
}

/// The current entry's fields other than [`MAPPED_FIELDS`], as text
/// (bounded), sorted by name; a field repeated in the entry keeps its first
/// value.
fn other_fields(journal: &mut Journal) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    journal.restart_data();
    // Up to the end, or an unreadable field (a corrupt object).
    while let Ok(Some(data)) = journal.enumerate_data() {
        let (Ok(name), Some(value)) = (std::str::from_utf8(data.name()), data.value()) else {
            continue;
        };
        if MAPPED_FIELDS.contains(&name) || out.iter().any(|(n, _)| n == name) {
            continue;
        }
        let (text, _) = super::journal::lossy_bounded(value, MAX_FIELD);
        out.push((name.to_owned(), text));
        if out.len() >= MAX_OTHER_FIELDS {
            break;
        }
    }
    out.sort();
    out
}

/// The collector's proposed mapping of syslog priorities: number and text.
pub fn priority_severity(priority: i64) -> Option<(i32, &'static str)> {
    Some(match priority {
        0 => (21, "emerg"),
        1 => (19, "alert"),
        2 => (18, "crit"),
        3 => (17, "err"),
        4 => (13, "warning"),
        5 => (10, "notice"),
        6 => (9, "info"),
        7 => (5, "debug"),
        _ => return None,
    })
}

/// A record of one assembled block (a message, or a message and its stack
/// trace) and the facts of its first entry.
pub fn log_record(a: Assembled, facts: &EntryFacts) -> LogRecord {
    let mut attributes = Vec::new();
    let (mut severity_number, mut severity_text) = facts
        .priority
        .and_then(priority_severity)
        .map_or((0, String::new()), |(n, t)| (n, t.to_owned()));
    if let Some(m) = a.matched {
        attributes.push(kv_str("oom.pattern", &m.pattern));
        attributes.push(kv_str("oom.runtime", &m.runtime));
        for (k, v) in m.attributes {
            attributes.push(kv(&k, v.into()));
        }
        severity_number = m.severity_number;
        severity_text = m.severity_text;
    }
    facts.attributes(&mut attributes);
    if a.truncated {
        attributes.push(kv(
            "oomscope.log.truncated",
            any_value::Value::BoolValue(true),
        ));
    }
    LogRecord {
        time_unix_nano: facts.realtime_usec.saturating_mul(1000),
        observed_time_unix_nano: unix_now_nanos(),
        severity_number,
        severity_text,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(a.text)),
        }),
        attributes,
        ..Default::default()
    }
}

/// Records under their resources, one `ResourceLogs` per distinct resource
/// (in order of first appearance).
#[derive(Debug, Default)]
pub struct Batch {
    groups: Vec<(Vec<KeyValue>, Vec<LogRecord>)>,
    records: usize,
}

/// Distinct resources looked through linearly before a new group is made
/// regardless (a batch of many processes stays cheap to build).
const MAX_LINEAR_RESOURCES: usize = 64;

impl Batch {
    pub fn push(&mut self, resource: Vec<KeyValue>, record: LogRecord) {
        self.records += 1;
        let start = self.groups.len().saturating_sub(MAX_LINEAR_RESOURCES);
        if let Some((_, records)) = self.groups[start..]
            .iter_mut()
            .find(|(r, _)| *r == resource)
        {
            records.push(record);
        } else {
            self.groups.push((resource, vec![record]));
        }
    }

    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    pub fn into_resource_logs(self) -> Vec<ResourceLogs> {
        self.groups
            .into_iter()
            .map(|(attributes, records)| ResourceLogs {
                resource: (!attributes.is_empty()).then(|| Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(agent_scope(SCOPE_NAME)),
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect()
    }
}

/// The record telling that entries were removed before they were read.
pub fn gap_record(gap: &super::journal::Gap) -> LogRecord {
    let mut body = String::from(
        "journal entries were removed (vacuumed or rotated away) before they were read",
    );
    if let Some(n) = gap.at_most {
        body.push_str(&format!(": at most {n} entries"));
    }
    let mut attributes = vec![
        kv_str("oomscope.journald.gap.from_cursor", &gap.from_cursor),
        kv_str("oomscope.journald.gap.to_cursor", &gap.to_cursor),
    ];
    if let Some(n) = gap.at_most {
        attributes.push(kv_int(
            "oomscope.journald.gap.entries_max",
            i64::try_from(n).unwrap_or(i64::MAX),
        ));
    }
    for (key, usec) in [
        ("oomscope.journald.gap.from_time", gap.from_usec),
        ("oomscope.journald.gap.to_time", gap.to_usec),
    ] {
        if let Some(usec) = usec {
            attributes.push(kv_str(key, &rfc3339(usec)));
        }
    }
    LogRecord {
        time_unix_nano: gap.to_usec.unwrap_or(0).saturating_mul(1000),
        observed_time_unix_nano: unix_now_nanos(),
        severity_number: 13,
        severity_text: "WARN".to_owned(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body)),
        }),
        attributes,
        ..Default::default()
    }
}

/// Microseconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(usec: u64) -> String {
    let nanos = i128::from(usec) * 1000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| usec.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_is_the_process_and_its_container() {
        let facts = EntryFacts {
            pid: Some(42),
            exe: Some("/usr/bin/java".into()),
            comm: Some("java".into()),
            cmdline: Some("java -Xmx1g --db-password=hunter2 -jar app.jar".into()),
            uid: Some(1000),
            cgroup: Some("/machine.slice/libpod-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope".into()),
            container_name: Some("web".into()),
            ..EntryFacts::default()
        };
        let attrs = facts.resource_attributes(&crate::redact::default_keys());
        let get = |k: &str| {
            attrs
                .iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.as_ref())
                .and_then(|v| v.value.clone())
        };
        assert_eq!(get("process.pid"), Some(any_value::Value::IntValue(42)));
        assert_eq!(
            get("process.executable.name"),
            Some(any_value::Value::StringValue("java".into()))
        );
        assert_eq!(
            get("process.command_line"),
            Some(any_value::Value::StringValue(
                "java -Xmx1g --db-password=*** -jar app.jar".into()
            ))
        );
        assert_eq!(
            get("process.real_user.id"),
            Some(any_value::Value::IntValue(1000))
        );
        assert_eq!(
            get("container.id"),
            Some(any_value::Value::StringValue(
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into()
            ))
        );
        assert_eq!(
            get("container.name"),
            Some(any_value::Value::StringValue("web".into()))
        );
    }

    #[test]
    fn priorities_map_as_the_collector_proposes() {
        assert_eq!(priority_severity(0), Some((21, "emerg")));
        assert_eq!(priority_severity(3), Some((17, "err")));
        assert_eq!(priority_severity(6), Some((9, "info")));
        assert_eq!(priority_severity(8), None);
    }
}
