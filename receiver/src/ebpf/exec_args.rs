//! User side of the exec hook (`receiver-ebpf/src/probes/exec_args.rs`,
//! `exec_commit.rs`, `process_exit.rs`): the record layouts read from the
//! tracepoints' `format` files, and the turning of a recorded [`ExecArgs`]
//! into a victim's arguments, exec'd path, parent and start.
//!
//! An entry is taken for the victim only when it is the victim's: its comm
//! (what the kernel set at that exec) equals the victim's comm and the exec
//! happened before the kill. On a mismatch (the pid was reused, or the
//! process renamed itself with `prctl(PR_SET_NAME)` after its exec) the entry
//! is not used and the record has none of its facts, as before the hook.

use receiver_common::exec::{exec_flags, ExecArgs, ExecLayout, EXEC_ARGS_BYTES, EXEC_PATH_BYTES};
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

/// The `filename` offset of a `sched_process_exec` record, when it has one
/// as the program reads it: a `__data_loc char[]` (a 4-byte descriptor:
/// low 16 bits the string's offset in the record, high 16 bits its length).
pub fn parse_process_exec_format(text: &str) -> Option<u16> {
    parse_fields(text)
        .ok()?
        .iter()
        .find(|field| {
            field.name == "filename" && field.size == 4 && field.c_type.starts_with("__data_loc")
        })
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
    /// The entry has no argument, path, parent or start.
    Empty,
}

/// What the exec hook recorded of the victim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordedExec {
    /// argv (possibly cut at the bound; empty when exec got none).
    pub args: Vec<String>,
    /// The path passed to exec, as spelled (links not resolved); `None`
    /// when not recorded or cut at the bound (a cut path names no file).
    pub executable_path: Option<String>,
    /// The parent's pid at the exec.
    pub parent_pid: Option<i32>,
    /// The process's start, ns since boot (CLOCK_BOOTTIME).
    pub start_boottime_ns: Option<u64>,
    /// Read from /proc when the agent started ([`entry_from_proc`]), not at
    /// an exec: a process may have rewritten its argv since (its title).
    pub from_proc: bool,
}

/// What `entry` recorded of the victim, when `entry` is the victim's: its
/// comm equals `victim_comm` (the kernel's, at most 15 bytes) and, when the
/// kill's time is known, the exec was before it. A cut argument is kept as
/// far as it was recorded; bytes that are not UTF-8 are replaced.
pub fn victim_exec(
    entry: &ExecArgs,
    victim_comm: &str,
    kill_ktime_ns: Option<u64>,
) -> Result<RecordedExec, Mismatch> {
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
    let recorded = RecordedExec {
        args,
        executable_path: recorded_path(entry),
        parent_pid: (entry.flags & exec_flags::PARENT != 0)
            .then(|| i32::try_from(entry.parent_tgid).ok())
            .flatten(),
        start_boottime_ns: (entry.flags & exec_flags::START != 0)
            .then_some(entry.start_boottime_ns),
        from_proc: entry.flags & FROM_PROC != 0,
    };
    if recorded == RecordedExec::default() {
        return Err(Mismatch::Empty);
    }
    Ok(recorded)
}

