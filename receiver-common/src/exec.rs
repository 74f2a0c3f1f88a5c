//! Who each process is, recorded at exec time: the
//! `syscalls/sys_enter_execve` and `sys_enter_execveat` programs store the
//! calling process's argv, keyed by its pid (tgid), in a map of execs in
//! flight; `sched/sched_process_exec`, which fires only when an exec
//! succeeded, adds the comm the kernel has just set, the path passed to
//! exec, the parent's pid and the process's start time, and moves the entry
//! to the map of live processes; `sched/sched_process_exit` moves a dead
//! process's entry to a small map of recent exits. User space reads them
//! when /proc no longer has an OOM victim (its memory is gone once it has
//! exited, its /proc entry once it was reaped).

use crate::oom::{FIELD_ABSENT, TASK_COMM_LEN};

/// Bytes of argv kept per process: the arguments, each followed by a NUL,
/// cut at this bound (the last argument then has no NUL).
pub const EXEC_ARGS_BYTES: usize = 512;
/// Arguments read at most (the verifier needs a bounded loop).
pub const EXEC_ARGS_MAX_ARGS: u32 = 64;
/// Bytes of the exec'd path kept per process, its NUL included: 127
/// characters, enough for nearly every installed program (a Nix store path
/// is about 70); a longer one is cut and flagged
/// [`exec_flags::PATH_TRUNCATED`]. 128 rather than the kernel's PATH_MAX
/// (4096): every entry of the preallocated maps pays for it.
pub const EXEC_PATH_BYTES: usize = 128;
/// Bytes one map entry costs the kernel: the value, the 4-byte key rounded
/// to 8 and the kernel's per-element header (`memlock` in the map's fdinfo
/// on Linux 6.18, divided by the entries).
pub const EXEC_ENTRY_COST_BYTES: usize = core::mem::size_of::<ExecArgs>() + 72;
/// Entries of [`PENDING_ARGS_MAP`]: execs between their syscall entry and
/// their success (a failed exec's entry stays until evicted). 256 × 768
/// bytes = 192 KiB.
pub const PENDING_ARGS_ENTRIES: u32 = 256;

/// Entries of [`EXEC_ARGS_MAP`]: processes exec'd since the agent started and
/// still alive (a dead one's entry moves to [`EXITED_ARGS_MAP`]). The map is
/// preallocated: 4096 × 768 bytes ([`EXEC_ENTRY_COST_BYTES`]) = 3 MiB,
/// charged to the agent's memory cgroup on kernels ≥ 5.11 (to RLIMIT_MEMLOCK
/// before). With the other two maps and the per-CPU scratch slot (1.2 KiB
/// per CPU), the hook costs ≈ 3.9 MiB ([`EXEC_HOOK_MAP_BYTES`]; 3.2 MiB
/// before the path, parent and start were kept: 624 bytes per entry).
pub const EXEC_ARGS_ENTRIES: u32 = 4096;
/// Entries of [`EXITED_ARGS_MAP`]: the most recently exited processes (an OOM
/// victim's entry must outlive its exit until user space reads it, within
/// milliseconds). 1024 × 768 bytes = 0.75 MiB.
pub const EXITED_ARGS_ENTRIES: u32 = 1024;
/// What the three preallocated maps cost the kernel, in bytes (the per-CPU
/// scratch slot aside).
pub const EXEC_HOOK_MAP_BYTES: usize = EXEC_ENTRY_COST_BYTES
    * (PENDING_ARGS_ENTRIES + EXEC_ARGS_ENTRIES + EXITED_ARGS_ENTRIES) as usize;
// The figures the comments above and docs/configuration.md give.
const _: () = assert!(EXEC_ENTRY_COST_BYTES == 768);
const _: () = assert!(EXEC_HOOK_MAP_BYTES <= 4 * 1024 * 1024);

