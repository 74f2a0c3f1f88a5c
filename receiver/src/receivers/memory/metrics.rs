//! Every metric the `memory` receiver emits: its catalog, which
//! docs/metrics.md mirrors (checked by `receivers::metric_docs_tests`).

use crate::metric_catalog::{MetricDef, MetricKind};

/// What every cgroup point carries: the cgroup. The container and pod it
/// belongs to are its resource (one ResourceMetrics per container or pod
/// cgroup), not point attributes.
const CGROUP: &[&str] = &["oomscope.cgroup.path"];

// System: /proc/meminfo, /proc/vmstat.
pub const SYSTEM_MEMORY_USAGE: MetricDef = MetricDef::new(
    "system.memory.usage",
    "By",
    MetricKind::UpDownCounter,
    "Memory by state (used = MemTotal - MemAvailable; the states overlap)",
)
.with_attributes(&["system.memory.state"]);
pub const SYSTEM_MEMORY_LIMIT: MetricDef = MetricDef::new(
    "system.memory.limit",
    "By",
    MetricKind::UpDownCounter,
    "Total usable memory (MemTotal)",
);
pub const SYSTEM_MEMORY_UTILIZATION: MetricDef = MetricDef::new(
    "system.memory.utilization",
    "1",
    MetricKind::Gauge,
    "Fraction of MemTotal by state",
)
.with_attributes(&["system.memory.state"]);
pub const SYSTEM_MEMORY_SLAB_USAGE: MetricDef = MetricDef::new(
    "system.memory.linux.slab.usage",
    "By",
    MetricKind::UpDownCounter,
    "Kernel slab memory by state (SReclaimable, SUnreclaim)",
)
.with_attributes(&["system.memory.linux.slab.state"]);
pub const SYSTEM_MEMORY_SHARED: MetricDef = MetricDef::new(
    "system.memory.linux.shared",
    "By",
    MetricKind::UpDownCounter,
    "Shared memory, mostly tmpfs (Shmem)",
);
pub const SYSTEM_MEMORY_AVAILABLE: MetricDef = MetricDef::new(
    "system.memory.linux.available",
    "By",
    MetricKind::UpDownCounter,
    "The kernel's estimate of memory available without swapping (MemAvailable)",
);
pub const SYSTEM_PAGING_USAGE: MetricDef = MetricDef::new(
    "system.paging.usage",
    "By",
    MetricKind::UpDownCounter,
    "Swap space used and free, by swap area",
)
.with_attributes(&["system.paging.state", "system.device"]);
pub const SYSTEM_PAGING_UTILIZATION: MetricDef = MetricDef::new(
    "system.paging.utilization",
    "1",
    MetricKind::Gauge,
    "Fraction of swap space used and free, by swap area",
)
.with_attributes(&["system.paging.state", "system.device"]);
pub const SYSTEM_PAGING_FAULTS: MetricDef = MetricDef::new(
    "system.paging.faults",
    "{fault}",
    MetricKind::Counter,
    "Page faults since boot",
)
.with_attributes(&["system.paging.fault.type"]);
pub const SYSTEM_PAGING_OPERATIONS: MetricDef = MetricDef::new(
    "system.paging.operations",
    "{operation}",
    MetricKind::Counter,
    "Pages swapped (major) and paged from/to block devices (minor) since boot",
)
.with_attributes(&["system.paging.fault.type", "system.paging.direction"]);
pub const SYSTEM_OOM_KILLS: MetricDef = MetricDef::new(
    "oomscope.system.memory.oom_kills",
    "{kill}",
    MetricKind::Counter,
    "OOM kills since boot, system-wide and in cgroups",
);
pub const SYSTEM_ALLOCATION_STALLS: MetricDef = MetricDef::new(
    "oomscope.system.memory.allocation_stalls",
    "{stall}",
    MetricKind::Counter,
    "Allocations that entered direct reclaim since boot (all zones)",
);
pub const SYSTEM_RECLAIM_SCANNED: MetricDef = MetricDef::new(
    "oomscope.system.memory.reclaim.scanned",
    "{page}",
    MetricKind::Counter,
    "Pages scanned by reclaim since boot",
)
.with_attributes(&["oomscope.system.memory.reclaimer"]);
pub const SYSTEM_RECLAIM_RECLAIMED: MetricDef = MetricDef::new(
    "oomscope.system.memory.reclaim.reclaimed",
    "{page}",
    MetricKind::Counter,
    "Pages reclaimed since boot",
)
.with_attributes(&["oomscope.system.memory.reclaimer"]);

