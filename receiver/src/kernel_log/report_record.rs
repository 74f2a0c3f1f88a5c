//! The kernel's OOM report as an OTLP LogRecord: the same attributes
//! whichever text it was assembled from (`/dev/kmsg`, a log file, the
//! journal, `oomscope analyze`), with the types of the `oom` receiver's
//! records (pids, sizes and counts are ints, sizes in bytes).

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};

use super::{OomReport, OomTask};
use crate::clock::unix_now_nanos;
use crate::pipeline::data::kv;

/// `oom.pattern` of the grouped kernel OOM report.
pub const OOM_REPORT_PATTERN: &str = "kernel.oom_report";
/// `oom.runtime` of everything the kernel reports.
pub const KERNEL_RUNTIME: &str = "kernel";

pub(crate) fn string(value: &str) -> any_value::Value {
    any_value::Value::StringValue(value.to_owned())
}

pub(crate) fn int(value: i64) -> any_value::Value {
    any_value::Value::IntValue(value)
}

/// An unsigned count as an OTLP int (saturating: OTLP ints are signed).
pub(crate) fn uint(value: u64) -> any_value::Value {
    int(i64::try_from(value).unwrap_or(i64::MAX))
}

/// The report's attributes (after `extra`, the source's own ones).
pub fn report_attributes(report: &OomReport, mut attributes: Vec<KeyValue>) -> Vec<KeyValue> {
    attributes.push(kv("oom.pattern", string(OOM_REPORT_PATTERN)));
    attributes.push(kv("oom.runtime", string(KERNEL_RUNTIME)));
    let mut opt_string = |key: &str, value: &Option<String>| {
        if let Some(value) = value {
            attributes.push(kv(key, string(value)));
        }
    };
    opt_string("oom.trigger.comm", &report.trigger_comm);
    opt_string("oom.gfp_mask", &report.gfp_mask);
    opt_string("oom.constraint", &report.constraint);
    opt_string("oom.memcg", &report.oom_memcg);
    opt_string("oom.victim.cgroup", &report.task_memcg);
    opt_string("oom.group", &report.oom_group);
    opt_string("oom.reason", &report.killed.reason);
    if report.repeated_victim {
        // The kernel's second "Killed process" line for the group's victim.
        attributes.push(kv("oom.victim.repeated", any_value::Value::BoolValue(true)));
    }
    if let Some(pid) = report.trigger_pid {
        attributes.push(kv("oom.trigger.pid", int(i64::from(pid))));
    }
    if let Some(order) = report.order {
        attributes.push(kv("oom.order", int(i64::from(order))));
    }
    let trigger_type = if report.global_oom {
        Some("system")
    } else if report.oom_memcg.is_some() || report.constraint.as_deref() == Some("CONSTRAINT_MEMCG")
    {
        Some("cgroup")
    } else {
        None
    };
    if let Some(trigger_type) = trigger_type {
        attributes.push(kv("oom.trigger_type", string(trigger_type)));
    }
    if let Some(selected) = &report.selected {
        // Before 4.19: the task chosen, when a child of it was killed.
        attributes.push(kv("oom.selected.pid", int(i64::from(selected.pid))));
        attributes.push(kv("oom.selected.comm", string(&selected.comm)));
        if let Some(score) = selected.score {
            attributes.push(kv("oom.selected.score", uint(score)));
        }
    }
    if let Some(unfinished) = &report.unfinished {
        attributes.push(kv("oom.report.incomplete", string(&unfinished.note())));
        if let super::oom_report::Unfinished::VictimExiting { pid, comm } = unfinished {
            attributes.push(kv("oom.selected.pid", int(i64::from(*pid))));
            attributes.push(kv("oom.selected.comm", string(comm)));
        }
    } else {
        let killed = &report.killed;
        attributes.push(kv("process.pid", int(i64::from(killed.pid))));
        attributes.push(kv("oom.victim.comm", string(&killed.comm)));
        for (key, kb) in [
            ("oom.victim.total_vm", killed.total_vm_kb),
            ("oom.victim.anon_rss", killed.anon_rss_kb),
            ("oom.victim.file_rss", killed.file_rss_kb),
            ("oom.victim.shmem_rss", killed.shmem_rss_kb),
            ("oom.victim.pgtables", killed.pgtables_kb),
        ] {
            if let Some(kb) = kb {
                attributes.push(kv(key, uint(kb.saturating_mul(1024))));
            }
        }
        if let Some(uid) = killed.uid {
            attributes.push(kv("process.real_user.id", int(i64::from(uid))));
        }
        if let Some(adj) = killed.oom_score_adj {
            attributes.push(kv("oom.victim.oom_score_adj", int(i64::from(adj))));
        }
    }
    for (key, value) in [
        ("oom.memcg.usage", report.memcg_usage_bytes),
        ("oom.memcg.limit", report.memcg_limit_bytes),
        ("oom.memcg.failcnt", report.memcg_failcnt),
        ("oom.memcg.swap.usage", report.memcg_swap_usage_bytes),
        ("oom.memcg.swap.limit", report.memcg_swap_limit_bytes),
    ] {
        if let Some(value) = value {
            attributes.push(kv(key, uint(value)));
        }
    }
    if report.task_count > 0 {
        attributes.push(kv(
            "oom.tasks.count",
            uint(u64::try_from(report.task_count).unwrap_or(u64::MAX)),
        ));
        attributes.push(kv("oom.tasks.largest", task_rows(&report.tasks)));
    }
    attributes
}

/// `oom.tasks.largest`: one string per task table row, as the kernel
/// printed it (bytes where it printed pages).
pub fn task_rows(tasks: &[OomTask]) -> any_value::Value {
    let rows = tasks
        .iter()
        .map(|task| AnyValue {
            value: Some(string(&format!(
                "pid={} uid={} tgid={} total_vm={} rss={} pgtables={} swapents={} oom_score_adj={} name={}",
                task.pid,
                task.uid,
                task.tgid,
                task.total_vm_bytes,
                task.rss_bytes,
                task.pgtables_bytes,
                task.swapents,
                task.oom_score_adj,
                task.name
            ))),
        })
        .collect();
    any_value::Value::ArrayValue(ArrayValue { values: rows })
}

/// The report as a LogRecord: `body` is its text block, `time_unix_nano`
/// when the kill happened (0: unknown), `extra` the source's attributes.
/// ERROR for a kill, WARN for a report without one.
pub fn report_log(
    report: &OomReport,
    body: String,
    time_unix_nano: u64,
    extra: Vec<KeyValue>,
) -> LogRecord {
    let (severity_number, severity_text) = if report.unfinished.is_some() {
        (SeverityNumber::Warn, "WARN")
    } else {
        (SeverityNumber::Error, "ERROR")
    };
    LogRecord {
        time_unix_nano,
        observed_time_unix_nano: unix_now_nanos(),
        severity_number: severity_number as i32,
        severity_text: severity_text.to_owned(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body)),
        }),
        attributes: report_attributes(report, extra),
        ..Default::default()
    }
}
