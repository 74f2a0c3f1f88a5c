//! Loads and attaches the `oom/mark_victim` tracepoint program and streams
//! its [`OomVictimEvent`]s; next to it, when the kernel has the syscall
//! tracepoints, the exec hook that records command lines
//! ([`super::exec_args`]). The exec hook is optional: without it (no
//! `CONFIG_FTRACE_SYSCALLS`, or its programs refused) mark_victim works as
//! before and [`MarkVictimProbe::exec_hooks`] says why.
//!
//! Needs root (CAP_BPF + CAP_PERFMON, or CAP_SYS_ADMIN) and a kernel with the
//! `oom/mark_victim` tracepoint and BPF ring buffers (5.8+).

use std::{
    io,
    mem::size_of,
    path::{Path, PathBuf},
};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, MapError, PerCpuArray, RingBuf},
    programs::{FEntry, KProbe, ProgramError, TracePoint},
    util::KernelVersion,
    Ebpf, EbpfError, EbpfLoader,
};
use receiver_common::exec::{
    ExecArgs, ExecLayout, EXECVEAT_PROGRAM, EXECVE_PROGRAM, EXEC_ARGS_ENTRIES, EXEC_ARGS_MAP,
    EXEC_LAYOUT_GLOBAL, EXITED_ARGS_MAP, PENDING_ARGS_MAP, PROCESS_EXEC_PROGRAM,
    PROCESS_EXIT_PROGRAM,
};
use receiver_common::oom::{
    MarkVictimLayout, OomVictimEvent, DROPS_MAP, FIELD_ABSENT, MARK_VICTIM_LAYOUT_GLOBAL,
    MARK_VICTIM_PROGRAM, OOM_EVENTS_MAP,
};
use receiver_common::oom_scope::{
    OomControlLayout, OomScopeEvent, OOM_CONTROL_LAYOUT_GLOBAL, OOM_KILL_FUNCTION,
    OOM_SCOPE_EVENTS_MAP, SCOPE_FENTRY_PROGRAM, SCOPE_KPROBE_PROGRAM,
};
use tokio::io::{unix::AsyncFd, Interest};

use super::scope_hook::{layout_from_btf, ScopeHookChoice, ScopeHookStatus};

use super::btf::{Btf, TaskOffsets, VMLINUX_BTF};
use super::exec_args::{parse_exec_format, parse_exit_format, parse_process_exec_format};
use super::format::{parse_mark_victim_format, FormatError};

/// The eBPF object built by `build.rs` from the `receiver-ebpf` crate.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/receiver-ebpf"));

/// Where tracefs is found, in the order aya looks for it.
pub const TRACEFS_DIRS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
/// The tracepoint's format file, relative to a tracefs directory.
const MARK_VICTIM_FORMAT: &str = "events/oom/mark_victim/format";
const TRACEPOINT_CATEGORY: &str = "oom";
const TRACEPOINT_NAME: &str = "mark_victim";
/// The exec hook's tracepoints' format files, relative to a tracefs directory.
pub const EXECVE_FORMAT: &str = "events/syscalls/sys_enter_execve/format";
const EXECVEAT_FORMAT: &str = "events/syscalls/sys_enter_execveat/format";
const PROCESS_EXIT_FORMAT: &str = "events/sched/sched_process_exit/format";
const PROCESS_EXEC_FORMAT: &str = "events/sched/sched_process_exec/format";
/// Longest explanation kept of why the exec hook is off (a verifier log can
/// run to pages).
const MAX_REASON: usize = 400;

/// Whether the exec hook records command lines, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecHookStatus {
    /// `sys_enter_execve` is attached.
    Attached {
        /// `sys_enter_execveat` is attached too.
        execveat: bool,
        /// `sched_process_exit` is attached: a dead process's entry moves
        /// to the map of exited ones (else the map only evicts its oldest).
        exit: bool,
        /// The facts recorded besides argv, and why any is not.
        facts: ExecFacts,
    },
    /// Not recording; why.
    Unavailable(String),
}

/// What the exec hook records besides argv, from the layout it was loaded
/// with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecFacts {
    /// The exec'd path (`sched_process_exec`'s `filename`).
    pub path: bool,
    /// The parent's pid (BTF: `task_struct.real_parent`, `.tgid`).
    pub parent: bool,
    /// The start time (BTF: `task_struct.start_boottime`).
    pub start: bool,
    /// Why BTF gave no offsets, when it did not.
    pub btf_error: Option<String>,
}

impl ExecFacts {
    fn of(layout: &ExecLayout, btf_error: Option<String>) -> Self {
        Self {
            path: layout.exec_filename != FIELD_ABSENT,
            parent: layout.task_real_parent != FIELD_ABSENT && layout.task_tgid != FIELD_ABSENT,
            start: layout.task_start_boottime != FIELD_ABSENT,
            btf_error,
        }
    }

