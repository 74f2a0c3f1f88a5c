//! `oomscope doctor`: what this host allows the agent to see, and so which
//! OOM source it will use and what data will be missing.
//!
//! [`gather`] reads the facts (every read tolerant: an absent or unreadable
//! file is a finding), [`assess`] turns them into checks and a verdict. The
//! split lets the verdict logic be tested with synthetic facts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use procfs::FromRead;
use serde::Serialize;

use crate::ebpf::{parse_mark_victim_format, ExecHookStatus, MarkVictimLayout, FIELD_ABSENT};

use crate::ebpf::access::{can_load_bpf, CallOutcome, EbpfAccess};
pub use crate::ebpf::access::{
    has_cap, parse_cap_eff, CAP_BPF, CAP_PERFMON, CAP_SYSLOG, CAP_SYS_ADMIN, CAP_SYS_RESOURCE,
};

const CAP_NAMES: [(u32, &str); 5] = [
    (CAP_BPF, "CAP_BPF"),
    (CAP_PERFMON, "CAP_PERFMON"),
    (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
    (CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE"),
    (CAP_SYSLOG, "CAP_SYSLOG"),
];

const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
const LOCKDOWN_PATH: &str = "/sys/kernel/security/lockdown";
const UNPRIVILEGED_BPF_PATH: &str = "/proc/sys/kernel/unprivileged_bpf_disabled";
const PSI_MEMORY_PATH: &str = "/proc/pressure/memory";
const KMSG_PATH: &str = "/dev/kmsg";
const VMSTAT_PATH: &str = "/proc/vmstat";
const MOUNTS_PATH: &str = "/proc/self/mounts";
const MARK_VICTIM_FORMAT: &str = "events/oom/mark_victim/format";

/// How one check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Status {
    /// Available.
    #[serde(rename = "OK")]
    Ok,
    /// Not there: what depends on it does not work.
    #[serde(rename = "MISSING")]
    Missing,
    /// There, but restricted or incomplete.
    #[serde(rename = "LIMITED")]
    Limited,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Missing => "MISSING",
            Self::Limited => "LIMITED",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// Short key, stable for scripts (`kernel`, `btf`, `tracefs`, ...).
    pub name: &'static str,
    /// The outcome.
    pub status: Status,
    /// One line saying why.
    pub reason: String,
}

/// Kernel lockdown mode (`/sys/kernel/security/lockdown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lockdown {
    /// No restriction.
    None,
    /// Kernel modification blocked; tracepoint programs still load.
    Integrity,
    /// Also blocks reading kernel memory, which eBPF tracing relies on.
    Confidentiality,
}

/// The `oom/mark_victim` tracepoint as found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TracepointFact {
    /// The format file was read and parsed.
    Found {
        /// The format file.
        path: PathBuf,
        /// The record layout.
        layout: MarkVictimLayout,
    },
    /// Not found or not usable; why.
    Unavailable(String),
}

/// The result of trying to load the eBPF program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeFact {
    /// Not tried; why (e.g. not root, `--no-probe`).
    NotRun(String),
    /// Loaded and attached, then detached again.
    Loaded,
    /// The loader's error.
    Failed(String),
}

/// Where the cgroup hierarchies are and whether memory is controlled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupFact {
    /// Mount point of a cgroup v1 hierarchy with the memory controller.
    pub v1_memory: Option<PathBuf>,
    /// cgroup2 mount points, each with whether `memory` is in its
    /// `cgroup.controllers`.
    pub v2: Vec<(PathBuf, bool)>,
}

/// Everything doctor looks at, as read from the host.
#[derive(Clone, Debug)]
pub struct Facts {
    /// `uname -r` and machine, when uname works.
    pub kernel: Result<String, String>,
    /// Whether /sys/kernel/btf/vmlinux exists.
    pub btf: bool,
    /// tracefs mount points.
    pub tracefs_mounts: Vec<PathBuf>,
    /// Whether doctor itself mounted tracefs (while probing).
    pub tracefs_mounted_by_doctor: bool,
    /// Whether the kernel supports tracefs (/proc/filesystems).
    pub tracefs_supported: bool,
    /// The mark_victim tracepoint.
    pub tracepoint: TracepointFact,
    /// Effective capabilities, or why they could not be read.
    pub cap_eff: Result<u64, String>,
    /// Whether capabilities and seccomp let this process call `bpf` and
    /// `perf_event_open`.
    pub access: EbpfAccess,
    /// Lockdown mode; `Ok(None)` when the file does not exist.
    pub lockdown: Result<Option<Lockdown>, String>,
    /// kernel.unprivileged_bpf_disabled, when readable.
    pub unprivileged_bpf_disabled: Option<u32>,
    /// cgroup hierarchies.
    pub cgroup: CgroupFact,
    /// /proc/pressure/memory readable, or why not.
    pub psi_memory: Result<(), String>,
    /// /dev/kmsg opened for reading, or why not.
    pub kmsg: Result<(), String>,
    /// The `oom_kill` counter of /proc/vmstat, or why it is absent.
    pub vmstat_oom_kill: Result<u64, String>,
    /// The eBPF load attempt.
    pub probe: ProbeFact,
    /// The exec hook (command lines recorded at exec): what it records, or
    /// why it cannot.
    pub exec_hook: Result<String, String>,
}

