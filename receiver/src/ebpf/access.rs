//! Why this process may not use eBPF: missing capabilities or a seccomp
//! filter that denies the `bpf` and `perf_event_open` system calls.
//!
//! A failed load says only "Operation not permitted" (aya: "failed to
//! create map DROPS"). In a container both causes are common and need
//! different fixes (`capabilities.add` against a seccomp profile), so the
//! two calls are probed with arguments the kernel rejects harmlessly: an
//! unknown `bpf` command (`EINVAL`) and a NULL `perf_event_attr`
//! (`EFAULT`). A different answer (`EPERM`, `ENOSYS`) came from a filter in
//! front of the kernel, or, for `bpf` on kernels before 6.5, from
//! `kernel.unprivileged_bpf_disabled` when the capabilities are missing.

use std::fmt;
use std::io;

/// Capability numbers (linux/capability.h).
pub const CAP_SYS_ADMIN: u32 = 21;
/// Reads any file and searches any directory (other users' log and
/// journal files).
pub const CAP_DAC_READ_SEARCH: u32 = 2;
/// Subscribes to the kernel's process events (netlink process connector).
pub const CAP_NET_ADMIN: u32 = 12;
/// Reads other users' `/proc/PID/exe`, `cwd` and `smaps_rollup`.
pub const CAP_SYS_PTRACE: u32 = 19;
/// Raises a thread's priority (the `oom` receiver's kill thread).
pub const CAP_SYS_NICE: u32 = 23;
/// Needed to lower the agent's own `oom_score_adj`.
pub const CAP_SYS_RESOURCE: u32 = 24;
/// Needed to read /dev/kmsg when `kernel.dmesg_restrict` = 1.
pub const CAP_SYSLOG: u32 = 34;
/// Needed (with CAP_BPF) to attach a tracepoint program (Linux 5.8+).
pub const CAP_PERFMON: u32 = 38;
/// Needed to load eBPF programs (Linux 5.8+; CAP_SYS_ADMIN before).
pub const CAP_BPF: u32 = 39;

/// Whether capability `cap` is in the mask.
#[must_use]
pub fn has_cap(mask: u64, cap: u32) -> bool {
    cap < 64 && mask & (1 << cap) != 0
}

/// Whether the capabilities in `mask` allow loading and attaching a
/// tracepoint program.
#[must_use]
pub fn can_load_bpf(mask: u64) -> bool {
    has_cap(mask, CAP_SYS_ADMIN) || (has_cap(mask, CAP_BPF) && has_cap(mask, CAP_PERFMON))
}

/// Reads the `CapEff:` line of a /proc/PID/status text.
pub fn parse_cap_eff(status: &str) -> Result<u64, String> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .ok_or("no CapEff line")?;
    u64::from_str_radix(line.trim(), 16).map_err(|e| format!("CapEff {:?}: {e}", line.trim()))
}

/// Reads the `Seccomp:` line of a /proc/PID/status text: 0 none, 1 strict,
/// 2 filter. `None` when the kernel has no seccomp (no such line).
#[must_use]
pub fn parse_seccomp(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Seccomp:"))
        .and_then(|v| v.trim().parse().ok())
}

/// What a probing call of one system call returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// The kernel itself answered (with the harmless error expected).
    Reached,
    /// Refused with this errno before the kernel looked at the arguments.
    Refused(i32),
}

impl CallOutcome {
    fn from_errno(errno: i32, reached: i32) -> Self {
        if errno == reached {
            CallOutcome::Reached
        } else {
            CallOutcome::Refused(errno)
        }
    }
}

/// The facts [`EbpfAccess::explain`] judges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EbpfAccess {
    /// Effective capabilities; `None` when unreadable.
    pub cap_eff: Option<u64>,
    /// Seccomp mode (2 = filter); `None` when unknown.
    pub seccomp: Option<u32>,
    /// `kernel.unprivileged_bpf_disabled`; `None` when unreadable.
    pub unprivileged_bpf_disabled: Option<u32>,
    /// The `bpf` probe.
    pub bpf: CallOutcome,
    /// The `perf_event_open` probe.
    pub perf_event_open: CallOutcome,
}

/// The first unknown `bpf` command: the kernel answers `EINVAL`.
const BPF_UNKNOWN_COMMAND: libc::c_long = 0x7fff;

