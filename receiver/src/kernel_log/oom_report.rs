//! The kernel's OOM report, assembled from `/dev/kmsg` records.
//!
//! `mm/oom_kill.c` prints, for one kill (`dump_header` is rate-limited, the
//! "Killed process" line is not):
//!
//! ```text
//! python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0
//! CPU: 1 UID: 0 PID: 11976 Comm: python3 Not tainted 6.18.44 #1
//! ... stack trace, registers ...
//! memory: usage 51200kB, limit 51200kB, failcnt 941          (memcg OOM)
//! Memory cgroup stats for /oomtest:
//! ... stats ...
//! Tasks state (memory values in pages):
//! [  pid  ]   uid  tgid total_vm      rss rss_anon ... oom_score_adj name
//! [  11976]     0 11976    16946    13989    12704 ...             0 python3
//! oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/oomtest,task_memcg=/oomtest,task=python3,pid=11976,uid=0
//! Memory cgroup out of memory: Killed process 11976 (python3) total-vm:67784kB, ...
//! ```
//!
//! Lines of other subsystems may be interleaved; they are ignored. Member
//! kills of a `memory.oom.group` follow the victim's "Killed process" line
//! after "Tasks in /path are going to be killed due to memory.oom.group set"
//! and are reported with the victim's context.

use super::kmsg_record::KmsgRecord;

/// Records after which a report whose "Killed process" line never came is
/// dropped.
pub const MAX_REPORT_RECORDS: usize = 4096;

/// Task table rows kept per report (the largest by rss).
pub const MAX_TASKS: usize = 10;

/// The "Killed process" line: the victim as the kernel printed it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KilledProcess {
    pub pid: i32,
    pub comm: String,
    /// `total-vm` (`vsz` on 2.6.33-35); the sizes are `None` where the
    /// kernel did not print them (2.6.32 printed the pid and comm alone).
    pub total_vm_kb: Option<u64>,
    pub anon_rss_kb: Option<u64>,
    pub file_rss_kb: Option<u64>,
    /// Printed since about 4.9.
    pub shmem_rss_kb: Option<u64>,
    pub uid: Option<u32>,
    pub pgtables_kb: Option<u64>,
    pub oom_score_adj: Option<i32>,
    /// The text before ": Killed process" (`Memory cgroup out of memory`,
    /// `Out of memory`, `Out of memory (oom_kill_allocating_task)`), when
    /// printed (absent before about 4.19).
    pub reason: Option<String>,
}

/// The task the OOM killer chose, as kernels before 4.19 announced it
/// before killing: "Out of memory: Kill process 1200 (bash) score 800 or
/// sacrifice child". The process killed ("Killed process") may be one of
/// its children.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SelectedTask {
    pub pid: i32,
    pub comm: String,
    /// The badness score (0-1000).
    pub score: Option<u64>,
    /// `Out of memory`, `Memory cgroup out of memory`, ...
    pub reason: Option<String>,
}

/// "oom_reaper: reaped process 11976 (python3), now anon-rss:0kB,
/// file-rss:0kB, shmem-rss:0kB": the memory of a killed process was freed
/// (4.6+). Printed after the report, possibly after other lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reaped {
    pub pid: i32,
    pub comm: String,
    pub anon_rss_kb: Option<u64>,
    pub file_rss_kb: Option<u64>,
    pub shmem_rss_kb: Option<u64>,
}

/// Why a report ended without a "Killed process" line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfinished {
    /// Another report started first.
    NextReportStarted,
    /// More than [`MAX_REPORT_RECORDS`] lines came without it.
    TooLong,
    /// The input ended (a file read to its end, a truncated paste).
    InputEnded,
    /// "OOM victim N (comm) is already exiting. Skip killing the task": the
    /// kernel let the victim exit on its own; no process was killed.
    VictimExiting { pid: i32, comm: String },
    /// Reports of more hosts than are tracked at once were open (text
    /// interleaving many hosts): this one, the least recently seen, was
    /// sent as it was.
    TooManyHosts,
    /// "Out of memory and no killable processes...": nothing could be
    /// killed (the kernel panics next, or the allocation fails).
    NoKillableProcesses,
}

impl Unfinished {
    /// A note for people (`oom.report.incomplete`).
    pub fn note(&self) -> String {
        match self {
            Unfinished::NextReportStarted => {
                "the report has no \"Killed process\" line: another report started first".to_owned()
            }
            Unfinished::TooLong => format!(
                "the report has no \"Killed process\" line within {MAX_REPORT_RECORDS} lines"
            ),
            Unfinished::InputEnded => {
                "the report has no \"Killed process\" line: the text ends first".to_owned()
            }
            Unfinished::VictimExiting { pid, comm } => {
                format!("no process was killed: the victim {pid} ({comm}) was already exiting")
            }
            Unfinished::TooManyHosts => {
                "the report has no \"Killed process\" line yet: too many hosts' reports were open at once".to_owned()
            }
            Unfinished::NoKillableProcesses => {
                "no process was killed: the kernel found no killable process".to_owned()
            }
        }
    }
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
    /// `pgtables_bytes`, or `nr_ptes` (+ `nr_pmds`) pages on older kernels.
    pub pgtables_bytes: u64,
    /// Swap entries (a count, not bytes).
    pub swapents: u64,
    pub oom_score_adj: i32,
    pub name: String,
    /// The rss split, on kernels that print it (about 6.1+).
    pub rss_anon_bytes: Option<u64>,
    pub rss_file_bytes: Option<u64>,
    pub rss_shmem_bytes: Option<u64>,
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
    /// cgroup v2 "swap: usage NkB, limit NkB, failcnt N", in bytes.
    pub memcg_swap_usage_bytes: Option<u64>,
    pub memcg_swap_limit_bytes: Option<u64>,
    pub killed: KilledProcess,
    /// The "Kill process ... or sacrifice child" line (before 4.19).
    pub selected: Option<SelectedTask>,
    /// The largest entries of the task table, by rss (largest first), at
    /// most [`MAX_TASKS`].
    pub tasks: Vec<OomTask>,
    /// Rows the task table had, including those not kept in `tasks`.
    pub task_count: usize,
    /// Set on the member kills of a `memory.oom.group`: the group's cgroup.
    /// Such a report repeats the context of the kill that triggered it.
    pub oom_group: Option<String>,
    /// This member kill is the report's own victim again: the kernel kills
    /// the chosen victim, then every task of its `memory.oom.group`, itself
    /// included while its memory is not yet gone, printing a second
    /// "Killed process" line and counting a second kill (seen on Linux 6.1
    /// and 6.12), but marking the victim only once.
    pub repeated_victim: bool,
    /// Sequence numbers of the first and last record of the report.
    pub first_seq: u64,
    pub last_seq: u64,
    /// CLOCK_MONOTONIC of the "Killed process" record, microseconds.
    pub monotonic_us: u64,
    /// Set on a report that ended without its "Killed process" line (see
    /// [`OomReportAssembler::take_unfinished`]); `killed` is then empty.
    pub unfinished: Option<Unfinished>,
}

/// The "oom-kill:" summary line (kernel 5.0+).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OomConstraint {
    /// `CONSTRAINT_NONE`, `CONSTRAINT_CPUSET`, `CONSTRAINT_MEMORY_POLICY`, `CONSTRAINT_MEMCG`.
    pub constraint: String,
    pub nodemask: String,
    pub cpuset: Option<String>,
    pub mems_allowed: Option<String>,
    /// `None` for a global OOM.
    pub oom_memcg: Option<String>,
    pub global_oom: bool,
    pub task_memcg: Option<String>,
    /// `None` when the line was cut before them.
    pub task: Option<String>,
    pub pid: Option<i32>,
    pub uid: Option<u32>,
    /// The line was cut short (a log line length limit): fields after the
    /// cut are `None`; a field the cut went through is left out.
    pub truncated: bool,
}

/// Feeds records in order; returns a report when its "Killed process" line
/// arrives. Bounded: a report that never completes is dropped after a bounded
/// number of records.
#[derive(Debug)]
pub struct OomReportAssembler {
    page_size: u64,
    pending: Option<Pending>,
    /// The last report, for `memory.oom.group` member kills that follow it.
    last_report: Option<OomReport>,
    /// Records since `last_report` was emitted.
    since_last_report: usize,
    /// The `memory.oom.group` cgroup announced after `last_report`.
    oom_group: Option<String>,
    /// The last report that ended without a "Killed process" line.
    unfinished: Option<OomReport>,
    /// Lines found only inside a report start one (see
    /// [`Self::headerless_reports`]).
    headerless: bool,
}

#[derive(Debug)]
struct Pending {
    report: OomReport,
    records: usize,
    columns: Option<TaskColumns>,
}

impl Default for OomReportAssembler {
    fn default() -> Self {
        Self::new()
    }
}

impl OomReportAssembler {
    /// An assembler converting task-table pages with this host's page size.
    pub fn new() -> Self {
        Self::with_page_size(crate::sysconf::page_size())
    }