    /// What is not recorded and why, or `None` when everything is.
    #[must_use]
    pub fn missing(&self) -> Option<String> {
        let missing: Vec<&str> = [
            (
                !self.path,
                "the exec'd path (no filename in sched/sched_process_exec)",
            ),
            (!self.parent, "the parent pid"),
            (!self.start, "the start time"),
        ]
        .into_iter()
        .filter_map(|(missing, what)| missing.then_some(what))
        .collect();
        if missing.is_empty() {
            return None;
        }
        let mut text = missing.join(", ");
        if !self.parent || !self.start {
            match &self.btf_error {
                Some(why) => text.push_str(&format!(" (kernel BTF: {why})")),
                None => text.push_str(&format!(" (not found in {VMLINUX_BTF})")),
            }
        }
        Some(text)
    }
}

impl std::fmt::Display for ExecHookStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Attached {
                execveat,
                exit,
                facts,
            } => {
                write!(f, "syscalls/sys_enter_execve")?;
                if *execveat {
                    write!(f, " and sys_enter_execveat")?;
                }
                write!(f, " attached")?;
                match facts.missing() {
                    None => write!(f, " (argv, exec'd path, parent and start)")?,
                    Some(missing) => write!(f, " (not recorded: {missing})")?,
                }
                if !*exit {
                    write!(f, " (sched/sched_process_exit not attached: entries of dead processes stay until evicted)")?;
                }
                Ok(())
            }
            Self::Unavailable(why) => f.write_str(why),
        }
    }
}

/// The exec hook's maps: argv of live and of recently exited processes.
struct ExecArgsMaps {
    live: BpfHashMap<MapData, u32, ExecArgs>,
    exited: BpfHashMap<MapData, u32, ExecArgs>,
}

