//! User side of the exec hook (`receiver-ebpf/src/probes/exec_args.rs`,
//! `process_exit.rs`): the record layouts read from the tracepoints'
//! `format` files, and the turning of a recorded [`ExecArgs`] into a victim's
//! arguments.
//!
//! An entry is taken for the victim only when it is the victim's: its comm
//! (what the kernel set at that exec) equals the victim's comm and the exec
//! happened before the kill. On a mismatch (the pid was reused, or the
//! process renamed itself with `prctl(PR_SET_NAME)` after its exec) the entry
//! is not used and the record has no command line, as before the hook.

use receiver_common::exec::{ExecArgs, ExecLayout, EXEC_ARGS_BYTES};
use receiver_common::oom::{FIELD_ABSENT, TASK_COMM_LEN};

use super::format::{parse_fields, FormatError};

/// The `argv` offset of a `sys_enter_execve` or `sys_enter_execveat`
/// record (a pointer, 8 bytes on 64-bit kernels).
pub fn parse_exec_format(text: &str) -> Result<u16, FormatError> {
    parse_fields(text)?
        .iter()
        .find(|field| field.name == "argv" && field.size == 8)
        .and_then(|field| u16::try_from(field.offset).ok())
        .filter(|&offset| offset != FIELD_ABSENT)
        .ok_or(FormatError::MissingField("argv (an 8-byte pointer)"))
}

/// The `group_dead` offset of a `sched_process_exit` record, when it has one
/// (a 1-byte bool; older kernels do not record it).
pub fn parse_exit_format(text: &str) -> Option<u16> {
    parse_fields(text)
        .ok()?
        .iter()
        .find(|field| field.name == "group_dead" && field.size == 1)
        .and_then(|field| u16::try_from(field.offset).ok())
        .filter(|&offset| offset != FIELD_ABSENT)
}

/// Whether the exec programs have anything to do with this layout.
#[must_use]
pub fn records_execs(layout: &ExecLayout) -> bool {
    layout.execve_argv != FIELD_ABSENT || layout.execveat_argv != FIELD_ABSENT
}

/// Why an entry was not taken for the victim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// The exec's comm is not the victim's.
    Comm,
    /// The exec came after the kill (a new process with the victim's pid).
    Later,
    /// The entry has no argument.
    Empty,
}