impl EbpfAccess {
    /// Probes this process.
    #[must_use]
    pub fn probe() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        // SAFETY: an unknown command with a NULL attribute pointer and size
        // 0: the kernel reads nothing and returns an error.
        let bpf = unsafe { libc::syscall(libc::SYS_bpf, BPF_UNKNOWN_COMMAND, 0usize, 0u32) };
        let bpf_errno = last_errno(bpf);
        // SAFETY: a NULL attribute pointer: the kernel's first copy from it
        // fails with EFAULT, nothing is created.
        let perf = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                0usize,
                -1 as libc::c_int,
                0 as libc::c_int,
                -1 as libc::c_int,
                0 as libc::c_ulong,
            )
        };
        let perf_errno = last_errno(perf);
        EbpfAccess {
            cap_eff: parse_cap_eff(&status).ok(),
            seccomp: parse_seccomp(&status),
            unprivileged_bpf_disabled: std::fs::read_to_string(
                "/proc/sys/kernel/unprivileged_bpf_disabled",
            )
            .ok()
            .and_then(|t| t.trim().parse().ok()),
            bpf: CallOutcome::from_errno(bpf_errno, libc::EINVAL),
            perf_event_open: CallOutcome::from_errno(perf_errno, libc::EFAULT),
        }
    }

    /// The capabilities missing for eBPF, by name; empty when enough (or
    /// unknown).
    #[must_use]
    pub fn missing_capabilities(&self) -> Vec<&'static str> {
        let Some(mask) = self.cap_eff else {
            return Vec::new();
        };
        if can_load_bpf(mask) {
            return Vec::new();
        }
        [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
            .into_iter()
            .filter(|(cap, _)| !has_cap(mask, *cap))
            .map(|(_, name)| name)
            .collect()
    }

    /// The system calls a seccomp filter denies, with the errno it returned.
    #[must_use]
    pub fn denied_by_seccomp(&self) -> Vec<(&'static str, i32)> {
        if self.seccomp == Some(0) {
            return Vec::new();
        }
        let caps_missing = !self.missing_capabilities().is_empty();
        let mut denied = Vec::new();
        if let CallOutcome::Refused(errno) = self.bpf {
            // Before 6.5 the kernel refused any bpf command with EPERM when
            // unprivileged BPF is disabled and CAP_BPF is missing: not a
            // filter's doing.
            let kernel_refusal = errno == libc::EPERM
                && caps_missing
                && self.unprivileged_bpf_disabled.unwrap_or(1) != 0;
            if !kernel_refusal {
                denied.push(("bpf", errno));
            }
        }
        // EACCES is the kernel's own perf_event_paranoid refusal (Debian's
        // level 3), see `explain`.
        if let CallOutcome::Refused(errno) = self.perf_event_open {
            if errno != libc::EACCES {
                denied.push(("perf_event_open", errno));
            }
        }
        denied
    }

    /// What keeps eBPF from this process, in one sentence with the fix;
    /// `None` when neither capabilities nor seccomp are in the way.
    #[must_use]
    pub fn explain(&self) -> Option<String> {
        let caps = self.missing_capabilities();
        let denied = self.denied_by_seccomp();
        let mut parts = Vec::new();
        if !caps.is_empty() {
            let (noun, verb) = if caps.len() == 1 {
                ("capability", "is")
            } else {
                ("capabilities", "are")
            };
            let bare: Vec<&str> = caps
                .iter()
                .map(|c| c.strip_prefix("CAP_").unwrap_or(c))
                .collect();
            parts.push(format!(
                "the {noun} {} {verb} missing (grant {}, or CAP_SYS_ADMIN: \
                 `--cap-add={}`, `securityContext.capabilities.add: [{}]` or \
                 `AmbientCapabilities={}`)",
                caps.join(" and "),
                if caps.len() == 1 { "it" } else { "them" },
                bare.join(","),
                bare.join(", "),
                caps.join(" "),
            ));
        }
        if self.perf_event_open == CallOutcome::Refused(libc::EACCES) {
            parts.push(
                "the kernel refuses perf_event_open (EACCES: kernel.perf_event_paranoid is \
                 above 2 and CAP_PERFMON or CAP_SYS_ADMIN is missing)"
                    .to_string(),
            );
        }
        if !denied.is_empty() {
            let calls = denied
                .iter()
                .map(|(call, errno)| format!("{call} ({})", errno_name(*errno)))
                .collect::<Vec<_>>()
                .join(" and ");
            parts.push(format!(
                "a seccomp filter denies the system calls {calls} (use a profile that allows \
                 them, such as deploy/kubernetes/seccomp/oomscope.json; container runtimes' \
                 default profiles allow them only with CAP_SYS_ADMIN)"
            ));
        }
        (!parts.is_empty()).then(|| format!("eBPF is blocked: {}", parts.join("; and ")))
    }
}

impl fmt::Display for EbpfAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.explain() {
            Some(why) => f.write_str(&why),
            None => f.write_str("capabilities and seccomp allow eBPF"),
        }
    }
}

