//! One OOM kill, assembled from the eBPF event and/or the kernel's report,
//! and its OTLP form: a LogRecord with `event_name` `linux.oom.kill` and the
//! attributes listed in docs/configuration.md ("oom receiver", record attributes).

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};

use std::sync::Arc;

use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::pipeline::data::kv;
use crate::workload::Workload;

/// How the kill was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Ebpf,
    Kmsg,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Ebpf => "ebpf",
            Source::Kmsg => "kmsg",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Victim {
    pub pid: i32,
    /// The kernel's comm (at most 15 characters).
    pub comm: String,
    pub executable_name: Option<String>,
    pub executable_path: Option<String>,
    pub command_line: Option<String>,
    /// `command_line` is argv as exec'd (the exec hook), not /proc's.
    pub command_line_from_exec: bool,
    pub parent_pid: Option<i32>,
    /// Start of the process, Unix ns.
    pub start_unix_nano: Option<u64>,
    pub uid: Option<u32>,
    /// Bytes, as the kernel printed them in its "Killed process" line.
    pub total_vm: Option<u64>,
    pub anon_rss: Option<u64>,
    pub file_rss: Option<u64>,
    pub shmem_rss: Option<u64>,
    pub pgtables: Option<u64>,
    pub oom_score_adj: Option<i32>,
    pub cgroup: Option<String>,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
    /// Who the victim is (container, pod): the record's resource.
    pub workload: Option<Arc<Workload>>,
    /// The kernel picked a victim that was already exiting and sent no kill.
    pub exiting: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trigger {
    pub pid: Option<i32>,
    pub comm: Option<String>,
    pub gfp_mask: Option<String>,
    pub order: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub constraint: Option<String>,
    pub memcg: Option<String>,
    pub memcg_limit: Option<u64>,
    /// `cgroup` or `system`; `None` when nothing said which.
    pub trigger_type: Option<&'static str>,
    /// The `memory.oom.group` cgroup all of whose tasks were killed with
    /// the victim: the same on the record of each of them.
    pub group: Option<String>,
    /// The memcg's usage when the victim was chosen, bytes.
    pub memcg_usage: Option<u64>,
    /// The memcg's kernfs id (the `oom_kill_process` hook), to find its path
    /// when no report named it.
    pub memcg_id: Option<u64>,
    /// The hook that gave the scope at the moment of the kill (`fentry`,
    /// `kprobe`); `None` when only the tracepoint and the report did.
    pub hook: Option<&'static str>,
    /// The kernel's task table (its report): the largest rows, by rss, and
    /// how many rows it had.
    pub tasks: Vec<crate::kernel_log::oom_report::OomTask>,
    pub task_count: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomKill {
    /// When the kernel marked the victim, Unix epoch nanoseconds.
    pub time_unix_nano: u64,
    /// CLOCK_MONOTONIC of the kernel event (eBPF), for latency measurement.
    pub kernel_time_ns: Option<u64>,
    pub source: Source,
    pub victim: Victim,
    pub trigger: Trigger,
    pub scope: Scope,
}

pub const EVENT_NAME: &str = "linux.oom.kill";
pub const SCOPE_NAME: &str = "oomscope/oom";

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.to_string())
}

fn i(v: i64) -> any_value::Value {
    any_value::Value::IntValue(v)
}

fn bytes_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn mib(v: u64) -> String {
    format!("{:.1} MiB", v as f64 / (1024.0 * 1024.0))
}

/// Unix ns as ISO 8601 (semconv's `process.creation.time`).
fn rfc3339_nanos(unix_nano: u64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_nano))
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

impl OomKill {
    /// The one-line human summary used as the record's body.
    pub fn summary(&self) -> String {
        let v = &self.victim;
        let mut out = if v.exiting {
            format!(
                "OOM: {} (pid {}) was already exiting; no kill sent",
                v.comm, v.pid
            )
        } else {
            format!("OOM kill: {} (pid {})", v.comm, v.pid)
        };
        if let Some(cg) = self.scope.memcg.as_deref().or(v.cgroup.as_deref()) {
            out.push_str(&format!(" in {cg}"));
        }
        if let Some(rss) = v.anon_rss {
            out.push_str(&format!(": anon-rss {}", mib(rss)));
        }
        if let Some(limit) = self.scope.memcg_limit {
            out.push_str(&format!(", limit {}", mib(limit)));
        }
        if let Some(c) = &self.scope.constraint {
            out.push_str(&format!(" ({c})"));
        }
        if let (Some(comm), Some(pid)) = (&self.trigger.comm, self.trigger.pid) {
            out.push_str(&format!("; triggered by {comm} (pid {pid})"));
        }
        out
    }