/// Why the probe could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// tracefs is not mounted and mounting it failed.
    #[error("{}", super::tracefs::mount_failure_warning(.0))]
    MountTracefs(#[source] io::Error),
    /// The kernel has no `oom/mark_victim` tracepoint.
    #[error("the kernel has no oom/mark_victim tracepoint (no {MARK_VICTIM_FORMAT} under {TRACEFS_DIRS:?})")]
    NoTracepoint,
    /// The tracepoint's format file could not be read.
    #[error("reading {path}: {source}")]
    ReadFormat {
        /// The format file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The tracepoint's format file could not be understood.
    #[error("parsing {path}: {source}")]
    Format {
        /// The format file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: FormatError,
    },
    /// The binary was built with `AYA_BUILD_SKIP=1` (fuzzing builds): it
    /// embeds no eBPF object.
    #[error("this oomscope was built without its eBPF object (AYA_BUILD_SKIP); rebuild it without AYA_BUILD_SKIP")]
    NoObject,
    /// The eBPF object could not be loaded (maps created, relocations applied).
    #[error("loading the eBPF object: {0}")]
    Object(#[source] EbpfError),
    /// The program is not in the object (a build problem).
    #[error("program {0} not found in the eBPF object")]
    MissingProgram(&'static str),
    /// The map is not in the object (a build problem).
    #[error("map {0} not found in the eBPF object")]
    MissingMap(&'static str),
    /// The program could not be loaded into the kernel or attached.
    #[error("{action} program {MARK_VICTIM_PROGRAM}: {source}")]
    Program {
        /// `loading` or `attaching`.
        action: &'static str,
        /// aya's error (for a load failure, it includes the verifier log).
        #[source]
        source: ProgramError,
    },
    /// A map could not be opened with the expected type.
    #[error("opening map {name}: {source}")]
    Map {
        /// The map.
        name: &'static str,
        /// aya's error.
        #[source]
        source: MapError,
    },
    /// Loading failed and this process is denied eBPF: `why` names the
    /// missing capabilities or the seccomp filter (the kernel's own error,
    /// e.g. "failed to create map", does not).
    #[error("{why} (the load failed with: {source})")]
    Denied {
        /// From [`super::access::EbpfAccess::explain`].
        why: String,
        /// The load error.
        #[source]
        source: Box<LoadError>,
    },
    /// The ring buffer could not be registered with the tokio reactor.
    #[error("registering the ring buffer with the tokio reactor: {0}")]
    Reactor(#[source] io::Error),
}

impl LoadError {
    /// Whether the kernel lacks what the probe needs (tracefs or the tracepoint),
    /// as opposed to a fault in oomscope or a lack of privileges.
    #[must_use]
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Self::MountTracefs(_) | Self::NoTracepoint)
    }
}

/// The attached `oom/mark_victim` program and its maps. Dropping it detaches
/// the program and frees the maps.
pub struct MarkVictimProbe {
    events: AsyncFd<RingBuf<MapData>>,
    drops: PerCpuArray<MapData, u64>,
    layout: MarkVictimLayout,
    exec_args: Option<ExecArgsMaps>,
    exec_hooks: ExecHookStatus,
    scope_events: Option<AsyncFd<RingBuf<MapData>>>,
    scope_hook: ScopeHookStatus,
    /// A victim event read while its hook event was still unread.
    held_victim: Option<OomVictimEvent>,
    // Owns the program and its link; kept last so it is dropped after the maps.
    _ebpf: Ebpf,
}

impl std::fmt::Debug for MarkVictimProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarkVictimProbe")
            .field("layout", &self.layout)
            .field("exec_hooks", &self.exec_hooks)
            .finish_non_exhaustive()
    }
}

impl MarkVictimProbe {
    /// The record layout the program was loaded with.
    #[must_use]
    pub fn layout(&self) -> MarkVictimLayout {
        self.layout
    }

    /// Waits for the next event. Cancel-safe: an event is taken off the ring
    /// buffer only in the poll that returns it.
    pub async fn next_event(&mut self) -> io::Result<OomVictimEvent> {
        next_victim(&mut self.events).await
    }

    /// Waits for the next event of either program. An `oom_kill_process`
    /// event comes before the victim event the kernel sent after it: the
    /// hook's ring buffer is read without waiting for its wake-up before a
    /// victim event is handed out. Cancel-safe, as [`Self::next_event`].
    pub async fn next_any(&mut self) -> io::Result<ProbeEvent> {
        if let Some(scope) = self.try_scope() {
            return Ok(ProbeEvent::Scope(scope));
        }
        if let Some(victim) = self.held_victim.take() {
            return Ok(ProbeEvent::Victim(victim));
        }
        let event = {
            let Self {
                events,
                scope_events,
                ..
            } = self;
            tokio::select! {
                biased;
                scope = next_scope(scope_events) => scope.map(ProbeEvent::Scope)?,
                victim = next_victim(events) => victim.map(ProbeEvent::Victim)?,
            }
        };
        if let ProbeEvent::Victim(victim) = event {
            if let Some(scope) = self.try_scope() {
                self.held_victim = Some(victim);
                return Ok(ProbeEvent::Scope(scope));
            }
        }
        Ok(event)
    }

    /// An `oom_kill_process` event already in its ring buffer.
    fn try_scope(&mut self) -> Option<OomScopeEvent> {
        let ring = self.scope_events.as_mut()?.get_mut();
        let item = ring.next()?;
        decode_scope(&item)
    }

    /// The `oom_kill_process` hook in use, or why none is.
    #[must_use]
    pub fn scope_hook(&self) -> &ScopeHookStatus {
        &self.scope_hook
    }

    /// Whether command lines are recorded at exec, and if not, why.
    #[must_use]
    pub fn exec_hooks(&self) -> &ExecHookStatus {
        &self.exec_hooks
    }

    /// The argv entries recorded for `pid`: the live process's, then the
    /// exited one's (which are not necessarily the same process: the caller
    /// checks, see [`super::exec_args::victim_args`]).
    #[must_use]
    pub fn exec_args(&self, pid: i32) -> Vec<ExecArgs> {
        let (Some(maps), Ok(key)) = (&self.exec_args, u32::try_from(pid)) else {
            return Vec::new();
        };
        [&maps.live, &maps.exited]
            .into_iter()
            .filter_map(|map| map.get(&key, 0).ok())
            .collect()
    }

    /// Seeds the exec hook's map of live processes with `entries` (pid,
    /// entry) of processes exec'd before it was attached (built from /proc,
    /// [`super::exec_args::entry_from_proc`]); an entry the hook recorded
    /// meanwhile is kept (`BPF_NOEXIST`). At most the map's size. The number
    /// seeded.
    pub fn seed_exec_args(&mut self, entries: impl IntoIterator<Item = (u32, ExecArgs)>) -> usize {
        /// bpf(2)'s `BPF_NOEXIST`: insert only where the key is absent.
        const BPF_NOEXIST: u64 = 1;
        let Some(maps) = &mut self.exec_args else {
            return 0;
        };
        entries
            .into_iter()
            .take(EXEC_ARGS_ENTRIES as usize)
            .filter(|(pid, entry)| maps.live.insert(pid, entry, BPF_NOEXIST).is_ok())
            .count()
    }

    /// Events dropped so far because the ring buffer was full, summed over CPUs.
    pub fn drops(&self) -> Result<u64, MapError> {
        let per_cpu = self.drops.get(&0, 0)?;
        Ok(per_cpu.iter().fold(0u64, |sum, n| sum.wrapping_add(*n)))
    }
}

/// An event of the loaded programs.
#[derive(Debug, Clone, Copy)]
pub enum ProbeEvent {
    /// `oom/mark_victim`.
    Victim(OomVictimEvent),
    /// The `oom_kill_process` hook.
    Scope(OomScopeEvent),
}

async fn next_victim(events: &mut AsyncFd<RingBuf<MapData>>) -> io::Result<OomVictimEvent> {
    loop {
        let mut guard = events.readable_mut().await?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            if let Some(event) = decode_event(&item) {
                return Ok(event);
            }
            tracing::warn!(
                len = item.len(),
                "skipping a ring buffer record of unexpected size"
            );
        }
        // Drained: wait for the kernel's next wake-up.
        guard.clear_ready();
    }
}

/// Never returns without the hook.
async fn next_scope(events: &mut Option<AsyncFd<RingBuf<MapData>>>) -> io::Result<OomScopeEvent> {
    let Some(events) = events else {
        return std::future::pending().await;
    };
    loop {
        let mut guard = events.readable_mut().await?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            if let Some(event) = decode_scope(&item) {
                return Ok(event);
            }
        }
        guard.clear_ready();
    }
}

