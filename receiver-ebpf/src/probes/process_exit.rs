//! `sched/sched_process_exit`: when a process's last thread exits, move its
//! `EXEC_ARGS` entry to `EXITED_ARGS`. Live processes then keep their entries
//! however many short-lived ones come and go, and an OOM victim's entry
//! outlives its exit for as long as user space needs to read it.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use receiver_common::oom::FIELD_ABSENT;

use super::exec_args::{layout, read_field};
use crate::maps::{EXEC_ARGS, EXITED_ARGS};

#[tracepoint]
pub fn exec_args_exit(ctx: TracePointContext) -> u32 {
    let layout = layout();
    // The exec programs are not attached: nothing to move.
    if layout.execve_argv == FIELD_ABSENT && layout.execveat_argv == FIELD_ABSENT {
        return 0;
    }
    // Runs in the context of the exiting thread.
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let whole_process = if layout.exit_group_dead == FIELD_ABSENT {
        // Older kernels: the leader's exit stands for the process's.
        pid_tgid as u32 == tgid
    } else {
        read_field::<u8>(&ctx, layout.exit_group_dead).is_some_and(|dead| dead != 0)
    };
    if !whole_process {
        return 0;
    }
    let Some(entry) = EXEC_ARGS.get_ptr(&tgid) else {
        return 0;
    };
    // SAFETY: a value pointer from the map lookup, valid for this run (the
    // helper copies it before this program removes the entry).
    let _ = EXITED_ARGS.insert(&tgid, unsafe { &*entry }, 0);
    let _ = EXEC_ARGS.remove(&tgid);
    0
}
