//! What the kernel event does not carry, read from /proc and cgroupfs the
//! moment the event arrives (the victim is dying: every read may fail, and
//! a failure only leaves the attribute out).

use std::path::{Path, PathBuf};

use procfs::{FromRead, ProcessCGroups};
use receiver_common::exec::ExecArgs;

use crate::ebpf::exec_args::victim_exec;
use crate::redact::redact_args;

/// Facts about the victim read from /proc.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProcessFacts {
    /// Base name of /proc/PID/exe.
    pub executable_name: Option<String>,
    /// /proc/PID/exe (a deleted binary without " (deleted)").
    pub executable_path: Option<String>,
    pub parent_pid: Option<i32>,
    /// Start of the process, Unix ns.
    pub start_unix_nano: Option<u64>,
    /// Arguments joined by spaces, secrets redacted.
    pub command_line: Option<String>,
    /// The cgroup path (v2 unified entry, else the v1 memory controller's).
    pub cgroup: Option<String>,
}

/// Bound on what is read from /proc/PID/cmdline (the kernel caps it at a
/// page per read anyway; long Java command lines are cut, not allocated).
const MAX_CMDLINE: usize = 32 * 1024;

pub fn read_process(proc_root: &Path, pid: i32, secret_keys: &[String]) -> ProcessFacts {
    let dir = proc_root.join(pid.to_string());
    // Opens the /proc/PID directory once; fails when the victim is gone.
    let Ok(process) = procfs::process::Process::new_with_root(dir.clone()) else {
        return ProcessFacts::default();
    };
    // A deleted binary reads as "/path/x (deleted)".
    let executable_path = process
        .exe()
        .ok()
        .map(|p| {
            p.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string()
        })
        .filter(|p| !p.is_empty());
    let executable_name = executable_path.as_deref().and_then(base_name);
    // Not procfs's `cmdline()`: it reads the whole file, however long, and
    // fails on an argument that is not UTF-8; this read is bounded and lossy.
    let command_line = read_bounded(&dir.join("cmdline"), MAX_CMDLINE)
        .map(|raw| {
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            redact_args(&args, secret_keys).join(" ")
        })
        .filter(|c| !c.is_empty());
    let stat = process.stat().ok();
    // An exited task (zombie) has been moved to the root cgroup: its
    // /proc/PID/cgroup no longer says where it ran.
    let exited = stat
        .as_ref()
        .is_none_or(|stat| matches!(stat.state, 'Z' | 'X' | 'x'));
    let cgroup = if exited {
        None
    } else {
        process
            .cgroups()
            .ok()
            .and_then(|groups| memory_cgroup(&groups))
    };
    ProcessFacts {
        executable_name,
        executable_path,
        parent_pid: stat.as_ref().map(|s| s.ppid),
        start_unix_nano: stat
            .as_ref()
            .map(|s| crate::process_table::start_unix_nano(s.starttime)),
        command_line,
        cgroup,
    }
}

/// The last component of a path, if any.
pub fn base_name(path: &str) -> Option<String> {
    path.rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
}

/// What the exec hook recorded of the victim, in the terms of /proc's
/// facts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordedFacts {
    /// Arguments joined by spaces, secrets redacted.
    pub command_line: Option<String>,
    /// The path passed to exec (links not resolved).
    pub executable_path: Option<String>,
    /// The parent at the exec.
    pub parent_pid: Option<i32>,
    /// Start of the process, Unix ns.
    pub start_unix_nano: Option<u64>,
    /// Read from /proc at the agent's start rather than at an exec.
    pub from_proc: bool,
}