fn decode_scope(bytes: &[u8]) -> Option<OomScopeEvent> {
    if bytes.len() < size_of::<OomScopeEvent>() {
        tracing::warn!(
            len = bytes.len(),
            "skipping a scope record of unexpected size"
        );
        return None;
    }
    // SAFETY: length checked; `OomScopeEvent` is `Pod` (any bit pattern is
    // valid); the ring buffer aligns to 8 only, so read unaligned.
    Some(unsafe { bytes.as_ptr().cast::<OomScopeEvent>().read_unaligned() })
}

fn decode_event(bytes: &[u8]) -> Option<OomVictimEvent> {
    if bytes.len() < size_of::<OomVictimEvent>() {
        return None;
    }
    // SAFETY: the length is checked above and `OomVictimEvent` is `Pod` (any
    // bit pattern is valid); the ring buffer gives no alignment guarantee
    // beyond 8, so read unaligned anyway.
    Some(unsafe { bytes.as_ptr().cast::<OomVictimEvent>().read_unaligned() })
}

/// Finds the tracepoint's format file, mounting tracefs first if needed.
pub fn tracepoint_format_path() -> Result<PathBuf, LoadError> {
    ensure_tracefs()?;
    TRACEFS_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(MARK_VICTIM_FORMAT))
        .find(|path| path.is_file())
        .ok_or(LoadError::NoTracepoint)
}

/// Reads the first of `relative` found under a tracefs directory.
fn read_tracefs(relative: &str) -> Result<String, String> {
    let path = TRACEFS_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(relative))
        .find(|path| path.is_file())
        .ok_or_else(|| format!("no {relative} under {TRACEFS_DIRS:?}"))?;
    std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// The exec hook's layout from this kernel's format files (tracefs must be
/// mounted) and BTF, or why the hook cannot run: `sys_enter_execve` is
/// required; `sys_enter_execveat`, `sched_process_exit`'s `group_dead`,
/// `sched_process_exec`'s `filename` and the `task_struct` offsets are used
/// when present.
pub fn exec_layout() -> Result<ExecLayout, String> {
    exec_layout_and_btf_error(&kernel_btf()).map(|(layout, _)| layout)
}

/// The kernel's BTF, parsed once for every program that needs offsets from
/// it (dropped before the programs load).
fn kernel_btf() -> Result<Btf, String> {
    Btf::read(Path::new(VMLINUX_BTF)).map_err(|e| e.to_string())
}

/// [`exec_layout`], and why the kernel's BTF gave no offsets, when it did not.
fn exec_layout_and_btf_error(
    btf: &Result<Btf, String>,
) -> Result<(ExecLayout, Option<String>), String> {
    let execve = read_tracefs(EXECVE_FORMAT).map_err(|e| {
        format!("the kernel has no syscalls/sys_enter_execve tracepoint (CONFIG_FTRACE_SYSCALLS off?): {e}")
    })?;
    let argv = parse_exec_format(&execve).map_err(|e| format!("parsing {EXECVE_FORMAT}: {e}"))?;
    let mut layout = ExecLayout {
        execve_argv: argv,
        ..ExecLayout::ABSENT
    };
    if let Some(argv) = read_tracefs(EXECVEAT_FORMAT)
        .ok()
        .and_then(|text| parse_exec_format(&text).ok())
    {
        layout.execveat_argv = argv;
    }
    layout.exit_group_dead = read_tracefs(PROCESS_EXIT_FORMAT)
        .ok()
        .and_then(|text| parse_exit_format(&text))
        .unwrap_or(FIELD_ABSENT);
    layout.exec_filename = read_tracefs(PROCESS_EXEC_FORMAT)
        .ok()
        .and_then(|text| parse_process_exec_format(&text))
        .unwrap_or(FIELD_ABSENT);
    let btf_error = match btf.as_ref().map(TaskOffsets::from_btf) {
        Ok(task) => {
            if task.has_parent() {
                layout.task_real_parent = task.real_parent.unwrap_or(FIELD_ABSENT);
                layout.task_tgid = task.tgid.unwrap_or(FIELD_ABSENT);
            }
            layout.task_start_boottime = task.start_boottime.unwrap_or(FIELD_ABSENT);
            None
        }
        Err(e) => Some(e.clone()),
    };
    Ok((layout, btf_error))
}

/// What the loader attaches besides `oom/mark_victim`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// The `oom_kill_process` hook's attach type.
    pub scope_hook: ScopeHookChoice,
}

/// Loads and attaches the program with the layout read from this kernel's
/// tracepoint format file.
pub fn load_mark_victim() -> Result<MarkVictimProbe, LoadError> {
    load_mark_victim_with(LoadOptions::default())
}