/// The recorded path, unless absent or cut.
fn recorded_path(entry: &ExecArgs) -> Option<String> {
    if entry.flags & exec_flags::PATH_TRUNCATED != 0 {
        return None;
    }
    let len = (entry.path_len as usize).min(EXEC_PATH_BYTES - 1);
    let path = &entry.path[..len];
    let path = path.split(|b| *b == 0).next().unwrap_or(path);
    (!path.is_empty()).then(|| String::from_utf8_lossy(path).into_owned())
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

/// A bit of [`ExecArgs::flags`] the kernel programs never set: the entry
/// was built from /proc by [`entry_from_proc`].
pub const FROM_PROC: u32 = 1 << 31;

/// The entry the hook would have recorded for a process exec'd before it
/// was attached, from its /proc directory (`dir` = /proc/PID): argv from
/// `cmdline` (cut at [`EXEC_ARGS_BYTES`] and flagged as the hook does), the
/// executable from the `exe` link (resolved, where the hook has the path as
/// spelled), the comm, and the parent and start from `stat`
/// (`ticks_per_second` turns its start into ns after boot). `ktime_ns` is 0:
/// before any kill. `None` for a kernel thread (no argv) or a process gone.
#[must_use]
pub fn entry_from_proc(dir: &std::path::Path, ticks_per_second: u64) -> Option<ExecArgs> {
    use std::io::Read as _;
    let read = |name: &str, max: usize| -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        std::fs::File::open(dir.join(name))
            .ok()?
            .take(max as u64)
            .read_to_end(&mut buf)
            .ok()?;
        Some(buf)
    };
    let cmdline = read("cmdline", EXEC_ARGS_BYTES + 1)?;
    if cmdline.is_empty() {
        return None;
    }
    let stat = read("stat", 1024)?;
    // "pid (comm) state ppid ... starttime(22nd) ...": the comm may hold
    // spaces and parentheses, so the fields start after the last ')'.
    let close = stat.iter().rposition(|b| *b == b')')?;
    let fields: Vec<&[u8]> = stat[close + 1..]
        .split(u8::is_ascii_whitespace)
        .filter(|f| !f.is_empty())
        .collect();
    let number =
        |i: usize| -> Option<u64> { std::str::from_utf8(fields.get(i)?).ok()?.parse().ok() };
    let mut entry = ExecArgs::ZERO;
    entry.flags = FROM_PROC;
    if let Some(ppid) = number(1).and_then(|p| u32::try_from(p).ok()) {
        entry.parent_tgid = ppid;
        entry.flags |= exec_flags::PARENT;
    }
    if let Some(ticks) = number(19).filter(|_| ticks_per_second > 0) {
        let ns = u128::from(ticks) * 1_000_000_000 / u128::from(ticks_per_second);
        entry.start_boottime_ns = u64::try_from(ns).unwrap_or(u64::MAX);
        entry.flags |= exec_flags::START;
    }
    let kept = cmdline.len().min(EXEC_ARGS_BYTES);
    if cmdline.len() > EXEC_ARGS_BYTES {
        entry.flags |= exec_flags::TRUNCATED;
    }
    entry.args[..kept].copy_from_slice(&cmdline[..kept]);
    entry.args_len = u32::try_from(kept).unwrap_or(0);
    entry.argc = u32::try_from(
        cmdline[..kept]
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .count(),
    )
    .unwrap_or(0);
    let comm = read("comm", TASK_COMM_LEN)?;
    let comm = comm.strip_suffix(b"\n").unwrap_or(&comm);
    let comm_len = comm.len().min(TASK_COMM_LEN - 1);
    entry.comm[..comm_len].copy_from_slice(&comm[..comm_len]);
    if let Ok(exe) = std::fs::read_link(dir.join("exe")) {
        use std::os::unix::ffi::OsStrExt as _;
        let exe = exe.as_os_str().as_bytes();
        let exe = exe.strip_suffix(b" (deleted)").unwrap_or(exe);
        if exe.len() < EXEC_PATH_BYTES {
            entry.path[..exe.len()].copy_from_slice(exe);
            entry.path_len = u32::try_from(exe.len()).unwrap_or(0);
        } else {
            entry.path[..EXEC_PATH_BYTES - 1].copy_from_slice(&exe[..EXEC_PATH_BYTES - 1]);
            entry.path_len = u32::try_from(EXEC_PATH_BYTES - 1).unwrap_or(0);
            entry.flags |= exec_flags::PATH_TRUNCATED;
        }
    }
    Some(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use receiver_common::exec::exec_flags;

    /// A /proc/PID directory as the kernel shows it: this process's gives
    /// its own argv, comm, parent and start; a made-up one with a long argv
    /// is cut and flagged as the hook cuts it; a kernel thread has none.
    #[test]
    fn an_entry_from_proc_is_what_the_hook_records() {
        let entry = entry_from_proc(std::path::Path::new("/proc/self"), 100).expect("an entry");
        let comm = std::fs::read_to_string("/proc/self/comm").expect("comm");
        let exec = victim_exec(&entry, comm.trim_end(), Some(1)).expect("the victim's");
        let argv: Vec<String> = std::env::args().collect();
        if argv.join("\0").len() < EXEC_ARGS_BYTES {
            assert_eq!(exec.args, argv);
        }
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() };
        assert_eq!(exec.parent_pid, Some(ppid));
        assert!(exec.start_boottime_ns.is_some_and(|ns| ns > 0));
        let exe = std::fs::read_link("/proc/self/exe").expect("exe");
        if exe.as_os_str().len() < EXEC_PATH_BYTES {
            assert_eq!(exec.executable_path.as_deref(), exe.to_str());
        }

        let dir = tempfile::tempdir().expect("tempdir");
        let long: Vec<u8> = (0..100)
            .flat_map(|i| {
                format!("--argument-{i}")
                    .into_bytes()
                    .into_iter()
                    .chain([0])
            })
            .collect();
        std::fs::write(dir.path().join("cmdline"), &long).expect("write");
        std::fs::write(dir.path().join("comm"), "java\n").expect("write");
        std::fs::write(
            dir.path().join("stat"),
            "42 (a (weird) name) S 7 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 250 0 0",
        )
        .expect("write");
        let entry = entry_from_proc(dir.path(), 100).expect("an entry");
        assert_eq!(entry.args_len as usize, EXEC_ARGS_BYTES);
        assert_eq!(&entry.args[..], &long[..EXEC_ARGS_BYTES]);
        assert_ne!(entry.flags & exec_flags::TRUNCATED, 0);
        assert_eq!(entry.parent_tgid, 7);
        assert_eq!(entry.start_boottime_ns, 2_500_000_000);
        assert_eq!(&entry.comm[..5], b"java\0");
        assert_eq!(entry.path_len, 0, "no exe link");
        assert_eq!(entry.ktime_ns, 0, "before any kill");
        assert!(victim_exec(&entry, "java", Some(1)).is_ok_and(|e| e.from_proc));

        std::fs::write(dir.path().join("cmdline"), "").expect("write");
        assert_eq!(entry_from_proc(dir.path(), 100), None, "a kernel thread");
    }

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

    /// `events/sched/sched_process_exec/format` of Linux 6.18.
    const PROCESS_EXEC_6_18: &str = "name: sched_process_exec
ID: 365
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;

print fmt: \"filename=%s pid=%d old_pid=%d\", __get_str(filename), REC->pid, REC->old_pid
";

    fn args_of(
        entry: &ExecArgs,
        comm: &str,
        kill_ktime_ns: Option<u64>,
    ) -> Result<Vec<String>, Mismatch> {
        victim_exec(entry, comm, kill_ktime_ns).map(|r| r.args)
    }

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
    fn parses_the_6_18_exec_record() {
        assert_eq!(parse_process_exec_format(PROCESS_EXEC_6_18), Some(8));
        // A fixed array, another size or no such field: absent.
        assert_eq!(
            parse_process_exec_format(
                &PROCESS_EXEC_6_18.replace("__data_loc char[] filename", "char filename[4]")
            ),
            None
        );
        assert_eq!(
            parse_process_exec_format(&PROCESS_EXEC_6_18.replace(
                "size:4;\tsigned:0;\n\tfield:pid_t pid",
                "size:8;\tsigned:0;\n\tfield:pid_t pid"
            )),
            None
        );
        assert_eq!(
            parse_process_exec_format(&PROCESS_EXEC_6_18.replace("filename;", "file;")),
            None
        );
        assert_eq!(parse_process_exec_format(""), None);
    }

    #[test]
    fn the_victims_entry_gives_its_path_parent_and_start() {
        let mut e = entry("python3", b"/usr/bin/python3\0-c\0pass\0", 0);
        let path = b"/usr/local/bin/python3";
        e.path[..path.len()].copy_from_slice(path);
        e.path_len = path.len() as u32;
        e.parent_tgid = 4242;
        e.start_boottime_ns = 12_345_678_901;
        e.flags = exec_flags::PARENT | exec_flags::START;
        let got = victim_exec(&e, "python3", Some(200)).expect("the victim's");
        assert_eq!(
            got,
            RecordedExec {
                args: vec!["/usr/bin/python3".into(), "-c".into(), "pass".into()],
                executable_path: Some("/usr/local/bin/python3".into()),
                parent_pid: Some(4242),
                start_boottime_ns: Some(12_345_678_901),
                from_proc: false,
            }
        );
        // Without their flags (no BTF), parent and start are absent.
        let mut no_btf = e;
        no_btf.flags = 0;
        let got = victim_exec(&no_btf, "python3", None).expect("the victim's");
        assert_eq!((got.parent_pid, got.start_boottime_ns), (None, None));
        assert_eq!(
            got.executable_path.as_deref(),
            Some("/usr/local/bin/python3")
        );
        // A cut path names no file: left out.
        let mut cut = e;
        cut.flags |= exec_flags::PATH_TRUNCATED;
        assert_eq!(
            victim_exec(&cut, "python3", None)
                .expect("ok")
                .executable_path,
            None
        );
        // A length past the buffer is bounded; bytes after a NUL are not
        // the path's; no path, no attribute.
        let mut corrupt = e;
        corrupt.path_len = u32::MAX;
        corrupt.path = [b'x'; EXEC_PATH_BYTES];
        let got = victim_exec(&corrupt, "python3", None).expect("ok");
        assert_eq!(
            got.executable_path.map(|p| p.len()),
            Some(EXEC_PATH_BYTES - 1)
        );
        let mut nul = e;
        nul.path[4] = 0;
        assert_eq!(
            victim_exec(&nul, "python3", None)
                .expect("ok")
                .executable_path
                .as_deref(),
            Some("/usr")
        );
        let mut none = e;
        none.path_len = 0;
        assert_eq!(
            victim_exec(&none, "python3", None)
                .expect("ok")
                .executable_path,
            None
        );
        // A parent pid that is no pid_t is left out.
        let mut odd = e;
        odd.parent_tgid = u32::MAX;
        assert_eq!(
            victim_exec(&odd, "python3", None).expect("ok").parent_pid,
            None
        );
    }

    #[test]
    fn the_victims_entry_gives_its_arguments() {
        let e = entry("tail", b"/bin/tail\0-f\0/dev/zero\0", 0);
        assert_eq!(
            args_of(&e, "tail", Some(200)),
            Ok(vec!["/bin/tail".into(), "-f".into(), "/dev/zero".into()])
        );
        assert_eq!(args_of(&e, "tail", None).map(|a| a.len()), Ok(3));
    }

    #[test]
    fn another_processes_entry_is_refused() {
        let e = entry("tail", b"/bin/tail\0/dev/zero\0", 0);
        assert_eq!(args_of(&e, "sh", Some(200)), Err(Mismatch::Comm));
        assert_eq!(args_of(&e, "tail", Some(99)), Err(Mismatch::Later));
        let empty = entry("tail", b"", 0);
        assert_eq!(args_of(&empty, "tail", None), Err(Mismatch::Empty));
        // A path alone is something.
        let mut path_only = empty;
        path_only.path[..9].copy_from_slice(b"/bin/tail");
        path_only.path_len = 9;
        assert_eq!(args_of(&path_only, "tail", None), Ok(vec![]));
        let blank = ExecArgs::ZERO;
        assert_eq!(args_of(&blank, "", None), Err(Mismatch::Comm));
    }

    #[test]
    fn comms_compare_on_the_kernels_15_bytes() {
        // The kernel keeps 15 bytes of "a-very-long-program-name".
        let e = entry("a-very-long-pro", b"./a-very-long-program-name\0", 0);
        assert!(args_of(&e, "a-very-long-pro", None).is_ok());
        assert!(args_of(&e, "a-very-long-program-name", None).is_ok());
        assert_eq!(args_of(&e, "a-very-long-pr", None), Err(Mismatch::Comm));
    }

    #[test]
    fn a_cut_argument_is_kept_as_recorded() {
        let mut args = b"/usr/bin/java\0".to_vec();
        args.resize(EXEC_ARGS_BYTES, b'x');
        let e = entry("java", &args, exec_flags::TRUNCATED);
        let got = args_of(&e, "java", None).expect("the victim's");
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].len(), EXEC_ARGS_BYTES - "/usr/bin/java\0".len());
        // A length past the buffer (a corrupt entry) is bounded.
        let mut corrupt = e;
        corrupt.args_len = u32::MAX;
        assert_eq!(args_of(&corrupt, "java", None), Ok(got));
        // Bytes that are not UTF-8 are replaced, not refused.
        let e = entry("x", b"x\0\xff\xfe\0", 0);
        assert_eq!(
            args_of(&e, "x", None),
            Ok(vec!["x".into(), "\u{fffd}\u{fffd}".into()])
        );
    }
}