/// Bits of [`ExecArgs::flags`].
pub mod exec_flags {
    /// argv did not fit: more bytes than [`super::EXEC_ARGS_BYTES`] or more
    /// arguments than [`super::EXEC_ARGS_MAX_ARGS`]. `args` holds a prefix.
    pub const TRUNCATED: u32 = 1 << 0;
    /// An argv pointer or string could not be read (a page not present):
    /// `args` holds the arguments read before it.
    pub const READ_FAILED: u32 = 1 << 1;
    /// The exec'd path was longer than [`super::EXEC_PATH_BYTES`] - 1 bytes:
    /// `path` holds its start.
    pub const PATH_TRUNCATED: u32 = 1 << 2;
    /// `parent_tgid` was read (the kernel's BTF gave the offsets).
    pub const PARENT: u32 = 1 << 3;
    /// `start_boottime_ns` was read (the kernel's BTF gave the offset).
    pub const START: u32 = 1 << 4;
}

/// One process as exec'd: its argv as passed to execve(2)/execveat(2), and
/// what `sched_process_exec` adds once the exec succeeded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecArgs {
    /// `bpf_ktime_get_ns()` at the exec (CLOCK_MONOTONIC, ns).
    pub ktime_ns: u64,
    /// The process's start, ns since boot (`task_struct.start_boottime`,
    /// CLOCK_BOOTTIME: what /proc/PID/stat's starttime counts from; an exec
    /// keeps the thread group leader's). Valid with [`exec_flags::START`].
    pub start_boottime_ns: u64,
    /// Bytes of `args` in use.
    pub args_len: u32,
    /// Arguments (whole or cut) in `args`.
    pub argc: u32,
    /// Bits from [`exec_flags`].
    pub flags: u32,
    /// The parent's pid (`task_struct.real_parent->tgid`) at the exec. Valid
    /// with [`exec_flags::PARENT`].
    pub parent_tgid: u32,
    /// Bytes of `path` in use (without its NUL).
    pub path_len: u32,
    /// Explicit padding; always zero.
    pub _pad0: u32,
    /// The comm the kernel set at this exec (read in `sched_process_exec`:
    /// the first 15 bytes of the exec'd file's base name), NUL-padded. User
    /// space compares it with the victim's comm so that an entry left by an
    /// earlier process with the same pid is not taken for the victim's.
    pub comm: [u8; TASK_COMM_LEN],
    /// The path passed to exec (`sched_process_exec`'s `filename`, the
    /// kernel's `bprm->filename`): as the caller spelled it, links not
    /// resolved, usually absolute; a script's own path (not its
    /// interpreter's); `/dev/fd/N` for an exec of a file descriptor.
    /// NUL-terminated.
    pub path: [u8; EXEC_PATH_BYTES],
    /// The arguments, each followed by a NUL. Last: the exec programs' reads
    /// may run past it into their scratch slot's overflow.
    pub args: [u8; EXEC_ARGS_BYTES],
}

impl ExecArgs {
    /// An entry with no argument.
    pub const ZERO: Self = Self {
        ktime_ns: 0,
        start_boottime_ns: 0,
        args_len: 0,
        argc: 0,
        flags: 0,
        parent_tgid: 0,
        path_len: 0,
        _pad0: 0,
        comm: [0; TASK_COMM_LEN],
        path: [0; EXEC_PATH_BYTES],
        args: [0; EXEC_ARGS_BYTES],
    };
}

const _: () = assert!(core::mem::size_of::<ExecArgs>() == 56 + EXEC_PATH_BYTES + EXEC_ARGS_BYTES);
const _: () = assert!(core::mem::align_of::<ExecArgs>() == 8);
// The kernel program masks offsets with `EXEC_ARGS_BYTES - 1`.
const _: () = assert!(EXEC_ARGS_BYTES.is_power_of_two());
// The path is read with `bpf_probe_read_kernel_str`, whose size is a u32.
const _: () = assert!(EXEC_PATH_BYTES > 1 && EXEC_PATH_BYTES <= 4096);

/// Where a `__data_loc` field's string is: the field holds a u32 whose low
/// 16 bits are the string's offset from the start of the record and high 16
/// bits its length, the NUL included. Returns (offset, length).
#[inline(always)]
#[must_use]
pub const fn data_loc(descriptor: u32) -> (usize, usize) {
    ((descriptor & 0xffff) as usize, (descriptor >> 16) as usize)
}