/// The OOM source the agent will use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The `oom/mark_victim` tracepoint program.
    Ebpf,
    /// The kernel's OOM report on /dev/kmsg only.
    Kmsg,
    /// Neither: OOM kills cannot be reported.
    None,
}

/// Checks plus the verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// One entry per check, in a fixed order.
    pub checks: Vec<Check>,
    /// What the agent will use for OOM kills.
    pub source: Source,
    /// What full data needs and this host lacks (empty: nothing).
    pub missing_for_full_data: Vec<String>,
    /// 0 full data, 1 degraded, 2 no OOM kills at all.
    pub exit_code: u8,
}

/// Names of the capabilities doctor cares about: (name, present).
#[must_use]
pub fn decode_caps(mask: u64) -> Vec<(&'static str, bool)> {
    CAP_NAMES
        .iter()
        .map(|&(cap, name)| (name, has_cap(mask, cap)))
        .collect()
}

/// Parses `none [integrity] confidentiality`: the bracketed word is active.
pub fn parse_lockdown(text: &str) -> Result<Lockdown, String> {
    let active = text
        .split_whitespace()
        .find_map(|word| word.strip_prefix('[')?.strip_suffix(']'))
        .ok_or_else(|| format!("no [active] mode in {:?}", text.trim()))?;
    match active {
        "none" => Ok(Lockdown::None),
        "integrity" => Ok(Lockdown::Integrity),
        "confidentiality" => Ok(Lockdown::Confidentiality),
        other => Err(format!("unknown lockdown mode {other:?}")),
    }
}

/// The optional `mark_victim` fields this layout lacks.
#[must_use]
pub fn absent_fields(layout: &MarkVictimLayout) -> Vec<&'static str> {
    [
        ("comm", layout.comm),
        ("total_vm", layout.total_vm),
        ("anon_rss", layout.anon_rss),
        ("file_rss", layout.file_rss),
        ("shmem_rss", layout.shmem_rss),
        ("uid", layout.uid),
        ("pgtables", layout.pgtables),
        ("oom_score_adj", layout.oom_score_adj),
    ]
    .into_iter()
    .filter(|&(_, offset)| offset == FIELD_ABSENT)
    .map(|(name, _)| name)
    .collect()
}

/// (device, mount point, type, options) of each line of /proc/self/mounts.
fn mounts(text: &str) -> impl Iterator<Item = (&str, &str, &str)> {
    text.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        let _device = fields.next()?;
        let target = fields.next()?;
        let fstype = fields.next()?;
        let options = fields.next().unwrap_or("");
        Some((target, fstype, options))
    })
}

/// Mount points of tracefs in a /proc/self/mounts text.
#[must_use]
pub fn tracefs_mounts(mounts_text: &str) -> Vec<PathBuf> {
    mounts(mounts_text)
        .filter(|&(_, fstype, _)| fstype == "tracefs")
        .map(|(target, _, _)| PathBuf::from(unescape_mount(target)))
        .collect()
}