/// The facts from the first of `recorded` (entries of the exec hook, see
/// [`crate::ebpf::exec_args`]) that is the victim's, the command line's
/// secrets redacted as from /proc; the start, ns after boot, as Unix time
/// through `boot_unix_nano` (CLOCK_REALTIME - CLOCK_BOOTTIME). `None` when
/// none is: the record then has none of them.
pub fn recorded_facts(
    recorded: &[ExecArgs],
    comm: &str,
    kill_ktime_ns: Option<u64>,
    secret_keys: &[String],
    boot_unix_nano: u64,
) -> Option<RecordedFacts> {
    recorded
        .iter()
        .find_map(|entry| match victim_exec(entry, comm, kill_ktime_ns) {
            Ok(exec) => Some(RecordedFacts {
                command_line: (!exec.args.is_empty())
                    .then(|| redact_args(&exec.args, secret_keys).join(" ")),
                executable_path: exec.executable_path,
                parent_pid: exec.parent_pid,
                start_unix_nano: exec
                    .start_boottime_ns
                    .map(|ns| boot_unix_nano.saturating_add(ns)),
                from_proc: exec.from_proc,
            }),
            Err(why) => {
                tracing::debug!(
                    ?why,
                    comm,
                    "an exec record for the victim's pid is not the victim's"
                );
                None
            }
        })
}

