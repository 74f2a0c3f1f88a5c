//! Maps shared by the probes. Names are the ones in `receiver_common::oom`.

use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use receiver_common::oom::OOM_EVENTS_BYTES;

/// `OomVictimEvent`s for user space.
#[map]
pub static OOM_EVENTS: RingBuf = RingBuf::with_byte_size(OOM_EVENTS_BYTES, 0);

/// Slot 0: events dropped because `OOM_EVENTS` was full.
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
