//! `tracepoint/oom/mark_victim`: fires once per OOM kill, in the context of the
//! task whose allocation triggered it, with a record describing the victim.
//!
//! The record's layout changed across kernels (older kernels only have `pid`),
//! so field offsets come from the `MARK_VICTIM_LAYOUT` global, which user space
//! fills from the tracepoint's `format` file at load time. A field whose offset
//! is `FIELD_ABSENT` stays 0 with its flag clear.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated},
    macros::tracepoint,
    programs::TracePointContext,
    EbpfContext as _,
};
use receiver_common::oom::{flags, MarkVictimLayout, OomVictimEvent, FIELD_ABSENT, TASK_COMM_LEN};

use crate::maps::{count_drop, OOM_EVENTS};

/// Set by user space before load; read-only for the program.
#[unsafe(no_mangle)]
static MARK_VICTIM_LAYOUT: MarkVictimLayout = MarkVictimLayout::ABSENT;

#[tracepoint]
pub fn mark_victim(ctx: TracePointContext) -> u32 {
    let Some(mut entry) = OOM_EVENTS.reserve::<OomVictimEvent>(0) else {
        count_drop();
        return 0;
    };
    let mut event = OomVictimEvent::ZERO;
    fill(&ctx, &mut event);
    entry.write(event);
    entry.submit(0);
    0
}

#[inline(always)]
fn fill(ctx: &TracePointContext, event: &mut OomVictimEvent) {
    // Volatile: the compiler must not fold the default value into the code;
    // the loader overrides it in .rodata.
    // SAFETY: reading a plain static.
    let layout = unsafe { core::ptr::read_volatile(&MARK_VICTIM_LAYOUT) };

    // SAFETY: this helper has no preconditions.
    event.ktime_ns = unsafe { bpf_ktime_get_ns() };
    let pid_tgid = bpf_get_current_pid_tgid();
    event.trigger_pid = pid_tgid as u32 as i32;
    event.trigger_tgid = (pid_tgid >> 32) as u32 as i32;
    if let Ok(comm) = bpf_get_current_comm() {
        event.trigger_comm = comm;
    }

    if let Some(v) = read::<i32>(ctx, layout.pid) {
        event.pid = v;
        event.flags |= flags::PID;
    }
    if read_comm(ctx, layout.comm, &mut event.comm) {
        event.flags |= flags::COMM;
    }
    if let Some(v) = read::<u64>(ctx, layout.total_vm) {
        event.total_vm_kb = v;
        event.flags |= flags::TOTAL_VM;
    }
    if let Some(v) = read::<u64>(ctx, layout.anon_rss) {
        event.anon_rss_kb = v;
        event.flags |= flags::ANON_RSS;
    }
    if let Some(v) = read::<u64>(ctx, layout.file_rss) {
        event.file_rss_kb = v;
        event.flags |= flags::FILE_RSS;
    }
    if let Some(v) = read::<u64>(ctx, layout.shmem_rss) {
        event.shmem_rss_kb = v;
        event.flags |= flags::SHMEM_RSS;
    }
    if let Some(v) = read::<u32>(ctx, layout.uid) {
        event.uid = v;
        event.flags |= flags::UID;
    }
    if let Some(v) = read::<u64>(ctx, layout.pgtables) {
        event.pgtables_kb = v;
        event.flags |= flags::PGTABLES;
    }
    if let Some(v) = read::<i16>(ctx, layout.oom_score_adj) {
        event.oom_score_adj = v;
        event.flags |= flags::OOM_SCORE_ADJ;
    }
}

/// Reads a `T` at `offset` in the record, or `None` when the field is absent
/// or the read fails.
#[inline(always)]
fn read<T>(ctx: &TracePointContext, offset: u16) -> Option<T> {
    if offset == FIELD_ABSENT {
        return None;
    }
    // SAFETY: `read_at` is `bpf_probe_read_kernel`, which checks the address.
    unsafe { ctx.read_at::<T>(usize::from(offset)) }.ok()
}

/// Copies the `__data_loc char[]` string whose descriptor is at `offset` into
/// `out` (at most `TASK_COMM_LEN` bytes, never past the string's recorded
/// length). Returns whether a non-empty string was copied.
#[inline(always)]
fn read_comm(ctx: &TracePointContext, offset: u16, out: &mut [u8; TASK_COMM_LEN]) -> bool {
    let Some(data_loc) = read::<u32>(ctx, offset) else {
        return false;
    };
    let str_offset = (data_loc & 0xffff) as usize;
    let mut len = data_loc >> 16;
    if len > TASK_COMM_LEN as u32 {
        len = TASK_COMM_LEN as u32;
    }
    if len == 0 {
        return false;
    }
    // SAFETY: `len` is bounded by the size of `out`; the source is read with
    // `bpf_probe_read_kernel`, which checks the address.
    let ret = unsafe {
        generated::bpf_probe_read_kernel(
            out.as_mut_ptr().cast(),
            len,
            ctx.as_ptr().cast::<u8>().add(str_offset).cast(),
        )
    };
    if ret != 0 {
        *out = [0; TASK_COMM_LEN];
        return false;
    }
    // The recorded length includes the NUL; make sure the copy ends with one
    // when it was truncated to TASK_COMM_LEN.
    out[TASK_COMM_LEN - 1] = 0;
    true
}
