//! Maps shared by the probes. Names are the ones in `receiver_common::oom`.

use aya_ebpf::{
    macros::map,
    maps::{LruHashMap, PerCpuArray, RingBuf},
};
use receiver_common::{
    exec::{
        ExecArgs, EXEC_ARGS_BYTES, EXEC_ARGS_ENTRIES, EXITED_ARGS_ENTRIES, PENDING_ARGS_ENTRIES,
    },
    oom::OOM_EVENTS_BYTES,
    oom_scope::OOM_SCOPE_EVENTS_BYTES,
};

/// `OomVictimEvent`s for user space.
#[map]
pub static OOM_EVENTS: RingBuf = RingBuf::with_byte_size(OOM_EVENTS_BYTES, 0);

/// `OomScopeEvent`s for user space (the `oom_kill_process` hook).
#[map]
pub static OOM_SCOPE_EVENTS: RingBuf = RingBuf::with_byte_size(OOM_SCOPE_EVENTS_BYTES, 0);

/// Slot 0: events dropped because `OOM_EVENTS` or `OOM_SCOPE_EVENTS` was
/// full.
#[map]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Counts one dropped event on this CPU.
#[inline(always)]
pub fn count_drop() {
    if let Some(slot) = DROPS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, and a BPF program is not preempted on its CPU
        // by another run of itself in the tracepoint context.
        unsafe { *slot += 1 };
    }
}

/// argv of execs in flight, by tgid: moved to `EXEC_ARGS` when the exec
/// succeeds.
#[map]
pub static PENDING_ARGS: LruHashMap<u32, ExecArgs> =
    LruHashMap::with_max_entries(PENDING_ARGS_ENTRIES, 0);

/// argv of live processes, by tgid (`receiver_common::exec`).
#[map]
pub static EXEC_ARGS: LruHashMap<u32, ExecArgs> =
    LruHashMap::with_max_entries(EXEC_ARGS_ENTRIES, 0);

/// argv of recently exited processes, by tgid: an OOM victim's entry moves
/// here when it exits, which may be before user space has read it.
#[map]
pub static EXITED_ARGS: LruHashMap<u32, ExecArgs> =
    LruHashMap::with_max_entries(EXITED_ARGS_ENTRIES, 0);

/// Where an exec's entry is built before it is stored (too big for the
/// 512-byte stack).
#[repr(C)]
pub struct ExecScratch {
    /// `bpf_get_current_pid_tgid()` of the run filling it: a run preempted
    /// by another exec on its CPU (syscall tracepoints may run preemptibly)
    /// sees another owner before storing, and drops its mixed entry.
    pub owner: u64,
    /// The entry to store.
    pub entry: ExecArgs,
    /// Room after `entry.args`: each argument is read with the full
    /// `EXEC_ARGS_BYTES` as its bound at an offset below `EXEC_ARGS_BYTES`,
    /// so a read may run this far past the end (that part is dropped).
    pub overflow: [u8; EXEC_ARGS_BYTES],
}

/// Slot 0: this CPU's [`ExecScratch`].
#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecScratch> = PerCpuArray::with_max_entries(1, 0);