/// [`load_mark_victim`] with `options`.
pub fn load_mark_victim_with(options: LoadOptions) -> Result<MarkVictimProbe, LoadError> {
    let path = tracepoint_format_path()?;
    let text = std::fs::read_to_string(&path).map_err(|source| LoadError::ReadFormat {
        path: path.clone(),
        source,
    })?;
    let layout =
        parse_mark_victim_format(&text).map_err(|source| LoadError::Format { path, source })?;
    attach_mark_victim(layout, options).map_err(with_access_diagnosis)
}

/// Wraps a load error in what denies eBPF to this process, when something
/// does (probed only after a failure: a healthy start makes no extra calls).
fn with_access_diagnosis(error: LoadError) -> LoadError {
    match error {
        LoadError::Object(_) | LoadError::Program { .. } | LoadError::Map { .. } => {
            match super::access::EbpfAccess::probe().explain() {
                Some(why) => LoadError::Denied {
                    why,
                    source: Box::new(error),
                },
                None => error,
            }
        }
        other => other,
    }
}

/// Loads and attaches the program with the given record layout. For tests
/// (e.g. a pid-only layout as on older kernels) and for callers that got the
/// layout elsewhere. Must be called within a tokio runtime (the ring buffer
/// is registered with its reactor).
pub fn load_mark_victim_with_layout(
    layout: MarkVictimLayout,
) -> Result<MarkVictimProbe, LoadError> {
    attach_mark_victim(layout, LoadOptions::default()).map_err(with_access_diagnosis)
}

fn attach_mark_victim(
    layout: MarkVictimLayout,
    options: LoadOptions,
) -> Result<MarkVictimProbe, LoadError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(LoadError::Reactor(io::Error::other(
            "no tokio runtime: the ring buffer needs one to wait for events",
        )));
    }
    if EBPF_OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    ensure_tracefs()?;
    raise_memlock_rlimit();

    let btf = kernel_btf();
    let exec = exec_layout_and_btf_error(&btf);
    let exec_layout = exec
        .as_ref()
        .map(|(layout, _)| *layout)
        .unwrap_or(ExecLayout::ABSENT);
    let scope_layout = match options.scope_hook {
        ScopeHookChoice::Off => Err("scope_hook: off".to_owned()),
        _ => scope_layout(&btf),
    };
    // The fentry hook names its function by BTF id.
    let fentry_target = btf
        .as_ref()
        .ok()
        .and_then(|btf| btf.func_id(OOM_KILL_FUNCTION));
    // The raw BTF and its index are not needed past the offsets.
    drop(btf);
    let mut loader = EbpfLoader::new();
    // No BTF relocations: the programs carry no CO-RE relocations (every
    // kernel offset they use comes from the globals set here, read from the
    // kernel's BTF by `super::btf`). With the patched aya (vendor/aya) the
    // loader then never parses the kernel BTF (a 5 MB vmlinux takes about
    // 19 MB parsed); only the fentry fallback does.
    loader.btf(None);
    // What our own BTF read took is free now.
    crate::heap_stats::return_freed_pages();
    loader
        .override_global(MARK_VICTIM_LAYOUT_GLOBAL, &layout, true)
        .override_global(EXEC_LAYOUT_GLOBAL, &exec_layout, true)
        .override_global(
            OOM_CONTROL_LAYOUT_GLOBAL,
            scope_layout.as_ref().unwrap_or(&OomControlLayout::ABSENT),
            true,
        );
    if exec.is_err() {
        // The maps are preallocated: do not pay for a hook that cannot run.
        loader
            .map_max_entries(PENDING_ARGS_MAP, 1)
            .map_max_entries(EXEC_ARGS_MAP, 1)
            .map_max_entries(EXITED_ARGS_MAP, 1);
    }
    let mut ebpf = loader.load(EBPF_OBJECT).map_err(LoadError::Object)?;

    let program: &mut TracePoint = ebpf
        .program_mut(MARK_VICTIM_PROGRAM)
        .ok_or(LoadError::MissingProgram(MARK_VICTIM_PROGRAM))?
        .try_into()
        .map_err(|source| LoadError::Program {
            action: "loading",
            source,
        })?;
    program.load().map_err(|source| LoadError::Program {
        action: "loading",
        source,
    })?;
    program
        .attach(TRACEPOINT_CATEGORY, TRACEPOINT_NAME)
        .map_err(|source| LoadError::Program {
            action: "attaching",
            source,
        })?;

    let events = ebpf
        .take_map(OOM_EVENTS_MAP)
        .ok_or(LoadError::MissingMap(OOM_EVENTS_MAP))?;
    let events = RingBuf::try_from(events).map_err(|source| LoadError::Map {
        name: OOM_EVENTS_MAP,
        source,
    })?;
    // Only readability matters: the kernel wakes the fd when records arrive.
    // SAFETY: the ring buffer owns its map fd, which stays open and unchanged
    // for as long as the `RingBuf` (and so the `AsyncFd`) lives.
    let events = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
        .map_err(|err| LoadError::Reactor(err.into_parts().1))?;
    let drops = ebpf
        .take_map(DROPS_MAP)
        .ok_or(LoadError::MissingMap(DROPS_MAP))?;
    let drops = PerCpuArray::try_from(drops).map_err(|source| LoadError::Map {
        name: DROPS_MAP,
        source,
    })?;

    let (exec_args, exec_hooks) = match exec {
        Ok((exec_layout, btf_error)) => attach_exec_hooks(&mut ebpf, &exec_layout, btf_error),
        Err(why) => (None, ExecHookStatus::Unavailable(why)),
    };
    let (scope_events, scope_hook) = match scope_layout {
        Ok(_) => attach_scope_hook(&mut ebpf, options.scope_hook, fentry_target),
        Err(why) => (None, ScopeHookStatus::Unavailable(why)),
    };
    // What the BTF parses and the object's ELF took is free now.
    crate::heap_stats::return_freed_pages();

    Ok(MarkVictimProbe {
        events,
        drops,
        layout,
        exec_args,
        exec_hooks,
        scope_events,
        scope_hook,
        held_victim: None,
        _ebpf: ebpf,
    })
}

