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

use crate::ebpf::scope_hook::ScopeHookStatus;
use crate::ebpf::{parse_mark_victim_format, ExecHookStatus, MarkVictimLayout};

use crate::ebpf::access::{can_load_bpf, CallOutcome, EbpfAccess};
pub use crate::ebpf::access::{
    has_cap, parse_cap_eff, CAP_BPF, CAP_DAC_READ_SEARCH, CAP_PERFMON, CAP_SYSLOG, CAP_SYS_ADMIN,
    CAP_SYS_RESOURCE,
};
use crate::ebpf::loader::TRACEFS_DIRS;
use crate::ebpf::tracefs;
use crate::receivers::memory::cgroup::{find_memory_hierarchy, Version as MemoryVersion};

const CAP_NAMES: [(u32, &str); 5] = [
    (CAP_BPF, "CAP_BPF"),
    (CAP_PERFMON, "CAP_PERFMON"),
    (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
    (CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE"),
    (CAP_SYSLOG, "CAP_SYSLOG"),
];

const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
const LOCKDOWN_PATH: &str = "/sys/kernel/security/lockdown";
/// Lockdown is only ever raised while the kernel runs: what lowers it.
const LOCKDOWN_FIX: &str = "lockdown cannot be lowered while the kernel runs: boot with \
    `lockdown=integrity` (tracepoints) or without lockdown (every hook): drop `lockdown=` from \
    the kernel command line, and where Secure Boot enforces it (distribution kernels with \
    CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT) disable Secure Boot or `mokutil --disable-validation`; \
    meanwhile the agent reads the kernel log";
const UNPRIVILEGED_BPF_PATH: &str = "/proc/sys/kernel/unprivileged_bpf_disabled";
const PSI_MEMORY_PATH: &str = "/proc/pressure/memory";
const KMSG_PATH: &str = "/dev/kmsg";
const VMSTAT_PATH: &str = "/proc/vmstat";
const MOUNTS_PATH: &str = "/proc/self/mounts";
const MOUNTINFO_PATH: &str = "/proc/self/mountinfo";
const PROC_CGROUPS_PATH: &str = "/proc/cgroups";
const CGROUP_NS_PATH: &str = "/proc/self/ns/cgroup";
/// The initial cgroup namespace's inode (PROC_CGROUP_INIT_INO, fixed in the
/// kernel): any other means a namespace of its own, as in a container.
const INITIAL_CGROUP_NS: &str = "cgroup:[4026531835]";
/// Where cgroup file systems are mounted, and where the memory receiver
/// looks by default.
const CGROUP_FS: &str = "/sys/fs/cgroup";
/// Where this project's container configs (config/container.yaml,
/// deploy/kubernetes) have the host's cgroup file systems.
const HOST_CGROUP_FS: &str = "/host/sys/fs/cgroup";
/// cgroup v1 controllers, to tell them from other mount options.
const V1_CONTROLLERS: [&str; 15] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];
/// The kernel command line that gives every controller to cgroup v2.
const UNIFIED_BOOT: &str = "systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all";
const MARK_VICTIM_FORMAT: &str = "events/oom/mark_victim/format";
const MARK_VICTIM_ID: &str = "events/oom/mark_victim/id";

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
    /// More lines: what was found (e.g. which controllers are where).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// The exact fix, when the check is not OK and there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
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

/// A cgroup version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CgroupVersion {
    /// cgroup v1: one hierarchy per set of controllers.
    #[serde(rename = "v1")]
    V1,
    /// cgroup v2: the unified hierarchy.
    #[serde(rename = "v2")]
    V2,
}

impl From<MemoryVersion> for CgroupVersion {
    fn from(version: MemoryVersion) -> Self {
        match version {
            MemoryVersion::V1 => Self::V1,
            MemoryVersion::V2 => Self::V2,
        }
    }
}

/// How the cgroup hierarchies are laid out under /sys/fs/cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupLayout {
    /// v1 hierarchies only.
    V1,
    /// The unified hierarchy only (named v1 hierarchies without controllers
    /// aside).
    V2,
    /// v1 hierarchies with controllers plus a cgroup2 mount (typically
    /// /sys/fs/cgroup/unified).
    Hybrid,
    /// No cgroup file system mounted.
    None,
}

impl CgroupLayout {
    fn label(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
            Self::Hybrid => "hybrid",
            Self::None => "none",
        }
    }
}

/// One mounted cgroup hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CgroupHierarchy {
    /// Its mount point.
    pub mount: PathBuf,
    /// v1 or v2.
    pub version: CgroupVersion,
    /// v1: the controllers in its mount options (a named hierarchy as
    /// `name=...`); v2: the root's `cgroup.controllers`; `None` when that
    /// file is unreadable.
    pub controllers: Option<Vec<String>>,
    /// v2: the root's `cgroup.subtree_control` (the controllers child
    /// cgroups get); `None` for v1 or when unreadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subtree_control: Option<Vec<String>>,
}

impl CgroupHierarchy {
    fn has(&self, controller: &str) -> bool {
        self.controllers
            .as_ref()
            .is_some_and(|list| list.iter().any(|c| c == controller))
    }

    fn describe(&self) -> String {
        let list = |names: &Option<Vec<String>>| match names {
            None => "unreadable".to_owned(),
            Some(names) if names.is_empty() => "none".to_owned(),
            Some(names) => names.join(" "),
        };
        match self.version {
            CgroupVersion::V1 => {
                format!("v1 {}: {}", self.mount.display(), list(&self.controllers))
            }
            CgroupVersion::V2 => format!(
                "cgroup2 {}: cgroup.controllers {}; cgroup.subtree_control {}",
                self.mount.display(),
                list(&self.controllers),
                list(&self.subtree_control)
            ),
        }
    }
}

/// Where the cgroup hierarchies are and what the memory receiver will read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupFact {
    /// The hierarchies at /sys/fs/cgroup and directly under it.
    pub hierarchies: Vec<CgroupHierarchy>,
    /// cgroup hierarchies mounted elsewhere (not where the memory receiver
    /// looks).
    pub elsewhere: Vec<CgroupHierarchy>,
    /// What the memory receiver finds under /sys/fs/cgroup (its own search).
    pub memory_reader: Option<(PathBuf, CgroupVersion)>,
    /// The `memory` line of /proc/cgroups: (hierarchy id, enabled); `None`
    /// when the kernel has no memory controller (or no /proc/cgroups).
    pub proc_cgroups_memory: Option<(u32, bool)>,
    /// Why /sys/fs/cgroup shows only this container's own cgroup, if it does.
    pub container_view: Option<String>,
    /// In a container: what the memory receiver finds under the host's
    /// cgroup file system at /host/sys/fs/cgroup (`None`: nothing there).
    pub host_memory_reader: Option<(PathBuf, CgroupVersion)>,
}

impl CgroupFact {
    /// v1, v2, hybrid or none, from the hierarchies at /sys/fs/cgroup.
    #[must_use]
    pub fn layout(&self) -> CgroupLayout {
        let v1 = self
            .hierarchies
            .iter()
            .filter(|h| h.version == CgroupVersion::V1);
        let v1_any = v1.clone().next().is_some();
        let v1_controllers = v1
            .flat_map(|h| h.controllers.iter().flatten())
            .any(|c| !c.starts_with("name="));
        let v2 = self
            .hierarchies
            .iter()
            .any(|h| h.version == CgroupVersion::V2);
        match (v1_controllers, v2) {
            (true, true) => CgroupLayout::Hybrid,
            (true, false) => CgroupLayout::V1,
            (false, true) => CgroupLayout::V2,
            (false, false) if v1_any => CgroupLayout::V1,
            (false, false) => CgroupLayout::None,
        }
    }
}

/// A tracefs mount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TracefsMount {
    /// Its mount point.
    pub path: PathBuf,
    /// Mounted read-only (`ro`): enough, the probe only reads tracefs.
    pub read_only: bool,
}

/// Everything doctor looks at, as read from the host.
#[derive(Clone, Debug)]
pub struct Facts {
    /// `uname -r` and machine, when uname works.
    pub kernel: Result<String, String>,
    /// Whether /sys/kernel/btf/vmlinux exists.
    pub btf: bool,
    /// tracefs mount points.
    pub tracefs_mounts: Vec<TracefsMount>,
    /// Whether doctor itself mounted tracefs (while probing).
    pub tracefs_mounted_by_doctor: bool,
    /// Doctor's own attempt to mount tracefs (as the agent does) failed:
    /// the errno.
    pub tracefs_mount_error: Option<Option<i32>>,
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
    /// The `oom_kill_process` hook: which attach type, or why none.
    pub scope_hook: Result<String, String>,
    /// The systemd journal the `journald` receiver reads by default.
    pub journal: JournalFact,
}

/// The system journal as the `journald` receiver finds it by default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalFact {
    /// Whether this binary has the `journald` receiver (cargo feature
    /// `journald`).
    pub receiver_built: bool,
    /// Whether libsystemd.so.0, which the receiver loads when it starts,
    /// can be loaded here; why not.
    pub libsystemd: Result<(), String>,
    /// Each system journal directory looked at.
    pub dirs: Vec<JournalDir>,
}

/// One system journal directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalDir {
    /// The directory.
    pub path: PathBuf,
    /// Whether it exists.
    pub exists: bool,
    /// Journal files in it and its machine-id subdirectories.
    pub files: usize,
    /// Files that cannot be opened or whose header is damaged (the first
    /// [`JOURNAL_BAD_KEPT`]), with why.
    pub bad: Vec<(PathBuf, String)>,
    /// How many files are bad in all.
    pub bad_count: usize,
}