/// The victim's arguments from `entry`, when `entry` is the victim's: its
/// comm equals `victim_comm` (the kernel's, at most 15 bytes) and, when the
/// kill's time is known, the exec was before it. A cut argument is kept as
/// far as it was recorded; bytes that are not UTF-8 are replaced.
pub fn victim_args(
    entry: &ExecArgs,
    victim_comm: &str,
    kill_ktime_ns: Option<u64>,
) -> Result<Vec<String>, Mismatch> {
    if !same_comm(&entry.comm, victim_comm) {
        return Err(Mismatch::Comm);
    }
    if kill_ktime_ns.is_some_and(|kill| entry.ktime_ns > kill) {
        return Err(Mismatch::Later);
    }
    let len = (entry.args_len as usize).min(EXEC_ARGS_BYTES);
    let args: Vec<String> = entry.args[..len]
        .split(|b| *b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    if args.is_empty() {
        return Err(Mismatch::Empty);
    }
    Ok(args)
}

/// Whether the NUL-padded comm recorded at exec equals `comm`, both taken to
/// the kernel's 15 bytes.
fn same_comm(recorded: &[u8; TASK_COMM_LEN], comm: &str) -> bool {
    let recorded_len = recorded
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(TASK_COMM_LEN)
        .min(TASK_COMM_LEN - 1);
    let comm = comm.as_bytes();
    let comm = &comm[..comm.len().min(TASK_COMM_LEN - 1)];
    recorded_len > 0 && &recorded[..recorded_len] == comm
}

#[cfg(test)]
mod tests {
    use super::*;
    use receiver_common::exec::exec_flags;

    /// `events/syscalls/sys_enter_execve/format` of Linux 6.18.
    const EXECVE_6_18: &str = "name: sys_enter_execve
ID: 862
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:const char * filename;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char *const * argv;\toffset:24;\tsize:8;\tsigned:0;
\tfield:const char *const * envp;\toffset:32;\tsize:8;\tsigned:0;

print fmt: \"filename: 0x%08lx, argv: 0x%08lx, envp: 0x%08lx\", ((unsigned long)(REC->filename)), ((unsigned long)(REC->argv)), ((unsigned long)(REC->envp))
";

    /// `events/syscalls/sys_enter_execveat/format` of Linux 6.18.
    const EXECVEAT_6_18: &str = "name: sys_enter_execveat
ID: 860
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int fd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:const char *const * argv;\toffset:32;\tsize:8;\tsigned:0;
\tfield:const char *const * envp;\toffset:40;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:48;\tsize:8;\tsigned:0;
";

    /// `events/sched/sched_process_exit/format` of Linux 6.18.
    const EXIT_6_18: &str = "name: sched_process_exit
ID: 369
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;
";

    fn entry(comm: &str, args: &[u8], flags: u32) -> ExecArgs {
        let mut e = ExecArgs::ZERO;
        e.comm[..comm.len()].copy_from_slice(comm.as_bytes());
        e.args[..args.len()].copy_from_slice(args);
        e.args_len = args.len() as u32;
        e.flags = flags;
        e.ktime_ns = 100;
        e
    }

    #[test]
    fn parses_the_6_18_records() {
        assert_eq!(parse_exec_format(EXECVE_6_18), Ok(24));
        assert_eq!(parse_exec_format(EXECVEAT_6_18), Ok(32));
        assert_eq!(parse_exit_format(EXIT_6_18), Some(32));
        let old_exit = EXIT_6_18.replace(
            "\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n",
            "",
        );
        assert_eq!(parse_exit_format(&old_exit), None);
        assert!(parse_exec_format(&EXECVE_6_18.replace("argv", "args")).is_err());
        assert!(parse_exec_format("").is_err());
        // A 32-bit kernel's 4-byte pointers are not read.
        assert!(parse_exec_format(
            &EXECVE_6_18.replace("argv;\toffset:24;\tsize:8", "argv;\toffset:24;\tsize:4")
        )
        .is_err());
    }

    #[test]
    fn the_victims_entry_gives_its_arguments() {
        let e = entry("tail", b"/bin/tail\0-f\0/dev/zero\0", 0);
        assert_eq!(
            victim_args(&e, "tail", Some(200)),
            Ok(vec!["/bin/tail".into(), "-f".into(), "/dev/zero".into()])
        );
        assert_eq!(victim_args(&e, "tail", None).map(|a| a.len()), Ok(3));
    }

    #[test]
    fn another_processes_entry_is_refused() {
        let e = entry("tail", b"/bin/tail\0/dev/zero\0", 0);
        assert_eq!(victim_args(&e, "sh", Some(200)), Err(Mismatch::Comm));
        assert_eq!(victim_args(&e, "tail", Some(99)), Err(Mismatch::Later));
        let empty = entry("tail", b"", 0);
        assert_eq!(victim_args(&empty, "tail", None), Err(Mismatch::Empty));
        let blank = ExecArgs::ZERO;
        assert_eq!(victim_args(&blank, "", None), Err(Mismatch::Comm));
    }

    #[test]
    fn comms_compare_on_the_kernels_15_bytes() {
        // The kernel keeps 15 bytes of "a-very-long-program-name".
        let e = entry("a-very-long-pro", b"./a-very-long-program-name\0", 0);
        assert!(victim_args(&e, "a-very-long-pro", None).is_ok());
        assert!(victim_args(&e, "a-very-long-program-name", None).is_ok());
        assert_eq!(victim_args(&e, "a-very-long-pr", None), Err(Mismatch::Comm));
    }

    #[test]
    fn a_cut_argument_is_kept_as_recorded() {
        let mut args = b"/usr/bin/java\0".to_vec();
        args.resize(EXEC_ARGS_BYTES, b'x');
        let e = entry("java", &args, exec_flags::TRUNCATED);
        let got = victim_args(&e, "java", None).expect("the victim's");
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].len(), EXEC_ARGS_BYTES - "/usr/bin/java\0".len());
        // A length past the buffer (a corrupt entry) is bounded.
        let mut corrupt = e;
        corrupt.args_len = u32::MAX;
        assert_eq!(victim_args(&corrupt, "java", None), Ok(got));
        // Bytes that are not UTF-8 are replaced, not refused.
        let e = entry("x", b"x\0\xff\xfe\0", 0);
        assert_eq!(
            victim_args(&e, "x", None),
            Ok(vec!["x".into(), "\u{fffd}\u{fffd}".into()])
        );
    }
}