/// The `oom_kill_process` hook's offsets from the kernel's BTF, or why they
/// cannot be had.
fn scope_layout(btf: &Result<Btf, String>) -> Result<OomControlLayout, String> {
    let btf = btf
        .as_ref()
        .map_err(|e| format!("no kernel BTF ({VMLINUX_BTF}): {e}"))?;
    layout_from_btf(btf).ok_or_else(|| {
        "the kernel's BTF lacks struct oom_control's chosen, constraint or memcg".to_owned()
    })
}

/// Attaches the `oom_kill_process` hook as `choice` allows (kprobe first)
/// and opens its ring buffer; any failure leaves it off and says why.
///
/// `auto` tries the kprobe first: the hook runs once per OOM kill, so
/// fentry's lower cost per call buys nothing, while loading an fentry
/// program through aya takes aya's parse of the whole kernel BTF (about
/// 19 MB of heap for a 5 MB vmlinux, let go after the load but counted in
/// the agent's peak RSS). fentry stays the fallback for kernels without
/// kprobes.
fn attach_scope_hook(
    ebpf: &mut Ebpf,
    choice: ScopeHookChoice,
    fentry_target: Option<u32>,
) -> (Option<AsyncFd<RingBuf<MapData>>>, ScopeHookStatus) {
    let mut refused = Vec::new();
    let mut hook = None;
    if matches!(choice, ScopeHookChoice::Auto | ScopeHookChoice::Kprobe) {
        match attach_kprobe(ebpf) {
            Ok(()) => hook = Some(ScopeHookStatus::Kprobe),
            Err(why) => refused.push(format!("kprobe: {why}")),
        }
    }
    if hook.is_none() && matches!(choice, ScopeHookChoice::Auto | ScopeHookChoice::Fentry) {
        match attach_fentry(ebpf, fentry_target) {
            Ok(()) => hook = Some(ScopeHookStatus::Fentry),
            Err(why) => refused.push(format!("fentry: {why}")),
        }
    }
    let unavailable = |why: String| {
        let why = match why.char_indices().nth(MAX_REASON) {
            Some((at, _)) => format!("{}…", &why[..at]),
            None => why,
        };
        (None, ScopeHookStatus::Unavailable(why))
    };
    let Some(hook) = hook else {
        return unavailable(refused.join("; "));
    };
    let Some(map) = ebpf.take_map(OOM_SCOPE_EVENTS_MAP) else {
        return unavailable(format!("no {OOM_SCOPE_EVENTS_MAP} map in the eBPF object"));
    };
    let ring = match RingBuf::try_from(map) {
        Ok(ring) => ring,
        Err(e) => return unavailable(format!("{OOM_SCOPE_EVENTS_MAP}: {e}")),
    };
    // SAFETY: as for OOM_EVENTS: the ring buffer owns its fd for as long
    // as the AsyncFd lives.
    match unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) } {
        Ok(fd) => (Some(fd), hook),
        Err(e) => unavailable(format!(
            "registering {OOM_SCOPE_EVENTS_MAP}: {}",
            e.into_parts().1
        )),
    }
}

/// `target`: `oom_kill_process`'s id in the kernel's BTF (from
/// `super::btf`), `None` when the BTF lacks it or could not be read.
fn attach_fentry(ebpf: &mut Ebpf, target: Option<u32>) -> Result<(), String> {
    let target = target
        .ok_or_else(|| format!("kernel BTF: no function {OOM_KILL_FUNCTION} in {VMLINUX_BTF}"))?;
    // A kernel that refuses fentry programs (lockdown, no trampolines for
    // the function) refuses this two-instruction one too: find out before
    // paying for aya's parse of the kernel BTF.
    probe_fentry_load(target)
        .map_err(|e| format!("loading: the BPF_PROG_LOAD syscall returned {e}"))?;
    let btf = aya::Btf::from_sys_fs().map_err(|e| format!("kernel BTF: {e}"))?;
    let program: &mut FEntry = ebpf
        .program_mut(SCOPE_FENTRY_PROGRAM)
        .ok_or_else(|| format!("program {SCOPE_FENTRY_PROGRAM} not in the eBPF object"))?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    program
        .load(OOM_KILL_FUNCTION, &btf)
        .map_err(|e| format!("loading: {e:#}"))?;
    program
        .attach()
        .map(|_| ())
        .map_err(|e| format!("attaching to {OOM_KILL_FUNCTION}: {e:#}"))
}