    /// An assembler for reports from a host with `page_size`-byte pages.
    pub fn with_page_size(page_size: u64) -> Self {
        OomReportAssembler {
            page_size: page_size.max(1),
            pending: None,
            last_report: None,
            since_last_report: 0,
            oom_group: None,
            unfinished: None,
            headerless: false,
        }
    }

    /// Also assembles reports whose first lines are missing from the text
    /// (cut or filtered before them) from the memcg lines and the task
    /// table. For log text; the kernel log itself drops the header only
    /// with the whole dump (its rate limit), so there such a line starts
    /// nothing.
    pub fn headerless_reports(mut self) -> Self {
        self.headerless = true;
        self
    }

    /// The sequence number of the first record of a report still waiting
    /// for its "Killed process" line; a reader checkpointing its position
    /// must not move past it, or a restart would lose the report's header.
    pub fn pending_first_seq(&self) -> Option<u64> {
        self.pending
            .as_ref()
            .map(|pending| pending.report.first_seq)
    }

    /// Records held for the report still waiting for its "Killed process"
    /// line (at most [`MAX_REPORT_RECORDS`]); for the fuzz targets' bound check.
    #[doc(hidden)]
    pub fn pending_records(&self) -> usize {
        self.pending.as_ref().map_or(0, |pending| pending.records)
    }

    /// Feeds the next record; returns the report its "Killed process" line
    /// completes.
    pub fn push(&mut self, record: &KmsgRecord) -> Option<OomReport> {
        self.push_message(record.seq, record.monotonic_us, &record.message)
    }

    /// Feeds the next kernel message (prefix already removed): `seq`
    /// increases by one per message (a kmsg sequence number, a line
    /// number); `monotonic_us` is its time since boot, when known (0 if
    /// not). Returns the report its "Killed process" line completes. A
    /// report ended without one is kept for [`Self::take_unfinished`].
    pub fn push_message(
        &mut self,
        seq: u64,
        monotonic_us: u64,
        message: &str,
    ) -> Option<OomReport> {
        let message = message.trim_end();

        if let Some(invoked) = parse_invoked(message) {
            self.abandon(Unfinished::NextReportStarted);
            self.forget_last_report();
            self.pending = Some(Pending {
                report: OomReport {
                    trigger_comm: Some(invoked.comm),
                    gfp_mask: Some(invoked.gfp_mask),
                    order: invoked.order,
                    trigger_oom_score_adj: invoked.oom_score_adj,
                    first_seq: seq,
                    last_seq: seq,
                    monotonic_us,
                    ..OomReport::default()
                },
                records: 1,
                columns: None,
            });
            return None;
        }

        if let Some(killed) = parse_killed_process(message) {
            return Some(self.complete(seq, monotonic_us, killed));
        }

        if let Some(constraint) = parse_constraint(message) {
            // The summary is part of the rate-limited header; seen without
            // the "invoked" line (reading started mid-report), it still
            // belongs to the coming "Killed process" line.
            let pending = self.pending_or_new(seq);
            let report = &mut pending.report;
            report.constraint = Some(constraint.constraint);
            report.global_oom = constraint.global_oom;
            if constraint.oom_memcg.is_some() {
                report.oom_memcg = constraint.oom_memcg;
            }
            if constraint.task_memcg.is_some() {
                report.task_memcg = constraint.task_memcg;
            }
            pending.records += 1;
            report.last_seq = seq;
            report.monotonic_us = monotonic_us;
            return None;
        }

        if let Some(selected) = parse_selected(message) {
            // Before 4.19 the choice came right before the kill; also
            // without its (rate-limited) header.
            let pending = self.pending_or_new(seq);
            pending.report.selected = Some(selected);
            pending.records += 1;
            pending.report.last_seq = seq;
            pending.report.monotonic_us = monotonic_us;
            return None;
        }

        if message.starts_with("Out of memory and no killable processes") {
            if let Some(pending) = &mut self.pending {
                pending.report.last_seq = seq;
                pending.report.monotonic_us = monotonic_us;
            }
            self.abandon(Unfinished::NoKillableProcesses);
            return None;
        }

        if let Some((pid, comm)) = parse_victim_exiting(message) {
            if let Some(pending) = &mut self.pending {
                pending.report.last_seq = seq;
                pending.report.monotonic_us = monotonic_us;
            }
            self.abandon(Unfinished::VictimExiting {
                pid,
                comm: comm.to_owned(),
            });
            return None;
        }

        if self.headerless && self.pending.is_none() && starts_headerless_report(message) {
            // The report's first lines are missing (a rate-limited header,
            // text cut or filtered before them): what follows still is one.
            self.pending_or_new(seq);
        }

        if let Some(pending) = &mut self.pending {
            pending.records += 1;
            if pending.records > MAX_REPORT_RECORDS {
                tracing::debug!(
                    first_seq = pending.report.first_seq,
                    "an OOM report without a \"Killed process\" line was dropped"
                );
                self.abandon(Unfinished::TooLong);
                return None;
            }
            if pending.absorb(message, self.page_size) {
                pending.report.last_seq = seq;
                pending.report.monotonic_us = monotonic_us;
            }
            return None;
        }

        if self.last_report.is_some() {
            self.since_last_report += 1;
            if self.since_last_report > MAX_REPORT_RECORDS {
                self.forget_last_report();
            } else if let Some(group) = parse_oom_group(message) {
                self.oom_group = Some(group.to_owned());
            }
        }
        None
    }

    /// The input ended: a report still waiting for its "Killed process"
    /// line is unfinished (see [`Self::take_unfinished`]).
    pub fn finish(&mut self) {
        self.finish_because(Unfinished::InputEnded);
    }

    /// [`Self::finish`], saying why.
    pub fn finish_because(&mut self, why: Unfinished) {
        self.abandon(why);
        self.forget_last_report();
    }

    /// The last report that ended without a "Killed process" line (another
    /// report started, it grew too long, the victim was already exiting, or
    /// [`Self::finish`]), with what it had; at most one is kept, so call
    /// this after each [`Self::push_message`] to see them all.
    pub fn take_unfinished(&mut self) -> Option<OomReport> {
        self.unfinished.take()
    }

    fn abandon(&mut self, why: Unfinished) {
        if let Some(pending) = self.pending.take() {
            let mut report = pending.report;
            report
                .tasks
                .sort_by_key(|task| std::cmp::Reverse(task.rss_bytes));
            report.unfinished = Some(why);
            self.unfinished = Some(report);
        }
    }

    fn pending_or_new(&mut self, seq: u64) -> &mut Pending {
        if self.pending.is_none() {
            self.forget_last_report();
        }
        self.pending.get_or_insert_with(|| Pending {
            report: OomReport {
                first_seq: seq,
                ..OomReport::default()
            },
            records: 0,
            columns: None,
        })
    }

    fn complete(&mut self, seq: u64, monotonic_us: u64, killed: KilledProcess) -> OomReport {
        let mut report = match (self.pending.take(), &self.oom_group, &self.last_report) {
            (Some(pending), _, _) => {
                let mut report = pending.report;
                report
                    .tasks
                    .sort_by_key(|task| std::cmp::Reverse(task.rss_bytes));
                report
            }
            // A member of the victim's memory.oom.group: same OOM.
            (None, Some(group), Some(last)) => OomReport {
                oom_group: Some(group.clone()),
                repeated_victim: last.killed.pid == killed.pid,
                ..last.clone()
            },
            // The header was rate-limited (or overwritten): only this line.
            (None, _, _) => OomReport {
                first_seq: seq,
                ..OomReport::default()
            },
        };
        report.killed = killed;
        if report.killed.reason.is_none() {
            // Before 4.19 the reason was on the "Kill process" line.
            report.killed.reason = report.selected.as_ref().and_then(|s| s.reason.clone());
        }
        if report.constraint.is_none() {
            if let Some(reason) = &report.killed.reason {
                report.global_oom = reason.starts_with("Out of memory");
            }
        }
        report.last_seq = seq;
        report.monotonic_us = monotonic_us;
        if report.oom_group.is_none() {
            self.last_report = Some(report.clone());
            self.oom_group = None;
        }
        self.since_last_report = 0;
        report
    }

    fn forget_last_report(&mut self) {
        self.last_report = None;
        self.oom_group = None;
        self.since_last_report = 0;
    }
}

