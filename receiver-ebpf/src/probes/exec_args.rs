//! `syscalls/sys_enter_execve` and `syscalls/sys_enter_execveat`: record the
//! calling process's argv in `PENDING_ARGS`, keyed by its tgid; the exec's
//! success moves it to `EXEC_ARGS` (`exec_commit.rs`), so that user space
//! still has an OOM victim's command line after the victim's memory is gone.
//!
//! The record is taken at syscall entry, while argv is still in the caller's
//! memory. The `argv` offsets come from the `EXEC_LAYOUT` global, which user
//! space fills from the tracepoints' `format` files; an absent field makes
//! the program do nothing.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user, generated},
    macros::tracepoint,
    programs::TracePointContext,
};
use receiver_common::{
    exec::{exec_flags, ExecLayout, EXEC_ARGS_BYTES, EXEC_ARGS_MAX_ARGS},
    oom::{FIELD_ABSENT, TASK_COMM_LEN},
};

use crate::maps::{ExecScratch, EXEC_SCRATCH, PENDING_ARGS};

/// Set by user space before load; read-only for the programs.
#[unsafe(no_mangle)]
static EXEC_LAYOUT: ExecLayout = ExecLayout::ABSENT;

/// The layout user space set.
#[inline(always)]
pub fn layout() -> ExecLayout {
    // Volatile: the loader overrides the value in .rodata, so the compiler
    // must not fold the default into the code.
    // SAFETY: reading a plain static.
    unsafe { core::ptr::read_volatile(&EXEC_LAYOUT) }
}

#[tracepoint]
pub fn exec_args_execve(ctx: TracePointContext) -> u32 {
    let layout = layout();
    record(&ctx, layout.execve_argv);
    0
}

#[tracepoint]
pub fn exec_args_execveat(ctx: TracePointContext) -> u32 {
    let layout = layout();
    record(&ctx, layout.execveat_argv);
    0
}

/// Reads a `T` at `offset` in the record, or `None` when the field is absent
/// or the read fails.
#[inline(always)]
pub fn read_field<T>(ctx: &TracePointContext, offset: u16) -> Option<T> {
    if offset == FIELD_ABSENT {
        return None;
    }
    // SAFETY: `read_at` is `bpf_probe_read_kernel`, which checks the address.
    unsafe { ctx.read_at::<T>(usize::from(offset)) }.ok()
}

#[inline(always)]
fn record(ctx: &TracePointContext, argv_at: u16) {
    let Some(argv) = read_field::<u64>(ctx, argv_at) else {
        return;
    };
    let Some(scratch) = EXEC_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: this CPU's slot of a per-CPU array, valid for the whole run; a
    // run that preempted this one is detected through `owner` below.
    let scratch: &mut ExecScratch = unsafe { &mut *scratch };
    scratch.owner = pid_tgid;
    let entry = &mut scratch.entry;
    // SAFETY: this helper has no preconditions.
    entry.ktime_ns = unsafe { bpf_ktime_get_ns() };
    entry.args_len = 0;
    entry.argc = 0;
    entry.flags = 0;
    entry._pad0 = 0;
    // Set by `exec_args_commit` once the exec has succeeded (the path's
    // bytes past `path_len` are not read).
    entry.comm = [0; TASK_COMM_LEN];
    entry.start_boottime_ns = 0;
    entry.parent_tgid = 0;
    entry.path_len = 0;
    read_args(scratch, argv);

    if scratch.owner != pid_tgid {
        return;
    }
    let tgid = (pid_tgid >> 32) as u32;
    // Replaces what an earlier, failed exec of the same process left.
    let _ = PENDING_ARGS.insert(&tgid, &scratch.entry, 0);
}

/// Copies the NUL-terminated strings of the user array `argv` (ended by a
/// null pointer) into `entry.args`, setting `args_len`, `argc` and the flags.
#[inline(always)]
fn read_args(scratch: &mut ExecScratch, argv: u64) {
    // The strings go at `args + offset` with `EXEC_ARGS_BYTES` as the bound of
    // each read; `overflow` follows `args`, so a read at any offset below
    // `EXEC_ARGS_BYTES` stays inside the scratch slot.
    let args = scratch.entry.args.as_mut_ptr();
    let mut offset = 0usize;
    let mut flags = 0u32;
    let mut argc = 0u32;
    let mut index = 0u32;
    while index <= EXEC_ARGS_MAX_ARGS {
        let slot = (argv as *const u64).wrapping_add(index as usize);
        // SAFETY: the helper checks the user address.
        let Ok(ptr) = (unsafe { bpf_probe_read_user(slot) }) else {
            flags |= exec_flags::READ_FAILED;
            break;
        };
        if ptr == 0 {
            break;
        }
        if index == EXEC_ARGS_MAX_ARGS || offset >= EXEC_ARGS_BYTES {
            flags |= exec_flags::TRUNCATED;
            break;
        }
        let at = offset & (EXEC_ARGS_BYTES - 1);
        // SAFETY: `at < EXEC_ARGS_BYTES` and the slot has `EXEC_ARGS_BYTES`
        // bytes of `overflow` after `args`; the helper checks the user address.
        let len = unsafe {
            generated::bpf_probe_read_user_str(
                args.wrapping_add(at).cast(),
                EXEC_ARGS_BYTES as u32,
                ptr as *const core::ffi::c_void,
            )
        };
        if len <= 0 {
            flags |= exec_flags::READ_FAILED;
            break;
        }
        argc += 1;
        // `len` counts the NUL and is at most `EXEC_ARGS_BYTES`.
        offset = at + (len as usize & (EXEC_ARGS_BYTES * 2 - 1));
        if len as usize >= EXEC_ARGS_BYTES {
            // This argument alone filled the bound: it may have been cut.
            flags |= exec_flags::TRUNCATED;
            break;
        }
        index += 1;
    }
    if offset > EXEC_ARGS_BYTES {
        offset = EXEC_ARGS_BYTES;
        flags |= exec_flags::TRUNCATED;
    }
    scratch.entry.args_len = offset as u32;
    scratch.entry.argc = argc;
    scratch.entry.flags |= flags;
}