/// Where the programs find their fields on the running kernel: byte offsets
/// in each tracepoint's record (from the tracepoints' `format` files) and in
/// `struct task_struct` (from the kernel's BTF, /sys/kernel/btf/vmlinux: the
/// CO-RE relocation Rust eBPF cannot do, done by user space), or
/// [`FIELD_ABSENT`] (the program then leaves that fact out; with no argv
/// offset it does nothing).
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
    /// `sched_process_exec`: `__data_loc char[] filename` (a u32: low 16
    /// bits the string's offset in the record, high 16 bits its length with
    /// the NUL).
    pub exec_filename: u16,
    /// `task_struct.real_parent` (a pointer).
    pub task_real_parent: u16,
    /// `task_struct.tgid` (`pid_t`, 4 bytes).
    pub task_tgid: u16,
    /// `task_struct.start_boottime` (u64 ns).
    pub task_start_boottime: u16,
    /// Explicit padding; always zero.
    pub _pad0: u16,
}

impl ExecLayout {
    /// No field present: every program does nothing.
    pub const ABSENT: Self = Self {
        execve_argv: FIELD_ABSENT,
        execveat_argv: FIELD_ABSENT,
        exit_group_dead: FIELD_ABSENT,
        exec_filename: FIELD_ABSENT,
        task_real_parent: FIELD_ABSENT,
        task_tgid: FIELD_ABSENT,
        task_start_boottime: FIELD_ABSENT,
        _pad0: 0,
    };
}

impl Default for ExecLayout {
    fn default() -> Self {
        Self::ABSENT
    }
}

const _: () = assert!(core::mem::size_of::<ExecLayout>() == 16);

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
    assert!(offset_of!(ExecArgs, start_boottime_ns) == 8);
    assert!(offset_of!(ExecArgs, flags) == 24);
    assert!(offset_of!(ExecArgs, parent_tgid) == 28);
    assert!(offset_of!(ExecArgs, path_len) == 32);
    assert!(offset_of!(ExecArgs, comm) == 40);
    assert!(offset_of!(ExecArgs, path) == 56);
    assert!(offset_of!(ExecArgs, args) == 56 + EXEC_PATH_BYTES);
    assert!(offset_of!(ExecLayout, exit_group_dead) == 4);
    assert!(offset_of!(ExecLayout, task_start_boottime) == 12);
};

#[cfg(test)]
mod tests {
    use super::*;

    /// A `sched_process_exec` record as Linux 6.18 writes it (format:
    /// `filename` a `__data_loc` at 8, `pid` at 12, `old_pid` at 16, the
    /// string after the fixed fields).
    #[test]
    fn data_loc_finds_the_filename_in_a_record() {
        let filename = b"/usr/bin/python3\0";
        let mut record = [0u8; 20 + 17];
        let descriptor = ((filename.len() as u32) << 16) | 20;
        record[8..12].copy_from_slice(&descriptor.to_le_bytes());
        record[12..16].copy_from_slice(&4242i32.to_le_bytes());
        record[20..].copy_from_slice(filename);
        let descriptor = u32::from_le_bytes([record[8], record[9], record[10], record[11]]);
        let (offset, len) = data_loc(descriptor);
        assert_eq!((offset, len), (20, filename.len()));
        assert_eq!(&record[offset..offset + len], filename);
        // The largest values of both halves do not spill into each other.
        assert_eq!(data_loc(u32::MAX), (0xffff, 0xffff));
        assert_eq!(data_loc(0x0001_0000), (0, 1));
    }

    #[test]
    fn flags_are_distinct_bits() {
        let all = [
            exec_flags::TRUNCATED,
            exec_flags::READ_FAILED,
            exec_flags::PATH_TRUNCATED,
            exec_flags::PARENT,
            exec_flags::START,
        ];
        let union = all.iter().fold(0, |acc, f| {
            assert_eq!(f.count_ones(), 1);
            assert_eq!(acc & f, 0);
            acc | f
        });
        assert_eq!(union, 0b1_1111);
        assert_eq!(ExecLayout::default(), ExecLayout::ABSENT);
    }
}