/// /proc/mounts escapes space, tab, newline and backslash as octal.
fn unescape_mount(path: &str) -> String {
    path.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The cgroup hierarchies in a /proc/self/mounts text; `controllers` reads
/// a cgroup2 mount's `cgroup.controllers`.
pub fn cgroup_fact(mounts_text: &str, controllers: impl Fn(&Path) -> Option<String>) -> CgroupFact {
    let mut fact = CgroupFact::default();
    for (target, fstype, options) in mounts(mounts_text) {
        let target = PathBuf::from(unescape_mount(target));
        match fstype {
            "cgroup" if options.split(',').any(|option| option == "memory") => {
                fact.v1_memory.get_or_insert(target);
            }
            "cgroup2" => {
                let memory = controllers(&target.join("cgroup.controllers"))
                    .is_some_and(|text| text.split_whitespace().any(|c| c == "memory"));
                fact.v2.push((target, memory));
            }
            _ => {}
        }
    }
    fact
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

fn kernel_release() -> Result<String, String> {
    // SAFETY: utsname is plain old data; uname fills it with NUL-terminated strings.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is a valid, writable utsname.
    if unsafe { libc::uname(&mut name) } != 0 {
        return Err(format!("uname: {}", std::io::Error::last_os_error()));
    }
    let field = |chars: &[libc::c_char]| {
        let bytes: Vec<u8> = chars
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c.to_ne_bytes()[0])
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Ok(format!(
        "{} {} ({})",
        field(&name.sysname),
        field(&name.release),
        field(&name.machine)
    ))
}

fn tracepoint_fact(mounts: &[PathBuf]) -> TracepointFact {
    if mounts.is_empty() {
        return TracepointFact::Unavailable(
            "tracefs is not mounted, so the tracepoint cannot be looked up".into(),
        );
    }
    let Some(path) = mounts
        .iter()
        .map(|dir| dir.join(MARK_VICTIM_FORMAT))
        .find(|path| path.exists())
    else {
        return TracepointFact::Unavailable(format!(
            "no {MARK_VICTIM_FORMAT} under {}: the kernel has no oom/mark_victim tracepoint",
            mounts
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => return TracepointFact::Unavailable(format!("{}: {e}", path.display())),
    };
    match parse_mark_victim_format(&text) {
        Ok(layout) => TracepointFact::Found { path, layout },
        Err(e) => TracepointFact::Unavailable(format!("{}: {e}", path.display())),
    }
}

/// `oom_kill` from /proc/vmstat, parsed by procfs (its map of every counter).
fn vmstat_oom_kill() -> Result<u64, String> {
    let text = read(VMSTAT_PATH)?;
    let vmstat =
        procfs::VmStat::from_read(text.as_bytes()).map_err(|e| format!("{VMSTAT_PATH}: {e}"))?;
    let value = *vmstat
        .0
        .get("oom_kill")
        .ok_or_else(|| format!("no oom_kill line in {VMSTAT_PATH} (kernel before 4.13)"))?;
    u64::try_from(value).map_err(|e| format!("{VMSTAT_PATH} oom_kill: {e}"))
}

/// /proc/pressure/memory readable and parsed by procfs (its "some" and
/// "full" records).
fn psi_memory() -> Result<(), String> {
    let text = read(PSI_MEMORY_PATH)?;
    procfs::MemoryPressure::from_read(text.as_bytes())
        .map(drop)
        .map_err(|e| format!("{PSI_MEMORY_PATH}: {e}"))
}

/// The load attempt, and the exec hook's status when the load succeeded.
fn probe_ebpf() -> (ProbeFact, Option<ExecHookStatus>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            return (
                ProbeFact::Failed(format!("cannot start a tokio runtime: {e}")),
                None,
            )
        }
    };
    // Dropping the probe detaches the programs again.
    runtime.block_on(async {
        match crate::ebpf::load_mark_victim() {
            Ok(probe) => (ProbeFact::Loaded, Some(probe.exec_hooks().clone())),
            Err(e) => (ProbeFact::Failed(format!("{e:#}")), None),
        }
    })
}

/// The exec hook as the probe found it, else whether its tracepoint is there.
fn exec_hook_fact(probed: Option<ExecHookStatus>) -> Result<String, String> {
    match probed {
        Some(status @ ExecHookStatus::Attached { .. }) => Ok(format!("{status}, then detached")),
        Some(ExecHookStatus::Unavailable(why)) => Err(why),
        None => crate::ebpf::exec_layout().map(|_| {
            format!(
                "syscalls/sys_enter_execve found ({}; not attached: no probe)",
                crate::ebpf::loader::EXECVE_FORMAT
            )
        }),
    }
}

/// Reads the facts of this host. With `probe`, first tries to load and
/// attach the eBPF program (which mounts tracefs when needed, as the agent
/// does). Must not be called from within an async runtime.
#[must_use]
pub fn gather(probe: bool, no_probe_reason: &str) -> Facts {
    let mounts_before = read(MOUNTS_PATH).unwrap_or_default();
    let tracefs_before = tracefs_mounts(&mounts_before);
    let (probe, exec_hook) = if probe {
        probe_ebpf()
    } else {
        (ProbeFact::NotRun(no_probe_reason.to_owned()), None)
    };
    let mounts_text = read(MOUNTS_PATH).unwrap_or_default();
    let tracefs_now = tracefs_mounts(&mounts_text);
    let lockdown = match std::fs::read_to_string(LOCKDOWN_PATH) {
        Ok(text) => parse_lockdown(&text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{LOCKDOWN_PATH}: {e}")),
    };
    Facts {
        kernel: kernel_release(),
        btf: Path::new(BTF_PATH).exists(),
        tracefs_mounted_by_doctor: tracefs_before.is_empty() && !tracefs_now.is_empty(),
        tracefs_supported: read("/proc/filesystems")
            .is_ok_and(|text| text.split_whitespace().any(|word| word == "tracefs")),
        tracepoint: tracepoint_fact(&tracefs_now),
        tracefs_mounts: tracefs_now,
        cap_eff: read("/proc/self/status").and_then(|text| parse_cap_eff(&text)),
        access: EbpfAccess::probe(),
        lockdown,
        unprivileged_bpf_disabled: read(UNPRIVILEGED_BPF_PATH)
            .ok()
            .and_then(|text| text.trim().parse().ok()),
        cgroup: cgroup_fact(&mounts_text, |path| std::fs::read_to_string(path).ok()),
        psi_memory: psi_memory(),
        kmsg: std::fs::File::open(KMSG_PATH)
            .map(drop)
            .map_err(|e| format!("opening {KMSG_PATH}: {e}")),
        vmstat_oom_kill: vmstat_oom_kill(),
        probe,
        exec_hook: exec_hook_fact(exec_hook),
    }
}

/// Judges the facts: one check per item, the source the agent will use, and
/// what is missing for full data.
#[must_use]
pub fn assess(facts: &Facts) -> Report {
    let mut findings = Findings::default();
    let caps = facts.cap_eff.as_ref().ok().copied();
    let caps_allow_bpf = caps.is_some_and(can_load_bpf);
    let can_bpf = caps_allow_bpf && facts.access.denied_by_seccomp().is_empty();
    let tracefs_ok = !facts.tracefs_mounts.is_empty() || facts.tracefs_supported;

    findings.check_kernel(&facts.kernel);
    findings.check_btf(facts.btf);
    findings.check_tracefs(facts);
    let tracepoint_absent = findings.check_tracepoint(facts, tracefs_ok);
    findings.check_capabilities(&facts.cap_eff);
    findings.check_seccomp(&facts.access);
    findings.check_lockdown(&facts.lockdown);
    findings.check_unprivileged_bpf(facts.unprivileged_bpf_disabled, caps_allow_bpf);
    findings.check_cgroup(&facts.cgroup);
    findings.check_psi(&facts.psi_memory);
    findings.check_kmsg(&facts.kmsg, caps);
    findings.check_vmstat_oom_kill(&facts.vmstat_oom_kill);
    let ebpf_likely = tracepoint_absent.is_some() && tracefs_ok && can_bpf;
    let ebpf_ok = findings.check_ebpf_probe(&facts.probe, ebpf_likely);
    findings.check_exec_hook(&facts.exec_hook, ebpf_ok);
    findings.verdict(ebpf_ok, tracepoint_absent, facts.kmsg.is_ok())
}

/// What [`assess`] collects: the checks, in report order, and what is
/// missing for full data.
#[derive(Default)]
struct Findings {
    checks: Vec<Check>,
    missing: Vec<String>,
}

impl Findings {
    fn check(&mut self, name: &'static str, status: Status, reason: String) {
        self.checks.push(Check {
            name,
            status,
            reason,
        });
    }

    fn check_kernel(&mut self, kernel: &Result<String, String>) {
        match kernel {
            Ok(release) => self.check("kernel", Status::Ok, release.clone()),
            Err(e) => self.check("kernel", Status::Missing, e.clone()),
        }
    }

    fn check_btf(&mut self, btf: bool) {
        if btf {
            self.check(
                "btf",
                Status::Ok,
                format!("{BTF_PATH} present: the exec hook records each process's parent pid and start time (task_struct offsets from it)"),
            );
        } else {
            self.check(
                "btf",
                Status::Limited,
                format!(
                    "no {BTF_PATH}: not needed by the tracepoint program, but the exec hook records no parent pid or start time (a victim gone from /proc gets neither) and BTF-based hooks are unavailable"
                ),
            );
        }
    }

    fn check_tracefs(&mut self, facts: &Facts) {
        let mounts = facts
            .tracefs_mounts
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if facts.tracefs_mounted_by_doctor {
            self.check(
                "tracefs",
                Status::Ok,
                format!(
                    "mounted at {mounts} (it was not mounted; doctor mounted it, as the agent does)"
                ),
            );
        } else if !facts.tracefs_mounts.is_empty() {
            self.check("tracefs", Status::Ok, format!("mounted at {mounts}"));
        } else if facts.tracefs_supported {
            self.check(
                "tracefs",
                Status::Ok,
                "not mounted; the kernel supports it and the agent mounts it at /sys/kernel/tracing \
                 (needs CAP_SYS_ADMIN)"
                    .into(),
            );
        } else {
            self.check(
                "tracefs",
                Status::Missing,
                "not mounted and not in /proc/filesystems: the kernel has no tracefs".into(),
            );
        }
    }

    /// The tracepoint's absent fields, when it was found.
    fn check_tracepoint(&mut self, facts: &Facts, tracefs_ok: bool) -> Option<Vec<&'static str>> {
        match &facts.tracepoint {
            TracepointFact::Found { path, layout } => {
                let absent = absent_fields(layout);
                if absent.is_empty() {
                    self.check(
                        "tracepoint",
                        Status::Ok,
                        format!(
                            "oom/mark_victim found ({}); all fields present",
                            path.display()
                        ),
                    );
                } else {
                    self.check(
                        "tracepoint",
                        Status::Limited,
                        format!(
                            "oom/mark_victim found ({}); absent fields: {}",
                            path.display(),
                            absent.join(", ")
                        ),
                    );
                }
                Some(absent)
            }
            TracepointFact::Unavailable(why) => {
                let status = if tracefs_ok && facts.tracefs_mounts.is_empty() {
                    Status::Limited
                } else {
                    Status::Missing
                };
                self.check("tracepoint", status, why.clone());
                None
            }
        }
    }

    fn check_capabilities(&mut self, cap_eff: &Result<u64, String>) {
        let mask = match cap_eff {
            Ok(mask) => mask,
            Err(e) => {
                self.check(
                    "capabilities",
                    Status::Missing,
                    format!("cannot read CapEff: {e}"),
                );
                return;
            }
        };
        let decoded = decode_caps(*mask);
        let lacking: Vec<&str> = decoded
            .iter()
            .filter(|(_, present)| !present)
            .map(|(name, _)| *name)
            .collect();
        let listing = decoded
            .iter()
            .map(|(name, present)| format!("{name}{}", if *present { "+" } else { "-" }))
            .collect::<Vec<_>>()
            .join(" ");
        if lacking.is_empty() {
            self.check(
                "capabilities",
                Status::Ok,
                format!("CapEff={mask:016x}: {listing}"),
            );
        } else {
            let mut reason = format!("CapEff={mask:016x}: {listing}");
            if lacking.contains(&"CAP_SYS_RESOURCE") {
                reason.push_str(
                    "; without CAP_SYS_RESOURCE the agent cannot lower its own oom_score_adj",
                );
            }
            self.check("capabilities", Status::Limited, reason);
        }
    }

    fn check_seccomp(&mut self, access: &EbpfAccess) {
        let mode = match access.seccomp {
            Some(0) => "no seccomp filter".to_string(),
            Some(2) => "a seccomp filter is installed".to_string(),
            Some(n) => format!("seccomp mode {n}"),
            None => "seccomp mode unknown".to_string(),
        };
        let denied = access.denied_by_seccomp();
        if denied.is_empty() {
            let perf = match access.perf_event_open {
                CallOutcome::Refused(libc::EACCES) => {
                    "; perf_event_open is refused by kernel.perf_event_paranoid (EACCES)"
                }
                _ => "",
            };
            self.check(
                "seccomp",
                Status::Ok,
                format!("{mode}; bpf and perf_event_open reach the kernel{perf}"),
            );
        } else {
            let calls = denied
                .iter()
                .map(|(call, errno)| {
                    format!("{call} ({})", crate::ebpf::access::errno_name(*errno))
                })
                .collect::<Vec<_>>()
                .join(", ");
            self.check(
                "seccomp",
                Status::Missing,
                format!(
                    "{mode} and it denies {calls}: eBPF cannot be used; run with a profile \
                     that allows them (deploy/kubernetes/seccomp/oomscope.json) or \
                     CAP_SYS_ADMIN under a container runtime's default profile"
                ),
            );
            self.missing
                .push("a seccomp profile that allows bpf and perf_event_open".into());
        }
    }

    fn check_lockdown(&mut self, lockdown: &Result<Option<Lockdown>, String>) {
        match lockdown {
            Ok(None) => self.check(
                "lockdown",
                Status::Ok,
                format!("no {LOCKDOWN_PATH} (securityfs not mounted or no lockdown LSM)"),
            ),
            Ok(Some(Lockdown::None)) => self.check("lockdown", Status::Ok, "none".into()),
            Ok(Some(Lockdown::Integrity)) => self.check(
                "lockdown",
                Status::Ok,
                "integrity: tracepoint programs load; fentry/kprobe-style hooks may be refused"
                    .into(),
            ),
            Ok(Some(Lockdown::Confidentiality)) => self.check(
                "lockdown",
                Status::Limited,
                "confidentiality: eBPF reads of kernel memory are refused; the program may fail to load"
                    .into(),
            ),
            Err(e) => self.check("lockdown", Status::Limited, e.clone()),
        }
    }

    fn check_unprivileged_bpf(&mut self, disabled: Option<u32>, can_bpf: bool) {
        let Some(value) = disabled else {
            self.check(
                "unprivileged_bpf_disabled",
                Status::Ok,
                format!("{UNPRIVILEGED_BPF_PATH} not readable (no such sysctl on this kernel)"),
            );
            return;
        };
        let meaning = if value == 0 {
            "unprivileged BPF allowed"
        } else {
            "unprivileged BPF disabled"
        };
        if can_bpf || value == 0 {
            self.check(
                "unprivileged_bpf_disabled",
                Status::Ok,
                format!("{value}: {meaning}; the agent loads eBPF with its own capabilities"),
            );
        } else {
            self.check(
                "unprivileged_bpf_disabled",
                Status::Limited,
                format!("{value}: {meaning}, and this process lacks CAP_BPF/CAP_SYS_ADMIN"),
            );
        }
    }

    fn check_cgroup(&mut self, cgroup: &CgroupFact) {
        let v2_memory = cgroup.v2.iter().find(|(_, memory)| *memory);
        let mut hierarchies = Vec::new();
        if let Some(path) = &cgroup.v1_memory {
            hierarchies.push(format!("v1 memory controller at {}", path.display()));
        }
        for (path, memory) in &cgroup.v2 {
            hierarchies.push(format!(
                "cgroup2 at {} {} memory",
                path.display(),
                if *memory { "with" } else { "without" }
            ));
        }
        if cgroup.v1_memory.is_some() || v2_memory.is_some() {
            self.check("cgroup", Status::Ok, hierarchies.join("; "));
        } else {
            self.missing
                .push("a memory cgroup controller (per-cgroup usage and limits)".to_owned());
            let found = if hierarchies.is_empty() {
                "no cgroup mounted".to_owned()
            } else {
                hierarchies.join("; ")
            };
            self.check(
                "cgroup",
                Status::Limited,
                format!("{found}: no memory controller"),
            );
        }
    }

    fn check_psi(&mut self, psi_memory: &Result<(), String>) {
        match psi_memory {
            Ok(()) => self.check("psi", Status::Ok, format!("{PSI_MEMORY_PATH} readable")),
            Err(e) => {
                self.missing
                    .push("PSI memory pressure (CONFIG_PSI, psi=1)".to_owned());
                self.check(
                    "psi",
                    Status::Limited,
                    format!("{e}: no memory pressure metrics"),
                );
            }
        }
    }

    fn check_kmsg(&mut self, kmsg: &Result<(), String>, caps: Option<u64>) {
        match kmsg {
            Ok(()) => self.check("kmsg", Status::Ok, format!("{KMSG_PATH} readable")),
            Err(e) => {
                let mut reason = e.clone();
                if caps.is_some_and(|mask| !has_cap(mask, CAP_SYSLOG)) {
                    reason.push_str(" (CAP_SYSLOG is needed when kernel.dmesg_restrict=1)");
                }
                self.check("kmsg", Status::Missing, reason);
            }
        }
    }

    fn check_vmstat_oom_kill(&mut self, vmstat_oom_kill: &Result<u64, String>) {
        match vmstat_oom_kill {
            Ok(count) => self.check(
                "vmstat_oom_kill",
                Status::Ok,
                format!("oom_kill = {count} since boot"),
            ),
            Err(e) => {
                self.missing
                    .push("/proc/vmstat oom_kill (the count of missed kills)".to_owned());
                self.check("vmstat_oom_kill", Status::Limited, e.clone());
            }
        }
    }

    /// Whether the eBPF program works (or, not probed, `likely` does: the
    /// tracepoint and the capabilities to use it are there).
    fn check_ebpf_probe(&mut self, probe: &ProbeFact, likely: bool) -> bool {
        match probe {
            ProbeFact::Loaded => {
                self.check(
                    "ebpf_probe",
                    Status::Ok,
                    "loaded and attached oom/mark_victim, then detached".into(),
                );
                true
            }
            ProbeFact::Failed(e) => {
                self.check("ebpf_probe", Status::Missing, e.clone());
                false
            }
            ProbeFact::NotRun(why) => {
                self.check(
                    "ebpf_probe",
                    if likely { Status::Ok } else { Status::Limited },
                    format!(
                        "not tried ({why}); {}",
                        if likely {
                            "the tracepoint and capabilities are there"
                        } else {
                            "the tracepoint or the capabilities to use it are missing"
                        }
                    ),
                );
                likely
            }
        }
    }

    /// The exec hook: without it, a victim that has exited its memory before
    /// /proc is read (a small process dies within microseconds) has no
    /// command line. Counted as missing only when eBPF itself works.
    fn check_exec_hook(&mut self, exec_hook: &Result<String, String>, ebpf_ok: bool) {
        match exec_hook {
            Ok(what) => self.check(
                "exec_hook",
                Status::Ok,
                format!(
                    "{what}: the command line of a process started after the agent survives its exit"
                ),
            ),
            Err(why) => {
                self.check(
                    "exec_hook",
                    Status::Limited,
                    format!(
                        "{why}; a victim that exits before /proc is read gets no command line"
                    ),
                );
                if ebpf_ok {
                    self.missing.push(
                        "the exec hook (syscalls/sys_enter_execve): command lines of victims that exit fast"
                            .to_owned(),
                    );
                }
            }
        }
    }

    /// The source the agent will use and the exit code; what the OOM source
    /// lacks goes first among the missing items.
    fn verdict(
        mut self,
        ebpf_ok: bool,
        tracepoint_absent: Option<Vec<&str>>,
        kmsg_ok: bool,
    ) -> Report {
        if !ebpf_ok {
            self.missing.insert(
                0,
                "the eBPF tracepoint program (kills arrive later, from the kernel log only)"
                    .to_owned(),
            );
        } else if let Some(absent) = tracepoint_absent.filter(|absent| !absent.is_empty()) {
            self.missing.insert(
                0,
                format!(
                    "tracepoint fields {} (taken from /dev/kmsg or /proc instead)",
                    absent.join(", ")
                ),
            );
        }
        if !kmsg_ok {
            self.missing
                .push("/dev/kmsg (trigger, constraint and memcg of a kill)".to_owned());
        }
        let source = if ebpf_ok {
            Source::Ebpf
        } else if kmsg_ok {
            Source::Kmsg
        } else {
            Source::None
        };
        let exit_code = match source {
            Source::None => 2,
            _ if self.missing.is_empty() => 0,
            _ => 1,
        };
        Report {
            checks: self.checks,
            source,
            missing_for_full_data: self.missing,
            exit_code,
        }
    }
}

/// The report for people.
#[must_use]
pub fn render_text(report: &Report) -> String {
    let mut text = String::from("oomscope doctor\n");
    for check in &report.checks {
        let _ = writeln!(
            text,
            "  {:<8} {:<26} {}",
            check.status.label(),
            check.name,
            check.reason
        );
    }
    let source = match report.source {
        Source::Ebpf => {
            "the eBPF tracepoint oom/mark_victim, with /dev/kmsg for the kernel's OOM report"
        }
        Source::Kmsg => "the kmsg fallback (the kernel's OOM report on /dev/kmsg)",
        Source::None => "nothing: this host gives no way to see OOM kills",
    };
    let _ = writeln!(text, "\nOOM kills: {source}");
    if report.missing_for_full_data.is_empty() {
        text.push_str("Full data: yes\n");
    } else {
        text.push_str("Missing for full data:\n");
        for item in &report.missing_for_full_data {
            let _ = writeln!(text, "  - {item}");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_layout() -> MarkVictimLayout {
        MarkVictimLayout {
            pid: 8,
            comm: 12,
            total_vm: 16,
            anon_rss: 24,
            file_rss: 32,
            shmem_rss: 40,
            uid: 48,
            pgtables: 56,
            oom_score_adj: 64,
            _pad0: 0,
        }
    }

    /// This project's CI machine, as root.
    fn healthy() -> Facts {
        Facts {
            kernel: Ok("Linux 6.18.0 (x86_64)".into()),
            btf: true,
            tracefs_mounts: vec!["/sys/kernel/tracing".into()],
            tracefs_mounted_by_doctor: false,
            tracefs_supported: true,
            tracepoint: TracepointFact::Found {
                path: "/sys/kernel/tracing/events/oom/mark_victim/format".into(),
                layout: full_layout(),
            },
            cap_eff: Ok(0x1ff_ffff_ffff),
            access: EbpfAccess {
                cap_eff: Some(0x1ff_ffff_ffff),
                seccomp: Some(0),
                unprivileged_bpf_disabled: Some(2),
                bpf: CallOutcome::Reached,
                perf_event_open: CallOutcome::Reached,
            },
            lockdown: Ok(Some(Lockdown::Integrity)),
            unprivileged_bpf_disabled: Some(2),
            cgroup: CgroupFact {
                v1_memory: Some("/sys/fs/cgroup/memory".into()),
                v2: vec![("/sys/fs/cgroup/unified".into(), false)],
            },
            psi_memory: Ok(()),
            kmsg: Ok(()),
            vmstat_oom_kill: Ok(3),
            probe: ProbeFact::Loaded,
            exec_hook: Ok("syscalls/sys_enter_execve and sys_enter_execveat attached".into()),
        }
    }

    fn status_of(report: &Report, name: &str) -> Status {
        report
            .checks
            .iter()
            .find(|check| check.name == name)
            .unwrap_or_else(|| panic!("no check {name}"))
            .status
    }

    #[test]
    fn decodes_capabilities() {
        let status = "Name:\tcat\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n";
        let mask = parse_cap_eff(status).expect("CapEff");
        assert_eq!(mask, 0x1ff_feff_ffff);
        let decoded = decode_caps(mask);
        assert_eq!(
            decoded,
            [
                ("CAP_BPF", true),
                ("CAP_PERFMON", true),
                ("CAP_SYS_ADMIN", true),
                ("CAP_SYS_RESOURCE", false),
                ("CAP_SYSLOG", true),
            ]
        );
        assert!(!has_cap(u64::MAX, 64));
        assert!(parse_cap_eff("CapEff:\tzz\n").is_err());
        assert!(parse_cap_eff("Name:\tcat\n").is_err());
    }

    #[test]
    fn parses_lockdown() {
        assert_eq!(
            parse_lockdown("none [integrity] confidentiality\n"),
            Ok(Lockdown::Integrity)
        );
        assert_eq!(
            parse_lockdown("[none] integrity confidentiality"),
            Ok(Lockdown::None)
        );
        assert_eq!(
            parse_lockdown("none integrity [confidentiality]"),
            Ok(Lockdown::Confidentiality)
        );
        assert!(parse_lockdown("none integrity").is_err());
        assert!(parse_lockdown("[paranoid]").is_err());
        assert!(parse_lockdown("").is_err());
    }

    #[test]
    fn reads_mounts() {
        let text = "nodev /sys/kernel/tracing tracefs rw 0 0\n\
                    cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                    cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n\
                    cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n\
                    cgroup2 /mnt/my\\040cg cgroup2 rw 0 0\n\
                    garbage\n";
        assert_eq!(tracefs_mounts(text), [PathBuf::from("/sys/kernel/tracing")]);
        let fact = cgroup_fact(text, |path| {
            (path == Path::new("/mnt/my cg/cgroup.controllers"))
                .then(|| "cpu io memory pids\n".into())
        });
        assert_eq!(fact.v1_memory, Some("/sys/fs/cgroup/memory".into()));
        assert_eq!(
            fact.v2,
            [
                ("/sys/fs/cgroup/unified".into(), false),
                ("/mnt/my cg".into(), true)
            ]
        );
    }

    #[test]
    fn a_container_default_seccomp_profile_is_named() {
        // podman's default profile, CAP_BPF and CAP_PERFMON added but not
        // CAP_SYS_ADMIN: the load fails and the report says it is seccomp.
        let caps = 1 << CAP_BPF | 1 << CAP_PERFMON | 1 << CAP_SYSLOG;
        let mut facts = healthy();
        facts.cap_eff = Ok(caps);
        facts.access.cap_eff = Some(caps);
        facts.access.seccomp = Some(2);
        facts.access.bpf = CallOutcome::Refused(libc::EPERM);
        facts.access.perf_event_open = CallOutcome::Refused(libc::EPERM);
        facts.probe = ProbeFact::Failed("failed to create map DROPS".into());
        let report = assess(&facts);
        assert_eq!(status_of(&report, "seccomp"), Status::Missing);
        let seccomp = report
            .checks
            .iter()
            .find(|c| c.name == "seccomp")
            .map(|c| c.reason.clone())
            .unwrap_or_default();
        assert!(
            seccomp.contains("bpf (EPERM), perf_event_open (EPERM)"),
            "{seccomp}"
        );
        assert_eq!(report.source, Source::Kmsg);
        assert!(
            report
                .missing_for_full_data
                .iter()
                .any(|m| m.contains("seccomp profile")),
            "{:?}",
            report.missing_for_full_data
        );
    }

    #[test]
    fn healthy_host_has_full_data() {
        let report = assess(&healthy());
        assert_eq!(report.source, Source::Ebpf);
        assert!(
            report.missing_for_full_data.is_empty(),
            "{:?}",
            report.missing_for_full_data
        );
        assert_eq!(report.exit_code, 0);
        assert!(
            report.checks.iter().all(|c| c.status == Status::Ok),
            "{report:#?}"
        );
    }

    #[test]
    fn failed_probe_falls_back_to_kmsg() {
        let mut facts = healthy();
        facts.probe = ProbeFact::Failed("loading program: EPERM".into());
        let report = assess(&facts);
        assert_eq!(report.source, Source::Kmsg);
        assert_eq!(report.exit_code, 1);
        assert_eq!(status_of(&report, "ebpf_probe"), Status::Missing);
        assert!(report.missing_for_full_data[0].contains("eBPF"));
    }

    /// A kernel without CONFIG_FTRACE_SYSCALLS: kills are still seen by
    /// eBPF; the exec hook's line says what is lost.
    #[test]
    fn without_syscall_tracepoints_command_lines_may_be_missing() {
        let mut facts = healthy();
        facts.exec_hook = Err("the kernel has no syscalls/sys_enter_execve tracepoint".into());
        let report = assess(&facts);
        assert_eq!(report.source, Source::Ebpf);
        assert_eq!(report.exit_code, 1);
        assert_eq!(status_of(&report, "exec_hook"), Status::Limited);
        assert!(report.missing_for_full_data[0].contains("exec hook"));
        // Without eBPF the larger loss is the one named.
        facts.probe = ProbeFact::Failed("loading program: EPERM".into());
        let report = assess(&facts);
        assert!(
            !report
                .missing_for_full_data
                .iter()
                .any(|m| m.contains("exec hook")),
            "{:?}",
            report.missing_for_full_data
        );
    }

    #[test]
    fn nothing_to_read_kills_from_is_exit_2() {
        let mut facts = healthy();
        facts.probe = ProbeFact::Failed("no tracepoint".into());
        facts.kmsg = Err("opening /dev/kmsg: Permission denied".into());
        facts.cap_eff = Ok(0);
        let report = assess(&facts);
        assert_eq!(report.source, Source::None);
        assert_eq!(report.exit_code, 2);
        let kmsg = report
            .checks
            .iter()
            .find(|c| c.name == "kmsg")
            .expect("kmsg check");
        assert!(kmsg.reason.contains("CAP_SYSLOG"), "{}", kmsg.reason);
    }

    #[test]
    fn old_kernel_record_is_degraded() {
        let mut facts = healthy();
        facts.tracepoint = TracepointFact::Found {
            path: "/sys/kernel/tracing/events/oom/mark_victim/format".into(),
            layout: MarkVictimLayout {
                pid: 8,
                ..MarkVictimLayout::ABSENT
            },
        };
        let report = assess(&facts);
        assert_eq!(status_of(&report, "tracepoint"), Status::Limited);
        assert_eq!(report.source, Source::Ebpf);
        assert_eq!(report.exit_code, 1);
        assert!(
            report.missing_for_full_data[0].contains("comm, total_vm"),
            "{:?}",
            report.missing_for_full_data
        );
    }

    #[test]
    fn unprobed_unprivileged_user_gets_kmsg_at_best() {
        let mut facts = healthy();
        facts.probe = ProbeFact::NotRun("not root".into());
        facts.cap_eff = Ok(0);
        let report = assess(&facts);
        assert_eq!(report.source, Source::Kmsg);
        assert_eq!(status_of(&report, "capabilities"), Status::Limited);
        assert_eq!(
            status_of(&report, "unprivileged_bpf_disabled"),
            Status::Limited
        );

        // With the capabilities, an unprobed host with the tracepoint counts as eBPF.
        facts.cap_eff =
            Ok(1 << CAP_BPF | 1 << CAP_PERFMON | 1 << CAP_SYSLOG | 1 << CAP_SYS_RESOURCE);
        assert_eq!(assess(&facts).source, Source::Ebpf);
    }

    #[test]
    fn missing_extras_degrade_but_keep_the_source() {
        let mut facts = healthy();
        facts.psi_memory = Err("/proc/pressure/memory: No such file or directory".into());
        facts.vmstat_oom_kill = Err("no oom_kill line".into());
        facts.cgroup = CgroupFact::default();
        facts.btf = false;
        facts.lockdown = Err("/sys/kernel/security/lockdown: Permission denied".into());
        let report = assess(&facts);
        assert_eq!(report.source, Source::Ebpf);
        assert_eq!(report.exit_code, 1);
        assert_eq!(
            report.missing_for_full_data.len(),
            3,
            "{:?}",
            report.missing_for_full_data
        );
        for name in ["psi", "vmstat_oom_kill", "cgroup", "btf", "lockdown"] {
            assert_eq!(status_of(&report, name), Status::Limited, "{name}");
        }
        let text = render_text(&report);
        assert!(
            text.contains("Missing for full data:") && text.contains("PSI"),
            "{text}"
        );
    }

    #[test]
    fn json_has_stable_keys() {
        let value = serde_json::to_value(assess(&healthy())).expect("JSON");
        assert_eq!(value["source"], "ebpf");
        assert_eq!(value["exit_code"], 0);
        assert_eq!(value["checks"][0]["name"], "kernel");
        assert_eq!(value["checks"][0]["status"], "OK");
    }
}