// PSI: /proc/pressure/memory.
pub const SYSTEM_PSI_AVG: MetricDef = MetricDef::new(
    "system.memory.psi.avg",
    "1",
    MetricKind::Gauge,
    "Fraction of wall time in which tasks stalled on memory, averaged over a window",
)
.with_attributes(&["psi.type", "psi.window"]);
pub const SYSTEM_PSI_STALL_TIME: MetricDef = MetricDef::new(
    "system.memory.psi.stall_time",
    "s",
    MetricKind::Counter,
    "Total time tasks stalled on memory since boot",
)
.with_attributes(&["psi.type"]);

// Processes: /proc/PID/*.
pub const PROCESS_MEMORY_USAGE: MetricDef = MetricDef::new(
    "process.memory.usage",
    "By",
    MetricKind::UpDownCounter,
    "Resident memory (RSS)",
);
pub const PROCESS_MEMORY_VIRTUAL: MetricDef = MetricDef::new(
    "process.memory.virtual",
    "By",
    MetricKind::UpDownCounter,
    "Virtual memory size",
);
pub const PROCESS_MEMORY_SWAP: MetricDef = MetricDef::new(
    "oomscope.process.memory.swap",
    "By",
    MetricKind::UpDownCounter,
    "Anonymous memory swapped out (VmSwap)",
);
pub const PROCESS_PAGING_FAULTS: MetricDef = MetricDef::new(
    "process.paging.faults",
    "{fault}",
    MetricKind::Counter,
    "Page faults of the process since it started",
)
.with_attributes(&["system.paging.fault.type"]);
pub const PROCESS_OOM_SCORE: MetricDef = MetricDef::new(
    "oomscope.process.oom_score",
    "1",
    MetricKind::Gauge,
    "The OOM killer's badness score (0-2000; the highest is killed first)",
);
pub const PROCESS_OOM_SCORE_ADJ: MetricDef = MetricDef::new(
    "oomscope.process.oom_score_adj",
    "1",
    MetricKind::Gauge,
    "The OOM score adjustment (-1000 never kill .. 1000)",
);