impl Pending {
    /// Takes what the report needs from one of its lines; false if the line
    /// is not one of the report's.
    fn absorb(&mut self, message: &str, page_size: u64) -> bool {
        let report = &mut self.report;
        if let Some(rest) = message.strip_prefix("CPU: ") {
            if report.trigger_pid.is_none() {
                report.trigger_pid = field_after(rest, "PID: ").and_then(|pid| pid.parse().ok());
            }
            return true;
        }
        // 2.6.x: "Pid: 2602, comm: java Not tainted 2.6.32-431.el6.x86_64 #1".
        if let Some(rest) = message.strip_prefix("Pid: ") {
            if report.trigger_pid.is_none() {
                report.trigger_pid = field_after(rest, "").and_then(|pid| pid.parse().ok());
            }
            return true;
        }
        if let Some(usage) = parse_memcg_counter(message) {
            match usage.counter {
                "memory" => {
                    report.memcg_usage_bytes = Some(usage.usage_kb.saturating_mul(1024));
                    report.memcg_limit_bytes = Some(usage.limit_kb.saturating_mul(1024));
                    report.memcg_failcnt = Some(usage.failcnt);
                }
                "swap" => {
                    report.memcg_swap_usage_bytes = Some(usage.usage_kb.saturating_mul(1024));
                    report.memcg_swap_limit_bytes = Some(usage.limit_kb.saturating_mul(1024));
                }
                _ => {}
            }
            return true;
        }
        if let Some(path) = message
            .strip_prefix("Memory cgroup stats for ")
            .and_then(|rest| rest.strip_suffix(':'))
        {
            // The OOM domain; the "oom-kill:" line (5.0+) says it again.
            if report.oom_memcg.is_none() {
                report.oom_memcg = Some(path.to_owned());
            }
            return true;
        }
        if let Some((task_memcg, oom_memcg)) = parse_legacy_memcg(message) {
            report
                .task_memcg
                .get_or_insert_with(|| task_memcg.to_owned());
            report.oom_memcg.get_or_insert_with(|| oom_memcg.to_owned());
            return true;
        }
        if message == "Tasks state (memory values in pages):" {
            return true;
        }
        if let Some(columns) = TaskColumns::parse_header(message) {
            self.columns = Some(columns);
            return true;
        }
        if let Some(columns) = &self.columns {
            if let Some(task) = columns.parse_row(message, page_size) {
                report.task_count += 1;
                keep_largest(&mut report.tasks, task);
                return true;
            }
        }
        false
    }
}

/// Lines printed only inside an OOM report, which can begin what is left
/// of one: the memcg lines and the task table's titles.
fn starts_headerless_report(message: &str) -> bool {
    parse_legacy_memcg(message).is_some()
        || message.starts_with("Memory cgroup stats for ")
        || message == "Tasks state (memory values in pages):"
        || TaskColumns::parse_header(message).is_some()
        || parse_memcg_counter(message).is_some_and(|c| c.counter == "memory")
}

/// Adds `task`, keeping only the [`MAX_TASKS`] largest by rss.
fn keep_largest(tasks: &mut Vec<OomTask>, task: OomTask) {
    if tasks.len() < MAX_TASKS {
        tasks.push(task);
        return;
    }
    if let Some((smallest, _)) = tasks
        .iter()
        .enumerate()
        .min_by_key(|(_, kept)| kept.rss_bytes)
    {
        if tasks[smallest].rss_bytes < task.rss_bytes {
            tasks[smallest] = task;
        }
    }
}

struct Invoked {
    comm: String,
    gfp_mask: String,
    order: Option<i32>,
    oom_score_adj: Option<i32>,
}

/// `<comm> invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), [nodemask=..., ]order=0, oom_score_adj=0`
fn parse_invoked(message: &str) -> Option<Invoked> {
    let (comm, rest) = message.split_once(" invoked oom-killer: ")?;
    let rest = rest.strip_prefix("gfp_mask=")?;
    // The flags in parentheses contain `|`, never `, `.
    let (gfp_mask, rest) = rest.split_once(", ").unwrap_or((rest, ""));
    let mut order = None;
    let mut oom_score_adj = None;
    for field in rest.split(", ") {
        if let Some((key, value)) = field.split_once('=') {
            match key {
                "order" => order = value.trim().parse().ok(),
                // Before 2.6.36 the field was `oomkilladj`.
                "oom_score_adj" | "oomkilladj" => oom_score_adj = value.trim().parse().ok(),
                _ => {}
            }
        }
    }
    Some(Invoked {
        comm: comm.to_owned(),
        gfp_mask: gfp_mask.to_owned(),
        order,
        oom_score_adj,
    })
}

/// The victim from a "Killed process" line:
///
/// `Memory cgroup out of memory: Killed process 11976 (python3) total-vm:67784kB,
/// anon-rss:50816kB, file-rss:5140kB, shmem-rss:0kB, UID:0 pgtables:156kB oom_score_adj:0`
///
/// Also every older form: without the reason prefix and with fewer fields
/// (before 4.19), `vsz:` for `total-vm:` (2.6.33-35), the pid and comm
/// alone (2.6.32), RHEL 6's `Killed process 2602, UID 0, (java) total-vm:...`
/// and RHEL 7's `Killed process 9013 (java), UID 1000, total-vm:...`. A
/// field that is printed must parse; one that is not stays `None`.
pub fn parse_killed_process(message: &str) -> Option<KilledProcess> {
    let (reason, rest) = match message.split_once(": Killed process ") {
        Some((reason, rest)) => (Some(reason), rest),
        None => (None, message.strip_prefix("Killed process ")?),
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let pid: i32 = rest[..digits].parse().ok()?;
    let mut rest = &rest[digits..];
    let mut uid = None;
    // RHEL 6: the uid comes before the comm.
    if let Some(after) = rest.strip_prefix(", UID ") {
        let (value, after) = after.split_once(", ")?;
        uid = Some(value.parse().ok()?);
        rest = after;
    } else {
        rest = rest.strip_prefix(' ')?;
    }
    let rest = rest.strip_prefix('(')?;
    // The comm may contain ") " and anything else; the text after it is one
    // of these (found from the end).
    let (comm, fields) = [") total-vm:", ") vsz:", "), UID "]
        .iter()
        .filter_map(|tail| rest.rfind(tail).map(|at| (&rest[..at], &rest[at + 1..])))
        .max_by_key(|(comm, _)| comm.len())
        .or_else(|| rest.strip_suffix(')').map(|comm| (comm, "")))?;
    let mut killed = KilledProcess {
        pid,
        comm: comm.to_owned(),
        uid,
        reason: reason.map(str::to_owned),
        ..KilledProcess::default()
    };
    let mut fields = fields.trim_start();
    // RHEL 7: ", UID 1000, " after the comm.
    if let Some(after) = fields.strip_prefix(", UID ") {
        let (value, after) = after.split_once(", ").unwrap_or((after, ""));
        killed.uid = Some(value.parse().ok()?);
        fields = after;
    }
    for field in fields.split([',', ' ']).filter(|field| !field.is_empty()) {
        let Some((key, value)) = field.split_once(':') else {
            continue;
        };
        let kb = || value.strip_suffix("kB").and_then(|n| n.parse::<u64>().ok());
        match key {
            "total-vm" | "vsz" => killed.total_vm_kb = Some(kb()?),
            "anon-rss" => killed.anon_rss_kb = Some(kb()?),
            "file-rss" => killed.file_rss_kb = Some(kb()?),
            "shmem-rss" => killed.shmem_rss_kb = Some(kb()?),
            "UID" => killed.uid = Some(value.parse().ok()?),
            "pgtables" => killed.pgtables_kb = Some(kb()?),
            "oom_score_adj" => killed.oom_score_adj = Some(value.parse().ok()?),
            _ => {}
        }
    }
    Some(killed)
}

/// The choice of kernels before 4.19:
/// `Out of memory: Kill process 1200 (bash) score 800 or sacrifice child`
/// (2.6.36+), `... kill process 1200 (bash) score 800 or a child` (2.6.32-35),
/// with `Memory cgroup out of memory` or `Out of memory
/// (oom_kill_allocating_task)` as the reason.
pub fn parse_selected(message: &str) -> Option<SelectedTask> {
    let (reason, rest) = message
        .split_once(": Kill process ")
        .or_else(|| message.split_once(": kill process "))?;
    let (pid, rest) = rest.split_once(" (")?;
    let (comm, score) = rest.rsplit_once(") score ")?;
    let score = score
        .strip_suffix(" or sacrifice child")
        .or_else(|| score.strip_suffix(" or a child"))?;
    Some(SelectedTask {
        pid: pid.parse().ok()?,
        comm: comm.to_owned(),
        score: Some(score.parse().ok()?),
        reason: Some(reason.to_owned()),
    })
}

/// `Memory cgroup out of memory: OOM victim 123 (java) is already exiting.
/// Skip killing the task` (4.19+): the victim's pid and comm.
fn parse_victim_exiting(message: &str) -> Option<(i32, &str)> {
    let (_, rest) = message.split_once(": OOM victim ")?;
    let rest = rest.strip_suffix(" is already exiting. Skip killing the task")?;
    let (pid, comm) = rest.split_once(" (")?;
    Some((pid.parse().ok()?, comm.strip_suffix(')')?))
}

/// `oom_reaper: reaped process 11976 (python3), now anon-rss:0kB,
/// file-rss:0kB, shmem-rss:0kB` (the sizes since 4.7).
pub fn parse_reaped(message: &str) -> Option<Reaped> {
    let rest = message.strip_prefix("oom_reaper: reaped process ")?;
    let (pid, rest) = rest.split_once(" (")?;
    let (comm, fields) = match rest.rsplit_once("), now ") {
        Some(split) => split,
        None => (rest.strip_suffix(')')?, ""),
    };
    let mut reaped = Reaped {
        pid: pid.parse().ok()?,
        comm: comm.to_owned(),
        ..Reaped::default()
    };
    for field in fields.split(", ") {
        let Some((key, value)) = field.split_once(':') else {
            continue;
        };
        let kb = value.strip_suffix("kB").and_then(|n| n.parse::<u64>().ok());
        match key {
            "anon-rss" => reaped.anon_rss_kb = kb,
            "file-rss" => reaped.file_rss_kb = kb,
            "shmem-rss" => reaped.shmem_rss_kb = kb,
            _ => {}
        }
    }
    Some(reaped)
}

/// The "oom-kill:" summary (5.0+):
///
/// `oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/oomtest,task_memcg=/oomtest,task=python3,pid=11976,uid=0`
///
/// or with `global_oom` in place of `oom_memcg=...`. `nodemask` and
/// `mems_allowed` are node lists that may contain commas, so the fields are
/// found by their names, and the trailing ones from the end (a comm may
/// contain anything). A line cut short (a syslog line limit) gives what it
/// still holds whole.
pub fn parse_constraint(message: &str) -> Option<OomConstraint> {
    parse_whole_constraint(message).or_else(|| parse_cut_constraint(message))
}

fn parse_whole_constraint(message: &str) -> Option<OomConstraint> {
    let rest = message.strip_prefix("oom-kill:constraint=")?;
    let (rest, uid) = rest.rsplit_once(",uid=")?;
    let (rest, pid) = rest.rsplit_once(",pid=")?;
    let (rest, task) = rest.split_once(",task=")?;
    let (constraint, rest) = rest.split_once(",nodemask=")?;

    let (rest, task_memcg) = match rest.split_once(",task_memcg=") {
        Some((head, memcg)) => (head, Some(memcg.to_owned())),
        None => (rest, None),
    };
    let (rest, oom_memcg, global_oom) = if let Some((head, memcg)) = rest.split_once(",oom_memcg=")
    {
        (head, Some(memcg.to_owned()), false)
    } else if let Some(head) = rest.strip_suffix(",global_oom") {
        (head, None, true)
    } else {
        return None;
    };
    let (nodemask, cpuset, mems_allowed) = match rest.split_once(",cpuset=") {
        Some((nodemask, cpuset_and_mems)) => {
            let (cpuset, mems) = cpuset_and_mems
                .split_once(",mems_allowed=")
                .map_or((cpuset_and_mems, None), |(cpuset, mems)| {
                    (cpuset, Some(mems.to_owned()))
                });
            (nodemask, Some(cpuset.to_owned()), mems)
        }
        None => (rest, None, None),
    };
    Some(OomConstraint {
        constraint: constraint.to_owned(),
        nodemask: nodemask.to_owned(),
        cpuset,
        mems_allowed,
        oom_memcg,
        global_oom,
        task_memcg,
        task: Some(task.to_owned()),
        pid: Some(pid.parse().ok()?),
        uid: Some(uid.trim_end().parse().ok()?),
        truncated: false,
    })
}

/// A summary cut short (or odd): each field is taken only when the next
/// field's name follows it (so it is whole).
fn parse_cut_constraint(message: &str) -> Option<OomConstraint> {
    let rest = message.strip_prefix("oom-kill:constraint=")?;
    let uid = rest
        .rsplit_once(",uid=")
        .and_then(|(_, uid)| uid.trim_end().parse::<u32>().ok());
    let (constraint, rest) = rest.split_once(',')?;
    if constraint.is_empty()
        || !constraint
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_')
    {
        return None;
    }
    // The value of `key` up to the first of `next` keys after it.
    let whole = |key: &str, next: &[&str]| -> Option<String> {
        let start = rest.find(key)? + key.len();
        let value = &rest[start..];
        next.iter()
            .filter_map(|n| value.find(n))
            .min()
            .map(|end| value[..end].to_owned())
    };
    let global_oom = rest.contains(",global_oom,") || rest.ends_with(",global_oom");
    Some(OomConstraint {
        constraint: constraint.to_owned(),
        nodemask: whole("nodemask=", &[",cpuset=", ",oom_memcg=", ",global_oom"])
            .unwrap_or_default(),
        cpuset: whole(",cpuset=", &[",mems_allowed="]),
        mems_allowed: whole(",mems_allowed=", &[",oom_memcg=", ",global_oom"]),
        oom_memcg: whole(",oom_memcg=", &[",task_memcg="]),
        global_oom,
        task_memcg: whole(",task_memcg=", &[",task="]),
        task: whole(",task=", &[",pid="]),
        pid: whole(",pid=", &[",uid="]).and_then(|pid| pid.parse().ok()),
        uid,
        truncated: uid.is_none(),
    })
}

struct MemcgCounter<'a> {
    counter: &'a str,
    usage_kb: u64,
    limit_kb: u64,
    failcnt: u64,
}

