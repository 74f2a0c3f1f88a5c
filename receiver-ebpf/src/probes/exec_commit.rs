//! `sched/sched_process_exec`: fires only when an exec succeeded, in the new
//! program, after the kernel set its comm. Completes the entry the exec's
//! syscall entry left in `PENDING_ARGS` with that comm, the path passed to
//! exec (the record's `filename`), the parent's pid and the process's start
//! (read from the current `task_struct` at offsets user space found in the
//! kernel's BTF), and moves it to `EXEC_ARGS`. A failed exec never gets
//! here, so its argv is never taken for the process's. A fact whose offset
//! is `FIELD_ABSENT`, or whose read fails, is left out (its flag clear).

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel, generated},
    macros::tracepoint,
    programs::TracePointContext,
    EbpfContext as _,
};
use receiver_common::{
    exec::{data_loc, exec_flags, ExecArgs, ExecLayout, EXEC_PATH_BYTES},
    oom::FIELD_ABSENT,
};

use super::exec_args::{layout, read_field};
use crate::maps::{EXEC_ARGS, PENDING_ARGS};

#[tracepoint]
pub fn exec_args_commit(ctx: TracePointContext) -> u32 {
    // After the exec the caller's thread has the process's pid (tgid).
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(entry) = PENDING_ARGS.get_ptr_mut(&tgid) else {
        return 0;
    };
    let Ok(comm) = bpf_get_current_comm() else {
        return 0;
    };
    let layout = layout();
    // SAFETY: a value pointer from the map lookup, valid for this run; only
    // this process's exec writes this key, and it is in this program now.
    let entry: &mut ExecArgs = unsafe { &mut *entry };
    entry.comm = comm;
    read_path(&ctx, layout.exec_filename, entry);
    read_task(&layout, entry);
    // The helper copies the value.
    let _ = EXEC_ARGS.insert(&tgid, entry, 0);
    let _ = PENDING_ARGS.remove(&tgid);
    0
}

/// Copies the `__data_loc char[] filename` whose descriptor is at `offset`
/// into `entry.path`, at most `EXEC_PATH_BYTES` with the NUL.
#[inline(always)]
fn read_path(ctx: &TracePointContext, offset: u16, entry: &mut ExecArgs) {
    entry.path_len = 0;
    let Some(data_loc_field) = read_field::<u32>(ctx, offset) else {
        return;
    };
    // The recorded length counts the NUL.
    let (str_offset, recorded_len) = data_loc(data_loc_field);
    if recorded_len <= 1 {
        return;
    }
    // SAFETY: the destination is the entry's `EXEC_PATH_BYTES`-byte array;
    // the source is read with `bpf_probe_read_kernel_str`, which checks the
    // address and stops at the NUL or the bound (writing a NUL there).
    let copied = unsafe {
        generated::bpf_probe_read_kernel_str(
            entry.path.as_mut_ptr().cast(),
            EXEC_PATH_BYTES as u32,
            ctx.as_ptr().cast::<u8>().wrapping_add(str_offset).cast(),
        )
    };
    if copied <= 1 {
        return;
    }
    // `copied` counts the NUL and is at most `EXEC_PATH_BYTES`.
    entry.path_len = (copied as u32 - 1).min(EXEC_PATH_BYTES as u32 - 1);
    if recorded_len > EXEC_PATH_BYTES {
        entry.flags |= exec_flags::PATH_TRUNCATED;
    }
}

/// The parent's pid and the start time from the current task, where the
/// kernel's BTF gave their offsets.
#[inline(always)]
fn read_task(layout: &ExecLayout, entry: &mut ExecArgs) {
    // SAFETY: this helper has no preconditions.
    let task = unsafe { generated::bpf_get_current_task() } as *const u8;
    if layout.task_start_boottime != FIELD_ABSENT {
        let at = task.wrapping_add(usize::from(layout.task_start_boottime));
        // SAFETY: `bpf_probe_read_kernel` checks the address.
        if let Ok(start) = unsafe { bpf_probe_read_kernel(at.cast::<u64>()) } {
            entry.start_boottime_ns = start;
            entry.flags |= exec_flags::START;
        }
    }
    if layout.task_real_parent != FIELD_ABSENT && layout.task_tgid != FIELD_ABSENT {
        let at = task.wrapping_add(usize::from(layout.task_real_parent));
        // SAFETY: as above.
        let Ok(parent) = (unsafe { bpf_probe_read_kernel(at.cast::<u64>()) }) else {
            return;
        };
        if parent == 0 {
            return;
        }
        let at = (parent as *const u8).wrapping_add(usize::from(layout.task_tgid));
        // SAFETY: as above.
        if let Ok(parent_tgid) = unsafe { bpf_probe_read_kernel(at.cast::<i32>()) } {
            entry.parent_tgid = parent_tgid as u32;
            entry.flags |= exec_flags::PARENT;
        }
    }
}