// Cgroups: the memory controller's files.
pub const CGROUP_MEMORY_USAGE: MetricDef = MetricDef::new(
    "oomscope.cgroup.memory.usage",
    "By",
    MetricKind::UpDownCounter,
    "Memory charged to the cgroup and its descendants",
)
.with_attributes(CGROUP);
pub const CGROUP_MEMORY_LIMIT: MetricDef = MetricDef::new(
    "oomscope.cgroup.memory.limit",
    "By",
    MetricKind::UpDownCounter,
    "The hard limit; absent when unlimited",
)
.with_attributes(CGROUP);
pub const CGROUP_MEMORY_HIGH: MetricDef = MetricDef::new(
    "oomscope.cgroup.memory.high",
    "By",
    MetricKind::UpDownCounter,
    "The throttling threshold (v2 memory.high); absent when unlimited",
)
.with_attributes(CGROUP);
pub const CGROUP_MEMORY_HEADROOM: MetricDef = MetricDef::new(
    "oomscope.cgroup.memory.headroom",
    "By",
    MetricKind::Gauge,
    "limit - usage; negative when the limit was lowered below usage",
)
.with_attributes(CGROUP);
pub const CGROUP_MEMORY_TIME_TO_LIMIT: MetricDef = MetricDef::new(
    "oomscope.cgroup.memory.time_to_limit",
    "s",
    MetricKind::Gauge,
    "Seconds until usage reaches the limit at the recent growth rate; absent when not growing",
)
.with_attributes(CGROUP);
pub const CGROUP_MEMORY_WORKING_SET: MetricDef = MetricDef::new(
    "oomscope.cgroup.memory.working_set",
    "By",
    MetricKind::UpDownCounter,
    "usage - inactive_file, as the kubelet computes it",
)
.with_attributes(CGROUP);
pub const CGROUP_MEMORY_SWAP_USAGE: MetricDef = MetricDef::new(
    "oomscope.cgroup.memory.swap.usage",
    "By",
    MetricKind::UpDownCounter,
    "Swap used by the cgroup",
)
.with_attributes(CGROUP);
pub const CGROUP_MEMORY_SWAP_LIMIT: MetricDef = MetricDef::new(
    "oomscope.cgroup.memory.swap.limit",
    "By",
    MetricKind::UpDownCounter,
    "The swap limit (v2 memory.swap.max); absent when unlimited",
)
.with_attributes(CGROUP);
pub const CGROUP_MEMORY_EVENTS: MetricDef = MetricDef::new(
    "oomscope.cgroup.memory.events",
    "{event}",
    MetricKind::Counter,
    "Memory events of the cgroup and its descendants since it was created",
)
.with_attributes(&["oomscope.cgroup.path", "oomscope.cgroup.memory.event"]);
pub const CGROUP_MEMORY_UNDER_OOM: MetricDef = MetricDef::new(
    "oomscope.cgroup.memory.under_oom",
    "1",
    MetricKind::Gauge,
    "1 while the cgroup is under OOM with the OOM killer disabled (v1)",
)
.with_attributes(CGROUP);
pub const CGROUP_MEMORY_BREAKDOWN: MetricDef = MetricDef::new(
    "oomscope.cgroup.memory.breakdown",
    "By",
    MetricKind::UpDownCounter,
    "Key memory.stat figures by type (overlapping: do not sum)",
)
.with_attributes(&["oomscope.cgroup.path", "oomscope.cgroup.memory.type"]);
pub const CGROUP_PAGING_FAULTS: MetricDef = MetricDef::new(
    "oomscope.cgroup.paging.faults",
    "{fault}",
    MetricKind::Counter,
    "Page faults in the cgroup since it was created",
)
.with_attributes(&["oomscope.cgroup.path", "system.paging.fault.type"]);
pub const CGROUP_PSI_AVG: MetricDef = MetricDef::new(
    "oomscope.cgroup.memory.psi.avg",
    "1",
    MetricKind::Gauge,
    "Fraction of wall time in which the cgroup's tasks stalled on memory (v2)",
)
.with_attributes(&["oomscope.cgroup.path", "psi.type", "psi.window"]);
pub const CGROUP_PSI_STALL_TIME: MetricDef = MetricDef::new(
    "oomscope.cgroup.memory.psi.stall_time",
    "s",
    MetricKind::Counter,
    "Total time the cgroup's tasks stalled on memory (v2)",
)
.with_attributes(&["oomscope.cgroup.path", "psi.type"]);