    /// The documented record attributes, only those that are known.
    pub fn attributes(&self) -> Vec<KeyValue> {
        let v = &self.victim;
        let mut a = vec![
            kv("process.pid", i(i64::from(v.pid))),
            kv("oom.victim.comm", s(&v.comm)),
            kv(
                "process.executable.name",
                s(v.executable_name.as_deref().unwrap_or(&v.comm)),
            ),
        ];
        let mut opt_s = |key: &str, val: &Option<String>| {
            if let Some(val) = val {
                a.push(kv(key, s(val)));
            }
        };
        opt_s("process.command_line", &v.command_line);
        opt_s("process.executable.path", &v.executable_path);
        opt_s(
            "process.creation.time",
            &v.start_unix_nano.and_then(rfc3339_nanos),
        );
        opt_s("oom.victim.cgroup", &v.cgroup);
        opt_s("oom.trigger.comm", &self.trigger.comm);
        opt_s("oom.gfp_mask", &self.trigger.gfp_mask);
        opt_s("oom.constraint", &self.scope.constraint);
        opt_s("oom.memcg", &self.scope.memcg);
        opt_s("oom.group", &self.scope.group);
        if let Some(uid) = v.uid {
            a.push(kv("process.real_user.id", i(i64::from(uid))));
        }
        if let Some(ppid) = v.parent_pid {
            a.push(kv("process.parent_pid", i(i64::from(ppid))));
        }
        for (key, val) in [
            ("oom.victim.total_vm", v.total_vm),
            ("oom.victim.anon_rss", v.anon_rss),
            ("oom.victim.file_rss", v.file_rss),
            ("oom.victim.shmem_rss", v.shmem_rss),
            ("oom.victim.pgtables", v.pgtables),
            ("oom.memcg.limit", self.scope.memcg_limit),
            ("oom.memcg.usage", self.scope.memcg_usage),
        ] {
            if let Some(val) = val {
                a.push(kv(key, i(bytes_i64(val))));
            }
        }
        if let Some(adj) = v.oom_score_adj {
            a.push(kv("oom.victim.oom_score_adj", i(i64::from(adj))));
        }
        if let Some(pid) = self.trigger.pid {
            a.push(kv("oom.trigger.pid", i(i64::from(pid))));
        }
        if let Some(order) = self.trigger.order {
            a.push(kv("oom.order", i(i64::from(order))));
        }
        if let Some(t) = self.scope.trigger_type {
            a.push(kv("oom.trigger_type", s(t)));
        }
        a.push(kv(
            "oom.victim.exiting",
            any_value::Value::BoolValue(v.exiting),
        ));
        a.push(kv("oom.source", s(self.source.as_str())));
        if self.source == Source::Ebpf {
            // The richest hook that saw the kill.
            a.push(kv("oom.hook", s(self.scope.hook.unwrap_or("tracepoint"))));
        }
        a
    }

    /// The record's resource: the victim's workload (`container.*`,
    /// `k8s.*`), or the ids its cgroup path names; `None` for a victim in
    /// no container or pod (the `resource` processor adds the host's).
    pub fn resource(&self) -> Option<Resource> {
        let v = &self.victim;
        let attributes = match &v.workload {
            Some(w) => w.resource_attributes(),
            None => Workload {
                container_id: v.container_id.clone(),
                pod_uid: v.pod_uid.clone(),
                ..Workload::default()
            }
            .resource_attributes(),
        };
        (!attributes.is_empty()).then(|| Resource {
            attributes,
            ..Default::default()
        })
    }

    pub fn log_record(&self, observed_unix_nano: u64) -> LogRecord {
        LogRecord {
            time_unix_nano: self.time_unix_nano,
            observed_time_unix_nano: observed_unix_nano,
            severity_number: SeverityNumber::Error as i32,
            severity_text: "ERROR".to_string(),
            body: Some(AnyValue {
                value: Some(s(&self.summary())),
            }),
            attributes: self.attributes(),
            event_name: EVENT_NAME.to_string(),
            ..Default::default()
        }
    }
}

impl OomKill {
    /// The typed message of the live events API (`oomscope.v1`).
    pub fn to_api(&self) -> crate::api::v1::OomKill {
        use crate::api::v1;
        let v = &self.victim;
        let workload = v.workload.as_deref();
        let name =
            |f: fn(&Workload) -> Option<&String>| workload.and_then(f).cloned().unwrap_or_default();
        v1::OomKill {
            time_unix_nano: self.time_unix_nano,
            kernel_time_ns: self.kernel_time_ns.unwrap_or(0),
            source: self.source.as_str().to_string(),
            victim: Some(v1::Victim {
                pid: v.pid,
                comm: v.comm.clone(),
                executable_name: v.executable_name.clone().unwrap_or_else(|| v.comm.clone()),
                command_line: v.command_line.clone().unwrap_or_default(),
                uid: v.uid.unwrap_or(0),
                total_vm_bytes: v.total_vm.unwrap_or(0),
                anon_rss_bytes: v.anon_rss.unwrap_or(0),
                file_rss_bytes: v.file_rss.unwrap_or(0),
                shmem_rss_bytes: v.shmem_rss.unwrap_or(0),
                pgtables_bytes: v.pgtables.unwrap_or(0),
                oom_score_adj: v.oom_score_adj.unwrap_or(0),
                cgroup: v.cgroup.clone().unwrap_or_default(),
                container_id: v.container_id.clone().unwrap_or_default(),
                k8s_pod_uid: v.pod_uid.clone().unwrap_or_default(),
                exiting: v.exiting,
                executable_path: v.executable_path.clone().unwrap_or_default(),
                container_name: name(|w| w.container_name.as_ref()),
                k8s_pod_name: name(|w| w.pod_name.as_ref()),
                k8s_namespace_name: name(|w| w.namespace.as_ref()),
            }),
            trigger: Some(v1::Trigger {
                pid: self.trigger.pid.unwrap_or(0),
                comm: self.trigger.comm.clone().unwrap_or_default(),
                gfp_mask: self.trigger.gfp_mask.clone().unwrap_or_default(),
                order: self.trigger.order.unwrap_or(0),
            }),
            scope: Some(v1::Scope {
                constraint: self.scope.constraint.clone().unwrap_or_default(),
                memcg: self.scope.memcg.clone().unwrap_or_default(),
                memcg_limit_bytes: self.scope.memcg_limit.unwrap_or(0),
                trigger_type: self.scope.trigger_type.unwrap_or_default().to_string(),
                memcg_usage_bytes: self.scope.memcg_usage,
            }),
            // Set by the emitter, which registers the incident.
            incident_id: String::new(),
            lead_up: None,
        }
    }
}