/// `memory: usage 51200kB, limit 51200kB, failcnt 941` (also `swap:`,
/// `memory+swap:`, `kmem:`).
fn parse_memcg_counter(message: &str) -> Option<MemcgCounter<'_>> {
    let (counter, rest) = message.split_once(": usage ")?;
    if !matches!(counter, "memory" | "swap" | "memory+swap" | "kmem") {
        return None;
    }
    let (usage, rest) = rest.split_once("kB, limit ")?;
    let (limit, failcnt) = rest.split_once("kB, failcnt ")?;
    Some(MemcgCounter {
        counter,
        usage_kb: usage.parse().ok()?,
        limit_kb: limit.parse().ok()?,
        failcnt: failcnt.trim().parse().ok()?,
    })
}

/// `Task in /a/b killed as a result of limit of /a` (memcg OOM before 5.0).
fn parse_legacy_memcg(message: &str) -> Option<(&str, &str)> {
    message
        .strip_prefix("Task in ")?
        .split_once(" killed as a result of limit of ")
}

/// `Tasks in /a are going to be killed due to memory.oom.group set`
fn parse_oom_group(message: &str) -> Option<&str> {
    message
        .strip_prefix("Tasks in ")?
        .strip_suffix(" are going to be killed due to memory.oom.group set")
}

/// The digits (with sign) right after `key` in `text`.
fn field_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    let value = &text[start..];
    let end = value
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map_or(value.len(), |(i, _)| i);
    Some(&value[..end])
}

/// Where each value sits in the task table of this kernel.
#[derive(Debug, Clone)]
struct TaskColumns {
    /// Column names after `[ pid ]`, without the final `name`.
    names: Vec<String>,
}

impl TaskColumns {
    /// `[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name`
    fn parse_header(message: &str) -> Option<TaskColumns> {
        let rest = message.strip_prefix('[')?;
        let (pid, rest) = rest.split_once(']')?;
        if pid.trim() != "pid" {
            return None;
        }
        let mut names: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
        if names.pop().as_deref() != Some("name") {
            return None;
        }
        // The columns everything needs.
        for required in ["uid", "tgid", "total_vm", "rss"] {
            if !names.iter().any(|name| name == required) {
                return None;
            }
        }
        Some(TaskColumns { names })
    }