fn read_bounded(path: &Path, max: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    f.take(max as u64).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// The memory cgroup of a process from the text of /proc/PID/cgroup (parsed
/// by procfs): see [`memory_cgroup`]. `None` when it does not parse.
pub fn cgroup_from_proc(text: &str) -> Option<String> {
    ProcessCGroups::from_read(text.as_bytes())
        .ok()
        .and_then(|groups| memory_cgroup(&groups))
}

/// The v1 `memory` controller's path when there is one, else the v2 (`0::`)
/// path.
pub fn memory_cgroup(groups: &ProcessCGroups) -> Option<String> {
    let mut unified = None;
    for group in groups {
        if group.controllers.iter().any(|c| c == "memory") {
            return Some(group.pathname.clone());
        }
        if group.controllers.is_empty() {
            unified = Some(group.pathname.clone());
        }
    }
    unified
}

/// Container and pod identity derived from a cgroup path.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ContainerIds {
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Understands the cgroup path forms of docker (`/docker/<id>`,
/// `docker-<id>.scope`), containerd (`cri-containerd-<id>.scope`,
/// `/kubepods/.../pod<uid>/<id>`), cri-o (`crio-<id>.scope`), podman
/// (`libpod-<id>.scope`), on cgroup v1 and v2, with the cgroupfs and the
/// systemd drivers (whose pod slices write the uid with underscores).
pub fn container_ids(cgroup: &str) -> ContainerIds {
    let mut ids = ContainerIds::default();
    for segment in cgroup.split('/').filter(|s| !s.is_empty()) {
        let seg = segment.strip_suffix(".scope").unwrap_or(segment);
        let seg = seg.strip_suffix(".slice").unwrap_or(seg);
        // The last dash-separated part: docker-<id>, cri-containerd-<id>, crio-<id>, libpod-<id>.
        let tail = seg.rsplit('-').next().unwrap_or(seg);
        if is_container_id(seg) {
            ids.container_id = Some(seg.to_string());
        } else if is_container_id(tail) && seg != "crio-conmon" && !seg.starts_with("crio-conmon-")
        {
            ids.container_id = Some(tail.to_string());
        }
        // pod<uid> (cgroupfs) or kubepods-<qos>-pod<uid_with_underscores> (systemd).
        if let Some(idx) = seg.rfind("pod") {
            let candidate = &seg[idx + 3..];
            let uid = candidate.replace('_', "-");
            if is_uuid(&uid) {
                ids.pod_uid = Some(uid);
            }
        }
    }
    ids
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&groups)
            .all(|(len, g)| g.len() == *len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `/a/b/c`, `/a/b`, `/a` (the root `/` excluded: it has no limit).
pub fn ancestors(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut p = path.trim_end_matches('/').to_string();
    while !p.is_empty() && p != "/" {
        out.push(p.clone());
        match p.rfind('/') {
            Some(0) | None => break,
            Some(i) => p.truncate(i),
        }
    }
    out
}

/// The limit of memory cgroup `path` (as written in /proc/PID/cgroup or the
/// kernel's report), from cgroupfs: v2 `memory.max`, v1 `memory.limit_in_bytes`.
/// `None` when unlimited or unreadable.
pub fn memcg_limit(cgroup_roots: &[PathBuf], path: &str) -> Option<u64> {
    let rel = path.trim_start_matches('/');
    for root in cgroup_roots {
        let dir = root.join(rel);
        for file in ["memory.max", "memory.limit_in_bytes"] {
            if let Ok(text) = std::fs::read_to_string(dir.join(file)) {
                let text = text.trim();
                if text == "max" {
                    return None;
                }
                // v1 reports "unlimited" as a huge page-aligned number.
                return text.parse::<u64>().ok().filter(|v| *v < (1u64 << 62));
            }
        }
    }
    None
}

/// The cgroup whose `memory.oom.group` made the kernel kill every task in
/// it along with the victim: as the kernel picks it
/// (`mem_cgroup_get_oom_group`), the highest cgroup with `memory.oom.group`
/// set on the path from the victim's cgroup up to `domain` (the cgroup
/// whose limit was hit; the root for a system-wide OOM). cgroup v2 only;
/// `None` when none is set or the files are gone.
pub fn oom_group(
    cgroup_roots: &[PathBuf],
    victim_cgroup: &str,
    domain: Option<&str>,
) -> Option<String> {
    let root = cgroup_roots
        .iter()
        .find(|root| root.join("cgroup.controllers").is_file())?;
    let mut group = None;
    let mut path = victim_cgroup.trim_end_matches('/');
    // Bounded by the path's depth.
    while !path.is_empty() {
        let file = root
            .join(path.trim_start_matches('/'))
            .join("memory.oom.group");
        if std::fs::read_to_string(file).is_ok_and(|v| v.trim() == "1") {
            group = Some(path.to_owned());
        }
        if Some(path) == domain.map(|d| d.trim_end_matches('/')) {
            break;
        }
        path = match path.rfind('/') {
            Some(at) => &path[..at],
            None => "",
        };
    }
    group
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oom_group_is_the_highest_set_up_to_the_domain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::write(root.join("cgroup.controllers"), "memory\n").expect("write");
        for (path, set) in [("a", "1"), ("a/b", "1"), ("a/b/c", "0"), ("x", "0")] {
            std::fs::create_dir_all(root.join(path)).expect("mkdir");
            std::fs::write(root.join(path).join("memory.oom.group"), set).expect("write");
        }
        let roots = [root.join("memory"), root.to_path_buf()];
        assert_eq!(
            oom_group(&roots, "/a/b/c", Some("/a")).as_deref(),
            Some("/a")
        );
        // Not above the domain whose limit was hit.
        assert_eq!(
            oom_group(&roots, "/a/b/c", Some("/a/b")).as_deref(),
            Some("/a/b")
        );
        assert_eq!(oom_group(&roots, "/a/b/c", None).as_deref(), Some("/a"));
        assert_eq!(oom_group(&roots, "/x", None), None);
        assert_eq!(oom_group(&roots, "/gone/away", None), None);
        // cgroup v1 has no memory.oom.group.
        assert_eq!(oom_group(&[root.join("memory")], "/a/b", None), None);
    }

    const ID: &str = "3f4b0c2c1d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";

    #[test]
    fn cgroup_paths_of_every_runtime() {
        let cases = [
            (format!("/docker/{ID}"), Some(ID), None),
            (format!("/system.slice/docker-{ID}.scope"), Some(ID), None),
            (
                format!("/kubepods/burstable/pod1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7081/{ID}"),
                Some(ID),
                Some("1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7081"),
            ),
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_4718_9a2b_3c4d5e6f7081.slice/cri-containerd-{ID}.scope"),
                Some(ID),
                Some("1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7081"),
            ),
            (
                format!("/kubepods.slice/kubepods-pod1b2c3d4e_5f60_4718_9a2b_3c4d5e6f7081.slice/crio-{ID}.scope"),
                Some(ID),
                Some("1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7081"),
            ),
            (format!("/machine.slice/libpod-{ID}.scope/container"), Some(ID), None),
            ("/user.slice/user-0.slice/session-3.scope".to_string(), None, None),
            ("/oomtest".to_string(), None, None),
            ("/".to_string(), None, None),
        ];
        for (path, id, pod) in cases {
            let got = container_ids(&path);
            assert_eq!(got.container_id.as_deref(), id, "{path}");
            assert_eq!(got.pod_uid.as_deref(), pod, "{path}");
        }
    }

    #[test]
    fn ancestors_nearest_first() {
        assert_eq!(ancestors("/a/b/c"), vec!["/a/b/c", "/a/b", "/a"]);
        assert_eq!(ancestors("/"), Vec::<String>::new());
        assert_eq!(ancestors("/oomtest/"), vec!["/oomtest"]);
    }

    #[test]
    fn memory_cgroup_from_proc_v1_and_v2() {
        let v1 = "12:pids:/x\n5:memory:/oomtest\n0::/init.scope\n";
        assert_eq!(cgroup_from_proc(v1).as_deref(), Some("/oomtest"));
        let v2 = "0::/system.slice/app.service\n";
        assert_eq!(
            cgroup_from_proc(v2).as_deref(),
            Some("/system.slice/app.service")
        );
        assert_eq!(cgroup_from_proc("garbage"), None);
    }

    fn recorded_command_line(
        recorded: &[ExecArgs],
        comm: &str,
        kill_ktime_ns: Option<u64>,
        keys: &[String],
    ) -> Option<String> {
        recorded_facts(recorded, comm, kill_ktime_ns, keys, 0).and_then(|f| f.command_line)
    }

    #[test]
    fn a_recorded_command_line_is_the_victims_and_redacted() {
        let mut entry = ExecArgs::ZERO;
        entry.comm[..5].copy_from_slice(b"mysql");
        let args = b"/usr/bin/mysql\0--password=hunter2\0-h\0db\0";
        entry.args[..args.len()].copy_from_slice(args);
        entry.args_len = args.len() as u32;
        entry.ktime_ns = 10;
        let keys = crate::redact::default_keys();
        assert_eq!(
            recorded_command_line(&[entry], "mysql", Some(20), &keys).as_deref(),
            Some("/usr/bin/mysql --password=*** -h db")
        );
        // Another process's entry first (the pid reused): the next one is taken.
        let mut other = entry;
        other.comm = [0; 16];
        other.comm[..2].copy_from_slice(b"sh");
        assert_eq!(
            recorded_command_line(&[other, entry], "mysql", Some(20), &keys).as_deref(),
            Some("/usr/bin/mysql --password=*** -h db")
        );
        assert_eq!(recorded_command_line(&[other], "mysql", None, &keys), None);
        assert_eq!(recorded_command_line(&[], "mysql", None, &keys), None);
    }

    #[test]
    fn recorded_path_parent_and_start_are_the_victims() {
        use receiver_common::exec::exec_flags;
        let mut entry = ExecArgs::ZERO;
        entry.comm[..5].copy_from_slice(b"mysql");
        let path = b"/usr/sbin/mysqld";
        entry.path[..path.len()].copy_from_slice(path);
        entry.path_len = path.len() as u32;
        entry.parent_tgid = 1;
        entry.start_boottime_ns = 5_000_000_000;
        entry.flags = exec_flags::PARENT | exec_flags::START;
        let boot = 1_700_000_000_000_000_000;
        assert_eq!(
            recorded_facts(&[entry], "mysql", None, &[], boot),
            Some(RecordedFacts {
                command_line: None,
                executable_path: Some("/usr/sbin/mysqld".into()),
                parent_pid: Some(1),
                start_unix_nano: Some(boot + 5_000_000_000),
                from_proc: false,
            })
        );
        // Not the victim's: nothing.
        assert_eq!(recorded_facts(&[entry], "sh", None, &[], boot), None);
    }

    #[test]
    fn reads_this_process() {
        let facts = read_process(
            Path::new("/proc"),
            std::process::id() as i32,
            &crate::redact::default_keys(),
        );
        assert!(facts.executable_name.is_some());
        assert!(facts.command_line.is_some());
        assert!(facts.cgroup.is_some());
        let gone = read_process(Path::new("/proc"), i32::MAX, &[]);
        assert_eq!(gone, ProcessFacts::default());
    }
}
