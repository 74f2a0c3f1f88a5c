//! The command line of each process, recorded at exec time: the
//! `syscalls/sys_enter_execve` and `sys_enter_execveat` programs store the
//! calling process's argv, keyed by its pid (tgid), in a map of execs in
//! flight; `sched/sched_process_exec`, which fires only when an exec
//! succeeded, adds the comm the kernel has just set and moves the entry to
//! the map of live processes; `sched/sched_process_exit` moves a dead
//! process's entry to a small map of recent exits. User space reads them
//! when /proc no longer has the command line of an OOM victim (the victim's
//! memory is gone once it has exited).

use crate::oom::{FIELD_ABSENT, TASK_COMM_LEN};

/// Bytes of argv kept per process: the arguments, each followed by a NUL,
/// cut at this bound (the last argument then has no NUL).
pub const EXEC_ARGS_BYTES: usize = 512;
/// Arguments read at most (the verifier needs a bounded loop).
pub const EXEC_ARGS_MAX_ARGS: u32 = 64;
/// Entries of [`PENDING_ARGS_MAP`]: execs between their syscall entry and
/// their success (a failed exec's entry stays until evicted). 256 × 624
/// bytes ≈ 160 KB.
pub const PENDING_ARGS_ENTRIES: u32 = 256;

/// Entries of [`EXEC_ARGS_MAP`]: processes exec'd since the agent started and
/// still alive (a dead one's entry moves to [`EXITED_ARGS_MAP`]). The map is
/// preallocated: 4096 × 624 bytes (value, key and the kernel's per-element
/// header; `memlock` in the map's fdinfo on Linux 6.18) ≈ 2.4 MiB, charged to
/// the agent's memory cgroup on kernels ≥ 5.11 (to RLIMIT_MEMLOCK before).
/// With the other two maps and the scratch slot, the hook costs ≈ 3.2 MiB.
pub const EXEC_ARGS_ENTRIES: u32 = 4096;
/// Entries of [`EXITED_ARGS_MAP`]: the most recently exited processes (an OOM
/// victim's entry must outlive its exit until user space reads it, within
/// milliseconds). 1024 × 624 bytes ≈ 0.6 MiB.
pub const EXITED_ARGS_ENTRIES: u32 = 1024;

/// Bits of [`ExecArgs::flags`].
pub mod exec_flags {
    /// argv did not fit: more bytes than [`super::EXEC_ARGS_BYTES`] or more
    /// arguments than [`super::EXEC_ARGS_MAX_ARGS`]. `args` holds a prefix.
    pub const TRUNCATED: u32 = 1 << 0;
    /// An argv pointer or string could not be read (a page not present):
    /// `args` holds the arguments read before it.
    pub const READ_FAILED: u32 = 1 << 1;
}

/// One process's argv as passed to execve(2)/execveat(2).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecArgs {
    /// `bpf_ktime_get_ns()` at the exec (CLOCK_MONOTONIC, ns).
    pub ktime_ns: u64,
    /// Bytes of `args` in use.
    pub args_len: u32,
    /// Arguments (whole or cut) in `args`.
    pub argc: u32,
    /// Bits from [`exec_flags`].
    pub flags: u32,
    /// Explicit padding; always zero.
    pub _pad0: u32,
    /// The comm the kernel set at this exec (read in `sched_process_exec`:
    /// the first 15 bytes of the exec'd file's base name), NUL-padded. User
    /// space compares it with the victim's comm so that an entry left by an
    /// earlier process with the same pid is not taken for the victim's.
    pub comm: [u8; TASK_COMM_LEN],
    /// The arguments, each followed by a NUL.
    pub args: [u8; EXEC_ARGS_BYTES],
}

impl ExecArgs {
    /// An entry with no argument.
    pub const ZERO: Self = Self {
        ktime_ns: 0,
        args_len: 0,
        argc: 0,
        flags: 0,
        _pad0: 0,
        comm: [0; TASK_COMM_LEN],
        args: [0; EXEC_ARGS_BYTES],
    };
}

const _: () = assert!(core::mem::size_of::<ExecArgs>() == 40 + EXEC_ARGS_BYTES);
const _: () = assert!(core::mem::align_of::<ExecArgs>() == 8);
// The kernel program masks offsets with `EXEC_ARGS_BYTES - 1`.
const _: () = assert!(EXEC_ARGS_BYTES.is_power_of_two());

/// Where the programs find their fields on the running kernel: byte offsets
/// in each tracepoint's record, or [`FIELD_ABSENT`] (the program then does
/// nothing). User space fills it from the tracepoints' `format` files.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecLayout {
    /// `sys_enter_execve`: `const char *const * argv`.
    pub execve_argv: u16,
    /// `sys_enter_execveat`: `const char *const * argv`.
    pub execveat_argv: u16,
    /// `sched_process_exit`: `bool group_dead` (older kernels lack it: the
    /// program then takes the exit of the thread group leader for the
    /// process's).
    pub exit_group_dead: u16,
    /// Explicit padding; always zero.
    pub _pad0: u16,
}

impl ExecLayout {
    /// No field present: every program does nothing.
    pub const ABSENT: Self = Self {
        execve_argv: FIELD_ABSENT,
        execveat_argv: FIELD_ABSENT,
        exit_group_dead: FIELD_ABSENT,
        _pad0: 0,
    };
}

impl Default for ExecLayout {
    fn default() -> Self {
        Self::ABSENT
    }
}

const _: () = assert!(core::mem::size_of::<ExecLayout>() == 8);

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, only integer fields and byte arrays, no implicit
// padding (checked by the size assertions above).
unsafe impl aya::Pod for ExecArgs {}

#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for ExecLayout {}

/// Symbol of the programs' global holding the [`ExecLayout`].
pub const EXEC_LAYOUT_GLOBAL: &str = "EXEC_LAYOUT";
/// The `syscalls/sys_enter_execve` program.
pub const EXECVE_PROGRAM: &str = "exec_args_execve";
/// The `syscalls/sys_enter_execveat` program.
pub const EXECVEAT_PROGRAM: &str = "exec_args_execveat";
/// The `sched/sched_process_exec` program.
pub const PROCESS_EXEC_PROGRAM: &str = "exec_args_commit";
/// The `sched/sched_process_exit` program.
pub const PROCESS_EXIT_PROGRAM: &str = "exec_args_exit";
/// LRU hash map: tgid (`u32`) → [`ExecArgs`] of execs in flight.
pub const PENDING_ARGS_MAP: &str = "PENDING_ARGS";
/// LRU hash map: tgid (`u32`) → [`ExecArgs`] of live processes.
pub const EXEC_ARGS_MAP: &str = "EXEC_ARGS";
/// LRU hash map: tgid (`u32`) → [`ExecArgs`] of recently exited processes.
pub const EXITED_ARGS_MAP: &str = "EXITED_ARGS";

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(ExecArgs, ktime_ns) == 0);
    assert!(offset_of!(ExecArgs, flags) == 16);
    assert!(offset_of!(ExecArgs, comm) == 24);
    assert!(offset_of!(ExecArgs, args) == 40);
    assert!(offset_of!(ExecLayout, exit_group_dead) == 4);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_distinct_bits() {
        let all = [exec_flags::TRUNCATED, exec_flags::READ_FAILED];
        let union = all.iter().fold(0, |acc, f| {
            assert_eq!(f.count_ones(), 1);
            assert_eq!(acc & f, 0);
            acc | f
        });
        assert_eq!(union, 0b11);
        assert_eq!(ExecLayout::default(), ExecLayout::ABSENT);
    }
}
