//! placeholder: the kernel's OOM report, assembled.

use super::record::KmsgRecord;

/// The "Killed process" line: the victim as the kernel printed it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KilledProcess {
    pub pid: i32,
    pub comm: String,
    pub total_vm_kb: u64,
    pub anon_rss_kb: u64,
    pub file_rss_kb: u64,
    pub shmem_rss_kb: u64,
    pub uid: Option<u32>,
    pub pgtables_kb: Option<u64>,
    pub oom_score_adj: Option<i32>,
}

/// One row of the "Tasks state" table (memory values in pages in the kernel
/// output; converted to bytes here).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OomTask {
    pub pid: i32,
    pub uid: u32,
    pub tgid: i32,
    pub total_vm_bytes: u64,
    pub rss_bytes: u64,
    pub pgtables_bytes: u64,
    pub swapents: u64,
    pub oom_score_adj: i32,
    pub name: String,
}

/// One OOM kill as the kernel reported it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OomReport {
    /// From "<comm> invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0".
    pub trigger_comm: Option<String>,
    /// From the "CPU: 1 UID: 0 PID: 11976 Comm: python3" line.
    pub trigger_pid: Option<i32>,
    /// As printed, e.g. `0xcc0(GFP_KERNEL)`.
    pub gfp_mask: Option<String>,
    pub order: Option<i32>,
    pub trigger_oom_score_adj: Option<i32>,
    /// `CONSTRAINT_MEMCG`, `CONSTRAINT_NONE`, ...
    pub constraint: Option<String>,
    /// The cgroup whose limit was hit (`oom_memcg=`).
    pub oom_memcg: Option<String>,
    /// The victim's cgroup (`task_memcg=`).
    pub task_memcg: Option<String>,
    /// A system-wide OOM ("Out of memory: Killed process", `global_oom`).
    pub global_oom: bool,
    /// "memory: usage 51200kB, limit 51200kB, failcnt 941" (v1) / v2 equivalents, in bytes.
    pub memcg_usage_bytes: Option<u64>,
    pub memcg_limit_bytes: Option<u64>,
    pub memcg_failcnt: Option<u64>,
    pub killed: KilledProcess,
    /// The largest entries of the task table, by rss, at most a bounded number.
    pub tasks: Vec<OomTask>,
    /// Sequence numbers of the first and last record of the report.
    pub first_seq: u64,
    pub last_seq: u64,
    /// CLOCK_MONOTONIC of the "Killed process" record, microseconds.
    pub monotonic_us: u64,
}

/// Feeds records in order; returns a report when its "Killed process" line
/// arrives. Bounded: a report that never completes is dropped after a bounded
/// number of records.
#[derive(Debug, Default)]
pub struct OomReportAssembler {
    _private: (),
}

impl OomReportAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, _record: &KmsgRecord) -> Option<OomReport> {
        None
    }
}
