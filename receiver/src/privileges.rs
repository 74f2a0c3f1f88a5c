//! Least privilege: which capabilities each receiver needs, and giving up
//! every other one once the pipelines have started.
//!
//! Loading and attaching the eBPF programs, mounting tracefs, lowering the
//! agent's own `oom_score_adj` and binding a port below 1024 happen while
//! the pipelines start; after that the agent keeps only what its receivers
//! need while running ([`NEEDS`]). Capabilities are per thread in Linux
//! (capset(2) changes the calling thread only), so the drop is done on every
//! thread of the process the way glibc's setuid and libcap's psx do it: each
//! thread is sent a signal whose handler calls capset, and the result is
//! read back from `/proc/self/task/*/status`.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::ebpf::access::{
    has_cap, CAP_BPF, CAP_DAC_READ_SEARCH, CAP_NET_ADMIN, CAP_PERFMON, CAP_SYSLOG, CAP_SYS_ADMIN,
    CAP_SYS_NICE, CAP_SYS_PTRACE, CAP_SYS_RESOURCE,
};

/// When a receiver needs a capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// While its pipeline starts only: dropped afterwards.
    Start,
    /// For as long as it runs: kept.
    Run,
}

/// One capability a part of the agent needs, and why.
#[derive(Clone, Copy, Debug)]
pub struct Need {
    /// A receiver type, or `service` for the agent itself.
    pub part: &'static str,
    /// The capability number.
    pub cap: u32,
    /// When it is needed.
    pub phase: Phase,
    /// What for.
    pub why: &'static str,
}

/// What each receiver needs (receivers not named need none: `otlp` on a port
/// from 1024 up). Found by running each receiver as an unprivileged user
/// with one capability fewer at a time (tests/least_privilege.rs runs the
/// whole set).
pub const NEEDS: &[Need] = &[
    Need {
        part: "oom",
        cap: CAP_BPF,
        phase: Phase::Run,
        why: "load the eBPF programs and read their maps (kernels before 6.5 check it on every bpf() call while kernel.unprivileged_bpf_disabled is set)",
    },
    Need {
        part: "oom",
        cap: CAP_PERFMON,
        phase: Phase::Start,
        why: "load tracing programs and attach the tracepoint, exec and oom_kill_process hooks",
    },
    Need {
        part: "oom",
        cap: CAP_SYSLOG,
        phase: Phase::Run,
        why: "read /dev/kmsg (the kernel's OOM report) where kernel.dmesg_restrict = 1",
    },
    Need {
        part: "oom",
        cap: CAP_DAC_READ_SEARCH,
        phase: Phase::Run,
        why: "read tracefs (root-only) and the container runtimes' state (root-only)",
    },
    Need {
        part: "oom",
        cap: CAP_SYS_PTRACE,
        phase: Phase::Run,
        why: "read other users' /proc/PID/exe (victims) and /proc/PID/cwd (container runtimes' conmon, for container identity)",
    },
    Need {
        part: "oom",
        cap: CAP_SYS_ADMIN,
        phase: Phase::Start,
        why: "mount tracefs when nothing mounted it (not needed where it is mounted)",
    },
    Need {
        part: "oom",
        cap: CAP_NET_ADMIN,
        phase: Phase::Start,
        why: "subscribe to the kernel's process events (process_tracking: netlink, or auto without the exec hook)",
    },
    Need {
        part: "kmsg",
        cap: CAP_SYSLOG,
        phase: Phase::Run,
        why: "read /dev/kmsg where kernel.dmesg_restrict = 1",
    },
    Need {
        part: "filelog",
        cap: CAP_DAC_READ_SEARCH,
        phase: Phase::Run,
        why: "read log files of other users (group adm, root-only container logs)",
    },
    Need {
        part: "journald",
        cap: CAP_DAC_READ_SEARCH,
        phase: Phase::Run,
        why: "read the system journal (mode 0640, group systemd-journal)",
    },
    Need {
        part: "memory",
        cap: CAP_SYS_PTRACE,
        phase: Phase::Run,
        why: "read other users' /proc/PID/smaps_rollup and exe (top processes)",
    },
    Need {
        part: "memory",
        cap: CAP_DAC_READ_SEARCH,
        phase: Phase::Run,
        why: "read the container runtimes' state (root-only) to name the containers of memory cgroups",
    },
    Need {
        part: "memory",
        cap: CAP_SYS_RESOURCE,
        phase: Phase::Start,
        why: "register a PSI trigger whose window is not a multiple of 2 s (it is rounded up otherwise)",
    },
    Need {
        part: "service",
        cap: CAP_SYS_RESOURCE,
        phase: Phase::Start,
        why: "lower the agent's own oom_score_adj (systemd's OOMScoreAdjust does it instead)",
    },
];

