//! Every metric the `oom` receiver emits: its catalog, which the `oom`
//! section of docs/configuration.md mirrors (checked by
//! `receivers::metric_docs_tests`).

use crate::metric_catalog::{MetricDef, MetricKind};

/// Most distinct `linux.oom.kills` series; later ones share an overflow
/// series (`oom.victim.comm: _other`) so that a fork bomb of distinct comms
/// cannot grow memory.
pub const MAX_KILL_SERIES: usize = 1000;

pub const LINUX_OOM_KILLS: MetricDef = MetricDef::new(
    "linux.oom.kills",
    "{kill}",
    MetricKind::Counter,
    "OOM kills reported by the kernel",
)
.with_attributes(&[
    "oom.trigger_type",
    "oom.victim.comm",
    "oom.victim.cgroup",
    "container.id",
])
.with_cardinality_cap(MAX_KILL_SERIES);

pub const LINUX_OOM_KILLS_MISSED: MetricDef = MetricDef::new(
    "linux.oom.kills.missed",
    "{kill}",
    MetricKind::Counter,
    "OOM kills the kernel counted (/proc/vmstat oom_kill) that produced no record",
);

pub const EBPF_DROPPED_EVENTS: MetricDef = MetricDef::new(
    "oomscope.oom.ebpf.dropped_events",
    "{event}",
    MetricKind::Counter,
    "OOM events the eBPF ring buffer dropped because it was full",
);

/// The whole catalog, in docs order.
pub const ALL: &[MetricDef] = &[LINUX_OOM_KILLS, LINUX_OOM_KILLS_MISSED, EBPF_DROPPED_EVENTS];