/// Loads (and closes) an fentry program that returns 0, on the function
/// with BTF id `target`: whether the kernel accepts fentry programs there.
fn probe_fentry_load(target: u32) -> io::Result<()> {
    use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_prog_type};
    use std::os::fd::{FromRawFd as _, OwnedFd};
    // `r0 = 0; exit`: opcode bytes only (registers, offset and immediate
    // are zero), the same in either byte order.
    const PROGRAM: [[u8; 8]; 2] = [[0xb7, 0, 0, 0, 0, 0, 0, 0], [0x95, 0, 0, 0, 0, 0, 0, 0]];
    // fentry programs must be GPL-compatible (ours are).
    const LICENSE: &std::ffi::CStr = c"GPL";
    // SAFETY: bpf_attr is plain data; all zeroes is its documented default.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing the BPF_PROG_LOAD member of the zeroed union.
    let load = unsafe { &mut attr.__bindgen_anon_3 };
    load.prog_type = bpf_prog_type::BPF_PROG_TYPE_TRACING as u32;
    load.expected_attach_type = bpf_attach_type::BPF_TRACE_FENTRY as u32;
    load.insn_cnt = PROGRAM.len() as u32;
    load.insns = PROGRAM.as_ptr() as u64;
    load.license = LICENSE.as_ptr() as u64;
    load.attach_btf_id = target;
    // SAFETY: `attr` and the buffers it points to outlive the call; the
    // kernel reads at most `size_of::<bpf_attr>()` bytes of it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_PROG_LOAD as libc::c_long,
            &raw mut attr,
            std::mem::size_of::<bpf_attr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("file descriptor out of range"))?;
    // SAFETY: BPF_PROG_LOAD returned a new descriptor that nothing else owns.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(())
}

fn attach_kprobe(ebpf: &mut Ebpf) -> Result<(), String> {
    let program: &mut KProbe = ebpf
        .program_mut(SCOPE_KPROBE_PROGRAM)
        .ok_or_else(|| format!("program {SCOPE_KPROBE_PROGRAM} not in the eBPF object"))?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    program.load().map_err(|e| format!("loading: {e:#}"))?;
    program
        .attach(OOM_KILL_FUNCTION, 0)
        .map(|_| ())
        .map_err(|e| format!("attaching to {OOM_KILL_FUNCTION}: {e:#}"))
}

/// Loads and attaches the tracepoint program `name` on `category/event`.
fn attach_tracepoint(
    ebpf: &mut Ebpf,
    name: &str,
    category: &str,
    event: &str,
) -> Result<(), String> {
    let program: &mut TracePoint = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("program {name} not found in the eBPF object"))?
        .try_into()
        .map_err(|e| format!("program {name}: {e}"))?;
    program
        .load()
        .map_err(|e| format!("loading program {name}: {e:#}"))?;
    program
        .attach(category, event)
        .map_err(|e| format!("attaching program {name} to {category}/{event}: {e:#}"))?;
    Ok(())
}

/// Attaches the exec hook's programs and opens its maps; any failure leaves
/// the hook off (mark_victim works without it) and says why.
fn attach_exec_hooks(
    ebpf: &mut Ebpf,
    layout: &ExecLayout,
    btf_error: Option<String>,
) -> (Option<ExecArgsMaps>, ExecHookStatus) {
    let unavailable = |why: String| {
        let why = match why.char_indices().nth(MAX_REASON) {
            Some((at, _)) => format!("{}…", &why[..at]),
            None => why,
        };
        (None, ExecHookStatus::Unavailable(why))
    };
    // The commit first: an entry recorded at exec is of use only once it
    // is committed.
    if let Err(why) = attach_tracepoint(ebpf, PROCESS_EXEC_PROGRAM, "sched", "sched_process_exec") {
        return unavailable(why);
    }
    if let Err(why) = attach_tracepoint(ebpf, EXECVE_PROGRAM, "syscalls", "sys_enter_execve") {
        return unavailable(why);
    }
    let execveat = layout.execveat_argv != FIELD_ABSENT
        && attach_tracepoint(ebpf, EXECVEAT_PROGRAM, "syscalls", "sys_enter_execveat")
            .inspect_err(|why| tracing::debug!(%why, "exec hook: execveat not recorded"))
            .is_ok();
    let exit = attach_tracepoint(ebpf, PROCESS_EXIT_PROGRAM, "sched", "sched_process_exit")
        .inspect_err(|why| tracing::debug!(%why, "exec hook: exits not followed"))
        .is_ok();
    let mut open = |name: &'static str| -> Result<BpfHashMap<MapData, u32, ExecArgs>, String> {
        let map = ebpf
            .take_map(name)
            .ok_or_else(|| format!("map {name} not found in the eBPF object"))?;
        BpfHashMap::try_from(map).map_err(|e| format!("opening map {name}: {e}"))
    };
    let maps = match (open(EXEC_ARGS_MAP), open(EXITED_ARGS_MAP)) {
        (Ok(live), Ok(exited)) => ExecArgsMaps { live, exited },
        (Err(why), _) | (_, Err(why)) => return unavailable(why),
    };
    let facts = ExecFacts::of(layout, btf_error);
    (
        Some(maps),
        ExecHookStatus::Attached {
            execveat,
            exit,
            facts,
        },
    )
}