// Containers and pods: their memory cgroup under the registry's names
// (model/container/metrics.yaml, model/k8s/metrics.yaml); the container or
// pod is the resource.
pub const CONTAINER_MEMORY_USAGE: MetricDef = MetricDef::new(
    "container.memory.usage",
    "By",
    MetricKind::UpDownCounter,
    "Memory charged to the container's cgroup",
)
.with_attributes(CGROUP);
pub const CONTAINER_MEMORY_WORKING_SET: MetricDef = MetricDef::new(
    "container.memory.working_set",
    "By",
    MetricKind::UpDownCounter,
    "usage - inactive_file, as the kubelet and cAdvisor compute it",
)
.with_attributes(CGROUP);
pub const CONTAINER_MEMORY_AVAILABLE: MetricDef = MetricDef::new(
    "container.memory.available",
    "By",
    MetricKind::UpDownCounter,
    "limit - working set; absent without a limit",
)
.with_attributes(CGROUP);
pub const CONTAINER_MEMORY_RSS: MetricDef = MetricDef::new(
    "container.memory.rss",
    "By",
    MetricKind::UpDownCounter,
    "Anonymous memory of the container's cgroup (cAdvisor's rss)",
)
.with_attributes(CGROUP);
pub const CONTAINER_PAGING_FAULTS: MetricDef = MetricDef::new(
    "container.paging.faults",
    "{fault}",
    MetricKind::Counter,
    "Page faults in the container's cgroup",
)
.with_attributes(&["oomscope.cgroup.path", "system.paging.fault.type"]);
pub const POD_MEMORY_USAGE: MetricDef = MetricDef::new(
    "k8s.pod.memory.usage",
    "By",
    MetricKind::UpDownCounter,
    "Memory charged to the pod's cgroup",
)
.with_attributes(CGROUP);
pub const POD_MEMORY_WORKING_SET: MetricDef = MetricDef::new(
    "k8s.pod.memory.working_set",
    "By",
    MetricKind::UpDownCounter,
    "usage - inactive_file, as the kubelet computes it",
)
.with_attributes(CGROUP);
pub const POD_MEMORY_AVAILABLE: MetricDef = MetricDef::new(
    "k8s.pod.memory.available",
    "By",
    MetricKind::UpDownCounter,
    "limit - working set; absent without a limit",
)
.with_attributes(CGROUP);
pub const POD_MEMORY_RSS: MetricDef = MetricDef::new(
    "k8s.pod.memory.rss",
    "By",
    MetricKind::UpDownCounter,
    "Anonymous memory of the pod's cgroup",
)
.with_attributes(CGROUP);
pub const POD_PAGING_FAULTS: MetricDef = MetricDef::new(
    "k8s.pod.paging.faults",
    "{fault}",
    MetricKind::Counter,
    "Page faults in the pod's cgroup",
)
.with_attributes(&["oomscope.cgroup.path", "system.paging.fault.type"]);

/// The whole catalog, in docs order.
pub const ALL: &[MetricDef] = &[
    SYSTEM_MEMORY_USAGE,
    SYSTEM_MEMORY_LIMIT,
    SYSTEM_MEMORY_UTILIZATION,
    SYSTEM_MEMORY_AVAILABLE,
    SYSTEM_MEMORY_SLAB_USAGE,
    SYSTEM_MEMORY_SHARED,
    SYSTEM_PAGING_USAGE,
    SYSTEM_PAGING_UTILIZATION,
    SYSTEM_PAGING_FAULTS,
    SYSTEM_PAGING_OPERATIONS,
    SYSTEM_OOM_KILLS,
    SYSTEM_ALLOCATION_STALLS,
    SYSTEM_RECLAIM_SCANNED,
    SYSTEM_RECLAIM_RECLAIMED,
    SYSTEM_PSI_AVG,
    SYSTEM_PSI_STALL_TIME,
    PROCESS_MEMORY_USAGE,
    PROCESS_MEMORY_VIRTUAL,
    PROCESS_MEMORY_SWAP,
    PROCESS_PAGING_FAULTS,
    PROCESS_OOM_SCORE,
    PROCESS_OOM_SCORE_ADJ,
    CGROUP_MEMORY_USAGE,
    CGROUP_MEMORY_LIMIT,
    CGROUP_MEMORY_HIGH,
    CGROUP_MEMORY_HEADROOM,
    CGROUP_MEMORY_TIME_TO_LIMIT,
    CGROUP_MEMORY_WORKING_SET,
    CGROUP_MEMORY_SWAP_USAGE,
    CGROUP_MEMORY_SWAP_LIMIT,
    CGROUP_MEMORY_EVENTS,
    CGROUP_MEMORY_UNDER_OOM,
    CGROUP_MEMORY_BREAKDOWN,
    CGROUP_PAGING_FAULTS,
    CGROUP_PSI_AVG,
    CGROUP_PSI_STALL_TIME,
    CONTAINER_MEMORY_USAGE,
    CONTAINER_MEMORY_WORKING_SET,
    CONTAINER_MEMORY_AVAILABLE,
    CONTAINER_MEMORY_RSS,
    CONTAINER_PAGING_FAULTS,
    POD_MEMORY_USAGE,
    POD_MEMORY_WORKING_SET,
    POD_MEMORY_AVAILABLE,
    POD_MEMORY_RSS,
    POD_PAGING_FAULTS,
];
