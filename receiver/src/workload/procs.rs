//! The container runtimes' own processes in /proc: `conmon` (podman and
//! CRI-O) and `containerd-shim-*` (containerd, and docker through its
//! containerd namespace `moby`). Their argument vectors say where each
//! container's state is.
//!
//! conmon's options are defined in its `src/cli.c`
//! (<https://github.com/containers/conmon/blob/main/src/cli.c>): `-c/--cid`,
//! `-n/--name`, `-b/--bundle`, `--exit-command` and `--exit-command-arg`
//! (podman passes its global options, `--root <graphroot>` among them,
//! through the latter). The runc v2 shim's flags (`-namespace`, `-id`,
//! `-address`) are containerd's shim API
//! (<https://github.com/containerd/containerd/blob/main/pkg/shim/shim.go>);
//! the shim runs in its bundle directory
//! `<state>/io.containerd.runtime.v2.task/<namespace>/<id>`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::read_bounded;

/// Most bytes of a command line read (conmon's is about 2 KiB).
const MAX_CMDLINE: usize = 64 * 1024;
/// Most processes looked at in one scan of /proc.
pub const MAX_PROCESSES: usize = 1 << 20;
/// How far up the parent chain a container's runtime process is looked
/// for (a container's init is conmon's child; its own children are deeper).
const MAX_ANCESTORS: usize = 32;

/// A runtime process and what its arguments say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeProcess {
    /// podman or CRI-O's container monitor: one per container.
    Conmon(Conmon),
    /// A containerd shim: one per container or per pod.
    Shim(Shim),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conmon {
    pub container_id: String,
    pub name: Option<String>,
    /// The OCI bundle (holds config.json), a host path.
    pub bundle: Option<PathBuf>,
    /// podman's storage root from its exit command (`--root`).
    pub storage_root: Option<PathBuf>,
    /// The exit command's program (`/usr/bin/podman` for podman).
    pub exit_command: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shim {
    pub pid: i32,
    pub namespace: String,
    pub id: String,
    /// containerd's socket (its directory is containerd's state directory).
    pub address: Option<PathBuf>,
    /// The shim's working directory (its bundle), a host path; `None` when
    /// /proc/PID/cwd cannot be read.
    pub cwd: Option<PathBuf>,
}

/// NUL-separated arguments; empty arguments are kept (podman passes some).
pub fn split_argv(raw: &[u8]) -> Vec<String> {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Whether the kernel's comm names a runtime process worth reading.
pub fn is_runtime_comm(comm: &str) -> bool {
    comm == "conmon" || comm.starts_with("containerd-shim")
}

/// The value of option `names` in `argv`: `-x value`, `--x value` or
/// `--x=value`.
fn option<'a>(argv: &'a [String], names: &[&str]) -> Option<&'a str> {
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        for name in names {
            if arg == name {
                return args.next().map(String::as_str);
            }
            if let Some(v) = arg.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                return Some(v);
            }
        }
    }
    None
}

/// podman's `--root` among conmon's `--exit-command-arg` values.
fn exit_command_root(argv: &[String]) -> Option<PathBuf> {
    let mut exit_args = Vec::new();
    let mut args = argv.iter();
    while let Some(arg) = args.next() {
        if arg == "--exit-command-arg" {
            if let Some(v) = args.next() {
                exit_args.push(v.as_str());
            }
        } else if let Some(v) = arg.strip_prefix("--exit-command-arg=") {
            exit_args.push(v);
        }
    }
    let mut it = exit_args.into_iter();
    while let Some(a) = it.next() {
        if a == "--root" {
            return it.next().filter(|v| !v.is_empty()).map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--root=") {
            return Some(PathBuf::from(v));
        }
    }
    None
}

/// Parses a runtime process's argument vector; `None` when it is not one
/// or names no container.
pub fn parse_runtime(pid: i32, argv: &[String], cwd: Option<PathBuf>) -> Option<RuntimeProcess> {
    let program = argv.first()?;
    let base = program.rsplit('/').next().unwrap_or(program);
    if base == "conmon" {
        let container_id = option(argv, &["-c", "--cid"])?.to_string();
        if container_id.is_empty() {
            return None;
        }
        return Some(RuntimeProcess::Conmon(Conmon {
            container_id,
            name: option(argv, &["-n", "--name"])
                .filter(|n| !n.is_empty())
                .map(str::to_string),
            bundle: option(argv, &["-b", "--bundle"])
                .filter(|b| !b.is_empty())
                .map(PathBuf::from),
            storage_root: exit_command_root(argv),
            exit_command: option(argv, &["--exit-command"]).map(str::to_string),
        }));
    }
    if base.starts_with("containerd-shim") {
        let namespace = option(argv, &["-namespace", "--namespace"])?.to_string();
        let id = option(argv, &["-id", "--id"])?.to_string();
        return Some(RuntimeProcess::Shim(Shim {
            pid,
            namespace,
            id,
            address: option(argv, &["-address", "--address"]).map(PathBuf::from),
            cwd,
        }));
    }
    None
}

/// Reads `/proc/<pid>` as a runtime process: `None` unless its comm is a
/// runtime's.
pub fn read_runtime(proc_path: &Path, pid: i32) -> Option<RuntimeProcess> {
    let dir = proc_path.join(pid.to_string());
    let comm = read_bounded(&dir.join("comm"), 64)?;
    let comm = String::from_utf8_lossy(&comm);
    if !is_runtime_comm(comm.trim_end()) {
        return None;
    }
    let argv = split_argv(&read_bounded(&dir.join("cmdline"), MAX_CMDLINE)?);
    // Readable only with ptrace rights over the process; the shim's
    // address is the fallback.
    let cwd = std::fs::read_link(dir.join("cwd")).ok();
    parse_runtime(pid, &argv, cwd)
}

/// Every runtime process in /proc (at most [`MAX_PROCESSES`] pids looked
/// at), but for the pids in `known_not` (found not to be runtime processes
/// before; not read again). Every pid looked at that is not a runtime
/// process, read or skipped, goes into `not`.
pub fn scan(
    proc_path: &Path,
    known_not: &HashSet<i32>,
    not: &mut HashSet<i32>,
) -> Vec<RuntimeProcess> {
    let Ok(entries) = std::fs::read_dir(proc_path) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .take(MAX_PROCESSES)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let found = if known_not.contains(&pid) {
                None
            } else {
                read_runtime(proc_path, pid)
            };
            if found.is_none() {
                not.insert(pid);
            }
            found
        })
        .collect()
}

/// The parent pid from /proc/PID/stat (after the comm's closing paren).
fn parent_of(proc_path: &Path, pid: i32) -> Option<i32> {
    let stat = read_bounded(&proc_path.join(pid.to_string()).join("stat"), 4096)?;
    let close = stat.iter().rposition(|b| *b == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    // " S ppid ..."
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The runtime process above `pid` (conmon is a container's init's parent;
/// a shim likewise), looked for up the parent chain.
pub fn runtime_ancestor(proc_path: &Path, pid: i32) -> Option<RuntimeProcess> {
    let mut current = pid;
    for _ in 0..MAX_ANCESTORS {
        let parent = parent_of(proc_path, current)?;
        if parent <= 1 || parent == current {
            return None;
        }
        if let Some(found) = read_runtime(proc_path, parent) {
            return Some(found);
        }
        current = parent;
    }
    None
}