/// Bad journal files named in the report, per directory.
const JOURNAL_BAD_KEPT: usize = 5;

/// Where journald keeps the system journal: persistent, then volatile.
const SYSTEM_JOURNAL_DIRS: [&str; 2] = ["/var/log/journal", "/run/log/journal"];

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
    /// The tracefs mounts found.
    pub tracefs: TracefsSummary,
    /// The cgroup layout and which controllers are where.
    pub cgroup: CgroupSummary,
}

/// The `tracefs` key of the JSON report.
#[derive(Clone, Debug, Serialize)]
pub struct TracefsSummary {
    /// Each tracefs mount.
    pub mounts: Vec<TracefsMount>,
    /// Why mounting tracefs failed (errno and cause), when doctor tried.
    pub mount_error: Option<String>,
}

/// The `cgroup` key of the JSON report.
#[derive(Clone, Debug, Serialize)]
pub struct CgroupSummary {
    /// `v1`, `v2`, `hybrid` or `none`.
    pub layout: CgroupLayout,
    /// The hierarchies at /sys/fs/cgroup, then those elsewhere.
    pub hierarchies: Vec<CgroupHierarchy>,
    /// What the memory receiver reads, `null` when it finds nothing.
    pub memory: Option<MemoryReader>,
}

/// The hierarchy the memory receiver reads.
#[derive(Clone, Debug, Serialize)]
pub struct MemoryReader {
    /// v1 or v2.
    pub version: CgroupVersion,
    /// Its directory.
    pub path: PathBuf,
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

pub use crate::ebpf::format::absent_fields;

/// (mount point, type, options) of each line of /proc/self/mounts.
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

/// The tracefs mounts in a /proc/self/mounts text. Of mounts stacked on
/// one path (a read-only bind over a read-write mount), the last is the one
/// seen there.
#[must_use]
pub fn tracefs_mounts(mounts_text: &str) -> Vec<TracefsMount> {
    let mut found: Vec<TracefsMount> = Vec::new();
    for (target, _, options) in mounts(mounts_text).filter(|&(_, fstype, _)| fstype == "tracefs") {
        let mount = TracefsMount {
            path: PathBuf::from(unescape_mount(target)),
            read_only: options.split(',').any(|option| option == "ro"),
        };
        match found.iter_mut().find(|m| m.path == mount.path) {
            Some(earlier) => *earlier = mount,
            None => found.push(mount),
        }
    }
    found
}

/// /proc/mounts escapes space, tab, newline and backslash as octal.
fn unescape_mount(path: &str) -> String {
    path.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// The cgroup hierarchies in a /proc/self/mounts text: those at `base` or
/// directly under it (where the memory receiver looks), and those
/// elsewhere. `read` reads a cgroup2 root's `cgroup.controllers` and
/// `cgroup.subtree_control`.
pub fn cgroup_hierarchies(
    mounts_text: &str,
    base: &Path,
    read: impl Fn(&Path) -> Option<String>,
) -> (Vec<CgroupHierarchy>, Vec<CgroupHierarchy>) {
    let mut at_base = Vec::new();
    let mut elsewhere = Vec::new();
    for (target, fstype, options) in mounts(mounts_text) {
        let mount = PathBuf::from(unescape_mount(target));
        let hierarchy = match fstype {
            "cgroup" => CgroupHierarchy {
                controllers: Some(
                    options
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                        .map(str::to_owned)
                        .collect(),
                ),
                version: CgroupVersion::V1,
                subtree_control: None,
                mount,
            },
            "cgroup2" => CgroupHierarchy {
                controllers: read(&mount.join("cgroup.controllers")).map(|t| words(&t)),
                subtree_control: read(&mount.join("cgroup.subtree_control")).map(|t| words(&t)),
                version: CgroupVersion::V2,
                mount,
            },
            _ => continue,
        };
        if hierarchy.mount == base || hierarchy.mount.parent() == Some(base) {
            at_base.push(hierarchy);
        } else {
            elsewhere.push(hierarchy);
        }
    }
    (at_base, elsewhere)
}

/// The `memory` line of a /proc/cgroups text: (hierarchy id, enabled).
#[must_use]
pub fn proc_cgroups_memory(text: &str) -> Option<(u32, bool)> {
    text.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        if fields.next()? != "memory" {
            return None;
        }
        let hierarchy = fields.next()?.parse().ok()?;
        let _cgroups = fields.next()?;
        let enabled = fields.next()? != "0";
        Some((hierarchy, enabled))
    })
}