/// Capabilities a part uses where it holds them and does without
/// otherwise: not in [`NEEDS`], so neither kept after start nor asked for
/// by `oomscope doctor`, nor in the packaged set (SECURITY.md).
pub const OPTIONAL: &[Need] = &[Need {
    part: "oom",
    cap: CAP_SYS_NICE,
    phase: Phase::Start,
    why: "raise the OOM kill thread and the urgent export thread to nice -10, so that kills are read and sent ahead of bulk work on a busy host (they keep the agent's priority otherwise)",
}];

/// [`NEEDS`] grouped by part, in table order.
#[must_use]
pub fn needs_by_part() -> Vec<(&'static str, Vec<&'static Need>)> {
    let mut parts: Vec<(&'static str, Vec<&'static Need>)> = Vec::new();
    for need in NEEDS {
        match parts.iter_mut().find(|(part, _)| *part == need.part) {
            Some((_, needs)) => needs.push(need),
            None => parts.push((need.part, vec![need])),
        }
    }
    parts
}

/// Receiver type spellings that share another's needs.
fn canonical(receiver_type: &str) -> &str {
    match receiver_type {
        "file_log" => "filelog",
        other => other,
    }
}

/// The capabilities the receivers of `receiver_types` need while running.
#[must_use]
pub fn runtime_mask<S: AsRef<str>>(receiver_types: &[S]) -> u64 {
    NEEDS
        .iter()
        .filter(|n| n.phase == Phase::Run)
        .filter(|n| {
            receiver_types
                .iter()
                .any(|t| canonical(t.as_ref()) == n.part)
        })
        .fold(0, |mask, n| mask | 1u64 << n.cap)
}

/// A capability's name as capabilities(7) spells it.
#[must_use]
pub fn capability_name(cap: u32) -> String {
    match cap {
        CAP_BPF => "CAP_BPF".to_owned(),
        CAP_PERFMON => "CAP_PERFMON".to_owned(),
        CAP_SYSLOG => "CAP_SYSLOG".to_owned(),
        CAP_DAC_READ_SEARCH => "CAP_DAC_READ_SEARCH".to_owned(),
        CAP_SYS_PTRACE => "CAP_SYS_PTRACE".to_owned(),
        CAP_SYS_ADMIN => "CAP_SYS_ADMIN".to_owned(),
        CAP_SYS_RESOURCE => "CAP_SYS_RESOURCE".to_owned(),
        CAP_SYS_NICE => "CAP_SYS_NICE".to_owned(),
        CAP_NET_ADMIN => "CAP_NET_ADMIN".to_owned(),
        other => format!("capability {other}"),
    }
}

/// Names of the capabilities in `mask`.
#[must_use]
pub fn mask_names(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|&cap| has_cap(mask, cap))
        .map(capability_name)
        .collect()
}

/// The effective, permitted and inheritable sets of one thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadCaps {
    /// `CapEff`.
    pub effective: u64,
    /// `CapPrm`.
    pub permitted: u64,
    /// `CapInh`.
    pub inheritable: u64,
}

/// Reads `CapEff`, `CapPrm` and `CapInh` from a /proc status text.
pub fn parse_thread_caps(status: &str) -> Result<ThreadCaps, String> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .ok_or_else(|| format!("no {name} line"))
            .and_then(|v| {
                u64::from_str_radix(v.trim(), 16).map_err(|e| format!("{name} {:?}: {e}", v.trim()))
            })
    };
    Ok(ThreadCaps {
        effective: field("CapEff:")?,
        permitted: field("CapPrm:")?,
        inheritable: field("CapInh:")?,
    })
}

/// What [`drop_all_but`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// Capabilities given up (from the permitted set).
    pub dropped: u64,
    /// Capabilities kept (effective).
    pub kept: u64,
    /// Threads changed.
    pub threads: usize,
}

/// The signal whose handler drops capabilities on the thread it lands on.
fn drop_signal() -> libc::c_int {
    libc::SIGRTMIN() + 6
}

/// The capset(2) data the handler applies: effective, permitted,
/// inheritable, low and high 32 bits each.
static TARGET: [AtomicU32; 6] = [
    AtomicU32::new(0),
    AtomicU32::new(0),
    AtomicU32::new(0),
    AtomicU32::new(0),
    AtomicU32::new(0),
    AtomicU32::new(0),
];
/// Handler runs so far.
static HANDLED: AtomicUsize = AtomicUsize::new(0);
/// The last errno a handler's capset failed with (0: none).
static HANDLER_ERRNO: AtomicI32 = AtomicI32::new(0);

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// capset(2) on the calling thread with [`TARGET`]; async-signal-safe (one
/// system call, atomics only).
fn apply_target() -> Result<(), i32> {
    let word = |i: usize| TARGET[i].load(Ordering::Acquire);
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: word(0),
            permitted: word(2),
            inheritable: word(4),
        },
        CapData {
            effective: word(1),
            permitted: word(3),
            inheritable: word(5),
        },
    ];
    // SAFETY: header and two data structs as capset(2) takes them for
    // version 3; both outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            std::ptr::addr_of_mut!(header),
            data.as_ptr(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
    }
}