/// Whether `dir` is a mounted tracefs (aya's test: it exists and is not empty).
fn tracefs_mounted(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// Mounts tracefs at /sys/kernel/tracing when no tracefs is mounted: many
/// systems do not mount it at boot, and aya needs it to find the tracepoint id.
fn ensure_tracefs() -> Result<(), LoadError> {
    if TRACEFS_DIRS
        .iter()
        .any(|dir| tracefs_mounted(Path::new(dir)))
    {
        return Ok(());
    }
    let Err(err) = super::tracefs::mount() else {
        tracing::info!("mounted tracefs at /sys/kernel/tracing");
        return Ok(());
    };
    // Someone else mounted it in the meantime.
    if err.raw_os_error() == Some(libc::EBUSY) && tracefs_mounted(Path::new(TRACEFS_DIRS[0])) {
        return Ok(());
    }
    Err(LoadError::MountTracefs(err))
}

/// Kernels before 5.11 charge BPF maps and programs to RLIMIT_MEMLOCK (later
/// ones use memory cgroup accounting); the default limit is too small there.
fn raise_memlock_rlimit() {
    let needs_rlimit = KernelVersion::current()
        .map(|version| version < KernelVersion::new(5, 11, 0))
        .unwrap_or(true);
    if !needs_rlimit {
        return;
    }
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `unlimited` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::warn!(
            error = %io::Error::last_os_error(),
            "could not raise RLIMIT_MEMLOCK; loading the eBPF program may fail"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use receiver_common::oom::flags;

    #[test]
    fn the_hook_says_what_it_records_and_why_not() {
        let all = ExecFacts {
            path: true,
            parent: true,
            start: true,
            btf_error: None,
        };
        let status = ExecHookStatus::Attached {
            execveat: true,
            exit: true,
            facts: all,
        };
        assert_eq!(
            status.to_string(),
            "syscalls/sys_enter_execve and sys_enter_execveat attached (argv, exec'd path, parent and start)"
        );
        let no_btf = ExecFacts::of(
            &ExecLayout {
                execve_argv: 24,
                exec_filename: 8,
                ..ExecLayout::ABSENT
            },
            Some("reading /sys/kernel/btf/vmlinux: No such file or directory".into()),
        );
        assert_eq!(
            no_btf.missing().as_deref(),
            Some("the parent pid, the start time (kernel BTF: reading /sys/kernel/btf/vmlinux: No such file or directory)")
        );
        // A tgid without real_parent is no parent.
        let half = ExecFacts::of(
            &ExecLayout {
                exec_filename: 8,
                task_tgid: 1268,
                task_start_boottime: 1560,
                ..ExecLayout::ABSENT
            },
            None,
        );
        assert_eq!(
            half.missing().as_deref(),
            Some("the parent pid (not found in /sys/kernel/btf/vmlinux)")
        );
    }

    /// This kernel (root, tracefs mountable): every fact has its offset.
    #[test]
    fn this_kernels_exec_layout_has_every_fact() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            println!("SKIPPED: this_kernels_exec_layout_has_every_fact: needs root (tracefs)");
            return;
        }
        ensure_tracefs().expect("tracefs");
        let (layout, btf_error) =
            exec_layout_and_btf_error(&kernel_btf()).expect("the exec hook's layout");
        assert_eq!(btf_error, None);
        let facts = ExecFacts::of(&layout, btf_error);
        assert_eq!(facts.missing(), None, "{layout:?}");
        assert_eq!(layout.exec_filename, 8, "Linux 6.18's sched_process_exec");
    }

    #[test]
    fn probe_can_move_to_a_task() {
        fn assert_send<T: Send + 'static>() {}
        assert_send::<MarkVictimProbe>();
    }

    #[test]
    fn loading_outside_a_runtime_is_an_error_not_a_panic() {
        let err = load_mark_victim_with_layout(MarkVictimLayout::ABSENT).expect_err("no runtime");
        assert!(matches!(err, LoadError::Reactor(_)), "{err}");
    }

    #[test]
    fn decodes_a_record_and_rejects_short_ones() {
        let mut event = OomVictimEvent::ZERO;
        event.pid = 4242;
        event.flags = flags::PID;
        event.comm[..7].copy_from_slice(b"python3");
        // SAFETY: plain-old-data view of a local.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                std::ptr::from_ref(&event).cast::<u8>(),
                size_of::<OomVictimEvent>(),
            )
        };
        assert_eq!(decode_event(bytes), Some(event));
        assert_eq!(decode_event(&bytes[..bytes.len() - 1]), None);
        // Unaligned input is fine.
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(bytes);
        assert_eq!(decode_event(&shifted[1..]), Some(event));
    }
}
