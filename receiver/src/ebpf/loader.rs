//! Loads and attaches the `oom/mark_victim` tracepoint program and streams
//! its [`OomVictimEvent`]s.
//!
//! Needs root (CAP_BPF + CAP_PERFMON, or CAP_SYS_ADMIN) and a kernel with the
//! `oom/mark_victim` tracepoint and BPF ring buffers (5.8+).

use std::{
    ffi::CStr,
    io,
    mem::size_of,
    path::{Path, PathBuf},
};

use aya::{
    maps::{MapData, MapError, PerCpuArray, RingBuf},
    programs::{ProgramError, TracePoint},
    util::KernelVersion,
    Ebpf, EbpfError, EbpfLoader,
};
use receiver_common::oom::{
    MarkVictimLayout, OomVictimEvent, DROPS_MAP, MARK_VICTIM_LAYOUT_GLOBAL, MARK_VICTIM_PROGRAM,
    OOM_EVENTS_MAP,
};
use tokio::io::{unix::AsyncFd, Interest};

use super::format::{parse_mark_victim_format, FormatError};

/// The eBPF object built by `build.rs` from the `receiver-ebpf` crate.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/receiver-ebpf"));

/// Where tracefs is found, in the order aya looks for it.
pub const TRACEFS_DIRS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
/// The tracepoint's format file, relative to a tracefs directory.
const MARK_VICTIM_FORMAT: &str = "events/oom/mark_victim/format";
const TRACEPOINT_CATEGORY: &str = "oom";
const TRACEPOINT_NAME: &str = "mark_victim";

/// Why the probe could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// tracefs is not mounted and mounting it failed.
    #[error("tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {0}")]
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
    // Owns the program and its link; kept last so it is dropped after the maps.
    _ebpf: Ebpf,
}

impl std::fmt::Debug for MarkVictimProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarkVictimProbe")
            .field("layout", &self.layout)
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
        loop {
            let mut guard = self.events.readable_mut().await?;
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

    /// Events dropped so far because the ring buffer was full, summed over CPUs.
    pub fn drops(&self) -> Result<u64, MapError> {
        let per_cpu = self.drops.get(&0, 0)?;
        Ok(per_cpu.iter().fold(0u64, |sum, n| sum.wrapping_add(*n)))
    }
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

/// Loads and attaches the program with the layout read from this kernel's
/// tracepoint format file.
pub fn load_mark_victim() -> Result<MarkVictimProbe, LoadError> {
    let path = tracepoint_format_path()?;
    let text = std::fs::read_to_string(&path).map_err(|source| LoadError::ReadFormat {
        path: path.clone(),
        source,
    })?;
    let layout =
        parse_mark_victim_format(&text).map_err(|source| LoadError::Format { path, source })?;
    load_mark_victim_with_layout(layout)
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
    attach_mark_victim(layout).map_err(with_access_diagnosis)
}

fn attach_mark_victim(layout: MarkVictimLayout) -> Result<MarkVictimProbe, LoadError> {
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

    let mut ebpf = EbpfLoader::new()
        .override_global(MARK_VICTIM_LAYOUT_GLOBAL, &layout, true)
        .load(EBPF_OBJECT)
        .map_err(LoadError::Object)?;

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

    Ok(MarkVictimProbe {
        events,
        drops,
        layout,
        _ebpf: ebpf,
    })
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
    const SOURCE: &CStr = c"nodev";
    const TARGET: &CStr = c"/sys/kernel/tracing";
    const FSTYPE: &CStr = c"tracefs";
    // SAFETY: all pointers are valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            SOURCE.as_ptr(),
            TARGET.as_ptr(),
            FSTYPE.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        tracing::info!("mounted tracefs at /sys/kernel/tracing");
        return Ok(());
    }
    let err = io::Error::last_os_error();
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