    /// `[  11976]     0 11976    16946    13989    12704     1285         0   159744        0             0 python3`
    fn parse_row(&self, message: &str, page_size: u64) -> Option<OomTask> {
        let rest = message.strip_prefix('[')?;
        let (pid, mut rest) = rest.split_once(']')?;
        let mut task = OomTask {
            pid: pid.trim().parse().ok()?,
            ..OomTask::default()
        };
        let pages = |value: &str| {
            value
                .parse::<u64>()
                .ok()
                .map(|n| n.saturating_mul(page_size))
        };
        let mut pmd_pages = 0;
        for column in &self.names {
            let trimmed = rest.trim_start();
            let end = trimmed.find(char::is_whitespace)?;
            let value = &trimmed[..end];
            rest = &trimmed[end..];
            match column.as_str() {
                "uid" => task.uid = value.parse().ok()?,
                "tgid" => task.tgid = value.parse().ok()?,
                "total_vm" => task.total_vm_bytes = pages(value)?,
                "rss" => task.rss_bytes = pages(value)?,
                "rss_anon" => task.rss_anon_bytes = Some(pages(value)?),
                "rss_file" => task.rss_file_bytes = Some(pages(value)?),
                "rss_shmem" => task.rss_shmem_bytes = Some(pages(value)?),
                "pgtables_bytes" => task.pgtables_bytes = value.parse().ok()?,
                "nr_ptes" => task.pgtables_bytes = pages(value)?,
                "nr_pmds" => pmd_pages = pages(value)?,
                "swapents" => task.swapents = value.parse().ok()?,
                "oom_score_adj" => task.oom_score_adj = value.parse().ok()?,
                // Unknown numeric column of a newer kernel.
                _ => {
                    value.parse::<i64>().ok()?;
                }
            }
        }
        task.pgtables_bytes = task.pgtables_bytes.saturating_add(pmd_pages);
        // The comm is the rest, one space after the last number; it may
        // itself contain spaces.
        let name = rest.strip_prefix(' ').unwrap_or(rest);
        if name.is_empty() {
            return None;
        }
        task.name = name.to_owned();
        Some(task)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../../tests/data/kmsg-memcg-oom.txt");
    const PAGE: u64 = 4096;

    /// Records from `/dev/kmsg`-formatted lines.
    fn records(text: &str) -> Vec<KmsgRecord> {
        text.lines()
            .map(|line| KmsgRecord::parse(line.as_bytes()).unwrap())
            .collect()
    }

    /// Records numbered from `first_seq`, one per message line.
    fn messages(first_seq: u64, text: &str) -> Vec<KmsgRecord> {
        text.lines()
            .enumerate()
            .map(|(i, message)| KmsgRecord {
                level: 4,
                facility: 0,
                seq: first_seq + i as u64,
                monotonic_us: 1_000_000 + i as u64,
                continuation: false,
                message: message.to_owned(),
                dict: Vec::new(),
            })
            .collect()
    }

    fn assemble(records: &[KmsgRecord]) -> Vec<OomReport> {
        let mut assembler = OomReportAssembler::with_page_size(PAGE);
        records
            .iter()
            .filter_map(|record| assembler.push(record))
            .collect()
    }

    #[test]
    fn assembles_the_memcg_report_of_the_sample() {
        let reports = assemble(&records(SAMPLE));
        // The sample ends two lines into a second report: not emitted.
        assert_eq!(reports.len(), 1, "{reports:#?}");
        let expected = OomReport {
            trigger_comm: Some("python3".into()),
            trigger_pid: Some(11976),
            gfp_mask: Some("0xcc0(GFP_KERNEL)".into()),
            order: Some(0),
            trigger_oom_score_adj: Some(0),
            constraint: Some("CONSTRAINT_MEMCG".into()),
            oom_memcg: Some("/oomtest".into()),
            task_memcg: Some("/oomtest".into()),
            global_oom: false,
            memcg_usage_bytes: Some(51200 * 1024),
            memcg_limit_bytes: Some(51200 * 1024),
            memcg_failcnt: Some(941),
            memcg_swap_usage_bytes: None,
            memcg_swap_limit_bytes: None,
            killed: KilledProcess {
                pid: 11976,
                comm: "python3".into(),
                total_vm_kb: Some(67784),
                anon_rss_kb: Some(50816),
                file_rss_kb: Some(5140),
                shmem_rss_kb: Some(0),
                uid: Some(0),
                pgtables_kb: Some(156),
                oom_score_adj: Some(0),
                reason: Some("Memory cgroup out of memory".into()),
            },
            tasks: vec![OomTask {
                pid: 11976,
                uid: 0,
                tgid: 11976,
                total_vm_bytes: 16946 * PAGE,
                rss_bytes: 13989 * PAGE,
                pgtables_bytes: 159744,
                swapents: 0,
                oom_score_adj: 0,
                name: "python3".into(),
                rss_anon_bytes: Some(12704 * PAGE),
                rss_file_bytes: Some(1285 * PAGE),
                rss_shmem_bytes: Some(0),
            }],
            task_count: 1,
            oom_group: None,
            repeated_victim: false,
            selected: None,
            unfinished: None,
            first_seq: 341,
            last_seq: 418,
            monotonic_us: 391799786,
        };
        assert_eq!(reports[0], expected);
        // The task table agrees with the Killed line (pages vs kB).
        assert_eq!(reports[0].tasks[0].total_vm_bytes, 67784 * 1024);
    }

    #[test]
    fn the_second_sample_report_completes_when_its_killed_line_arrives() {
        let mut records = records(SAMPLE);
        records.extend(messages(
            421,
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/oomtest,task_memcg=/oomtest,task=python3,pid=12574,uid=0\n\
             Memory cgroup out of memory: Killed process 12574 (python3) total-vm:67784kB, anon-rss:50800kB, file-rss:5000kB, shmem-rss:0kB, UID:0 pgtables:152kB oom_score_adj:0",
        ));
        let reports = assemble(&records);
        assert_eq!(reports.len(), 2);
        let second = &reports[1];
        assert_eq!(second.trigger_pid, Some(12574));
        assert_eq!(second.killed.pid, 12574);
        assert_eq!((second.first_seq, second.last_seq), (419, 422));
        // Nothing leaks from the first report.
        assert_eq!(second.memcg_usage_bytes, None);
        assert!(second.tasks.is_empty());
    }

    const GLOBAL_OOM: &str = "\
stress invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=0
CPU: 3 UID: 1000 PID: 4242 Comm: stress Not tainted 6.8.0-45-generic #45-Ubuntu
Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.3 04/01/2014
Call Trace:
 <TASK>
 dump_stack_lvl+0x76/0xa0
 dump_header+0x47/0x1f0
 oom_kill_process+0x118/0x280
 out_of_memory+0x103/0x350
 </TASK>
Mem-Info:
active_anon:1004 inactive_anon:480120 isolated_anon:0
Node 0 active_anon:4016kB inactive_anon:1920480kB active_file:0kB
Node 0 DMA free:6588kB boost:0kB min:44kB low:56kB high:68kB
lowmem_reserve[]: 0 1910 1910 1910 1910
Node 0 DMA: 1*4kB (U) 1*8kB (U) 1*16kB (U) = 6588kB
2063 total pagecache pages
0 pages in swap cache
Free swap  = 0kB
Total swap = 0kB
524158 pages RAM
Tasks state (memory values in pages):
[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name
[    412]     0   412    12345      500      300      200         0   110592        0          -250 systemd-journal
[   4242]  1000  4242   500000   480000   479900      100         0  3907584        0             0 stress
[   4300]  1000  4300     2000      100       60       40         0    49152        0             0 my worker
oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0-1,3,global_oom,task_memcg=/user.slice/user-1000.slice/session-3.scope,task=stress,pid=4242,uid=1000
Out of memory: Killed process 4242 (stress) total-vm:2000000kB, anon-rss:1919600kB, file-rss:400kB, shmem-rss:0kB, UID:1000 pgtables:3816kB oom_score_adj:0
";

    #[test]
    fn assembles_a_global_oom_report() {
        let reports = assemble(&messages(100, GLOBAL_OOM));
        assert_eq!(reports.len(), 1);
        let report = &reports[0];
        assert!(report.global_oom);
        assert_eq!(report.constraint.as_deref(), Some("CONSTRAINT_NONE"));
        assert_eq!(report.oom_memcg, None);
        assert_eq!(
            report.task_memcg.as_deref(),
            Some("/user.slice/user-1000.slice/session-3.scope")
        );
        assert_eq!(report.trigger_comm.as_deref(), Some("stress"));
        assert_eq!(report.trigger_pid, Some(4242));
        assert_eq!(
            report.gfp_mask.as_deref(),
            Some("0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP)")
        );
        assert_eq!(report.memcg_usage_bytes, None);
        assert_eq!(report.killed.reason.as_deref(), Some("Out of memory"));
        assert_eq!(report.killed.pid, 4242);
        assert_eq!(report.killed.uid, Some(1000));
        assert_eq!(report.killed.anon_rss_kb, Some(1919600));
        assert_eq!(report.task_count, 3);
        let rows: Vec<(i32, &str, u64, i32)> = report
            .tasks
            .iter()
            .map(|task| {
                (
                    task.pid,
                    task.name.as_str(),
                    task.rss_bytes,
                    task.oom_score_adj,
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (4242, "stress", 480000 * PAGE, 0),
                (412, "systemd-journal", 500 * PAGE, -250),
                (4300, "my worker", 100 * PAGE, 0),
            ]
        );
        assert_eq!(report.first_seq, 100);
        assert_eq!(report.last_seq, 100 + GLOBAL_OOM.lines().count() as u64 - 1);
    }

    #[test]
    fn a_rate_limited_header_leaves_only_the_killed_line() {
        let reports = assemble(&messages(
            7,
            "eth0: link up\n\
             Memory cgroup out of memory: Killed process 300 (java) total-vm:4000kB, anon-rss:3000kB, file-rss:100kB, shmem-rss:8kB, UID:33 pgtables:40kB oom_score_adj:900",
        ));
        assert_eq!(
            reports,
            vec![OomReport {
                killed: KilledProcess {
                    pid: 300,
                    comm: "java".into(),
                    total_vm_kb: Some(4000),
                    anon_rss_kb: Some(3000),
                    file_rss_kb: Some(100),
                    shmem_rss_kb: Some(8),
                    uid: Some(33),
                    pgtables_kb: Some(40),
                    oom_score_adj: Some(900),
                    reason: Some("Memory cgroup out of memory".into()),
                },
                first_seq: 8,
                last_seq: 8,
                monotonic_us: 1_000_001,
                ..OomReport::default()
            }]
        );
    }

    #[test]
    fn a_summary_without_header_still_gives_the_constraint() {
        let reports = assemble(&messages(
            50,
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/k,task_memcg=/k/c,task=x,pid=5,uid=0\n\
             Memory cgroup out of memory: Killed process 5 (x) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
        ));
        assert_eq!(reports.len(), 1);
        let report = &reports[0];
        assert_eq!(report.constraint.as_deref(), Some("CONSTRAINT_MEMCG"));
        assert_eq!(report.oom_memcg.as_deref(), Some("/k"));
        assert_eq!(report.task_memcg.as_deref(), Some("/k/c"));
        assert_eq!((report.first_seq, report.last_seq), (50, 51));
        assert_eq!(report.trigger_comm, None);
    }

    #[test]
    fn parses_killed_lines_of_older_kernels() {
        // 4.x: no reason prefix, no shmem-rss, UID, pgtables, oom_score_adj.
        let killed = parse_killed_process(
            "Killed process 2592 (oom) total-vm:842956kB, anon-rss:800000kB, file-rss:12kB",
        )
        .unwrap();
        assert_eq!(
            killed,
            KilledProcess {
                pid: 2592,
                comm: "oom".into(),
                total_vm_kb: Some(842956),
                anon_rss_kb: Some(800000),
                file_rss_kb: Some(12),
                ..KilledProcess::default()
            }
        );
        // 4.19-5.1: shmem-rss, no UID.
        let killed =
            parse_killed_process("Out of memory: Kill process 1 (x) score 1 or sacrifice child");
        assert_eq!(killed, None);
        let killed = parse_killed_process(
            "Memory cgroup out of memory: Killed process 77 (a (b) c) total-vm:10kB, anon-rss:5kB, file-rss:1kB, shmem-rss:2kB",
        )
        .unwrap();
        assert_eq!(killed.comm, "a (b) c");
        assert_eq!(killed.shmem_rss_kb, Some(2));
        assert_eq!(
            (killed.uid, killed.pgtables_kb, killed.oom_score_adj),
            (None, None, None)
        );
        // The header-less older line still makes a report.
        let reports = assemble(&messages(
            1,
            "Killed process 2592 (oom) total-vm:842956kB, anon-rss:800000kB, file-rss:12kB",
        ));
        assert_eq!(reports.len(), 1);
        assert!(
            !reports[0].global_oom,
            "unknown without a prefix or summary"
        );
        assert_eq!(reports[0].killed.pid, 2592);
    }

    /// Forms of 2.6.32-3.x kernels the collected samples do not all hold
    /// (format strings of mm/oom_kill.c at v2.6.32, v2.6.33 and v2.6.36).
    #[test]
    fn parses_the_forms_of_the_oldest_kernels() {
        // 2.6.32: the pid and comm alone.
        let bare = parse_killed_process("Killed process 2602 (java)").unwrap();
        assert_eq!((bare.pid, bare.comm.as_str()), (2602, "java"));
        assert_eq!((bare.total_vm_kb, bare.anon_rss_kb), (None, None));
        // 2.6.33-35: vsz.
        let vsz = parse_killed_process(
            "Killed process 2602 (java) vsz:2099216kB, anon-rss:1183668kB, file-rss:172kB",
        )
        .unwrap();
        assert_eq!(vsz.total_vm_kb, Some(2099216));
        assert_eq!(vsz.anon_rss_kb, Some(1183668));
        // RHEL 6 and 7.
        let rhel6 = parse_killed_process(
            "Killed process 2602, UID 498, (java) total-vm:2099216kB, anon-rss:1183668kB, file-rss:172kB",
        )
        .unwrap();
        assert_eq!(
            (rhel6.pid, rhel6.uid, rhel6.comm.as_str()),
            (2602, Some(498), "java")
        );
        let rhel7 = parse_killed_process(
            "Killed process 9013 (my (odd) app), UID 1000, total-vm:3427264kB, anon-rss:1245792kB, file-rss:0kB, shmem-rss:0kB",
        )
        .unwrap();
        assert_eq!(
            (
                rhel7.pid,
                rhel7.uid,
                rhel7.comm.as_str(),
                rhel7.shmem_rss_kb
            ),
            (9013, Some(1000), "my (odd) app", Some(0))
        );
        // The choice: "or a child" (2.6.32-35) and "or sacrifice child".
        let old =
            parse_selected("Out of memory: kill process 1200 (bash) score 800 or a child").unwrap();
        assert_eq!((old.pid, old.score), (1200, Some(800)));
        let memcg = parse_selected(
            "Memory cgroup out of memory: Kill process 1200 (a) b) score 0 or sacrifice child",
        )
        .unwrap();
        assert_eq!(memcg.comm, "a) b");
        assert_eq!(memcg.reason.as_deref(), Some("Memory cgroup out of memory"));
        assert_eq!(
            parse_selected("Kill process 1 (a) sharing same memory"),
            None
        );
        // The report: a child of the chosen task killed; the reason and
        // the trigger pid from the old lines.
        let reports = assemble(&messages(
            1,
            "bash invoked oom-killer: gfp_mask=0x201da, order=0, oom_adj=0, oom_score_adj=0\n\
             Pid: 1200, comm: bash Not tainted 2.6.32-431.el6.x86_64 #1\n\
             Out of memory: Kill process 1200 (bash) score 800 or sacrifice child\n\
             Killed process 1300, UID 0, (sleep) total-vm:4000kB, anon-rss:100kB, file-rss:10kB",
        ));
        assert_eq!(reports.len(), 1);
        let r = &reports[0];
        assert_eq!((r.killed.pid, r.killed.comm.as_str()), (1300, "sleep"));
        assert_eq!(r.selected.as_ref().map(|s| s.pid), Some(1200));
        assert_eq!(r.killed.reason.as_deref(), Some("Out of memory"));
        assert!(r.global_oom);
        assert_eq!(r.trigger_pid, Some(1200));
        assert_eq!(r.trigger_oom_score_adj, Some(0));
    }

    #[test]
    fn reaper_lines_and_exiting_victims() {
        assert_eq!(
            parse_reaped(
                "oom_reaper: reaped process 11976 (python3), now anon-rss:0kB, file-rss:0kB, shmem-rss:4kB"
            ),
            Some(Reaped {
                pid: 11976,
                comm: "python3".into(),
                anon_rss_kb: Some(0),
                file_rss_kb: Some(0),
                shmem_rss_kb: Some(4),
            })
        );
        let mut assembler = OomReportAssembler::with_page_size(PAGE);
        for (seq, message) in [
            "java invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
            "Memory cgroup out of memory: OOM victim 77 (java) is already exiting. Skip killing the task",
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(assembler.push_message(seq as u64, 5, message), None);
        }
        let unfinished = assembler.take_unfinished().unwrap();
        assert_eq!(
            unfinished.unfinished,
            Some(Unfinished::VictimExiting {
                pid: 77,
                comm: "java".into()
            })
        );
        assert_eq!((unfinished.first_seq, unfinished.last_seq), (0, 1));
        assert_eq!(assembler.take_unfinished(), None);
        // The end of the text ends a report too.
        assembler.push_message(
            2,
            6,
            "x invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
        );
        assembler.finish();
        assert_eq!(
            assembler.take_unfinished().and_then(|r| r.unfinished),
            Some(Unfinished::InputEnded)
        );
    }

    #[test]
    fn rejects_malformed_killed_lines() {
        for message in [
            "Killed process",
            "Killed process x (a) total-vm:1kB, anon-rss:1kB, file-rss:1kB",
            "Killed process 1 (a) total-vm:1MB, anon-rss:1kB, file-rss:1kB",
            "Killed process 1 (a total-vm:1kB, anon-rss:1kB, file-rss:1kB",
            "Out of memory: Killed process 1 (a) total-vm:1kB, anon-rss:1kB, file-rss:1kB, UID:x",
            "oom_reaper: reaped process 11976 (python3), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
        ] {
            assert_eq!(parse_killed_process(message), None, "{message}");
        }
    }

    /// comm names with spaces, parentheses, brackets and colons, cut at 15
    /// characters by the kernel (no collected real report has brackets in
    /// a victim's name; these lines follow the kernels' format strings:
    /// 3.x "Kill process ... or sacrifice child" and a 6.x table).
    #[test]
    fn comm_names_with_brackets_colons_parentheses_and_spaces() {
        // At most 15 characters, as TASK_COMM_LEN cuts them.
        let victim = "[w:1] (x) y: z";
        let trigger = "kworker/u17:0 [";
        assert_eq!((victim.len(), trigger.len()), (14, 15));
        let text = format!(
            "{trigger} invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n\
             CPU: 1 UID: 0 PID: 74 Comm: {trigger} Not tainted 6.18.0 #1\n\
             Tasks state (memory values in pages):\n\
             [  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name\n\
             [     74]     0    74     1000      900      800      100         0    16384        0             0 {trigger}\n\
             [    500]  1000   500    90000    50000    49000     1000         0   409600        0           100 {victim}\n\
             oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/a,task={victim},pid=500,uid=1000\n\
             Out of memory: Killed process 500 ({victim}) total-vm:360000kB, anon-rss:196000kB, file-rss:4000kB, shmem-rss:0kB, UID:1000 pgtables:400kB oom_score_adj:100"
        );
        let reports = assemble(&messages(1, &text));
        assert_eq!(reports.len(), 1, "{reports:#?}");
        // The same as `dmesg` and syslog print it.
        for prefix in [
            "[  123.456789] ",
            "Mar  2 03:04:05 host kernel: [  123.456789] ",
        ] {
            let mut text_reports = super::super::text_reports::TextReports::new(
                super::super::text::TimeContext::utc(2024),
            );
            let mut events = Vec::new();
            for line in text.lines() {
                text_reports.push_line(&format!("{prefix}{line}"), &mut events);
            }
            text_reports.finish(&mut events);
            let kills: Vec<_> = events
                .iter()
                .filter_map(|e| match e {
                    super::super::text_reports::TextEvent::Report(t) => Some(&t.report),
                    _ => None,
                })
                .collect();
            assert_eq!(kills.len(), 1, "{prefix}: {kills:#?}");
            let mut from_text = kills[0].clone();
            // The only difference: the time the prefix gives.
            assert_eq!(from_text.monotonic_us, 123_456_789, "{prefix}");
            from_text.monotonic_us = reports[0].monotonic_us;
            assert_eq!(from_text, reports[0], "{prefix}");
        }
        let r = &reports[0];
        assert_eq!((r.killed.pid, r.killed.comm.as_str()), (500, victim));
        assert_eq!(r.killed.anon_rss_kb, Some(196000));
        assert_eq!(r.trigger_comm.as_deref(), Some(trigger));
        assert_eq!(r.trigger_pid, Some(74));
        let names: Vec<(i32, &str)> = r.tasks.iter().map(|t| (t.pid, t.name.as_str())).collect();
        assert_eq!(names, [(500, victim), (74, trigger)]);
        // The 3.x form: the selected task and its child, both odd names.
        let reports = assemble(&messages(
            1,
            "Out of memory: Kill process 26794 (a [b]: c (d)) score 0 or sacrifice child\n\
             Killed process 27019 ([x] y:z (w)) total-vm:187104kB, anon-rss:612kB, file-rss:1988kB",
        ));
        assert_eq!(reports.len(), 1, "{reports:#?}");
        let r = &reports[0];
        assert_eq!(
            (r.killed.pid, r.killed.comm.as_str()),
            (27019, "[x] y:z (w)")
        );
        let selected = r.selected.as_ref().expect("the selected task");
        assert_eq!(
            (selected.pid, selected.comm.as_str()),
            (26794, "a [b]: c (d)")
        );
    }

    #[test]
    fn interleaved_lines_do_not_break_a_report() {
        let mut lines: Vec<&str> = SAMPLE.lines().collect();
        // Unrelated kernel chatter between every line of the report, some of
        // it looking almost like report lines.
        let noise = [
            "6,9000,1,-;e1000e: eth0 NIC Link is Up 1000 Mbps Full Duplex",
            "6,9001,1,-;[  123.456] not a task row",
            "6,9002,1,-;audit: type=1400 audit(1700000000.000:42): apparmor=\"DENIED\"",
            "6,9003,1,-;CPU: 2 PID: 1 Comm: init",
        ];
        let mut mixed = Vec::new();
        for (i, line) in lines.drain(..).enumerate() {
            mixed.push(KmsgRecord::parse(line.as_bytes()).unwrap());
            mixed.push(KmsgRecord::parse(noise[i % noise.len()].as_bytes()).unwrap());
        }
        let plain = assemble(&records(SAMPLE));
        let reports = assemble(&mixed);
        assert_eq!(reports.len(), 1);
        let mut report = reports[0].clone();
        // The report's own lines set last_seq; noise does not.
        assert_eq!(report.last_seq, 418);
        report.last_seq = plain[0].last_seq;
        assert_eq!(report, plain[0]);
    }

    #[test]
    fn oom_reaper_lines_are_ignored() {
        let mut records = records(SAMPLE);
        records.truncate(78); // up to and including the Killed line
        records.extend(messages(
            419,
            "oom_reaper: reaped process 11976 (python3), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
        ));
        let reports = assemble(&records);
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].last_seq, 418);
    }

    #[test]
    fn a_new_header_abandons_an_unfinished_report() {
        let reports = assemble(&messages(
            1,
            "a invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n\
             memory: usage 10kB, limit 10kB, failcnt 1\n\
             b invoked oom-killer: gfp_mask=0x0(), order=-1, oom_score_adj=-1000\n\
             Out of memory: Killed process 9 (b) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:0kB oom_score_adj:0",
        ));
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].trigger_comm.as_deref(), Some("b"));
        assert_eq!(reports[0].order, Some(-1));
        assert_eq!(reports[0].trigger_oom_score_adj, Some(-1000));
        assert_eq!(reports[0].memcg_usage_bytes, None);
        assert_eq!(reports[0].first_seq, 3);
        assert!(reports[0].global_oom);
    }

    #[test]
    fn a_report_without_killed_line_is_dropped_after_the_bound() {
        let mut assembler = OomReportAssembler::with_page_size(PAGE);
        let header = &messages(
            1,
            "a invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
        )[0];
        assert_eq!(assembler.push(header), None);
        for record in messages(2, &"noise\n".repeat(MAX_REPORT_RECORDS)) {
            assert_eq!(assembler.push(&record), None);
        }
        let killed = &messages(
            10_000,
            "Memory cgroup out of memory: Killed process 9 (b) total-vm:1kB, anon-rss:1kB, file-rss:0kB",
        )[0];
        let report = assembler.push(killed).unwrap();
        assert_eq!(report.trigger_comm, None, "the stale header was kept");
        assert_eq!(report.first_seq, 10_000);
    }

    #[test]
    fn keeps_the_ten_largest_tasks() {
        let mut text = String::from(
            "x invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n\
             Tasks state (memory values in pages):\n\
             [  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name\n",
        );
        // rss 1..=25 in a scrambled order.
        for i in 0..25u64 {
            let rss = (i * 7) % 25 + 1;
            text.push_str(&format!(
                "[{:>7}]     0 {:>5} {:>8} {:>8} {:>8} {:>8} {:>13} task{rss}\n",
                rss,
                rss,
                rss * 2,
                rss,
                4096,
                3,
                0
            ));
        }
        text.push_str("Memory cgroup out of memory: Killed process 25 (task25) total-vm:200kB, anon-rss:100kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0\n");
        let reports = assemble(&messages(1, &text));
        let report = &reports[0];
        assert_eq!(report.task_count, 25);
        let kept: Vec<u64> = report
            .tasks
            .iter()
            .map(|task| task.rss_bytes / PAGE)
            .collect();
        assert_eq!(kept, (16..=25).rev().collect::<Vec<_>>());
        let top = &report.tasks[0];
        assert_eq!(
            (top.pid, top.name.as_str(), top.swapents),
            (25, "task25", 3)
        );
        assert_eq!(top.rss_anon_bytes, None);
    }

    #[test]
    fn reads_the_task_table_of_older_kernels() {
        // 4.x: page-table pages instead of bytes.
        let text = "\
x invoked oom-killer: gfp_mask=0x24200ca(GFP_HIGHUSER_MOVABLE), nodemask=0, order=0, oom_score_adj=0
[ pid ]   uid  tgid total_vm      rss nr_ptes nr_pmds swapents oom_score_adj name
[  812]     0   812    28001    12000      55       3        7          -1000 sshd
Out of memory: Kill process 812 (sshd) score 1 or sacrifice child
Killed process 812 (sshd) total-vm:112004kB, anon-rss:48000kB, file-rss:0kB, shmem-rss:0kB
";
        let reports = assemble(&messages(1, text));
        assert_eq!(reports.len(), 1);
        let report = &reports[0];
        assert_eq!(report.order, Some(0));
        assert_eq!(
            report.gfp_mask.as_deref(),
            Some("0x24200ca(GFP_HIGHUSER_MOVABLE)")
        );
        assert_eq!(
            report.tasks,
            vec![OomTask {
                pid: 812,
                uid: 0,
                tgid: 812,
                total_vm_bytes: 28001 * PAGE,
                rss_bytes: 12000 * PAGE,
                pgtables_bytes: 58 * PAGE,
                swapents: 7,
                oom_score_adj: -1000,
                name: "sshd".into(),
                ..OomTask::default()
            }]
        );
        // "Kill process ... or sacrifice child" is not a kill yet.
        assert_eq!(report.killed.pid, 812);
        assert_eq!(report.killed.total_vm_kb, Some(112004));
    }

    #[test]
    fn legacy_memcg_lines_give_the_cgroups() {
        let text = "\
x invoked oom-killer: gfp_mask=0xd0, order=0, oom_score_adj=0
Task in /docker/abc killed as a result of limit of /docker
memory: usage 2048kB, limit 2048kB, failcnt 3
Memory cgroup stats for /docker: cache:0KB rss:2048KB
Memory cgroup out of memory: Kill process 1 (x) score 1 or sacrifice child
Killed process 1 (x) total-vm:4kB, anon-rss:4kB, file-rss:0kB, shmem-rss:0kB
";
        let report = assemble(&messages(1, text)).remove(0);
        assert_eq!(report.task_memcg.as_deref(), Some("/docker/abc"));
        assert_eq!(report.oom_memcg.as_deref(), Some("/docker"));
        assert_eq!(report.memcg_usage_bytes, Some(2 * 1024 * 1024));
        assert_eq!(report.memcg_failcnt, Some(3));
        assert_eq!(report.gfp_mask.as_deref(), Some("0xd0"));
    }

    #[test]
    fn cgroup_v2_counters() {
        let text = "\
x invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0
memory: usage 102400kB, limit 102400kB, failcnt 12
swap: usage 4096kB, limit 9007199254740988kB, failcnt 0
Memory cgroup stats for /system.slice/app.service:
anon 104857600
oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/system.slice/app.service,task_memcg=/system.slice/app.service,task=x,pid=2,uid=0
Memory cgroup out of memory: Killed process 2 (x) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0
";
        let report = assemble(&messages(1, text)).remove(0);
        assert_eq!(report.memcg_usage_bytes, Some(102400 * 1024));
        assert_eq!(report.memcg_swap_usage_bytes, Some(4096 * 1024));
        // PAGE_COUNTER_MAX in kB overflows nothing: saturates at most.
        assert_eq!(report.memcg_swap_limit_bytes, Some(9007199254740988 * 1024));
        assert_eq!(
            report.oom_memcg.as_deref(),
            Some("/system.slice/app.service")
        );
    }

    #[test]
    fn memory_oom_group_member_kills_carry_the_context() {
        let mut records = records(SAMPLE);
        records.truncate(78);
        records.extend(messages(
            419,
            "Tasks in /oomtest are going to be killed due to memory.oom.group set\n\
             Memory cgroup out of memory: Killed process 11980 (helper) total-vm:100kB, anon-rss:50kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:8kB oom_score_adj:0",
        ));
        let reports = assemble(&records);
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[0].oom_group, None);
        let member = &reports[1];
        assert_eq!(member.oom_group.as_deref(), Some("/oomtest"));
        assert_eq!(member.killed.pid, 11980);
        assert_eq!(member.killed.comm, "helper");
        assert_eq!(member.trigger_pid, Some(11976));
        assert_eq!(member.oom_memcg.as_deref(), Some("/oomtest"));
        assert_eq!((member.first_seq, member.last_seq), (341, 420));
        assert!(!member.repeated_victim);
    }

    /// Linux 6.1 and 6.12 kill the chosen victim a second time as a member
    /// of its own group (a guest of tests/kernel_matrix.rs printed this).
    #[test]
    fn the_victim_killed_again_as_a_group_member_is_flagged() {
        let mut records = records(SAMPLE);
        records.truncate(78);
        records.extend(messages(
            419,
            "Tasks in /oomtest are going to be killed due to memory.oom.group set\n\
             Memory cgroup out of memory: Killed process 11980 (sleep) total-vm:2260kB, anon-rss:0kB, file-rss:0kB, shmem-rss:1324kB, UID:0 pgtables:36kB oom_score_adj:0\n\
             Memory cgroup out of memory: Killed process 11976 (python3) total-vm:67784kB, anon-rss:50816kB, file-rss:5140kB, shmem-rss:0kB, UID:0 pgtables:156kB oom_score_adj:0",
        ));
        let reports = assemble(&records);
        assert_eq!(reports.len(), 3);
        assert_eq!(reports[0].killed.pid, 11976);
        assert!(!reports[0].repeated_victim);
        assert_eq!(
            (reports[1].killed.pid, reports[1].repeated_victim),
            (11980, false)
        );
        assert_eq!(
            (reports[2].killed.pid, reports[2].repeated_victim),
            (11976, true)
        );
        assert_eq!(reports[2].oom_group.as_deref(), Some("/oomtest"));
    }

    #[test]
    fn parses_constraint_lines() {
        assert_eq!(
            parse_constraint("oom-kill:constraint=CONSTRAINT_NONE,nodemask=0-1,3,cpuset=/,mems_allowed=0-1,3,global_oom,task_memcg=/,task=a,b pid=1,pid=5096,uid=0"),
            Some(OomConstraint {
                constraint: "CONSTRAINT_NONE".into(),
                nodemask: "0-1,3".into(),
                cpuset: Some("/".into()),
                mems_allowed: Some("0-1,3".into()),
                oom_memcg: None,
                global_oom: true,
                task_memcg: Some("/".into()),
                task: Some("a,b pid=1".into()),
                pid: Some(5096),
                uid: Some(0),
                truncated: false,
            })
        );
        let memcg = parse_constraint("oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=ef80a8,mems_allowed=0,oom_memcg=/kubepods/burstable/podfbdf,task_memcg=/kubepods/burstable/podfbdf/ef80a8,task=manager,pid=966,uid=0").unwrap();
        assert_eq!(
            memcg.oom_memcg.as_deref(),
            Some("/kubepods/burstable/podfbdf")
        );
        assert_eq!(
            memcg.task_memcg.as_deref(),
            Some("/kubepods/burstable/podfbdf/ef80a8")
        );
        assert_eq!(memcg.cpuset.as_deref(), Some("ef80a8"));
        assert!(!memcg.global_oom);
        for bad in [
            "oom-kill:constraint=X",
            "oom-kill:constraint=x y,nodemask=(null),cpuset=/,mems_allowed=0,task=a,pid=1,ui",
            "constraint=X,nodemask=(null),global_oom,task_memcg=/,task=a,pid=1,uid=0",
        ] {
            assert_eq!(parse_constraint(bad), None, "{bad}");
        }
        // Whole but without the OOM domain: what it has.
        let odd = parse_constraint(
            "oom-kill:constraint=X,nodemask=(null),cpuset=/,mems_allowed=0,task=a,pid=1,uid=0",
        )
        .unwrap();
        assert_eq!(
            (odd.task.as_deref(), odd.pid, odd.uid, odd.truncated),
            (Some("a"), Some(1), Some(0), false)
        );
    }

    #[test]
    fn a_constraint_line_cut_short_gives_its_whole_fields() {
        let cut = parse_constraint(
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/kubepods/burstable/pod1,task_memcg=/kubepods/burs",
        )
        .unwrap();
        assert_eq!(cut.constraint, "CONSTRAINT_MEMCG");
        assert_eq!(cut.oom_memcg.as_deref(), Some("/kubepods/burstable/pod1"));
        assert_eq!(cut.task_memcg, None, "cut inside: unknown");
        assert_eq!((cut.task, cut.pid, cut.uid), (None, None, None));
        assert!(cut.truncated);
        let cut = parse_constraint(
            "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/user.slice,task=stress,pid=42",
        )
        .unwrap();
        assert!(cut.global_oom && cut.truncated);
        assert_eq!(cut.task_memcg.as_deref(), Some("/user.slice"));
        assert_eq!(cut.task.as_deref(), Some("stress"));
        assert_eq!(cut.pid, None, "the pid may be cut");
        // In a report, the cut summary still gives the domain.
        let reports = assemble(&messages(
            1,
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/k,task_memcg=/k/c,task=jav\n\
             Memory cgroup out of memory: Killed process 5 (java) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
        ));
        assert_eq!(reports[0].oom_memcg.as_deref(), Some("/k"));
        assert_eq!(reports[0].task_memcg.as_deref(), Some("/k/c"));
    }

    #[test]
    fn arbitrary_messages_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let pieces = [
            "[",
            "]",
            " ",
            "pid",
            "name",
            "uid",
            "tgid",
            "total_vm",
            "rss",
            "1",
            "-",
            "kB",
            ",",
            "Killed process ",
            "(",
            ")",
            " total-vm:",
            "oom-kill:constraint=",
            ",pid=",
            ",uid=",
            ",task=",
            ",nodemask=",
            "global_oom",
            " invoked oom-killer: ",
            "gfp_mask=",
            "memory: usage ",
            "kB, limit ",
            "kB, failcnt ",
            "CPU: ",
            "PID: ",
            "é",
        ];
        let mut assembler = OomReportAssembler::with_page_size(PAGE);
        assembler.push(
            &messages(
                0,
                "x invoked oom-killer: gfp_mask=0x0, order=0, oom_score_adj=0",
            )[0],
        );
        assembler.push(&messages(0, "[ pid ] uid tgid total_vm rss name")[0]);
        for seq in 1..20_000u64 {
            let message: String = (0..rng.random_range(0..12))
                .map(|_| pieces[rng.random_range(0..pieces.len())])
                .collect();
            let mut record = messages(seq, "x").remove(0);
            record.message = message;
            let _ = assembler.push(&record);
        }
    }
}