extern "C" fn on_drop_signal(_: libc::c_int) {
    // Errno is the interrupted code's: kept as it was.
    // SAFETY: __errno_location returns this thread's errno.
    let saved = unsafe { *libc::__errno_location() };
    if let Err(errno) = apply_target() {
        HANDLER_ERRNO.store(errno, Ordering::Release);
    }
    HANDLED.fetch_add(1, Ordering::AcqRel);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

fn thread_ids() -> Result<Vec<libc::pid_t>, String> {
    let entries =
        std::fs::read_dir("/proc/self/task").map_err(|e| format!("/proc/self/task: {e}"))?;
    Ok(entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect())
}

fn thread_caps(tid: libc::pid_t) -> Option<ThreadCaps> {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
        .ok()
        .and_then(|s| parse_thread_caps(&s).ok())
}

/// Longest wait for the signalled threads of one round.
const ROUND_WAIT: Duration = Duration::from_secs(2);
/// Rounds (threads started during one are caught by the next).
const ROUNDS: usize = 8;

/// Gives up every capability not in `keep` on every thread of the process
/// (effective, permitted and inheritable sets; the ambient set follows the
/// permitted one). Capabilities not held are not gained.
pub fn drop_all_but(keep: u64) -> Result<Dropped, String> {
    let own = thread_caps(gettid()).ok_or("cannot read /proc/self/task/<tid>/status")?;
    let target = ThreadCaps {
        effective: own.effective & keep,
        permitted: own.permitted & keep,
        inheritable: own.inheritable & keep,
    };
    let halves = |v: u64| [(v & 0xffff_ffff) as u32, (v >> 32) as u32];
    for (i, v) in [target.effective, target.permitted, target.inheritable]
        .into_iter()
        .enumerate()
    {
        let [lo, hi] = halves(v);
        TARGET[2 * i].store(lo, Ordering::Release);
        TARGET[2 * i + 1].store(hi, Ordering::Release);
    }
    install_handler()?;
    let me = gettid();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut changed = 0usize;
    for _ in 0..ROUNDS {
        let pending: Vec<libc::pid_t> = thread_ids()?
            .into_iter()
            .filter(|&tid| thread_caps(tid).is_some_and(|c| c != target))
            .collect();
        if pending.is_empty() {
            return Ok(Dropped {
                dropped: own.permitted & !target.permitted,
                kept: target.effective,
                threads: changed,
            });
        }
        let before = HANDLED.load(Ordering::Acquire);
        let mut signalled = 0usize;
        for tid in pending {
            if tid == me {
                apply_target().map_err(|errno| {
                    format!("capset: {}", std::io::Error::from_raw_os_error(errno))
                })?;
                changed += 1;
                continue;
            }
            // SAFETY: tgkill with this process's pid and one of its threads;
            // a thread that ended meanwhile gives ESRCH, which is fine.
            let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, drop_signal()) };
            if rc == 0 {
                signalled += 1;
            }
        }
        let deadline = Instant::now() + ROUND_WAIT;
        while HANDLED.load(Ordering::Acquire).wrapping_sub(before) < signalled
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        changed += signalled;
        let errno = HANDLER_ERRNO.swap(0, Ordering::AcqRel);
        if errno != 0 {
            return Err(format!(
                "capset in a thread: {}",
                std::io::Error::from_raw_os_error(errno)
            ));
        }
    }
    let left: Vec<libc::pid_t> = thread_ids()?
        .into_iter()
        .filter(|&tid| thread_caps(tid).is_some_and(|c| c != target))
        .collect();
    if left.is_empty() {
        Ok(Dropped {
            dropped: own.permitted & !target.permitted,
            kept: target.effective,
            threads: changed,
        })
    } else {
        Err(format!(
            "threads {left:?} still hold capabilities after {ROUNDS} rounds"
        ))
    }
}