fn last_errno(rc: libc::c_long) -> i32 {
    if rc >= 0 {
        // Cannot happen for these arguments; a success would mean a file
        // descriptor, which is closed at once.
        // SAFETY: closing a descriptor this function was just given.
        unsafe { libc::close(rc as libc::c_int) };
        return 0;
    }
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `EPERM`, `ENOSYS`, ... for the errnos a filter returns; the number
/// otherwise.
#[must_use]
pub fn errno_name(errno: i32) -> String {
    match errno {
        libc::EPERM => "EPERM".into(),
        libc::EACCES => "EACCES".into(),
        libc::ENOSYS => "ENOSYS".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::EFAULT => "EFAULT".into(),
        0 => "no error".into(),
        n => format!("errno {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BPF_PERFMON: u64 = (1 << CAP_BPF) | (1 << CAP_PERFMON);

    fn access(cap_eff: u64, seccomp: u32, bpf: CallOutcome, perf: CallOutcome) -> EbpfAccess {
        EbpfAccess {
            cap_eff: Some(cap_eff),
            seccomp: Some(seccomp),
            unprivileged_bpf_disabled: Some(2),
            bpf,
            perf_event_open: perf,
        }
    }

    #[test]
    fn reads_status_lines() {
        let status = "Name:\tx\nCapEff:\t000001ffffffffff\nSeccomp:\t2\nSeccomp_filters:\t1\n";
        assert_eq!(parse_cap_eff(status), Ok(0x1ff_ffff_ffff));
        assert_eq!(parse_seccomp(status), Some(2));
        assert_eq!(parse_seccomp("Name:\tx\n"), None);
        assert!(parse_cap_eff("CapEff:\tzz\n").is_err());
    }

    #[test]
    fn root_without_a_filter_is_allowed() {
        let a = access(u64::MAX, 0, CallOutcome::Reached, CallOutcome::Reached);
        assert_eq!(a.explain(), None);
    }

    #[test]
    fn a_container_default_profile_without_sys_admin_is_a_seccomp_denial() {
        // podman's and docker's default profiles: bpf and perf_event_open
        // return EPERM unless CAP_SYS_ADMIN is held, even with CAP_BPF.
        let a = access(
            BPF_PERFMON,
            2,
            CallOutcome::Refused(libc::EPERM),
            CallOutcome::Refused(libc::EPERM),
        );
        assert!(a.missing_capabilities().is_empty());
        let why = a.explain().unwrap_or_default();
        assert!(why.contains("seccomp filter denies"), "{why}");
        assert!(
            why.contains("bpf (EPERM) and perf_event_open (EPERM)"),
            "{why}"
        );
        assert!(!why.contains("capabilities"), "{why}");
    }

    #[test]
    fn missing_capabilities_are_named() {
        let a = access(1 << CAP_BPF, 0, CallOutcome::Reached, CallOutcome::Reached);
        let why = a.explain().unwrap_or_default();
        assert!(
            why.contains("the capability CAP_PERFMON is missing"),
            "{why}"
        );
        assert!(!why.contains("CAP_BPF and"), "{why}");
        assert!(!why.contains("seccomp"), "{why}");
        // The exact grant, in each way the agent is commonly run.
        for exact in [
            "`--cap-add=PERFMON`",
            "`securityContext.capabilities.add: [PERFMON]`",
            "`AmbientCapabilities=CAP_PERFMON`",
        ] {
            assert!(why.contains(exact), "{exact} not in {why}");
        }
    }

    #[test]
    fn an_old_kernels_unprivileged_refusal_is_not_blamed_on_seccomp() {
        // No capabilities, unprivileged BPF disabled, kernel before 6.5:
        // EPERM from the kernel itself.
        let a = access(
            0,
            2,
            CallOutcome::Refused(libc::EPERM),
            CallOutcome::Reached,
        );
        let why = a.explain().unwrap_or_default();
        assert!(
            why.contains("capabilities CAP_BPF and CAP_PERFMON are missing"),
            "{why}"
        );
        assert!(!why.contains("seccomp"), "{why}");
        // An ENOSYS is a filter's answer whatever the capabilities.
        let a = access(
            0,
            2,
            CallOutcome::Refused(libc::ENOSYS),
            CallOutcome::Reached,
        );
        let why = a.explain().unwrap_or_default();
        assert!(
            why.contains("capabilities CAP_BPF and CAP_PERFMON are missing"),
            "{why}"
        );
        assert!(
            why.contains("denies the system calls bpf (ENOSYS)"),
            "{why}"
        );
    }

    #[test]
    fn a_paranoid_perf_setting_is_the_kernels_refusal() {
        let a = access(
            0,
            0,
            CallOutcome::Reached,
            CallOutcome::Refused(libc::EACCES),
        );
        let why = a.explain().unwrap_or_default();
        assert!(why.contains("perf_event_paranoid"), "{why}");
        assert!(!why.contains("seccomp"), "{why}");
    }

    #[test]
    fn sys_admin_alone_is_enough() {
        let a = access(
            1 << CAP_SYS_ADMIN,
            2,
            CallOutcome::Reached,
            CallOutcome::Reached,
        );
        assert_eq!(a.explain(), None);
    }

    #[test]
    fn probing_this_process_does_not_fail() {
        // Whatever this host allows, the probe answers and says something.
        let a = EbpfAccess::probe();
        assert!(!a.to_string().is_empty());
        if a.seccomp == Some(0) && a.cap_eff.is_some_and(can_load_bpf) {
            assert_eq!(a.bpf, CallOutcome::Reached, "{a:?}");
            assert_eq!(a.perf_event_open, CallOutcome::Reached, "{a:?}");
        }
    }
}