/// Why `base` shows only this process's container's cgroup, if it does:
/// a cgroup namespace of its own (`ns_link`, the target of
/// /proc/self/ns/cgroup), or a cgroup mount there whose root (the 4th field
/// of /proc/self/mountinfo) is a subtree of the host's hierarchy.
#[must_use]
pub fn cgroup_container_view(
    ns_link: Option<&str>,
    mountinfo: &str,
    base: &Path,
) -> Option<String> {
    if let Some(link) = ns_link.filter(|link| *link != INITIAL_CGROUP_NS) {
        return Some(format!(
            "this process is in a cgroup namespace of its own ({link}), so {} shows only its \
             container's cgroup",
            base.display()
        ));
    }
    mountinfo.lines().find_map(|line| {
        let (mount_fields, fs_fields) = line.split_once(" - ")?;
        let fields: Vec<&str> = mount_fields.split_whitespace().collect();
        let (root, target) = (*fields.get(3)?, *fields.get(4)?);
        let fstype = fs_fields.split_whitespace().next()?;
        let target = PathBuf::from(unescape_mount(target));
        let under_base = target == base || target.parent() == Some(base);
        (matches!(fstype, "cgroup" | "cgroup2") && under_base && root != "/").then(|| {
            format!(
                "{} is only {} of the host's hierarchy (a container's own cgroup)",
                target.display(),
                unescape_mount(root)
            )
        })
    })
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

fn tracepoint_fact(mounts: &[TracefsMount]) -> TracepointFact {
    if mounts.is_empty() {
        return TracepointFact::Unavailable(
            "tracefs is not mounted, so the tracepoint cannot be looked up".into(),
        );
    }
    let Some(dir) = mounts
        .iter()
        .map(|mount| &mount.path)
        .find(|dir| dir.join(MARK_VICTIM_FORMAT).exists())
    else {
        return TracepointFact::Unavailable(format!(
            "no {MARK_VICTIM_FORMAT} under {}: the kernel has no oom/mark_victim tracepoint",
            mounts
                .iter()
                .map(|m| m.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let path = dir.join(MARK_VICTIM_FORMAT);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => return TracepointFact::Unavailable(format!("{}: {e}", path.display())),
    };
    // The id is what the attach passes to perf_event_open.
    let id_path = dir.join(MARK_VICTIM_ID);
    if let Err(e) = std::fs::read_to_string(&id_path) {
        return TracepointFact::Unavailable(format!("{}: {e}", id_path.display()));
    }
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
fn probe_ebpf() -> (ProbeFact, Option<ExecHookStatus>, Option<ScopeHookStatus>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            return (
                ProbeFact::Failed(format!("cannot start a tokio runtime: {e}")),
                None,
                None,
            )
        }
    };
    // Dropping the probe detaches the programs again.
    runtime.block_on(async {
        match crate::ebpf::load_mark_victim() {
            Ok(probe) => (
                ProbeFact::Loaded,
                Some(probe.exec_hooks().clone()),
                Some(probe.scope_hook().clone()),
            ),
            Err(e) => (ProbeFact::Failed(format!("{e:#}")), None, None),
        }
    })
}

/// The exec hook as the probe found it, else whether its tracepoint is there.
fn exec_hook_fact(probed: Option<ExecHookStatus>, tracefs_mounted: bool) -> Result<String, String> {
    match probed {
        Some(status @ ExecHookStatus::Attached { .. }) => Ok(format!("{status}, then detached")),
        Some(ExecHookStatus::Unavailable(why)) => Err(why),
        None if !tracefs_mounted => {
            Err("tracefs is not mounted, so its tracepoints cannot be looked up".into())
        }
        None => crate::ebpf::exec_layout().map(|_| {
            format!(
                "syscalls/sys_enter_execve found ({}; not attached: no probe)",
                crate::ebpf::loader::EXECVE_FORMAT
            )
        }),
    }
}

/// Whether a tracefs is where aya looks for it (its test: the directory
/// exists and is not empty).
fn tracefs_where_aya_looks() -> bool {
    TRACEFS_DIRS
        .iter()
        .any(|dir| std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()))
}

/// The cgroup facts: the hierarchies under /sys/fs/cgroup, what the memory
/// receiver finds there, and in a container what it finds under the
/// host's cgroup file system at /host/sys/fs/cgroup.
fn gather_cgroup(mounts_text: &str) -> CgroupFact {
    let base = Path::new(CGROUP_FS);
    let (hierarchies, elsewhere) =
        cgroup_hierarchies(mounts_text, base, |path| std::fs::read_to_string(path).ok());
    let ns_link = std::fs::read_link(CGROUP_NS_PATH)
        .ok()
        .map(|link| link.display().to_string());
    let container_view = cgroup_container_view(
        ns_link.as_deref(),
        &read(MOUNTINFO_PATH).unwrap_or_default(),
        base,
    );
    let host_memory_reader = if container_view.is_some() {
        find_memory_hierarchy(Path::new(HOST_CGROUP_FS))
            .map(|(path, version)| (path, version.into()))
    } else {
        None
    };
    CgroupFact {
        hierarchies,
        elsewhere,
        memory_reader: find_memory_hierarchy(base).map(|(path, version)| (path, version.into())),
        proc_cgroups_memory: read(PROC_CGROUPS_PATH)
            .ok()
            .and_then(|text| proc_cgroups_memory(&text)),
        container_view,
        host_memory_reader,
    }
}

/// Reads the facts of this host. With `probe`, first mounts tracefs when
/// none is mounted (as the agent does; a failure is a finding), then tries
/// to load and attach the eBPF program. Must not be called from within an
/// async runtime.
#[must_use]
pub fn gather(probe: bool, no_probe_reason: &str) -> Facts {
    let tracefs_supported = read("/proc/filesystems")
        .is_ok_and(|text| text.split_whitespace().any(|word| word == "tracefs"));
    let mut tracefs_mounted_by_doctor = false;
    let mut tracefs_mount_error = None;
    if probe && tracefs_supported && !tracefs_where_aya_looks() {
        match tracefs::mount() {
            Ok(()) => tracefs_mounted_by_doctor = true,
            Err(e) => tracefs_mount_error = Some(e.raw_os_error()),
        }
    }
    let (probe, exec_hook, scope_hook) = if probe {
        probe_ebpf()
    } else {
        (ProbeFact::NotRun(no_probe_reason.to_owned()), None, None)
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
        tracefs_mounted_by_doctor,
        tracefs_mount_error,
        tracefs_supported,
        tracepoint: tracepoint_fact(&tracefs_now),
        tracefs_mounts: tracefs_now,
        cap_eff: read("/proc/self/status").and_then(|text| parse_cap_eff(&text)),
        access: EbpfAccess::probe(),
        lockdown,
        unprivileged_bpf_disabled: read(UNPRIVILEGED_BPF_PATH)
            .ok()
            .and_then(|text| text.trim().parse().ok()),
        cgroup: gather_cgroup(&mounts_text),
        psi_memory: psi_memory(),
        kmsg: std::fs::File::open(KMSG_PATH)
            .map(drop)
            .map_err(|e| format!("opening {KMSG_PATH}: {e}")),
        vmstat_oom_kill: vmstat_oom_kill(),
        probe,
        exec_hook: exec_hook_fact(exec_hook, tracefs_where_aya_looks()),
        scope_hook: match scope_hook {
            Some(ScopeHookStatus::Unavailable(why)) => Err(why),
            Some(hook) => Ok(format!("{hook} attached, then detached")),
            None => Err("not tried: the eBPF program was not loaded".to_owned()),
        },
        journal: gather_journal(),
    }
}

/// The system journal directories, and the host's under /host when the
/// host's file system is mounted there (the container config's
/// `root_path: /host`).
fn gather_journal() -> JournalFact {
    let mut paths: Vec<PathBuf> = SYSTEM_JOURNAL_DIRS.iter().map(PathBuf::from).collect();
    let under_host: Vec<PathBuf> = SYSTEM_JOURNAL_DIRS
        .iter()
        .map(|d| Path::new("/host").join(d.trim_start_matches('/')))
        .collect();
    if under_host.iter().any(|d| d.is_dir()) {
        paths.extend(under_host);
    }
    JournalFact {
        receiver_built: cfg!(feature = "journald"),
        libsystemd: libsystemd_loads(),
        dirs: paths.into_iter().map(journal_dir).collect(),
    }
}

#[cfg(feature = "journald")]
fn libsystemd_loads() -> Result<(), String> {
    crate::receivers::journald::sd_journal::available()
}

#[cfg(not(feature = "journald"))]
fn libsystemd_loads() -> Result<(), String> {
    Err("not looked for: no journald receiver in this build".to_owned())
}

fn journal_dir(path: PathBuf) -> JournalDir {
    use crate::receivers::journald::files;
    let exists = path.is_dir();
    let found = if exists {
        files::journal_files(&path)
    } else {
        Vec::new()
    };
    let mut bad = Vec::new();
    let mut bad_count = 0;
    for file in &found {
        if let Err(problem) = files::check_header(file) {
            bad_count += 1;
            if bad.len() < JOURNAL_BAD_KEPT {
                bad.push((file.clone(), problem));
            }
        }
    }
    JournalDir {
        files: found.len(),
        path,
        exists,
        bad,
        bad_count,
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
    let tracefs_ok = !facts.tracefs_mounts.is_empty()
        || (facts.tracefs_supported
            && facts.tracefs_mount_error.is_none()
            && caps.is_none_or(|mask| has_cap(mask, CAP_SYS_ADMIN)));

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
    findings.check_scope_hook(&facts.scope_hook, &facts.lockdown);
    findings.check_journal(&facts.journal, caps);
    let tracefs = TracefsSummary {
        mounts: facts.tracefs_mounts.clone(),
        mount_error: facts.tracefs_mount_error.map(tracefs::mount_failure_cause),
    };
    let cgroup = CgroupSummary {
        layout: facts.cgroup.layout(),
        hierarchies: facts
            .cgroup
            .hierarchies
            .iter()
            .chain(&facts.cgroup.elsewhere)
            .cloned()
            .collect(),
        memory: facts
            .cgroup
            .memory_reader
            .clone()
            .map(|(path, version)| MemoryReader { version, path }),
    };
    findings.verdict(
        ebpf_ok,
        tracepoint_absent,
        facts.kmsg.is_ok(),
        tracefs,
        cgroup,
    )
}

/// One line per receiver (and `service`): the capabilities it needs, `+`
/// held or `-` not, and what each missing one stops.
fn capabilities_by_part(mask: u64) -> Vec<String> {
    use crate::privileges::{capability_name, needs_by_part, Phase};
    needs_by_part()
        .into_iter()
        .map(|(part, needs)| {
            let listing = needs
                .iter()
                .map(|n| {
                    let held = if has_cap(mask, n.cap) { "+" } else { "-" };
                    let when = if n.phase == Phase::Start {
                        " (start)"
                    } else {
                        ""
                    };
                    format!("{}{held}{when}", capability_name(n.cap))
                })
                .collect::<Vec<_>>()
                .join(" ");
            let missing: Vec<String> = needs
                .iter()
                .filter(|n| !has_cap(mask, n.cap))
                .map(|n| format!("no {}: cannot {}", capability_name(n.cap), n.why))
                .collect();
            if missing.is_empty() {
                format!("{part}: {listing}")
            } else {
                format!("{part}: {listing}; {}", missing.join("; "))
            }
        })
        .chain(crate::privileges::OPTIONAL.iter().map(|n| {
            let name = capability_name(n.cap);
            if has_cap(mask, n.cap) {
                format!("{} (optional): {name}+, used to {}", n.part, n.why)
            } else {
                format!(
                    "{} (optional): {name}-, not needed; with it (or a high RLIMIT_NICE) the agent would {}",
                    n.part, n.why
                )
            }
        }))
        .collect()
}

/// The exact grant of every capability a receiver needs that `mask`
/// lacks, in each way the agent is commonly run; `None` when none is
/// lacking.
fn capabilities_fix(mask: u64) -> Option<String> {
    use crate::privileges::{capability_name, NEEDS};
    let mut lacking: Vec<String> = Vec::new();
    for need in NEEDS {
        let name = capability_name(need.cap);
        if !has_cap(mask, need.cap) && !lacking.contains(&name) {
            lacking.push(name);
        }
    }
    if lacking.is_empty() {
        return None;
    }
    let bare: Vec<&str> = lacking
        .iter()
        .map(|c| c.strip_prefix("CAP_").unwrap_or(c))
        .collect();
    let lower: Vec<String> = lacking.iter().map(|c| c.to_ascii_lowercase()).collect();
    Some(format!(
        "grant {all} (each receiver's own are above; one it does not run can be left out): \
         systemd `AmbientCapabilities={spaced}` (and in `CapabilityBoundingSet=`); \
         podman/docker `--cap-add={comma}`; Kubernetes \
         `securityContext.capabilities.add: [{list}]`; or `setcap {setcap}+ep <path to oomscope>`",
        all = lacking.join(", "),
        spaced = lacking.join(" "),
        comma = bare.join(","),
        list = bare.join(", "),
        setcap = lower.join(","),
    ))
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
            details: Vec::new(),
            fix: None,
        });
    }

    /// A check with more lines and, when there is one, the fix.
    fn check_with(
        &mut self,
        name: &'static str,
        status: Status,
        reason: String,
        details: Vec<String>,
        fix: Option<String>,
    ) {
        self.checks.push(Check {
            name,
            status,
            reason,
            details,
            fix,
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
            .map(|m| {
                let ro = if m.read_only { " (read-only)" } else { "" };
                format!("{}{ro}", m.path.display())
            })
            .collect::<Vec<_>>()
            .join(", ");
        let read_only = facts.tracefs_mounts.iter().any(|m| m.read_only);
        let lacks_sys_admin = facts
            .cap_eff
            .as_ref()
            .is_ok_and(|&mask| !has_cap(mask, CAP_SYS_ADMIN));
        if facts.tracefs_mounted_by_doctor {
            self.check(
                "tracefs",
                Status::Ok,
                format!(
                    "mounted at {mounts} (it was not mounted; doctor mounted it, as the agent does)"
                ),
            );
        } else if read_only {
            self.check_with(
                "tracefs",
                Status::Ok,
                format!(
                    "mounted at {mounts}: enough, the agent only reads tracefs \
                     (events/<category>/<name>/id and format)"
                ),
                vec![
                    "the tracepoint is attached with perf_event_open and the id read from \
                     tracefs; nothing is written there"
                        .into(),
                ],
                None,
            );
        } else if !facts.tracefs_mounts.is_empty() {
            self.check("tracefs", Status::Ok, format!("mounted at {mounts}"));
        } else if let Some(errno) = facts.tracefs_mount_error {
            self.check_with(
                "tracefs",
                Status::Limited,
                format!(
                    "not mounted, and mounting it at {} failed ({}): the agent cannot \
                     find the tracepoint and falls back to /dev/kmsg",
                    tracefs::MOUNT_POINT,
                    tracefs::mount_failure_cause(errno)
                ),
                Vec::new(),
                Some(tracefs::MOUNT_FIX.into()),
            );
        } else if facts.tracefs_supported && lacks_sys_admin {
            self.check_with(
                "tracefs",
                Status::Limited,
                format!(
                    "not mounted, and without CAP_SYS_ADMIN the agent cannot mount it at {}: \
                     it falls back to /dev/kmsg",
                    tracefs::MOUNT_POINT
                ),
                Vec::new(),
                Some(tracefs::MOUNT_FIX.into()),
            );
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
        let details = capabilities_by_part(*mask);
        let fix = capabilities_fix(*mask);
        if lacking.is_empty() && fix.is_none() {
            self.check_with(
                "capabilities",
                Status::Ok,
                format!("CapEff={mask:016x}: {listing}"),
                details,
                None,
            );
        } else {
            let mut reason = format!("CapEff={mask:016x}: {listing}");
            if lacking.contains(&"CAP_SYS_RESOURCE") {
                reason.push_str(
                    "; without CAP_SYS_RESOURCE the agent cannot lower its own oom_score_adj",
                );
            }
            self.check_with("capabilities", Status::Limited, reason, details, fix);
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
            Ok(Some(Lockdown::Confidentiality)) => self.check_with(
                "lockdown",
                Status::Limited,
                "confidentiality: eBPF reads of kernel memory are refused; the program may fail to load"
                    .into(),
                Vec::new(),
                Some(LOCKDOWN_FIX.to_owned()),
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
        let layout = cgroup.layout();
        let mut details = describe_hierarchies(&cgroup.hierarchies, Path::new(CGROUP_FS));
        details.extend(
            cgroup
                .elsewhere
                .iter()
                .map(|h| format!("{} (not where the memory receiver looks)", h.describe())),
        );
        let layout_text = format!("{} ({CGROUP_FS})", layout.label());
        if let Some(why) = &cgroup.container_view {
            details.push(why.clone());
            match &cgroup.host_memory_reader {
                Some((path, version)) => self.check_with(
                    "cgroup",
                    Status::Ok,
                    format!(
                        "{layout_text} is this container's own; the host's is at \
                         {HOST_CGROUP_FS}, where a memory receiver with root_path /host reads {} \
                         (config/container.yaml)",
                        memory_text(path, *version)
                    ),
                    details,
                    None,
                ),
                None => {
                    self.missing.push(
                        "the host's cgroup hierarchy (usage and limits of other containers' cgroups)"
                            .to_owned(),
                    );
                    self.check_with(
                        "cgroup",
                        Status::Limited,
                        format!(
                            "{layout_text} is this container's own and {HOST_CGROUP_FS} has no \
                             memory hierarchy: the memory receiver sees only this container"
                        ),
                        details,
                        Some(format!(
                            "mount the host's /sys at /host/sys (podman `-v /sys:/host/sys:ro`, \
                             or `-v /sys/fs/cgroup:{HOST_CGROUP_FS}:ro`; in Kubernetes a hostPath \
                             of /sys at /host/sys, as deploy/kubernetes/base/daemonset.yaml does) \
                             and read it from there (config/container.yaml: memory root_path \
                             /host, oom cgroup_path {HOST_CGROUP_FS})"
                        )),
                    );
                }
            }
            return;
        }
        match &cgroup.memory_reader {
            Some((path, CgroupVersion::V2)) => {
                let subtree_lacks_memory = cgroup
                    .hierarchies
                    .iter()
                    .find(|h| &h.mount == path)
                    .and_then(|h| h.subtree_control.as_ref())
                    .is_some_and(|list| !list.iter().any(|c| c == "memory"));
                if subtree_lacks_memory {
                    self.missing.push(
                        "memory in the cgroup2 root's cgroup.subtree_control (per-cgroup usage and limits)"
                            .to_owned(),
                    );
                    self.check_with(
                        "cgroup",
                        Status::Limited,
                        format!(
                            "{layout_text}: the memory receiver reads cgroup v2 at {}, but memory \
                             is not in its cgroup.subtree_control: child cgroups have no memory.* \
                             files",
                            path.display()
                        ),
                        details,
                        Some(format!(
                            "echo +memory > {}",
                            path.join("cgroup.subtree_control").display()
                        )),
                    );
                } else {
                    self.check_with(
                        "cgroup",
                        Status::Ok,
                        format!(
                            "{layout_text}: the memory receiver reads {}",
                            memory_text(path, CgroupVersion::V2)
                        ),
                        details,
                        None,
                    );
                }
            }
            Some((path, CgroupVersion::V1)) => {
                for v2 in cgroup
                    .hierarchies
                    .iter()
                    .filter(|h| h.version == CgroupVersion::V2 && !h.has("memory"))
                {
                    details.push(format!(
                        "memory is not in {}/cgroup.controllers because the v1 hierarchy at {} \
                         holds it (a controller belongs to one hierarchy at a time)",
                        v2.mount.display(),
                        path.display()
                    ));
                }
                if layout == CgroupLayout::Hybrid {
                    details.push(format!(
                        "to move memory to cgroup v2: boot with `{UNIFIED_BOOT}`"
                    ));
                }
                self.check_with(
                    "cgroup",
                    Status::Ok,
                    format!(
                        "{layout_text}: the memory receiver reads {}",
                        memory_text(path, CgroupVersion::V1)
                    ),
                    details,
                    None,
                );
            }
            None => {
                self.missing
                    .push("a memory cgroup controller (per-cgroup usage and limits)".to_owned());
                let (why, fix) = no_memory_reader(cgroup);
                self.check_with(
                    "cgroup",
                    Status::Limited,
                    format!(
                        "{layout_text}: no memory controller the memory receiver can read: {why}"
                    ),
                    details,
                    fix,
                );
            }
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

    /// Runtime and service OOM messages in the systemd journal. Not part of
    /// the verdict, which is about OOM kills.
    fn check_journal(&mut self, journal: &JournalFact, caps: Option<u64>) {
        if let (true, Err(why)) = (journal.receiver_built, &journal.libsystemd) {
            // Whatever the journal holds, now or later: nothing reads it.
            self.check_with(
                "journal",
                Status::Missing,
                format!("the journald receiver cannot read any journal: {why}"),
                Vec::new(),
                Some("install libsystemd (Debian and Ubuntu: libsystemd0; Fedora and RHEL: systemd-libs); the container image has it".to_owned()),
            );
            return;
        }
        let present: Vec<&JournalDir> = journal.dirs.iter().filter(|d| d.files > 0).collect();
        let where_looked = journal
            .dirs
            .iter()
            .map(|d| d.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if present.is_empty() {
            let existing: Vec<String> = journal
                .dirs
                .iter()
                .filter(|d| d.exists)
                .map(|d| d.path.display().to_string())
                .collect();
            let reason = if existing.is_empty() {
                format!("no systemd journal ({where_looked} do not exist)")
            } else {
                format!("no journal files yet in {}", existing.join(", "))
            };
            self.check_with(
                "journal",
                Status::Limited,
                format!("{reason}: the journald receiver waits for one; services' OOM messages come from log files only"),
                Vec::new(),
                Some(
                    "where services log to syslog files instead, add /var/log/syslog or /var/log/messages to the filelog receiver's include; in a container, mount the host's journal (`-v /var/log/journal:/host/var/log/journal:ro`, or /run/log/journal where it is volatile)"
                        .to_owned(),
                ),
            );
            return;
        }
        let files: usize = present.iter().map(|d| d.files).sum();
        let bad: usize = present.iter().map(|d| d.bad_count).sum();
        let dirs = present
            .iter()
            .map(|d| d.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let details: Vec<String> = present
            .iter()
            .flat_map(|d| d.bad.iter())
            .map(|(file, problem)| format!("{}: {problem}", file.display()))
            .collect();
        if !journal.receiver_built {
            self.check_with(
                "journal",
                Status::Missing,
                format!("{files} journal files in {dirs}, but this oomscope was built without the journald receiver (cargo feature `journald`)"),
                details,
                Some("build with the default features, or use the release binary".to_owned()),
            );
            return;
        }
        if bad == 0 {
            self.check(
                "journal",
                Status::Ok,
                format!("{files} journal files in {dirs}, headers readable: the journald receiver reads them"),
            );
            return;
        }
        let denied = present
            .iter()
            .flat_map(|d| d.bad.iter())
            .any(|(_, problem)| problem.contains("Permission denied"));
        let fix = denied.then(|| {
            let cap = if caps.is_some_and(|mask| !has_cap(mask, CAP_DAC_READ_SEARCH)) {
                "CAP_DAC_READ_SEARCH is missing: "
            } else {
                ""
            };
            format!("{cap}run the agent with CAP_DAC_READ_SEARCH or in the systemd-journal group (journal files are mode 0640, group systemd-journal)")
        });
        self.check_with(
            "journal",
            Status::Limited,
            format!("{bad} of {files} journal files in {dirs} cannot be read (the journald receiver reads the others)"),
            details,
            fix,
        );
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
                    "{what}: the command line of a process (exec'd after the agent started, or running at its start) survives its exit"
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

    /// The `oom_kill_process` hook: not needed for complete records (the
    /// kernel log has the same facts), but without it they wait for the
    /// log, whose report headers are rate-limited.
    fn check_scope_hook(
        &mut self,
        scope_hook: &Result<String, String>,
        lockdown: &Result<Option<Lockdown>, String>,
    ) {
        let mut causes = Vec::new();
        let mut fix = None;
        if let (Err(why), Ok(Some(mode @ (Lockdown::Integrity | Lockdown::Confidentiality)))) =
            (scope_hook, lockdown)
        {
            if why.contains("fentry: loading") {
                fix = Some(LOCKDOWN_FIX.to_owned());
                causes.push(format!(
                    "lockdown={} refuses fentry programs (tracepoints still load)",
                    if *mode == Lockdown::Integrity {
                        "integrity"
                    } else {
                        "confidentiality"
                    }
                ));
            }
        }
        if let (Err(why), Ok(None)) = (scope_hook, lockdown) {
            if why.contains("fentry: loading") && why.contains("Operation not permitted") {
                causes.push(format!(
                    "fentry refused with EPERM although the tracepoint loads: most likely kernel lockdown (its mode is in {LOCKDOWN_PATH} once securityfs is mounted)"
                ));
            }
        }
        if let Err(why) = scope_hook {
            if why.contains("kprobe/type") {
                causes.push("no kprobe PMU: the kernel has no CONFIG_KPROBES".to_owned());
            }
        }
        let scope_hook = match (scope_hook, causes.is_empty()) {
            (Err(why), false) => Err(format!("{}; {why}", causes.join("; "))),
            (other, _) => other.clone(),
        };
        match &scope_hook {
            Ok(hook) => self.check(
                "scope_hook",
                Status::Ok,
                format!(
                    "{hook}: constraint, memcg with usage and limit, and trigger read at the kill"
                ),
            ),
            Err(why) => self.check_with(
                "scope_hook",
                Status::Limited,
                format!(
                    "no hook on oom_kill_process ({why}): constraint, memcg and limit come from the kernel log, whose report headers are rate-limited (10 per 5 s)"
                ),
                Vec::new(),
                fix,
            ),
        }
    }

    /// The source the agent will use and the exit code; what the OOM source
    /// lacks goes first among the missing items.
    fn verdict(
        mut self,
        ebpf_ok: bool,
        tracepoint_absent: Option<Vec<&str>>,
        kmsg_ok: bool,
        tracefs: TracefsSummary,
        cgroup: CgroupSummary,
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
            tracefs,
            cgroup,
        }
    }
}

/// One line for the v1 hierarchies (a hierarchy mounted at
/// `<base>/<its controllers>` by its controllers alone), one per cgroup2
/// mount.
fn describe_hierarchies(hierarchies: &[CgroupHierarchy], base: &Path) -> Vec<String> {
    let v1: Vec<String> = hierarchies
        .iter()
        .filter(|h| h.version == CgroupVersion::V1)
        .map(|h| {
            let label = h.controllers.as_deref().unwrap_or_default().join(",");
            if h.mount == base.join(label.trim_start_matches("name=")) {
                label
            } else {
                format!("{label} at {}", h.mount.display())
            }
        })
        .collect();
    let mut lines = Vec::new();
    if !v1.is_empty() {
        lines.push(format!(
            "v1 hierarchies (at {}/<name> unless said): {}",
            base.display(),
            v1.join("; ")
        ));
    }
    lines.extend(
        hierarchies
            .iter()
            .filter(|h| h.version == CgroupVersion::V2)
            .map(CgroupHierarchy::describe),
    );
    lines
}

/// "the v1 memory hierarchy at X" / "cgroup v2 at X".
fn memory_text(path: &Path, version: CgroupVersion) -> String {
    match version {
        CgroupVersion::V1 => format!("the v1 memory hierarchy at {}", path.display()),
        CgroupVersion::V2 => format!("cgroup v2 at {}", path.display()),
    }
}

/// Why the memory receiver finds no memory hierarchy, and the fix.
fn no_memory_reader(cgroup: &CgroupFact) -> (String, Option<String>) {
    let v1_memory_dir = Path::new(CGROUP_FS).join("memory");
    if let Some((_, false)) = cgroup.proc_cgroups_memory {
        return (
            "the memory controller is disabled (/proc/cgroups: enabled 0)".into(),
            Some("remove `cgroup_disable=memory` from the kernel command line and reboot".into()),
        );
    }
    // Mounted, but not where the receiver looks (it reads /sys/fs/cgroup or
    // /sys/fs/cgroup/unified for v2, /sys/fs/cgroup/memory for v1).
    if let Some(h) = cgroup
        .hierarchies
        .iter()
        .chain(&cgroup.elsewhere)
        .find(|h| h.has("memory"))
    {
        let (expected, fix) = match h.version {
            CgroupVersion::V1 => (
                v1_memory_dir.display().to_string(),
                format!(
                    "mkdir -p {0} && mount --bind {1} {0}",
                    v1_memory_dir.display(),
                    h.mount.display()
                ),
            ),
            CgroupVersion::V2 => (
                CGROUP_FS.to_owned(),
                format!("mount --bind {} {CGROUP_FS}", h.mount.display()),
            ),
        };
        return (
            format!(
                "memory is mounted at {} ({}), but the memory receiver looks at {expected}",
                h.mount.display(),
                match h.version {
                    CgroupVersion::V1 => "v1",
                    CgroupVersion::V2 => "cgroup2",
                }
            ),
            Some(fix),
        );
    }
    let v1_mount = format!(
        "mkdir -p {0} && mount -t cgroup -o memory cgroup {0}",
        v1_memory_dir.display()
    );
    match cgroup.proc_cgroups_memory {
        None => (
            "the kernel has no memory controller (no memory line in /proc/cgroups: CONFIG_MEMCG off)"
                .into(),
            None,
        ),
        Some((hierarchy, _)) if hierarchy != 0 => (
            format!(
                "a v1 hierarchy (id {hierarchy} in /proc/cgroups) holds memory but is not mounted \
                 here, so cgroup2 cannot have it"
            ),
            Some(format!(
                "mount it ({v1_mount}), or boot with `{UNIFIED_BOOT}` to give memory to cgroup v2"
            )),
        ),
        Some(_) if cgroup.layout() == CgroupLayout::None => (
            format!("no cgroup file system is mounted at {CGROUP_FS}"),
            Some(format!("mount -t cgroup2 none {CGROUP_FS}")),
        ),
        Some(_) => (
            "memory is in no mounted hierarchy's controllers".into(),
            Some(format!(
                "mount -t cgroup2 none {CGROUP_FS} (cgroup v2), or {v1_mount} (v1)"
            )),
        ),
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
        // Under the reason.
        for detail in &check.details {
            let _ = writeln!(text, "{:38}{detail}", "");
        }
        if let Some(fix) = &check.fix {
            let _ = writeln!(text, "{:38}fix: {fix}", "");
        }
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
            tracefs_mounts: tracefs_mounts(THIS_HOST_MOUNTS),
            tracefs_mounted_by_doctor: false,
            tracefs_mount_error: None,
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
            cgroup: this_host_cgroup(),
            psi_memory: Ok(()),
            kmsg: Ok(()),
            vmstat_oom_kill: Ok(3),
            probe: ProbeFact::Loaded,
            exec_hook: Ok("syscalls/sys_enter_execve and sys_enter_execveat attached".into()),
            scope_hook: Ok("fentry on oom_kill_process attached, then detached".into()),
            journal: JournalFact {
                receiver_built: true,
                libsystemd: Ok(()),
                dirs: vec![
                    JournalDir {
                        path: "/var/log/journal".into(),
                        exists: true,
                        files: 3,
                        bad: Vec::new(),
                        bad_count: 0,
                    },
                    JournalDir {
                        path: "/run/log/journal".into(),
                        exists: false,
                        files: 0,
                        bad: Vec::new(),
                        bad_count: 0,
                    },
                ],
            },
        }
    }

    fn check_named<'a>(report: &'a Report, name: &str) -> &'a Check {
        report
            .checks
            .iter()
            .find(|check| check.name == name)
            .unwrap_or_else(|| panic!("no check {name}"))
    }

    #[test]
    fn a_readable_journal_is_ok() {
        let report = assess(&healthy());
        let journal = check_named(&report, "journal");
        assert_eq!(journal.status, Status::Ok);
        assert!(
            journal
                .reason
                .contains("3 journal files in /var/log/journal"),
            "{}",
            journal.reason
        );
        assert_eq!(report.exit_code, 0);
    }

    /// A host without journald: said, with where to look instead; the
    /// verdict (about OOM kills) does not change.
    #[test]
    fn no_journal_is_limited_with_the_fix_and_keeps_the_verdict() {
        let mut facts = healthy();
        for dir in &mut facts.journal.dirs {
            dir.exists = false;
            dir.files = 0;
        }
        let report = assess(&facts);
        let journal = check_named(&report, "journal");
        assert_eq!(journal.status, Status::Limited);
        assert!(
            journal.reason.contains("no systemd journal"),
            "{}",
            journal.reason
        );
        assert!(journal
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("/var/log/syslog")));
        assert_eq!(report.exit_code, 0);
        // A directory without files yet.
        facts.journal.dirs[0].exists = true;
        let report = assess(&facts);
        let journal = check_named(&report, "journal");
        assert!(
            journal
                .reason
                .contains("no journal files yet in /var/log/journal"),
            "{}",
            journal.reason
        );
    }

    #[test]
    fn unreadable_journal_files_name_the_capability() {
        let mut facts = healthy();
        facts.cap_eff = Ok(1 << CAP_BPF | 1 << CAP_PERFMON | 1 << CAP_SYSLOG);
        facts.journal.dirs[0].bad = vec![(
            "/var/log/journal/m/system.journal".into(),
            "cannot open: Permission denied (os error 13)".into(),
        )];
        facts.journal.dirs[0].bad_count = 2;
        let report = assess(&facts);
        let journal = check_named(&report, "journal");
        assert_eq!(journal.status, Status::Limited);
        assert!(
            journal.reason.starts_with("2 of 3 journal files"),
            "{}",
            journal.reason
        );
        assert_eq!(
            journal.details,
            ["/var/log/journal/m/system.journal: cannot open: Permission denied (os error 13)"]
        );
        let fix = journal.fix.as_deref().unwrap_or_default();
        assert!(fix.starts_with("CAP_DAC_READ_SEARCH is missing"), "{fix}");
        assert!(fix.contains("systemd-journal group"), "{fix}");
    }

    #[test]
    fn a_host_without_libsystemd_is_said() {
        let mut facts = healthy();
        facts.journal.libsystemd = Err(
            "cannot load libsystemd.so.0 (the journald receiver needs libsystemd): not found"
                .into(),
        );
        let report = assess(&facts);
        let journal = check_named(&report, "journal");
        assert_eq!(journal.status, Status::Missing);
        assert!(
            journal
                .reason
                .contains("cannot read any journal: cannot load libsystemd.so.0"),
            "{}",
            journal.reason
        );
        assert!(
            journal
                .fix
                .as_deref()
                .is_some_and(|f| f.contains("libsystemd0")),
            "{:?}",
            journal.fix
        );
    }

    #[test]
    fn a_build_without_the_receiver_is_said() {
        let mut facts = healthy();
        facts.journal.receiver_built = false;
        let report = assess(&facts);
        let journal = check_named(&report, "journal");
        assert_eq!(journal.status, Status::Missing);
        assert!(
            journal.reason.contains("cargo feature `journald`"),
            "{}",
            journal.reason
        );
    }

    /// Real files: a journal written by systemd-journal-remote is readable,
    /// text named `.journal` is reported as not a journal.
    #[test]
    fn journal_files_are_counted_and_their_headers_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let machine = dir.path().join("3d1219c7c4c5404aaa1f6d2a48adfda4");
        std::fs::create_dir(&machine).expect("mkdir");
        std::fs::write(machine.join("fake.journal"), "not a journal\n").expect("write");
        std::fs::write(machine.join("notes.txt"), "ignored\n").expect("write");
        let found = journal_dir(dir.path().to_path_buf());
        assert!(found.exists);
        assert_eq!(found.files, 1);
        assert_eq!(found.bad_count, 1);
        assert!(
            found.bad[0].1.contains("not a journal file"),
            "{:?}",
            found.bad
        );
        let Some(remote) = [
            "/lib/systemd/systemd-journal-remote",
            "/usr/lib/systemd/systemd-journal-remote",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists()) else {
            eprintln!("SKIPPED journal_files_are_counted_and_their_headers_checked (real file part): systemd-journal-remote is not installed (scripts/setup.sh installs it)");
            return;
        };
        std::fs::remove_file(machine.join("fake.journal")).expect("rm");
        let mut child = std::process::Command::new(remote)
            .arg("-o")
            .arg(machine.join("remote.journal"))
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("systemd-journal-remote");
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin
                .write_all(b"__REALTIME_TIMESTAMP=1700000000000000\n__MONOTONIC_TIMESTAMP=1\n_BOOT_ID=0123456789abcdef0123456789abcdef\nMESSAGE=hello\n\n")
                .expect("export entry");
        }
        assert!(child.wait().expect("wait").success());
        let found = journal_dir(dir.path().to_path_buf());
        assert_eq!((found.files, found.bad_count), (1, 0), "{:?}", found.bad);
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

    /// `cat /proc/self/mounts` on this project's machine (cgroup hybrid:
    /// v1 controllers, memory among them, and cgroup2 at unified/).
    const THIS_HOST_MOUNTS: &str = "\
proc /proc proc rw,relatime 0 0
sysfs /sys sysfs rw,relatime 0 0
devtmpfs /dev devtmpfs rw,relatime,size=12335016k,nr_inodes=3083754,mode=755 0 0
/dev/vda / ext4 rw,relatime,discard,resv_strict,resuid=65534,resgid=65534 0 0
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/cpuset cgroup rw,relatime,cpuset 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/devices cgroup rw,relatime,devices 0 0
cgroup /sys/fs/cgroup/freezer cgroup rw,relatime,freezer 0 0
cgroup /sys/fs/cgroup/blkio cgroup rw,relatime,blkio 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
nodev /sys/kernel/tracing tracefs rw,relatime 0 0
";

    /// A cgroup v1 host (CentOS 7 style: systemd's named hierarchy,
    /// co-mounted cpu,cpuacct, no cgroup2).
    const V1_MOUNTS: &str = "\
tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,nosuid,nodev,noexec,relatime,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd 0 0
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,nosuid,nodev,noexec,relatime,pids 0 0
cgroup /sys/fs/cgroup/net_cls,net_prio cgroup rw,nosuid,nodev,noexec,relatime,net_prio,net_cls 0 0
";

    /// A cgroup v2 host (Debian 12).
    const V2_MOUNTS: &str = "\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0
tracefs /sys/kernel/tracing tracefs rw,nosuid,nodev,noexec,relatime 0 0
";

    /// A container's read-only hostPath of /sys/kernel/tracing.
    const READ_ONLY_TRACEFS_MOUNTS: &str = "\
overlay / overlay ro,relatime,lowerdir=/var/lib/containers/storage/overlay/l/X 0 0
tracefs /sys/kernel/tracing tracefs ro,nosuid,nodev,noexec,relatime 0 0
cgroup2 /sys/fs/cgroup cgroup2 ro,nosuid,nodev,noexec,relatime 0 0
";

    /// No tracefs (a kernel that does not mount it at boot).
    const NO_TRACEFS_MOUNTS: &str = "\
sysfs /sys sysfs rw,relatime 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0
";

    const V2_CONTROLLERS: &str = "cpuset cpu io memory hugetlb pids rdma misc\n";

    /// cgroup facts from a mounts text; `files` gives the cgroup2 roots'
    /// files by path.
    fn cgroup_from(mounts: &str, files: &[(&str, &str)]) -> CgroupFact {
        let (hierarchies, elsewhere) = cgroup_hierarchies(mounts, Path::new(CGROUP_FS), |path| {
            files
                .iter()
                .find(|(file, _)| Path::new(file) == path)
                .map(|(_, text)| (*text).to_owned())
        });
        CgroupFact {
            hierarchies,
            elsewhere,
            proc_cgroups_memory: Some((0, true)),
            ..CgroupFact::default()
        }
    }

    fn this_host_cgroup() -> CgroupFact {
        CgroupFact {
            memory_reader: Some(("/sys/fs/cgroup/memory".into(), CgroupVersion::V1)),
            proc_cgroups_memory: Some((4, true)),
            ..cgroup_from(
                THIS_HOST_MOUNTS,
                &[
                    ("/sys/fs/cgroup/unified/cgroup.controllers", "hugetlb\n"),
                    ("/sys/fs/cgroup/unified/cgroup.subtree_control", "\n"),
                ],
            )
        }
    }

    fn check_of<'a>(report: &'a Report, name: &str) -> &'a Check {
        report
            .checks
            .iter()
            .find(|check| check.name == name)
            .unwrap_or_else(|| panic!("no check {name}"))
    }

    fn cgroup_check(cgroup: CgroupFact) -> (Report, Check) {
        let mut facts = healthy();
        facts.cgroup = cgroup;
        let report = assess(&facts);
        let check = check_of(&report, "cgroup").clone();
        (report, check)
    }

    #[test]
    fn reads_mounts() {
        let text = "nodev /sys/kernel/tracing tracefs rw 0 0\n\
                    cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                    cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n\
                    cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n\
                    cgroup2 /mnt/my\\040cg cgroup2 rw 0 0\n\
                    garbage\n";
        assert_eq!(
            tracefs_mounts(text),
            [TracefsMount {
                path: "/sys/kernel/tracing".into(),
                read_only: false
            }]
        );
        let fact = cgroup_from(
            text,
            &[("/mnt/my cg/cgroup.controllers", "cpu io memory pids\n")],
        );
        let mounts: Vec<_> = fact.hierarchies.iter().map(|h| h.mount.clone()).collect();
        assert_eq!(
            mounts,
            [
                PathBuf::from("/sys/fs/cgroup/cpu"),
                "/sys/fs/cgroup/memory".into(),
                "/sys/fs/cgroup/unified".into()
            ]
        );
        assert_eq!(fact.hierarchies[1].controllers, Some(vec!["memory".into()]));
        assert_eq!(fact.hierarchies[2].controllers, None, "unreadable");
        assert_eq!(fact.elsewhere.len(), 1);
        assert_eq!(fact.elsewhere[0].mount, PathBuf::from("/mnt/my cg"));
        assert!(fact.elsewhere[0].has("memory"));
        assert_eq!(fact.layout(), CgroupLayout::Hybrid);
    }

    #[test]
    fn parses_proc_cgroups() {
        let text = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
                    cpuset\t3\t3\t1\nmemory\t4\t113\t1\npids\t8\t3\t1\n";
        assert_eq!(proc_cgroups_memory(text), Some((4, true)));
        assert_eq!(proc_cgroups_memory("memory\t0\t1\t0\n"), Some((0, false)));
        assert_eq!(proc_cgroups_memory("cpu\t1\t1\t1\n"), None);
        assert_eq!(proc_cgroups_memory("memory\tx\t1\t1\n"), None);
    }

    /// This machine: hybrid, memory on v1; it works, and the report says
    /// why cgroup2 lacks memory and how to move it there.
    #[test]
    fn hybrid_with_memory_on_v1_reads_v1_and_says_how_to_move() {
        let cgroup = this_host_cgroup();
        assert_eq!(cgroup.layout(), CgroupLayout::Hybrid);
        assert_eq!(
            describe_hierarchies(&cgroup.hierarchies, Path::new(CGROUP_FS)),
            [
                "v1 hierarchies (at /sys/fs/cgroup/<name> unless said): cpu; cpuacct; cpuset; \
                 memory; devices; freezer; blkio; pids; name=systemd",
                "cgroup2 /sys/fs/cgroup/unified: cgroup.controllers hugetlb; \
                 cgroup.subtree_control none"
            ]
        );
        let (report, check) = cgroup_check(cgroup);
        assert_eq!(check.status, Status::Ok);
        assert_eq!(
            check.reason,
            "hybrid (/sys/fs/cgroup): the memory receiver reads the v1 memory hierarchy at \
             /sys/fs/cgroup/memory"
        );
        let details = check.details.join("\n");
        assert!(
            details.contains(
                "memory is not in /sys/fs/cgroup/unified/cgroup.controllers because the v1 \
                 hierarchy at /sys/fs/cgroup/memory holds it"
            ) && details
                .contains("boot with `systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all`"),
            "{details}"
        );
        assert_eq!(check.fix, None);
        let json = serde_json::to_value(&report).expect("JSON");
        assert_eq!(json["cgroup"]["layout"], "hybrid");
        assert_eq!(json["cgroup"]["memory"]["version"], "v1");
        assert_eq!(json["cgroup"]["memory"]["path"], "/sys/fs/cgroup/memory");
        assert_eq!(json["cgroup"]["hierarchies"][3]["controllers"][0], "memory");
        let text = render_text(&report);
        assert!(text.contains("cgroup_no_v1=all"), "{text}");
    }

    #[test]
    fn v1_host_lists_each_hierarchy() {
        let cgroup = CgroupFact {
            memory_reader: Some(("/sys/fs/cgroup/memory".into(), CgroupVersion::V1)),
            ..cgroup_from(V1_MOUNTS, &[])
        };
        assert_eq!(cgroup.layout(), CgroupLayout::V1);
        let controllers: Vec<_> = cgroup
            .hierarchies
            .iter()
            .map(|h| h.controllers.clone().unwrap_or_default().join(","))
            .collect();
        assert_eq!(
            controllers,
            [
                "name=systemd",
                "cpu,cpuacct",
                "memory",
                "pids",
                "net_prio,net_cls"
            ]
        );
        assert_eq!(
            describe_hierarchies(&cgroup.hierarchies, Path::new(CGROUP_FS)),
            ["v1 hierarchies (at /sys/fs/cgroup/<name> unless said): name=systemd; cpu,cpuacct; \
              memory; pids; net_prio,net_cls at /sys/fs/cgroup/net_cls,net_prio"]
        );
        let (_, check) = cgroup_check(cgroup);
        assert_eq!(check.status, Status::Ok);
        assert!(check
            .reason
            .starts_with("v1 (/sys/fs/cgroup): the memory receiver reads the v1"));
        assert!(!check.details.iter().any(|d| d.contains("unified_cgroup")));
    }

    #[test]
    fn v2_host_reads_v2_and_names_a_missing_subtree_control() {
        let files = [
            ("/sys/fs/cgroup/cgroup.controllers", V2_CONTROLLERS),
            ("/sys/fs/cgroup/cgroup.subtree_control", V2_CONTROLLERS),
        ];
        let cgroup = CgroupFact {
            memory_reader: Some(("/sys/fs/cgroup".into(), CgroupVersion::V2)),
            ..cgroup_from(V2_MOUNTS, &files)
        };
        assert_eq!(cgroup.layout(), CgroupLayout::V2);
        let (_, check) = cgroup_check(cgroup);
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert_eq!(
            check.reason,
            "v2 (/sys/fs/cgroup): the memory receiver reads cgroup v2 at /sys/fs/cgroup"
        );

        // memory available at the root, not delegated to its children.
        let cgroup = CgroupFact {
            memory_reader: Some(("/sys/fs/cgroup".into(), CgroupVersion::V2)),
            ..cgroup_from(
                V2_MOUNTS,
                &[
                    ("/sys/fs/cgroup/cgroup.controllers", V2_CONTROLLERS),
                    ("/sys/fs/cgroup/cgroup.subtree_control", "cpu pids\n"),
                ],
            )
        };
        let (report, check) = cgroup_check(cgroup);
        assert_eq!(check.status, Status::Limited);
        assert_eq!(
            check.fix.as_deref(),
            Some("echo +memory > /sys/fs/cgroup/cgroup.subtree_control")
        );
        assert_eq!(report.exit_code, 1);
        let json = serde_json::to_value(&report).expect("JSON");
        assert_eq!(
            json["checks"][8]["fix"],
            "echo +memory > /sys/fs/cgroup/cgroup.subtree_control"
        );
    }

    /// cgroup2 without memory: a v1 hierarchy not mounted here holds it, or
    /// it is disabled, or mounted where the receiver does not look.
    #[test]
    fn memory_missing_or_elsewhere_gets_the_exact_fix() {
        let files = [
            ("/sys/fs/cgroup/cgroup.controllers", "cpu io pids\n"),
            ("/sys/fs/cgroup/cgroup.subtree_control", "cpu io pids\n"),
        ];
        let held = CgroupFact {
            proc_cgroups_memory: Some((4, true)),
            ..cgroup_from(V2_MOUNTS, &files)
        };
        let (report, check) = cgroup_check(held);
        assert_eq!(check.status, Status::Limited);
        assert!(
            check
                .reason
                .contains("a v1 hierarchy (id 4 in /proc/cgroups) holds memory"),
            "{}",
            check.reason
        );
        let fix = check.fix.unwrap_or_default();
        assert!(
            fix.contains("mount -t cgroup -o memory cgroup /sys/fs/cgroup/memory")
                && fix.contains("cgroup_no_v1=all"),
            "{fix}"
        );
        assert!(report
            .missing_for_full_data
            .iter()
            .any(|m| m.contains("memory cgroup controller")));

        let disabled = CgroupFact {
            proc_cgroups_memory: Some((0, false)),
            ..cgroup_from(V2_MOUNTS, &files)
        };
        let (_, check) = cgroup_check(disabled);
        assert_eq!(
            check.fix.as_deref(),
            Some("remove `cgroup_disable=memory` from the kernel command line and reboot")
        );

        let co_mounted = cgroup_from(
            "cgroup /sys/fs/cgroup/cpu,memory cgroup rw,cpu,memory 0 0\n",
            &[],
        );
        let (_, check) = cgroup_check(co_mounted);
        assert_eq!(
            check.fix.as_deref(),
            Some(
                "mkdir -p /sys/fs/cgroup/memory && mount --bind /sys/fs/cgroup/cpu,memory \
                 /sys/fs/cgroup/memory"
            )
        );

        let (_, check) = cgroup_check(cgroup_from("", &[]));
        assert!(
            check.reason.starts_with("none (/sys/fs/cgroup)"),
            "{}",
            check.reason
        );
        assert_eq!(
            check.fix.as_deref(),
            Some("mount -t cgroup2 none /sys/fs/cgroup")
        );
    }

    #[test]
    fn a_containers_own_cgroup_view_is_named() {
        // runc without a cgroup namespace (v1): the container's memory
        // hierarchy is a bind of its own subtree.
        let mountinfo = "\
1260 1250 0:22 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs rw
1262 1261 0:32 /libpod_parent/libpod-8e3f /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,memory
";
        let why = cgroup_container_view(Some(INITIAL_CGROUP_NS), mountinfo, Path::new(CGROUP_FS))
            .expect("a subtree");
        assert!(
            why.contains("/sys/fs/cgroup/memory is only /libpod_parent/libpod-8e3f"),
            "{why}"
        );
        // A cgroup namespace of its own (cgroup v2 containers).
        let why = cgroup_container_view(Some("cgroup:[4026532561]"), "", Path::new(CGROUP_FS))
            .expect("a namespace");
        assert!(why.contains("cgroup namespace of its own"), "{why}");
        // This machine.
        let host = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n";
        assert_eq!(
            cgroup_container_view(Some(INITIAL_CGROUP_NS), host, Path::new(CGROUP_FS)),
            None
        );

        let container = CgroupFact {
            memory_reader: Some(("/sys/fs/cgroup".into(), CgroupVersion::V2)),
            container_view: Some(why),
            ..cgroup_from(
                V2_MOUNTS,
                &[("/sys/fs/cgroup/cgroup.controllers", V2_CONTROLLERS)],
            )
        };
        let (report, check) = cgroup_check(container.clone());
        assert_eq!(check.status, Status::Limited);
        let fix = check.fix.unwrap_or_default();
        assert!(
            fix.contains("-v /sys:/host/sys:ro") && fix.contains("/host/sys/fs/cgroup"),
            "{fix}"
        );
        assert_eq!(report.exit_code, 1);
        // With the host's /sys at /host/sys, as the DaemonSet mounts it.
        let (_, check) = cgroup_check(CgroupFact {
            host_memory_reader: Some(("/host/sys/fs/cgroup/memory".into(), CgroupVersion::V1)),
            ..container
        });
        assert_eq!(check.status, Status::Ok);
        assert!(
            check
                .reason
                .contains("reads the v1 memory hierarchy at /host/sys/fs/cgroup/memory"),
            "{}",
            check.reason
        );
    }

    /// A read-only tracefs serves: the agent only reads it.
    #[test]
    fn read_only_tracefs_is_enough() {
        let stacked = "nodev /sys/kernel/tracing tracefs rw,relatime 0 0\n\
                       nodev /sys/kernel/tracing tracefs ro,relatime 0 0\n";
        assert_eq!(
            tracefs_mounts(stacked),
            tracefs_mounts(READ_ONLY_TRACEFS_MOUNTS)
        );
        let mounts = tracefs_mounts(READ_ONLY_TRACEFS_MOUNTS);
        assert_eq!(
            mounts,
            [TracefsMount {
                path: "/sys/kernel/tracing".into(),
                read_only: true
            }]
        );
        let mut facts = healthy();
        facts.tracefs_mounts = mounts;
        let report = assess(&facts);
        let check = check_of(&report, "tracefs");
        assert_eq!(check.status, Status::Ok);
        assert!(
            check
                .reason
                .starts_with("mounted at /sys/kernel/tracing (read-only): enough"),
            "{}",
            check.reason
        );
        assert_eq!(report.exit_code, 0);
        let json = serde_json::to_value(&report).expect("JSON");
        assert_eq!(json["tracefs"]["mounts"][0]["read_only"], true);
    }

    /// No tracefs, and mounting it is refused: LIMITED with the errno and
    /// the fix; the probe cannot work, kmsg is the source.
    #[test]
    fn absent_tracefs_that_cannot_be_mounted_gets_the_fix() {
        let mut facts = healthy();
        facts.tracefs_mounts = tracefs_mounts(NO_TRACEFS_MOUNTS);
        assert!(facts.tracefs_mounts.is_empty());
        facts.tracefs_mount_error = Some(Some(libc::EPERM));
        facts.tracepoint = TracepointFact::Unavailable(
            "tracefs is not mounted, so the tracepoint cannot be looked up".into(),
        );
        facts.probe = ProbeFact::Failed(
            "tracefs is not mounted and mounting it at /sys/kernel/tracing failed: \
             Operation not permitted (os error 1)"
                .into(),
        );
        let report = assess(&facts);
        let check = check_of(&report, "tracefs");
        assert_eq!(check.status, Status::Limited);
        assert!(
            check
                .reason
                .contains("failed (EPERM: this process lacks CAP_SYS_ADMIN"),
            "{}",
            check.reason
        );
        let fix = check.fix.clone().unwrap_or_default();
        assert!(
            fix.contains("mount -t tracefs nodev /sys/kernel/tracing")
                && fix.contains(
                    "hostPath volume of /sys/kernel/tracing mounted at /sys/kernel/tracing"
                )
                && fix.contains("-v /sys/kernel/tracing:/sys/kernel/tracing:ro"),
            "{fix}"
        );
        assert_eq!(status_of(&report, "tracepoint"), Status::Missing);
        assert_eq!(report.source, Source::Kmsg);
        let json = serde_json::to_value(&report).expect("JSON");
        assert!(
            json["tracefs"]["mount_error"]
                .as_str()
                .is_some_and(|e| e.starts_with("EPERM")),
            "{json:#}"
        );
        assert!(render_text(&report).contains("fix: mount it on the host"));

        // Not probed, not mounted, no CAP_SYS_ADMIN: the same fix, and eBPF
        // is not counted on.
        facts.tracefs_mount_error = None;
        facts.probe = ProbeFact::NotRun("--no-probe".into());
        let caps = 1 << CAP_BPF | 1 << CAP_PERFMON | 1 << CAP_SYSLOG;
        facts.cap_eff = Ok(caps);
        facts.access.cap_eff = Some(caps);
        let report = assess(&facts);
        let check = check_of(&report, "tracefs");
        assert_eq!(check.status, Status::Limited);
        assert!(
            check.reason.contains("without CAP_SYS_ADMIN"),
            "{}",
            check.reason
        );
        assert!(check.fix.is_some());
        assert_eq!(report.source, Source::Kmsg);
        // With CAP_SYS_ADMIN the agent mounts it itself.
        facts.cap_eff = Ok(caps | 1 << CAP_SYS_ADMIN);
        let report = assess(&facts);
        assert_eq!(status_of(&report, "tracefs"), Status::Ok);
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

    /// Without the oom_kill_process hook records are still complete (the
    /// kernel log has the facts): LIMITED, nothing missing, and the cause.
    #[test]
    fn without_the_scope_hook_the_cause_is_named() {
        let mut facts = healthy();
        assert_eq!(status_of(&assess(&facts), "scope_hook"), Status::Ok);
        facts.lockdown = Ok(Some(Lockdown::Integrity));
        facts.scope_hook = Err("fentry: loading: EPERM; kprobe: attaching to oom_kill_process: `/sys/bus/event_source/devices/kprobe/type`".into());
        let report = assess(&facts);
        assert_eq!(status_of(&report, "scope_hook"), Status::Limited);
        assert_eq!(report.exit_code, 0, "{:?}", report.missing_for_full_data);
        let reason = &report
            .checks
            .iter()
            .find(|c| c.name == "scope_hook")
            .expect("scope_hook check")
            .reason;
        assert!(
            reason.contains("lockdown=integrity refuses fentry"),
            "{reason}"
        );
        assert!(reason.contains("no CONFIG_KPROBES"), "{reason}");
        // The fix: lockdown is lowered only at boot.
        let fix = check_named(&report, "scope_hook")
            .fix
            .as_deref()
            .unwrap_or("");
        assert!(
            fix.contains("boot with") && fix.contains("lockdown="),
            "{fix}"
        );
        facts.lockdown = Ok(Some(Lockdown::Confidentiality));
        let report = assess(&facts);
        let lockdown = check_named(&report, "lockdown");
        assert_eq!(lockdown.status, Status::Limited);
        assert_eq!(lockdown.fix.as_deref(), Some(LOCKDOWN_FIX));
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
    fn missing_capabilities_get_the_exact_grant() {
        let mut facts = healthy();
        // Everything but CAP_PERFMON and CAP_SYS_PTRACE.
        facts.cap_eff =
            Ok(0x1ff_ffff_ffff & !(1 << CAP_PERFMON) & !(1 << crate::ebpf::access::CAP_SYS_PTRACE));
        let report = assess(&facts);
        let check = check_named(&report, "capabilities");
        assert_eq!(check.status, Status::Limited);
        let fix = check.fix.as_deref().expect("a fix");
        for exact in [
            "grant CAP_PERFMON, CAP_SYS_PTRACE",
            "`AmbientCapabilities=CAP_PERFMON CAP_SYS_PTRACE`",
            "`--cap-add=PERFMON,SYS_PTRACE`",
            "`securityContext.capabilities.add: [PERFMON, SYS_PTRACE]`",
            "`setcap cap_perfmon,cap_sys_ptrace+ep <path to oomscope>`",
        ] {
            assert!(fix.contains(exact), "{exact} not in {fix}");
        }
        // Every capability a receiver needs: no fix.
        let report = assess(&healthy());
        assert_eq!(check_named(&report, "capabilities").fix, None);
    }

    /// CAP_SYS_NICE is listed, held or not, but never asked for: without it
    /// the kill thread keeps the agent's priority.
    #[test]
    fn an_optional_capability_is_listed_but_not_asked_for() {
        let nice = crate::ebpf::access::CAP_SYS_NICE;
        let mut facts = healthy();
        facts.cap_eff = facts.cap_eff.map(|mask| mask & !(1 << nice));
        let report = assess(&facts);
        let check = check_named(&report, "capabilities");
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert_eq!(check.fix, None);
        assert!(
            check
                .details
                .iter()
                .any(|d| d.starts_with("oom (optional): CAP_SYS_NICE-, not needed")),
            "{:?}",
            check.details
        );
        facts.cap_eff = facts.cap_eff.map(|mask| mask | 1 << nice);
        let report = assess(&facts);
        let check = check_named(&report, "capabilities");
        assert!(
            check
                .details
                .iter()
                .any(|d| d.starts_with("oom (optional): CAP_SYS_NICE+, used to raise")),
            "{:?}",
            check.details
        );
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
        assert_eq!(value["checks"][0]["reason"], "Linux 6.18.0 (x86_64)");
        // Only checks that have them carry `details` and `fix`.
        assert!(value["checks"][0].get("details").is_none());
        assert!(value["checks"][0].get("fix").is_none());
        assert!(value["missing_for_full_data"].is_array());
        assert_eq!(value["cgroup"]["layout"], "hybrid");
        assert_eq!(value["tracefs"]["mounts"][0]["path"], "/sys/kernel/tracing");
        assert_eq!(value["tracefs"]["mount_error"], serde_json::Value::Null);
    }
}