fn install_handler() -> Result<(), String> {
    let signal = drop_signal();
    // SAFETY: reading the current disposition into a zeroed sigaction.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the old one.
    if unsafe { libc::sigaction(signal, std::ptr::null(), &mut old) } != 0 {
        return Err(format!("sigaction: {}", std::io::Error::last_os_error()));
    }
    let ours = on_drop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    if old.sa_sigaction == ours {
        return Ok(());
    }
    if old.sa_sigaction != libc::SIG_DFL {
        return Err(format!("signal {signal} already has a handler"));
    }
    // SAFETY: a zeroed sigaction with our handler, every signal unblocked
    // while it runs, interrupted system calls restarted.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ours;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
            return Err(format!("sigaction: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Sets the calling thread's nice value to `nice` (a raise: lower than the
/// agent's needs `CAP_SYS_NICE` or `RLIMIT_NICE`); without the right it
/// keeps the agent's priority, which is logged at debug level.
pub(crate) fn raise_thread_priority(nice: i32, thread: &str) {
    let Ok(tid) = libc::id_t::try_from(gettid()) else {
        return;
    };
    // SAFETY: setpriority has no memory preconditions; on Linux,
    // PRIO_PROCESS with a thread id sets that thread's nice value alone.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) };
    if rc != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            nice,
            thread,
            "the thread keeps the agent's priority (raising it needs CAP_SYS_NICE)"
        );
    }
}

/// The calling thread's id.
pub(crate) fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_needs_follow_the_receivers() {
        assert_eq!(runtime_mask::<&str>(&[]), 0);
        assert_eq!(runtime_mask(&["otlp"]), 0);
        assert_eq!(runtime_mask(&["kmsg"]), 1 << CAP_SYSLOG);
        assert_eq!(
            runtime_mask(&["file_log", "journald"]),
            1 << CAP_DAC_READ_SEARCH
        );
        let oom = runtime_mask(&["oom"]);
        assert_eq!(
            mask_names(oom),
            [
                "CAP_DAC_READ_SEARCH",
                "CAP_SYS_PTRACE",
                "CAP_SYSLOG",
                "CAP_BPF"
            ]
        );
        assert!(!has_cap(oom, CAP_PERFMON), "attaching is start-up only");
        assert!(!has_cap(oom, CAP_SYS_ADMIN));
    }

    #[test]
    fn thread_caps_are_parsed() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t000000c400080004\nCapEff:\t000000c400080004\n";
        assert_eq!(
            parse_thread_caps(status),
            Ok(ThreadCaps {
                effective: 0xc4_0008_0004,
                permitted: 0xc4_0008_0004,
                inheritable: 0,
            })
        );
        assert!(parse_thread_caps("CapEff:\tzz\n").is_err());
        assert!(parse_thread_caps("").is_err());
    }

    /// The real drop, in a child process (it cannot be undone): every
    /// thread, those started before and after, ends with exactly the kept
    /// set. Root only (others have nothing to drop).
    #[test]
    fn every_thread_keeps_only_what_is_asked() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!(
                "SKIPPED every_thread_keeps_only_what_is_asked: needs root (CI runs as root)"
            );
            return;
        }
        if std::env::var_os("OOMSCOPE_PRIVILEGES_CHILD").is_some() {
            return;
        }
        let exe = std::env::current_exe().expect("test binary");
        let output = std::process::Command::new(exe)
            .args([
                "--exact",
                "privileges::tests::drop_in_child",
                "--include-ignored",
                "--nocapture",
            ])
            .env("OOMSCOPE_PRIVILEGES_CHILD", "1")
            .output()
            .expect("run the child");
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
    }

    /// Run by [`every_thread_keeps_only_what_is_asked`] in a child process.
    #[test]
    #[ignore = "run in a child by every_thread_keeps_only_what_is_asked"]
    fn drop_in_child() {
        if std::env::var_os("OOMSCOPE_PRIVILEGES_CHILD").is_none() {
            return;
        }
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let stop_rx = std::sync::Arc::new(std::sync::Mutex::new(stop_rx));
        // Threads blocked in a system call, as tokio's are in epoll_wait.
        let sleepers: Vec<_> = (0..4)
            .map(|_| {
                let rx = std::sync::Arc::clone(&stop_rx);
                std::thread::spawn(move || {
                    let _ = rx.lock().map(|rx| rx.recv());
                })
            })
            .collect();
        let keep = 1 << CAP_SYSLOG | 1 << CAP_BPF;
        let dropped = drop_all_but(keep).expect("drop");
        assert_eq!(dropped.kept, keep);
        assert!(has_cap(dropped.dropped, CAP_SYS_ADMIN));
        // A thread started afterwards inherits the reduced sets.
        let late = std::thread::spawn(|| thread_caps(gettid()).expect("caps"))
            .join()
            .expect("join");
        assert_eq!(late.effective, keep);
        for tid in thread_ids().expect("tasks") {
            let caps = thread_caps(tid).expect("caps");
            assert_eq!(caps.effective, keep, "thread {tid}");
            assert_eq!(caps.permitted, keep, "thread {tid}");
        }
        // What was given up cannot be taken back.
        TARGET[0].store(u32::MAX, Ordering::Release);
        TARGET[2].store(u32::MAX, Ordering::Release);
        assert!(apply_target().is_err());
        drop(stop_tx);
        for s in sleepers {
            s.join().expect("join");
        }
    }
}
