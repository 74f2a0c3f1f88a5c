//! `sched/sched_process_exec`: fires only when an exec succeeded, in the new
//! program, after the kernel set its comm. Completes the entry the exec's
//! syscall entry left in `PENDING_ARGS` with that comm and moves it to
//! `EXEC_ARGS`. A failed exec never gets here, so its argv is never taken
//! for the process's.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::maps::{EXEC_ARGS, PENDING_ARGS};

#[tracepoint]
pub fn exec_args_commit(_ctx: TracePointContext) -> u32 {
    // After the exec the caller's thread has the process's pid (tgid).
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(entry) = PENDING_ARGS.get_ptr_mut(&tgid) else {
        return 0;
    };
    let Ok(comm) = bpf_get_current_comm() else {
        return 0;
    };
    // SAFETY: a value pointer from the map lookup, valid for this run; only
    // this process's exec writes this key, and it is in this program now.
    unsafe { (*entry).comm = comm };
    // SAFETY: as above; the helper copies the value.
    let _ = EXEC_ARGS.insert(&tgid, unsafe { &*entry }, 0);
    let _ = PENDING_ARGS.remove(&tgid);
    0
}
